//! `handover`: discover, write and mark every pending bootstrap Secret in scope, with
//! bounded concurrency; one bad Secret never stops the others (`docs/contract.md` §6.3).

use futures::StreamExt as _;
use serde::Serialize;
use tokio::sync::OnceCell;

use super::handover_protocol::{announce_handover, mark, strip_again, write_to_vault};
use super::{pages, Context};
use crate::domain::bootstrap::{combine, ConsumeMode, SecretHeader, SourceSecret};
use crate::domain::fingerprint::{Fingerprint, FingerprintKey};
use crate::domain::names::Class;
use crate::domain::outcome::Outcome;
use crate::domain::shard::Shard;
use crate::domain::Scope;
use crate::error::Result;
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

/// A Secret found already consumed reports only its version.
fn already_consumed(version: Option<u64>) -> HandedOver {
    HandedOver {
        outcome: Outcome::AlreadyConsumed,
        written: None,
        mount: None,
        path: None,
        version,
        fingerprint: None,
    }
}

async fn hand_over_one(
    ctx: &Context,
    key: &OnceCell<FingerprintKey>,
    header: SecretHeader,
    mode: ConsumeMode,
) -> Option<Item<HandedOver>> {
    // A tombstone is fetched all the same: only its data tells whether a sync refilled it.
    if header.is_consumed() && !header.is_tombstone() {
        let consumed = already_consumed(header.recorded_version());
        return Some(Item::from_result((&header).into(), Ok(consumed)));
    }
    // The data is fetched only now, so the batch holds a few Secrets' values at a time.
    let secret = match ctx.kube() {
        Ok(kube) => kube.get_secret(&header.reference).await,
        Err(error) => Err(error),
    };
    let secret = match secret {
        Ok(Some(secret)) => secret,
        Ok(None) => return None, // gone since it was listed: nothing left to hand over
        Err(error) => return Some(Item::from_result((&header).into(), Err(error))),
    };
    let identity = SecretIdentity::from(&secret);
    if secret.is_consumed() && !secret.is_refilled_tombstone() {
        let consumed = already_consumed(secret.recorded_version());
        return Some(Item::from_result(identity, Ok(consumed)));
    }
    let result = async {
        // One key read per process, and none at all without pending work.
        let key = key.get_or_try_init(|| ctx.fingerprint_key()).await?;
        hand_over(ctx, key, secret, mode).await
    }
    .await;
    Some(Item::from_result(identity, result))
}

async fn hand_over(
    ctx: &Context,
    key: &FingerprintKey,
    secret: SourceSecret,
    mode: ConsumeMode,
) -> Result<HandedOver> {
    if secret.is_refilled_tombstone() {
        let target = secret.target(&ctx.settings.kv_mount, &ctx.settings.allowed, None)?;
        let (handed, marked) = strip_again(ctx, key, secret, target).await?;
        return Ok(HandedOver {
            outcome: marked.outcome,
            written: Some(false),
            mount: Some(handed.target.mount),
            path: Some(handed.target.path),
            version: Some(marked.version),
            fingerprint: Some(handed.fingerprint),
        });
    }
    let target = secret.target(&ctx.settings.kv_mount, &ctx.settings.allowed, None)?;
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

#[derive(Serialize)]
struct Extra {
    mode: ConsumeMode,
    shard: Option<String>,
}

pub async fn run(plan: &Plan, ctx: &Context) -> Result<Report> {
    let key = OnceCell::new();
    let headers = pages::headers(ctx, Class::Bootstrap, &plan.scope, plan.selector.as_deref())?;
    // Memory stays bounded by a page of headers and `concurrency` Secrets, and the next page
    // is listed while the last of this one are still in flight.
    let mut failure = None;
    let mut items: Vec<Item<HandedOver>> = headers
        .filter_map(|header| {
            let header = header.map_err(|error| failure = Some(error)).ok();
            std::future::ready(header)
        })
        .filter(|header| {
            let in_shard = plan.shard.is_none_or(|shard| shard.contains(&header.uid));
            std::future::ready(in_shard)
        })
        .map(|header| hand_over_one(ctx, &key, header, plan.mode))
        .buffer_unordered(plan.concurrency)
        .filter_map(std::future::ready)
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
