//! `read-bootstrap`: discover and classify bootstrap Secrets, print the plan, and write
//! `items.json` (actionable items, or shard descriptors) for Argo `withParam`.

use futures::{StreamExt as _, TryStreamExt as _};
use serde::Serialize;

use super::{pages, Context};
use crate::domain::bootstrap::{
    classify, consumed_state, BootstrapState, SourceSecret, Target, VaultView,
};
use crate::domain::fingerprint::{Fingerprint, FingerprintKey};
use crate::domain::names::Class;
use crate::domain::outcome::Outcome;
use crate::domain::provenance::{Ownership, Provenance};
use crate::domain::readopt::judge_recreated;
use crate::domain::shard::Shard;
use crate::domain::Scope;
use crate::error::Result;
use crate::output::{tally, Report};
use crate::vault::base64_keys;

pub struct Plan {
    pub scope: Scope,
    pub selector: Option<String>,
    /// Shard descriptors instead of one item per Secret.
    pub shards: Option<u32>,
}

/// Reads at once while classifying; each needs one or two Vault reads.
const READ_CONCURRENCY: usize = 16;

/// One Secret of the plan, as Argo's `withParam` hands it to the steps.
#[derive(Debug, Clone, Serialize)]
struct PlanItem {
    namespace: String,
    name: String,
    uid: String,
    #[serde(rename = "resourceVersion")]
    resource_version: String,
    keys: Vec<String>,
    fingerprint: Option<Fingerprint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mount: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    state: BootstrapState,
    reason: String,
}

#[derive(Serialize)]
struct ShardItem {
    shard: String,
    index: u32,
    count: u32,
    items: usize,
}

#[derive(Serialize)]
struct PlanDocument<'a> {
    command: &'static str,
    outcome: Outcome,
    total: usize,
    actionable: usize,
    counts: std::collections::BTreeMap<BootstrapState, usize>,
    items: &'a [PlanItem],
}

/// `current`: the key and the fingerprint of the Secret's data under it, when a key exists.
async fn vault_view(
    ctx: &Context,
    current: Option<(&FingerprintKey, &Fingerprint)>,
    secret: &SourceSecret,
    target: &Target,
) -> Result<VaultView> {
    let Some(metadata) = ctx.vault.read_metadata(&target.mount, &target.path).await? else {
        return Ok(VaultView::Missing);
    };
    let provenance = Provenance::from_metadata(&metadata.custom);
    let origin = secret.bootstrap_origin();
    let fingerprint = current.map(|(_, fingerprint)| fingerprint);
    if let Some(recreation) =
        judge_recreated(provenance.as_ref(), &origin, &secret.uid, fingerprint)
    {
        return Ok(VaultView::Recreated {
            recreation,
            marked_stale: secret.is_stale(),
        });
    }
    match Ownership::of(provenance.as_ref(), &origin, &secret.uid) {
        Ownership::Ours(p) => Ok(VaultView::Owned {
            provenance: p.clone(),
        }),
        Ownership::Theirs { owner } => Ok(VaultView::OwnedByOther { owner }),
        Ownership::Unowned => {
            let Some((key, fingerprint)) = current else {
                return Ok(VaultView::Unowned {
                    data_matches: false,
                });
            };
            let held = ctx
                .vault
                .read(
                    &target.mount,
                    &target.path,
                    None,
                    &base64_keys(&secret.data),
                )
                .await?;
            let data_matches =
                held.is_some_and(|held| key.fingerprint(target, &held.data) == *fingerprint);
            Ok(VaultView::Unowned { data_matches })
        }
    }
}

async fn classify_one(
    ctx: &Context,
    key: Option<&FingerprintKey>,
    secret: &SourceSecret,
) -> Result<PlanItem> {
    let target = secret.target(&ctx.settings.kv_mount, &ctx.settings.allowed, None);
    // A Secret without a valid target gets no fingerprint: fingerprints are bound to the
    // target they are recorded for, and printing one for any path would be a guessing oracle.
    let fingerprint = key
        .zip(target.as_ref().ok())
        .map(|(k, target)| k.fingerprint(target, &secret.data));
    let (state, reason) = match &target {
        Err(error) => (BootstrapState::Invalid, error.to_string()),
        Ok(_) if secret.data.is_empty() && !secret.is_consumed() => (
            BootstrapState::Invalid,
            "the Secret has no data".to_string(),
        ),
        Ok(_) if secret.is_consumed() => match &fingerprint {
            Some(fp) => consumed_state(secret, fp),
            None => (
                BootstrapState::Consumed,
                "consumed; Vault is the authority".to_string(),
            ),
        },
        Ok(target) => {
            let current = key.zip(fingerprint.as_ref());
            match vault_view(ctx, current, secret, target).await {
                Ok(view) => classify(&view, fingerprint.as_ref()),
                // A temporary failure is the run's (Argo retries it); a refusal is the item's.
                Err(error) if error.is_transient() => return Err(error),
                Err(error) => (BootstrapState::of_refusal(&error), error.to_string()),
            }
        }
    };
    let (mount, path) = match target {
        Ok(target) => (Some(target.mount), Some(target.path)),
        Err(_) => (None, None),
    };
    Ok(PlanItem {
        namespace: secret.reference.namespace.clone(),
        name: secret.reference.name.clone(),
        uid: secret.uid.clone(),
        resource_version: secret.resource_version.clone(),
        keys: secret.data.keys(),
        fingerprint,
        mount,
        path,
        state,
        reason,
    })
}

pub async fn run(plan: &Plan, ctx: &Context) -> Result<Report> {
    // Read-only: without a key, nothing has been fingerprinted yet, and none is created here.
    let key = ctx
        .vault
        .existing_fingerprint_key(&ctx.settings.kv_mount)
        .await?;
    let items: Vec<PlanItem> =
        pages::headers(ctx, Class::Bootstrap, &plan.scope, plan.selector.as_deref())?
            .map(|header| async {
                // Each Secret's data is fetched only to fingerprint it, then dropped.
                let Some(secret) = ctx.kube()?.get_secret(&header?.reference).await? else {
                    return Ok(None); // gone since it was listed
                };
                classify_one(ctx, key.as_ref(), &secret).await.map(Some)
            })
            .buffered(READ_CONCURRENCY)
            .try_filter_map(|item| std::future::ready(Ok(item)))
            .try_collect()
            .await?;
    let actionable: Vec<&PlanItem> = items.iter().filter(|i| i.state.is_actionable()).collect();
    let withparam = match plan.shards {
        Some(count) => serde_json::to_vec(
            &(0..count)
                .map(|index| {
                    let shard = Shard { index, count };
                    ShardItem {
                        shard: shard.to_string(),
                        index,
                        count,
                        items: actionable.iter().filter(|i| shard.contains(&i.uid)).count(),
                    }
                })
                .collect::<Vec<_>>(),
        ),
        None => serde_json::to_vec(&actionable),
    }
    .expect("plan items serialize");
    let document = PlanDocument {
        command: "read-bootstrap",
        outcome: Outcome::Planned,
        total: items.len(),
        actionable: actionable.len(),
        counts: tally(items.iter().map(|i| i.state)),
        items: &items,
    };
    Ok(Report::new(&document).with_file("items.json", withparam))
}
