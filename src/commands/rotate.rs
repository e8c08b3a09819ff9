//! `rotate`: new values for keys of a Vault secret, or an engine's static role rotated by
//! Vault, exactly once per rotation id; then the consumers are told, ExternalSecrets first and
//! workloads once those have synced, with stamps derived from the rotation record (so a
//! repeated id re-drives only what did not complete, and never rolls a consumer twice).

use std::collections::BTreeSet;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use super::Context;
use crate::audit::{Action, AuditEvent};
use crate::domain::bootstrap::Target as KvTarget;
use crate::domain::consumers::{Consumer, RefreshFor, Sync};
use crate::domain::expiry::{format_max_age, is_due};
use crate::domain::fingerprint::{Fingerprint, FingerprintKey};
use crate::domain::generate::Recipe;
use crate::domain::names::meta;
use crate::domain::outcome::Outcome;
use crate::domain::provenance::{Origin, Provenance};
use crate::domain::rotation::{
    accounted_version, base64_keys_at, decide, decide_engine, engine_state_is_current,
    record_base64_keys, record_path, versions_to_destroy, EngineStep, Parameters, RotationRecord,
    RotationStep, Target,
};
use crate::error::{Error, ErrorReport, ExitStatus, Result};
use crate::kube::Refresh;
use crate::output::Report;
use crate::secret::{SecretBytes, SecretData};
use crate::vault::{base64_keys, CasWrite, VaultMetadata};

/// A KV rotation: secops writes the new values.
pub struct KvPlan {
    pub path: String,
    /// Deduplicated, in the order given.
    pub keys: Vec<String>,
    /// The generator's name, recorded as part of the id's intent.
    pub generator: String,
    pub recipe: Recipe,
    /// Destroy versions older than the newest N after the write.
    pub keep_versions: Option<u32>,
    /// Take over a path without secops provenance.
    pub adopt: bool,
}

impl KvPlan {
    /// What this rotation's fingerprints are recorded for.
    fn target(&self, mount: &str) -> KvTarget {
        KvTarget {
            mount: mount.to_string(),
            path: self.path.clone(),
        }
    }
}

/// What a rotation acts on.
pub enum What {
    Kv(KvPlan),
    /// Vault rotates the static role `MOUNT/ROLE` (`POST MOUNT/rotate-role/ROLE`).
    StaticRole {
        mount: String,
        role: String,
    },
}

/// A rotation, complete: everything is checked before the first remote call.
pub struct Plan {
    pub rotation_id: String,
    pub what: What,
    pub consumers: Vec<Consumer>,
    /// How long another run's unfinished claim on the id is honoured.
    pub claim_lease_seconds: i64,
    /// How long to wait for ExternalSecrets to sync before restarting workloads (0: no wait).
    pub sync_timeout: Duration,
    /// Rotate only when the current value is older than this.
    pub if_older_than: Option<Duration>,
}

impl Plan {
    fn parameters(&self) -> Parameters {
        match &self.what {
            What::Kv(kv) => Parameters {
                target: Target::Kv(kv.path.clone()),
                keys: kv.keys.clone(),
                generator: kv.generator.clone(),
            },
            What::StaticRole { mount, role } => Parameters {
                target: Target::StaticRole {
                    mount: mount.clone(),
                    role: role.clone(),
                },
                keys: Vec::new(),
                generator: String::new(),
            },
        }
    }

    fn max_age_seconds(&self) -> Option<i64> {
        self.if_older_than.map(|age| age.as_secs() as i64)
    }
}

/// Polls of a fresh claim held by a concurrent run before giving up with a temporary failure.
const WAIT_POLLS: u32 = 40;
const WAIT_INTERVAL: Duration = Duration::from_millis(250);
const STEP_LIMIT: u32 = WAIT_POLLS + crate::retry::RACE_ATTEMPTS as u32;
/// How often an ExternalSecret's status is read while waiting for its sync.
const SYNC_POLL: Duration = Duration::from_millis(250);

