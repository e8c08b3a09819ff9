//! Claiming a Vault path and recording who owns it, shared by the handover and push
//! protocols (`docs/contract.md` §3 and §6). See [`crate::domain::claim`] for why a claim
//! comes before the first write.

use super::Context;
use crate::domain::bootstrap::Target;
use crate::domain::claim::{claim_path, Claim};
use crate::domain::provenance::{MetadataPatch, Origin};
use crate::error::{Error, Result};
use crate::retry::RACE_ATTEMPTS;
use crate::vault::CasWrite;

/// KV v2 refuses a `custom_metadata` value over 512 bytes.
const METADATA_VALUE_LIMIT: usize = 512;

/// Who holds the claim on a path.
#[derive(Debug, PartialEq, Eq)]
pub enum Claimed {
    /// This origin: it may write the path (now, or again after a crash).
    Ours,
    /// Another origin claimed it first.
    Theirs { holder: String },
}

/// Claims `target` for `origin` (`cas=0`), or finds who holds it. Only a create is
/// attempted, so a create-only Vault policy suffices; its 403 on an existing claim is
/// answered by reading the claim.
pub async fn claim(ctx: &Context, target: &Target, origin: &Origin, uid: &str) -> Result<Claimed> {
    let at = claim_path(&target.path);
    let mine = Claim {
        origin: origin.clone(),
        uid: uid.to_string(),
        claimed_at: crate::clock::now().as_second(),
    };
    for _ in 0..RACE_ATTEMPTS {
        let denied = match ctx
            .vault
            .write(&target.mount, &at, &mine.to_data(), 0)
            .await?
        {
            CasWrite::Written { .. } => return Ok(Claimed::Ours),
            CasWrite::Mismatch => false,
            CasWrite::Denied => true,
        };
        let held = ctx
            .vault
            .read(&target.mount, &at, None, &Default::default())
            .await?;
        match held.as_ref().map(|held| Claim::from_data(&held.data)) {
            Some(Some(claim)) if claim.is_held_by(origin, uid) => return Ok(Claimed::Ours),
            Some(Some(claim)) => {
                return Ok(Claimed::Theirs {
                    holder: claim.holder(),
                })
            }
            Some(None) => {
                return Err(Error::Refused {
                    action: format!("claim Vault {target}"),
                    detail: format!("the claim record {}/{at} is not secops's", target.mount),
                })
            }
            // Absent after a 403: the policy really forbids creating it.
            None if denied => {
                return Err(Error::Forbidden {
                    action: format!("claim Vault {target}"),
                    detail: format!("no create permission on {}/{at}", target.mount),
                })
            }
            None => continue, // deleted between our write and our read
        }
    }
    Err(Error::LostRace {
        action: format!("claim Vault {target}"),
    })
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
