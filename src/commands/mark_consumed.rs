//! `mark-consumed`: render ONE handed-over bootstrap Secret inert, only after Vault is
//! shown to hold exactly its data (`docs/contract.md` §6.2).

use serde::Serialize;

use super::handover_protocol::{mark, Handed};
use super::Context;
use crate::domain::bootstrap::{check_consumable, ConsumeCheck, ConsumeMode};
use crate::domain::names::{self, meta, Class};
use crate::domain::outcome::Outcome;
use crate::domain::provenance::{Origin, Provenance};
use crate::domain::SecretRef;
use crate::error::{Error, Result};
use crate::output::{Report, SecretIdentity};

pub struct Plan {
    pub secret: SecretRef,
    pub expect_uid: Option<String>,
    pub mode: ConsumeMode,
    /// The mount (`None`: `--kv-mount`) and path the plan named, to find a finished
    /// handover in Vault once `--mode delete` has removed the Secret.
    pub recorded: Option<(Option<String>, String)>,
}

#[derive(Serialize)]
struct Marked<'a> {
    command: &'static str,
    outcome: Outcome,
    #[serde(flatten)]
    secret: SecretIdentity,
    mode: ConsumeMode,
    mount: &'a str,
    path: &'a str,
    version: Option<u64>,
    fingerprint: Option<String>,
    dry_run: bool,
}

pub async fn run(plan: &Plan, ctx: &Context) -> Result<Report> {
    let reference = &plan.secret;
    let Some(source) = ctx.kube()?.get_secret(reference).await? else {
        return consumed_by_deletion(plan, ctx).await;
    };
    source.require_class(Class::Bootstrap)?;
    source.require_uid(plan.expect_uid.as_deref())?;
    // A refilled tombstone is stripped again, whatever mode this run was given.
    let mode = match source.is_refilled_tombstone() {
        true => ConsumeMode::Strip,
        false => plan.mode,
    };
    let identity = SecretIdentity::from(&source);
    let target = source.target(&ctx.settings.kv_mount, &ctx.settings.allowed, None)?;
    let report = |outcome, version, fingerprint| {
        Report::new(&Marked {
            command: "mark-consumed",
            outcome,
            secret: identity.clone(),
            mode,
            mount: &target.mount,
            path: &target.path,
            version,
            fingerprint,
            dry_run: ctx.settings.dry_run,
        })
    };
    if source.is_consumed() && !source.is_refilled_tombstone() {
        let fingerprint = source.annotations.get(names::FINGERPRINT).cloned();
        return Ok(report(
            Outcome::AlreadyConsumed,
            source.recorded_version(),
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
                    path: target.to_string(),
                })
            }
            ConsumeCheck::Conflict { owner } => {
                return Err(Error::NotOwned {
                    path: target.to_string(),
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
        .map(|m| crate::domain::rotation::base64_keys_at(&m.custom, version))
        .unwrap_or_default();
    let vault_fingerprint = match ctx
        .vault
        .read(&target.mount, &target.path, Some(version), &base64)
        .await?
    {
        Some(held) => Some(key.fingerprint(&target, &held.data)),
        None => recorded,
    };
    let Some(vault_fingerprint) = vault_fingerprint else {
        return Err(Error::Refused {
            action: format!("mark {reference} consumed"),
            detail: format!("Vault no longer holds version {version} and recorded no fingerprint for it; nothing to verify against"),
        });
    };
    let fingerprint = key.fingerprint(&target, &source.data);
    let handed = Handed {
        outcome: Outcome::Unchanged,
        target: target.clone(),
        version,
        vault_fingerprint: Some(vault_fingerprint),
        fingerprint: fingerprint.clone(),
    };
    let marked = mark(ctx, &key, source, &handed, mode).await?;
    Ok(report(
        marked.outcome,
        Some(marked.version),
        Some(fingerprint.to_string()),
    ))
}

/// A Secret that is gone was consumed by `--mode delete` if Vault's provenance at the path
/// the plan named says so (a re-run after the delete); otherwise it was never there.
async fn consumed_by_deletion(plan: &Plan, ctx: &Context) -> Result<Report> {
    let reference = &plan.secret;
    let not_found = || Error::NotFound {
        what: format!("Secret {reference}"),
    };
    let Some((mount, path)) = &plan.recorded else {
        return Err(not_found());
    };
    let default_mount = &ctx.settings.kv_mount;
    let mount = mount.as_ref().unwrap_or(default_mount);
    if !ctx.settings.allowed.allows_mount(mount, default_mount) {
        return Err(not_found());
    }
    let Some(metadata) = ctx.vault.read_metadata(mount, path).await? else {
        return Err(not_found());
    };
    let deleted = metadata.custom.get(meta::CONSUMED_MODE).map(String::as_str)
        == Some(ConsumeMode::Delete.as_str());
    let provenance = Provenance::from_metadata(&metadata.custom);
    let Some(provenance) = provenance.filter(|p| {
        p.origin == Origin::Bootstrap(reference.clone().in_cluster(ctx.settings.cluster.clone()))
            && plan
                .expect_uid
                .as_ref()
                .is_none_or(|uid| *uid == p.origin_uid)
    }) else {
        return Err(not_found());
    };
    if !deleted {
        return Err(not_found());
    }
    Ok(Report::new(&Marked {
        command: "mark-consumed",
        outcome: Outcome::AlreadyConsumed,
        secret: SecretIdentity {
            namespace: reference.namespace.clone(),
            name: reference.name.clone(),
            uid: provenance.origin_uid.clone(),
        },
        mode: ConsumeMode::Delete,
        mount,
        path,
        version: Some(provenance.origin_version),
        fingerprint: provenance.origin_fingerprint.map(|f| f.to_string()),
        dry_run: ctx.settings.dry_run,
    }))
}
