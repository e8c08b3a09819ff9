//! `status`: one row per managed secret with its authority, phase and Vault version, and any
//! broken invariant (RFC section 3.3; `docs/contract.md` §6.6); exit 3 when one is found, so
//! a CronWorkflow can alert.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal as _;

use futures::stream::{self, StreamExt as _};
use futures::TryStreamExt as _;
use serde::Serialize;

use super::{pages, Context};
use crate::domain::authority::{
    age_violation, assess_bootstrap, assess_internal, assess_orphan, Assessment, Authority, Phase,
    VaultFacts, Violation, ViolationKind,
};
use crate::domain::bootstrap::SourceSecret;
use crate::domain::expiry::{max_age_of, parse_max_age};
use crate::domain::fingerprint::FingerprintKey;
use crate::domain::names::{is_reserved, meta, Class, FINGERPRINT_KEY_PATH};
use crate::domain::outcome::Outcome;
use crate::domain::provenance::Provenance;
use crate::domain::Scope;
use crate::error::{Error, ExitStatus, Result};
use crate::output::Report;
use crate::vault::{fingerprint_key_gone, VaultMetadata};

pub struct Plan {
    pub scope: Scope,
    /// How long two authorities may coexist before it is a violation.
    pub grace_seconds: i64,
    /// `None`: a table on a terminal, else JSON.
    pub table: Option<bool>,
    /// The rendered Vault configuration to check for drift (`vault-config-drift`).
    pub vault_config: Option<super::vault_setup::ConfigSource>,
    /// The maximum age of a current value where the path records none of its own.
    pub max_age_seconds: Option<i64>,
    /// List the paths whose origin is in another cluster (`--other-clusters`), unjudged.
    pub other_clusters: bool,
}

const READ_CONCURRENCY: usize = 16;

/// Where a row came from: a labelled Secret, or a Vault path whose origin was not found.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
enum RowKind {
    Bootstrap,
    Internal,
    Vault,
    /// A static role an engine rotates (`rotate --static-role`).
    Engine,
}

#[derive(Debug, Serialize)]
struct Row {
    kind: RowKind,
    secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<String>,
    mount: String,
    path: String,
    authority: Authority,
    phase: Phase,
    vault_version: Option<u64>,
    last_handover: Option<String>,
    last_rotation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rotation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    consumers: Option<Vec<String>>,
    violations: Vec<Violation>,
    /// When the current value was written, and its maximum age (judged once all rows exist).
    #[serde(skip)]
    written_at: Option<jiff::Timestamp>,
    #[serde(skip)]
    max_age: Option<i64>,
}

impl Row {
    fn new(
        kind: RowKind,
        secret: String,
        mount: &str,
        path: &str,
        metadata: Option<&VaultMetadata>,
        assessment: Assessment,
    ) -> Row {
        let get = |key: &str| metadata.and_then(|m| m.custom.get(key)).cloned();
        Row {
            kind,
            secret: Some(secret),
            uid: None,
            mount: mount.to_string(),
            path: path.to_string(),
            authority: assessment.authority,
            phase: assessment.phase,
            vault_version: metadata.map(|m| m.current_version),
            last_handover: get(meta::HANDOVER_AT),
            last_rotation: get(meta::ROTATED_AT),
            rotation_id: get(meta::ROTATION_ID),
            consumers: None,
            violations: assessment.violations,
            written_at: metadata.and_then(|m| m.current_created_at),
            max_age: metadata.and_then(|m| max_age_of(&m.custom, None)),
        }
    }
}

#[derive(Serialize)]
struct StatusDocument {
    command: &'static str,
    outcome: Outcome,
    total: usize,
    violations: usize,
    rows: Vec<Row>,
    /// Vault-side drift, when a rendered configuration was given (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    vault_config: Option<Vec<VaultConfigRow>>,
    /// With `--other-clusters`: paths another cluster handed over or pushed (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    other_clusters: Option<Vec<OtherClusterRow>>,
    exit_code: ExitStatus,
}

/// A Vault path whose origin is in another cluster: that cluster's `status` judges it, this
/// one cannot see its Secret, so it only says the path is there and whose it is.
#[derive(Debug, Serialize)]
struct OtherClusterRow {
    /// `null`: the unnamed cluster (an origin without a cluster name).
    cluster: Option<String>,
    secret: String,
    origin: String,
    mount: String,
    path: String,
    vault_version: u64,
}

/// A Vault policy or role that does not match the chart's rendering.
#[derive(Debug, Serialize)]
struct VaultConfigRow {
    path: String,
    violations: Vec<Violation>,
}

