//! The handover protocol shared by `write-vault`, `mark-consumed` and `handover`: the Vault
//! write with its rules (`docs/contract.md` §6.1), and the conditional marking of the
//! Secret (§6.2).

use std::collections::BTreeMap;

use super::ownership::{check_metadata_limits, claim, fence, not_owned, patch_fenced, Claimed};
use super::recreated::{mark_stale, readopt};
use super::Context;
use crate::audit::{actor, Action, AuditEvent};
use crate::clock::now_rfc3339;
use crate::domain::bootstrap::{judge_existing, ConsumeMode, ExistingPath, SourceSecret, Target};
use crate::domain::fingerprint::{Fingerprint, FingerprintKey};
use crate::domain::names::{self, meta};
use crate::domain::outcome::Outcome;
use crate::domain::provenance::{MetadataPatch, OwnershipRecord, Provenance};
use crate::domain::readopt::{judge_recreated, Recreation};
use crate::domain::SecretRef;
use crate::error::{Error, Result};
use crate::kube::{Conditional, SecretPatch};
use crate::retry::RACE_ATTEMPTS;
use crate::vault::{base64_keys, CasWrite};

/// Posts the `HandedOver` Event for a write this run made. The write step leaves this to
/// its caller: `handover` says it in the `Consumed` Event instead, one Event per Secret.
pub async fn announce_handover(
    ctx: &Context,
    reference: &SecretRef,
    uid: &str,
    handed: &Handed,
) -> Result<()> {
    if handed.outcome != Outcome::Written {
        return Ok(());
    }
    let message = format!(
        "handed over to Vault {} version {}",
        handed.target, handed.version
    );
    ctx.kube()?
        .record_event(reference, uid, "HandedOver", &message, false)
        .await;
    Ok(())
}

/// What Vault holds for a bootstrap Secret after the write step.
#[derive(Debug)]
pub struct Handed {
    pub outcome: Outcome,
    pub target: Target,
    /// The version the handover created.
    pub version: u64,
    /// The fingerprint of that version's data (what Git gave us).
    pub vault_fingerprint: Option<Fingerprint>,
    /// The fingerprint of the Secret's data now.
    pub fingerprint: Fingerprint,
}

