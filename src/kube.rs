//! The Kubernetes seam: the few Secret, Event and workload calls secops makes, over kube-rs,
//! in secops's own types. kube and k8s-openapi types stay inside this module.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, Preconditions,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::{json, Value};

use crate::domain::bootstrap::{SecretHeader, SourceSecret};
use crate::domain::consumers::{
    is_refreshed, judge_sync_since, trigger_instant, Consumer, ConsumerKind, RefreshFor, Sync,
    SyncSince, ROTATED_VERSION, ROTATION_ID,
};
use crate::domain::names;
use crate::domain::{ClusterName, SecretRef};
use crate::error::{transport_fault, Error, Result, TransportFault};
use crate::retry::{RetryPolicy, RACE_ATTEMPTS};
use crate::secret::{SecretBytes, SecretData};

/// Where the cluster is, validated before any connection is made (by `cli`).
pub struct KubeSettings {
    /// In-cluster configuration, else `KUBECONFIG`/`~/.kube/config`, when absent.
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    /// Per request.
    pub timeout: Duration,
    /// This cluster's name (`--cluster-name`), stamped on every Secret read from it.
    pub cluster: Option<ClusterName>,
}

/// The pod-template annotation a restart sets (`docs/contract.md` §2).
const RESTARTED_AT: &str = "secops.dev/restartedAt";

/// What a refresh did, and how to tell ESO's sync of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    /// The consumer was stamped now.
    Stamped(SyncSince),
    /// It was already refreshed for this rotation (or a later version): nothing was written.
    AlreadyStamped(SyncSince),
}

impl Refresh {
    pub fn since(&self) -> &SyncSince {
        match self {
            Refresh::Stamped(since) | Refresh::AlreadyStamped(since) => since,
        }
    }
}

/// Secrets fetched per list call.
pub const PAGE_SIZE: u32 = 250;

/// A conditional change to a Secret's labels and annotations (and optionally its data).
pub struct SecretPatch {
    /// The resourceVersion that was read: the patch applies only if nothing changed since.
    pub resource_version: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub strip_data: bool,
    /// Removes a stale marking (`docs/contract.md` §6.8): the state label unless `labels`
    /// sets it, and the stale annotations.
    pub clear_stale: bool,
}

impl SecretPatch {
    fn to_merge_patch(&self) -> Value {
        let mut patch = json!({
            "metadata": {
                "resourceVersion": self.resource_version,
                "labels": self.labels,
                "annotations": self.annotations,
            }
        });
        if self.strip_data {
            patch["data"] = Value::Null;
            // `kubectl apply` (and Argo CD's default sync) keeps the whole manifest, values
            // included, in this annotation: a stripped Secret must not keep that copy.
            patch["metadata"]["annotations"][LAST_APPLIED] = Value::Null;
        }
        if self.clear_stale {
            let metadata = &mut patch["metadata"];
            for key in [names::STALE_AT, names::AUTHORITY_UID] {
                metadata["annotations"][key] = Value::Null;
            }
            if !self.labels.contains_key(names::STATE_LABEL) {
                metadata["labels"][names::STATE_LABEL] = Value::Null;
            }
        }
        patch
    }
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The answer to a conditional write.
#[derive(Debug, PartialEq, Eq)]
pub enum Conditional {
    Applied {
        resource_version: String,
    },
    /// The object changed since it was read: re-read and re-decide.
    Conflict,
    /// The object is gone.
    Gone,
}

enum Failure {
    NotFound,
    Conflict,
    Fatal(Error),
}

/// The answer to a conditional write, from the new resourceVersion or the kube error.
fn conditional(
    written: std::result::Result<String, kube::Error>,
    action: &str,
) -> Result<Conditional> {
    match written {
        Ok(resource_version) => Ok(Conditional::Applied { resource_version }),
        Err(e) => match classify(e, action) {
            Failure::Conflict => Ok(Conditional::Conflict),
            Failure::NotFound => Ok(Conditional::Gone),
            Failure::Fatal(error) => Err(error),
        },
    }
}

/// Where in a kubeconfig a parse error is (", line N column M"), taken from the error's
/// text without quoting any of the file; empty when it names no line.
fn location(error: &(dyn std::error::Error + 'static)) -> String {
    let text = crate::error::causes(error)
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let number_after = |label: &str, from: usize| -> Option<(u64, usize)> {
        let start = from + text[from..].find(label)? + label.len();
        let digits: String = text[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        Some((digits.parse().ok()?, start + digits.len()))
    };
    match number_after("line ", 0) {
        Some((line, after)) => match number_after("column ", after) {
            Some((column, _)) => format!(" (line {line}, column {column})"),
            None => format!(" (line {line})"),
        },
        None => String::new(),
    }
}

/// The outcome of a read: 404 is an answer (absent); a read cannot conflict.
fn found<T>(result: std::result::Result<T, kube::Error>, action: &str) -> Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) => match classify(e, action) {
            Failure::NotFound => Ok(None),
            Failure::Conflict => Err(Error::Remote {
                action: action.into(),
                detail: "unexpected conflict".into(),
            }),
            Failure::Fatal(error) => Err(error),
        },
    }
}

