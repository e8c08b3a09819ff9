//! `push-secret`: publish an operator-generated (internal) Secret into Vault, owned by that
//! Secret, so ExternalSecrets elsewhere can read it (PushSecret semantics, RFC 5a).

use std::collections::BTreeMap;

use futures::stream::{self, StreamExt as _};
use serde_json::{json, Value};

use super::steps::now_rfc3339;
use super::Context;
use crate::cli::ScopeArgs;
use crate::domain::bootstrap::{SourceSecret, Target};
use crate::domain::fingerprint::{Fingerprint, FingerprintKey};
use crate::domain::names;
use crate::domain::provenance::{Origin, OwnershipRecord, Provenance};
use crate::domain::SecretRef;
use crate::error::{Error, Result};
use crate::kube::{Conditional, SecretPatch};
use crate::logging::audit;
use crate::output::{batch_report, Report};
use crate::vault::{base64_keys, CasWrite};

const CONCURRENCY: usize = 8;
const RACE_ATTEMPTS: usize = 5;

fn internal_selector() -> String {
    format!("{}={}", names::CLASS_LABEL, names::CLASS_INTERNAL)
}

/// What the path holds for this source, and what to do about it.
enum Decision {
    /// Vault holds this data already; `claim` carries the metadata of an unowned path to
    /// record ownership in.
    Unchanged {
        version: u64,
        claim: Option<BTreeMap<String, String>>,
    },
    Write {
        cas: u64,
        custom: BTreeMap<String, String>,
    },
}

async fn decide(
    ctx: &Context,
    key: &FingerprintKey,
    source: &SourceSecret,
    target: &Target,
    fingerprint: &Fingerprint,
) -> Result<Decision> {
    let origin = Origin::Push(source.reference.clone());
    let Some(metadata) = ctx.vault.read_metadata(&target.mount, &target.path).await? else {
        return Ok(Decision::Write {
            cas: 0,
            custom: BTreeMap::new(),
        });
    };
    match Provenance::from_metadata(&metadata.custom) {
        Some(p) if p.is_owned_by(&origin, &source.uid) => match p.origin_fingerprint {
            Some(recorded) if &recorded == fingerprint => Ok(Decision::Unchanged {
                version: p.origin_version,
                claim: None,
            }),
            _ => Ok(Decision::Write {
                cas: metadata.current_version,
                custom: metadata.custom,
            }),
        },
        Some(p) => Err(Error::NotOwned {
            path: format!("{}/{}", target.mount, target.path),
            owner: format!("{} (uid {})", p.origin, p.origin_uid),
            claimant: origin.to_string(),
        }),
        None => {
            // Unowned: the same data is claimed without a new version.
            let held = ctx
                .vault
                .read(
                    &target.mount,
                    &target.path,
                    None,
                    &base64_keys(&source.data),
                )
                .await?;
            match held {
                Some(held) if key.fingerprint(&held.data) == *fingerprint => {
                    Ok(Decision::Unchanged {
                        version: held.version,
                        claim: Some(metadata.custom),
                    })
                }
                _ => Ok(Decision::Write {
                    cas: metadata.current_version,
                    custom: metadata.custom,
                }),
            }
        }
    }
}

async fn record_ownership(
    ctx: &Context,
    source: &SourceSecret,
    target: &Target,
    version: u64,
    fingerprint: &Fingerprint,
    mut custom: BTreeMap<String, String>,
) -> Result<()> {
    let origin = Origin::Push(source.reference.clone());
    let at = now_rfc3339();
    OwnershipRecord {
        origin: &origin,
        uid: &source.uid,
        version,
        fingerprint,
        base64_keys: &base64_keys(&source.data),
        k8s_type: &source.secret_type,
        at: &at,
        at_key: None,
    }
    .apply(&mut custom);
    ctx.vault
        .write_metadata(&target.mount, &target.path, &custom)
        .await
}

