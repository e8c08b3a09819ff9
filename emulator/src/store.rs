//! Generic object storage with the API server's bookkeeping: uids, creation timestamps,
//! one cluster-wide, monotonically increasing resourceVersion, and the recent history of
//! changes that watches replay from a resourceVersion.

use std::collections::{BTreeMap, VecDeque};

use serde_json::Value;

use crate::resources::ResourceType;
use crate::status::{ApiError, ApiResult};

type Key = (String, String, String);

/// How many changes a watch can replay; older resourceVersions get 410 Expired, as after
/// the API server's compaction.
const HISTORY: usize = 4096;

/// One write, as a watch event reports it.
#[derive(Debug, Clone)]
pub struct Change {
    pub revision: u64,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub kind: &'static str,
    pub storage_key: String,
    pub namespace: String,
    pub object: Value,
}

pub struct Store {
    revision: u64,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Change>,
    /// The newest revision no longer in `history`: watches from before it have expired.
    compacted: u64,
    /// Wakes watchers after each write without them holding the cluster lock to wait.
    changed: tokio::sync::watch::Sender<u64>,
}

impl Default for Store {
    fn default() -> Self {
        Self {
            revision: 0,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            compacted: 0,
            changed: tokio::sync::watch::Sender::new(0),
        }
    }
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

    /// Records a write made at the current revision and wakes the watchers.
    fn record(&mut self, kind: &'static str, storage_key: String, namespace: &str, object: Value) {
        if self.history.len() == HISTORY {
            if let Some(dropped) = self.history.pop_front() {
                self.compacted = dropped.revision;
            }
        }
        self.history.push_back(Change {
            revision: self.revision,
            kind,
            storage_key,
            namespace: namespace.to_string(),
            object,
        });
        self.changed.send_replace(self.revision);
    }

    /// A receiver that sees every revision bumped after this call.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The changes after `since`, oldest first, or `Err(compacted)` when some of them are
    /// no longer kept.
    pub fn changes_after(&self, since: u64) -> Result<impl Iterator<Item = &Change>, u64> {
        if since < self.compacted {
            return Err(self.compacted);
        }
        let start = self.history.partition_point(|c| c.revision <= since);
        Ok(self.history.range(start..))
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
        self.record("ADDED", rt.storage_key(), namespace, object.clone());
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
        self.record("MODIFIED", rt.storage_key(), namespace, object.clone());
        Ok(object)
    }

    pub fn delete(&mut self, rt: &ResourceType, namespace: &str, name: &str) -> ApiResult<Value> {
        let deleted = self
            .objects
            .remove(&key(rt, namespace, name))
            .ok_or_else(|| ApiError::not_found(rt.plural, name))?;
        self.record_deletion(rt.storage_key(), namespace, deleted.clone());
        Ok(deleted)
    }

    /// A deletion is a write too: it takes a revision, which its watch event carries.
    fn record_deletion(&mut self, storage_key: String, namespace: &str, mut object: Value) {
        object["metadata"]["resourceVersion"] = Value::String(self.next_revision());
        self.record("DELETED", storage_key, namespace, object);
    }

    /// Removes everything stored in a namespace (the namespace controller's job, done at once).
    pub fn purge_namespace(&mut self, namespace: &str) {
        let doomed: Vec<Key> = self
            .objects
            .keys()
            .filter(|(_, ns, _)| ns == namespace)
            .cloned()
            .collect();
        for key in doomed {
            if let Some(object) = self.objects.remove(&key) {
                self.record_deletion(key.0, namespace, object);
            }
        }
    }

    /// The uid of a service account, if it still exists; tokens of deleted accounts die with them.
    pub fn service_account_uid(&self, namespace: &str, name: &str) -> Option<&str> {
        let rt = ResourceType::find("", "v1", "serviceaccounts")?;
        self.get(rt, namespace, name).ok()?["metadata"]["uid"].as_str()
    }
}
