//! The configurations checked: at most three concurrent actors (counting the GitOps
//! controller) on one path or two, each able to crash at any call and be re-run.

use crate::actors::{Command, Rule};
use crate::properties::CONSUMERS_CURRENT;
use crate::{GitOps, Scenario, SecretSpec};

/// Secret indices into `world::SECRET_NAMES`.
pub const A: u8 = 0;
pub const B: u8 = 1;
pub const X: u8 = 2;
pub const Y: u8 = 3;

fn bootstrap(name: u8, val: u8) -> SecretSpec {
    SecretSpec {
        name,
        internal: false,
        path: 0,
        val,
    }
}

fn bootstrap_at(name: u8, val: u8, path: u8) -> SecretSpec {
    SecretSpec {
        path,
        ..bootstrap(name, val)
    }
}

fn internal_at(name: u8, val: u8, path: u8) -> SecretSpec {
    SecretSpec {
        path,
        ..internal(name, val)
    }
}

fn internal(name: u8, val: u8) -> SecretSpec {
    SecretSpec {
        name,
        internal: true,
        path: 0,
        val,
    }
}

impl Scenario {
    fn named(self, name: &'static str) -> Self {
        Self { name, ..self }
    }

    /// The same scenario with two faults in all instead of one.
    pub fn with_faults(self, faults: u8, name: &'static str) -> Self {
        Self {
            faults,
            name,
            ..self
        }
    }
}

fn base(name: &'static str) -> Scenario {
    Scenario {
        name,
        rule: Rule::Current,
        secrets: Vec::new(),
        seeded: Vec::new(),
        actors: Vec::new(),
        runs: 2,
        faults: 1,
        gitops: Vec::new(),
        gitops_budget: 0,
        stalls: 0,
        create_only: false,
        soft_delete: None,
        consumers: false,
        distinct_seconds: false,
        known: Vec::new(),
    }
}

/// One bootstrap Secret handed over by its workflow (`write-vault`, `mark-consumed`) and
/// by a `handover` batch at once, while GitOps re-applies or re-creates it.
pub fn handover_gitops() -> Scenario {
    Scenario {
        secrets: vec![bootstrap(A, 1)],
        actors: vec![
            Command::Steps { secret: A },
            Command::Handover { secret: A },
        ],
        gitops: vec![
            GitOps::Reapply { secret: A },
            GitOps::Recreate { secret: A },
        ],
        gitops_budget: 1,
        // Finding 1 (the re-created Secret refused for good) is fixed by the claim takeover,
        // finding 4 (the takeover racing the run it took over) by its lease and the holder's
        // fence: every property must hold.
        ..base("handover + workflow + GitOps, one Secret")
    }
}

/// Two runs of `push-secret` for one internal Secret while GitOps re-creates it: the
/// push's claim takeover, lease and fence (finding 4 for push).
pub fn push_gitops() -> Scenario {
    Scenario {
        secrets: vec![internal(X, 3)],
        actors: vec![Command::Push { secret: X }, Command::Push { secret: X }],
        gitops: vec![GitOps::Recreate { secret: X }],
        gitops_budget: 1,
        ..base("push + push + GitOps, one internal Secret")
    }
}

/// The push takeover before finding 4's fix: must fail.
pub fn prefix_push_takeover() -> Scenario {
    Scenario {
        rule: Rule::NoLease,
        name: "PRE-FIX takeover (no lease): push + push + GitOps, one internal Secret",
        ..push_gitops()
    }
}

/// The takeover before finding 4's fix (`Rule::NoLease`: a claim naming a deleted uid is
/// taken over at once, its holder does not fence itself): must fail ([`FINDING_TAKEOVER`]).
pub fn prefix_takeover() -> Scenario {
    Scenario {
        rule: Rule::NoLease,
        name: "PRE-FIX takeover (no lease): handover + workflow + GitOps, one Secret",
        ..handover_gitops()
    }
}

/// Two bootstrap Secrets with the same data aimed at one path (the case a fingerprint
/// alone cannot tell apart), one by its workflow and one by `handover`, under a
/// create-only Vault policy (a `cas=0` write to an existing path is a 403).
pub fn handover_two_secrets() -> Scenario {
    Scenario {
        secrets: vec![bootstrap(A, 1), bootstrap(B, 1)],
        actors: vec![
            Command::Steps { secret: A },
            Command::Handover { secret: B },
        ],
        create_only: true,
        ..base("two Secrets, same data, one path, create-only policy")
    }
}

