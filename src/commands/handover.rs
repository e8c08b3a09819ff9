//! `handover`: discover, write and mark every pending bootstrap Secret in scope, with
//! bounded concurrency; one bad Secret never stops the others (`docs/contract.md` §6.3).

use std::sync::OnceLock;

use futures::stream::{self, StreamExt as _};
use serde::Serialize;

use super::handover_protocol::{announce_handover, mark, write_to_vault};
use super::Context;
use crate::domain::bootstrap::{combine, ConsumeMode, SourceSecret};
use crate::domain::fingerprint::{Fingerprint, FingerprintKey};
use crate::domain::names::Class;
use crate::domain::outcome::Outcome;
use crate::domain::shard::Shard;
use crate::domain::Scope;
use crate::error::{Error, Result};
use crate::output::{batch_report, HasOutcome, Item, Report, SecretIdentity};

pub struct Plan {
    pub scope: Scope,
    pub concurrency: usize,
    pub shard: Option<Shard>,
    pub mode: ConsumeMode,
    pub selector: Option<String>,
}

/// What became of one Secret. A Secret found already consumed reports only its version.
#[derive(Debug, Serialize)]
pub struct HandedOver {
    outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    written: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mount: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fingerprint: Option<Fingerprint>,
}

impl HasOutcome for HandedOver {
    fn outcome(&self) -> Outcome {
        self.outcome
    }
}

async fn hand_over_one(
    ctx: &Context,
    key: Option<&FingerprintKey>,
    secret: SourceSecret,
    mode: ConsumeMode,
) -> Result<HandedOver> {
    if secret.is_consumed() {
        return Ok(HandedOver {
            outcome: Outcome::AlreadyConsumed,
            written: None,
            mount: None,
            path: None,
            version: secret.recorded_version(),
            fingerprint: None,
        });
    }
    let target = secret.target(&ctx.settings.kv_mount, &ctx.settings.allowed, None)?;
    let key = key
        .ok_or_else(|| Error::Internal("the fingerprint key is read before pending work".into()))?;
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
    Ok(HandedOver {
        outcome: combine(handed.outcome, marked.outcome),
        written: Some(handed.outcome == Outcome::Written),
        mount: Some(handed.target.mount),
        path: Some(handed.target.path),
        version: Some(marked.version),
        fingerprint: Some(handed.fingerprint),
    })
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

#[derive(Serialize)]
struct Extra {
    mode: ConsumeMode,
    shard: Option<String>,
}

pub async fn run(plan: &Plan, ctx: &Context) -> Result<Report> {
    // One key read per process, and none at all without pending work.
    let key = OnceLock::new();
    let walk = PageWalk {
        ctx,
        selector: Class::Bootstrap.selector(plan.selector.as_deref()),
        shard: plan.shard,
        namespaces: ctx.namespaces(&plan.scope)?.into_iter(),
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
    let mut items: Vec<Item<HandedOver>> = pages
        .flat_map(|page| {
            let secrets = page.unwrap_or_else(|error| {
                failure = Some(error);
                Vec::new()
            });
            stream::iter(secrets)
        })
        .map(|secret| async {
            let identity = SecretIdentity::from(&secret);
            let result = hand_over_one(ctx, key.get(), secret, plan.mode).await;
            Item::from_result(identity, result)
        })
        .buffer_unordered(plan.concurrency)
        .collect()
        .await;
    if let Some(error) = failure {
        return Err(error); // after the Secrets already started have finished
    }
    items.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    let extra = Extra {
        mode: plan.mode,
        shard: plan.shard.map(|s| s.to_string()),
    };
    Ok(batch_report("handover", items, ctx.settings.dry_run, extra))
}
