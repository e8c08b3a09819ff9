//! The audit trail (`docs/contract.md` §4): one JSON line per state change, on stderr and
//! appended to `--audit-file`. It is written here, outside `tracing`, so no `RUST_LOG` or
//! `--log-format` silences or reshapes it; an event has no field that could hold a value.

use std::fmt::Display;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use serde::Serialize;

use crate::domain::fingerprint::Fingerprint;
use crate::domain::outcome::Outcome;
use crate::error::{Error, Result};
use crate::vault::Login;

/// What changed: one action per kind of write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// The fingerprint key, created once per KV mount.
    CreateFingerprintKey,
    /// An ownership record created with `cas=0`: a path's claim (handover, push) or a role's
    /// record (vault-setup).
    Claim,
    /// The handover's data write.
    HandoverWrite,
    /// The provenance of a handover whose run died between its data and its provenance.
    HandoverFinish,
    /// Provenance (origin, uid, version, fingerprint) patched into a path's metadata.
    RecordProvenance,
    /// `secops-consumed-mode` recorded before the origin Secret is marked or deleted, so
    /// `status` can tell a retired origin from a lost one.
    RecordConsumption,
    /// A re-created bootstrap Secret re-adopted: provenance moved to its new uid, no data write.
    HandoverReadopt,
    /// A re-created push source re-adopted.
    PushReadopt,
    /// A claim naming a uid that no longer exists rewritten (`cas`) for the live Secret.
    ClaimTakeover,
    /// The push's data write.
    Push,
    /// A rotation id's record claimed, taken over or rebased (`cas`).
    RotationClaim,
    /// New values written, or a static role rotated by its engine.
    Rotate,
    /// A rotation id's record completed.
    RotationComplete,
    /// An engine rotation's claim released after the engine refused.
    RotationRelease,
    /// The rotation recorded where `status` reads it (path metadata, engine state).
    RecordRotation,
    /// Old versions destroyed (`--keep-versions`).
    DestroyVersions,
    /// A Vault mount, auth method, auth config, policy or role written by `vault-setup`.
    VaultSetup,
    /// A bootstrap Secret labelled consumed (annotate, or strip its data).
    MarkConsumed,
    /// A bootstrap Secret deleted (`--mode delete`).
    DeleteSecret,
    /// The `Drifted` Event: the one write of a marking refused for drift.
    ReportDrift,
    /// A push source annotated with what Vault holds.
    AnnotatePush,
    /// A consumer stamped: an ExternalSecret's force-sync or a workload's restart.
    RefreshConsumer,
    /// A re-created Secret whose data is not what Vault recorded labelled stale.
    MarkStale,
}

impl Action {
    fn system(self) -> &'static str {
        match self {
            Action::MarkConsumed
            | Action::DeleteSecret
            | Action::ReportDrift
            | Action::AnnotatePush
            | Action::RefreshConsumer
            | Action::MarkStale => "kubernetes",
            _ => "vault",
        }
    }
}

/// One state change. Built at the write it records and emitted once the write succeeded.
#[derive(Debug)]
#[must_use = "an audit event is recorded only by emit()"]
pub struct AuditEvent {
    action: Action,
    target: String,
    outcome: Outcome,
    vault_version: Option<u64>,
    fingerprint: Option<Fingerprint>,
}

impl AuditEvent {
    /// `target` names the object written: a Vault `MOUNT/PATH` or API path, a Secret
    /// `NS/NAME`, a consumer `KIND/NS/NAME`.
    pub fn new(action: Action, target: &dyn Display, outcome: Outcome) -> AuditEvent {
        AuditEvent {
            action,
            target: target.to_string(),
            outcome,
            vault_version: None,
            fingerprint: None,
        }
    }

    /// The Vault version the change created, or the one it is about.
    pub fn version(self, version: impl Into<Option<u64>>) -> AuditEvent {
        AuditEvent {
            vault_version: version.into(),
            ..self
        }
    }

    pub fn fingerprint(self, fingerprint: &Fingerprint) -> AuditEvent {
        AuditEvent {
            fingerprint: Some(fingerprint.clone()),
            ..self
        }
    }

    /// Writes the event to stderr and the audit file.
    pub fn emit(self) {
        let trail = TRAIL.get_or_init(Trail::default);
        let line = trail.line(&self);
        let _ = std::io::stderr().lock().write_all(&line);
        if let Some(file) = &trail.file {
            let mut file = file.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(error) = append(&mut file, &line) {
                tracing::error!(%error, "cannot append to the audit file: the event above is on stderr only");
            }
        }
    }
}