/// The handover write (`docs/contract.md` §6.1): claim the path, create with `cas=0`; when
/// the path exists, decide from a read: a finished or half-finished handover of ours, or a
/// conflict. Only the claim's holder writes to a path without provenance, so two writers
/// racing for one path never both believe they own it.
pub async fn write_to_vault(
    ctx: &Context,
    key: &FingerprintKey,
    secret: &SourceSecret,
    target: Target,
) -> Result<Handed> {
    secret.require_data()?;
    secret.refuse_vault_init_material(&target, &ctx.settings.kv_mount)?;
    let fingerprint = key.fingerprint(&target, &secret.data);
    let origin = secret.bootstrap_origin();
    let base64 = base64_keys(&secret.data);
    let max_age = secret.max_age()?;
    let at = now_rfc3339();
    let record = |version| {
        OwnershipRecord {
            origin: &origin,
            uid: &secret.uid,
            version,
            fingerprint: &fingerprint,
            base64_keys: &base64,
            k8s_type: &secret.secret_type,
            at: &at,
            at_key: Some(meta::HANDOVER_AT),
            adopted: false,
            max_age,
        }
        .changes()
    };
    // Everything that could refuse the record is checked before the data is written.
    check_metadata_limits(&record(u64::MAX), &secret.reference.to_string())?;
    let handed = |outcome, version, vault_fingerprint| Handed {
        outcome,
        target: target.clone(),
        version,
        vault_fingerprint,
        fingerprint: fingerprint.clone(),
    };
    let not_owned = |owner: String| not_owned(&target, &origin, owner);
    ctx.require_writable(&target.mount).await?;
    // The claim is decided once; only a takeover changes it after its lease, and every write
    // under it is fenced (a holder past its fence renews it, or stops if taken over).
    let mut claimed = match ctx.settings.dry_run {
        true => None,
        false => Some(claim(ctx, &target, &origin, &secret.uid).await?),
    };
    for _ in 0..RACE_ATTEMPTS {
        let mut denied = false;
        if let Some(Claimed::Ours(held)) = &mut claimed {
            fence(ctx, &target, held).await?;
            match ctx
                .vault
                .write(&target.mount, &target.path, &secret.data, 0)
                .await?
            {
                CasWrite::Written { version } => {
                    AuditEvent::new(Action::HandoverWrite, &target, Outcome::Written)
                        .version(version)
                        .fingerprint(&fingerprint)
                        .emit();
                    patch_fenced(ctx, &target, Some(held), &record(version)).await?;
                    AuditEvent::new(Action::RecordProvenance, &target, Outcome::Written)
                        .version(version)
                        .fingerprint(&fingerprint)
                        .emit();
                    return Ok(handed(Outcome::Written, version, Some(fingerprint.clone())));
                }
                CasWrite::Mismatch => {}
                CasWrite::Denied => denied = true,
            }
        }
        let Some(metadata) = ctx.vault.read_metadata(&target.mount, &target.path).await? else {
            match claimed {
                None => return Ok(handed(Outcome::Planned, 0, None)),
                Some(Claimed::Theirs { holder }) => return Err(not_owned(holder.clone())),
                Some(Claimed::Ours(_)) if denied => {
                    return Err(Error::Forbidden {
                        action: format!("hand over {}", secret.reference),
                        detail: format!("no create permission on Vault {target}"),
                    })
                }
                Some(Claimed::Ours(_)) => continue, // deleted between our write and our read
            }
        };
        let provenance = Provenance::from_metadata(&metadata.custom);
        let recreated = judge_recreated(
            provenance.as_ref(),
            &origin,
            &secret.uid,
            Some(&fingerprint),
        );
        if let (Some(recreation), Some(p)) = (recreated, provenance.as_ref()) {
            let recorded = p.origin_fingerprint.clone();
            return match recreation {
                Recreation::Readopt { version, .. } if ctx.settings.dry_run => {
                    Ok(handed(Outcome::Planned, version, recorded))
                }
                Recreation::Readopt { version, .. } => {
                    let action = Action::HandoverReadopt;
                    readopt(ctx, &target, &metadata.custom, p, secret, &origin, action).await?;
                    Ok(handed(Outcome::Readopted, version, recorded))
                }
                Recreation::Stale {
                    authority_uid,
                    version,
                } => Err(mark_stale(ctx, secret, &target, &authority_uid, version).await),
            };
        }
        match judge_existing(provenance.as_ref(), &origin, &secret.uid) {
            ExistingPath::AlreadyHandedOver { version } => {
                let recorded = provenance.and_then(|p| p.origin_fingerprint);
                return Ok(handed(Outcome::Unchanged, version, recorded));
            }
            ExistingPath::Conflict { owner } => return Err(not_owned(owner)),
            ExistingPath::CompareData => {
                // Data without provenance is ours to finish only under our claim.
                if let Some(Claimed::Theirs { holder }) = &claimed {
                    return Err(not_owned(holder.clone()));
                }
                let current = ctx
                    .vault
                    .read(&target.mount, &target.path, None, &base64)
                    .await?;
                let Some(current) = current else { continue };
                if key.fingerprint(&target, &current.data) != fingerprint {
                    return Err(not_owned("data with no secops provenance".into()));
                }
                let Some(Claimed::Ours(held)) = &mut claimed else {
                    return Ok(handed(
                        Outcome::Planned,
                        current.version,
                        Some(fingerprint.clone()),
                    ));
                };
                patch_fenced(ctx, &target, Some(held), &record(current.version)).await?;
                AuditEvent::new(Action::HandoverFinish, &target, Outcome::Unchanged)
                    .version(current.version)
                    .fingerprint(&fingerprint)
                    .emit();
                return Ok(handed(
                    Outcome::Unchanged,
                    current.version,
                    Some(fingerprint.clone()),
                ));
            }
        }
    }
    Err(Error::LostRace {
        action: format!("hand over {}", secret.reference),
    })
}

