//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`), as kubectl's typed
//! commands send them, turned into the JSON objects the rest of the emulator handles.
//!
//! The body is the magic `k8s\0` followed by a `runtime.Unknown` envelope whose `raw` holds
//! the typed message named by its `typeMeta`. Only the kinds kubectl's typed commands create
//! are understood; any other kind is refused with 415, naming it, so the client can send
//! JSON instead. Answers are always JSON, which every client that offers protobuf accepts.
//! Error messages name fields and kinds, never values: a Secret's bytes stay out of them.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::authentication::v1 as authn;
use k8s_pb::api::authorization::v1 as authz;
use k8s_pb::api::core::v1 as core;
use k8s_pb::api::rbac::v1 as rbac;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::{json, Map, Value};

use crate::status::{ApiError, ApiResult};

pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";

/// True for a `Content-Type` naming Kubernetes protobuf (parameters aside).
pub fn is_protobuf(content_type: &str) -> bool {
    content_type.split(';').next().unwrap_or("").trim() == MEDIA_TYPE
}

/// Decodes a whole protobuf request body into the equivalent JSON object, with its
/// `apiVersion` and `kind` set.
pub fn decode(body: &[u8]) -> ApiResult<Value> {
    let envelope = body.strip_prefix(MAGIC).ok_or_else(|| {
        ApiError::bad_request("the protobuf request body does not start with the k8s magic prefix")
    })?;
    let unknown = Unknown::decode(envelope).map_err(|e| {
        ApiError::bad_request(format!(
            "the protobuf request body is not a runtime.Unknown envelope: {e}"
        ))
    })?;
    if let Some(encoding) = unknown
        .content_encoding
        .as_deref()
        .filter(|e| !e.is_empty())
    {
        return Err(ApiError::unsupported_media_type(&format!(
            "{MEDIA_TYPE} with contentEncoding {encoding}"
        )));
    }
    let type_meta = unknown.type_meta.unwrap_or_default();
    let api_version = type_meta.api_version.unwrap_or_default();
    let kind = type_meta.kind.unwrap_or_default();
    let raw = unknown.raw.unwrap_or_default();
    let mut object = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => namespace(typed(&raw, &kind)?),
        ("v1", "Secret") => secret(typed(&raw, &kind)?),
        ("v1", "ConfigMap") => config_map(typed(&raw, &kind)?),
        ("v1", "ServiceAccount") => service_account(typed(&raw, &kind)?),
        ("rbac.authorization.k8s.io/v1", "Role") => {
            let role: rbac::Role = typed(&raw, &kind)?;
            json!({"metadata": object_meta(role.metadata), "rules": rules(role.rules)})
        }
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => {
            let role: rbac::ClusterRole = typed(&raw, &kind)?;
            if role.aggregation_rule.is_some() {
                return Err(unsupported_field(&kind, "aggregationRule"));
            }
            json!({"metadata": object_meta(role.metadata), "rules": rules(role.rules)})
        }
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => {
            let binding: rbac::RoleBinding = typed(&raw, &kind)?;
            role_binding(binding.metadata, binding.subjects, binding.role_ref)
        }
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            let binding: rbac::ClusterRoleBinding = typed(&raw, &kind)?;
            role_binding(binding.metadata, binding.subjects, binding.role_ref)
        }
        ("authentication.k8s.io/v1", "TokenRequest") => token_request(typed(&raw, &kind)?),
        ("authentication.k8s.io/v1", "SelfSubjectReview") => {
            let review: authn::SelfSubjectReview = typed(&raw, &kind)?;
            json!({"metadata": object_meta(review.metadata)})
        }
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => {
            self_subject_access_review(typed(&raw, &kind)?)
        }
        ("apps/v1", "Deployment") => deployment(typed(&raw, &kind)?)?,
        ("v1" | "meta.k8s.io/v1", "DeleteOptions") => delete_options(typed(&raw, &kind)?),
        _ => {
            return Err(ApiError::unsupported_protobuf_kind(&api_version, &kind));
        }
    };
    object["apiVersion"] = Value::String(api_version);
    object["kind"] = Value::String(kind);
    Ok(object)
}

