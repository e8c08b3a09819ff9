//! `handover`: discover, write and mark every pending bootstrap Secret in scope, with
//! bounded concurrency; one bad Secret never stops the others.

use futures::stream::{self, StreamExt as _};
use serde_json::{json, Value};

use super::steps::{mark, write_to_vault};
use super::Context;
use crate::cli::{ConsumeMode, ScopeArgs};
use crate::domain::bootstrap::SourceSecret;
use crate::domain::fingerprint::FingerprintKey;
use crate::domain::names;
use crate::domain::shard::Shard;
use crate::error::{Error, Result};
use crate::output::{batch_report, Report};

pub fn bootstrap_selector(extra: Option<&str>) -> String {
    let base = format!("{}={}", names::CLASS_LABEL, names::CLASS_BOOTSTRAP);
    match extra.map(str::trim).filter(|s| !s.is_empty()) {
        Some(extra) => format!("{base},{extra}"),
        None => base,
    }
}

/// Every bootstrap Secret in scope, in a stable order.
pub async fn discover(
    ctx: &Context,
    scope: &ScopeArgs,
    selector: Option<&str>,
) -> Result<Vec<SourceSecret>> {
    let selector = bootstrap_selector(selector);
    let mut secrets = Vec::new();
    for namespace in ctx.namespaces(scope) {
        secrets.extend(
            ctx.kube()?
                .list_secrets(namespace.as_deref(), &selector)
                .await?,
        );
    }
    secrets.sort_by(|a, b| a.reference.cmp(&b.reference));
    Ok(secrets)
}

async fn hand_over_one(
    ctx: &Context,
    key: Option<&FingerprintKey>,
    secret: SourceSecret,
    mode: ConsumeMode,
) -> Value {
    let mut item = json!({
        "namespace": secret.reference.namespace,
        "name": secret.reference.name,
        "uid": secret.uid,
    });
    let result: Result<Value> = async {
        if secret.is_consumed() {
            let version: Option<u64> = secret
                .annotations
                .get(names::VAULT_VERSION)
                .and_then(|v| v.parse().ok());
            return Ok(json!({"outcome": "already-consumed", "version": version}));
        }
        let target = secret.target(&ctx.settings.kv_mount, &ctx.settings.allowed, None)?;
        let key = key.ok_or_else(|| {
            Error::Internal("the fingerprint key is read before pending work".into())
        })?;
        let handed = write_to_vault(ctx, key, &secret, target).await?;
        let marked = mark(ctx, key, secret, &handed, mode).await?;
        let outcome = match (handed.outcome, marked.outcome) {
            (_, "planned") | ("planned", _) => "planned",
            (_, "already-consumed") => "already-consumed",
            _ => "consumed",
        };
        Ok(json!({
            "outcome": outcome,
            "written": handed.outcome == "written",
            "mount": handed.target.mount,
            "path": handed.target.path,
            "version": marked.version,
            "fingerprint": handed.fingerprint,
        }))
    }
    .await;
    let fields = match result {
        Ok(fields) => fields,
        Err(error) => {
            tracing::warn!(secret = %format!("{}/{}", item["namespace"].as_str().unwrap_or(""), item["name"].as_str().unwrap_or("")), %error, "handover failed");
            json!({"outcome": "failed", "exit_code": error.exit_code(), "error": {"kind": error.kind(), "message": error.to_string()}})
        }
    };
    if let (Some(item), Some(fields)) = (item.as_object_mut(), fields.as_object()) {
        item.extend(fields.clone());
    }
    item
}

pub async fn run(
    scope: &ScopeArgs,
    concurrency: u32,
    shard: Option<&str>,
    mode: ConsumeMode,
    selector: Option<&str>,
    ctx: &Context,
) -> Result<Report> {
    let shard = shard.map(Shard::parse).transpose()?;
    let selector = bootstrap_selector(selector);
    // One key read per process, and none at all without pending work.
    let mut key: Option<FingerprintKey> = None;
    let mut items: Vec<Value> = Vec::new();
    for namespace in ctx.namespaces(scope) {
        let mut continue_token = None;
        loop {
            // Page by page: memory stays bounded by a page, whatever the number of Secrets.
            let (page, next) = ctx
                .kube()?
                .list_secrets_page(namespace.as_deref(), &selector, continue_token)
                .await?;
            let page: Vec<SourceSecret> = page
                .into_iter()
                .filter(|s| shard.is_none_or(|shard| shard.contains(&s.uid)))
                .collect();
            if key.is_none() && page.iter().any(|s| !s.is_consumed()) {
                key = Some(ctx.fingerprint_key().await?);
            }
            let done: Vec<Value> = stream::iter(page)
                .map(|secret| hand_over_one(ctx, key.as_ref(), secret, mode))
                .buffer_unordered(concurrency as usize)
                .collect()
                .await;
            items.extend(done);
            match next {
                Some(token) => continue_token = Some(token),
                None => break,
            }
        }
    }
    items.sort_by(|a, b| {
        (a["namespace"].as_str(), a["name"].as_str())
            .cmp(&(b["namespace"].as_str(), b["name"].as_str()))
    });
    let extra = json!({"mode": mode, "shard": shard.map(|s| s.to_string())});
    Ok(batch_report("handover", items, ctx.settings.dry_run, extra))
}
