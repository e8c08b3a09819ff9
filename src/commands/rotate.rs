//! `rotate`: new values for keys of a Vault secret, exactly once per rotation id, then the
//! consumers are told (again on every re-run, so a crash after the write still reaches them).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};

use super::steps::now_rfc3339;
use super::Context;
use crate::cli::{Generator, RotateArgs};
use crate::domain::consumers::{parse_refresh, parse_restart, Consumer};
use crate::domain::fingerprint::{Fingerprint, FingerprintKey};
use crate::domain::generate::{random_base64, random_hex, PasswordSpec};
use crate::domain::names::{meta, RESERVED_PREFIX};
use crate::domain::path::validate_path;
use crate::domain::provenance::{decode_key_list, encode_key_list, Origin, Provenance};
use crate::domain::rotation::{
    decide, record_path, validate_rotation_id, versions_to_destroy, RotationRecord, RotationStep,
};
use crate::error::{exit, severity, Error, Result};
use crate::logging::audit;
use crate::output::Report;
use crate::secret::SecretBytes;
use crate::vault::{base64_keys, CasWrite, VaultMetadata};

/// How a new value is made.
enum Recipe {
    Password(PasswordSpec),
    Hex(usize),
    Base64(usize),
    VaultPolicy(String),
}

/// The validated request: everything is checked before the first remote call.
struct Plan {
    path: String,
    keys: Vec<String>,
    rotation_id: String,
    recipe: Recipe,
    consumers: Vec<Consumer>,
}

const DEFAULT_LENGTH: u32 = 32;
/// Polls of a fresh claim held by a concurrent run before giving up with a temporary failure.
const WAIT_POLLS: u32 = 40;
const WAIT_INTERVAL: Duration = Duration::from_millis(250);
const STEP_LIMIT: u32 = WAIT_POLLS + 10;

fn plan(args: &RotateArgs) -> Result<Plan> {
    validate_path(&args.path).map_err(|reason| Error::Usage(format!("--path: {reason}")))?;
    if args.path == RESERVED_PREFIX || args.path.starts_with(&format!("{RESERVED_PREFIX}/")) {
        return Err(Error::Refused {
            action: format!("rotate {}", args.path),
            detail: "the secops/ prefix holds secops's own state".into(),
        });
    }
    validate_rotation_id(&args.rotation_id)?;
    let mut keys = Vec::new();
    for key in &args.keys {
        let valid = !key.is_empty()
            && key.len() <= 253
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(Error::Usage(format!(
                "--key {key:?}: use letters, digits, '-', '_', '.'"
            )));
        }
        if !keys.contains(key) {
            keys.push(key.clone());
        }
    }
    let length = args.length.unwrap_or(DEFAULT_LENGTH) as usize;
    let recipe = match args.generator {
        Generator::Password => Recipe::Password(PasswordSpec::new(
            length,
            args.charset.as_deref(),
            &args.symbols,
            args.allow_lookalikes,
        )?),
        Generator::Hex => Recipe::Hex(length),
        Generator::Base64 => Recipe::Base64(length),
        Generator::VaultPolicy => {
            Recipe::VaultPolicy(args.policy.clone().ok_or_else(|| {
                Error::Usage("--generator vault-policy needs --policy NAME".into())
            })?)
        }
    };
    let mut consumers: Vec<Consumer> = args
        .refresh
        .iter()
        .map(|r| parse_refresh(r))
        .collect::<Result<_>>()?;
    consumers.extend(
        args.restart
            .iter()
            .map(|r| parse_restart(r))
            .collect::<Result<Vec<_>>>()?,
    );
    Ok(Plan {
        path: args.path.clone(),
        keys,
        rotation_id: args.rotation_id.clone(),
        recipe,
        consumers,
    })
}

async fn generate(ctx: &Context, recipe: &Recipe) -> Result<SecretBytes> {
    match recipe {
        Recipe::Password(spec) => spec.generate(),
        Recipe::Hex(bytes) => random_hex(*bytes),
        Recipe::Base64(bytes) => random_base64(*bytes),
        Recipe::VaultPolicy(policy) => ctx.vault.generate_password(policy).await,
    }
}

/// Rotation needs secops provenance (or `--adopt`), and never touches a pushed path: the
/// pushing operator is its authority.
fn check_authority(plan: &Plan, metadata: &VaultMetadata, adopt: bool) -> Result<()> {
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
        None if adopt || metadata.custom.contains_key(meta::ADOPTED_AT) => Ok(()),
        None => Err(Error::Refused {
            action: format!("rotate {path}"),
            detail: "the path has no secops provenance; pass --adopt to take it over".into(),
        }),
    }
}

