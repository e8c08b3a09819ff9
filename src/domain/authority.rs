//! Who is authoritative for each managed secret, and which invariants of RFC section 3.3
//! are broken (`status`). Pure: the command gathers the facts, this judges them.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Serialize, Serializer};

use super::bootstrap::{ConsumeMode, SourceSecret};
use super::fingerprint::Fingerprint;
use super::names::{self, meta};
use super::provenance::{Origin, Ownership, Provenance};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Authority {
    /// The bootstrap Secret, i.e. encrypted intent in Git.
    Git,
    Vault,
    /// An internal Secret not yet published: only its operator holds it.
    Operator,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ViolationKind {
    /// A bootstrap Secret not consumed while Vault already holds its handover, past the grace.
    TwoAuthorities,
    /// Bootstrap data changed after the handover.
    Drifted,
    /// Consumed with `--mode strip`, yet data is back (a GitOps tool re-applied it).
    NotStripped,
    /// Vault names an origin Secret that no longer exists.
    OriginGone,
    /// A consumed Secret whose Vault path carries no handover: the authority was lost.
    VaultMissing,
    /// A Vault policy or kubernetes-auth role that is absent, differs from the one the chart
    /// renders, or was not written by secops (`status --vault-config-from-*`).
    VaultConfigDrift,
    /// The current version of a path Vault is the authority for is deleted or destroyed.
    VaultDataLost,
    /// The Secret was deleted and re-created (another uid) after Vault recorded the first,
    /// and no handover or push has judged it yet: the next re-adopts it (the recorded data)
    /// or marks it stale (`docs/contract.md` §6.8).
    Recreated,
    /// A re-created Secret marked stale: its data is not what Vault recorded for its origin.
    /// Vault stays the authority until someone retires the Secret from Git.
    Stale,
    /// A handover recorded for a Secret that now names another path: the old path stays
    /// owned and unconsumed data points elsewhere.
    OriginMoved,
    /// The fingerprint key exists but cannot be read: drift can no longer be seen.
    FingerprintKeyLost,
    /// The current value is older than its maximum age (`--max-age`, `secops-max-age`).
    TooOld,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub kind: ViolationKind,
    pub detail: String,
}

/// Where a managed secret stands in its life (RFC section 3's phases).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// A bootstrap Secret not handed over yet.
    Pending,
    /// In Vault, not yet marked consumed.
    HandedOver,
    Consumed,
    /// Consumed with `--mode delete`: the origin is gone by design.
    ConsumedDeleted,
    /// Vault names an origin that no longer exists.
    OriginGone,
    /// The origin was consumed and is gone since (removed from Git): nothing is lost.
    Retired,
    /// Re-created with other data than Vault recorded: Vault is the authority, the Secret
    /// waits to be retired.
    Stale,
    /// Handed over or pushed, then rotated this many times in Vault.
    Rotated(u64),
    Pushed,
    /// Pushed, and the source has changed since: the next push publishes it.
    PushPending,
    NotPushed,
    /// The Secret cannot be managed as it is; the reason says why.
    Invalid(String),
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Phase::Pending => f.write_str("pending"),
            Phase::HandedOver => f.write_str("handed-over"),
            Phase::Consumed => f.write_str("consumed"),
            Phase::ConsumedDeleted => f.write_str("consumed (deleted)"),
            Phase::OriginGone => f.write_str("origin gone"),
            Phase::Retired => f.write_str("retired"),
            Phase::Stale => f.write_str("stale"),
            Phase::Rotated(1) => f.write_str("rotated 1 time"),
            Phase::Rotated(n) => write!(f, "rotated {n} times"),
            Phase::Pushed => f.write_str("pushed"),
            Phase::PushPending => f.write_str("push-pending (source changed)"),
            Phase::NotPushed => f.write_str("not-pushed"),
            Phase::Invalid(reason) => write!(f, "invalid: {reason}"),
        }
    }
}

