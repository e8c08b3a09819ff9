//! RBAC authorization for service-account users, evaluated from the stored Role,
//! ClusterRole, RoleBinding and ClusterRoleBinding objects as the API server does.

use serde_json::Value;

use crate::resources::ResourceType;
use crate::store::Store;
use crate::tokens::ServiceAccountIdentity;

/// What a request wants to do, in RBAC's terms.
pub struct Attributes<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    /// `secrets`, or `serviceaccounts/token` for a subresource.
    pub resource: String,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
}

fn rbac(plural: &str) -> &'static ResourceType {
    ResourceType::find("rbac.authorization.k8s.io", "v1", plural)
        .expect("rbac types are registered")
}

fn listed(list: &Value, wanted: &str) -> bool {
    list.as_array()
        .is_some_and(|items| items.iter().any(|i| i == "*" || i.as_str() == Some(wanted)))
}

fn rule_allows(rule: &Value, attrs: &Attributes) -> bool {
    let names_ok = match rule["resourceNames"].as_array() {
        None => true,
        Some(names) if names.is_empty() => true,
        Some(names) => attrs
            .name
            .is_some_and(|n| names.iter().any(|v| v.as_str() == Some(n))),
    };
    listed(&rule["apiGroups"], attrs.group)
        && listed(&rule["resources"], &attrs.resource)
        && listed(&rule["verbs"], attrs.verb)
        && names_ok
}

fn binds(binding: &Value, who: &ServiceAccountIdentity, binding_namespace: &str) -> bool {
    let groups = [
        "system:authenticated".to_string(),
        "system:serviceaccounts".to_string(),
        format!("system:serviceaccounts:{}", who.namespace),
    ];
    binding["subjects"].as_array().is_some_and(|subjects| {
        subjects.iter().any(|s| match s["kind"].as_str() {
            Some("ServiceAccount") => {
                s["name"] == who.name.as_str()
                    && s["namespace"].as_str().unwrap_or(binding_namespace) == who.namespace
            }
            Some("User") => s["name"].as_str() == Some(who.username().as_str()),
            Some("Group") => s["name"]
                .as_str()
                .is_some_and(|g| groups.iter().any(|x| x == g)),
            _ => false,
        })
    })
}

fn role_rules<'a>(store: &'a Store, role_ref: &Value, binding_namespace: &str) -> &'a [Value] {
    let name = role_ref["name"].as_str().unwrap_or("");
    let role = match role_ref["kind"].as_str() {
        Some("Role") => store.get(rbac("roles"), binding_namespace, name).ok(),
        Some("ClusterRole") => store.get(rbac("clusterroles"), "", name).ok(),
        _ => None,
    };
    role.and_then(|r| r["rules"].as_array())
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// True when some binding in scope grants a rule that covers the request.
pub fn allows(store: &Store, who: &ServiceAccountIdentity, attrs: &Attributes) -> bool {
    let cluster_wide = store
        .iter(rbac("clusterrolebindings"), None, None)
        .filter(|(_, b)| binds(b, who, ""))
        .any(|(_, b)| {
            role_rules(store, &b["roleRef"], "")
                .iter()
                .any(|r| rule_allows(r, attrs))
        });
    if cluster_wide {
        return true;
    }
    let Some(namespace) = attrs.namespace else {
        return false;
    };
    store
        .iter(rbac("rolebindings"), Some(namespace), None)
        .filter(|(_, b)| binds(b, who, namespace))
        .any(|(_, b)| {
            role_rules(store, &b["roleRef"], namespace)
                .iter()
                .any(|r| rule_allows(r, attrs))
        })
}
