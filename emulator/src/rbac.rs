//! RBAC authorization for every user but the admin, evaluated from the stored Role,
//! ClusterRole, RoleBinding and ClusterRoleBinding objects as the API server does.

use serde_json::Value;

use crate::resources::ResourceType;
use crate::store::Store;
use crate::tokens::ServiceAccountIdentity;

/// An authenticated user as RBAC sees it: a name and groups.
#[derive(Debug, Clone, PartialEq)]
pub struct UserInfo {
    pub name: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    /// A service account's user, with the groups the API server gives it.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        Self {
            name: format!("system:serviceaccount:{namespace}:{name}"),
            groups: vec![
                "system:serviceaccounts".to_string(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".to_string(),
            ],
        }
    }
}

impl From<&ServiceAccountIdentity> for UserInfo {
    fn from(sa: &ServiceAccountIdentity) -> Self {
        Self::service_account(&sa.namespace, &sa.name)
    }
}

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

/// The subject of a binding that names this user, if any, as RBAC's reasons spell it.
fn bound_subject(binding: &Value, who: &UserInfo, binding_namespace: &str) -> Option<String> {
    binding["subjects"].as_array()?.iter().find_map(|s| {
        let name = s["name"].as_str()?;
        match s["kind"].as_str()? {
            "ServiceAccount" => {
                let namespace = s["namespace"].as_str().unwrap_or(binding_namespace);
                (who.name == format!("system:serviceaccount:{namespace}:{name}"))
                    .then(|| format!("ServiceAccount \"{name}/{namespace}\""))
            }
            "User" => (who.name == name).then(|| format!("User \"{name}\"")),
            "Group" => who
                .groups
                .iter()
                .any(|g| g == name)
                .then(|| format!("Group \"{name}\"")),
            _ => None,
        }
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
pub fn allows(store: &Store, who: &UserInfo, attrs: &Attributes) -> bool {
    review(store, who, attrs).is_some()
}

/// Which binding grants a rule that `covers`, as the API server's RBAC reason says it:
/// `RBAC: allowed by RoleBinding "b/ns" of Role "r" to ServiceAccount "sa/ns"`.
fn grant(
    store: &Store,
    who: &UserInfo,
    covers: impl Fn(&Value) -> bool,
    namespace: Option<&str>,
) -> Option<String> {
    let reason = |binding: &Value, binding_kind: &str, ns: &str, subject: String| {
        let name = binding["metadata"]["name"].as_str().unwrap_or("");
        let shown = if ns.is_empty() {
            name.to_string()
        } else {
            format!("{name}/{ns}")
        };
        let role = &binding["roleRef"];
        format!(
            "RBAC: allowed by {binding_kind} \"{shown}\" of {} \"{}\" to {subject}",
            role["kind"].as_str().unwrap_or(""),
            role["name"].as_str().unwrap_or("")
        )
    };
    let cluster_wide = store
        .iter(rbac("clusterrolebindings"), None, None)
        .find_map(|(_, b)| {
            let subject = bound_subject(b, who, "")?;
            role_rules(store, &b["roleRef"], "")
                .iter()
                .any(&covers)
                .then(|| reason(b, "ClusterRoleBinding", "", subject))
        });
    if cluster_wide.is_some() {
        return cluster_wide;
    }
    let namespace = namespace?;
    store
        .iter(rbac("rolebindings"), Some(namespace), None)
        .find_map(|(_, b)| {
            let subject = bound_subject(b, who, namespace)?;
            role_rules(store, &b["roleRef"], namespace)
                .iter()
                .any(&covers)
                .then(|| reason(b, "RoleBinding", namespace, subject))
        })
}

/// The answer to an access review: whether RBAC allows, and which binding did.
pub fn review(store: &Store, who: &UserInfo, attrs: &Attributes) -> Option<String> {
    grant(store, who, |rule| rule_allows(rule, attrs), attrs.namespace)
}

/// The paths every authenticated user may read on a real cluster (the `system:discovery`
/// and `system:public-info-viewer` roles); the emulator serves them to any caller.
const DISCOVERY: &[&str] = &[
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
    "/version",
    "/version/",
    "/healthz",
    "/livez",
    "/readyz",
    "/openapi",
    "/openapi/*",
];

fn url_matches(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => pattern == path,
    }
}

/// An access review of a non-resource URL (`kubectl auth can-i get /healthz`).
pub fn review_non_resource(
    store: &Store,
    who: &UserInfo,
    verb: &str,
    path: &str,
) -> Option<String> {
    if verb == "get" && DISCOVERY.iter().any(|p| url_matches(p, path)) {
        return Some(
            "the emulator serves discovery and health paths to every authenticated user".into(),
        );
    }
    let covers = |rule: &Value| {
        listed(&rule["verbs"], verb)
            && rule["nonResourceURLs"].as_array().is_some_and(|urls| {
                urls.iter()
                    .filter_map(Value::as_str)
                    .any(|u| url_matches(u, path))
            })
    };
    grant(store, who, covers, None)
}