impl Serialize for Phase {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The judgement of one managed secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assessment {
    pub authority: Authority,
    pub phase: Phase,
    pub violations: Vec<Violation>,
}

impl Assessment {
    /// A Secret whose target cannot be read from its annotations: nothing to judge in Vault.
    pub fn invalid(reason: String) -> Self {
        Assessment {
            authority: Authority::Git,
            phase: Phase::Invalid(reason),
            violations: Vec::new(),
        }
    }
}

/// What Vault holds at a Secret's target path.
pub struct VaultFacts<'a> {
    pub provenance: Option<&'a Provenance>,
    pub custom: &'a BTreeMap<String, String>,
    pub current_version: u64,
    /// The current version can be read (neither deleted nor destroyed).
    pub current_readable: bool,
}

/// Vault records another object of the same name (the Secret was deleted and re-created).
fn recreated(vault: Option<&VaultFacts>, origin: &Origin, uid: &str) -> Option<Violation> {
    let provenance = vault?.provenance?;
    (provenance.origin == *origin && provenance.origin_uid != uid).then(|| {
        violation(
            ViolationKind::Recreated,
            format!(
                "Vault's provenance names uid {}, this Secret is uid {uid}: it was re-created; \
                 Vault stays the authority, the next handover or push re-adopts it if its data \
                 is what Vault recorded, else marks it stale (see docs/runbook.md)",
                provenance.origin_uid
            ),
        )
    })
}

/// A Secret marked stale that Vault's provenance still does not name: both uids, and how
/// to end it. `None` when it is not marked, or not (or no longer) a re-created origin.
fn stale(secret: &SourceSecret, vault: Option<&VaultFacts>, origin: &Origin) -> Option<Assessment> {
    let provenance = vault?.provenance?;
    let recreated = provenance.origin == *origin && provenance.origin_uid != secret.uid;
    (secret.is_stale() && recreated).then(|| Assessment {
        authority: Authority::Vault,
        phase: Phase::Stale,
        violations: vec![violation(
            ViolationKind::Stale,
            format!(
                "this Secret (uid {}) was re-created with other data than Vault recorded from uid {} \
                 (version {}); Vault stays the authority: retire the Secret from Git (see docs/runbook.md)",
                secret.uid, provenance.origin_uid, provenance.origin_version
            ),
        )],
    })
}

/// The current version of a path secops recorded is gone.
fn data_lost(vault: Option<&VaultFacts>) -> Option<Violation> {
    let vault = vault?;
    (vault.current_version > 0 && !vault.current_readable).then(|| {
        violation(
            ViolationKind::VaultDataLost,
            format!(
                "the current version {} is deleted or destroyed",
                vault.current_version
            ),
        )
    })
}

/// A value written at `written_at` that is older than its maximum age.
pub fn age_violation(
    written_at: Option<jiff::Timestamp>,
    now: jiff::Timestamp,
    max_age_seconds: Option<i64>,
) -> Option<Violation> {
    super::expiry::too_old(written_at, now, max_age_seconds)
        .map(|detail| violation(ViolationKind::TooOld, detail))
}

fn violation(kind: ViolationKind, detail: impl Into<String>) -> Violation {
    Violation {
        kind,
        detail: detail.into(),
    }
}

fn phase_after_handover(origin_version: u64, current_version: u64, base: Phase) -> Phase {
    match current_version.saturating_sub(origin_version) {
        0 => base,
        n => Phase::Rotated(n),
    }
}

fn ours<'a>(
    vault: Option<&VaultFacts<'a>>,
    origin: &super::provenance::Origin,
    uid: &str,
) -> Option<&'a Provenance> {
    match Ownership::of(vault.and_then(|v| v.provenance), origin, uid) {
        Ownership::Ours(p) => Some(p),
        Ownership::Theirs { .. } | Ownership::Unowned => None,
    }
}

