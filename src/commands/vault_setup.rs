//! `vault-setup`: applies the Vault side the chart renders (ACL policies and kubernetes-auth
//! roles, ConfigMap `secops-vault-policies`), enabling the KV v2 mount and the auth method
//! when absent with `--enable-missing`. Reads everything first, refuses (exit 3) before any
//! write when an object of the same name is not secops's, and writes only what differs.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::Context;
use crate::audit::{self, AuditEvent};
use crate::domain::outcome::Outcome;
use crate::domain::vault_config::{
    decide_auth_mount, decide_kv_mount, decide_policy, decide_role, parse_rendered,
    role_record_path, Action, Decision, DesiredConfig, MountAction,
};
use crate::error::{Error, ExitStatus, Result};
use crate::output::{tally, Report};
use crate::secret::{SecretBytes, SecretData};
use crate::vault::CasWrite;

/// Where the rendered Vault configuration comes from.
pub enum ConfigSource {
    /// Read through the Kubernetes API at run time.
    ConfigMap { namespace: String, name: String },
    /// Read and parsed from a directory before anything connected.
    Parsed {
        label: String,
        config: DesiredConfig,
    },
}

impl ConfigSource {
    pub fn needs_kube(&self) -> bool {
        matches!(self, ConfigSource::ConfigMap { .. })
    }

    /// The configuration and a label naming its source.
    pub async fn load(&self, ctx: &Context) -> Result<(String, DesiredConfig)> {
        match self {
            ConfigSource::Parsed { label, config } => Ok((label.clone(), config.clone())),
            ConfigSource::ConfigMap { namespace, name } => {
                let label = format!("configmap {namespace}/{name}");
                let data = ctx
                    .kube()?
                    .get_configmap(namespace, name)
                    .await?
                    .ok_or_else(|| Error::NotFound {
                        what: format!("ConfigMap {namespace}/{name}"),
                    })?;
                let config = parse_rendered(&label, &data)?;
                Ok((label, config))
            }
        }
    }
}

/// `auth/MOUNT/config` of the kubernetes auth method: environment-specific, so taken from
/// flags, never from the chart.
pub struct KubernetesAuthConfig {
    pub host: String,
    pub ca_pem: Option<String>,
    /// `disable_local_ca_jwt`: Vault runs outside the cluster and reviews each login with
    /// the client's own token (which then needs `system:auth-delegator`).
    pub use_client_jwt: bool,
}

pub struct Plan {
    pub source: ConfigSource,
    pub enable_missing: bool,
    pub adopt: bool,
    pub kubernetes: Option<KubernetesAuthConfig>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum ObjectKind {
    SecretsEngine,
    AuthMethod,
    AuthConfig,
    Policy,
    Role,
}

/// One object, what was decided and what became of it. Names and field names only.
#[derive(Debug, Serialize)]
struct SetupItem {
    kind: ObjectKind,
    path: String,
    action: &'static str,
    outcome: Outcome,
    changes: Vec<String>,
}

#[derive(Serialize)]
struct SetupDocument {
    command: &'static str,
    outcome: Outcome,
    source: String,
    kv_mount: String,
    dry_run: bool,
    total: usize,
    counts: BTreeMap<Outcome, usize>,
    items: Vec<SetupItem>,
    notes: Vec<String>,
    exit_code: ExitStatus,
}

fn action_name(action: Action) -> &'static str {
    match action {
        Action::Create => "create",
        Action::Update => "update",
        Action::Adopt => "adopt",
        Action::Keep => "none",
        Action::Refuse => "refuse",
    }
}

/// A planned write, carried out after every object was read and judged.
enum Write {
    EnableKv(String),
    EnableAuth(String),
    AuthConfig(String, BTreeMap<String, Value>),
    Policy {
        name: String,
        text: String,
    },
    Role {
        path: String,
        record: Option<String>,
        fields: BTreeMap<String, Value>,
    },
}