/// The ownership issue: two operators push different Secrets to one path, while a
/// bootstrap Secret aimed at it is handed over.
pub fn push_race() -> Scenario {
    Scenario {
        secrets: vec![internal(X, 3), internal(Y, 4), bootstrap(A, 1)],
        actors: vec![
            Command::Push { secret: X },
            Command::Push { secret: Y },
            Command::Handover { secret: A },
        ],
        ..base("push + push + handover, one path")
    }
}

/// Two pushers of identical data: the `Record` branch (data without provenance that
/// matches) must still pick one owner.
pub fn push_same_data() -> Scenario {
    Scenario {
        secrets: vec![internal(X, 3), internal(Y, 3)],
        actors: vec![Command::Push { secret: X }, Command::Push { secret: Y }],
        ..base("push + push, same data, one path")
    }
}

/// Rotation of a handed-over path: two runs of one id at once (a re-submitted workflow
/// while the first still runs); a claim goes stale when its holder died.
pub fn rotation_same_id() -> Scenario {
    Scenario {
        secrets: vec![bootstrap(A, 1)],
        seeded: vec![A],
        actors: vec![
            Command::Rotate { path: 0, id: 0 },
            Command::Rotate { path: 0, id: 0 },
        ],
        ..base("rotate id0 twice, one path")
    }
}

/// Two rotation ids on one path at once.
pub fn rotation_two_ids() -> Scenario {
    Scenario {
        secrets: vec![bootstrap(A, 1)],
        seeded: vec![A],
        actors: vec![
            Command::Rotate { path: 0, id: 0 },
            Command::Rotate { path: 0, id: 1 },
        ],
        ..base("rotate id0 + rotate id1, one path")
    }
}

/// The same id run twice while an operator soft-deletes the path's current version.
pub fn rotation_soft_delete() -> Scenario {
    Scenario {
        soft_delete: Some(0),
        ..rotation_same_id()
    }
    .named("rotate id0 twice, an operator soft-deletes the current version")
}

/// Three rotation runs (id0 twice, id1), each run once; about 2.9 million states, so not
/// in the default set (`cargo run -p secops-model --release -- rotate3`).
pub fn rotation_three() -> Scenario {
    Scenario {
        secrets: vec![bootstrap(A, 1)],
        seeded: vec![A],
        actors: vec![
            Command::Rotate { path: 0, id: 0 },
            Command::Rotate { path: 0, id: 0 },
            Command::Rotate { path: 0, id: 1 },
        ],
        runs: 1,
        ..base("rotate3: rotate id0 twice + rotate id1, one path")
    }
}

/// The same id run twice, where a run may stall once past `--claim-lease` while alive.
pub fn rotation_slow_claimant() -> Scenario {
    Scenario {
        secrets: vec![bootstrap(A, 1)],
        seeded: vec![A],
        actors: vec![
            Command::Rotate { path: 0, id: 0 },
            Command::Rotate { path: 0, id: 0 },
        ],
        stalls: 1,
        known: Vec::new(),
        ..base("rotate id0 twice, a claimant stalls past the lease")
    }
}

/// Two runs of one rotation id at once, each refreshing the consumers: an ExternalSecret
/// (ESO acts on each `force-sync`) and a Deployment restarted once ESO has synced.
pub fn rotation_consumers_same_id() -> Scenario {
    Scenario {
        consumers: true,
        ..rotation_same_id()
    }
    .named("rotate id0 twice, with consumers")
}

/// Two rotation ids of one path, both refreshing the consumers, completing in one second
/// (finding 3, fixed: consumers are refreshed for a rotation by its id and version).
pub fn rotation_consumers_two_ids() -> Scenario {
    Scenario {
        consumers: true,
        ..rotation_two_ids()
    }
    .named("rotate id0 + rotate id1, with consumers, one second")
}

/// The same, each record completed in a second of its own.
pub fn rotation_consumers_two_ids_apart() -> Scenario {
    Scenario {
        consumers: true,
        distinct_seconds: true,
        ..rotation_two_ids()
    }
    .named("rotate id0 + rotate id1, with consumers, seconds apart")
}

/// Two paths: a `handover` batch of a (to `ns/p0`) and b (to `ns/p1`) races a push of x
/// to `ns/p1` and the workflow of a.
pub fn two_paths() -> Scenario {
    Scenario {
        secrets: vec![bootstrap(A, 1), bootstrap_at(B, 2, 1), internal_at(X, 3, 1)],
        actors: vec![
            Command::Batch {
                first: A,
                second: B,
            },
            Command::Push { secret: X },
            Command::Steps { secret: A },
        ],
        ..base("two paths: handover(a, b) + push-secret(x) + workflow(a)")
    }
}