fn typed<M: Message + Default>(raw: &[u8], kind: &str) -> ApiResult<M> {
    M::decode(raw).map_err(|e| {
        ApiError::bad_request(format!(
            "the {kind} in the protobuf request body does not decode: {e}"
        ))
    })
}

fn unsupported_field(kind: &str, field: &str) -> ApiError {
    ApiError::unsupported_media_type(&format!(
        "{MEDIA_TYPE} ({kind} with {field}, which the emulator reads only from JSON)"
    ))
}

/// A JSON object built the way Go's `omitempty` writes one: absent, empty and zero
/// values leave their key out (the protobuf encoding carries them anyway).
#[derive(Default)]
struct Fields(Map<String, Value>);

impl Fields {
    fn text(mut self, key: &str, value: Option<String>) -> Self {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            self.0.insert(key.into(), Value::String(value));
        }
        self
    }

    fn int(mut self, key: &str, value: Option<impl Into<i64>>) -> Self {
        if let Some(value) = value {
            self.0.insert(key.into(), Value::from(value.into()));
        }
        self
    }

    fn flag(mut self, key: &str, value: Option<bool>) -> Self {
        if let Some(value) = value {
            self.0.insert(key.into(), Value::Bool(value));
        }
        self
    }

    fn texts(mut self, key: &str, values: Vec<String>) -> Self {
        if !values.is_empty() {
            self.0.insert(key.into(), json!(values));
        }
        self
    }

    fn strings(mut self, key: &str, map: BTreeMap<String, String>) -> Self {
        if !map.is_empty() {
            self.0.insert(key.into(), json!(map));
        }
        self
    }

    fn value(mut self, key: &str, value: Option<Value>) -> Self {
        if let Some(value) = value.filter(|v| v.as_object().is_none_or(|m| !m.is_empty())) {
            self.0.insert(key.into(), value);
        }
        self
    }

    fn list(mut self, key: &str, values: Vec<Value>) -> Self {
        if !values.is_empty() {
            self.0.insert(key.into(), Value::Array(values));
        }
        self
    }

    fn done(self) -> Value {
        Value::Object(self.0)
    }
}

/// The client-settable metadata; server-set fields (timestamps, managed fields) are the
/// store's to write.
fn object_meta(metadata: Option<meta::ObjectMeta>) -> Value {
    let m = metadata.unwrap_or_default();
    let owners = m
        .owner_references
        .into_iter()
        .map(|o| {
            Fields::default()
                .text("apiVersion", o.api_version)
                .text("kind", o.kind)
                .text("name", o.name)
                .text("uid", o.uid)
                .flag("controller", o.controller)
                .flag("blockOwnerDeletion", o.block_owner_deletion)
                .done()
        })
        .collect();
    Fields::default()
        .text("name", m.name)
        .text("generateName", m.generate_name)
        .text("namespace", m.namespace)
        .text("uid", m.uid)
        .text("resourceVersion", m.resource_version)
        .strings("labels", m.labels)
        .strings("annotations", m.annotations)
        .list("ownerReferences", owners)
        .texts("finalizers", m.finalizers)
        .done()
}

fn namespace(ns: core::Namespace) -> Value {
    let spec = ns
        .spec
        .map(|s| Fields::default().texts("finalizers", s.finalizers).done());
    Fields::default()
        .value("metadata", Some(object_meta(ns.metadata)))
        .value("spec", spec)
        .done()
}

