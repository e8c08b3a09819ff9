//! The push decision table (`docs/contract.md` §6.5): what `push-secret` does with a Vault
//! path, from who owns it and what it holds. Pure: the command reads, this decides.

use super::fingerprint::Fingerprint;
use super::provenance::Ownership;

/// What a push does next.
#[derive(Debug, PartialEq, Eq)]
pub enum PushStep {
    /// Vault holds this data under this Secret's provenance already.
    Unchanged {
        version: u64,
    },
    /// Write with `cas` = the version read (0: the path must not exist), then record.
    /// `claim`: the path has no provenance of ours, so it is claimed first; `adopted`: the
    /// write replaces data secops did not write (`--adopt`).
    Write {
        cas: u64,
        claim: bool,
        adopted: bool,
    },
    /// Identical data without provenance (a push that died before recording itself):
    /// claim it and record ownership, without a new version.
    Record {
        version: u64,
    },
    /// Data without provenance: compare it with ours before deciding.
    CompareData {
        current_version: u64,
    },
    Conflict {
        owner: String,
    },
    /// Other data without provenance, and no `--adopt`.
    NotAdopted,
}

/// `current_version`: the path's current version, `None` when the path does not exist.
/// Metadata without any version (set up ahead by a Vault team) counts as absent.
pub fn judge(
    current_version: Option<u64>,
    ownership: Ownership,
    fingerprint: &Fingerprint,
) -> PushStep {
    let current_version = current_version.unwrap_or(0);
    match ownership {
        Ownership::Ours(p) if p.origin_fingerprint.as_ref() == Some(fingerprint) => {
            PushStep::Unchanged {
                version: p.origin_version,
            }
        }
        Ownership::Ours(_) => PushStep::Write {
            cas: current_version,
            claim: false,
            adopted: false,
        },
        Ownership::Theirs { owner } => PushStep::Conflict { owner },
        Ownership::Unowned if current_version == 0 => PushStep::Write {
            cas: 0,
            claim: true,
            adopted: false,
        },
        Ownership::Unowned => PushStep::CompareData { current_version },
    }
}

/// The second half of the table, for data without provenance: the same data is recorded as
/// it is; other data is overwritten only when adopting.
pub fn judge_unowned(
    current_version: u64,
    held: Option<(u64, &Fingerprint)>,
    fingerprint: &Fingerprint,
    adopt: bool,
) -> PushStep {
    match held {
        Some((version, held)) if held == fingerprint => PushStep::Record { version },
        _ if adopt => PushStep::Write {
            cas: current_version,
            claim: true,
            adopted: true,
        },
        _ => PushStep::NotAdopted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::provenance::{Origin, Provenance};

    fn fp(c: char) -> Fingerprint {
        Fingerprint::parse(&format!("hmac-sha256:{}", c.to_string().repeat(64))).unwrap()
    }

    #[test]
    fn the_push_table() {
        let ours = Provenance {
            origin: Origin::parse("push:ops/cert"),
            origin_uid: "u".into(),
            origin_version: 2,
            origin_fingerprint: Some(fp('a')),
        };
        let create = PushStep::Write {
            cas: 0,
            claim: true,
            adopted: false,
        };
        assert_eq!(judge(None, Ownership::Unowned, &fp('a')), create);
        assert_eq!(judge(Some(0), Ownership::Unowned, &fp('a')), create);
        assert_eq!(
            judge(Some(3), Ownership::Ours(&ours), &fp('a')),
            PushStep::Unchanged { version: 2 }
        );
        assert_eq!(
            judge(Some(3), Ownership::Ours(&ours), &fp('b')),
            PushStep::Write {
                cas: 3,
                claim: false,
                adopted: false
            }
        );
        assert_eq!(
            judge(Some(3), Ownership::Theirs { owner: "o".into() }, &fp('a')),
            PushStep::Conflict { owner: "o".into() }
        );
        assert_eq!(
            judge(Some(3), Ownership::Unowned, &fp('a')),
            PushStep::CompareData { current_version: 3 }
        );
    }

    #[test]
    fn data_without_provenance_is_never_overwritten_without_adopt() {
        assert_eq!(
            judge_unowned(3, Some((3, &fp('a'))), &fp('a'), false),
            PushStep::Record { version: 3 }
        );
        assert_eq!(
            judge_unowned(3, Some((3, &fp('b'))), &fp('a'), false),
            PushStep::NotAdopted
        );
        assert_eq!(
            judge_unowned(3, None, &fp('a'), false),
            PushStep::NotAdopted
        );
        assert_eq!(
            judge_unowned(3, Some((3, &fp('b'))), &fp('a'), true),
            PushStep::Write {
                cas: 3,
                claim: true,
                adopted: true
            }
        );
    }
}
