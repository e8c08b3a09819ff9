//! Exactly-once rotation. KV v2 `custom_metadata` has no check-and-set, so each rotation id
//! gets a record of its own, created with `cas=0` before the data write and completed after
//! it; the data write itself is `cas` = the version read. The decision table lives here.

use super::fingerprint::Fingerprint;
use super::names::RESERVED_PREFIX;
use crate::error::{Error, Result};
use crate::secret::{SecretBytes, SecretData};

/// The record of one rotation id for one path. Holds no secret: only versions, times and the
/// keyed fingerprints of the data each claimer meant to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationRecord {
    pub base_version: u64,
    pub intents: Vec<Fingerprint>,
    pub claimed_at: i64,
    /// The version the rotation wrote, once done.
    pub version: Option<u64>,
}

pub fn record_path(path: &str, rotation_id: &str) -> String {
    format!("{RESERVED_PREFIX}/rotations/{path}/{rotation_id}")
}

/// Rotation ids become path segments: a workflow uid, an event id, a short name.
pub fn validate_rotation_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        && id != "."
        && id != "..";
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "--rotation-id {id:?}: use 1-128 letters, digits, '-', '_', '.', ':'"
        )))
    }
}

impl RotationRecord {
    pub fn to_data(&self) -> SecretData {
        let text = |s: String| SecretBytes::from_string(s);
        let mut data = SecretData::new();
        data.insert("base_version".into(), text(self.base_version.to_string()));
        data.insert(
            "intents".into(),
            text(
                self.intents
                    .iter()
                    .map(Fingerprint::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        );
        data.insert("claimed_at".into(), text(self.claimed_at.to_string()));
        if let Some(version) = self.version {
            data.insert("version".into(), text(version.to_string()));
        }
        data
    }

    pub fn from_data(data: &SecretData) -> Option<Self> {
        let field = |name: &str| data.get(name).and_then(|v| v.as_utf8()).map(str::to_string);
        Some(Self {
            base_version: field("base_version")?.parse().ok()?,
            intents: field("intents")?
                .split(',')
                .filter_map(Fingerprint::parse)
                .collect(),
            claimed_at: field("claimed_at")?.parse().ok()?,
            version: field("version").and_then(|v| v.parse().ok()),
        })
    }
}

/// What a run does next for its rotation id.
#[derive(Debug, PartialEq, Eq)]
pub enum RotationStep {
    /// No record: claim the id (`cas=0`), then write.
    Claim,
    /// Done before: refresh consumers only.
    AlreadyRotated { version: u64 },
    /// The path moved past the claim's base: if that next version carries one of the claim's
    /// intents, this id wrote it (the run died before completing the record).
    CheckWritten { version: u64 },
    /// Another run holds a fresh claim and has not written yet: wait for it.
    Wait,
    /// The claim is stale: take it over (`cas` on the record) and write.
    TakeOver,
}

/// `lease_seconds`: how long a claim protects an in-flight rotation before another run may
/// take it over (the claimer is presumed dead).
pub fn decide(
    record: Option<&RotationRecord>,
    current_version: u64,
    now: i64,
    lease_seconds: i64,
) -> RotationStep {
    let Some(record) = record else {
        return RotationStep::Claim;
    };
    if let Some(version) = record.version {
        return RotationStep::AlreadyRotated { version };
    }
    if current_version > record.base_version {
        return RotationStep::CheckWritten {
            version: record.base_version + 1,
        };
    }
    if now - record.claimed_at < lease_seconds {
        RotationStep::Wait
    } else {
        RotationStep::TakeOver
    }
}

/// How many newest versions `--keep-versions` keeps, and which older live ones to destroy.
pub fn versions_to_destroy(live: &[u64], written: u64, keep: u32) -> Vec<u64> {
    let keep = u64::from(keep.max(2));
    let oldest_kept = written.saturating_sub(keep - 1);
    live.iter()
        .copied()
        .filter(|v| *v < oldest_kept && *v != written)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(c: char) -> Fingerprint {
        Fingerprint::parse(&format!("hmac-sha256:{}", c.to_string().repeat(64))).unwrap()
    }

    #[test]
    fn records_round_trip() {
        let record = RotationRecord {
            base_version: 4,
            intents: vec![fp('a'), fp('b')],
            claimed_at: 100,
            version: Some(5),
        };
        assert_eq!(
            RotationRecord::from_data(&record.to_data()),
            Some(record.clone())
        );
        let open = RotationRecord {
            version: None,
            ..record
        };
        assert_eq!(RotationRecord::from_data(&open.to_data()), Some(open));
    }

    #[test]
    fn decision_table() {
        let open = RotationRecord {
            base_version: 3,
            intents: vec![fp('a')],
            claimed_at: 1000,
            version: None,
        };
        assert_eq!(decide(None, 3, 1000, 120), RotationStep::Claim);
        assert_eq!(
            decide(
                Some(&RotationRecord {
                    version: Some(4),
                    ..open.clone()
                }),
                9,
                1000,
                120
            ),
            RotationStep::AlreadyRotated { version: 4 }
        );
        assert_eq!(
            decide(Some(&open), 4, 1001, 120),
            RotationStep::CheckWritten { version: 4 }
        );
        assert_eq!(decide(Some(&open), 3, 1001, 120), RotationStep::Wait);
        assert_eq!(decide(Some(&open), 3, 1120, 120), RotationStep::TakeOver);
    }

    #[test]
    fn keep_versions_never_destroys_the_written_or_previous_version() {
        assert_eq!(versions_to_destroy(&[1, 2, 3, 4, 5], 5, 2), vec![1, 2, 3]);
        assert_eq!(
            versions_to_destroy(&[1, 2, 3, 4, 5], 5, 1),
            vec![1, 2, 3],
            "below 2 is raised to 2"
        );
        assert_eq!(versions_to_destroy(&[4, 5], 5, 3), Vec::<u64>::new());
    }

    #[test]
    fn rotation_ids_are_safe_path_segments() {
        assert!(validate_rotation_id("3f2a9c1e-1b2c-4d5e-8f90-123456789abc").is_ok());
        for bad in ["", "..", "a/b", "a b", &"x".repeat(129)] {
            assert!(validate_rotation_id(bad).is_err(), "{bad:?}");
        }
    }
}