fn secret(secret: core::Secret) -> Value {
    let data: BTreeMap<String, String> = secret
        .data
        .into_iter()
        .map(|(k, v)| (k, STANDARD.encode(v)))
        .collect();
    Fields::default()
        .value("metadata", Some(object_meta(secret.metadata)))
        .strings("data", data)
        .strings("stringData", secret.string_data)
        .text("type", secret.r#type)
        .flag("immutable", secret.immutable.filter(|i| *i))
        .done()
}

fn config_map(map: core::ConfigMap) -> Value {
    let binary: BTreeMap<String, String> = map
        .binary_data
        .into_iter()
        .map(|(k, v)| (k, STANDARD.encode(v)))
        .collect();
    Fields::default()
        .value("metadata", Some(object_meta(map.metadata)))
        .strings("data", map.data)
        .strings("binaryData", binary)
        .flag("immutable", map.immutable.filter(|i| *i))
        .done()
}

fn service_account(sa: core::ServiceAccount) -> Value {
    let secrets = sa
        .secrets
        .into_iter()
        .map(|s| {
            Fields::default()
                .text("name", s.name)
                .text("namespace", s.namespace)
                .done()
        })
        .collect();
    let pull = sa
        .image_pull_secrets
        .into_iter()
        .map(|s| Fields::default().text("name", s.name).done())
        .collect();
    Fields::default()
        .value("metadata", Some(object_meta(sa.metadata)))
        .list("secrets", secrets)
        .list("imagePullSecrets", pull)
        .flag(
            "automountServiceAccountToken",
            sa.automount_service_account_token,
        )
        .done()
}

fn rules(rules: Vec<rbac::PolicyRule>) -> Value {
    rules
        .into_iter()
        .map(|r| {
            Fields::default()
                .texts("verbs", r.verbs)
                .texts("apiGroups", r.api_groups)
                .texts("resources", r.resources)
                .texts("resourceNames", r.resource_names)
                .texts("nonResourceURLs", r.non_resource_ur_ls)
                .done()
        })
        .collect()
}

fn role_binding(
    metadata: Option<meta::ObjectMeta>,
    subjects: Vec<rbac::Subject>,
    role_ref: Option<rbac::RoleRef>,
) -> Value {
    let subjects = subjects
        .into_iter()
        .map(|s| {
            Fields::default()
                .text("kind", s.kind)
                .text("apiGroup", s.api_group)
                .text("name", s.name)
                .text("namespace", s.namespace)
                .done()
        })
        .collect();
    let role_ref = role_ref.map(|r| {
        Fields::default()
            .text("apiGroup", r.api_group)
            .text("kind", r.kind)
            .text("name", r.name)
            .done()
    });
    Fields::default()
        .value("metadata", Some(object_meta(metadata)))
        .list("subjects", subjects)
        .value("roleRef", role_ref)
        .done()
}

fn token_request(request: authn::TokenRequest) -> Value {
    let spec = request.spec.unwrap_or_default();
    let bound = spec.bound_object_ref.map(|b| {
        Fields::default()
            .text("kind", b.kind)
            .text("apiVersion", b.api_version)
            .text("name", b.name)
            .text("uid", b.u_id)
            .done()
    });
    let spec = Fields::default()
        .texts("audiences", spec.audiences)
        .int("expirationSeconds", spec.expiration_seconds)
        .value("boundObjectRef", bound)
        .done();
    json!({"metadata": object_meta(request.metadata), "spec": spec})
}

fn self_subject_access_review(review: authz::SelfSubjectAccessReview) -> Value {
    let spec = review.spec.unwrap_or_default();
    let resource = spec.resource_attributes.map(|r| {
        Fields::default()
            .text("namespace", r.namespace)
            .text("verb", r.verb)
            .text("group", r.group)
            .text("version", r.version)
            .text("resource", r.resource)
            .text("subresource", r.subresource)
            .text("name", r.name)
            .done()
    });
    let non_resource = spec.non_resource_attributes.map(|n| {
        Fields::default()
            .text("path", n.path)
            .text("verb", n.verb)
            .done()
    });
    let spec = Fields::default()
        .value("resourceAttributes", resource)
        .value("nonResourceAttributes", non_resource)
        .done();
    json!({"metadata": object_meta(review.metadata), "spec": spec})
}

fn delete_options(options: meta::DeleteOptions) -> Value {
    let preconditions = options.preconditions.map(|p| {
        Fields::default()
            .text("uid", p.uid)
            .text("resourceVersion", p.resource_version)
            .done()
    });
    Fields::default()
        .int("gracePeriodSeconds", options.grace_period_seconds)
        .value("preconditions", preconditions)
        .text("propagationPolicy", options.propagation_policy)
        .texts("dryRun", options.dry_run)
        .done()
}

fn int_or_string(value: IntOrString) -> Option<Value> {
    match value.r#type {
        Some(1) => value.str_val.map(Value::String),
        _ => value.int_val.map(Value::from),
    }
}