/// Judges a bootstrap Secret. `owned` is true when Vault's provenance names this Secret;
/// `current` is the keyed fingerprint of its data now (absent before any key exists).
pub fn assess_bootstrap(
    secret: &SourceSecret,
    vault: Option<&VaultFacts>,
    current: Option<&Fingerprint>,
    now: i64,
    grace_seconds: i64,
) -> Assessment {
    let origin = secret.bootstrap_origin();
    let owned = ours(vault, &origin, &secret.uid);
    let mut violations = Vec::new();
    if secret.is_consumed() {
        // The annotation may have been removed with the data changed: Vault's record of the
        // handover still says what the data was.
        let recorded = secret
            .annotations
            .get(names::FINGERPRINT)
            .and_then(|f| Fingerprint::parse(f))
            .or_else(|| owned.and_then(|p| p.origin_fingerprint.clone()));
        if let (Some(recorded), Some(current)) = (&recorded, current) {
            if !secret.data.is_empty() && recorded != current {
                violations.push(violation(
                    ViolationKind::Drifted,
                    "data changed after it was consumed",
                ));
            }
        }
        if secret.consumed_mode() == Some(ConsumeMode::Strip) && !secret.data.is_empty() {
            violations.push(violation(
                ViolationKind::NotStripped,
                "consumed with --mode strip, but data is present again",
            ));
        }
        violations.extend(owned.and(data_lost(vault)));
        let phase = match owned {
            Some(p) => phase_after_handover(
                p.origin_version,
                vault.map(|v| v.current_version).unwrap_or(0),
                Phase::Consumed,
            ),
            None => {
                violations.push(violation(
                    ViolationKind::VaultMissing,
                    "consumed, but Vault holds no handover for it",
                ));
                Phase::Consumed
            }
        };
        return Assessment {
            authority: Authority::Vault,
            phase,
            violations,
        };
    }
    let Some(provenance) = owned else {
        if let Some(stale) = stale(secret, vault, &origin) {
            return stale;
        }
        violations.extend(recreated(vault, &origin, &secret.uid));
        return Assessment {
            authority: Authority::Git,
            phase: Phase::Pending,
            violations,
        };
    };
    if let (Some(recorded), Some(current)) = (&provenance.origin_fingerprint, current) {
        if recorded != current {
            violations.push(violation(
                ViolationKind::Drifted,
                "data changed after the handover",
            ));
        }
    }
    // A re-adopted Secret's grace starts when it took the old uid's place.
    let handed_at = vault
        .and_then(|v| {
            v.custom
                .get(meta::READOPTED_AT)
                .or_else(|| v.custom.get(meta::HANDOVER_AT))
        })
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    if handed_at.is_none_or(|at| now - at.as_second() >= grace_seconds) {
        violations.push(violation(
            ViolationKind::TwoAuthorities,
            "handed over to Vault but not consumed, past the grace period",
        ));
    }
    Assessment {
        authority: Authority::Vault,
        phase: Phase::HandedOver,
        violations,
    }
}

/// Judges a pushed (internal) Secret: Vault is authoritative for consumers once pushed.
pub fn assess_internal(
    secret: &SourceSecret,
    vault: Option<&VaultFacts>,
    current: Option<&Fingerprint>,
) -> Assessment {
    let origin = secret.push_origin();
    let phase = match ours(vault, &origin, &secret.uid) {
        Some(p) if current.is_none() || p.origin_fingerprint.as_ref() == current => Phase::Pushed,
        Some(_) => Phase::PushPending,
        None => {
            return stale(secret, vault, &origin).unwrap_or_else(|| Assessment {
                authority: Authority::Operator,
                phase: Phase::NotPushed,
                violations: recreated(vault, &origin, &secret.uid).into_iter().collect(),
            })
        }
    };
    Assessment {
        authority: Authority::Vault,
        phase,
        violations: data_lost(vault).into_iter().collect(),
    }
}