/// Where engine rotations keep their state for `status` (engines have no custom_metadata).
pub const ENGINE_STATE_ROOT: &str = "secops/engine-rotations/";

pub fn engine_state_path(mount: &str, role: &str) -> String {
    format!("{ENGINE_STATE_ROOT}{mount}/{role}")
}

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
fn check_authority(kv: &KvPlan, metadata: &VaultMetadata) -> Result<()> {
    let path = kv.path.clone();
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
        None if kv.adopt || metadata.custom.contains_key(meta::ADOPTED_AT) => Ok(()),
        None => Err(Error::NotAdopted { path }),
    }
}

/// What the rotation ended in, before consumers.
struct Rotated {
    outcome: Outcome,
    version: Option<u64>,
    last_vault_rotation: Option<Timestamp>,
    fingerprint: Option<Fingerprint>,
    destroyed: Vec<u64>,
    /// The consumers' stamp: the record's completion time.
    stamp: Option<i64>,
}

impl Rotated {
    fn without_write(outcome: Outcome) -> Rotated {
        Rotated {
            outcome,
            version: None,
            last_vault_rotation: None,
            fingerprint: None,
            destroyed: Vec::new(),
            stamp: None,
        }
    }

    fn already(record: &RotationRecord) -> Rotated {
        Rotated {
            version: record.version,
            last_vault_rotation: record.rotated,
            stamp: record.completed_at,
            ..Rotated::without_write(Outcome::AlreadyRotated)
        }
    }
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
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    static_role: Option<&'a str>,
    rotation_id: &'a str,
    keys: &'a [String],
    version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_vault_rotation: Option<String>,
    fingerprint: Option<Fingerprint>,
    destroyed_versions: Vec<u64>,
    consumers: Vec<Refreshed>,
    exit_code: ExitStatus,
    dry_run: bool,
}

pub async fn run(plan: &Plan, ctx: &Context) -> Result<Report> {
    let kv_mount = ctx.settings.kv_mount.as_str();
    let rotated = match &plan.what {
        What::Kv(kv) => {
            let key = if ctx.settings.dry_run {
                ctx.vault.existing_fingerprint_key(kv_mount).await?
            } else {
                Some(ctx.vault.fingerprint_key(kv_mount).await?)
            };
            rotate_kv(ctx, plan, kv, kv_mount, key.as_ref()).await?
        }
        What::StaticRole { mount, role } => rotate_engine(ctx, plan, mount, role).await?,
    };
    let (consumers, status) = match rotated.stamp {
        Some(stamp) if !plan.consumers.is_empty() => {
            let target = match &plan.what {
                What::Kv(kv) => format!("{kv_mount}/{}", kv.path),
                What::StaticRole { mount, role } => format!("{mount}/{role}"),
            };
            let ours = RefreshFor {
                id: plan.rotation_id.clone(),
                stamp,
                target,
                version: rotated.version,
            };
            refresh_consumers(ctx, plan, &ours).await
        }
        _ => (Vec::new(), ExitStatus::Ok),
    };
    let (mount, path, static_role, keys) = match &plan.what {
        What::Kv(kv) => (kv_mount, Some(kv.path.as_str()), None, kv.keys.as_slice()),
        What::StaticRole { mount, role } => (mount.as_str(), None, Some(role.as_str()), &[][..]),
    };
    let document = RotateDocument {
        command: "rotate",
        outcome: rotated.outcome,
        mount,
        path,
        static_role,
        rotation_id: &plan.rotation_id,
        keys,
        version: rotated.version,
        last_vault_rotation: rotated.last_vault_rotation.map(|t| t.to_string()),
        fingerprint: rotated.fingerprint,
        destroyed_versions: rotated.destroyed,
        consumers,
        exit_code: status,
        dry_run: ctx.settings.dry_run,
    };
    Ok(Report::new(&document).with_status(status))
}

