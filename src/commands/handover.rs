//! `handover`: discover, write and mark every pending bootstrap Secret in scope, with
//! bounded concurrency; one bad Secret never stops the others.

use std::sync::OnceLock;

use futures::stream::{self, StreamExt as _};
use serde_json::{json, Value};

use super::steps::{announce_handover, mark, write_to_vault};
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
        let (reference, uid) = (secret.reference.clone(), secret.uid.clone());
        let marked = match mark(ctx, key, secret, &handed, mode).await {
            Ok(marked) => marked,
            Err(error) => {
                // Marking will be retried; say now that Vault already holds the data.
                announce_handover(ctx, &reference, &uid, &handed).await?;
                return Err(error);
            }
        };
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
    if let (Some(item), Value::Object(fields)) = (item.as_object_mut(), fields) {
        item.extend(fields);
    }
    item
}

/// Where the page walk stands: the namespaces still to list (`None`: all of them) and,
/// mid-namespace, that namespace with the continue token of its next page.
struct PageWalk<'a> {
    ctx: &'a Context,
    selector: String,
    shard: Option<Shard>,
    namespaces: std::vec::IntoIter<Option<String>>,
    resume: Option<(Option<String>, String)>,
    key: &'a OnceLock<FingerprintKey>,
}

impl PageWalk<'_> {
    /// The next page of Secrets in scope (and in the shard), `None` when all are listed.
    /// The fingerprint key is read with the first page that has pending work.
    async fn next_page(&mut self) -> Option<Result<Vec<SourceSecret>>> {
        let (namespace, token) = match self.resume.take() {
            Some((namespace, token)) => (namespace, Some(token)),
            None => (self.namespaces.next()?, None),
        };
        let page = async {
            let (page, next) = self
                .ctx
                .kube()?
                .list_secrets_page(namespace.as_deref(), &self.selector, token)
                .await?;
            if let Some(token) = next {
                self.resume = Some((namespace, token));
            }
            let page: Vec<SourceSecret> = page
                .into_iter()
                .filter(|s| self.shard.is_none_or(|shard| shard.contains(&s.uid)))
                .collect();
            if self.key.get().is_none() && page.iter().any(|s| !s.is_consumed()) {
                let _ = self.key.set(self.ctx.fingerprint_key().await?);
            }
            Ok(page)
        }
        .await;
        if page.is_err() {
            self.namespaces = Vec::new().into_iter(); // a failed listing ends the walk
        }
        Some(page)
    }
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
    // One key read per process, and none at all without pending work.
    let key = OnceLock::new();
    let walk = PageWalk {
        ctx,
        selector: bootstrap_selector(selector),
        shard,
        namespaces: ctx.namespaces(scope).into_iter(),
        resume: None,
        key: &key,
    };
    // Memory stays bounded by a page or two whatever the number of Secrets, and the next
    // page is listed while the last of this one are still in flight.
    let mut failure = None;
    let pages = stream::unfold(walk, |mut walk| async {
        let page = walk.next_page().await?;
        Some((page, walk))
    });
    let mut items: Vec<Value> = pages
        .flat_map(|page| {
            let secrets = match page {
                Ok(secrets) => secrets,
                Err(error) => {
                    failure = Some(error);
                    Vec::new()
                }
            };
            stream::iter(secrets)
        })
        .map(|secret| hand_over_one(ctx, key.get(), secret, mode))
        .buffer_unordered(concurrency as usize)
        .collect()
        .await;
    if let Some(error) = failure {
        return Err(error); // after the Secrets already started have finished
    }
    items.sort_by(|a, b| {
        (a["namespace"].as_str(), a["name"].as_str())
            .cmp(&(b["namespace"].as_str(), b["name"].as_str()))
    });
    let extra = json!({"mode": mode, "shard": shard.map(|s| s.to_string())});
    Ok(batch_report("handover", items, ctx.settings.dry_run, extra))
}
