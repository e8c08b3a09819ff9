//! `push-secret`: publish an operator-generated (internal) Secret into Vault, owned by that
//! Secret, so ExternalSecrets elsewhere can read it (PushSecret semantics, RFC 5a;
//! `docs/contract.md` §6.5).

use std::collections::BTreeMap;

use futures::{StreamExt as _, TryStreamExt as _};
use serde::Serialize;

use super::ownership::{check_metadata_limits, claim, fence, not_owned, patch_fenced, Claimed};
use super::recreated::{mark_stale, readopt};
use super::{pages, Context};
use crate::audit::{Action, AuditEvent};
use crate::clock::now_rfc3339;
use crate::domain::bootstrap::{SecretHeader, SourceSecret, Target};
use crate::domain::fingerprint::{Fingerprint, FingerprintKey};
use crate::domain::names::{self, Class};
use crate::domain::outcome::Outcome;
use crate::domain::provenance::{MetadataPatch, Ownership, OwnershipRecord, Provenance};
use crate::domain::push::{judge, judge_unowned, PushStep};
use crate::domain::readopt::{judge_recreated, Recreation};
use crate::domain::{Scope, SecretRef};
use crate::error::{Error, Result};
use crate::kube::{Conditional, SecretPatch};
use crate::output::{batch_report, HasOutcome, Item, Report, SecretIdentity};
use crate::retry::RACE_ATTEMPTS;
use crate::vault::{base64_keys, CasWrite};

const CONCURRENCY: usize = 8;

pub enum Plan {
    /// One Secret, optionally to a path other than its annotation's.
    One {
        secret: SecretRef,
        path: Option<String>,
        adopt: bool,
    },
    /// Every internal Secret in scope, each to its annotated path.
    Batch { scope: Scope, adopt: bool },
}

#[derive(Debug, Serialize)]
pub struct Pushed {
    outcome: Outcome,
    mount: String,
    path: String,
    version: u64,
    fingerprint: Fingerprint,
}

impl HasOutcome for Pushed {
    fn outcome(&self) -> Outcome {
        self.outcome
    }
}

#[derive(Serialize)]
struct PushDocument {
    command: &'static str,
    #[serde(flatten)]
    item: Item<Pushed>,
    dry_run: bool,
}

/// What the path holds for this source, and what to do about it; the table is
/// [`crate::domain::push`], this gathers its facts.
async fn decide(
    ctx: &Context,
    key: &FingerprintKey,
    source: &SourceSecret,
    target: &Target,
    fingerprint: &Fingerprint,
    adopt: bool,
) -> Result<PushStep> {
    let Some(metadata) = ctx.vault.read_metadata(&target.mount, &target.path).await? else {
        return Ok(judge(None, Ownership::Unowned, fingerprint));
    };
    let provenance = Provenance::from_metadata(&metadata.custom);
    let ownership = Ownership::of(provenance.as_ref(), &source.push_origin(), &source.uid);
    Ok(
        match judge(Some(metadata.current_version), ownership, fingerprint) {
            PushStep::CompareData { current_version } => {
                let held = ctx
                    .vault
                    .read(
                        &target.mount,
                        &target.path,
                        None,
                        &base64_keys(&source.data),
                    )
                    .await?;
                let held = held.map(|held| (held.version, key.fingerprint(target, &held.data)));
                judge_unowned(
                    current_version,
                    held.as_ref().map(|(version, held)| (*version, held)),
                    fingerprint,
                    adopt,
                )
            }
            step => step,
        },
    )
}

fn ownership_record(
    source: &SourceSecret,
    version: u64,
    fingerprint: &Fingerprint,
    adopted: bool,
) -> MetadataPatch {
    OwnershipRecord {
        origin: &source.push_origin(),
        uid: &source.uid,
        version,
        fingerprint,
        base64_keys: &base64_keys(&source.data),
        k8s_type: &source.secret_type,
        at: &now_rfc3339(),
        at_key: None,
        adopted,
        max_age: None,
    }
    .changes()
}

