//! Claiming a Vault path and recording who owns it, shared by the handover and push
//! protocols (`docs/contract.md` §3 and §6). See [`crate::domain::claim`] for why a claim
//! comes before the first write.

use super::Context;
use crate::audit::{Action, AuditEvent};
use crate::domain::bootstrap::Target;
use crate::domain::claim::{claim_path, Claim, ClaimHeld};
use crate::domain::outcome::Outcome;
use crate::domain::provenance::{MetadataPatch, Origin};
use crate::error::{Error, Result};
use crate::retry::RACE_ATTEMPTS;
use crate::vault::CasWrite;

/// KV v2 refuses a `custom_metadata` value over 512 bytes.
const METADATA_VALUE_LIMIT: usize = 512;

/// Who holds the claim on a path.
#[derive(Debug, PartialEq, Eq)]
pub enum Claimed {
    /// This origin: it may write the path (now, or again after a crash), each write
    /// [`fence`]d.
    Ours(Held),
    /// Another origin claimed it first.
    Theirs { holder: String },
}

/// Our claim as last written or read, and its KV version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    claim: Claim,
    version: u64,
}

/// Claims `target` for `origin` (`cas=0`), or finds who holds it. Only a create is
/// attempted first, so a create-only Vault policy suffices; its 403 on an existing claim is
/// answered by reading the claim. A claim naming this origin under a uid that no longer
/// exists (the Secret was re-created) is taken over with `cas` on its version once it is
/// older than `--path-claim-lease` (its holder, a run of the deleted Secret, may still be
/// writing until then: exit 75), so of two runs taking it over exactly one wins and the other
/// re-reads.
pub async fn claim(ctx: &Context, target: &Target, origin: &Origin, uid: &str) -> Result<Claimed> {
    let at = claim_path(&target.path);
    let now = crate::clock::now().as_second();
    let mine = Claim {
        origin: origin.clone(),
        uid: uid.to_string(),
        claimed_at: now,
    };
    for _ in 0..RACE_ATTEMPTS {
        let denied = match ctx
            .vault
            .write(&target.mount, &at, &mine.to_data(), 0)
            .await?
        {
            CasWrite::Written { version } => {
                let record = format!("{}/{at}", target.mount);
                AuditEvent::new(Action::Claim, &record, Outcome::Written)
                    .version(version)
                    .emit();
                return Ok(Claimed::Ours(Held {
                    claim: mine,
                    version,
                }));
            }
            CasWrite::Mismatch => false,
            CasWrite::Denied => true,
        };
        let held = ctx
            .vault
            .read(&target.mount, &at, None, &Default::default())
            .await?;
        let Some(held) = held else {
            if denied {
                // Absent after a 403: the policy really forbids creating it.
                return Err(Error::Forbidden {
                    action: format!("claim Vault {target}"),
                    detail: format!("no create permission on {}/{at}", target.mount),
                });
            }
            continue; // deleted between our write and our read
        };
        let Some(claim) = Claim::from_data(&held.data) else {
            return Err(Error::Refused {
                action: format!("claim Vault {target}"),
                detail: format!("the claim record {}/{at} is not secops's", target.mount),
            });
        };
        match claim.held_for(origin, uid, now, ctx.settings.claim_lease) {
            ClaimHeld::Ours => {
                return Ok(Claimed::Ours(Held {
                    claim,
                    version: held.version,
                }))
            }
            ClaimHeld::Theirs => {
                return Ok(Claimed::Theirs {
                    holder: claim.holder(),
                })
            }
            ClaimHeld::Leased { until } => {
                return Err(Error::temporary(
                    format!("take over the claim on Vault {target}"),
                    format!(
                        "it names uid {} of the re-created {origin}, which may still be writing until its lease ends at {}",
                        claim.uid,
                        jiff::Timestamp::from_second(until)
                            .map_or_else(|_| until.to_string(), crate::clock::rfc3339)
                    ),
                ))
            }
            ClaimHeld::TakeOver => {}
        }
        // Only the object that now bears the name may take its old claim over: a run for a
        // Secret deleted since must not take it back from the live one.
        require_live(ctx, origin, uid).await?;
        match ctx
            .vault
            .write(&target.mount, &at, &mine.to_data(), held.version)
            .await?
        {
            CasWrite::Written { version } => {
                tracing::info!(%target, previous_uid = %claim.uid, uid, "took over the claim of a re-created origin");
                AuditEvent::new(Action::ClaimTakeover, target, Outcome::Written)
                    .version(version)
                    .emit();
                return Ok(Claimed::Ours(Held {
                    claim: mine,
                    version,
                }));
            }
            CasWrite::Mismatch => continue, // another run took it over: re-read
            CasWrite::Denied => {
                return Err(Error::Forbidden {
                    action: format!("take over the claim on Vault {target}"),
                    detail: format!("no update permission on {}/{at}", target.mount),
                })
            }
        }
    }
    Err(Error::LostRace {
        action: format!("claim Vault {target}"),
    })
}