/// The record of the id and its KV version (0: none).
async fn read_record(
    ctx: &Context,
    mount: &str,
    record_at: &str,
) -> Result<(Option<RotationRecord>, u64)> {
    let Some(held) = ctx
        .vault
        .read(mount, record_at, None, &BTreeSet::new())
        .await?
    else {
        return Ok((None, 0));
    };
    let record = RotationRecord::from_data(&held.data).ok_or_else(|| Error::Remote {
        action: format!("read rotation record {mount}/{record_at}"),
        detail: "the record is not one secops wrote".into(),
    })?;
    Ok((Some(record), held.version))
}

fn other_intent(plan: &Plan, recorded: &RotationRecord) -> Error {
    Error::Refused {
        action: format!("rotate {} ({})", plan.parameters(), plan.rotation_id),
        detail: format!(
            "rotation id {} was used for {}; one trigger has one effect: give this rotation its own id",
            plan.rotation_id, recorded.parameters
        ),
    }
}

/// Writes the record completed (`cas` on the version read). `None` when another run changed
/// it first: the caller re-reads and re-decides, so exactly one run reports `rotated`.
async fn complete(
    ctx: &Context,
    mount: &str,
    record_at: &str,
    record: RotationRecord,
    record_version: u64,
) -> Result<Option<RotationRecord>> {
    let done = RotationRecord {
        completed_at: Some(crate::clock::now().as_second()),
        ..record
    };
    match ctx
        .vault
        .write(mount, record_at, &done.to_data(), record_version)
        .await?
    {
        CasWrite::Written { version } => {
            let record = format!("{mount}/{record_at}");
            AuditEvent::new(Action::RotationComplete, &record, Outcome::Written)
                .version(version)
                .emit();
            Ok(Some(done))
        }
        CasWrite::Mismatch | CasWrite::Denied => Ok(None),
    }
}

async fn rotate_kv(
    ctx: &Context,
    plan: &Plan,
    kv: &KvPlan,
    mount: &str,
    key: Option<&FingerprintKey>,
) -> Result<Rotated> {
    let record_at = record_path(&plan.rotation_id);
    let parameters = plan.parameters();
    for _ in 0..STEP_LIMIT {
        let (record, record_version) = read_record(ctx, mount, &record_at).await?;
        let metadata = match &record {
            Some(r) if r.parameters != parameters => return Err(other_intent(plan, r)),
            _ => ctx.vault.read_metadata(mount, &kv.path).await?,
        }
        .ok_or_else(|| Error::NotFound {
            what: format!("Vault secret {mount}/{}", kv.path),
        })?;
        check_authority(kv, &metadata)?;
        let now = crate::clock::now();
        if let (None, Some(max_age)) = (&record, plan.max_age_seconds()) {
            if !is_due(metadata.current_created_at, now, max_age) {
                return Ok(Rotated::without_write(Outcome::NotDue));
            }
        }
        let step = decide(
            record.as_ref(),
            &parameters,
            metadata.current_version,
            now.as_second(),
            plan.claim_lease_seconds,
        );
        // The claim to take over (or rebase), if any; `None` claims afresh.
        let previous = match step {
            RotationStep::OtherIntent => {
                let record = record.expect("OtherIntent comes from a record");
                return Err(other_intent(plan, &record));
            }
            RotationStep::AlreadyRotated => {
                let record = record.expect("AlreadyRotated comes from a record");
                if !ctx.settings.dry_run {
                    stamp_metadata(ctx, plan, kv, mount, &record, &metadata).await?;
                }
                return Ok(Rotated::already(&record));
            }
            RotationStep::Wait => {
                tokio::time::sleep(WAIT_INTERVAL).await;
                continue;
            }
            RotationStep::CheckWritten { version } => {
                let record = record.expect("CheckWritten comes from a record");
                // That version is decoded with the key list its claim recorded: the path's
                // metadata still describes the version before it.
                let written = ctx
                    .vault
                    .read(mount, &kv.path, Some(version), &record.base64_keys)
                    .await?;
                let ours = match (&written, key) {
                    (Some(written), Some(key)) => record
                        .intents
                        .contains(&key.fingerprint(&kv.target(mount), &written.data)),
                    _ => false,
                };
                if ours {
                    if ctx.settings.dry_run {
                        return Ok(Rotated::without_write(Outcome::Planned));
                    }
                    // This id wrote `version`, and its run died (or is about to finish).
                    let record = RotationRecord {
                        version: Some(version),
                        ..record
                    };
                    match complete(ctx, mount, &record_at, record, record_version).await? {
                        Some(done) => return finish(ctx, plan, kv, mount, done, &metadata).await,
                        None => continue,
                    }
                }
                // Someone else's write superseded the claim: rebase on the current version.
                Some(Previous {
                    record,
                    version: record_version,
                    rebase: true,
                })
            }
            RotationStep::Claim => None,
            // The stale claimer may still be alive and write after this decision: the
            // takeover keeps the claim's base, so a write by it makes ours fail, and the next
            // pass recognises it by its intent (found by the model check, docs/architecture.md).
            RotationStep::TakeOver => Some(Previous {
                record: record.expect("TakeOver comes from a record"),
                version: record_version,
                rebase: false,
            }),
        };
        if let Some(done) =
            claim_and_write(ctx, plan, kv, mount, key, &record_at, previous, &metadata).await?
        {
            return Ok(done);
        }
    }
    Err(Error::temporary(
        format!("rotate {} ({})", kv.path, plan.rotation_id),
        "another run holds this rotation id and has not finished",
    ))
}

