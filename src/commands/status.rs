//! `status`: one row per managed secret with its authority, phase and Vault version, and any
//! broken invariant (RFC section 3.3); exit 3 when one is found, so a CronWorkflow can alert.

use std::collections::BTreeSet;
use std::io::IsTerminal as _;
use std::time::Duration;

use futures::stream::{self, StreamExt as _};
use serde_json::{json, Value};

use super::handover::bootstrap_selector;
use super::Context;
use crate::cli::{ScopeArgs, StatusFormat};
use crate::domain::authority::{
    assess_bootstrap, assess_internal, assess_orphan, Assessment, VaultFacts,
};
use crate::domain::bootstrap::SourceSecret;
use crate::domain::names::{self, meta, RESERVED_PREFIX};
use crate::domain::provenance::{Origin, Provenance};
use crate::error::{exit, Result};
use crate::output::Report;
use crate::vault::VaultMetadata;

const READ_CONCURRENCY: usize = 16;

fn row(
    kind: &str,
    secret: Option<String>,
    mount: &str,
    path: &str,
    metadata: Option<&VaultMetadata>,
    assessment: Assessment,
) -> Value {
    let custom = metadata.map(|m| &m.custom);
    let get = |key: &str| custom.and_then(|c| c.get(key)).cloned();
    json!({
        "kind": kind,
        "secret": secret,
        "mount": mount,
        "path": path,
        "authority": assessment.authority,
        "phase": assessment.phase,
        "vault_version": metadata.map(|m| m.current_version),
        "last_handover": get(meta::HANDOVER_AT),
        "last_rotation": get(meta::ROTATED_AT),
        "violations": assessment.violations,
    })
}

/// Every path under the mount that carries secops provenance, skipping secops's own state.
async fn provenance_paths(ctx: &Context, mount: &str) -> Result<Vec<(String, VaultMetadata)>> {
    let mut folders = vec![String::new()];
    let mut leaves = Vec::new();
    while let Some(folder) = folders.pop() {
        for key in ctx.vault.list(mount, &folder).await? {
            let full = format!("{folder}{key}");
            if full == format!("{RESERVED_PREFIX}/") {
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

fn render_table(rows: &[Value]) -> String {
    let header = [
        "SECRET",
        "VAULT PATH",
        "AUTHORITY",
        "PHASE",
        "VERSION",
        "VIOLATIONS",
    ];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            let violations: Vec<String> = r["violations"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| v["kind"].as_str().unwrap_or("").to_string())
                .collect();
            [
                r["secret"].as_str().unwrap_or("-").to_string(),
                match (
                    r["mount"].as_str(),
                    r["path"].as_str().filter(|p| !p.is_empty()),
                ) {
                    (Some(mount), Some(path)) => format!("{mount}/{path}"),
                    _ => "-".to_string(), // no valid path: say so, not "secret/"
                },
                r["authority"].as_str().unwrap_or("").to_string(),
                r["phase"].as_str().unwrap_or("").to_string(),
                r["vault_version"]
                    .as_u64()
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
    let line = |values: Vec<&str>| {
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
    let mut out = line(header.to_vec());
    for c in &cells {
        out.push_str(&line(c.iter().map(String::as_str).collect()));
    }
    out
}

pub async fn run(
    scope: &ScopeArgs,
    grace: Duration,
    output: Option<StatusFormat>,
    ctx: &Context,
) -> Result<Report> {
    let kube = ctx.kube()?;
    let mount = ctx.settings.kv_mount.clone();
    let namespaces = ctx.namespaces(scope);
    let mut bootstrap: Vec<SourceSecret> = Vec::new();
    let mut internal: Vec<SourceSecret> = Vec::new();
    let internal_selector = format!("{}={}", names::CLASS_LABEL, names::CLASS_INTERNAL);
    for namespace in &namespaces {
        bootstrap.extend(
            kube.list_secrets(namespace.as_deref(), &bootstrap_selector(None))
                .await?,
        );
        internal.extend(
            kube.list_secrets(namespace.as_deref(), &internal_selector)
                .await?,
        );
    }
    let key = ctx.vault.existing_fingerprint_key(&mount).await?;
    let now = jiff::Timestamp::now().as_second();
    let grace = grace.as_secs() as i64;
    let sources: Vec<(&str, &SourceSecret)> = bootstrap
        .iter()
        .map(|s| ("bootstrap", s))
        .chain(internal.iter().map(|s| ("internal", s)))
        .collect();
    let seen: BTreeSet<(String, String)> = sources
        .iter()
        .map(|(_, s)| (s.reference.namespace.clone(), s.reference.name.clone()))
        .collect();
    let mut rows: Vec<Value> = stream::iter(sources)
        .map(|(kind, secret)| {
            let key = key.as_ref();
            let mount = mount.clone();
            async move {
                let current = key.map(|k| k.fingerprint(&secret.data));
                let target = match secret.target(&mount, &ctx.settings.allowed, None) {
                    Ok(target) => target,
                    Err(error) => {
                        let assessment = Assessment {
                            authority: crate::domain::authority::Authority::Git,
                            phase: format!("invalid: {error}"),
                            violations: Vec::new(),
                        };
                        return Ok(row(
                            kind,
                            Some(secret.reference.to_string()),
                            &mount,
                            "",
                            None,
                            assessment,
                        ));
                    }
                };
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
                    });
                let assessment = match kind {
                    "bootstrap" => {
                        assess_bootstrap(secret, facts.as_ref(), current.as_ref(), now, grace)
                    }
                    _ => assess_internal(secret, facts.as_ref(), current.as_ref()),
                };
                Ok(row(
                    kind,
                    Some(secret.reference.to_string()),
                    &target.mount,
                    &target.path,
                    metadata.as_ref(),
                    assessment,
                ))
            }
        })
        .buffered(READ_CONCURRENCY)
        .collect::<Vec<Result<Value>>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let in_scope = |namespace: &str| {
        namespaces
            .iter()
            .any(|n| n.as_deref().is_none_or(|n| n == namespace))
    };
    for (path, metadata) in provenance_paths(ctx, &mount).await? {
        let Some(provenance) = Provenance::from_metadata(&metadata.custom) else {
            continue;
        };
        let reference = match &provenance.origin {
            Origin::Bootstrap(r) | Origin::Push(r) => r.clone(),
            Origin::Other(_) => continue,
        };
        if !in_scope(&reference.namespace)
            || seen.contains(&(reference.namespace.clone(), reference.name.clone()))
        {
            continue;
        }
        // Listed by label above only if still labelled; look the origin up by name too.
        if kube.get_secret(&reference).await?.is_some() {
            continue;
        }
        let assessment = assess_orphan(&provenance, &metadata.custom, metadata.current_version);
        rows.push(row(
            "vault",
            Some(reference.to_string()),
            &mount,
            &path,
            Some(&metadata),
            assessment,
        ));
    }
    let violations: usize = rows
        .iter()
        .map(|r| r["violations"].as_array().map_or(0, Vec::len))
        .sum();
    let exit_code = if violations > 0 {
        exit::REFUSED
    } else {
        exit::OK
    };
    let document = json!({
        "command": "status",
        "outcome": if violations > 0 { "violations" } else { "clean" },
        "total": rows.len(),
        "violations": violations,
        "rows": rows,
        "exit_code": exit_code,
    });
    let as_table = match output {
        Some(format) => format == StatusFormat::Table,
        None => std::io::stdout().is_terminal(),
    };
    let mut report = Report::new(document).with_exit_code(exit_code);
    if as_table {
        report.text = Some(render_table(
            report.document["rows"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[]),
        ));
    }
    Ok(report)
}