/// Records the push on the source, conditionally; a source that changed meanwhile is left
/// for the next push to publish.
async fn annotate_source(
    ctx: &Context,
    key: &FingerprintKey,
    mut source: SourceSecret,
    version: u64,
    fingerprint: &Fingerprint,
) -> Result<()> {
    let kube = ctx.kube()?;
    for _ in 0..RACE_ATTEMPTS {
        let current = |name: &str| source.annotations.get(name).map(String::as_str);
        if current(names::VAULT_VERSION) == Some(version.to_string().as_str())
            && current(names::FINGERPRINT) == Some(fingerprint.as_str())
        {
            return Ok(());
        }
        let patch = SecretPatch {
            resource_version: source.resource_version.clone(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::from([
                (names::PUSHED_AT.to_string(), now_rfc3339()),
                (names::VAULT_VERSION.to_string(), version.to_string()),
                (names::FINGERPRINT.to_string(), fingerprint.to_string()),
            ]),
            strip_data: false,
        };
        match kube.patch_secret(&source.reference, &patch).await? {
            Conditional::Applied { .. } => return Ok(()),
            Conditional::Gone => {
                return Err(Error::NotFound {
                    what: format!("Secret {}", source.reference),
                })
            }
            Conditional::Conflict => {
                let uid = source.uid.clone();
                source = match kube.get_secret(&source.reference).await? {
                    Some(fresh)
                        if fresh.uid == uid && key.fingerprint(&fresh.data) == *fingerprint =>
                    {
                        fresh
                    }
                    Some(_) => {
                        tracing::warn!(secret = %source.reference, "the source changed during the push; the next push publishes it");
                        return Ok(());
                    }
                    None => {
                        return Err(Error::NotFound {
                            what: format!("Secret {}", source.reference),
                        })
                    }
                };
            }
        }
    }
    Err(Error::Temporary {
        action: format!("annotate {}", source.reference),
        detail: "lost the optimistic-lock race repeatedly".into(),
    })
}

async fn push_one(
    ctx: &Context,
    key: &FingerprintKey,
    source: SourceSecret,
    path: Option<&str>,
) -> Result<Value> {
    if source.labels.get(names::CLASS_LABEL).map(String::as_str) != Some(names::CLASS_INTERNAL) {
        return Err(Error::InvalidSource {
            secret: source.reference.to_string(),
            reason: format!("not labelled {}", internal_selector()),
        });
    }
    let target = source.target(&ctx.settings.kv_mount, &ctx.settings.allowed, path)?;
    source.require_data()?;
    let fingerprint = key.fingerprint(&source.data);
    let result = |outcome: &str, version: u64| {
        json!({
            "namespace": source.reference.namespace,
            "name": source.reference.name,
            "uid": source.uid,
            "outcome": outcome,
            "mount": target.mount,
            "path": target.path,
            "version": version,
            "fingerprint": fingerprint,
        })
    };
    for _ in 0..RACE_ATTEMPTS {
        let (cas, custom) = match decide(ctx, key, &source, &target, &fingerprint).await? {
            Decision::Unchanged { version, claim } => {
                if ctx.settings.dry_run {
                    return Ok(result("unchanged", version));
                }
                // Claim unowned identical data, and finish a push whose annotation was lost.
                if let Some(custom) = claim {
                    record_ownership(ctx, &source, &target, version, &fingerprint, custom).await?;
                }
                let document = result("unchanged", version);
                annotate_source(ctx, key, source, version, &fingerprint).await?;
                return Ok(document);
            }
            Decision::Write { cas, custom } => (cas, custom),
        };
        if ctx.settings.dry_run {
            return Ok(result("planned", cas));
        }
        let CasWrite::Written { version } = ctx
            .vault
            .write(&target.mount, &target.path, &source.data, cas)
            .await?
        else {
            continue;
        };
        record_ownership(ctx, &source, &target, version, &fingerprint, custom).await?;
        audit(
            "push",
            &format!("{}/{}", target.mount, target.path),
            "pushed",
            Some(version),
            Some(&fingerprint),
        );
        let message = format!(
            "pushed to Vault {}/{} version {version}",
            target.mount, target.path
        );
        ctx.kube()?
            .record_event(&source.reference, &source.uid, "Pushed", &message, false)
            .await;
        let document = result("pushed", version);
        annotate_source(ctx, key, source, version, &fingerprint).await?;
        return Ok(document);
    }
    Err(Error::Temporary {
        action: format!("push {}", source.reference),
        detail: "the Vault path kept changing under us".into(),
    })
}

pub async fn run(
    secret: Option<&str>,
    path: Option<&str>,
    scope: &ScopeArgs,
    ctx: &Context,
) -> Result<Report> {
    let kube = ctx.kube()?;
    if let Some(secret) = secret {
        let reference = SecretRef::parse(secret)?;
        let source = kube
            .get_secret(&reference)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: format!("Secret {reference} (the push source is gone)"),
            })?;
        let key = ctx.fingerprint_key().await?;
        let mut document = push_one(ctx, &key, source, path).await?;
        document["command"] = json!("push-secret");
        document["dry_run"] = json!(ctx.settings.dry_run);
        return Ok(Report::new(document));
    }
    if path.is_some() {
        return Err(Error::Usage(
            "--path needs --secret: a batch push takes each path from its Secret's annotation"
                .into(),
        ));
    }
    let mut sources = Vec::new();
    for namespace in ctx.namespaces(scope) {
        sources.extend(
            kube.list_secrets(namespace.as_deref(), &internal_selector())
                .await?,
        );
    }
    sources.sort_by(|a, b| a.reference.cmp(&b.reference));
    let key = ctx.fingerprint_key().await?;
    let items: Vec<Value> = stream::iter(sources)
        .map(|source| {
            let key = &key;
            async move {
                let identity = json!({"namespace": source.reference.namespace, "name": source.reference.name, "uid": source.uid});
                match push_one(ctx, key, source, None).await {
                    Ok(item) => item,
                    Err(error) => {
                        let mut item = identity;
                        item["outcome"] = json!("failed");
                        item["exit_code"] = json!(error.exit_code());
                        item["error"] = json!({"kind": error.kind(), "message": error.to_string()});
                        item
                    }
                }
            }
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    Ok(batch_report(
        "push-secret",
        items,
        ctx.settings.dry_run,
        json!({}),
    ))
}