/// An existing claim on the id that this run writes under.
struct Previous {
    record: RotationRecord,
    /// The record's version: the `cas` of the claim write.
    version: u64,
    /// A foreign write superseded the claim: move its base to the current version. Otherwise
    /// (a takeover) the base stays, so a late write by the stale claimer is not overwritten.
    rebase: bool,
}

/// Claims the id (or takes it over), then writes with `cas` = the version read. `None` when
/// a race was lost: the caller re-reads and re-decides.
#[allow(clippy::too_many_arguments)]
async fn claim_and_write(
    ctx: &Context,
    plan: &Plan,
    kv: &KvPlan,
    mount: &str,
    key: Option<&FingerprintKey>,
    record_at: &str,
    previous: Option<Previous>,
    metadata: &VaultMetadata,
) -> Result<Option<Rotated>> {
    let path = &kv.path;
    let base64 = base64_keys_at(&metadata.custom, metadata.current_version);
    if metadata.current_version > accounted_version(&metadata.custom) && !base64.is_empty() {
        // Without its key list the bytes of that version cannot be told from their base64
        // text; writing them back could corrupt the keys this rotation keeps.
        return Err(Error::Refused {
            action: format!("rotate {mount}/{path}"),
            detail: format!(
                "version {} was not written by a finished secops step and the path holds base64-encoded keys; re-run the rotation id that wrote it",
                metadata.current_version
            ),
        });
    }
    let current = ctx
        .vault
        .read(mount, path, None, &base64)
        .await?
        .ok_or_else(|| Error::NotFound {
            what: format!("a readable current version of {mount}/{path}"),
        })?;
    if ctx.settings.dry_run {
        return Ok(Some(Rotated {
            version: Some(current.version),
            ..Rotated::without_write(Outcome::Planned)
        }));
    }
    if let Some(taken) = previous.as_ref().filter(|p| !p.rebase) {
        if current.version != taken.record.base_version {
            return Ok(None); // the claimer we take over from wrote meanwhile: re-decide
        }
    }
    let key = key.expect("a key exists outside dry runs");
    let mut data: SecretData = current.data.clone();
    for name in &kv.keys {
        data.insert(name.clone(), generate(ctx, &kv.recipe).await?);
    }
    let fingerprint = key.fingerprint(&kv.target(mount), &data);
    let (mut claim, cas) = match previous {
        Some(Previous {
            record, version, ..
        }) => (record, version),
        None => (
            RotationRecord::claim(plan.parameters(), crate::clock::now().as_second()),
            0,
        ),
    };
    claim.intents.push(fingerprint.clone());
    claim.base_version = current.version;
    claim.base64_keys = base64_keys(&data);
    claim.claimed_at = crate::clock::now().as_second();
    let CasWrite::Written {
        version: claim_version,
    } = ctx
        .vault
        .write(mount, record_at, &claim.to_data(), cas)
        .await?
    else {
        return Ok(None);
    };
    let record = format!("{mount}/{record_at}");
    AuditEvent::new(Action::RotationClaim, &record, Outcome::Written)
        .version(claim_version)
        .emit();
    let CasWrite::Written { version } =
        ctx.vault.write(mount, path, &data, current.version).await?
    else {
        return Ok(None);
    };
    AuditEvent::new(Action::Rotate, &kv.target(mount), Outcome::Rotated)
        .version(version)
        .fingerprint(&fingerprint)
        .emit();
    let claim = RotationRecord {
        version: Some(version),
        ..claim
    };
    let Some(done) = complete(ctx, mount, record_at, claim, claim_version).await? else {
        // Another run took the claim over meanwhile; it recognises this write by its intent.
        return Ok(None);
    };
    let mut rotated = finish(ctx, plan, kv, mount, done, metadata).await?;
    rotated.fingerprint = Some(fingerprint);
    Ok(Some(rotated))
}

