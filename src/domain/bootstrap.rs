//! Bootstrap Secrets and the handover decisions of `docs/contract.md` §6.1–6.3.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::fingerprint::Fingerprint;
use super::names::{self, Class};
use super::outcome::Outcome;
use super::path::{validate_mount, validate_path, AllowedPaths};
use super::provenance::{Origin, Ownership, Provenance};
use super::readopt::Recreation;
use super::SecretRef;
use crate::error::{Error, Result};
use crate::secret::SecretData;

/// A Kubernetes Secret as secops sees it (bootstrap or internal).
#[derive(Debug)]
pub struct SourceSecret {
    pub reference: SecretRef,
    pub uid: String,
    pub resource_version: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub secret_type: String,
    pub data: SecretData,
}

/// What a metadata-only list says of a Secret: enough to page, shard and skip finished
/// work, without its data, so a walk over many large Secrets holds one at a time.
#[derive(Debug, Clone)]
pub struct SecretHeader {
    pub reference: SecretRef,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl SecretHeader {
    pub fn is_consumed(&self) -> bool {
        self.labels.get(names::STATE_LABEL).map(String::as_str) == Some(names::STATE_CONSUMED)
    }

    pub fn recorded_version(&self) -> Option<u64> {
        self.annotations.get(names::VAULT_VERSION)?.parse().ok()
    }

    /// A tombstone (consumed with `--mode strip`): only its data, which a metadata-only list
    /// does not carry, tells whether a GitOps sync has put the value back.
    pub fn is_tombstone(&self) -> bool {
        self.is_consumed()
            && self
                .annotations
                .get(names::CONSUMED_MODE)
                .map(String::as_str)
                == Some(ConsumeMode::Strip.as_str())
    }
}

/// The KV mount and path a Secret hands over to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    pub mount: String,
    pub path: String,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.mount, self.path)
    }
}

/// How `mark-consumed` renders a handed-over Secret inert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsumeMode {
    /// Label and annotate only (safe under GitOps self-heal).
    Annotate,
    /// Also empty `data`, keeping the Secret as a tombstone.
    Strip,
    /// Delete the Secret (uid precondition).
    Delete,
}

impl ConsumeMode {
    pub const NAMES: [&'static str; 3] = ["annotate", "strip", "delete"];

    pub fn as_str(self) -> &'static str {
        match self {
            ConsumeMode::Annotate => "annotate",
            ConsumeMode::Strip => "strip",
            ConsumeMode::Delete => "delete",
        }
    }
}

impl FromStr for ConsumeMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "annotate" => Ok(ConsumeMode::Annotate),
            "strip" => Ok(ConsumeMode::Strip),
            "delete" => Ok(ConsumeMode::Delete),
            _ => Err(format!("{text:?} is not one of annotate, strip, delete")),
        }
    }
}

impl fmt::Display for ConsumeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl SourceSecret {
    pub fn is_consumed(&self) -> bool {
        self.labels.get(names::STATE_LABEL).map(String::as_str) == Some(names::STATE_CONSUMED)
    }

    /// Marked stale: re-created with other data than Vault recorded for its origin.
    pub fn is_stale(&self) -> bool {
        self.labels.get(names::STATE_LABEL).map(String::as_str) == Some(names::STATE_STALE)
    }

    pub fn class(&self) -> Option<Class> {
        match self.labels.get(names::CLASS_LABEL).map(String::as_str) {
            Some(value) if value == Class::Bootstrap.label_value() => Some(Class::Bootstrap),
            Some(value) if value == Class::Internal.label_value() => Some(Class::Internal),
            _ => None,
        }
    }

    /// How the Secret was made inert, as recorded when it was consumed.
    pub fn consumed_mode(&self) -> Option<ConsumeMode> {
        self.annotations.get(names::CONSUMED_MODE)?.parse().ok()
    }

    /// Consumed with `--mode strip`, yet holding data again: a GitOps sync re-applied the
    /// manifest from Git (`docs/gitops.md`). Its data is stripped again once it is shown to
    /// be the handed-over data; other data is drift.
    pub fn is_refilled_tombstone(&self) -> bool {
        self.is_consumed()
            && self.consumed_mode() == Some(ConsumeMode::Strip)
            && !self.data.is_empty()
    }

