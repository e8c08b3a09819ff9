//! `rotate`: new values for keys of a Vault secret, exactly once per rotation id, then the
//! consumers are told (again on every re-run, so a crash after the write still reaches them).

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;

use super::Context;
use crate::clock::now_rfc3339;
use crate::domain::consumers::Consumer;
use crate::domain::fingerprint::{Fingerprint, FingerprintKey};
use crate::domain::generate::Recipe;
use crate::domain::names::meta;
use crate::domain::outcome::Outcome;
use crate::domain::provenance::{decode_key_list, encode_key_list, Origin, Provenance};
use crate::domain::rotation::{
    decide, record_path, versions_to_destroy, RotationRecord, RotationStep,
};
use crate::error::{Error, ErrorReport, ExitStatus, Result};
use crate::logging::audit;
use crate::output::Report;
use crate::secret::SecretBytes;
use crate::vault::{base64_keys, CasWrite, VaultMetadata};

/// A rotation, complete: everything is checked before the first remote call.
pub struct Plan {
    pub path: String,
    /// Deduplicated, in the order given.
    pub keys: Vec<String>,
    pub rotation_id: String,
    pub recipe: Recipe,
    pub consumers: Vec<Consumer>,
    /// Destroy versions older than the newest N after the write.
    pub keep_versions: Option<u32>,
    /// Take over a path without secops provenance.
    pub adopt: bool,
    /// How long another run's unfinished claim on the id is honoured.
    pub claim_lease_seconds: i64,
}

/// Polls of a fresh claim held by a concurrent run before giving up with a temporary failure.
const WAIT_POLLS: u32 = 40;
const WAIT_INTERVAL: Duration = Duration::from_millis(250);
const STEP_LIMIT: u32 = WAIT_POLLS + crate::retry::RACE_ATTEMPTS as u32;

async fn generate(ctx: &Context, recipe: &Recipe) -> Result<SecretBytes> {
    match (recipe.generate_locally(), recipe) {
        (Some(value), _) => value,
        (None, Recipe::VaultPolicy(policy)) => ctx.vault.generate_password(policy).await,
        (None, _) => Err(Error::Internal(
            "only Vault password policies are generated remotely".into(),
        )),
    }
}

/// Rotation needs secops provenance (or `--adopt`), and never touches a pushed path: the
/// pushing operator is its authority.
fn check_authority(plan: &Plan, metadata: &VaultMetadata) -> Result<()> {
    let path = plan.path.clone();
    match Provenance::from_metadata(&metadata.custom) {
        Some(Provenance {
            origin: origin @ Origin::Push(_),
            ..
        }) => Err(Error::NotOwned {
            path,
            owner: format!("{origin} (the pushing operator is its authority)"),
            claimant: "rotate".into(),
        }),
        Some(_) => Ok(()),
        None if plan.adopt || metadata.custom.contains_key(meta::ADOPTED_AT) => Ok(()),
        None => Err(Error::NotAdopted { path }),
    }
}

/// What the rotation ended in, before consumers.
struct Rotated {
    outcome: Outcome,
    version: u64,
    fingerprint: Option<Fingerprint>,
    destroyed: Vec<u64>,
}

/// What became of one consumer.
#[derive(Serialize)]
struct Refreshed {
    target: String,
    outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorReport>,
}

#[derive(Serialize)]
struct RotateDocument<'a> {
    command: &'static str,
    outcome: Outcome,
    mount: &'a str,
    path: &'a str,
    rotation_id: &'a str,
    keys: &'a [String],
    version: u64,
    fingerprint: Option<Fingerprint>,
    destroyed_versions: Vec<u64>,
    consumers: Vec<Refreshed>,
    exit_code: ExitStatus,
    dry_run: bool,
}