/// Judges a Vault path whose origin Secret was not found. An origin recorded as consumed is
/// gone by design: deleted by `--mode delete`, or removed from Git afterwards (retired).
/// `status` only derives this from what the marking recorded in Vault; it writes nothing.
pub fn assess_orphan(
    provenance: &Provenance,
    custom: &BTreeMap<String, String>,
    current_version: u64,
) -> Assessment {
    let consumed = custom
        .get(meta::CONSUMED_MODE)
        .and_then(|mode| mode.parse::<ConsumeMode>().ok());
    let mut violations = Vec::new();
    let base = match consumed {
        Some(ConsumeMode::Delete) => Phase::ConsumedDeleted,
        Some(ConsumeMode::Annotate | ConsumeMode::Strip) => Phase::Retired,
        None => {
            violations.push(violation(
                ViolationKind::OriginGone,
                format!("origin {} no longer exists", provenance.origin),
            ));
            Phase::OriginGone
        }
    };
    Assessment {
        authority: Authority::Vault,
        phase: phase_after_handover(provenance.origin_version, current_version, base),
        violations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::provenance::Origin;
    use crate::domain::SecretRef;
    use crate::secret::SecretBytes;

    fn fp(c: char) -> Fingerprint {
        Fingerprint::parse(&format!("hmac-sha256:{}", c.to_string().repeat(64))).unwrap()
    }

    fn secret(
        labels: &[(&str, &str)],
        annotations: &[(&str, &str)],
        with_data: bool,
    ) -> SourceSecret {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        SourceSecret {
            reference: SecretRef::new("ns", "s"),
            uid: "uid".into(),
            resource_version: "1".into(),
            labels: map(labels),
            annotations: map(annotations),
            secret_type: "Opaque".into(),
            data: if with_data {
                [("k".to_string(), SecretBytes::from_string("v".into()))]
                    .into_iter()
                    .collect()
            } else {
                Default::default()
            },
        }
    }

    fn owned(version: u64) -> Provenance {
        Provenance {
            origin: Origin::parse("bootstrap:ns/s"),
            origin_uid: "uid".into(),
            origin_version: version,
            origin_fingerprint: Some(fp('a')),
        }
    }

    fn kinds(a: &Assessment) -> Vec<ViolationKind> {
        a.violations.iter().map(|v| v.kind).collect()
    }

    #[test]
    fn pending_is_git_authority_without_violation() {
        let a = assess_bootstrap(&secret(&[], &[], true), None, Some(&fp('a')), 0, 3600);
        assert_eq!(
            (a.authority, a.phase.clone(), kinds(&a)),
            (Authority::Git, Phase::Pending, vec![])
        );
    }

    #[test]
    fn handed_over_but_unconsumed_is_two_authorities_after_grace() {
        let p = owned(1);
        let custom = BTreeMap::from([(
            meta::HANDOVER_AT.to_string(),
            "2026-01-01T00:00:00Z".to_string(),
        )]);
        let facts = VaultFacts {
            provenance: Some(&p),
            custom: &custom,
            current_version: 1,
            current_readable: true,
        };
        let at = "2026-01-01T00:00:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_second();
        let within = assess_bootstrap(
            &secret(&[], &[], true),
            Some(&facts),
            Some(&fp('a')),
            at + 60,
            3600,
        );
        assert!(kinds(&within).is_empty());
        let past = assess_bootstrap(
            &secret(&[], &[], true),
            Some(&facts),
            Some(&fp('a')),
            at + 7200,
            3600,
        );
        assert_eq!(kinds(&past), vec![ViolationKind::TwoAuthorities]);
        let readopted = BTreeMap::from([
            (
                meta::HANDOVER_AT.to_string(),
                "2026-01-01T00:00:00Z".to_string(),
            ),
            (
                meta::READOPTED_AT.to_string(),
                "2026-01-01T02:00:00Z".to_string(),
            ),
        ]);
        let facts = VaultFacts {
            custom: &readopted,
            ..facts
        };
        let marking = assess_bootstrap(
            &secret(&[], &[], true),
            Some(&facts),
            Some(&fp('a')),
            at + 7200 + 60,
            3600,
        );
        assert!(
            kinds(&marking).is_empty(),
            "the grace restarts at re-adoption"
        );
    }

    #[test]
    fn consumed_secrets_report_rotations_drift_and_unstripped_data() {
        let p = owned(1);
        let custom = BTreeMap::new();
        let facts = VaultFacts {
            provenance: Some(&p),
            custom: &custom,
            current_version: 4,
            current_readable: true,
        };
        let consumed = [(names::STATE_LABEL, names::STATE_CONSUMED)];
        let clean = assess_bootstrap(
            &secret(&consumed, &[(names::FINGERPRINT, fp('a').as_str())], true),
            Some(&facts),
            Some(&fp('a')),
            0,
            0,
        );
        assert_eq!(
            (clean.phase.to_string(), kinds(&clean)),
            ("rotated 3 times".to_string(), vec![])
        );
        let drifted = assess_bootstrap(
            &secret(&consumed, &[(names::FINGERPRINT, fp('a').as_str())], true),
            Some(&facts),
            Some(&fp('b')),
            0,
            0,
        );
        assert_eq!(kinds(&drifted), vec![ViolationKind::Drifted]);
        let unstripped = assess_bootstrap(
            &secret(&consumed, &[(names::CONSUMED_MODE, "strip")], true),
            Some(&facts),
            None,
            0,
            0,
        );
        assert_eq!(kinds(&unstripped), vec![ViolationKind::NotStripped]);
        let lost = assess_bootstrap(&secret(&consumed, &[], false), None, None, 0, 0);
        assert_eq!(kinds(&lost), vec![ViolationKind::VaultMissing]);
    }

    #[test]
    fn status_tells_the_truth_about_broken_states() {
        let p = owned(1);
        let custom = BTreeMap::new();
        let consumed = [(names::STATE_LABEL, names::STATE_CONSUMED)];
        // Data changed and its fingerprint annotation removed: Vault's record still knows.
        let unannotated = secret(&consumed, &[], true);
        let facts = VaultFacts {
            provenance: Some(&p),
            custom: &custom,
            current_version: 1,
            current_readable: true,
        };
        let changed = assess_bootstrap(&unannotated, Some(&facts), Some(&fp('b')), 0, 0);
        assert_eq!(kinds(&changed), vec![ViolationKind::Drifted]);
        // The current version deleted.
        let deleted = VaultFacts {
            current_readable: false,
            ..facts
        };
        let lost = assess_bootstrap(&unannotated, Some(&deleted), Some(&fp('a')), 0, 0);
        assert_eq!(kinds(&lost), vec![ViolationKind::VaultDataLost]);
        // Re-created with a new uid after `--mode delete`: pending, and refused forever.
        let mut again = secret(&[], &[], true);
        again.uid = "uid-2".into();
        let recreated = assess_bootstrap(&again, Some(&facts), Some(&fp('a')), 0, 0);
        assert_eq!(kinds(&recreated), vec![ViolationKind::Recreated]);
        assert!(recreated.violations[0].detail.contains("uid-2"));
    }

    #[test]
    fn orphans_are_violations_unless_consumed_before_they_went() {
        let p = owned(1);
        assert_eq!(
            kinds(&assess_orphan(&p, &BTreeMap::new(), 1)),
            vec![ViolationKind::OriginGone]
        );
        let consumed =
            |mode: &str| BTreeMap::from([(meta::CONSUMED_MODE.to_string(), mode.to_string())]);
        let deleted = assess_orphan(&p, &consumed("delete"), 1);
        assert_eq!(
            (deleted.phase.clone(), kinds(&deleted)),
            (Phase::ConsumedDeleted, vec![])
        );
        for mode in ["annotate", "strip"] {
            let retired = assess_orphan(&p, &consumed(mode), 3);
            assert_eq!(retired.phase.to_string(), "rotated 2 times");
            assert!(kinds(&retired).is_empty(), "{mode}");
            assert_eq!(assess_orphan(&p, &consumed(mode), 1).phase, Phase::Retired);
        }
        assert_eq!(
            kinds(&assess_orphan(&p, &consumed("bogus"), 1)),
            vec![ViolationKind::OriginGone]
        );
    }

    #[test]
    fn a_stale_secret_names_both_uids_and_vault_stays_the_authority() {
        let p = owned(2);
        let custom = BTreeMap::new();
        let facts = VaultFacts {
            provenance: Some(&p),
            custom: &custom,
            current_version: 2,
            current_readable: true,
        };
        let mut again = secret(&[(names::STATE_LABEL, names::STATE_STALE)], &[], true);
        again.uid = "uid-2".into();
        let a = assess_bootstrap(&again, Some(&facts), Some(&fp('b')), 0, 0);
        assert_eq!(
            (a.authority, a.phase.clone(), kinds(&a)),
            (Authority::Vault, Phase::Stale, vec![ViolationKind::Stale])
        );
        let detail = &a.violations[0].detail;
        assert!(
            detail.contains("uid-2") && detail.contains("uid uid "),
            "{detail}"
        );
        // Marked stale, but the path now belongs to another origin (its annotation changed in
        // Git): that origin's uid is not this Secret's predecessor, so no stale violation.
        let foreign = Provenance {
            origin: Origin::parse("bootstrap:ns/other"),
            ..owned(2)
        };
        let elsewhere = VaultFacts {
            provenance: Some(&foreign),
            ..facts
        };
        let a = assess_bootstrap(&again, Some(&elsewhere), Some(&fp('b')), 0, 0);
        assert_ne!(a.phase, Phase::Stale);
        assert!(
            !kinds(&a).contains(&ViolationKind::Stale),
            "{:?}",
            kinds(&a)
        );
        // Not marked yet: re-created, which the next handover re-adopts or marks stale.
        again.labels.clear();
        let unmarked = assess_bootstrap(&again, Some(&facts), Some(&fp('b')), 0, 0);
        assert_eq!(kinds(&unmarked), vec![ViolationKind::Recreated]);
        // An internal Secret likewise.
        let mut internal = secret(&[(names::STATE_LABEL, names::STATE_STALE)], &[], true);
        internal.uid = "uid-2".into();
        let pushed = Provenance {
            origin: Origin::parse("push:ns/s"),
            ..owned(2)
        };
        let facts = VaultFacts {
            provenance: Some(&pushed),
            ..facts
        };
        let a = assess_internal(&internal, Some(&facts), Some(&fp('b')));
        assert_eq!(
            (a.phase.clone(), kinds(&a)),
            (Phase::Stale, vec![ViolationKind::Stale])
        );
        // Marked stale, then re-adopted (provenance names it): judged as any pushed Secret.
        internal.uid = "uid".into();
        let a = assess_internal(&internal, Some(&facts), Some(&fp('a')));
        assert_eq!((a.phase.clone(), kinds(&a)), (Phase::Pushed, vec![]));
    }

    fn pushed(uid: &str, fingerprint: Option<Fingerprint>) -> Provenance {
        Provenance {
            origin: Origin::parse("push:ns/s"),
            origin_uid: uid.into(),
            origin_version: 1,
            origin_fingerprint: fingerprint,
        }
    }

    fn facts<'a>(
        provenance: Option<&'a Provenance>,
        custom: &'a BTreeMap<String, String>,
        current_version: u64,
    ) -> VaultFacts<'a> {
        VaultFacts {
            provenance,
            custom,
            current_version,
            current_readable: true,
        }
    }

    #[test]
    fn an_internal_secret_is_pushed_until_its_data_changes() {
        let internal = secret(&[], &[], true);
        let custom = BTreeMap::new();
        let p = pushed("uid", Some(fp('a')));
        let vault = facts(Some(&p), &custom, 1);
        let judge = |current: Option<Fingerprint>| {
            let a = assess_internal(&internal, Some(&vault), current.as_ref());
            (a.authority, a.phase.clone(), kinds(&a))
        };
        assert_eq!(
            judge(Some(fp('a'))),
            (Authority::Vault, Phase::Pushed, vec![])
        );
        assert_eq!(
            judge(Some(fp('b'))),
            (Authority::Vault, Phase::PushPending, vec![])
        );
        assert_eq!(
            judge(None),
            (Authority::Vault, Phase::Pushed, vec![]),
            "no key yet: no change can be seen"
        );
        let unrecorded = pushed("uid", None);
        let vault = facts(Some(&unrecorded), &custom, 1);
        assert_eq!(
            assess_internal(&internal, Some(&vault), Some(&fp('a'))).phase,
            Phase::PushPending,
            "nothing recorded: the next push records it"
        );
    }

    #[test]
    fn an_internal_secret_not_pushed_is_the_operators() {
        let internal = secret(&[], &[], true);
        let custom = BTreeMap::new();
        let a = assess_internal(&internal, None, Some(&fp('a')));
        assert_eq!(
            (a.authority, a.phase.clone(), kinds(&a)),
            (Authority::Operator, Phase::NotPushed, vec![])
        );
        let earlier = pushed("uid-0", Some(fp('a')));
        let vault = facts(Some(&earlier), &custom, 1);
        let again = assess_internal(&internal, Some(&vault), Some(&fp('a')));
        assert_eq!(
            (again.phase.clone(), kinds(&again)),
            (Phase::NotPushed, vec![ViolationKind::Recreated])
        );
        let other = Provenance {
            origin: Origin::parse("push:ns/other"),
            ..pushed("uid-9", Some(fp('a')))
        };
        let vault = facts(Some(&other), &custom, 1);
        assert!(
            kinds(&assess_internal(&internal, Some(&vault), None)).is_empty(),
            "another Secret's path is not a re-creation of this one"
        );
    }

    #[test]
    fn only_a_deleted_current_version_is_data_lost() {
        let internal = secret(&[], &[], true);
        let custom = BTreeMap::new();
        let p = pushed("uid", Some(fp('a')));
        let deleted = VaultFacts {
            current_readable: false,
            ..facts(Some(&p), &custom, 2)
        };
        assert_eq!(
            kinds(&assess_internal(&internal, Some(&deleted), None)),
            vec![ViolationKind::VaultDataLost]
        );
        let no_versions = VaultFacts {
            current_readable: false,
            ..facts(Some(&p), &custom, 0)
        };
        assert!(
            kinds(&assess_internal(&internal, Some(&no_versions), None)).is_empty(),
            "metadata without any version has nothing to lose"
        );
    }

    #[test]
    fn the_grace_period_ends_at_its_last_second() {
        let p = owned(1);
        let custom = BTreeMap::from([(
            meta::HANDOVER_AT.to_string(),
            "1970-01-01T00:16:40Z".to_string(),
        )]);
        let vault = facts(Some(&p), &custom, 1);
        let unconsumed = secret(&[], &[], true);
        let at = |now| kinds(&assess_bootstrap(&unconsumed, Some(&vault), None, now, 100));
        assert!(at(1099).is_empty());
        assert_eq!(at(1100), vec![ViolationKind::TwoAuthorities]);
        let empty = BTreeMap::new();
        let unknown = facts(Some(&p), &empty, 1);
        assert_eq!(
            kinds(&assess_bootstrap(
                &unconsumed,
                Some(&unknown),
                None,
                0,
                3600
            )),
            vec![ViolationKind::TwoAuthorities],
            "no handover time recorded: the grace cannot be proven"
        );
        let other = Provenance {
            origin: Origin::parse("bootstrap:ns/other"),
            ..owned(1)
        };
        let theirs = facts(Some(&other), &empty, 1);
        let a = assess_bootstrap(&unconsumed, Some(&theirs), None, 0, 0);
        assert_eq!(
            (a.authority, a.phase.clone(), kinds(&a)),
            (Authority::Git, Phase::Pending, vec![]),
            "another Secret's handover is not this one's"
        );
    }

    #[test]
    fn a_consumed_secret_without_data_or_handover_reports_only_what_is_wrong() {
        let consumed = [(names::STATE_LABEL, names::STATE_CONSUMED)];
        let p = owned(1);
        let custom = BTreeMap::new();
        let vault = facts(Some(&p), &custom, 1);
        let stripped = secret(
            &consumed,
            &[
                (names::FINGERPRINT, fp('a').as_str()),
                (names::CONSUMED_MODE, "strip"),
            ],
            false,
        );
        let a = assess_bootstrap(&stripped, Some(&vault), Some(&fp('b')), 0, 0);
        assert_eq!(
            (a.authority, a.phase.clone(), kinds(&a)),
            (Authority::Vault, Phase::Consumed, vec![]),
            "no data: nothing drifted, nothing to strip"
        );
        let other = Provenance {
            origin_uid: "uid-0".into(),
            ..owned(1)
        };
        let lost = VaultFacts {
            current_readable: false,
            ..facts(Some(&other), &custom, 1)
        };
        assert_eq!(
            kinds(&assess_bootstrap(&stripped, Some(&lost), None, 0, 0)),
            vec![ViolationKind::VaultMissing],
            "another object's lost data is not this handover's"
        );
    }

    #[test]
    fn orphans_show_their_rotations() {
        let p = owned(1);
        let deleted = BTreeMap::from([(meta::CONSUMED_MODE.to_string(), "delete".to_string())]);
        assert_eq!(assess_orphan(&p, &deleted, 1).phase, Phase::ConsumedDeleted);
        assert_eq!(assess_orphan(&p, &deleted, 3).phase, Phase::Rotated(2));
        let gone = assess_orphan(&p, &BTreeMap::new(), 1);
        assert_eq!(
            (gone.authority, gone.phase),
            (Authority::Vault, Phase::OriginGone)
        );
        assert_eq!(
            kinds(&assess_orphan(&p, &BTreeMap::new(), 1)),
            vec![ViolationKind::OriginGone]
        );
        // A consumed origin removed from Git is retired (contract §6.8), not lost.
        let strip = BTreeMap::from([(meta::CONSUMED_MODE.to_string(), "strip".to_string())]);
        let retired = assess_orphan(&p, &strip, 1);
        assert_eq!(kinds(&retired), vec![]);
        assert_eq!(retired.phase, Phase::Retired);
    }

    #[test]
    fn phases_read_as_the_contract_names_them() {
        let cases = [
            (Phase::Pending, "pending"),
            (Phase::HandedOver, "handed-over"),
            (Phase::Consumed, "consumed"),
            (Phase::ConsumedDeleted, "consumed (deleted)"),
            (Phase::OriginGone, "origin gone"),
            (Phase::Rotated(1), "rotated 1 time"),
            (Phase::Rotated(2), "rotated 2 times"),
            (Phase::Pushed, "pushed"),
            (Phase::PushPending, "push-pending (source changed)"),
            (Phase::NotPushed, "not-pushed"),
            (Phase::Invalid("why".into()), "invalid: why"),
        ];
        for (phase, text) in cases {
            assert_eq!(phase.to_string(), text);
            assert_eq!(serde_json::to_value(&phase).unwrap(), text);
        }
        let invalid = Assessment::invalid("no path".into());
        assert_eq!(
            (invalid.authority, invalid.phase, invalid.violations),
            (Authority::Git, Phase::Invalid("no path".into()), vec![])
        );
    }

    #[test]
    fn a_value_past_its_maximum_age_is_too_old() {
        let now: jiff::Timestamp = "2026-01-02T00:00:00Z".parse().unwrap();
        let written: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let v = age_violation(Some(written), now, Some(3600)).unwrap();
        assert_eq!(v.kind, ViolationKind::TooOld);
        assert!(v.detail.contains("3600s"), "{}", v.detail);
        assert_eq!(age_violation(Some(written), now, Some(2 * 86_400)), None);
        assert_eq!(age_violation(Some(written), now, None), None);
    }
}