    /// The maximum age its value may reach in Vault (`secops.dev/max-age`); an annotation
    /// that is not a duration is refused before anything is written.
    pub fn max_age(&self) -> Result<Option<i64>> {
        match self.annotations.get(names::MAX_AGE) {
            None => Ok(None),
            Some(text) => {
                super::expiry::parse_max_age(text)
                    .map(Some)
                    .ok_or_else(|| Error::InvalidSource {
                        secret: self.reference.to_string(),
                        reason: format!("{}: {text:?} is not a duration like 720h", names::MAX_AGE),
                    })
            }
        }
    }

    /// The Vault version recorded on the Secret when it was consumed or pushed.
    pub fn recorded_version(&self) -> Option<u64> {
        self.annotations.get(names::VAULT_VERSION)?.parse().ok()
    }

    pub fn bootstrap_origin(&self) -> Origin {
        Origin::Bootstrap(self.reference.clone())
    }

    pub fn push_origin(&self) -> Origin {
        Origin::Push(self.reference.clone())
    }

    /// Reads the target from the annotations and checks it against the path policy.
    /// `path_override` (push-secret's `--path`) takes the place of the annotation.
    pub fn target(
        &self,
        default_mount: &str,
        allowed: &AllowedPaths,
        path_override: Option<&str>,
    ) -> Result<Target> {
        let invalid = |reason: String| Error::InvalidSource {
            secret: self.reference.to_string(),
            reason,
        };
        let path = match path_override {
            Some(path) => path.to_string(),
            None => self
                .annotations
                .get(names::VAULT_PATH)
                .ok_or_else(|| invalid(format!("missing annotation {}", names::VAULT_PATH)))?
                .clone(),
        };
        validate_path(&path)
            .map_err(|reason| invalid(format!("{}: {reason}", names::VAULT_PATH)))?;
        let mount = match self.annotations.get(names::VAULT_MOUNT) {
            Some(mount) => {
                validate_mount(mount)
                    .map_err(|reason| invalid(format!("{}: {reason}", names::VAULT_MOUNT)))?;
                mount.clone()
            }
            None => default_mount.to_string(),
        };
        if !allowed.allows_mount(&mount, default_mount) {
            return Err(Error::PathNotAllowed {
                secret: self.reference.to_string(),
                path: format!("{mount}/{path}"),
                allowed: format!("the mount {default_mount:?} (others need --allowed-mount)"),
            });
        }
        if !allowed.allows(&self.reference.namespace, &path) {
            return Err(Error::PathNotAllowed {
                secret: self.reference.to_string(),
                path,
                allowed: allowed.describe(),
            });
        }
        Ok(Target { mount, path })
    }

    /// Steps act only on the class they are for: a handover step never touches an
    /// operator's internal Secret, nor a push an unlabelled or bootstrap one.
    pub fn require_class(&self, class: Class) -> Result<()> {
        match self.class() {
            Some(found) if found == class => Ok(()),
            _ => Err(Error::NotOfClass {
                secret: self.reference.to_string(),
                selector: class.selector(None),
            }),
        }
    }

    /// Vault's (or OpenBao's) own init output, unseal or recovery keys and the root token,
    /// must not be handed over into the Vault it unseals: whoever can read that path could
    /// unseal or own Vault. It belongs in an auto-unseal KMS or offline. Refused unless the
    /// Secret names a mount of its own (`secops.dev/vault-mount`) other than `default_mount`.
    pub fn refuse_vault_init_material(&self, target: &Target, default_mount: &str) -> Result<()> {
        let named_elsewhere =
            self.annotations.contains_key(names::VAULT_MOUNT) && target.mount != default_mount;
        if named_elsewhere || !self.looks_like_vault_init_material() {
            return Ok(());
        }
        Err(Error::Refused {
            action: format!("hand over {}", self.reference),
            detail: "it holds Vault init material (unseal or recovery keys, root token); keep \
                     it in an auto-unseal KMS or offline, or name a distinct mount with \
                     secops.dev/vault-mount"
                .into(),
        })
    }

