//! `write-vault`: copy ONE bootstrap Secret into Vault (the handover write, `docs/contract.md`
//! §6.1).

use serde::Serialize;

use super::handover_protocol::{announce_handover, handed_over_before, write_to_vault};
use super::Context;
use crate::domain::fingerprint::Fingerprint;
use crate::domain::names::Class;
use crate::domain::outcome::Outcome;
use crate::domain::SecretRef;
use crate::error::{Error, Result};
use crate::output::{Report, SecretIdentity};

pub struct Plan {
    pub secret: SecretRef,
    /// Refuse unless the Secret still has this uid (from the plan that named it).
    pub expect_uid: Option<String>,
}

#[derive(Serialize)]
struct Written<'a> {
    command: &'static str,
    outcome: Outcome,
    #[serde(flatten)]
    secret: SecretIdentity,
    mount: &'a str,
    path: &'a str,
    version: u64,
    fingerprint: &'a Fingerprint,
    keys: Vec<String>,
    dry_run: bool,
}

pub async fn run(plan: &Plan, ctx: &Context) -> Result<Report> {
    // Re-read the Secret: a plan made minutes ago may be stale.
    let source = ctx
        .kube()?
        .get_secret(&plan.secret)
        .await?
        .ok_or_else(|| Error::NotFound {
            what: format!("Secret {}", plan.secret),
        })?;
    source.require_class(Class::Bootstrap)?;
    source.require_uid(plan.expect_uid.as_deref())?;
    let target = source.target(&ctx.settings.kv_mount, &ctx.settings.allowed, None)?;
    let key = ctx.fingerprint_key().await?;
    let handed = match source.is_consumed() {
        // Stripped or not, a consumed Secret was handed over: Vault's provenance says when.
        true => handed_over_before(ctx, &key, &source, target).await?,
        false => write_to_vault(ctx, &key, &source, target).await?,
    };
    announce_handover(ctx, &plan.secret, &source.uid, &handed).await?;
    Ok(Report::new(&Written {
        command: "write-vault",
        outcome: handed.outcome,
        secret: (&source).into(),
        mount: &handed.target.mount,
        path: &handed.target.path,
        version: handed.version,
        fingerprint: &handed.fingerprint,
        keys: source.data.keys(),
        dry_run: ctx.settings.dry_run,
    }))
}
