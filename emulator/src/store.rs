//! Generic object storage with the API server's bookkeeping: uids, creation timestamps and
//! one cluster-wide, monotonically increasing resourceVersion.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::resources::ResourceType;
use crate::status::{ApiError, ApiResult};

type Key = (String, String, String);

#[derive(Default)]
pub struct Store {
    revision: u64,
    objects: BTreeMap<Key, Value>,
}

fn key(rt: &ResourceType, namespace: &str, name: &str) -> Key {
    (rt.storage_key(), namespace.to_string(), name.to_string())
}

pub fn name_of(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or("")
}

pub fn resource_version_of(object: &Value) -> Option<&str> {
    object["metadata"]["resourceVersion"]
        .as_str()
        .filter(|rv| !rv.is_empty())
}

impl Store {
    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn get(&self, rt: &ResourceType, namespace: &str, name: &str) -> ApiResult<&Value> {
        self.objects
            .get(&key(rt, namespace, name))
            .ok_or_else(|| ApiError::not_found(rt.plural, name))
    }

    pub fn contains(&self, rt: &ResourceType, namespace: &str, name: &str) -> bool {
        self.objects.contains_key(&key(rt, namespace, name))
    }

    /// Objects of one type in a namespace (or all namespaces), in key order so that
    /// `continue` tokens stay valid across writes; `after` resumes past a (namespace, name).
    /// A range walk: a page costs its own size, not the size of the store.
    pub fn iter<'a>(
        &'a self,
        rt: &'a ResourceType,
        namespace: Option<&'a str>,
        after: Option<(&str, &str)>,
    ) -> impl Iterator<Item = ((&'a str, &'a str), &'a Value)> + 'a {
        use std::ops::Bound;
        let storage_key = rt.storage_key();
        let floor = namespace.unwrap_or("");
        let start = match after {
            Some((ns, name)) if (ns, name) >= (floor, "") => {
                Bound::Excluded((storage_key.clone(), ns.to_string(), name.to_string()))
            }
            _ => Bound::Included((storage_key.clone(), floor.to_string(), String::new())),
        };
        self.objects
            .range((start, Bound::Unbounded))
            .take_while(move |((k, ns, _), _)| {
                *k == storage_key && namespace.is_none_or(|want| want == ns)
            })
            .map(|((_, ns, name), v)| ((ns.as_str(), name.as_str()), v))
    }

    fn next_revision(&mut self) -> String {
        self.revision += 1;
        self.revision.to_string()
    }

    pub fn create(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        mut object: Value,
        uid: String,
        now: String,
    ) -> ApiResult<Value> {
        let name = name_of(&object).to_string();
        if self.contains(rt, namespace, &name) {
            return Err(ApiError::already_exists(rt.plural, &name));
        }
        let metadata = &mut object["metadata"];
        metadata["uid"] = Value::String(uid);
        metadata["creationTimestamp"] = Value::String(now);
        metadata["resourceVersion"] = Value::String(self.next_revision());
        self.objects
            .insert(key(rt, namespace, &name), object.clone());
        Ok(object)
    }

    /// Replaces an object, refusing a stale resourceVersion when the update carries one;
    /// identity fields set by the server cannot be changed by the client.
    pub fn update(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        mut object: Value,
    ) -> ApiResult<Value> {
        let name = name_of(&object).to_string();
        let current = self.get(rt, namespace, &name)?;
        if let Some(rv) = resource_version_of(&object) {
            if Some(rv) != resource_version_of(current) {
                return Err(ApiError::conflict(rt.plural, &name));
            }
        }
        if let Some(uid) = object["metadata"]["uid"].as_str().filter(|u| !u.is_empty()) {
            if Some(uid) != current["metadata"]["uid"].as_str() {
                return Err(ApiError::precondition_failed(
                    rt.plural,
                    &name,
                    "the UID in the object does not match",
                ));
            }
        }
        let current_meta = current["metadata"].clone();
        let metadata = &mut object["metadata"];
        for preserved in ["uid", "creationTimestamp"] {
            metadata[preserved] = current_meta[preserved].clone();
        }
        metadata["resourceVersion"] = Value::String(self.next_revision());
        self.objects
            .insert(key(rt, namespace, &name), object.clone());
        Ok(object)
    }

    pub fn delete(&mut self, rt: &ResourceType, namespace: &str, name: &str) -> ApiResult<Value> {
        self.objects
            .remove(&key(rt, namespace, name))
            .ok_or_else(|| ApiError::not_found(rt.plural, name))
    }

    /// Removes everything stored in a namespace (the namespace controller's job, done at once).
    pub fn purge_namespace(&mut self, namespace: &str) {
        self.objects.retain(|(_, ns, _), _| ns != namespace);
    }

    /// The uid of a service account, if it still exists; tokens of deleted accounts die with them.
    pub fn service_account_uid(&self, namespace: &str, name: &str) -> Option<&str> {
        let rt = ResourceType::find("", "v1", "serviceaccounts")?;
        self.get(rt, namespace, name).ok()?["metadata"]["uid"].as_str()
    }
}