    fn looks_like_vault_init_material(&self) -> bool {
        const FIELDS: [&str; 5] = [
            "unseal_keys_b64",
            "unseal_keys_hex",
            "recovery_keys_b64",
            "recovery_keys_hex",
            "root_token",
        ];
        self.data.iter().any(|(key, value)| {
            let key = key.to_ascii_lowercase().replace(['-', '.'], "_");
            FIELDS.iter().any(|field| key == *field || key == field.trim_end_matches("_b64"))
                // `bao operator init -format=json` saved whole, under any key name.
                || serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(value.expose())
                    .is_ok_and(|init| FIELDS.iter().any(|field| init.contains_key(*field)))
        })
    }

    /// A Secret with nothing in it has nothing to hand over; refusing it beats writing an
    /// empty authority that every consumer would then trust.
    pub fn require_data(&self) -> Result<()> {
        if self.data.is_empty() {
            return Err(Error::InvalidSource {
                secret: self.reference.to_string(),
                reason: "the Secret has no data".into(),
            });
        }
        Ok(())
    }

    pub fn require_uid(&self, expected: Option<&str>) -> Result<()> {
        match expected {
            Some(uid) if uid != self.uid => Err(Error::NotFound {
                what: format!(
                    "Secret {} with uid {uid} (found uid {}: it was re-created)",
                    self.reference, self.uid
                ),
            }),
            _ => Ok(()),
        }
    }
}

/// What the handover write does once `cas=0` has been refused because the path exists.
#[derive(Debug, PartialEq, Eq)]
pub enum ExistingPath {
    /// Provenance names this Secret: done before (even if rotated since).
    AlreadyHandedOver { version: u64 },
    /// No provenance: compare the current data, it may be our own half-finished write.
    CompareData,
    /// Someone else owns it.
    Conflict { owner: String },
}

pub fn judge_existing(provenance: Option<&Provenance>, origin: &Origin, uid: &str) -> ExistingPath {
    match Ownership::of(provenance, origin, uid) {
        Ownership::Ours(p) => ExistingPath::AlreadyHandedOver {
            version: p.origin_version,
        },
        Ownership::Theirs { owner } => ExistingPath::Conflict { owner },
        Ownership::Unowned => ExistingPath::CompareData,
    }
}

/// What `mark-consumed` may do, from Vault's provenance for the path.
#[derive(Debug, PartialEq, Eq)]
pub enum ConsumeCheck {
    /// Vault names this Secret; verify that version's fingerprint, then mark.
    Verify {
        version: u64,
        recorded: Option<Fingerprint>,
    },
    NotHandedOver,
    Conflict {
        owner: String,
    },
}

pub fn check_consumable(
    provenance: Option<&Provenance>,
    origin: &Origin,
    uid: &str,
) -> ConsumeCheck {
    match Ownership::of(provenance, origin, uid) {
        Ownership::Ours(p) => ConsumeCheck::Verify {
            version: p.origin_version,
            recorded: p.origin_fingerprint.clone(),
        },
        Ownership::Theirs { owner } => ConsumeCheck::Conflict { owner },
        Ownership::Unowned => ConsumeCheck::NotHandedOver,
    }
}

/// One Secret's handover outcome, from what its write step and its marking ended in.
pub fn combine(write: Outcome, mark: Outcome) -> Outcome {
    match (write, mark) {
        (Outcome::Planned, _) | (_, Outcome::Planned) => Outcome::Planned,
        (_, Outcome::AlreadyConsumed) => Outcome::AlreadyConsumed,
        _ => Outcome::Consumed,
    }
}

/// The state of a bootstrap Secret in a plan (`read-bootstrap`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootstrapState {
    Pending,
    HandedOver,
    Consumed,
    Drifted,
    Invalid,
    /// The target holds what secops may not touch (another owner, foreign data).
    Conflict,
    /// Vault's policy forbids secops the target.
    Forbidden,
    /// Re-created (a new uid) after its handover: `write-vault` re-adopts it when its data
    /// is what Vault recorded, else marks it stale (`docs/contract.md` §6.8).
    Recreated,
    /// Marked stale: Vault is the authority, the Secret waits to be retired from Git.
    Stale,
}

impl BootstrapState {
    /// The state of a Secret whose Vault side could not be read, from the refusal: one
    /// bad item is reported as such and never sinks the plan.
    pub fn of_refusal(error: &Error) -> BootstrapState {
        match error {
            Error::Forbidden { .. } => BootstrapState::Forbidden,
            Error::NotOwned { .. } | Error::ForeignData { .. } => BootstrapState::Conflict,
            _ => BootstrapState::Invalid,
        }
    }
}