pub async fn run(plan: &Plan, ctx: &Context) -> Result<Report> {
    let (label, config) = plan.source.load(ctx).await?;
    let kv = ctx.settings.kv_mount.clone();
    let dry_run = ctx.settings.dry_run;
    let mut items: Vec<SetupItem> = Vec::new();
    let mut writes: Vec<(usize, Write)> = Vec::new();
    let mut notes = Vec::new();
    let mut refused = Vec::new();
    let mut push = |items: &mut Vec<SetupItem>, kind, path: String, action, changes, write| {
        let outcome = match (action, dry_run) {
            ("none", _) => Outcome::Unchanged,
            ("refuse", _) => Outcome::Failed,
            (_, true) => Outcome::Planned,
            ("adopt", false) => Outcome::Adopted,
            (_, false) => Outcome::Applied,
        };
        if let Some(write) = write {
            writes.push((items.len(), write));
        }
        items.push(SetupItem {
            kind,
            path,
            action,
            outcome,
            changes,
        });
    };

    // Mounts are looked at only when secops may enable them, so that without
    // --enable-missing the token needs no access to sys/mounts or sys/auth.
    let mut new_auth_mounts = Vec::new();
    let mut kv_absent = false;
    if plan.enable_missing {
        let facts = ctx.vault.read_secrets_mount(&kv).await?;
        let action = decide_kv_mount(&kv, facts.as_ref(), true)?;
        kv_absent = action == MountAction::Enable;
        let (name, write) = match action {
            MountAction::Enable => ("create", Some(Write::EnableKv(kv.clone()))),
            MountAction::Keep => ("none", None),
        };
        push(
            &mut items,
            ObjectKind::SecretsEngine,
            format!("sys/mounts/{kv}"),
            name,
            vec![],
            write,
        );
        for mount in config.auth_mounts() {
            let facts = ctx.vault.read_auth_mount(&mount).await?;
            let action = decide_auth_mount(&mount, facts.as_ref(), true)?;
            let (name, write) = match action {
                MountAction::Enable => {
                    new_auth_mounts.push(mount.clone());
                    ("create", Some(Write::EnableAuth(mount.clone())))
                }
                MountAction::Keep => ("none", None),
            };
            push(
                &mut items,
                ObjectKind::AuthMethod,
                format!("sys/auth/{mount}"),
                name,
                vec![],
                write,
            );
        }
    }
    for mount in config.auth_mounts() {
        let absent = new_auth_mounts.contains(&mount);
        let path = format!("auth/{mount}/config");
        let Some(wanted) = &plan.kubernetes else {
            if absent {
                notes.push(format!(
                    "{path} is not configured: write kubernetes_host (and the cluster's CA) there, or pass --kubernetes-host"
                ));
            }
            continue;
        };
        let mut fields = BTreeMap::from([(
            "kubernetes_host".to_string(),
            Value::from(wanted.host.clone()),
        )]);
        if let Some(ca) = &wanted.ca_pem {
            fields.insert("kubernetes_ca_cert".into(), Value::from(ca.trim()));
        }
        fields.insert(
            "disable_local_ca_jwt".into(),
            Value::from(wanted.use_client_jwt),
        );
        let current = if absent {
            None
        } else {
            ctx.vault.read_object(&path).await?
        };
        let changes: Vec<String> = fields
            .iter()
            .filter(|(key, value)| {
                let have = current.as_ref().and_then(|c| c.get(key.as_str()));
                let trim = |v: &Value| match v {
                    Value::String(s) => Value::from(s.trim()),
                    other => other.clone(),
                };
                have.map(trim) != Some(trim(value))
            })
            .map(|(key, _)| key.clone())
            .collect();
        let (name, write) = match (current.is_some(), changes.is_empty()) {
            (true, true) => ("none", None),
            (exists, _) => (
                if exists { "update" } else { "create" },
                Some(Write::AuthConfig(path.clone(), fields)),
            ),
        };
        push(
            &mut items,
            ObjectKind::AuthConfig,
            path,
            name,
            changes,
            write,
        );
    }

    for policy in &config.policies {
        let actual = ctx.vault.read_acl_policy(&policy.name).await?;
        let Decision { action, changes } = decide_policy(policy, actual.as_deref(), plan.adopt);
        if action == Action::Refuse {
            refused.push(policy.api_path());
        }
        let write = matches!(action, Action::Create | Action::Update | Action::Adopt).then(|| {
            Write::Policy {
                name: policy.name.clone(),
                text: policy.text(),
            }
        });
        push(
            &mut items,
            ObjectKind::Policy,
            policy.api_path(),
            action_name(action),
            changes,
            write,
        );
    }

    for role in &config.roles {
        let path = role.api_path();
        let actual = if new_auth_mounts.contains(&role.mount) {
            None
        } else {
            ctx.vault.read_object(&path).await?
        };
        let record = role_record_path(&role.mount, &role.name);
        let owned = !kv_absent
            && ctx
                .vault
                .read_metadata(&kv, &record)
                .await?
                .is_some_and(|m| m.current_version > 0);
        let Decision { action, changes } = decide_role(role, actual.as_ref(), owned, plan.adopt);
        if action == Action::Refuse {
            refused.push(path.clone());
        }
        let write = matches!(action, Action::Create | Action::Update | Action::Adopt).then(|| {
            Write::Role {
                path: path.clone(),
                record: (!owned).then(|| record.clone()),
                fields: role.fields.clone(),
            }
        });
        push(
            &mut items,
            ObjectKind::Role,
            path,
            action_name(action),
            changes,
            write,
        );
    }

    if !refused.is_empty() {
        return Err(Error::NotAdopted {
            path: refused.join(", "),
        });
    }
    if !dry_run {
        for (index, write) in writes {
            apply(ctx, &kv, write).await?;
            let item = &items[index];
            AuditEvent::new(audit::Action::VaultSetup, &item.path, item.outcome).emit();
        }
    }
    let document = SetupDocument {
        command: "vault-setup",
        outcome: if dry_run {
            Outcome::Planned
        } else {
            Outcome::Done
        },
        source: label,
        kv_mount: kv,
        dry_run,
        total: items.len(),
        counts: tally(items.iter().map(|i| i.outcome)),
        items,
        notes,
        exit_code: ExitStatus::Ok,
    };
    Ok(Report::new(&document))
}

