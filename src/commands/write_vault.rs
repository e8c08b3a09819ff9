//! `write-vault`: copy ONE bootstrap Secret into Vault (the handover write).

use serde_json::json;

use super::steps::{announce_handover, write_to_vault};
use super::Context;
use crate::domain::SecretRef;
use crate::error::{Error, Result};
use crate::output::Report;

pub async fn run(secret: &str, expect_uid: Option<&str>, ctx: &Context) -> Result<Report> {
    let reference = SecretRef::parse(secret)?;
    // Re-read the Secret: a plan made minutes ago may be stale.
    let source = ctx
        .kube()?
        .get_secret(&reference)
        .await?
        .ok_or_else(|| Error::NotFound {
            what: format!("Secret {reference}"),
        })?;
    source.require_uid(expect_uid)?;
    let target = source.target(&ctx.settings.kv_mount, &ctx.settings.allowed, None)?;
    let key = ctx.fingerprint_key().await?;
    let handed = write_to_vault(ctx, &key, &source, target).await?;
    announce_handover(ctx, &reference, &source.uid, &handed).await?;
    Ok(Report::new(json!({
        "command": "write-vault",
        "outcome": handed.outcome,
        "namespace": reference.namespace,
        "name": reference.name,
        "uid": source.uid,
        "mount": handed.target.mount,
        "path": handed.target.path,
        "version": handed.version,
        "fingerprint": handed.fingerprint,
        "keys": source.data.keys(),
        "dry_run": ctx.settings.dry_run,
    })))
}