impl BootstrapState {
    /// Items worth a `write-vault` + `mark-consumed` step.
    pub fn is_actionable(self) -> bool {
        matches!(
            self,
            BootstrapState::Pending | BootstrapState::HandedOver | BootstrapState::Recreated
        )
    }
}

/// What Vault says about a Secret's target path, reduced to what classification needs.
pub enum VaultView {
    Missing,
    Owned {
        provenance: Provenance,
    },
    OwnedByOther {
        owner: String,
    },
    /// Data without provenance: ours (a crash between the data and metadata writes) only
    /// if its fingerprint equals the Secret's.
    Unowned {
        data_matches: bool,
    },
    /// Provenance names this Secret's name under another uid.
    Recreated {
        recreation: super::readopt::Recreation,
        /// The Secret is already marked stale.
        marked_stale: bool,
    },
}

/// Classifies a Secret that is not yet marked consumed. Without a current fingerprint (no
/// key exists yet) drift cannot be judged.
pub fn classify(view: &VaultView, current: Option<&Fingerprint>) -> (BootstrapState, String) {
    match view {
        VaultView::Missing => (BootstrapState::Pending, "not in Vault yet".into()),
        VaultView::Unowned { data_matches: true } => {
            (BootstrapState::Pending, "Vault holds this data without provenance (interrupted handover); write-vault finishes it".into())
        }
        VaultView::Unowned { data_matches: false } => {
            (BootstrapState::Invalid, "Vault path holds other data with no secops provenance".into())
        }
        VaultView::OwnedByOther { owner } => (BootstrapState::Invalid, format!("Vault path is owned by {owner}")),
        VaultView::Recreated { recreation: Recreation::Readopt { previous_uid, version }, .. } => (
            BootstrapState::Recreated,
            format!("re-created: Vault version {version} was handed over from uid {previous_uid}, with this data; write-vault re-adopts it"),
        ),
        VaultView::Recreated { recreation: Recreation::Stale { authority_uid, version }, marked_stale } => (
            if *marked_stale { BootstrapState::Stale } else { BootstrapState::Recreated },
            format!("re-created with other data than Vault version {version} recorded from uid {authority_uid}: Vault stays the authority; retire it from Git"),
        ),
        VaultView::Owned { provenance } => match &provenance.origin_fingerprint {
            Some(recorded) if current.is_some_and(|c| c != recorded) => (
                BootstrapState::Drifted,
                format!("data changed after handover (Vault version {})", provenance.origin_version),
            ),
            _ => (BootstrapState::HandedOver, format!("in Vault at version {}, not yet marked consumed", provenance.origin_version)),
        },
    }
}