/// The run that completed the record: stamps the path's metadata and trims old versions.
async fn finish(
    ctx: &Context,
    plan: &Plan,
    kv: &KvPlan,
    mount: &str,
    done: RotationRecord,
    metadata: &VaultMetadata,
) -> Result<Rotated> {
    let version = done.version.expect("a completed KV record has a version");
    stamp_metadata(ctx, plan, kv, mount, &done, metadata).await?;
    let target = kv.target(mount);
    let mut destroyed = Vec::new();
    if let Some(keep) = kv.keep_versions {
        if let Some(fresh) = ctx.vault.read_metadata(mount, &kv.path).await? {
            destroyed = versions_to_destroy(&fresh.live_versions, version, keep);
            if !destroyed.is_empty() {
                ctx.vault
                    .destroy_versions(mount, &kv.path, &destroyed)
                    .await?;
                AuditEvent::new(Action::DestroyVersions, &target, Outcome::Destroyed)
                    .version(version)
                    .emit();
            }
        }
    }
    Ok(Rotated {
        outcome: Outcome::Rotated,
        version: Some(version),
        last_vault_rotation: None,
        fingerprint: None,
        destroyed,
        stamp: done.completed_at,
    })
}

/// Records the rotation in the path's metadata, unless it already names this rotation or a
/// later one. Run by the completing run and repeated by any later run of the id, so a crash
/// between the record and the metadata converges.
async fn stamp_metadata(
    ctx: &Context,
    plan: &Plan,
    kv: &KvPlan,
    mount: &str,
    done: &RotationRecord,
    metadata: &VaultMetadata,
) -> Result<()> {
    let version = done.version.expect("a completed KV record has a version");
    let stamped = metadata
        .custom
        .get(meta::ROTATION_VERSION)
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|v| v >= version);
    if stamped {
        return Ok(());
    }
    let completed = Timestamp::from_second(done.completed_at.unwrap_or_default())
        .unwrap_or_else(|_| crate::clock::now());
    let mut custom = metadata.custom.clone();
    custom.insert(meta::ROTATION_ID.into(), plan.rotation_id.clone());
    custom.insert(meta::ROTATED_AT.into(), crate::clock::rfc3339(completed));
    custom.insert(meta::ROTATION_VERSION.into(), version.to_string());
    record_base64_keys(&mut custom, version, &done.base64_keys);
    if let Some(max_age) = plan.max_age_seconds() {
        custom.insert(meta::MAX_AGE.into(), format_max_age(max_age));
    }
    if kv.adopt
        && Provenance::from_metadata(&metadata.custom).is_none()
        && !custom.contains_key(meta::ADOPTED_AT)
    {
        custom.insert(meta::ADOPTED_AT.into(), crate::clock::now_rfc3339());
    }
    ctx.vault.write_metadata(mount, &kv.path, &custom).await?;
    AuditEvent::new(Action::RecordRotation, &kv.target(mount), Outcome::Written)
        .version(version)
        .emit();
    Ok(())
}