/// Vault-side drift against the rendered configuration: names and field names only.
async fn vault_config_rows(plan: &Plan, ctx: &Context) -> Result<Option<Vec<VaultConfigRow>>> {
    let Some(source) = &plan.vault_config else {
        return Ok(None);
    };
    let drift = super::vault_setup::drift(ctx, source).await?;
    Ok(Some(
        drift
            .into_iter()
            .map(|(path, changes)| VaultConfigRow {
                path,
                violations: vec![Violation {
                    kind: crate::domain::authority::ViolationKind::VaultConfigDrift,
                    detail: changes.join("; "),
                }],
            })
            .collect(),
    ))
}

/// Every path under the mount that carries secops provenance, skipping secops's own state.
async fn provenance_paths(ctx: &Context, mount: &str) -> Result<Vec<(String, VaultMetadata)>> {
    let mut folders = vec![String::new()];
    let mut leaves = Vec::new();
    while let Some(folder) = folders.pop() {
        for key in ctx.vault.list(mount, &folder).await? {
            let full = format!("{folder}{key}");
            if is_reserved(full.trim_end_matches('/')) {
                continue;
            }
            if full.ends_with('/') {
                folders.push(full);
            } else {
                leaves.push(full);
            }
        }
    }
    let read: Vec<Result<Option<(String, VaultMetadata)>>> = stream::iter(leaves)
        .map(|path| async move {
            Ok(ctx
                .vault
                .read_metadata(mount, &path)
                .await?
                .filter(|m| m.custom.contains_key(meta::ORIGIN))
                .map(|m| (path, m)))
        })
        .buffered(READ_CONCURRENCY)
        .collect()
        .await;
    Ok(read
        .into_iter()
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect())
}

impl Row {
    /// The namespaces of an engine row's consumers: the row is in a scope that covers one of
    /// them (an engine role has no namespace of its own; without consumers, only `-A`).
    fn consumer_namespaces(&self) -> impl Iterator<Item = &str> {
        self.consumers
            .iter()
            .flatten()
            .filter_map(|c| c.split('/').nth(1))
    }
}

/// One row per static role `rotate --static-role` has rotated, from the state it records
/// under `secops/engine-rotations/`. A status identity not allowed to read that state gets
/// no engine rows rather than no status.
async fn engine_rows(ctx: &Context, mount: &str) -> Result<Vec<Row>> {
    let root = crate::commands::rotate::ENGINE_STATE_ROOT.to_string();
    let mut folders = vec![root.clone()];
    let mut rows = Vec::new();
    while let Some(folder) = folders.pop() {
        let keys = match ctx.vault.list(mount, &folder).await {
            Ok(keys) => keys,
            Err(crate::error::Error::Forbidden { .. }) => {
                tracing::warn!(
                    folder,
                    "not allowed to list engine rotations; status shows none"
                );
                return Ok(rows);
            }
            Err(error) => return Err(error),
        };
        for key in keys {
            let full = format!("{folder}{key}");
            if full.ends_with('/') {
                folders.push(full);
                continue;
            }
            // The chart's status policy lists secops's state but reads none of its data.
            let held = match ctx.vault.read(mount, &full, None, &BTreeSet::new()).await {
                Ok(Some(held)) => held,
                Ok(None) => continue,
                Err(crate::error::Error::Forbidden { .. }) => {
                    tracing::warn!(
                        record = full,
                        "not allowed to read an engine rotation; status leaves it out"
                    );
                    continue;
                }
                Err(error) => return Err(error),
            };
            let field = |name: &str| {
                held.data
                    .get(name)
                    .and_then(|v| v.as_utf8())
                    .map(String::from)
            };
            let Some((engine, role)) = full[root.len()..].rsplit_once('/') else {
                continue;
            };
            let last = field("last_vault_rotation");
            rows.push(Row {
                kind: RowKind::Engine,
                secret: None,
                uid: None,
                mount: engine.to_string(),
                path: format!("static-roles/{role}"),
                authority: Authority::Vault,
                phase: Phase::Rotated(field("rotations").and_then(|n| n.parse().ok()).unwrap_or(1)),
                vault_version: None,
                last_handover: None,
                last_rotation: last.clone(),
                rotation_id: field("rotation_id"),
                consumers: Some(
                    field("consumers")
                        .unwrap_or_default()
                        .split(',')
                        .filter(|c| !c.is_empty())
                        .map(String::from)
                        .collect(),
                ),
                violations: Vec::new(),
                written_at: last.and_then(|t| t.parse().ok()),
                max_age: field("max_age").and_then(|a| parse_max_age(&a)),
            });
        }
    }
    Ok(rows)
}