/// A consumed Secret has drifted when data is still present and no longer matches the
/// fingerprint recorded when it was consumed.
pub fn consumed_state(secret: &SourceSecret, current: &Fingerprint) -> (BootstrapState, String) {
    let recorded = secret
        .annotations
        .get(names::FINGERPRINT)
        .and_then(|f| Fingerprint::parse(f));
    match recorded {
        Some(recorded) if !secret.data.is_empty() && &recorded != current => (
            BootstrapState::Drifted,
            "data changed after it was consumed".into(),
        ),
        // Actionable: `mark-consumed` strips it again, Vault is not written.
        Some(_) if secret.is_refilled_tombstone() => (
            BootstrapState::HandedOver,
            "consumed with --mode strip, but a sync put its data back; mark-consumed strips it again".into(),
        ),
        _ => (
            BootstrapState::Consumed,
            "consumed; Vault is the authority".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretBytes;

    fn secret(annotations: &[(&str, &str)], data: &[(&str, &str)]) -> SourceSecret {
        SourceSecret {
            reference: SecretRef::new("team-a", "db"),
            uid: "uid-1".into(),
            resource_version: "7".into(),
            labels: BTreeMap::new(),
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            secret_type: "Opaque".into(),
            data: data
                .iter()
                .map(|(k, v)| (k.to_string(), SecretBytes::from_string(v.to_string())))
                .collect(),
        }
    }

    fn fp(c: char) -> Fingerprint {
        Fingerprint::parse(&format!("hmac-sha256:{}", c.to_string().repeat(64))).unwrap()
    }

    fn provenance(origin: &str, uid: &str, fingerprint: Option<Fingerprint>) -> Provenance {
        Provenance {
            origin: Origin::parse(origin),
            origin_uid: uid.into(),
            origin_version: 1,
            origin_fingerprint: fingerprint,
        }
    }

    #[test]
    fn target_comes_from_annotations_and_policy() {
        let allowed = AllowedPaths::new(vec![]).unwrap();
        let ok = secret(&[(names::VAULT_PATH, "team-a/db")], &[]);
        assert_eq!(
            ok.target("secret", &allowed, None).unwrap(),
            Target {
                mount: "secret".into(),
                path: "team-a/db".into()
            }
        );
        let mounted = secret(
            &[(names::VAULT_PATH, "team-a/db"), (names::VAULT_MOUNT, "kv")],
            &[],
        );
        assert_eq!(
            mounted
                .target("secret", &allowed, None)
                .unwrap_err()
                .exit_status()
                .code(),
            3,
            "another mount needs --allowed-mount"
        );
        let with_kv = allowed.clone().with_mounts(vec!["kv".into()]).unwrap();
        assert_eq!(
            mounted.target("secret", &with_kv, None).unwrap().mount,
            "kv"
        );
        let cases = [
            (secret(&[], &[]), 2),
            (secret(&[(names::VAULT_PATH, "team-b/db")], &[]), 3),
            (
                secret(&[(names::VAULT_PATH, "team-a/../team-b/db")], &[]),
                2,
            ),
            (secret(&[(names::VAULT_PATH, "team-a//db")], &[]), 2),
            (
                secret(
                    &[
                        (names::VAULT_PATH, "team-a/db"),
                        (names::VAULT_MOUNT, "../sys"),
                    ],
                    &[],
                ),
                2,
            ),
        ];
        for (s, code) in cases {
            assert_eq!(
                s.target("secret", &allowed, None)
                    .unwrap_err()
                    .exit_status()
                    .code(),
                code,
                "{:?}",
                s.annotations
            );
        }
    }

    #[test]
    fn write_vault_rules_of_section_6() {
        let origin = Origin::parse("bootstrap:team-a/db");
        assert_eq!(
            judge_existing(None, &origin, "uid-1"),
            ExistingPath::CompareData
        );
        assert_eq!(
            judge_existing(
                Some(&provenance("bootstrap:team-a/db", "uid-1", None)),
                &origin,
                "uid-1"
            ),
            ExistingPath::AlreadyHandedOver { version: 1 }
        );
        for (other, uid) in [
            ("bootstrap:team-a/db", "uid-2"),
            ("push:team-a/db", "uid-1"),
            ("bootstrap:team-a/other", "uid-1"),
        ] {
            assert!(matches!(
                judge_existing(Some(&provenance(other, uid, None)), &origin, "uid-1"),
                ExistingPath::Conflict { .. }
            ));
        }
    }

    #[test]
    fn a_handover_is_planned_already_consumed_or_consumed() {
        use Outcome::*;
        assert_eq!(combine(Planned, Planned), Planned);
        assert_eq!(combine(Written, Planned), Planned);
        assert_eq!(combine(Planned, Consumed), Planned);
        assert_eq!(combine(Unchanged, AlreadyConsumed), AlreadyConsumed);
        assert_eq!(combine(Written, AlreadyConsumed), AlreadyConsumed);
        assert_eq!(combine(Written, Consumed), Consumed);
        assert_eq!(combine(Unchanged, Consumed), Consumed);
    }

    #[test]
    fn vault_init_material_is_refused_unless_a_mount_of_its_own_is_named() {
        let target = Target {
            mount: "secret".into(),
            path: "team-a/db".into(),
        };
        let init = r#"{"unseal_keys_b64":["x"],"root_token":"y"}"#;
        for data in [
            &[("init.json", init)][..],
            &[("root_token", "s.x")],
            &[("unseal-keys-b64", "a,b,c")],
        ] {
            let s = secret(&[(names::VAULT_PATH, "team-a/db")], data);
            let refused = s.refuse_vault_init_material(&target, "secret").unwrap_err();
            assert_eq!(refused.exit_status().code(), 3);
            assert!(
                !refused.to_string().contains("s.x"),
                "no value in the refusal"
            );
        }
        let elsewhere = Target {
            mount: "vault-init".into(),
            path: "team-a/db".into(),
        };
        let named = secret(
            &[
                (names::VAULT_PATH, "team-a/db"),
                (names::VAULT_MOUNT, "vault-init"),
            ],
            &[("init.json", init)],
        );
        assert!(named
            .refuse_vault_init_material(&elsewhere, "secret")
            .is_ok());
        let ordinary = secret(&[], &[("password", "root_token is a word"), ("token", "t")]);
        assert!(ordinary
            .refuse_vault_init_material(&target, "secret")
            .is_ok());
    }

    #[test]
    fn consume_modes_parse_their_names_only() {
        for name in ConsumeMode::NAMES {
            assert_eq!(name.parse::<ConsumeMode>().unwrap().as_str(), name);
        }
        assert!("Strip".parse::<ConsumeMode>().is_err());
    }

    #[test]
    fn classification_covers_every_vault_view() {
        let current = Some(&fp('a'));
        let owned = |f| VaultView::Owned {
            provenance: provenance("bootstrap:team-a/db", "uid-1", f),
        };
        assert_eq!(
            classify(&VaultView::Missing, current).0,
            BootstrapState::Pending
        );
        assert_eq!(
            classify(&VaultView::Unowned { data_matches: true }, current).0,
            BootstrapState::Pending
        );
        assert_eq!(
            classify(
                &VaultView::Unowned {
                    data_matches: false
                },
                current
            )
            .0,
            BootstrapState::Invalid
        );
        assert_eq!(
            classify(&VaultView::OwnedByOther { owner: "x".into() }, current).0,
            BootstrapState::Invalid
        );
        assert_eq!(
            classify(&owned(Some(fp('a'))), current).0,
            BootstrapState::HandedOver
        );
        assert_eq!(
            classify(&owned(Some(fp('b'))), current).0,
            BootstrapState::Drifted
        );
        let readopt = VaultView::Recreated {
            recreation: Recreation::Readopt {
                previous_uid: "uid-0".into(),
                version: 1,
            },
            marked_stale: false,
        };
        let (state, reason) = classify(&readopt, current);
        assert_eq!(state, BootstrapState::Recreated);
        assert!(
            state.is_actionable() && reason.contains("uid-0"),
            "{reason}"
        );
        let stale = |marked_stale| VaultView::Recreated {
            recreation: Recreation::Stale {
                authority_uid: "uid-0".into(),
                version: 1,
            },
            marked_stale,
        };
        // Actionable until write-vault has marked it; then it waits for a human.
        assert_eq!(
            classify(&stale(false), current).0,
            BootstrapState::Recreated
        );
        let (state, reason) = classify(&stale(true), current);
        assert_eq!(state, BootstrapState::Stale);
        assert!(
            !state.is_actionable() && reason.contains("uid-0"),
            "{reason}"
        );
    }

    #[test]
    fn consumed_secrets_drift_only_when_data_changes() {
        let recorded = fp('a');
        let s = secret(&[(names::FINGERPRINT, recorded.as_str())], &[("k", "v")]);
        assert_eq!(consumed_state(&s, &fp('a')).0, BootstrapState::Consumed);
        assert_eq!(consumed_state(&s, &fp('b')).0, BootstrapState::Drifted);
        let stripped = secret(&[(names::FINGERPRINT, recorded.as_str())], &[]);
        assert_eq!(
            consumed_state(&stripped, &fp('b')).0,
            BootstrapState::Consumed
        );
    }

    #[test]
    fn a_tombstone_refilled_with_its_own_data_is_actionable_other_data_is_drift() {
        let consumed = |mode: &str, data: &[(&str, &str)]| {
            let mut s = secret(
                &[
                    (names::FINGERPRINT, fp('a').as_str()),
                    (names::CONSUMED_MODE, mode),
                ],
                data,
            );
            s.labels
                .insert(names::STATE_LABEL.into(), names::STATE_CONSUMED.into());
            s
        };
        let refilled = consumed("strip", &[("k", "v")]);
        assert!(refilled.is_refilled_tombstone());
        let (state, _) = consumed_state(&refilled, &fp('a'));
        assert_eq!(state, BootstrapState::HandedOver);
        assert!(state.is_actionable());
        assert_eq!(
            consumed_state(&refilled, &fp('b')).0,
            BootstrapState::Drifted
        );
        assert!(!consumed("strip", &[]).is_refilled_tombstone());
        let annotated = consumed("annotate", &[("k", "v")]);
        assert!(!annotated.is_refilled_tombstone());
        assert_eq!(
            consumed_state(&annotated, &fp('a')).0,
            BootstrapState::Consumed
        );
    }

    fn labelled(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> SourceSecret {
        let mut s = secret(annotations, &[("k", "v")]);
        s.labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        s
    }

    #[test]
    fn a_tombstone_is_a_secret_consumed_by_stripping_only() {
        let header = |labels: &[(&str, &str)], mode: Option<&str>| {
            let s = labelled(labels, &[]);
            SecretHeader {
                reference: s.reference,
                uid: s.uid,
                labels: s.labels,
                annotations: mode
                    .map(|m| BTreeMap::from([(names::CONSUMED_MODE.to_string(), m.to_string())]))
                    .unwrap_or_default(),
            }
        };
        let consumed = [(names::STATE_LABEL, names::STATE_CONSUMED)];
        assert!(header(&consumed, Some("strip")).is_tombstone());
        assert!(!header(&consumed, Some("annotate")).is_tombstone());
        assert!(!header(&consumed, None).is_tombstone());
        assert!(
            !header(&[], Some("strip")).is_tombstone(),
            "not consumed: a mode annotation alone is not a tombstone"
        );
    }

    #[test]
    fn a_step_acts_only_on_the_object_and_class_it_was_given() {
        let s = secret(&[], &[("k", "v")]);
        assert!(s.require_uid(None).is_ok(), "no uid expected: any object");
        assert!(s.require_uid(Some("uid-1")).is_ok());
        let recreated = s.require_uid(Some("uid-0")).unwrap_err();
        assert_eq!(recreated.exit_status().code(), 4, "a re-created Secret");
        assert!(recreated.to_string().contains("uid-1"), "{recreated}");

        let bootstrap = labelled(&[(names::CLASS_LABEL, "bootstrap")], &[]);
        let internal = labelled(&[(names::CLASS_LABEL, "internal")], &[]);
        let other = labelled(&[(names::CLASS_LABEL, "something")], &[]);
        assert_eq!(bootstrap.class(), Some(Class::Bootstrap));
        assert_eq!(internal.class(), Some(Class::Internal));
        assert_eq!(other.class(), None);
        assert_eq!(secret(&[], &[]).class(), None);
        assert!(bootstrap.require_class(Class::Bootstrap).is_ok());
        assert!(internal.require_class(Class::Internal).is_ok());
        for (s, class) in [
            (&bootstrap, Class::Internal),
            (&internal, Class::Bootstrap),
            (&other, Class::Bootstrap),
        ] {
            assert_eq!(s.require_class(class).unwrap_err().exit_status().code(), 3);
        }
    }

    #[test]
    fn an_empty_secret_is_refused_as_invalid() {
        let empty = secret(&[], &[]);
        assert_eq!(empty.require_data().unwrap_err().exit_status().code(), 2);
        assert!(
            secret(&[], &[("k", "")]).require_data().is_ok(),
            "a key, even empty, is data"
        );
    }

    #[test]
    fn what_a_consumed_or_pushed_secret_records_is_read_back() {
        let consumed = labelled(
            &[(names::STATE_LABEL, names::STATE_CONSUMED)],
            &[
                (names::VAULT_VERSION, "3"),
                (names::CONSUMED_MODE, "strip"),
                (names::MAX_AGE, "720h"),
            ],
        );
        assert!(consumed.is_consumed());
        assert!(!labelled(&[(names::STATE_LABEL, "pending")], &[]).is_consumed());
        assert!(!secret(&[], &[]).is_consumed());
        assert_eq!(consumed.recorded_version(), Some(3));
        assert_eq!(consumed.consumed_mode(), Some(ConsumeMode::Strip));
        assert_eq!(consumed.max_age().unwrap(), Some(720 * 3600));
        let plain = secret(&[], &[]);
        assert_eq!(plain.recorded_version(), None);
        assert_eq!(plain.consumed_mode(), None);
        assert_eq!(plain.max_age().unwrap(), None);
        let bad = secret(&[(names::MAX_AGE, "soon")], &[]);
        assert_eq!(bad.max_age().unwrap_err().exit_status().code(), 2);

        let header = SecretHeader {
            reference: consumed.reference.clone(),
            uid: consumed.uid.clone(),
            labels: consumed.labels.clone(),
            annotations: consumed.annotations.clone(),
        };
        assert!(header.is_consumed());
        assert_eq!(header.recorded_version(), Some(3));
        let fresh = SecretHeader {
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            ..header
        };
        assert!(!fresh.is_consumed());
        assert_eq!(fresh.recorded_version(), None);
    }

    #[test]
    fn mark_consumed_verifies_only_its_own_handover() {
        let origin = Origin::parse("bootstrap:team-a/db");
        let ours = Provenance {
            origin_version: 4,
            ..provenance("bootstrap:team-a/db", "uid-1", Some(fp('a')))
        };
        assert_eq!(
            check_consumable(Some(&ours), &origin, "uid-1"),
            ConsumeCheck::Verify {
                version: 4,
                recorded: Some(fp('a'))
            }
        );
        assert_eq!(
            check_consumable(None, &origin, "uid-1"),
            ConsumeCheck::NotHandedOver
        );
        for (other, uid) in [
            ("bootstrap:team-a/db", "uid-2"),
            ("bootstrap:team-a/other", "uid-1"),
        ] {
            assert_eq!(
                check_consumable(Some(&provenance(other, uid, None)), &origin, "uid-1"),
                ConsumeCheck::Conflict {
                    owner: format!("{other} (uid {uid})")
                }
            );
        }
    }

    #[test]
    fn only_pending_and_handed_over_items_are_worth_a_step() {
        use BootstrapState::*;
        for state in [Pending, HandedOver] {
            assert!(state.is_actionable(), "{state:?}");
        }
        for state in [Consumed, Drifted, Invalid, Conflict, Forbidden] {
            assert!(!state.is_actionable(), "{state:?}");
        }
        let forbidden = Error::Forbidden {
            action: "read".into(),
            detail: "policy".into(),
        };
        let not_owned = Error::NotOwned {
            path: "p".into(),
            owner: "o".into(),
            claimant: "c".into(),
        };
        assert_eq!(BootstrapState::of_refusal(&forbidden), Forbidden);
        assert_eq!(BootstrapState::of_refusal(&not_owned), Conflict);
        assert_eq!(
            BootstrapState::of_refusal(&Error::Usage("u".into())),
            Invalid
        );
    }

    #[test]
    fn drift_needs_a_fingerprint_to_compare_with() {
        let owned = |f| VaultView::Owned {
            provenance: provenance("bootstrap:team-a/db", "uid-1", f),
        };
        assert_eq!(
            classify(&owned(Some(fp('a'))), None).0,
            BootstrapState::HandedOver,
            "no key yet: drift cannot be judged"
        );
        assert_eq!(
            classify(&owned(None), Some(&fp('b'))).0,
            BootstrapState::HandedOver,
            "nothing recorded to compare"
        );
        let unrecorded = secret(&[], &[("k", "v")]);
        assert_eq!(
            consumed_state(&unrecorded, &fp('b')).0,
            BootstrapState::Consumed
        );
    }

    #[test]
    fn init_material_goes_only_to_a_mount_the_secret_names_itself() {
        let init = [("unseal_keys", "a,b,c")];
        let refused = |annotations: &[(&str, &str)], mount: &str| {
            let target = Target {
                mount: mount.into(),
                path: "team-a/db".into(),
            };
            secret(annotations, &init)
                .refuse_vault_init_material(&target, "secret")
                .is_err()
        };
        assert!(refused(&[], "secret"), "`_b64` may be left off");
        assert!(
            refused(&[], "vault-init"),
            "another mount, but not named by the Secret"
        );
        assert!(
            refused(&[(names::VAULT_MOUNT, "secret")], "secret"),
            "naming the default mount is no mount of its own"
        );
        assert!(!refused(
            &[(names::VAULT_MOUNT, "vault-init")],
            "vault-init"
        ));
    }

    #[test]
    fn targets_and_modes_read_as_named() {
        let target = Target {
            mount: "secret".into(),
            path: "team-a/db".into(),
        };
        assert_eq!(target.to_string(), "secret/team-a/db");
        assert_eq!(ConsumeMode::Delete.to_string(), "delete");
        assert_eq!(ConsumeMode::Strip.to_string(), "strip");
    }
}