/// Classifies every kube error in one place.
fn classify(error: kube::Error, action: &str) -> Failure {
    let fatal = |e: Error| Failure::Fatal(e);
    match error {
        kube::Error::Api(status) => {
            let message = status
                .message
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            match status.code {
                404 => Failure::NotFound,
                409 => Failure::Conflict,
                code => fatal(Error::from_status(code, action, "the API server", message)),
            }
        }
        kube::Error::HyperError(e) => fatal(Error::Temporary {
            action: action.into(),
            detail: format!("connection failed: {e}"),
        }),
        kube::Error::Service(e) => fatal(match transport_fault(e.as_ref()) {
            TransportFault::Certificate => Error::Usage(format!(
                "{action}: the API server's TLS certificate is not trusted: {e}"
            )),
            TransportFault::NotTls => Error::Usage(format!(
                "{action}: the API server does not answer TLS at this address"
            )),
            TransportFault::TimedOut => Error::temporary(action, "request timed out"),
            TransportFault::Unreachable => {
                Error::temporary(action, format!("cannot reach the API server: {e}"))
            }
        }),
        // Never attach the deserializer's message: it could quote a Secret's data.
        kube::Error::SerdeError(_) | kube::Error::FromUtf8(_) => fatal(Error::Remote {
            action: action.into(),
            detail: "the API server's response could not be read".into(),
        }),
        // The plugin's command line and output may hold credentials: none of it is quoted.
        kube::Error::Auth(_) => fatal(Error::Unauthenticated {
            action: action.into(),
            detail: "the kubeconfig's credentials (token file or exec plugin) could not be \
                     obtained"
                .into(),
        }),
        kube::Error::InferConfig(e) => fatal(Error::Usage(format!(
            "no usable Kubernetes configuration{}",
            location(&e)
        ))),
        kube::Error::InferKubeconfig(e) => fatal(Error::Usage(format!(
            "the kubeconfig is not usable{}",
            location(&e)
        ))),
        other => fatal(Error::Remote {
            action: action.into(),
            detail: other.to_string(),
        }),
    }
}

fn secret_header(metadata: ObjectMeta, cluster: Option<&ClusterName>) -> Result<SecretHeader> {
    let missing = |field: &str| Error::Remote {
        action: "list Secrets".into(),
        detail: format!("the API server returned a Secret without {field}"),
    };
    Ok(SecretHeader {
        reference: SecretRef::new(
            metadata.namespace.ok_or_else(|| missing("a namespace"))?,
            metadata.name.ok_or_else(|| missing("a name"))?,
        )
        .in_cluster(cluster.cloned()),
        uid: metadata.uid.ok_or_else(|| missing("a uid"))?,
        labels: metadata.labels.unwrap_or_default(),
        annotations: metadata.annotations.unwrap_or_default(),
    })
}

fn source_secret(secret: Secret, cluster: Option<&ClusterName>) -> Result<SourceSecret> {
    let metadata = secret.metadata;
    let missing = |field: &str| Error::Remote {
        action: "read Secret".into(),
        detail: format!("the API server returned a Secret without {field}"),
    };
    let namespace = metadata.namespace.ok_or_else(|| missing("a namespace"))?;
    let name = metadata.name.ok_or_else(|| missing("a name"))?;
    let data: SecretData = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| (key, SecretBytes::new(value.0)))
        .collect();
    Ok(SourceSecret {
        reference: SecretRef::new(namespace, name).in_cluster(cluster.cloned()),
        uid: metadata.uid.ok_or_else(|| missing("a uid"))?,
        resource_version: metadata
            .resource_version
            .ok_or_else(|| missing("a resourceVersion"))?,
        labels: metadata.labels.unwrap_or_default(),
        annotations: metadata.annotations.unwrap_or_default(),
        secret_type: secret.type_.unwrap_or_else(|| "Opaque".into()),
        data,
    })
}