/// Records the push on the source, conditionally; a source that changed meanwhile is left
/// for the next push to publish.
async fn annotate_source(
    ctx: &Context,
    key: &FingerprintKey,
    target: &Target,
    mut source: SourceSecret,
    version: u64,
    fingerprint: &Fingerprint,
) -> Result<()> {
    let kube = ctx.kube()?;
    for _ in 0..RACE_ATTEMPTS {
        let current = |name: &str| source.annotations.get(name).map(String::as_str);
        if current(names::VAULT_VERSION) == Some(version.to_string().as_str())
            && current(names::FINGERPRINT) == Some(fingerprint.as_str())
            && !source.is_stale()
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
            clear_stale: source.is_stale(),
        };
        let gone = || Error::NotFound {
            what: format!("Secret {}", source.reference),
        };
        match kube.patch_secret(&source.reference, &patch).await? {
            Conditional::Applied { .. } => {
                AuditEvent::new(Action::AnnotatePush, &source.reference, Outcome::Pushed)
                    .version(version)
                    .fingerprint(fingerprint)
                    .emit();
                return Ok(());
            }
            Conditional::Gone => return Err(gone()),
            Conditional::Conflict => {
                let fresh = kube.get_secret(&source.reference).await?.ok_or_else(gone)?;
                if fresh.uid != source.uid || key.fingerprint(target, &fresh.data) != *fingerprint {
                    tracing::warn!(secret = %source.reference, "the source changed during the push; the next push publishes it");
                    return Ok(());
                }
                source = fresh;
            }
        }
    }
    Err(Error::LostRace {
        action: format!("annotate {}", source.reference),
    })
}

/// A path owned by this Secret's name under another uid: re-adopt it when the data is what
/// was pushed last, else mark the Secret stale.
/// `None`: someone else's path.
async fn recreated(
    ctx: &Context,
    key: &FingerprintKey,
    source: SourceSecret,
    target: &Target,
    fingerprint: &Fingerprint,
) -> Result<Option<(Outcome, u64)>> {
    let origin = source.push_origin();
    let Some(metadata) = ctx.vault.read_metadata(&target.mount, &target.path).await? else {
        return Ok(None);
    };
    let Some(provenance) = Provenance::from_metadata(&metadata.custom) else {
        return Ok(None);
    };
    match judge_recreated(Some(&provenance), &origin, &source.uid, Some(fingerprint)) {
        None => Ok(None),
        Some(Recreation::Readopt { version, .. }) if ctx.settings.dry_run => {
            Ok(Some((Outcome::Planned, version)))
        }
        Some(Recreation::Readopt { version, .. }) => {
            let custom = &metadata.custom;
            readopt(
                ctx,
                target,
                custom,
                &provenance,
                &source,
                &origin,
                Action::PushReadopt,
            )
            .await?;
            annotate_source(ctx, key, target, source, version, fingerprint).await?;
            Ok(Some((Outcome::Readopted, version)))
        }
        Some(Recreation::Stale {
            authority_uid,
            version,
        }) => Err(mark_stale(ctx, &source, target, &authority_uid, version).await),
    }
}