/// Engine-backed rotation: the per-id record is claimed with `cas=0` before the call, and
/// Vault's `last_vault_rotation` moving past the claim's is the proof the call happened.
async fn rotate_engine(ctx: &Context, plan: &Plan, mount: &str, role: &str) -> Result<Rotated> {
    let kv_mount = ctx.settings.kv_mount.as_str();
    let record_at = record_path(&plan.rotation_id);
    let parameters = plan.parameters();
    let target = format!("{mount}/static-roles/{role}");
    for _ in 0..STEP_LIMIT {
        let (record, record_version) = read_record(ctx, kv_mount, &record_at).await?;
        if let Some(r) = record.as_ref().filter(|r| r.parameters != parameters) {
            return Err(other_intent(plan, r));
        }
        let last = ctx
            .vault
            .static_role_last_rotation(mount, role)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: format!("static role {target}"),
            })?;
        let now = crate::clock::now();
        if let (None, Some(max_age)) = (&record, plan.max_age_seconds()) {
            if !is_due(last, now, max_age) {
                return Ok(Rotated::without_write(Outcome::NotDue));
            }
        }
        let step = decide_engine(
            record.as_ref(),
            &parameters,
            last,
            now.as_second(),
            plan.claim_lease_seconds,
        );
        let (claim, cas) = match step {
            EngineStep::OtherIntent => {
                let record = record.expect("OtherIntent comes from a record");
                return Err(other_intent(plan, &record));
            }
            EngineStep::AlreadyRotated => {
                let record = record.expect("AlreadyRotated comes from a record");
                if !ctx.settings.dry_run {
                    record_engine_state(ctx, plan, mount, role, &record).await?;
                }
                return Ok(Rotated::already(&record));
            }
            EngineStep::Wait => {
                tokio::time::sleep(WAIT_INTERVAL).await;
                continue;
            }
            EngineStep::Proven { rotated } => {
                if ctx.settings.dry_run {
                    return Ok(Rotated::without_write(Outcome::Planned));
                }
                let record = RotationRecord {
                    rotated: Some(rotated),
                    ..record.expect("Proven comes from a record")
                };
                match complete(ctx, kv_mount, &record_at, record, record_version).await? {
                    Some(done) => return finish_engine(ctx, plan, mount, role, done).await,
                    None => continue,
                }
            }
            _ if ctx.settings.dry_run => {
                return Ok(Rotated::without_write(Outcome::Planned));
            }
            EngineStep::Claim => (RotationRecord::claim(parameters.clone(), 0), 0),
            EngineStep::TakeOver => (
                record.expect("TakeOver comes from a record"),
                record_version,
            ),
        };
        let claim = RotationRecord {
            base_rotation: last,
            claimed_at: now.as_second(),
            ..claim
        };
        let CasWrite::Written {
            version: claim_version,
        } = ctx
            .vault
            .write(kv_mount, &record_at, &claim.to_data(), cas)
            .await?
        else {
            continue;
        };
        let record = format!("{kv_mount}/{record_at}");
        AuditEvent::new(Action::RotationClaim, &record, Outcome::Written)
            .version(claim_version)
            .emit();
        let called = ctx.vault.rotate_static_role(mount, role).await;
        // Whatever the call answered, Vault's own record says whether it happened.
        let after = match ctx.vault.static_role_last_rotation(mount, role).await {
            Ok(after) => after.flatten(),
            Err(read_error) => return Err(called.err().unwrap_or(read_error)),
        };
        let proven = after.filter(|at| last.is_none_or(|base| *at > base));
        let Some(rotated) = proven else {
            if let Err(error) = called {
                // Not rotated: release the claim so the retry takes it over at once.
                let released = RotationRecord {
                    claimed_at: 0,
                    ..claim
                };
                let answer = ctx
                    .vault
                    .write(kv_mount, &record_at, &released.to_data(), claim_version)
                    .await;
                if let Ok(CasWrite::Written { version }) = answer {
                    AuditEvent::new(Action::RotationRelease, &record, Outcome::Written)
                        .version(version)
                        .emit();
                }
                return Err(error);
            }
            return Err(Error::Remote {
                action: format!("rotate {target}"),
                detail: "Vault accepted the rotation but last_vault_rotation did not move".into(),
            });
        };
        AuditEvent::new(Action::Rotate, &target, Outcome::Rotated).emit();
        let record = RotationRecord {
            rotated: Some(rotated),
            ..claim
        };
        match complete(ctx, kv_mount, &record_at, record, claim_version).await? {
            Some(done) => return finish_engine(ctx, plan, mount, role, done).await,
            None => continue,
        }
    }
    Err(Error::temporary(
        format!("rotate {target} ({})", plan.rotation_id),
        "another run holds this rotation id and has not finished",
    ))
}

