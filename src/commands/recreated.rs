//! Carrying out [`crate::domain::readopt`] for the handover and push protocols: re-adopt a
//! re-created origin whose data is what Vault recorded, or mark it stale
//! (`docs/contract.md` §6.8).

use std::collections::BTreeMap;

use super::ownership::{check_metadata_limits, claim, not_owned, patch_fenced, Claimed};
use super::Context;
use crate::audit::{Action, AuditEvent};
use crate::clock::now_rfc3339;
use crate::domain::bootstrap::{SourceSecret, Target};
use crate::domain::names;
use crate::domain::outcome::Outcome;
use crate::domain::provenance::{Origin, Provenance};
use crate::domain::readopt::readoption_changes;
use crate::error::{Error, Result};
use crate::kube::{Conditional, SecretPatch};

/// Moves the path's provenance to `secret` (its new uid), without writing the secret. The
/// claim decides between racing re-adopters: it is taken over (`cas`) before provenance
/// changes, so only the live object's runs get here.
pub async fn readopt(
    ctx: &Context,
    target: &Target,
    custom: &BTreeMap<String, String>,
    provenance: &Provenance,
    secret: &SourceSecret,
    origin: &Origin,
    action: Action,
) -> Result<()> {
    let patch = readoption_changes(custom, provenance, &secret.uid, &now_rfc3339());
    check_metadata_limits(&patch, &secret.reference.to_string())?;
    let mut held = match claim(ctx, target, origin, &secret.uid).await? {
        Claimed::Ours(held) => held,
        Claimed::Theirs { holder } => return Err(not_owned(target, origin, holder)),
    };
    patch_fenced(ctx, target, Some(&mut held), &patch).await?;
    let event =
        AuditEvent::new(action, target, Outcome::Readopted).version(provenance.origin_version);
    match &provenance.origin_fingerprint {
        Some(fingerprint) => event.fingerprint(fingerprint),
        None => event,
    }
    .emit();
    let message = format!(
        "re-created (uid {} before) with the data Vault {target} version {} holds: re-adopted, Vault stays the authority",
        provenance.origin_uid, provenance.origin_version
    );
    ctx.kube()?
        .record_event(&secret.reference, &secret.uid, "Readopted", &message, false)
        .await;
    Ok(())
}

/// Marks `secret` stale (conditionally on the resourceVersion read; a Secret already marked
/// for the same authority is left alone) and returns the refusal to report. A Secret that
/// changed meanwhile is left for the next run to judge.
pub async fn mark_stale(
    ctx: &Context,
    secret: &SourceSecret,
    target: &Target,
    authority_uid: &str,
    version: u64,
) -> Error {
    let refusal = Error::Stale {
        secret: secret.reference.to_string(),
        uid: secret.uid.clone(),
        path: target.to_string(),
        authority_uid: authority_uid.to_string(),
        version,
    };
    let marked = secret.is_stale()
        && secret
            .annotations
            .get(names::AUTHORITY_UID)
            .map(String::as_str)
            == Some(authority_uid);
    if marked || ctx.settings.dry_run {
        return refusal;
    }
    if let Err(error) = patch_stale(ctx, secret, target, authority_uid, version).await {
        return error;
    }
    refusal
}

async fn patch_stale(
    ctx: &Context,
    secret: &SourceSecret,
    target: &Target,
    authority_uid: &str,
    version: u64,
) -> Result<()> {
    let patch = SecretPatch {
        resource_version: secret.resource_version.clone(),
        labels: BTreeMap::from([(
            names::STATE_LABEL.to_string(),
            names::STATE_STALE.to_string(),
        )]),
        annotations: BTreeMap::from([
            (names::STALE_AT.to_string(), now_rfc3339()),
            (names::AUTHORITY_UID.to_string(), authority_uid.to_string()),
            (names::VAULT_VERSION.to_string(), version.to_string()),
        ]),
        strip_data: false,
        clear_stale: false,
    };
    let kube = ctx.kube()?;
    match kube.patch_secret(&secret.reference, &patch).await? {
        Conditional::Applied { .. } => {
            AuditEvent::new(Action::MarkStale, &secret.reference, Outcome::Stale)
                .version(version)
                .emit();
            let message = format!(
                "re-created with other data than Vault {target} version {version} recorded from uid {authority_uid}: stale, Vault stays the authority; retire it from Git"
            );
            kube.record_event(&secret.reference, &secret.uid, "Stale", &message, true)
                .await;
        }
        Conditional::Conflict | Conditional::Gone => {
            tracing::warn!(secret = %secret.reference, "changed while being marked stale; the next run judges it again");
        }
    }
    Ok(())
}
