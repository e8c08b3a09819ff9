//! What the actors copy from `src/commands/` rather than run: the order of each step
//! function's remote calls and of the steps and decisions it makes. The async step code
//! takes live clients, so the model cannot drive it (`docs/architecture.md`, "What is real
//! and what is copied"); `tests/drift.rs` reads the real functions' source and fails when
//! these sequences no longer match it, so a change to a command's calls shows up as a model
//! to update.
//!
//! Each entry: the file under `src/commands/`, the function, and in source order its calls
//! to the Vault and Kubernetes adapters (`vault.*`, `kube.*`) and to the names in [`STEPS`].
//! Source order is not execution order; it is a signature of the code the actors mirror.

/// The step functions and domain decisions whose calls are tracked (besides every adapter
/// call): what `actors.rs` mirrors or deliberately leaves out.
pub const STEPS: &[&str] = &[
    // src/commands steps
    "handed_over_before",
    "write_to_vault",
    "announce_handover",
    "mark",
    "consumed_by_deletion",
    "record_consumption",
    "strip_again",
    "claim",
    "require_live",
    "readopt",
    "mark_stale",
    "patch_stale",
    "decide",
    "annotate_source",
    "read_record",
    "check_authority",
    "claim_and_write",
    "complete",
    "finish",
    "stamp_metadata",
    "refresh_consumers",
    "rotate_kv",
    "require_writable",
    // domain decisions
    "require_class",
    "require_uid",
    "require_data",
    "is_consumed",
    "judge_existing",
    "check_consumable",
    "combine",
    "judge",
    "judge_unowned",
    "is_refilled_tombstone",
    "judge_recreated",
    "held_for",
    "is_stamped",
    "is_refreshed",
    "judge_sync",
    "judge_sync_since",
    "get_consumer",
];

/// `(file, function, calls)`: the sequences the actors were transcribed from.
pub const TRANSCRIBED: &[(&str, &str, &[&str])] = &[
    (
        "write_vault.rs",
        "run",
        &[
            "kube.get_secret",
            "require_class",
            "require_uid",
            "is_consumed",
            "handed_over_before",
            "write_to_vault",
            "announce_handover",
        ],
    ),
    (
        "mark_consumed.rs",
        "run",
        &[
            "kube.get_secret",
            "consumed_by_deletion",
            "require_class",
            "require_uid",
            "is_refilled_tombstone",
            "is_consumed",
            "is_refilled_tombstone",
            "vault.read_metadata",
            "check_consumable",
            "vault.read",
            "mark",
        ],
    ),
    (
        "handover.rs",
        "hand_over",
        &[
            "is_refilled_tombstone",
            "strip_again",
            "write_to_vault",
            "mark",
            "announce_handover",
            "combine",
        ],
    ),
    (
        "handover_protocol.rs",
        "write_to_vault",
        &[
            "require_data",
            "require_writable",
            "claim",
            "vault.write",
            "vault.patch_metadata",
            "vault.read_metadata",
            "judge_recreated",
            "readopt",
            "mark_stale",
            "judge_existing",
            "vault.read",
            "vault.patch_metadata",
        ],
    ),
    (
        "handover_protocol.rs",
        "handed_over_before",
        &["vault.read_metadata", "judge_existing"],
    ),
    (
        "handover_protocol.rs",
        "mark",
        &[
            "is_consumed",
            "is_refilled_tombstone",
            "kube.record_event",
            "record_consumption",
            "kube.delete_secret",
            "is_consumed",
            "kube.patch_secret",
            "kube.record_event",
            "kube.get_secret",
        ],
    ),
    (
        "ownership.rs",
        "claim",
        &[
            "vault.write",
            "vault.read",
            "held_for",
            "require_live",
            "vault.write",
        ],
    ),
    ("ownership.rs", "require_live", &["kube.get_secret"]),
    (
        "handover_protocol.rs",
        "record_consumption",
        &["vault.patch_metadata"],
    ),
    (
        "recreated.rs",
        "readopt",
        &["claim", "vault.patch_metadata", "kube.record_event"],
    ),
    ("recreated.rs", "mark_stale", &["patch_stale"]),
    (
        "recreated.rs",
        "patch_stale",
        &["kube.patch_secret", "kube.record_event"],
    ),
    (
        "push_secret.rs",
        "push_one",
        &[
            "require_class",
            "require_data",
            "require_writable",
            "decide",
            "annotate_source",
            "claim",
            "vault.patch_metadata",
            "annotate_source",
            "claim",
            "vault.write",
            "vault.patch_metadata",
            "kube.record_event",
            "annotate_source",
        ],
    ),
    (
        "push_secret.rs",
        "decide",
        &[
            "vault.read_metadata",
            "judge",
            "judge",
            "vault.read",
            "judge_unowned",
        ],
    ),
    (
        "push_secret.rs",
        "annotate_source",
        &["kube.patch_secret", "kube.get_secret"],
    ),
    (
        "rotate.rs",
        "run",
        &[
            "vault.existing_fingerprint_key",
            "vault.fingerprint_key",
            "rotate_kv",
            "refresh_consumers",
        ],
    ),
    (
        "rotate.rs",
        "rotate_kv",
        &[
            "read_record",
            "vault.read_metadata",
            "check_authority",
            "decide",
            "stamp_metadata",
            "vault.read",
            "complete",
            "finish",
            "claim_and_write",
        ],
    ),
    (
        "rotate.rs",
        "claim_and_write",
        &[
            "vault.read",
            "claim",
            "vault.write",
            "vault.write",
            "complete",
            "finish",
        ],
    ),
    ("rotate.rs", "complete", &["vault.write"]),
    (
        "rotate.rs",
        "finish",
        &[
            "stamp_metadata",
            "vault.read_metadata",
            "vault.destroy_versions",
        ],
    ),
    ("rotate.rs", "stamp_metadata", &["vault.write_metadata"]),
    (
        "rotate.rs",
        "refresh_consumers",
        &[
            "kube.refresh_consumer",
            "kube.external_secret_sync",
            "kube.refresh_consumer",
        ],
    ),
    (
        "../kube.rs",
        "refresh_consumer",
        &["get_consumer", "is_refreshed", "api.patch"],
    ),
    (
        "../kube.rs",
        "external_secret_sync",
        &["get_consumer", "judge_sync_since"],
    ),
];