/// The line as written: the event with the run's command and actor.
#[derive(Serialize)]
struct Line<'a> {
    audit: bool,
    timestamp: String,
    command: &'a str,
    actor: &'a str,
    action: Action,
    system: &'static str,
    target: &'a str,
    outcome: Outcome,
    vault_version: Option<u64>,
    rotation_id: Option<&'a str>,
    fingerprint: Option<&'a Fingerprint>,
}

/// Where this run's events go, and what each of them shares.
#[derive(Default)]
struct Trail {
    command: &'static str,
    actor: String,
    /// A rotation's id: every change of that run belongs to it.
    rotation_id: Option<String>,
    file: Option<Mutex<File>>,
}

impl Trail {
    fn line(&self, event: &AuditEvent) -> Vec<u8> {
        let line = Line {
            audit: true,
            timestamp: crate::clock::now().to_string(),
            command: self.command,
            actor: if self.actor.is_empty() {
                environment_actor()
            } else {
                &self.actor
            },
            action: event.action,
            system: event.action.system(),
            target: &event.target,
            outcome: event.outcome,
            vault_version: event.vault_version,
            rotation_id: self.rotation_id.as_deref(),
            fingerprint: event.fingerprint.as_ref(),
        };
        let mut bytes = serde_json::to_vec(&line).expect("strings and numbers always serialize");
        bytes.push(b'\n');
        bytes
    }
}

static TRAIL: OnceLock<Trail> = OnceLock::new();

/// Opens the audit file for appending, creating it (mode 0600) if absent: called while the
/// flags are validated, so an unwritable path exits 2 before anything connects.
pub fn open_file(path: &Path) -> Result<File> {
    let mut options = OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(|error| {
        Error::Usage(format!(
            "--audit-file {}: cannot open it for appending: {error}",
            path.display()
        ))
    })
}

/// One `write` of the whole line to a file opened with `O_APPEND`: the kernel places it at
/// the end as one piece, so lines from parallel pods or threads sharing the file never
/// interleave. Flushed per event: nothing is buffered in the process.
fn append(file: &mut File, line: &[u8]) -> std::io::Result<()> {
    file.write_all(line)?;
    file.flush()
}

/// Starts this run's trail: its command, its actor (with the Vault login it uses), the
/// rotation id it runs under and its file. Called once, after validation, before any write.
pub fn start(
    command: &'static str,
    login: &Login,
    rotation_id: Option<String>,
    file: Option<File>,
) {
    let trail = Trail {
        command,
        actor: actor_with_login(login),
        rotation_id,
        file: file.map(Mutex::new),
    };
    let _ = TRAIL.set(trail);
}

/// Who acts, as recorded in audit events and `secops.dev/consumed-by`.
pub fn actor() -> &'static str {
    match TRAIL.get() {
        Some(trail) if !trail.actor.is_empty() => &trail.actor,
        _ => environment_actor(),
    }
}

