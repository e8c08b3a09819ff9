//! `mark-consumed`: render ONE handed-over bootstrap Secret inert, only after Vault is
//! shown to hold exactly its data.

use serde_json::json;

use super::steps::{mark, Handed};
use super::Context;
use crate::cli::ConsumeMode;
use crate::domain::bootstrap::{check_consumable, ConsumeCheck};
use crate::domain::names;
use crate::domain::provenance::{decode_key_list, Provenance};
use crate::domain::SecretRef;
use crate::error::{Error, Result};
use crate::output::Report;

pub async fn run(
    secret: &str,
    expect_uid: Option<&str>,
    mode: ConsumeMode,
    ctx: &Context,
) -> Result<Report> {
    let reference = SecretRef::parse(secret)?;
    let source = match ctx.kube()?.get_secret(&reference).await? {
        Some(source) => source,
        // A deleted Secret was consumed by `--mode delete` (or never existed: the caller named it).
        None => {
            return Err(Error::NotFound {
                what: format!("Secret {reference}"),
            })
        }
    };
    source.require_uid(expect_uid)?;
    let uid = source.uid.clone();
    let report = |outcome: &str,
                  mount: &str,
                  path: &str,
                  version: Option<u64>,
                  fingerprint: Option<String>| {
        Report::new(json!({
            "command": "mark-consumed",
            "outcome": outcome,
            "namespace": reference.namespace,
            "name": reference.name,
            "uid": uid,
            "mode": mode,
            "mount": mount,
            "path": path,
            "version": version,
            "fingerprint": fingerprint,
            "dry_run": ctx.settings.dry_run,
        }))
    };
    let target = source.target(&ctx.settings.kv_mount, &ctx.settings.allowed, None)?;
    if source.is_consumed() {
        let version = source
            .annotations
            .get(names::VAULT_VERSION)
            .and_then(|v| v.parse().ok());
        let fingerprint = source.annotations.get(names::FINGERPRINT).cloned();
        return Ok(report(
            "already-consumed",
            &target.mount,
            &target.path,
            version,
            fingerprint,
        ));
    }
    let metadata = ctx.vault.read_metadata(&target.mount, &target.path).await?;
    let provenance = metadata
        .as_ref()
        .and_then(|m| Provenance::from_metadata(&m.custom));
    let (version, recorded) =
        match check_consumable(provenance.as_ref(), &source.bootstrap_origin(), &source.uid) {
            ConsumeCheck::Verify { version, recorded } => (version, recorded),
            ConsumeCheck::NotHandedOver => {
                return Err(Error::NotHandedOver {
                    secret: reference.to_string(),
                    path: format!("{}/{}", target.mount, target.path),
                })
            }
            ConsumeCheck::Conflict { owner } => {
                return Err(Error::NotOwned {
                    path: format!("{}/{}", target.mount, target.path),
                    owner,
                    claimant: source.bootstrap_origin().to_string(),
                })
            }
        };
    let key = ctx.fingerprint_key().await?;
    // Verify what Vault actually holds at the handover version, not only what its metadata
    // claims; if rotation has since destroyed that version, the recorded fingerprint stands in.
    let base64 = metadata
        .as_ref()
        .map(|m| decode_key_list(&m.custom))
        .unwrap_or_default();
    let vault_fingerprint = match ctx
        .vault
        .read(&target.mount, &target.path, Some(version), &base64)
        .await?
    {
        Some(held) => Some(key.fingerprint(&held.data)),
        None => recorded,
    };
    let Some(vault_fingerprint) = vault_fingerprint else {
        return Err(Error::Refused {
            action: format!("mark {reference} consumed"),
            detail: format!("Vault no longer holds version {version} and recorded no fingerprint for it; nothing to verify against"),
        });
    };
    let fingerprint = key.fingerprint(&source.data);
    let handed = Handed {
        outcome: "unchanged",
        target: target.clone(),
        version,
        vault_fingerprint: Some(vault_fingerprint),
        fingerprint: fingerprint.clone(),
    };
    let marked = mark(ctx, &key, source, &handed, mode).await?;
    Ok(report(
        marked.outcome,
        &target.mount,
        &target.path,
        Some(marked.version),
        Some(fingerprint.to_string()),
    ))
}