pub async fn run(plan: &Plan, ctx: &Context) -> Result<Report> {
    let mount = ctx.settings.kv_mount.as_str();
    let key = if ctx.settings.dry_run {
        ctx.vault.existing_fingerprint_key(mount).await?
    } else {
        Some(ctx.vault.fingerprint_key(mount).await?)
    };
    let rotated = rotate(ctx, plan, mount, key.as_ref()).await?;
    let mut consumers = Vec::new();
    let mut status = ExitStatus::Ok;
    if rotated.outcome != Outcome::Planned {
        for consumer in &plan.consumers {
            let target = consumer.to_string();
            consumers.push(match ctx.kube()?.refresh_consumer(consumer).await {
                Ok(()) => {
                    audit(
                        "refresh-consumer",
                        consumer,
                        Outcome::Refreshed,
                        Some(rotated.version),
                        None,
                    );
                    Refreshed {
                        target,
                        outcome: Outcome::Refreshed,
                        error: None,
                    }
                }
                Err(error) => {
                    status = status.max(error.exit_status());
                    Refreshed {
                        target,
                        outcome: Outcome::Failed,
                        error: Some((&error).into()),
                    }
                }
            });
        }
    }
    let document = RotateDocument {
        command: "rotate",
        outcome: rotated.outcome,
        mount,
        path: &plan.path,
        rotation_id: &plan.rotation_id,
        keys: &plan.keys,
        version: rotated.version,
        fingerprint: rotated.fingerprint,
        destroyed_versions: rotated.destroyed,
        consumers,
        exit_code: status,
        dry_run: ctx.settings.dry_run,
    };
    Ok(Report::new(&document).with_status(status))
}

async fn rotate(
    ctx: &Context,
    plan: &Plan,
    mount: &str,
    key: Option<&FingerprintKey>,
) -> Result<Rotated> {
    let record_at = record_path(&plan.path, &plan.rotation_id);
    let no_base64 = BTreeSet::new();
    for _ in 0..STEP_LIMIT {
        let record = ctx.vault.read(mount, &record_at, None, &no_base64).await?;
        let (record, record_version) = match &record {
            Some(held) => (RotationRecord::from_data(&held.data), held.version),
            None => (None, 0),
        };
        let metadata = ctx
            .vault
            .read_metadata(mount, &plan.path)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: format!("Vault secret {mount}/{}", plan.path),
            })?;
        check_authority(plan, &metadata)?;
        let base64 = decode_key_list(&metadata.custom);
        let now = crate::clock::now().as_second();
        // The claim to take over (or rebase), if any; `None` claims afresh.
        let previous = match decide(
            record.as_ref(),
            metadata.current_version,
            now,
            plan.claim_lease_seconds,
        ) {
            RotationStep::AlreadyRotated { version } => {
                return Ok(Rotated {
                    outcome: Outcome::AlreadyRotated,
                    version,
                    fingerprint: None,
                    destroyed: Vec::new(),
                });
            }
            RotationStep::Wait => {
                tokio::time::sleep(WAIT_INTERVAL).await;
                continue;
            }
            RotationStep::CheckWritten { version } => {
                let record = record.expect("CheckWritten comes from a record");
                let written = ctx
                    .vault
                    .read(mount, &plan.path, Some(version), &base64)
                    .await?;
                let ours = match (&written, key) {
                    (Some(written), Some(key)) => {
                        record.intents.contains(&key.fingerprint(&written.data))
                    }
                    _ => false,
                };
                if let (true, Some(written)) = (ours, written) {
                    // This id wrote `version`, and the run died before completing its record.
                    let written_base64 = base64_keys(&written.data);
                    let claim = (record, record_version);
                    return finish(
                        ctx,
                        plan,
                        mount,
                        &record_at,
                        claim,
                        version,
                        &written_base64,
                        &metadata,
                    )
                    .await;
                }
                // Someone else's write superseded the claim: rebase on the current version.
                Some((record, record_version))
            }
            RotationStep::Claim => None,
            RotationStep::TakeOver => Some((
                record.expect("TakeOver comes from a record"),
                record_version,
            )),
        };
        if let Some(done) =
            claim_and_write(ctx, plan, mount, key, &record_at, previous, &metadata).await?
        {
            return Ok(done);
        }
    }
    Err(Error::temporary(
        format!("rotate {} ({})", plan.path, plan.rotation_id),
        "another run holds this rotation id and has not finished",
    ))
}