async fn finish_engine(
    ctx: &Context,
    plan: &Plan,
    mount: &str,
    role: &str,
    done: RotationRecord,
) -> Result<Rotated> {
    record_engine_state(ctx, plan, mount, role, &done).await?;
    Ok(Rotated {
        last_vault_rotation: done.rotated,
        stamp: done.completed_at,
        ..Rotated::without_write(Outcome::Rotated)
    })
}

/// An engine rotation's provenance for `status`: the last rotation id, Vault's rotation time,
/// the consumers and the maximum age, at `secops/engine-rotations/MOUNT/ROLE`. Written only
/// when it does not already describe this rotation or a later one.
async fn record_engine_state(
    ctx: &Context,
    plan: &Plan,
    mount: &str,
    role: &str,
    done: &RotationRecord,
) -> Result<()> {
    let kv_mount = ctx.settings.kv_mount.as_str();
    let at = engine_state_path(mount, role);
    let completed = done.completed_at.unwrap_or_default();
    for _ in 0..crate::retry::RACE_ATTEMPTS {
        let held = ctx
            .vault
            .read(kv_mount, &at, None, &BTreeSet::new())
            .await?;
        let field = |name: &str| {
            held.as_ref()
                .and_then(|h| h.data.get(name))
                .and_then(|v| v.as_utf8())
                .map(String::from)
        };
        let recorded_at: i64 = field("completed_at")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let recorded_rotation = field("last_vault_rotation").and_then(|v| v.parse().ok());
        if engine_state_is_current(recorded_rotation, recorded_at, done) {
            return Ok(());
        }
        let rotations: u64 = field("rotations").and_then(|v| v.parse().ok()).unwrap_or(0) + 1;
        let consumers: Vec<String> = plan.consumers.iter().map(|c| c.to_string()).collect();
        let mut fields = vec![
            ("rotation_id", plan.rotation_id.clone()),
            ("completed_at", completed.to_string()),
            ("rotations", rotations.to_string()),
            ("consumers", consumers.join(",")),
        ];
        if let Some(rotated) = done.rotated {
            fields.push(("last_vault_rotation", rotated.to_string()));
        }
        let max_age = plan
            .max_age_seconds()
            .or_else(|| field("max_age").and_then(|v| crate::domain::expiry::parse_max_age(&v)));
        if let Some(max_age) = max_age {
            fields.push(("max_age", format_max_age(max_age)));
        }
        let data: SecretData = fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), SecretBytes::from_string(v)))
            .collect();
        let cas = held.map(|h| h.version).unwrap_or(0);
        if let CasWrite::Written { version } = ctx.vault.write(kv_mount, &at, &data, cas).await? {
            let state = format!("{kv_mount}/{at}");
            AuditEvent::new(Action::RecordRotation, &state, Outcome::Written)
                .version(version)
                .emit();
            return Ok(());
        }
    }
    Err(Error::LostRace {
        action: format!("record the rotation of {mount}/{role}"),
    })
}