/// What the rotation ended in, before consumers.
struct Rotated {
    outcome: &'static str,
    version: u64,
    fingerprint: Option<Fingerprint>,
    destroyed: Vec<u64>,
}

pub async fn run(args: &RotateArgs, ctx: &Context) -> Result<Report> {
    let plan = plan(args)?;
    let mount = ctx.settings.kv_mount.clone();
    let key = if ctx.settings.dry_run {
        ctx.vault.existing_fingerprint_key(&mount).await?
    } else {
        Some(ctx.vault.fingerprint_key(&mount).await?)
    };
    let rotated = rotate(ctx, &plan, &mount, key.as_ref(), args).await?;
    let mut consumer_results = Vec::new();
    let mut exit_code = exit::OK;
    if rotated.outcome != "planned" {
        for consumer in &plan.consumers {
            let result = ctx.kube()?.refresh_consumer(consumer).await;
            let code = result
                .as_ref()
                .map(|_| exit::OK)
                .unwrap_or_else(Error::exit_code);
            if severity(code) > severity(exit_code) {
                exit_code = code;
            }
            consumer_results.push(match result {
                Ok(()) => {
                    audit("refresh-consumer", &consumer.to_string(), "refreshed", Some(rotated.version), None);
                    json!({"target": consumer.to_string(), "outcome": "refreshed"})
                }
                Err(error) => json!({"target": consumer.to_string(), "outcome": "failed", "error": {"kind": error.kind(), "message": error.to_string()}}),
            });
        }
    }
    Ok(Report::new(json!({
        "command": "rotate",
        "outcome": rotated.outcome,
        "mount": mount,
        "path": plan.path,
        "rotation_id": plan.rotation_id,
        "keys": plan.keys,
        "version": rotated.version,
        "fingerprint": rotated.fingerprint,
        "destroyed_versions": rotated.destroyed,
        "consumers": Value::Array(consumer_results),
        "exit_code": exit_code,
        "dry_run": ctx.settings.dry_run,
    }))
    .with_exit_code(exit_code))
}

async fn rotate(
    ctx: &Context,
    plan: &Plan,
    mount: &str,
    key: Option<&FingerprintKey>,
    args: &RotateArgs,
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
        check_authority(plan, &metadata, args.adopt)?;
        let base64 = decode_key_list(&metadata.custom);
        let now = jiff::Timestamp::now().as_second();
        let lease = args.claim_lease.as_secs() as i64;
        // The claim to take over (or rebase), if any; `None` claims afresh.
        let previous = match decide(record.as_ref(), metadata.current_version, now, lease) {
            RotationStep::AlreadyRotated { version } => {
                return Ok(Rotated {
                    outcome: "already-rotated",
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
                        args,
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
            claim_and_write(ctx, plan, mount, key, &record_at, previous, &metadata, args).await?
        {
            return Ok(done);
        }
    }
    Err(Error::Temporary {
        action: format!("rotate {} ({})", plan.path, plan.rotation_id),
        detail: "another run holds this rotation id and has not finished".into(),
    })
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
    args: &RotateArgs,
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
            outcome: "planned",
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
        claimed_at: jiff::Timestamp::now().as_second(),
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
        args,
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
    args: &RotateArgs,
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
    if args.adopt
        && Provenance::from_metadata(&metadata.custom).is_none()
        && !custom.contains_key(meta::ADOPTED_AT)
    {
        custom.insert(meta::ADOPTED_AT.into(), now_rfc3339());
    }
    ctx.vault.write_metadata(mount, &plan.path, &custom).await?;
    audit(
        "rotate",
        &format!("{mount}/{}", plan.path),
        "rotated",
        Some(version),
        None,
    );
    let mut destroyed = Vec::new();
    if let Some(keep) = args.keep_versions.filter(|k| *k > 0) {
        if let Some(fresh) = ctx.vault.read_metadata(mount, &plan.path).await? {
            destroyed = versions_to_destroy(&fresh.live_versions, version, keep);
            if !destroyed.is_empty() {
                ctx.vault
                    .destroy_versions(mount, &plan.path, &destroyed)
                    .await?;
                audit(
                    "destroy-versions",
                    &format!("{mount}/{}", plan.path),
                    "destroyed",
                    Some(version),
                    None,
                );
            }
        }
    }
    Ok(Rotated {
        outcome: "rotated",
        version,
        fingerprint: None,
        destroyed,
    })
}