/// What Vault's provenance says of a Secret already marked consumed (whose data may be
/// stripped): a re-run of the write step reports the finished handover.
pub async fn handed_over_before(
    ctx: &Context,
    key: &FingerprintKey,
    secret: &SourceSecret,
    target: Target,
) -> Result<Handed> {
    let metadata = ctx.vault.read_metadata(&target.mount, &target.path).await?;
    let provenance = metadata.and_then(|m| Provenance::from_metadata(&m.custom));
    let origin = secret.bootstrap_origin();
    match judge_existing(provenance.as_ref(), &origin, &secret.uid) {
        ExistingPath::AlreadyHandedOver { version } => {
            let recorded = provenance.and_then(|p| p.origin_fingerprint);
            let fingerprint = recorded
                .clone()
                .unwrap_or_else(|| key.fingerprint(&target, &secret.data));
            Ok(Handed {
                outcome: Outcome::Unchanged,
                target,
                version,
                fingerprint,
                vault_fingerprint: recorded,
            })
        }
        ExistingPath::Conflict { owner } => Err(Error::NotOwned {
            path: target.to_string(),
            owner,
            claimant: origin.to_string(),
        }),
        ExistingPath::CompareData => Err(Error::Refused {
            action: format!("hand over {}", secret.reference),
            detail: format!("it is marked consumed, but Vault {target} holds no handover of it"),
        }),
    }
}

/// A tombstone a GitOps sync refilled (`docs/gitops.md`): Vault's provenance must still name
/// it and record the handed-over fingerprint, which [`mark`] then holds the data to before
/// stripping it again (`--mode strip`, whatever the run's mode). Vault is not written.
pub async fn strip_again(
    ctx: &Context,
    key: &FingerprintKey,
    secret: SourceSecret,
    target: Target,
) -> Result<(Handed, Marked)> {
    let mut handed = handed_over_before(ctx, key, &secret, target).await?;
    if handed.vault_fingerprint.is_none() {
        return Err(Error::Refused {
            action: format!("strip {} again", secret.reference),
            detail: format!(
                "Vault {} records no fingerprint of the handover to hold its data to",
                handed.target
            ),
        });
    }
    handed.fingerprint = key.fingerprint(&handed.target, &secret.data);
    let marked = mark(ctx, key, secret, &handed, ConsumeMode::Strip).await?;
    Ok((handed, marked))
}

/// Records in Vault that the origin is consumed, and how, before the Secret is marked (or
/// deleted): once it is gone, removed from Git or by `--mode delete`, `status` knows its
/// path is retired, not an origin lost. A record whose marking then fails names a handover
/// that was verified all the same.
async fn record_consumption(ctx: &Context, handed: &Handed, mode: ConsumeMode) -> Result<()> {
    let patch = MetadataPatch::from([(
        meta::CONSUMED_MODE.to_string(),
        Some(mode.as_str().to_string()),
    )]);
    ctx.vault
        .patch_metadata(&handed.target.mount, &handed.target.path, &patch)
        .await?;
    AuditEvent::new(Action::RecordConsumption, &handed.target, Outcome::Written)
        .version(handed.version)
        .emit();
    Ok(())
}

/// What marking ended in.
#[derive(Debug)]
pub struct Marked {
    pub outcome: Outcome,
    pub version: u64,
}

fn consume_patch(
    secret: &SourceSecret,
    version: u64,
    fingerprint: &Fingerprint,
    mode: ConsumeMode,
) -> SecretPatch {
    let annotations = BTreeMap::from([
        (names::CONSUMED_AT.to_string(), now_rfc3339()),
        (names::VAULT_VERSION.to_string(), version.to_string()),
        (names::FINGERPRINT.to_string(), fingerprint.to_string()),
        (names::CONSUMED_BY.to_string(), actor().to_string()),
        (names::CONSUMED_MODE.to_string(), mode.as_str().to_string()),
    ]);
    SecretPatch {
        resource_version: secret.resource_version.clone(),
        labels: BTreeMap::from([(
            names::STATE_LABEL.to_string(),
            names::STATE_CONSUMED.to_string(),
        )]),
        annotations,
        strip_data: mode == ConsumeMode::Strip,
        clear_stale: secret.is_stale(),
    }
}