/// The kebab-case name a unit enum serializes as.
fn name_of(value: impl Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

fn render_table(rows: &[Row]) -> String {
    let header = [
        "SECRET",
        "VAULT PATH",
        "AUTHORITY",
        "PHASE",
        "VERSION",
        "VIOLATIONS",
    ]
    .map(String::from);
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            let violations: Vec<String> = r.violations.iter().map(|v| name_of(v.kind)).collect();
            [
                r.secret.clone().unwrap_or_else(|| "-".into()),
                if r.path.is_empty() {
                    "-".to_string() // no valid path: say so, not "secret/"
                } else {
                    format!("{}/{}", r.mount, r.path)
                },
                name_of(r.authority),
                r.phase.to_string(),
                r.vault_version
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into()),
                if violations.is_empty() {
                    "-".into()
                } else {
                    violations.join(",")
                },
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..6)
        .map(|i| {
            cells
                .iter()
                .map(|c| c[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |values: &[String; 6]| {
        values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
            + "\n"
    };
    let mut out = line(&header);
    for c in &cells {
        out.push_str(&line(c));
    }
    out
}

/// The row of one labelled Secret: its target, what Vault holds there, and the judgement.
async fn row_for(
    ctx: &Context,
    plan: &Plan,
    kind: RowKind,
    secret: &SourceSecret,
    key: Option<&FingerprintKey>,
    now: i64,
) -> Result<Row> {
    let mount = ctx.settings.kv_mount.as_str();
    let name = secret.reference.to_string();
    let target = match secret.target(mount, &ctx.settings.allowed, None) {
        Ok(target) => target,
        Err(error) => {
            let assessment = Assessment::invalid(error.to_string());
            return Ok(Row::new(kind, name, mount, "", None, assessment));
        }
    };
    let current = key.map(|k| k.fingerprint(&target, &secret.data));
    let metadata = ctx.vault.read_metadata(&target.mount, &target.path).await?;
    let provenance = metadata
        .as_ref()
        .and_then(|m| Provenance::from_metadata(&m.custom));
    // Metadata with neither data nor provenance holds nothing to judge.
    let facts = metadata
        .as_ref()
        .filter(|m| m.current_version > 0 || provenance.is_some())
        .map(|m| VaultFacts {
            provenance: provenance.as_ref(),
            custom: &m.custom,
            current_version: m.current_version,
            current_readable: m.live_versions.contains(&m.current_version),
        });
    let assessment = match kind {
        RowKind::Bootstrap => assess_bootstrap(
            secret,
            facts.as_ref(),
            current.as_ref(),
            now,
            plan.grace_seconds,
        ),
        _ => assess_internal(secret, facts.as_ref(), current.as_ref()),
    };
    let mut row = Row::new(
        kind,
        name,
        &target.mount,
        &target.path,
        metadata.as_ref(),
        assessment,
    );
    row.uid = Some(secret.uid.clone());
    Ok(row)
}

/// A row for the fingerprint key when it exists but cannot be read: every drift check
/// depends on it.
async fn fingerprint_key_row(ctx: &Context, mount: &str) -> Result<Option<Row>> {
    let metadata = match ctx.vault.read_metadata(mount, FINGERPRINT_KEY_PATH).await {
        Ok(Some(metadata)) if metadata.current_version > 0 => metadata,
        // Absent (nothing fingerprinted yet), or its metadata is not ours to read.
        Ok(_) | Err(Error::Forbidden { .. }) => return Ok(None),
        Err(error) => return Err(error),
    };
    let gone = fingerprint_key_gone(mount, &metadata);
    Ok(Some(Row {
        kind: RowKind::Vault,
        secret: None,
        uid: None,
        mount: mount.to_string(),
        path: FINGERPRINT_KEY_PATH.to_string(),
        authority: Authority::Vault,
        phase: Phase::Invalid("the fingerprint key is unreadable".into()),
        vault_version: Some(metadata.current_version),
        last_handover: None,
        last_rotation: None,
        rotation_id: None,
        consumers: None,
        violations: vec![Violation {
            kind: ViolationKind::FingerprintKeyLost,
            detail: format!("drift can no longer be seen: {gone}"),
        }],
        written_at: None,
        max_age: None,
    }))
}

pub async fn run(plan: &Plan, ctx: &Context) -> Result<Report> {
    let kube = ctx.kube()?;
    let mount = ctx.settings.kv_mount.clone();
    let key = ctx.vault.existing_fingerprint_key(&mount).await?;
    let now = crate::clock::now().as_second();
    let mut rows = Vec::new();
    if key.is_none() {
        rows.extend(fingerprint_key_row(ctx, &mount).await?);
    }
    for (kind, class) in [
        (RowKind::Bootstrap, Class::Bootstrap),
        (RowKind::Internal, Class::Internal),
    ] {
        let key = key.as_ref();
        let of_class: Vec<Row> = pages::headers(ctx, class, &plan.scope, None)?
            .map(|header| async move {
                // Each Secret's data is fetched only to judge it, then dropped.
                let Some(secret) = kube.get_secret(&header?.reference).await? else {
                    return Ok(None); // gone since it was listed
                };
                row_for(ctx, plan, kind, &secret, key, now).await.map(Some)
            })
            .buffered(READ_CONCURRENCY)
            .try_filter_map(|row| std::future::ready(Ok(row)))
            .try_collect()
            .await?;
        rows.extend(of_class);
    }
    // Each labelled Secret's current target and uid, to tell a handover it moved away from.
    let seen: BTreeMap<String, (String, String, Option<String>)> = rows
        .iter()
        .filter_map(|r| {
            let target = (r.mount.clone(), r.path.clone(), r.uid.clone());
            r.secret.clone().map(|secret| (secret, target))
        })
        .collect();
    let mut other_clusters = plan.other_clusters.then(Vec::new);
    for (path, metadata) in provenance_paths(ctx, &mount).await? {
        let Some(provenance) = Provenance::from_metadata(&metadata.custom) else {
            continue;
        };
        let Some(reference) = provenance.origin.secret() else {
            continue;
        };
        // A row for a Vault path whose origin is not where it should be.
        let vault_row = |assessment| {
            let name = reference.to_string();
            Row::new(
                RowKind::Vault,
                name,
                &mount,
                &path,
                Some(&metadata),
                assessment,
            )
        };
        if !plan
            .scope
            .contains(&reference.namespace, kube.default_namespace())
        {
            continue;
        }
        // Another cluster's Secret cannot be looked up from here: never judged by this one.
        if reference.cluster != ctx.settings.cluster {
            if let Some(others) = other_clusters.as_mut() {
                others.push(OtherClusterRow {
                    cluster: reference.cluster.as_ref().map(|c| c.to_string()),
                    secret: reference.to_string(),
                    origin: provenance.origin.to_string(),
                    mount: mount.clone(),
                    path: path.clone(),
                    vault_version: metadata.current_version,
                });
            }
            continue;
        }
        if let Some((now_mount, now_path, uid)) = seen.get(&reference.to_string()) {
            let moved = uid.as_deref() == Some(provenance.origin_uid.as_str())
                && (now_mount.as_str(), now_path.as_str()) != (mount.as_str(), path.as_str());
            if moved {
                let detail = format!(
                    "handed over from {reference} (uid {}), which now names {now_mount}/{now_path}; \
                     this path stays owned by it",
                    provenance.origin_uid
                );
                let assessment = Assessment {
                    authority: Authority::Vault,
                    phase: Phase::OriginGone,
                    violations: vec![Violation {
                        kind: ViolationKind::OriginMoved,
                        detail,
                    }],
                };
                rows.push(vault_row(assessment));
            }
            continue;
        }
        // Listed by label above only if still labelled; look the origin up by name too.
        if kube.get_secret(reference).await?.is_some() {
            continue;
        }
        let assessment = assess_orphan(&provenance, &metadata.custom, metadata.current_version);
        rows.push(vault_row(assessment));
    }
    let in_scope = |namespace: &str| plan.scope.contains(namespace, kube.default_namespace());
    let all = plan.scope == Scope::AllNamespaces;
    rows.extend(
        engine_rows(ctx, &mount)
            .await?
            .into_iter()
            .filter(|row| all || row.consumer_namespaces().any(in_scope)),
    );
    let now = crate::clock::now();
    for row in &mut rows {
        if let Some(v) = age_violation(row.written_at, now, row.max_age.or(plan.max_age_seconds)) {
            row.violations.push(v);
        }
    }
    let vault_config = vault_config_rows(plan, ctx).await?;
    let violations: usize = rows.iter().map(|r| r.violations.len()).sum::<usize>()
        + vault_config
            .iter()
            .flatten()
            .map(|r| r.violations.len())
            .sum::<usize>();
    let (outcome, status) = if violations > 0 {
        (Outcome::Violations, ExitStatus::Refused)
    } else {
        (Outcome::Clean, ExitStatus::Ok)
    };
    let as_table = plan
        .table
        .unwrap_or_else(|| std::io::stdout().is_terminal());
    let text = as_table.then(|| {
        let mut table = render_table(&rows);
        for row in vault_config.iter().flatten() {
            for violation in &row.violations {
                table.push_str(&format!(
                    "vault-config-drift  {}  {}\n",
                    row.path, violation.detail
                ));
            }
        }
        for row in other_clusters.iter().flatten() {
            table.push_str(&format!(
                "other-cluster  {}  {}/{}  (not judged here)\n",
                row.origin, row.mount, row.path
            ));
        }
        table
    });
    let document = StatusDocument {
        command: "status",
        outcome,
        total: rows.len(),
        violations,
        rows,
        vault_config,
        other_clusters,
        exit_code: status,
    };
    let mut report = Report::new(&document).with_status(status);
    report.text = text;
    Ok(report)
}