/// Self-fencing, right before each write that relies on `held`: a holder past its fence
/// ([`Claim::within_fence`]) renews its claim (`cas` on the version it holds) before
/// writing, so a takeover, which waits for the whole lease, never precedes one of its
/// writes. A renewal that loses the `cas` was taken over: exit 75, and the retry re-decides.
pub async fn fence(ctx: &Context, target: &Target, held: &mut Held) -> Result<()> {
    let now = crate::clock::now().as_second();
    if held.claim.within_fence(now, ctx.settings.claim_lease) {
        return Ok(());
    }
    let at = claim_path(&target.path);
    let renewed = Claim {
        claimed_at: now,
        ..held.claim.clone()
    };
    match ctx
        .vault
        .write(&target.mount, &at, &renewed.to_data(), held.version)
        .await?
    {
        CasWrite::Written { version } => {
            tracing::info!(%target, version, "renewed the claim past its fence");
            *held = Held {
                claim: renewed,
                version,
            };
            Ok(())
        }
        CasWrite::Mismatch => Err(Error::LostRace {
            action: format!("renew the claim on Vault {target} (taken over since)"),
        }),
        CasWrite::Denied => Err(Error::Forbidden {
            action: format!("renew the claim on Vault {target}"),
            detail: format!("no update permission on {}/{at}", target.mount),
        }),
    }
}

/// A provenance write under our claim: [`fence`]d first, so it cannot land after a takeover.
/// `None`: the path's provenance already names us and decides, so no claim is relied on.
pub async fn patch_fenced(
    ctx: &Context,
    target: &Target,
    held: Option<&mut Held>,
    patch: &MetadataPatch,
) -> Result<()> {
    if let Some(held) = held {
        fence(ctx, target, held).await?;
    }
    ctx.vault
        .patch_metadata(&target.mount, &target.path, patch)
        .await
}

/// Refuses unless the Secret `origin` names exists with `uid`.
async fn require_live(ctx: &Context, origin: &Origin, uid: &str) -> Result<()> {
    let (Origin::Bootstrap(reference) | Origin::Push(reference)) = origin else {
        return Err(Error::Internal(format!(
            "{origin} names no Kubernetes Secret"
        )));
    };
    let live = ctx.kube()?.get_secret(reference).await?;
    match live.map(|s| s.uid) {
        Some(live) if live == uid => Ok(()),
        found => Err(Error::NotFound {
            what: format!(
                "Secret {reference} with uid {uid} (found {}: it was re-created or deleted)",
                found.as_deref().unwrap_or("none")
            ),
        }),
    }
}

/// The refusal of a write to a path another origin owns or has claimed.
pub fn not_owned(target: &Target, claimant: &Origin, owner: String) -> Error {
    Error::NotOwned {
        path: target.to_string(),
        owner,
        claimant: claimant.to_string(),
    }
}

/// Checks an ownership record against Vault's limits before anything is written, so a
/// Secret that cannot be recorded is refused with nothing half-written.
pub fn check_metadata_limits(patch: &MetadataPatch, secret: &str) -> Result<()> {
    match patch
        .iter()
        .find(|(_, v)| v.as_ref().is_some_and(|v| v.len() > METADATA_VALUE_LIMIT))
    {
        Some((k, _)) => Err(Error::InvalidSource {
            secret: secret.into(),
            reason: format!(
                "Vault metadata {k} would exceed {METADATA_VALUE_LIMIT} bytes (too many or too long key names)"
            ),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_vault_would_refuse_is_refused_before_any_write() {
        let patch = |len: usize| {
            MetadataPatch::from([("secops-base64-keys".to_string(), Some("k".repeat(len)))])
        };
        assert!(check_metadata_limits(&patch(METADATA_VALUE_LIMIT), "ns/s").is_ok());
        let refused = check_metadata_limits(&patch(METADATA_VALUE_LIMIT + 1), "ns/s").unwrap_err();
        assert_eq!(refused.exit_status().code(), 2);
        assert!(
            refused.to_string().contains("secops-base64-keys"),
            "{refused}"
        );
        let removal = MetadataPatch::from([("secops-base64-keys".to_string(), None)]);
        assert!(
            check_metadata_limits(&removal, "ns/s").is_ok(),
            "a removed key has no value"
        );
    }
}
