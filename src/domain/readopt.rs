//! An origin Secret re-created under its old name (new uid), as after a cluster loss when
//! the bootstrap phase repeats (RFC §3.5, `docs/contract.md` §6.8). Vault's provenance names
//! the old uid; whether the new object may take its place depends only on its data.

use std::collections::BTreeMap;

use super::fingerprint::Fingerprint;
use super::names::meta;
use super::provenance::{MetadataPatch, Origin, Provenance};

/// How many earlier uids of an origin Vault keeps: with 36-byte uids the list stays far
/// below KV v2's 512-byte metadata value limit.
pub const UID_HISTORY: usize = 8;

/// What becomes of a Secret whose path's provenance names its origin under another uid.
#[derive(Debug, PartialEq, Eq)]
pub enum Recreation {
    /// Its data is what Vault recorded for the origin: record the new uid (no Vault write)
    /// and mark it as the old one was. Vault stays the authority.
    Readopt { previous_uid: String, version: u64 },
    /// Other data (Git holds another value than the one handed over): Vault stays the
    /// authority, the Secret is marked stale and nothing is written.
    Stale { authority_uid: String, version: u64 },
}

/// `None` unless provenance names this origin under another uid. `current` is the keyed
/// fingerprint of the Secret's data now; without a recorded fingerprint nothing proves the
/// data is the same, so the Secret is stale.
pub fn judge_recreated(
    provenance: Option<&Provenance>,
    origin: &Origin,
    uid: &str,
    current: Option<&Fingerprint>,
) -> Option<Recreation> {
    let p = provenance.filter(|p| p.origin == *origin && p.origin_uid != uid)?;
    let same_data = p.origin_fingerprint.is_some() && p.origin_fingerprint.as_ref() == current;
    Some(match same_data {
        true => Recreation::Readopt {
            previous_uid: p.origin_uid.clone(),
            version: p.origin_version,
        },
        false => Recreation::Stale {
            authority_uid: p.origin_uid.clone(),
            version: p.origin_version,
        },
    })
}

/// The earlier uids recorded at a path, newest first.
pub fn previous_uids(custom: &BTreeMap<String, String>) -> Vec<String> {
    custom
        .get(meta::PREVIOUS_UIDS)
        .map(|list| {
            list.split(',')
                .filter(|u| !u.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// The metadata change that moves a path's provenance to the re-created Secret `uid`,
/// keeping the replaced uid first in the history. The handover's version and fingerprint
/// stay: they still say what was handed over. A consumption recorded for the old uid is
/// cleared, the new object is not consumed yet.
pub fn readoption_changes(
    custom: &BTreeMap<String, String>,
    provenance: &Provenance,
    uid: &str,
    at: &str,
) -> MetadataPatch {
    let mut history = vec![provenance.origin_uid.clone()];
    history.extend(
        previous_uids(custom)
            .into_iter()
            .filter(|u| u != uid && *u != provenance.origin_uid),
    );
    history.truncate(UID_HISTORY);
    MetadataPatch::from([
        (meta::ORIGIN_UID.to_string(), Some(uid.to_string())),
        (meta::PREVIOUS_UIDS.to_string(), Some(history.join(","))),
        (meta::READOPTED_AT.to_string(), Some(at.to_string())),
        (meta::CONSUMED_MODE.to_string(), None),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(c: char) -> Fingerprint {
        Fingerprint::parse(&format!("hmac-sha256:{}", c.to_string().repeat(64))).unwrap()
    }

    fn provenance(uid: &str, fingerprint: Option<Fingerprint>) -> Provenance {
        Provenance {
            origin: Origin::parse("bootstrap:ns/db"),
            origin_uid: uid.into(),
            origin_version: 3,
            origin_fingerprint: fingerprint,
        }
    }

    #[test]
    fn a_recreated_origin_is_readopted_only_with_the_recorded_data() {
        let origin = Origin::parse("bootstrap:ns/db");
        let p = provenance("uid-1", Some(fp('a')));
        assert_eq!(
            judge_recreated(Some(&p), &origin, "uid-2", Some(&fp('a'))),
            Some(Recreation::Readopt {
                previous_uid: "uid-1".into(),
                version: 3
            })
        );
        let stale = Some(Recreation::Stale {
            authority_uid: "uid-1".into(),
            version: 3,
        });
        assert_eq!(
            judge_recreated(Some(&p), &origin, "uid-2", Some(&fp('b'))),
            stale
        );
        assert_eq!(judge_recreated(Some(&p), &origin, "uid-2", None), stale);
        let unrecorded = provenance("uid-1", None);
        assert_eq!(
            judge_recreated(Some(&unrecorded), &origin, "uid-2", None),
            stale,
            "no recorded fingerprint proves nothing"
        );
    }

    #[test]
    fn only_the_same_origin_under_another_uid_is_a_recreation() {
        let p = provenance("uid-1", Some(fp('a')));
        let origin = Origin::parse("bootstrap:ns/db");
        assert_eq!(
            judge_recreated(None, &origin, "uid-2", Some(&fp('a'))),
            None
        );
        assert_eq!(
            judge_recreated(Some(&p), &origin, "uid-1", Some(&fp('a'))),
            None,
            "ours"
        );
        for other in ["push:ns/db", "bootstrap:ns/other", "manual"] {
            assert_eq!(
                judge_recreated(Some(&p), &Origin::parse(other), "uid-2", Some(&fp('a'))),
                None,
                "{other}"
            );
        }
    }

    #[test]
    fn readoption_keeps_a_bounded_history_newest_first() {
        let p = provenance("uid-3", Some(fp('a')));
        let custom = BTreeMap::from([(meta::PREVIOUS_UIDS.to_string(), "uid-2,uid-1".to_string())]);
        let patch = readoption_changes(&custom, &p, "uid-4", "2026-01-01T00:00:00Z");
        assert_eq!(patch[meta::ORIGIN_UID].as_deref(), Some("uid-4"));
        assert_eq!(
            patch[meta::PREVIOUS_UIDS].as_deref(),
            Some("uid-3,uid-2,uid-1")
        );
        assert_eq!(patch[meta::CONSUMED_MODE], None);
        assert!(
            !patch.contains_key(meta::ORIGIN_VERSION),
            "the handover stays"
        );
        assert!(!patch.contains_key(meta::ORIGIN_FINGERPRINT));
        // Re-adopting the same object twice changes nothing more.
        let applied = BTreeMap::from([(
            meta::PREVIOUS_UIDS.to_string(),
            "uid-3,uid-2,uid-1".to_string(),
        )]);
        assert_eq!(
            readoption_changes(&applied, &p, "uid-4", "t")[meta::PREVIOUS_UIDS],
            patch[meta::PREVIOUS_UIDS]
        );
        let long: Vec<String> = (0..20)
            .map(|i| format!("{i:08}-0000-0000-0000-000000000000"))
            .collect();
        let custom = BTreeMap::from([(meta::PREVIOUS_UIDS.to_string(), long.join(","))]);
        let bounded = readoption_changes(&custom, &p, "uid-4", "t");
        let kept = bounded[meta::PREVIOUS_UIDS].as_deref().unwrap();
        assert_eq!(kept.split(',').count(), UID_HISTORY);
        assert!(kept.starts_with("uid-3,"));
        assert!(kept.len() < 512);
    }
}