fn label_selector(selector: meta::LabelSelector) -> Value {
    let expressions = selector
        .match_expressions
        .into_iter()
        .map(|e| {
            Fields::default()
                .text("key", e.key)
                .text("operator", e.operator)
                .texts("values", e.values)
                .done()
        })
        .collect();
    Fields::default()
        .strings("matchLabels", selector.match_labels)
        .list("matchExpressions", expressions)
        .done()
}

/// A Deployment as `kubectl create deployment` writes one: replicas, selector, strategy
/// and a pod template of plain containers. Pod features beyond that (volumes, probes,
/// env from references, ...) are refused rather than silently dropped.
fn deployment(deployment: apps::Deployment) -> ApiResult<Value> {
    let spec = deployment.spec.unwrap_or_default();
    let strategy = spec.strategy.map(|s| {
        let rolling = s.rolling_update.map(|r| {
            Fields::default()
                .value("maxUnavailable", r.max_unavailable.and_then(int_or_string))
                .value("maxSurge", r.max_surge.and_then(int_or_string))
                .done()
        });
        Fields::default()
            .text("type", s.r#type)
            .value("rollingUpdate", rolling)
            .done()
    });
    let template = spec.template.unwrap_or_default();
    let spec = Fields::default()
        .int("replicas", spec.replicas)
        .value("selector", spec.selector.map(label_selector))
        .value("strategy", strategy)
        .flag("paused", spec.paused.filter(|p| *p))
        .value(
            "template",
            Some(json!({
                "metadata": object_meta(template.metadata),
                "spec": pod_spec(template.spec.unwrap_or_default())?,
            })),
        )
        .done();
    Ok(json!({"metadata": object_meta(deployment.metadata), "spec": spec}))
}

fn pod_spec(pod: core::PodSpec) -> ApiResult<Value> {
    let refused = [
        ("volumes", !pod.volumes.is_empty()),
        ("initContainers", !pod.init_containers.is_empty()),
        ("ephemeralContainers", !pod.ephemeral_containers.is_empty()),
        ("affinity", pod.affinity.is_some()),
        ("tolerations", !pod.tolerations.is_empty()),
    ];
    if let Some((field, _)) = refused.iter().find(|(_, present)| *present) {
        return Err(unsupported_field(
            "Deployment",
            &format!("spec.template.spec.{field}"),
        ));
    }
    let containers = pod
        .containers
        .into_iter()
        .map(container)
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Fields::default()
        .list("containers", containers)
        .text("restartPolicy", pod.restart_policy)
        .text("serviceAccountName", pod.service_account_name)
        .strings("nodeSelector", pod.node_selector)
        .done())
}

