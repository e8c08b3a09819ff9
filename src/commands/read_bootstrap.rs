//! `read-bootstrap`: discover and classify bootstrap Secrets, print the plan, and write
//! `items.json` (actionable items, or shard descriptors) for Argo `withParam`.

use futures::stream::{self, StreamExt as _};
use serde_json::{json, Value};

use super::handover::discover;
use super::Context;
use crate::cli::ScopeArgs;
use crate::domain::bootstrap::{classify, consumed_state, BootstrapState, SourceSecret, VaultView};
use crate::domain::fingerprint::{Fingerprint, FingerprintKey};
use crate::domain::provenance::Provenance;
use crate::domain::shard::Shard;
use crate::error::Result;
use crate::output::{summarize, Report};
use crate::vault::base64_keys;

/// Reads at once while classifying; each needs one or two Vault reads.
const READ_CONCURRENCY: usize = 16;

/// `current`: the key and the fingerprint of the Secret's data under it, when a key exists.
async fn vault_view(
    ctx: &Context,
    current: Option<(&FingerprintKey, &Fingerprint)>,
    secret: &SourceSecret,
    mount: &str,
    path: &str,
) -> Result<VaultView> {
    let Some(metadata) = ctx.vault.read_metadata(mount, path).await? else {
        return Ok(VaultView::Missing);
    };
    match Provenance::from_metadata(&metadata.custom) {
        Some(p) if p.is_owned_by(&secret.bootstrap_origin(), &secret.uid) => {
            Ok(VaultView::Owned { provenance: p })
        }
        Some(p) => Ok(VaultView::OwnedByOther {
            owner: format!("{} (uid {})", p.origin, p.origin_uid),
        }),
        None => {
            let Some((key, fingerprint)) = current else {
                return Ok(VaultView::Unowned {
                    data_matches: false,
                });
            };
            let held = ctx
                .vault
                .read(mount, path, None, &base64_keys(&secret.data))
                .await?;
            let data_matches = held.is_some_and(|held| key.fingerprint(&held.data) == *fingerprint);
            Ok(VaultView::Unowned { data_matches })
        }
    }
}

async fn classify_one(
    ctx: &Context,
    key: Option<&FingerprintKey>,
    secret: &SourceSecret,
) -> Result<(Value, BootstrapState)> {
    let fingerprint = key.map(|k| k.fingerprint(&secret.data));
    let mut item = json!({
        "namespace": secret.reference.namespace,
        "name": secret.reference.name,
        "uid": secret.uid,
        "resourceVersion": secret.resource_version,
        "keys": secret.data.keys(),
        "fingerprint": fingerprint,
    });
    let target = secret.target(&ctx.settings.kv_mount, &ctx.settings.allowed, None);
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
            let view = vault_view(ctx, current, secret, &target.mount, &target.path).await?;
            classify(&view, fingerprint.as_ref())
        }
    };
    if let Ok(target) = &target {
        item["mount"] = json!(target.mount);
        item["path"] = json!(target.path);
    }
    item["state"] = json!(state);
    item["reason"] = json!(reason);
    Ok((item, state))
}

pub async fn run(
    scope: &ScopeArgs,
    selector: Option<&str>,
    shards: Option<u32>,
    ctx: &Context,
) -> Result<Report> {
    let secrets = discover(ctx, scope, selector).await?;
    // Read-only: without a key, nothing has been fingerprinted yet, and none is created here.
    let key = ctx
        .vault
        .existing_fingerprint_key(&ctx.settings.kv_mount)
        .await?;
    let classified: Vec<Result<(Value, BootstrapState)>> = stream::iter(&secrets)
        .map(|s| classify_one(ctx, key.as_ref(), s))
        .buffered(READ_CONCURRENCY)
        .collect()
        .await;
    let classified: Vec<(Value, BootstrapState)> = classified.into_iter().collect::<Result<_>>()?;
    let actionable: Vec<&Value> = classified
        .iter()
        .filter(|(_, state)| state.is_actionable())
        .map(|(item, _)| item)
        .collect();
    let items: Vec<Value> = classified.iter().map(|(item, _)| item.clone()).collect();
    let (counts, _) = summarize(&items, "state");
    let plan: Value = match shards.filter(|n| *n > 0) {
        Some(count) => Value::Array(
            (0..count)
                .map(|index| {
                    let members = actionable.iter().filter(|i| Shard { index, count }.contains(i["uid"].as_str().unwrap_or(""))).count();
                    json!({"shard": format!("{index}/{count}"), "index": index, "count": count, "items": members})
                })
                .collect(),
        ),
        None => Value::Array(actionable.iter().map(|i| (*i).clone()).collect()),
    };
    let document = json!({
        "command": "read-bootstrap",
        "outcome": "planned",
        "total": classified.len(),
        "actionable": actionable.len(),
        "counts": counts,
        "items": items,
    });
    Ok(Report::new(document).with_file(
        "items.json",
        serde_json::to_vec(&plan).expect("JSON values serialize"),
    ))
}
