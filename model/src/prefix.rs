//! The push rule before the ownership fix (commit 0579399's parent), kept as a known-failing
//! variant so the checker is shown able to fail: no claim, and data without provenance is
//! unowned, so a push overwrites it with `cas` = the current version. Transcribed from the
//! old `src/domain/push.rs`; the old `Unchanged { claim: true }` (record provenance over
//! identical data) is the current `Record`, and the old `Write { cas }` is a write without
//! a claim.

use secops::domain::fingerprint::Fingerprint;
use secops::domain::provenance::Ownership;
use secops::domain::push::PushStep;

fn write(cas: u64) -> PushStep {
    PushStep::Write {
        cas,
        claim: false,
        adopted: false,
    }
}

pub fn judge(
    current_version: Option<u64>,
    ownership: Ownership,
    fingerprint: &Fingerprint,
) -> PushStep {
    let Some(current_version) = current_version else {
        return write(0);
    };
    match ownership {
        Ownership::Ours(p) if p.origin_fingerprint.as_ref() == Some(fingerprint) => {
            PushStep::Unchanged {
                version: p.origin_version,
            }
        }
        Ownership::Ours(_) => write(current_version),
        Ownership::Theirs { owner } => PushStep::Conflict { owner },
        Ownership::Unowned => PushStep::CompareData { current_version },
    }
}

pub fn judge_unowned(
    current_version: u64,
    held: Option<(u64, &Fingerprint)>,
    fingerprint: &Fingerprint,
) -> PushStep {
    match held {
        Some((version, held)) if held == fingerprint => PushStep::Record { version },
        _ => write(current_version),
    }
}