/// Claims the id (or takes it over), then writes with `cas` = the version read. `None` when
/// a race was lost: the caller re-reads and re-decides.
#[allow(clippy::too_many_arguments)]
async fn claim_and_write(
    ctx: &Context,
    plan: &Plan,
    mount: &str,
    key: Option<&FingerprintKey>,
    record_at: &str,
    previous: Option<(RotationRecord, u64)>,
    metadata: &VaultMetadata,
) -> Result<Option<Rotated>> {
    let base64 = decode_key_list(&metadata.custom);
    let current = ctx
        .vault
        .read(mount, &plan.path, None, &base64)
        .await?
        .ok_or_else(|| Error::NotFound {
            what: format!("a readable current version of {mount}/{}", plan.path),
        })?;
    if ctx.settings.dry_run {
        return Ok(Some(Rotated {
            outcome: Outcome::Planned,
            version: current.version,
            fingerprint: None,
            destroyed: Vec::new(),
        }));
    }
    let key = key.expect("a key exists outside dry runs");
    let mut data = current.data.clone();
    for name in &plan.keys {
        data.insert(name.clone(), generate(ctx, &plan.recipe).await?);
    }
    let fingerprint = key.fingerprint(&data);
    let (mut intents, cas) = match previous {
        Some((record, record_version)) => (record.intents, record_version),
        None => (Vec::new(), 0),
    };
    intents.push(fingerprint.clone());
    let claim = RotationRecord {
        base_version: current.version,
        intents,
        claimed_at: crate::clock::now().as_second(),
        version: None,
    };
    let CasWrite::Written {
        version: claim_version,
    } = ctx
        .vault
        .write(mount, record_at, &claim.to_data(), cas)
        .await?
    else {
        return Ok(None);
    };
    let CasWrite::Written { version } = ctx
        .vault
        .write(mount, &plan.path, &data, current.version)
        .await?
    else {
        return Ok(None);
    };
    let mut rotated = finish(
        ctx,
        plan,
        mount,
        record_at,
        (claim, claim_version),
        version,
        &base64_keys(&data),
        metadata,
    )
    .await?;
    rotated.fingerprint = Some(fingerprint);
    Ok(Some(rotated))
}

/// Completes the record, stamps the path's metadata, and trims old versions.
#[allow(clippy::too_many_arguments)]
async fn finish(
    ctx: &Context,
    plan: &Plan,
    mount: &str,
    record_at: &str,
    (record, record_version): (RotationRecord, u64),
    version: u64,
    written_base64: &BTreeSet<String>,
    metadata: &VaultMetadata,
) -> Result<Rotated> {
    let done = RotationRecord {
        version: Some(version),
        ..record
    };
    if let CasWrite::Mismatch = ctx
        .vault
        .write(mount, record_at, &done.to_data(), record_version)
        .await?
    {
        // A run that took the claim over will recognise our write through its intents.
        tracing::warn!(
            path = plan.path,
            rotation_id = plan.rotation_id,
            "rotation record changed under us; the write stands"
        );
    }
    let mut custom = metadata.custom.clone();
    custom.insert(meta::ROTATION_ID.into(), plan.rotation_id.clone());
    custom.insert(meta::ROTATED_AT.into(), now_rfc3339());
    custom.insert(meta::ROTATION_VERSION.into(), version.to_string());
    if written_base64.is_empty() {
        custom.remove(meta::BASE64_KEYS);
    } else {
        custom.insert(meta::BASE64_KEYS.into(), encode_key_list(written_base64));
    }
    if plan.adopt
        && Provenance::from_metadata(&metadata.custom).is_none()
        && !custom.contains_key(meta::ADOPTED_AT)
    {
        custom.insert(meta::ADOPTED_AT.into(), now_rfc3339());
    }
    ctx.vault.write_metadata(mount, &plan.path, &custom).await?;
    let target = format!("{mount}/{}", plan.path);
    audit("rotate", &target, Outcome::Rotated, Some(version), None);
    let mut destroyed = Vec::new();
    if let Some(keep) = plan.keep_versions {
        if let Some(fresh) = ctx.vault.read_metadata(mount, &plan.path).await? {
            destroyed = versions_to_destroy(&fresh.live_versions, version, keep);
            if !destroyed.is_empty() {
                ctx.vault
                    .destroy_versions(mount, &plan.path, &destroyed)
                    .await?;
                audit(
                    "destroy-versions",
                    &target,
                    Outcome::Destroyed,
                    Some(version),
                    None,
                );
            }
        }
    }
    Ok(Rotated {
        outcome: Outcome::Rotated,
        version,
        fingerprint: None,
        destroyed,
    })
}