async fn push_one(
    ctx: &Context,
    key: &FingerprintKey,
    source: SourceSecret,
    path: Option<&str>,
    adopt: bool,
) -> Result<Pushed> {
    source.require_class(Class::Internal)?;
    let target = source.target(&ctx.settings.kv_mount, &ctx.settings.allowed, path)?;
    source.require_data()?;
    let fingerprint = key.fingerprint(&target, &source.data);
    // Everything that could refuse the record is checked before the data is written.
    check_metadata_limits(
        &ownership_record(&source, u64::MAX, &fingerprint, adopt),
        &source.reference.to_string(),
    )?;
    let pushed = |outcome, version| Pushed {
        outcome,
        mount: target.mount.clone(),
        path: target.path.clone(),
        version,
        fingerprint: fingerprint.clone(),
    };
    let origin = source.push_origin();
    let not_owned = |owner: String| not_owned(&target, &origin, owner);
    ctx.require_writable(&target.mount).await?;
    let mut denied = false;
    for _ in 0..RACE_ATTEMPTS {
        let step = decide(ctx, key, &source, &target, &fingerprint, adopt).await?;
        let (cas, claim_first, adopted) = match step {
            PushStep::Unchanged { version } => {
                // Finish a push whose annotation was lost.
                if !ctx.settings.dry_run {
                    annotate_source(ctx, key, &target, source, version, &fingerprint).await?;
                }
                return Ok(pushed(Outcome::Unchanged, version));
            }
            PushStep::Conflict { owner } => {
                return recreated(ctx, key, source, &target, &fingerprint)
                    .await?
                    .map(|(outcome, version)| pushed(outcome, version))
                    .ok_or_else(|| not_owned(owner))
            }
            PushStep::NotAdopted => {
                return Err(Error::NotAdopted {
                    path: target.to_string(),
                })
            }
            PushStep::Record { .. } | PushStep::Write { .. } if ctx.settings.dry_run => {
                return Ok(pushed(Outcome::Planned, 0));
            }
            PushStep::Record { version } => {
                let mut held = match claim(ctx, &target, &origin, &source.uid).await? {
                    Claimed::Ours(held) => held,
                    Claimed::Theirs { holder } => return Err(not_owned(holder)),
                };
                let record = ownership_record(&source, version, &fingerprint, false);
                patch_fenced(ctx, &target, Some(&mut held), &record).await?;
                AuditEvent::new(Action::RecordProvenance, &target, Outcome::Written)
                    .version(version)
                    .fingerprint(&fingerprint)
                    .emit();
                annotate_source(ctx, key, &target, source, version, &fingerprint).await?;
                return Ok(pushed(Outcome::Unchanged, version));
            }
            PushStep::Write {
                cas,
                claim,
                adopted,
            } => (cas, claim, adopted),
            PushStep::CompareData { .. } => {
                return Err(Error::Internal(
                    "the push table answers CompareData only before the data is read".into(),
                ))
            }
        };
        // A write to a path without provenance relies on our claim: each is fenced.
        let mut held = match claim_first {
            false => None,
            true => match claim(ctx, &target, &origin, &source.uid).await? {
                Claimed::Ours(held) => Some(held),
                Claimed::Theirs { holder } => return Err(not_owned(holder)),
            },
        };
        if let Some(held) = &mut held {
            fence(ctx, &target, held).await?;
        }
        let version = match ctx
            .vault
            .write(&target.mount, &target.path, &source.data, cas)
            .await?
        {
            CasWrite::Written { version } => version,
            CasWrite::Mismatch => continue,
            // A create refused twice over an absent path is a real denial, not a race.
            CasWrite::Denied if denied => {
                return Err(Error::Forbidden {
                    action: format!("push {}", source.reference),
                    detail: format!("no create permission on Vault {target}"),
                })
            }
            CasWrite::Denied => {
                denied = true;
                continue;
            }
        };
        AuditEvent::new(Action::Push, &target, Outcome::Pushed)
            .version(version)
            .fingerprint(&fingerprint)
            .emit();
        let record = ownership_record(&source, version, &fingerprint, adopted);
        patch_fenced(ctx, &target, held.as_mut(), &record).await?;
        AuditEvent::new(Action::RecordProvenance, &target, Outcome::Written)
            .version(version)
            .fingerprint(&fingerprint)
            .emit();
        let message = format!("pushed to Vault {target} version {version}");
        ctx.kube()?
            .record_event(&source.reference, &source.uid, "Pushed", &message, false)
            .await;
        annotate_source(ctx, key, &target, source, version, &fingerprint).await?;
        return Ok(pushed(Outcome::Pushed, version));
    }
    Err(Error::LostRace {
        action: format!("push {}", source.reference),
    })
}

pub async fn run(plan: &Plan, ctx: &Context) -> Result<Report> {
    match plan {
        Plan::One {
            secret,
            path,
            adopt,
        } => {
            let source = ctx
                .kube()?
                .get_secret(secret)
                .await?
                .ok_or_else(|| Error::NotFound {
                    what: format!("Secret {secret} (the push source is gone)"),
                })?;
            let key = ctx.fingerprint_key().await?;
            let identity = SecretIdentity::from(&source);
            let pushed = push_one(ctx, &key, source, path.as_deref(), *adopt).await?;
            Ok(Report::new(&PushDocument {
                command: "push-secret",
                item: Item::from_result(identity, Ok(pushed)),
                dry_run: ctx.settings.dry_run,
            }))
        }
        Plan::Batch { scope, adopt } => {
            let key = ctx.fingerprint_key().await?;
            let items: Vec<Item<Pushed>> = pages::headers(ctx, Class::Internal, scope, None)?
                .map(|header| {
                    let key = &key;
                    async move {
                        // The data is fetched only now: a few Secrets' values at a time.
                        let header: SecretHeader = header?;
                        let Some(source) = ctx.kube()?.get_secret(&header.reference).await? else {
                            return Ok(None); // gone since it was listed
                        };
                        let identity = SecretIdentity::from(&source);
                        let pushed = push_one(ctx, key, source, None, *adopt).await;
                        Ok(Some(Item::from_result(identity, pushed)))
                    }
                })
                .buffered(CONCURRENCY)
                .try_filter_map(|item| std::future::ready(Ok(item)))
                .try_collect()
                .await?;
            Ok(batch_report(
                "push-secret",
                items,
                ctx.settings.dry_run,
                serde_json::Map::new(),
            ))
        }
    }
}