async fn apply(ctx: &Context, kv: &str, write: Write) -> Result<()> {
    let vault = &ctx.vault;
    match write {
        Write::EnableKv(mount) => vault.enable_kv2(&mount).await,
        Write::EnableAuth(mount) => vault.enable_kubernetes_auth(&mount).await,
        Write::AuthConfig(path, fields) => vault.write_object(&path, &fields).await,
        Write::Policy { name, text } => vault.write_acl_policy(&name, &text).await,
        Write::Role {
            path,
            record,
            fields,
        } => {
            // The ownership record first: a crash before the role write leaves a claim that
            // the next run completes, never a role secops would then call foreign.
            if let Some(record) = record {
                let mut data = SecretData::new();
                data.insert("role".into(), SecretBytes::from_string(path.clone()));
                data.insert(
                    "owner".into(),
                    SecretBytes::from_string("secops vault-setup".into()),
                );
                // A mismatch: another run recorded it first, which is just as good.
                if let CasWrite::Written { version } = vault.write(kv, &record, &data, 0).await? {
                    let record = format!("{kv}/{record}");
                    AuditEvent::new(audit::Action::Claim, &record, Outcome::Written)
                        .version(version)
                        .emit();
                }
            }
            vault.write_object(&path, &fields).await
        }
    }
}

/// Vault-side drift for `status`: each policy or role that is absent, differs from the
/// rendered one, or is not secops's. Read-only.
pub async fn drift(ctx: &Context, source: &ConfigSource) -> Result<Vec<(String, Vec<String>)>> {
    let (_, config) = source.load(ctx).await?;
    let kv = &ctx.settings.kv_mount;
    let mut found = Vec::new();
    for policy in &config.policies {
        let actual = ctx.vault.read_acl_policy(&policy.name).await?;
        let decision = decide_policy(policy, actual.as_deref(), false);
        if decision.is_drift() {
            found.push((policy.api_path(), describe(&decision)));
        }
    }
    for role in &config.roles {
        let actual = ctx.vault.read_object(&role.api_path()).await?;
        let owned = ctx
            .vault
            .read_metadata(kv, &role_record_path(&role.mount, &role.name))
            .await?
            .is_some_and(|m| m.current_version > 0);
        let decision = decide_role(role, actual.as_ref(), owned, false);
        if decision.is_drift() {
            found.push((role.api_path(), describe(&decision)));
        }
    }
    Ok(found)
}

fn describe(decision: &Decision) -> Vec<String> {
    let what = match decision.action {
        Action::Create => "absent".to_string(),
        Action::Refuse => "not written by secops".to_string(),
        _ => "differs from the rendered one".to_string(),
    };
    std::iter::once(what)
        .chain(decision.changes.iter().cloned())
        .collect()
}