/// Renders the Secret inert, conditionally on the resourceVersion read. A lost race is
/// re-read and re-decided: the Secret may have been consumed by a racing run (done), or
/// changed by Git (drifted), or re-created (a different object: not ours to mark).
pub async fn mark(
    ctx: &Context,
    key: &FingerprintKey,
    mut secret: SourceSecret,
    handed: &Handed,
    mode: ConsumeMode,
) -> Result<Marked> {
    let target = secret.reference.to_string();
    let original_uid = secret.uid.clone();
    // The data is what the write step fingerprinted, until a lost race makes us re-read it.
    let mut current = handed.fingerprint.clone();
    for _ in 0..RACE_ATTEMPTS {
        if secret.is_consumed() && !secret.is_refilled_tombstone() {
            return Ok(Marked {
                outcome: Outcome::AlreadyConsumed,
                version: handed.version,
            });
        }
        if handed
            .vault_fingerprint
            .as_ref()
            .is_some_and(|v| *v != current)
        {
            let message = format!(
                "data differs from Vault {} version {}: Vault stays authoritative",
                handed.target, handed.version
            );
            if !ctx.settings.dry_run {
                ctx.kube()?
                    .record_event(&secret.reference, &secret.uid, "Drifted", &message, true)
                    .await;
                AuditEvent::new(Action::ReportDrift, &target, Outcome::Drifted)
                    .version(handed.version)
                    .fingerprint(&current)
                    .emit();
            }
            return Err(Error::Drifted {
                secret: target,
                version: handed.version,
            });
        }
        if ctx.settings.dry_run {
            return Ok(Marked {
                outcome: Outcome::Planned,
                version: handed.version,
            });
        }
        record_consumption(ctx, handed, mode).await?;
        let applied = match mode {
            ConsumeMode::Delete => {
                ctx.kube()?
                    .delete_secret(&secret.reference, &secret.uid, &secret.resource_version)
                    .await?
            }
            ConsumeMode::Annotate | ConsumeMode::Strip => {
                let patch = match secret.is_consumed() {
                    // A refilled tombstone: its data goes again, its marking stands as made.
                    true => SecretPatch {
                        resource_version: secret.resource_version.clone(),
                        labels: BTreeMap::new(),
                        annotations: BTreeMap::new(),
                        strip_data: true,
                        clear_stale: false,
                    },
                    false => consume_patch(&secret, handed.version, &current, mode),
                };
                ctx.kube()?.patch_secret(&secret.reference, &patch).await?
            }
        };
        match applied {
            Conditional::Applied { .. } => {
                let action = match mode {
                    ConsumeMode::Delete => Action::DeleteSecret,
                    ConsumeMode::Annotate | ConsumeMode::Strip => Action::MarkConsumed,
                };
                AuditEvent::new(action, &target, Outcome::Consumed)
                    .version(handed.version)
                    .fingerprint(&current)
                    .emit();
                let written = if handed.outcome == Outcome::Written {
                    "handed over and "
                } else {
                    ""
                };
                let message = format!(
                    "{written}consumed ({mode}): Vault {} version {} is the authority",
                    handed.target, handed.version
                );
                ctx.kube()?
                    .record_event(&secret.reference, &secret.uid, "Consumed", &message, false)
                    .await;
                return Ok(Marked {
                    outcome: Outcome::Consumed,
                    version: handed.version,
                });
            }
            Conditional::Gone if mode == ConsumeMode::Delete => {
                return Ok(Marked {
                    outcome: Outcome::AlreadyConsumed,
                    version: handed.version,
                })
            }
            Conditional::Gone => {
                return Err(Error::NotFound {
                    what: format!("Secret {target}"),
                })
            }
            Conditional::Conflict => {
                secret = match ctx.kube()?.get_secret(&secret.reference).await? {
                    Some(fresh) if fresh.uid == original_uid => fresh,
                    Some(_) => {
                        return Err(Error::NotFound {
                            what: format!(
                                "Secret {target} with uid {original_uid} (it was re-created)"
                            ),
                        })
                    }
                    None if mode == ConsumeMode::Delete => {
                        return Ok(Marked {
                            outcome: Outcome::AlreadyConsumed,
                            version: handed.version,
                        })
                    }
                    None => {
                        return Err(Error::NotFound {
                            what: format!("Secret {target}"),
                        })
                    }
                };
                current = key.fingerprint(&handed.target, &secret.data);
            }
        }
    }
    Err(Error::LostRace {
        action: format!("mark {target} consumed"),
    })
}
