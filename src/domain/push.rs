//! The push decision table (`docs/contract.md` §6.5): what `push-secret` does with a Vault
//! path, from who owns it and what it holds. Pure: the command reads, this decides.

use super::fingerprint::Fingerprint;
use super::provenance::Ownership;

/// What a push does next.
#[derive(Debug, PartialEq, Eq)]
pub enum PushStep {
    /// Vault holds this data already. `claim`: record ownership over it (the path had
    /// identical data and no provenance), without a new version.
    Unchanged {
        version: u64,
        claim: bool,
    },
    /// Write with `cas` = the version read (0: the path must not exist).
    Write {
        cas: u64,
    },
    /// Data without provenance: compare it with ours before deciding.
    CompareData {
        current_version: u64,
    },
    Conflict {
        owner: String,
    },
}

/// `current_version`: the path's current version, `None` when the path does not exist.
pub fn judge(
    current_version: Option<u64>,
    ownership: Ownership,
    fingerprint: &Fingerprint,
) -> PushStep {
    let Some(current_version) = current_version else {
        return PushStep::Write { cas: 0 };
    };
    match ownership {
        Ownership::Ours(p) if p.origin_fingerprint.as_ref() == Some(fingerprint) => {
            PushStep::Unchanged {
                version: p.origin_version,
                claim: false,
            }
        }
        Ownership::Ours(_) => PushStep::Write {
            cas: current_version,
        },
        Ownership::Theirs { owner } => PushStep::Conflict { owner },
        Ownership::Unowned => PushStep::CompareData { current_version },
    }
}

/// The second half of the table, for a path without provenance: the same data is claimed
/// as it is; anything else is overwritten conditionally.
pub fn judge_unowned(
    current_version: u64,
    held: Option<(u64, &Fingerprint)>,
    fingerprint: &Fingerprint,
) -> PushStep {
    match held {
        Some((version, held)) if held == fingerprint => PushStep::Unchanged {
            version,
            claim: true,
        },
        _ => PushStep::Write {
            cas: current_version,
        },
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
        assert_eq!(
            judge(None, Ownership::Unowned, &fp('a')),
            PushStep::Write { cas: 0 }
        );
        assert_eq!(
            judge(Some(3), Ownership::Ours(&ours), &fp('a')),
            PushStep::Unchanged {
                version: 2,
                claim: false
            }
        );
        assert_eq!(
            judge(Some(3), Ownership::Ours(&ours), &fp('b')),
            PushStep::Write { cas: 3 }
        );
        assert_eq!(
            judge(Some(3), Ownership::Theirs { owner: "o".into() }, &fp('a')),
            PushStep::Conflict { owner: "o".into() }
        );
        assert_eq!(
            judge(Some(3), Ownership::Unowned, &fp('a')),
            PushStep::CompareData { current_version: 3 }
        );
        assert_eq!(
            judge_unowned(3, Some((3, &fp('a'))), &fp('a')),
            PushStep::Unchanged {
                version: 3,
                claim: true
            }
        );
        assert_eq!(
            judge_unowned(3, Some((3, &fp('b'))), &fp('a')),
            PushStep::Write { cas: 3 }
        );
        assert_eq!(judge_unowned(3, None, &fp('a')), PushStep::Write { cas: 3 });
    }
}