/// A connected Kubernetes client.
pub struct Kube {
    client: Client,
    retry: RetryPolicy,
    cluster: Option<ClusterName>,
}

impl Kube {
    pub async fn connect(settings: &KubeSettings, retry: RetryPolicy) -> Result<Kube> {
        let options = KubeConfigOptions {
            context: settings.context.clone(),
            ..Default::default()
        };
        let timeout = settings.timeout;
        // A kubeconfig's errors quote it (tokens included) and an exec plugin's quote its
        // command line and output: say where the problem is, never what the file holds.
        let config = match (&settings.kubeconfig, &settings.context) {
            (Some(path), _) => {
                let unusable = |e: &(dyn std::error::Error + 'static)| {
                    Error::Usage(format!(
                        "--kubeconfig {}: not a usable kubeconfig{}",
                        path.display(),
                        location(e)
                    ))
                };
                let kubeconfig = Kubeconfig::read_from(path).map_err(|e| unusable(&e))?;
                Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .map_err(|e| unusable(&e))?
            }
            (None, Some(_)) => Config::from_kubeconfig(&options).await.map_err(|e| {
                Error::Usage(format!(
                    "the kubeconfig (KUBECONFIG or ~/.kube/config) is not usable{}",
                    location(&e)
                ))
            })?,
            (None, None) => Config::infer().await.map_err(|e| {
                Error::Usage(format!(
                    "no Kubernetes configuration: not in a cluster, and the kubeconfig \
                     (KUBECONFIG or ~/.kube/config) is missing or not usable{}",
                    location(&e)
                ))
            })?,
        };
        let mut config = config;
        // secops retries itself, on its own policy; kube's built-in retry would multiply it.
        config.default_retry = false;
        config.connect_timeout = Some(timeout);
        config.read_timeout = Some(timeout);
        config.write_timeout = Some(timeout);
        let client =
            Client::try_from(config).map_err(|e| match classify(e, "build Kubernetes client") {
                Failure::Fatal(error) => error,
                _ => Error::Usage("cannot build the Kubernetes client".into()),
            })?;
        Ok(Kube {
            client,
            retry,
            cluster: settings.cluster.clone(),
        })
    }

    pub fn default_namespace(&self) -> &str {
        self.client.default_namespace()
    }

    fn secrets(&self, namespace: Option<&str>) -> Api<Secret> {
        match namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }

    /// One page (at most [`PAGE_SIZE`]) of the Secrets matching the selector, metadata only
    /// (a `PartialObjectMetadataList`), and the token of the next: a walk over thousands of
    /// Secrets, or over a hundred of 700 KiB, fetches each Secret's data only when it
    /// handles that Secret.
    pub async fn list_secret_headers(
        &self,
        namespace: Option<&str>,
        selector: &str,
        continue_token: Option<String>,
    ) -> Result<(Vec<SecretHeader>, Option<String>)> {
        let scope = namespace
            .map(|ns| format!("namespace {ns}"))
            .unwrap_or_else(|| "all namespaces".into());
        let action = format!("list Secrets ({selector}) in {scope}");
        let api = self.secrets(namespace);
        let mut params = ListParams::default().labels(selector).limit(PAGE_SIZE);
        if let Some(token) = &continue_token {
            params = params.continue_token(token);
        }
        let page = self
            .retry
            .run(|| async {
                api.list_metadata(&params)
                    .await
                    .map_err(|e| match classify(e, &action) {
                        Failure::Fatal(error) => error,
                        Failure::NotFound => Error::NotFound {
                            what: scope.clone(),
                        },
                        Failure::Conflict => Error::Temporary {
                            action: action.clone(),
                            detail: "list expired, start again".into(),
                        },
                    })
            })
            .await?;
        let next = page.metadata.continue_.filter(|c| !c.is_empty());
        let headers = page
            .items
            .into_iter()
            .map(|item| secret_header(item.metadata, self.cluster.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        Ok((headers, next))
    }

    pub async fn get_secret(&self, reference: &SecretRef) -> Result<Option<SourceSecret>> {
        let action = format!("read Secret {reference}");
        let api = self.secrets(Some(&reference.namespace));
        let secret = self
            .retry
            .run(|| async { found(api.get(&reference.name).await, &action) })
            .await?;
        secret
            .map(|s| source_secret(s, self.cluster.as_ref()))
            .transpose()
    }

    pub async fn patch_secret(
        &self,
        reference: &SecretRef,
        patch: &SecretPatch,
    ) -> Result<Conditional> {
        let action = format!("patch Secret {reference}");
        let api = self.secrets(Some(&reference.namespace));
        let body = Patch::Merge(patch.to_merge_patch());
        self.retry
            .run(|| async {
                let patched = api
                    .patch(&reference.name, &PatchParams::default(), &body)
                    .await;
                conditional(
                    patched.map(|secret| secret.metadata.resource_version.unwrap_or_default()),
                    &action,
                )
            })
            .await
    }

    /// Deletes the Secret only if it is still the object (uid) and version that was read.
    pub async fn delete_secret(
        &self,
        reference: &SecretRef,
        uid: &str,
        resource_version: &str,
    ) -> Result<Conditional> {
        let action = format!("delete Secret {reference}");
        let api = self.secrets(Some(&reference.namespace));
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: Some(resource_version.to_string()),
            }),
            ..DeleteParams::default()
        };
        self.retry
            .run(|| async {
                let deleted = api.delete(&reference.name, &params).await;
                conditional(deleted.map(|_| String::new()), &action)
            })
            .await
    }

    /// Posts a Kubernetes Event about a Secret. An Event is a courtesy: failing to post one
    /// is logged and never fails the step.
    pub async fn record_event(
        &self,
        reference: &SecretRef,
        uid: &str,
        reason: &str,
        message: &str,
        warning: bool,
    ) {
        let now = crate::clock::now_rfc3339();
        let event = json!({
            "metadata": {"generateName": format!("{}.", reference.name), "namespace": reference.namespace},
            "involvedObject": {"apiVersion": "v1", "kind": "Secret", "namespace": reference.namespace, "name": reference.name, "uid": uid},
            "reason": reason,
            "message": message,
            "type": if warning { "Warning" } else { "Normal" },
            "source": {"component": "secops"},
            "reportingComponent": "secops",
            "reportingInstance": std::env::var("POD_NAME").unwrap_or_else(|_| "secops".into()),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        });
        // Sent as raw JSON and the answer left unparsed: an Event is write-only for secops,
        // and the k8s-openapi round trip was a fifth of a batch handover's CPU.
        let url = format!("/api/v1/namespaces/{}/events", reference.namespace);
        let posted = match kube::core::Request::new(url)
            .create(&PostParams::default(), event.to_string().into_bytes())
        {
            Ok(request) => self.client.request_text(request).await.map(drop),
            Err(e) => Err(kube::Error::BuildRequest(e)),
        };
        if let Err(e) = posted {
            let detail = match classify(e, "post Event") {
                Failure::Fatal(error) => error.to_string(),
                _ => "not accepted".into(),
            };
            tracing::warn!(secret = %reference, reason, error = %detail, "could not post the Kubernetes Event");
        }
    }

    /// Asks a consumer to pick up the rotation `ours`: its trigger (the record's completion
    /// instant and the id, identical on every run of one id) in ESO's `force-sync`
    /// annotation on an ExternalSecret, or in `secops.dev/restartedAt` on a workload's pod
    /// template, as `kubectl rollout restart` does, with the rotation id and version it
    /// serves recorded beside. A consumer already refreshed for this rotation or a later
    /// version of its path is left alone, so a repeated id never rolls it again, while a
    /// later rotation always does, even within the same second. Conditional on the
    /// resourceVersion read.
    pub async fn refresh_consumer(
        &self,
        consumer: &Consumer,
        ours: &RefreshFor,
    ) -> Result<Refresh> {
        let api = self.consumer_api(consumer);
        let action = format!("refresh {consumer}");
        if jiff::Timestamp::from_second(ours.stamp).is_err() {
            let stamp = ours.stamp;
            return Err(Error::Internal(format!(
                "{action}: stamp {stamp} out of range"
            )));
        }
        let trigger = ours.trigger();
        for _ in 0..RACE_ATTEMPTS {
            let current = self.get_consumer(&api, consumer, &action).await?;
            let annotation = |name: &str| {
                current
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(name))
                    .cloned()
            };
            let present = match consumer.kind {
                ConsumerKind::ExternalSecret => annotation("force-sync"),
                _ => current.data["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT]
                    .as_str()
                    .map(String::from),
            };
            let rotated = annotation(ROTATED_VERSION);
            if is_refreshed(present.as_deref(), rotated.as_deref(), ours) {
                let stamp = present.as_deref().and_then(trigger_instant);
                let since = SyncSince::Stamped(stamp.unwrap_or(ours.stamp));
                return Ok(Refresh::AlreadyStamped(since));
            }
            let synced_before = current.data["status"]["syncedResourceVersion"]
                .as_str()
                .map(String::from);
            let resource_version = current.metadata.resource_version.unwrap_or_default();
            // Which rotation the consumer now serves, written with its trigger in one
            // conditional patch.
            let mut annotations = json!({ (ROTATION_ID): ours.id });
            if let Some(version) = ours.rotated_version() {
                annotations[ROTATED_VERSION] = json!(version);
            }
            let patch = match consumer.kind {
                ConsumerKind::ExternalSecret => {
                    annotations["force-sync"] = json!(trigger);
                    json!({
                        "metadata": {"resourceVersion": resource_version, "annotations": annotations},
                    })
                }
                _ => json!({
                    "metadata": {"resourceVersion": resource_version, "annotations": annotations},
                    "spec": {"template": {"metadata": {"annotations": {(RESTARTED_AT): trigger}}}},
                }),
            };
            let applied = self
                .retry
                .run(|| async {
                    match api
                        .patch(
                            &consumer.name,
                            &PatchParams::default(),
                            &Patch::Merge(&patch),
                        )
                        .await
                    {
                        Ok(_) => Ok(true),
                        Err(e) => match classify(e, &action) {
                            Failure::Conflict => Ok(false),
                            Failure::NotFound => Err(Error::NotFound {
                                what: consumer.to_string(),
                            }),
                            Failure::Fatal(error) => Err(error),
                        },
                    }
                })
                .await?;
            if applied {
                return Ok(Refresh::Stamped(SyncSince::Patched { synced_before }));
            }
        }
        Err(Error::LostRace { action })
    }

    /// The data of a ConfigMap (`vault-setup --from-configmap`); `None` when absent.
    pub async fn get_configmap(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>> {
        let action = format!("read ConfigMap {namespace}/{name}");
        let api: Api<k8s_openapi::api::core::v1::ConfigMap> =
            Api::namespaced(self.client.clone(), namespace);
        let map = self
            .retry
            .run(|| async { found(api.get(name).await, &action) })
            .await?;
        Ok(map.map(|m| m.data.unwrap_or_default()))
    }

    fn consumer_api(&self, consumer: &Consumer) -> Api<DynamicObject> {
        let (group, version, kind) = match consumer.kind {
            ConsumerKind::ExternalSecret => ("external-secrets.io", "v1", "ExternalSecret"),
            ConsumerKind::Deployment => ("apps", "v1", "Deployment"),
            ConsumerKind::StatefulSet => ("apps", "v1", "StatefulSet"),
            ConsumerKind::DaemonSet => ("apps", "v1", "DaemonSet"),
        };
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
        Api::namespaced_with(self.client.clone(), &consumer.namespace, &resource)
    }

    async fn get_consumer(
        &self,
        api: &Api<DynamicObject>,
        consumer: &Consumer,
        action: &str,
    ) -> Result<DynamicObject> {
        self.retry
            .run(|| async { found(api.get(&consumer.name).await, action) })
            .await?
            .ok_or_else(|| Error::NotFound {
                what: consumer.to_string(),
            })
    }

    /// Whether ESO has synced an ExternalSecret since `stamp`, from its documented status:
    /// `status.refreshTime` and the `Ready` condition.
    pub async fn external_secret_sync(
        &self,
        consumer: &Consumer,
        since: &SyncSince,
    ) -> Result<Sync> {
        let api = self.consumer_api(consumer);
        let action = format!("read the sync status of {consumer}");
        let current = self.get_consumer(&api, consumer, &action).await?;
        let status = &current.data["status"];
        let ready = status["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"));
        Ok(judge_sync_since(
            status["refreshTime"].as_str(),
            status["syncedResourceVersion"].as_str(),
            ready.and_then(|c| c["status"].as_str()),
            ready.and_then(|c| c["reason"].as_str()),
            since,
        ))
    }
}
