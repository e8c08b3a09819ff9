//! The resource types the emulator serves, and the discovery documents that describe them.

use serde_json::{json, Map, Value};

/// One REST resource: where it lives in the API and how it is named.
#[derive(Debug, PartialEq, Eq)]
pub struct ResourceType {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
}

const fn resource(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
) -> ResourceType {
    ResourceType {
        group,
        version,
        plural,
        kind,
        namespaced,
    }
}

pub const RESOURCES: &[ResourceType] = &[
    resource("", "v1", "secrets", "Secret", true),
    resource("", "v1", "configmaps", "ConfigMap", true),
    resource("", "v1", "serviceaccounts", "ServiceAccount", true),
    resource("", "v1", "events", "Event", true),
    resource("", "v1", "namespaces", "Namespace", false),
    resource("apps", "v1", "deployments", "Deployment", true),
    resource("apps", "v1", "statefulsets", "StatefulSet", true),
    resource("apps", "v1", "daemonsets", "DaemonSet", true),
    resource(
        "external-secrets.io",
        "v1",
        "externalsecrets",
        "ExternalSecret",
        true,
    ),
    resource(
        "external-secrets.io",
        "v1alpha1",
        "pushsecrets",
        "PushSecret",
        true,
    ),
    resource("rbac.authorization.k8s.io", "v1", "roles", "Role", true),
    resource(
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "RoleBinding",
        true,
    ),
    resource(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "ClusterRole",
        false,
    ),
    resource(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        false,
    ),
    resource(
        "authentication.k8s.io",
        "v1",
        "tokenreviews",
        "TokenReview",
        false,
    ),
    resource(
        "authentication.k8s.io",
        "v1",
        "selfsubjectreviews",
        "SelfSubjectReview",
        false,
    ),
    resource(
        "authorization.k8s.io",
        "v1",
        "selfsubjectaccessreviews",
        "SelfSubjectAccessReview",
        false,
    ),
];

/// Resources that are only ever created and answered, never stored.
pub const VIRTUAL: &[&str] = &[
    "tokenreviews",
    "selfsubjectreviews",
    "selfsubjectaccessreviews",
];

impl ResourceType {
    pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
        RESOURCES
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The storage key: the same object is reachable through only one version here.
    pub fn storage_key(&self) -> String {
        format!("{}/{}", self.group, self.plural)
    }

    /// The abbreviations kubectl resolves through discovery (`kubectl get deploy`).
    fn short_names(&self) -> &'static [&'static str] {
        match self.plural {
            "configmaps" => &["cm"],
            "serviceaccounts" => &["sa"],
            "events" => &["ev"],
            "namespaces" => &["ns"],
            "deployments" => &["deploy"],
            "statefulsets" => &["sts"],
            "daemonsets" => &["ds"],
            "externalsecrets" => &["es"],
            _ => &[],
        }
    }

    fn verbs(&self) -> Vec<&'static str> {
        if VIRTUAL.contains(&self.plural) {
            vec!["create"]
        } else {
            vec![
                "create", "delete", "get", "list", "patch", "update", "watch",
            ]
        }
    }
}

fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut groups: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        match groups.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
            Some(_) => {}
            None => groups.push((r.group, vec![r.version])),
        }
    }
    groups
}

fn group_document(group: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": versions,
        "preferredVersion": versions[0],
    })
}

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "34",
        "gitVersion": "v1.34.0-secops-emulator",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

pub fn core_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
    })
}

pub fn group_list() -> Value {
    let groups: Vec<Value> = groups().iter().map(|(g, v)| group_document(g, v)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn group(name: &str) -> Option<Value> {
    groups()
        .iter()
        .find(|(g, _)| *g == name)
        .map(|(g, v)| group_document(g, v))
}

pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .map(|r| {
            json!({
                "name": r.plural,
                "singularName": r.kind.to_lowercase(),
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": r.verbs(),
                "shortNames": r.short_names(),
            })
        })
        .collect();
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

/// The group-versions whose OpenAPI v3 documents are served, as the root lists them.
fn openapi_group_versions() -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !VIRTUAL.contains(&r.plural)) {
        let name = match r.group {
            "" => format!("api/{}", r.version),
            group => format!("apis/{group}/{}", r.version),
        };
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// `/openapi/v3`: where each group-version's document is (kubectl asks it before
/// `apply`, to learn whether the server validates fields itself).
pub fn openapi_v3_root() -> Value {
    let paths: Map<String, Value> = openapi_group_versions()
        .into_iter()
        .map(|gv| {
            let url = format!("/openapi/v3/{gv}?hash=secops-emulator");
            (gv, json!({ "serverRelativeURL": url }))
        })
        .collect();
    json!({ "paths": paths })
}

/// One group-version's OpenAPI v3 document, reduced to what clients read from it: each
/// object's PATCH operation with its kind and the `fieldValidation` parameter, the sign that
/// the server validates fields (`kubectl apply` then sends `fieldValidation=Strict` and
/// skips client-side validation). No schemas: kubectl then computes strategic merge
/// patches from its built-in types, as it does for every core kind.
pub fn openapi_v3(group_version: &str) -> Option<Value> {
    let mut paths = Map::new();
    for r in RESOURCES.iter().filter(|r| !VIRTUAL.contains(&r.plural)) {
        let prefix = match r.group {
            "" => format!("api/{}", r.version),
            group => format!("apis/{group}/{}", r.version),
        };
        if prefix != group_version {
            continue;
        }
        let path = match r.namespaced {
            true => format!("/{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural),
            false => format!("/{prefix}/{}/{{name}}", r.plural),
        };
        let patch = json!({
            "operationId": format!("patch{}", r.kind),
            "parameters": [
                {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
                {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
            ],
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
        });
        paths.insert(path, json!({ "patch": patch }));
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": version()["gitVersion"]},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}