fn container(c: core::Container) -> ApiResult<Value> {
    let refused = [
        ("envFrom", !c.env_from.is_empty()),
        ("volumeMounts", !c.volume_mounts.is_empty()),
        ("livenessProbe", c.liveness_probe.is_some()),
        ("readinessProbe", c.readiness_probe.is_some()),
        ("startupProbe", c.startup_probe.is_some()),
        ("lifecycle", c.lifecycle.is_some()),
        ("securityContext", c.security_context.is_some()),
        (
            "env.valueFrom",
            c.env.iter().any(|e| e.value_from.is_some()),
        ),
    ];
    if let Some((field, _)) = refused.iter().find(|(_, present)| *present) {
        return Err(unsupported_field(
            "Deployment",
            &format!("a container's {field}"),
        ));
    }
    let ports = c
        .ports
        .into_iter()
        .map(|p| {
            Fields::default()
                .text("name", p.name)
                .int("containerPort", p.container_port)
                .int("hostPort", p.host_port.filter(|h| *h != 0))
                .text("protocol", p.protocol)
                .done()
        })
        .collect();
    let env = c
        .env
        .into_iter()
        .map(|e| {
            Fields::default()
                .text("name", e.name)
                .text("value", e.value)
                .done()
        })
        .collect();
    let quantities = |map: BTreeMap<String, k8s_pb::apimachinery::pkg::api::resource::Quantity>| {
        map.into_iter()
            .filter_map(|(k, q)| q.string.map(|s| (k, s)))
            .collect::<BTreeMap<_, _>>()
    };
    let resources = c.resources.map(|r| {
        Fields::default()
            .strings("limits", quantities(r.limits))
            .strings("requests", quantities(r.requests))
            .done()
    });
    Ok(Fields::default()
        .text("name", c.name)
        .text("image", c.image)
        .texts("command", c.command)
        .texts("args", c.args)
        .text("workingDir", c.working_dir)
        .list("ports", ports)
        .list("env", env)
        .value("resources", resources)
        .text("imagePullPolicy", c.image_pull_policy)
        .done())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let unknown = Unknown {
            type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
                api_version: Some(api_version.into()),
                kind: Some(kind.into()),
            }),
            raw: Some(raw),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        let mut body = MAGIC.to_vec();
        body.extend(unknown.encode_to_vec());
        body
    }

    fn named(name: &str, namespace: &str) -> Option<meta::ObjectMeta> {
        Some(meta::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            // Go writes its non-pointer strings even when empty.
            resource_version: Some(String::new()),
            ..Default::default()
        })
    }

    #[test]
    fn a_secret_decodes_to_the_json_kubectl_would_have_sent() {
        let secret = core::Secret {
            metadata: named("db", "payments"),
            data: [("password".to_string(), b"s3cr\xffet".to_vec())].into(),
            r#type: Some("Opaque".into()),
            ..Default::default()
        };
        let object = decode(&envelope("v1", "Secret", secret.encode_to_vec())).unwrap();
        assert_eq!(
            object,
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "db", "namespace": "payments"},
                "data": {"password": STANDARD.encode(b"s3cr\xffet")},
                "type": "Opaque",
            })
        );
    }

    #[test]
    fn bindings_token_requests_and_reviews_keep_their_fields() {
        let binding = rbac::ClusterRoleBinding {
            metadata: named("reader", ""),
            subjects: vec![rbac::Subject {
                kind: Some("ServiceAccount".into()),
                api_group: Some(String::new()),
                name: Some("app".into()),
                namespace: Some("team".into()),
            }],
            role_ref: Some(rbac::RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: Some("ClusterRole".into()),
                name: Some("view".into()),
            }),
        };
        let object = decode(&envelope(
            "rbac.authorization.k8s.io/v1",
            "ClusterRoleBinding",
            binding.encode_to_vec(),
        ))
        .unwrap();
        assert_eq!(
            object["subjects"],
            json!([{"kind": "ServiceAccount", "name": "app", "namespace": "team"}])
        );
        assert_eq!(object["roleRef"]["name"], "view");
        assert_eq!(object["metadata"], json!({"name": "reader"}));

        let request = authn::TokenRequest {
            spec: Some(authn::TokenRequestSpec {
                audiences: vec!["vault".into()],
                expiration_seconds: Some(3600),
                bound_object_ref: None,
            }),
            ..Default::default()
        };
        let object = decode(&envelope(
            "authentication.k8s.io/v1",
            "TokenRequest",
            request.encode_to_vec(),
        ))
        .unwrap();
        assert_eq!(
            object["spec"],
            json!({"audiences": ["vault"], "expirationSeconds": 3600})
        );

        let review = authz::SelfSubjectAccessReview {
            spec: Some(authz::SelfSubjectAccessReviewSpec {
                resource_attributes: Some(authz::ResourceAttributes {
                    namespace: Some("team".into()),
                    verb: Some("get".into()),
                    resource: Some("secrets".into()),
                    group: Some(String::new()),
                    ..Default::default()
                }),
                non_resource_attributes: None,
            }),
            ..Default::default()
        };
        let object = decode(&envelope(
            "authorization.k8s.io/v1",
            "SelfSubjectAccessReview",
            review.encode_to_vec(),
        ))
        .unwrap();
        assert_eq!(
            object["spec"]["resourceAttributes"],
            json!({"namespace": "team", "verb": "get", "resource": "secrets"})
        );
    }

    #[test]
    fn a_deployment_keeps_its_containers_and_refuses_what_it_cannot_carry() {
        let container = core::Container {
            name: Some("api".into()),
            image: Some("api:1".into()),
            resources: Some(Default::default()),
            ..Default::default()
        };
        let mut deployment = apps::Deployment {
            metadata: named("api", "payments"),
            spec: Some(apps::DeploymentSpec {
                replicas: Some(2),
                selector: Some(meta::LabelSelector {
                    match_labels: [("app".to_string(), "api".to_string())].into(),
                    match_expressions: vec![],
                }),
                template: Some(core::PodTemplateSpec {
                    metadata: None,
                    spec: Some(core::PodSpec {
                        containers: vec![container],
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }),
            status: None,
        };
        let object = decode(&envelope(
            "apps/v1",
            "Deployment",
            deployment.encode_to_vec(),
        ))
        .unwrap();
        assert_eq!(object["spec"]["replicas"], 2);
        assert_eq!(object["spec"]["selector"]["matchLabels"]["app"], "api");
        assert_eq!(
            object["spec"]["template"]["spec"]["containers"],
            json!([{"name": "api", "image": "api:1"}])
        );

        let spec = deployment.spec.as_mut().unwrap();
        let pod = spec.template.as_mut().unwrap().spec.as_mut().unwrap();
        pod.volumes.push(Default::default());
        let error = decode(&envelope(
            "apps/v1",
            "Deployment",
            deployment.encode_to_vec(),
        ))
        .unwrap_err();
        assert_eq!(error.code, 415);
        assert!(
            error.message.contains("spec.template.spec.volumes"),
            "{}",
            error.message
        );
    }

    #[test]
    fn bad_bodies_are_refused_with_a_status_never_a_panic() {
        let secret = core::Secret {
            metadata: named("db", "payments"),
            data: [("password".to_string(), b"hunter2-canary".to_vec())].into(),
            ..Default::default()
        };
        let whole = envelope("v1", "Secret", secret.encode_to_vec());
        let mut cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("no magic", b"{\"kind\":\"Secret\"}".to_vec()),
            ("magic only", MAGIC.to_vec()),
            ("garbage envelope", [MAGIC, &[0xff; 16]].concat()),
            (
                "garbage raw",
                envelope("v1", "Secret", vec![0x0a, 0xff, 0xff, 0xff]),
            ),
        ];
        for cut in (MAGIC.len()..whole.len()).step_by(3) {
            cases.push(("truncated", whole[..cut].to_vec()));
        }
        for (case, body) in cases {
            if let Err(error) = decode(&body) {
                assert!(matches!(error.code, 400 | 415), "{case}: {}", error.code);
                assert!(!error.message.contains("hunter2"), "{case} leaks the value");
            }
        }

        let error = decode(&envelope("batch/v1", "Job", vec![])).unwrap_err();
        assert_eq!((error.code, error.reason), (415, "UnsupportedMediaType"));
        assert!(error.message.contains("Job"), "{}", error.message);
    }
}