fn actor_with_login(login: &Login) -> String {
    if explicit_actor().is_some() {
        return environment_actor().to_string();
    }
    let vault = match login {
        Login::Token(_) => "vault:token".to_string(),
        Login::Kubernetes { mount, role, .. } => format!("vault:kubernetes/{mount}/{role}"),
        // The role id is not a secret, but it is half a credential: the mount says enough.
        Login::AppRole { mount, .. } => format!("vault:approle/{mount}"),
    };
    format!("{},{vault}", environment_actor())
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn explicit_actor() -> Option<String> {
    env("SECOPS_ACTOR")
}

/// What the environment says of who runs this process: `SECOPS_ACTOR` verbatim, else the
/// Argo workflow, the pod (or host) and the service account the chart passes in, else the
/// host and the login user.
fn environment_actor() -> &'static str {
    static ACTOR: OnceLock<String> = OnceLock::new();
    ACTOR.get_or_init(|| {
        if let Some(explicit) = explicit_actor() {
            return explicit;
        }
        let mut parts = Vec::new();
        if let Some(workflow) = env("ARGO_WORKFLOW_NAME") {
            match env("ARGO_WORKFLOW_UID") {
                Some(uid) => parts.push(format!("workflow:{workflow}/{uid}")),
                None => parts.push(format!("workflow:{workflow}")),
            }
        }
        match env("POD_NAME") {
            Some(pod) => parts.push(format!("pod:{pod}")),
            None => {
                let host = env("HOSTNAME").or_else(|| {
                    std::fs::read_to_string("/proc/sys/kernel/hostname")
                        .ok()
                        .map(|h| h.trim().to_string())
                        .filter(|h| !h.is_empty())
                });
                if let Some(host) = host {
                    parts.push(format!("host:{host}"));
                }
            }
        }
        match env("SERVICE_ACCOUNT").or_else(|| env("SECOPS_SERVICE_ACCOUNT")) {
            Some(account) => parts.push(format!("sa:{account}")),
            None => {
                if let Some(user) = env("USER") {
                    parts.push(format!("user:{user}"));
                }
            }
        }
        if parts.is_empty() {
            parts.push("unknown".into());
        }
        parts.join(",")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::bootstrap::Target;

    fn trail() -> Trail {
        Trail {
            command: "rotate",
            actor: "sa:secops-rotate,vault:kubernetes/kubernetes/secops-rotate".into(),
            rotation_id: Some("nightly-1".into()),
            file: None,
        }
    }

    #[test]
    fn an_event_is_one_json_line_with_every_field() {
        let target = Target {
            mount: "secret".into(),
            path: "team/db".into(),
        };
        let event = AuditEvent::new(Action::RotationClaim, &target, Outcome::Written).version(3);
        let line = trail().line(&event);
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        assert_eq!(line.last(), Some(&b'\n'));
        let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
        let mut fields: Vec<&str> = value.as_object().unwrap().keys().map(|k| &**k).collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            [
                "action",
                "actor",
                "audit",
                "command",
                "fingerprint",
                "outcome",
                "rotation_id",
                "system",
                "target",
                "timestamp",
                "vault_version"
            ],
            "a stable schema: absent facts are null, never missing"
        );
        assert_eq!(value["audit"], true);
        assert_eq!(value["action"], "rotation-claim");
        assert_eq!(value["system"], "vault");
        assert_eq!(value["target"], "secret/team/db");
        assert_eq!(value["vault_version"], 3);
        assert_eq!(value["rotation_id"], "nightly-1");
        assert_eq!(value["fingerprint"], serde_json::Value::Null);
    }

    #[test]
    fn kubernetes_writes_say_so() {
        let event = AuditEvent::new(Action::DeleteSecret, &"team/db", Outcome::Consumed);
        let value: serde_json::Value = serde_json::from_slice(&trail().line(&event)).unwrap();
        assert_eq!(value["system"], "kubernetes");
        assert_eq!(value["action"], "delete-secret");
    }

    #[test]
    fn parallel_appenders_never_interleave_a_line() {
        let dir = std::env::temp_dir().join(format!("secops-audit-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let _ = std::fs::remove_file(&path);
        const WRITERS: usize = 8;
        const EVENTS: usize = 200;
        std::thread::scope(|scope| {
            for writer in 0..WRITERS {
                let path = &path;
                // Each its own open file, as separate pods sharing a volume would have.
                scope.spawn(move || {
                    let mut file = open_file(path).unwrap();
                    let target = format!("writer-{writer}/{}", "x".repeat(300));
                    for n in 0..EVENTS {
                        let event = AuditEvent::new(Action::Claim, &target, Outcome::Written)
                            .version(n as u64);
                        append(&mut file, &trail().line(&event)).unwrap();
                    }
                });
            }
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), WRITERS * EVENTS);
        for line in lines {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(value["audit"], true);
        }
    }

    #[test]
    fn an_unwritable_audit_file_is_a_usage_error() {
        let error = open_file(Path::new("/nonexistent/secops/audit.jsonl")).unwrap_err();
        assert!(matches!(error, Error::Usage(ref m) if m.contains("--audit-file")));
    }

    #[test]
    fn the_actor_names_the_vault_login_without_its_credentials() {
        let login = Login::Kubernetes {
            mount: "kubernetes".into(),
            role: "secops-handover".into(),
            jwt: "header.payload.signature".to_string().into(),
        };
        let actor = actor_with_login(&login);
        if explicit_actor().is_none() {
            assert!(actor.ends_with(",vault:kubernetes/kubernetes/secops-handover"));
        }
        assert!(!actor.contains("payload"));
    }
}
