//! The contract's vocabulary of outcomes (`docs/contract.md` §4), in one place: what a step
//! ended in, as printed in result documents, output files and audit events.

use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The handover write created the path.
    Written,
    /// Vault already held this; nothing was written.
    Unchanged,
    Consumed,
    AlreadyConsumed,
    /// A re-created origin with the data Vault recorded took the old uid's place in the
    /// provenance; nothing was written to the secret.
    Readopted,
    /// A re-created origin with other data than Vault recorded was marked stale.
    Stale,
    Rotated,
    AlreadyRotated,
    /// `rotate --if-older-than`: the current value is young enough; nothing was written.
    NotDue,
    Pushed,
    /// A consumer was told to pick up a new value.
    Refreshed,
    /// Old versions were destroyed after a rotation.
    Destroyed,
    /// Bootstrap data changed after the handover; nothing was marked.
    Drifted,
    /// A dry run's decision: nothing was written.
    Planned,
    /// A batch in which every item succeeded.
    Done,
    /// An item, or a batch with at least one item, that did not succeed.
    Failed,
    /// The command failed as a whole.
    Error,
    /// `status` found no broken invariant.
    Clean,
    Violations,
    /// `vault-setup` wrote a policy, role or mount (created, or restored after drift).
    Applied,
    /// `vault-setup` took over an object of the same name secops had not written.
    Adopted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Written => "written",
            Outcome::Unchanged => "unchanged",
            Outcome::Consumed => "consumed",
            Outcome::AlreadyConsumed => "already-consumed",
            Outcome::Readopted => "readopted",
            Outcome::Stale => "stale",
            Outcome::Rotated => "rotated",
            Outcome::AlreadyRotated => "already-rotated",
            Outcome::NotDue => "not-due",
            Outcome::Pushed => "pushed",
            Outcome::Refreshed => "refreshed",
            Outcome::Destroyed => "destroyed",
            Outcome::Drifted => "drifted",
            Outcome::Planned => "planned",
            Outcome::Done => "done",
            Outcome::Failed => "failed",
            Outcome::Error => "error",
            Outcome::Clean => "clean",
            Outcome::Violations => "violations",
            Outcome::Applied => "applied",
            Outcome::Adopted => "adopted",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialized_names_are_the_display_names() {
        for outcome in [
            Outcome::Written,
            Outcome::AlreadyConsumed,
            Outcome::AlreadyRotated,
            Outcome::NotDue,
            Outcome::Planned,
            Outcome::Violations,
        ] {
            assert_eq!(
                serde_json::to_value(outcome).unwrap(),
                serde_json::Value::String(outcome.to_string())
            );
        }
    }
}
