//! Claims: which one origin may write a Vault path that carries no provenance yet.
//!
//! KV v2 `custom_metadata` (where provenance lives) has no check-and-set in HashiCorp Vault,
//! so two writers could each write data and then each record itself as the owner. Before a
//! first write, a writer therefore claims the path with a record at
//! `<mount>/secops/claims/<path>`, created with `cas=0`: exactly one claimer wins, and only
//! the winner writes data or provenance to a path without provenance. Provenance, once
//! written, decides ownership; the claim only arbitrates the window before it.

use super::names::RESERVED_PREFIX;
use super::provenance::Origin;
use crate::secret::{SecretBytes, SecretData};

/// Who a claim is for, from a claimant's point of view.
#[derive(Debug, PartialEq, Eq)]
pub enum ClaimHeld {
    Ours,
    /// The claimant's own origin under another uid: an object deleted and re-created (the
    /// name now belongs to the claimant, so the claim's uid exists no more). Its claim is
    /// taken over conditionally (`cas` on the claim's version), else the re-created Secret
    /// would be refused for good (model finding 1). Only once the claim is older than the
    /// lease: its holder may be a run of the deleted object still writing (model finding 4).
    TakeOver,
    /// As `TakeOver`, but the claim is younger than the lease (which ends at `until`): its
    /// holder may still be writing, so the claimant retries later (exit 75).
    Leased {
        until: i64,
    },
    Theirs,
}

/// One origin's claim on one path. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub origin: Origin,
    pub uid: String,
    pub claimed_at: i64,
}

pub fn claim_path(path: &str) -> String {
    format!("{RESERVED_PREFIX}/claims/{path}")
}

impl Claim {
    pub fn is_held_by(&self, origin: &Origin, uid: &str) -> bool {
        self.origin == *origin && self.uid == uid
    }

    /// `uid` is the live object's under `origin`'s name: any other uid of that origin is gone,
    /// and its claim is taken over once `lease` seconds have passed since `claimed_at`.
    pub fn held_for(&self, origin: &Origin, uid: &str, now: i64, lease: i64) -> ClaimHeld {
        let until = self.claimed_at.saturating_add(lease);
        match (self.origin == *origin, self.uid == uid) {
            (true, true) => ClaimHeld::Ours,
            (true, false) if now >= until => ClaimHeld::TakeOver,
            (true, false) => ClaimHeld::Leased { until },
            (false, _) => ClaimHeld::Theirs,
        }
    }

    /// Whether the holder may still write under its claim at `now` without renewing it: the
    /// claim is younger than the lease by more than [`fence_margin`]. A write that starts
    /// before the fence lands before the lease ends, so it never lands after a takeover.
    pub fn within_fence(&self, now: i64, lease: i64) -> bool {
        now.saturating_sub(self.claimed_at) < lease - fence_margin(lease)
    }
}

/// How long before its lease ends a holder stops writing under its claim (a quarter of the
/// lease): it must exceed one request's latency plus the clock skew between two runs' pods.
pub fn fence_margin(lease: i64) -> i64 {
    lease / 4
}

impl Claim {
    /// The claimant, as named in refusals.
    pub fn holder(&self) -> String {
        format!(
            "{} (uid {}, claimed, not yet recorded)",
            self.origin, self.uid
        )
    }

    pub fn to_data(&self) -> SecretData {
        let text = |s: String| SecretBytes::from_string(s);
        let mut data = SecretData::new();
        data.insert("origin".into(), text(self.origin.to_string()));
        data.insert("uid".into(), text(self.uid.clone()));
        data.insert("claimed_at".into(), text(self.claimed_at.to_string()));
        data
    }

    pub fn from_data(data: &SecretData) -> Option<Claim> {
        let field = |name: &str| data.get(name).and_then(|v| v.as_utf8());
        Some(Claim {
            origin: Origin::parse(field("origin")?),
            uid: field("uid")?.to_string(),
            claimed_at: field("claimed_at")?.parse().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_names_one_origin_and_object() {
        let claim = Claim {
            origin: Origin::parse("bootstrap:team-a/db"),
            uid: "uid-1".into(),
            claimed_at: 7,
        };
        assert_eq!(Claim::from_data(&claim.to_data()), Some(claim.clone()));
        assert!(claim.is_held_by(&Origin::parse("bootstrap:team-a/db"), "uid-1"));
        assert!(!claim.is_held_by(&Origin::parse("bootstrap:team-a/db"), "uid-2"));
        assert!(!claim.is_held_by(&Origin::parse("push:team-a/db"), "uid-1"));
        let same = Origin::parse("bootstrap:team-a/db");
        assert_eq!(claim.held_for(&same, "uid-1", 7, 120), ClaimHeld::Ours);
        assert_eq!(claim.held_for(&same, "uid-1", 1000, 120), ClaimHeld::Ours);
        assert_eq!(
            claim.held_for(&same, "uid-2", 127, 120),
            ClaimHeld::TakeOver
        );
        assert_eq!(
            claim.held_for(&same, "uid-2", 126, 120),
            ClaimHeld::Leased { until: 127 }
        );
        assert_eq!(
            claim.held_for(&Origin::parse("push:team-a/db"), "uid-1", 1000, 120),
            ClaimHeld::Theirs
        );
        assert_eq!(claim_path("team-a/db"), "secops/claims/team-a/db");
        assert_eq!(Claim::from_data(&SecretData::new()), None);
    }

    #[test]
    fn a_holder_stops_writing_a_margin_before_its_lease_ends() {
        let claim = Claim {
            origin: Origin::parse("bootstrap:team-a/db"),
            uid: "uid-1".into(),
            claimed_at: 100,
        };
        assert_eq!(fence_margin(120), 30);
        assert!(claim.within_fence(100, 120));
        assert!(claim.within_fence(189, 120));
        assert!(!claim.within_fence(190, 120));
        assert!(claim.within_fence(90, 120), "a clock behind the claimer's");
        // The fence comes before the lease a takeover waits for.
        let same = Origin::parse("bootstrap:team-a/db");
        assert!(matches!(
            claim.held_for(&same, "uid-2", 190, 120),
            ClaimHeld::Leased { .. }
        ));
    }

    #[test]
    fn a_claim_names_its_holder_in_refusals() {
        let claim = Claim {
            origin: Origin::parse("push:team-a/cert"),
            uid: "uid-9".into(),
            claimed_at: 1,
        };
        assert_eq!(
            claim.holder(),
            "push:team-a/cert (uid uid-9, claimed, not yet recorded)"
        );
    }
}
