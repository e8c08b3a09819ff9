//! Labels, annotations and Vault metadata keys fixed by the contract (sections 2 and 3).

pub const CLASS_LABEL: &str = "secops.dev/class";
pub const CLASS_BOOTSTRAP: &str = "bootstrap";
pub const CLASS_INTERNAL: &str = "internal";
pub const STATE_LABEL: &str = "secops.dev/state";
pub const STATE_CONSUMED: &str = "consumed";

pub const VAULT_PATH: &str = "secops.dev/vault-path";
pub const VAULT_MOUNT: &str = "secops.dev/vault-mount";
pub const CONSUMED_AT: &str = "secops.dev/consumed-at";
pub const VAULT_VERSION: &str = "secops.dev/vault-version";
pub const FINGERPRINT: &str = "secops.dev/fingerprint";
pub const CONSUMED_BY: &str = "secops.dev/consumed-by";
/// Not in the contract's list: records how the Secret was made inert, so that `status` can
/// tell a `strip` that did not happen from an `annotate` that never meant to strip.
pub const CONSUMED_MODE: &str = "secops.dev/consumed-mode";
pub const PUSHED_AT: &str = "secops.dev/pushed-at";

pub mod meta {
    pub const ORIGIN: &str = "secops-origin";
    pub const ORIGIN_UID: &str = "secops-origin-uid";
    pub const ORIGIN_VERSION: &str = "secops-origin-version";
    pub const ORIGIN_FINGERPRINT: &str = "secops-origin-fingerprint";
    pub const HANDOVER_AT: &str = "secops-handover-at";
    pub const ROTATION_ID: &str = "secops-rotation-id";
    pub const ROTATED_AT: &str = "secops-rotated-at";
    pub const ROTATION_VERSION: &str = "secops-rotation-version";
    pub const BASE64_KEYS: &str = "secops-base64-keys";
    pub const K8S_TYPE: &str = "secops-k8s-type";
    pub const ADOPTED_AT: &str = "secops-adopted-at";
    /// Not in the contract's list: set when a handover's Secret was consumed with `--mode
    /// delete`, so `status` knows the origin is gone by design.
    pub const CONSUMED_MODE: &str = "secops-consumed-mode";
    pub const PREFIX: &str = "secops-";
}

/// Paths under this prefix of the KV mount hold secops's own state (the fingerprint key,
/// rotation records); no Kubernetes Secret may target them.
pub const RESERVED_PREFIX: &str = "secops";
pub const FINGERPRINT_KEY_PATH: &str = "secops/fingerprint-key";