/// ExternalSecrets first; workloads only once every ExternalSecret reports a sync at or after
/// the stamp (bounded by `--sync-timeout`), so no pod starts before ESO wrote the new value.
/// Consumers that already carry the stamp are left alone.
async fn refresh_consumers(
    ctx: &Context,
    plan: &Plan,
    ours: &RefreshFor,
) -> (Vec<Refreshed>, ExitStatus) {
    let version = ours.version;
    let mut results = Vec::new();
    let mut status = ExitStatus::Ok;
    let mut fail = |consumer: &Consumer, error: Error, results: &mut Vec<Refreshed>| {
        status = status.max(error.exit_status());
        results.push(Refreshed {
            target: consumer.to_string(),
            outcome: Outcome::Failed,
            error: Some((&error).into()),
        });
    };
    let kube = match ctx.kube() {
        Ok(kube) => kube,
        Err(error) => {
            for consumer in &plan.consumers {
                fail(consumer, Error::Internal(error.to_string()), &mut results);
            }
            return (results, status);
        }
    };
    let (workloads, external_secrets): (Vec<&Consumer>, Vec<&Consumer>) =
        plan.consumers.iter().partition(|c| c.is_workload());
    let mut waiting = Vec::new();
    let mut blocked = false;
    for consumer in external_secrets {
        match kube.refresh_consumer(consumer, ours).await {
            Ok(refresh) => {
                if matches!(refresh, Refresh::Stamped(_)) {
                    AuditEvent::new(Action::RefreshConsumer, consumer, Outcome::Refreshed)
                        .version(version)
                        .emit();
                }
                waiting.push((consumer, refresh));
            }
            Err(error) => {
                blocked = true;
                fail(consumer, error, &mut results);
            }
        }
    }
    let wait = !workloads.is_empty() && !plan.sync_timeout.is_zero();
    let deadline = tokio::time::Instant::now() + plan.sync_timeout;
    let unsynced = loop {
        let mut pending = Vec::new();
        for (consumer, refresh) in std::mem::take(&mut waiting) {
            let sync = if wait {
                kube.external_secret_sync(consumer, refresh.since()).await
            } else {
                Ok(Sync::Synced)
            };
            match sync {
                Ok(Sync::Synced) => {
                    let outcome = match refresh {
                        Refresh::Stamped(_) => Outcome::Refreshed,
                        Refresh::AlreadyStamped(_) => Outcome::Unchanged,
                    };
                    results.push(Refreshed {
                        target: consumer.to_string(),
                        outcome,
                        error: None,
                    });
                }
                Ok(state) => pending.push((consumer, refresh, state)),
                Err(error) => {
                    blocked = true;
                    fail(consumer, error, &mut results);
                }
            }
        }
        if pending.is_empty() || tokio::time::Instant::now() >= deadline {
            break pending;
        }
        waiting = pending.into_iter().map(|(c, r, _)| (c, r)).collect();
        tokio::time::sleep(SYNC_POLL).await;
    };
    for (consumer, _, state) in unsynced {
        blocked = true;
        let seen = match state {
            Sync::Failing(reason) => format!("ESO reports it not ready ({reason})"),
            _ => "ESO has not refreshed it since the rotation".to_string(),
        };
        let error = Error::temporary(
            format!("wait for {consumer} to sync"),
            format!("{seen} within --sync-timeout; the retry re-drives the consumers"),
        );
        fail(consumer, error, &mut results);
    }
    for consumer in workloads {
        if blocked {
            let error = Error::temporary(
                format!("restart {consumer}"),
                "not restarted: its ExternalSecrets have not synced the new value",
            );
            fail(consumer, error, &mut results);
            continue;
        }
        match kube.refresh_consumer(consumer, ours).await {
            Ok(Refresh::Stamped(_)) => {
                AuditEvent::new(Action::RefreshConsumer, consumer, Outcome::Refreshed)
                    .version(version)
                    .emit();
                results.push(Refreshed {
                    target: consumer.to_string(),
                    outcome: Outcome::Refreshed,
                    error: None,
                });
            }
            Ok(Refresh::AlreadyStamped(_)) => results.push(Refreshed {
                target: consumer.to_string(),
                outcome: Outcome::Unchanged,
                error: None,
            }),
            Err(error) => fail(consumer, error, &mut results),
        }
    }
    (results, status)
}