/// Every command on one path: handover, push of another Secret, and a rotation.
pub fn mixed() -> Scenario {
    Scenario {
        secrets: vec![bootstrap(A, 1), internal(X, 3)],
        actors: vec![
            Command::Handover { secret: A },
            Command::Push { secret: X },
            Command::Rotate { path: 0, id: 0 },
        ],
        ..base("handover + push + rotate, one path")
    }
}

/// The pre-fix push rule, two pushers, no faults needed: must fail.
pub fn prefix_push_race() -> Scenario {
    Scenario {
        rule: Rule::PreFix,
        secrets: vec![internal(X, 3), internal(Y, 4)],
        actors: vec![Command::Push { secret: X }, Command::Push { secret: Y }],
        runs: 1,
        faults: 0,
        ..base("PRE-FIX rule: push + push, one path")
    }
}

/// The pre-fix handover rule (no claim; "same data without provenance" finished by
/// whoever finds it), two Secrets with the same data on one path: must fail too.
pub fn prefix_handover_same_data() -> Scenario {
    Scenario {
        rule: Rule::PreFix,
        secrets: vec![bootstrap(A, 1), bootstrap(B, 1)],
        actors: vec![
            Command::Handover { secret: A },
            Command::Handover { secret: B },
        ],
        runs: 1,
        faults: 0,
        ..base("PRE-FIX rule: handover + handover, same data, one path")
    }
}

/// Consumers stamped with each run's own clock instead of the record's completion time:
/// must fail (a later run of an id stamps again).
pub fn prefix_consumers() -> Scenario {
    Scenario {
        rule: Rule::PreFix,
        runs: 2,
        faults: 0,
        ..rotation_consumers_two_ids_apart()
    }
    .named("PRE-FIX stamps: rotate id0 + rotate id1, with consumers, seconds apart")
}

/// Two rotation ids completing in one second under the rule before finding 3's fix
/// (consumers judged by instant): must fail (the second id reports done unserved).
pub fn prefix_same_second() -> Scenario {
    Scenario {
        rule: Rule::Instants,
        known: vec![(CONSUMERS_CURRENT, FINDING_SAME_SECOND)],
        ..rotation_consumers_two_ids()
    }
    .named("PRE-FIX instants: rotate id0 + rotate id1, with consumers, one second")
}

/// The two-path scenario under the pre-fix rule: the push to `ns/p1` and the batch's
/// second Secret must collide.
pub fn prefix_two_paths() -> Scenario {
    Scenario {
        rule: Rule::PreFix,
        runs: 1,
        faults: 0,
        ..two_paths()
    }
    .named("PRE-FIX rule: two paths, handover(a, b) + push-secret(x) + workflow(a)")
}

/// The scenarios the current protocol must pass.
pub fn current() -> Vec<Scenario> {
    vec![
        handover_gitops(),
        handover_two_secrets(),
        push_race(),
        push_same_data(),
        rotation_same_id(),
        rotation_two_ids(),
        rotation_slow_claimant(),
        rotation_soft_delete(),
        mixed(),
        rotation_consumers_same_id(),
        rotation_consumers_two_ids(),
        rotation_consumers_two_ids_apart(),
        two_paths(),
        push_gitops(),
        handover_gitops().with_faults(2, "handover + workflow + GitOps, one Secret, 2 faults"),
        push_gitops().with_faults(2, "push + push + GitOps, one internal Secret, 2 faults"),
        push_race().with_faults(2, "push + push + handover, one path, 2 faults"),
        mixed().with_faults(2, "handover + push + rotate, one path, 2 faults"),
    ]
}

/// Found by the checker (fixed; `docs/architecture.md`, finding 4), kept as what
/// [`prefix_takeover`] must still find. It replaced finding 1 (a claim naming a deleted uid
/// blocked the re-created Secret for good), fixed by the claim takeover.
pub const FINDING_TAKEOVER: &str = "GitOps re-creates the Secret (new uid) while a run of the \
    old object holds the claim: the new object's run takes the claim over and records \
    provenance (uid 2), but the old run decided its claim once and goes on: its provenance \
    PATCH (no check-and-set) lands after, naming the deleted uid 1 while the live Secret is \
    marked consumed (or it finishes the data the new run wrote under its own uid)";

/// Found by the checker (fixed): stamps compared as instants assume records complete in the
/// order of their writes, a second apart.
pub const FINDING_SAME_SECOND: &str = "two rotation ids of one path complete in the same \
    second: the first id's refresh syncs and restarts the consumers before the second id's \
    write; the second id finds both stamped at its own stamp (`is_stamped`: at or after), \
    reports rotated, and the Deployment keeps serving the older version";
