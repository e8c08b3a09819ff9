//! One module per step command; each exposes `run(args, &Context) -> Result<Report>`.

pub mod handover;
pub mod mark_consumed;
pub mod push_secret;
pub mod read_bootstrap;
pub mod rotate;
pub mod status;
pub mod steps;
pub mod write_vault;

use crate::cli::{Cli, Command, ScopeArgs};
use crate::domain::fingerprint::FingerprintKey;
use crate::domain::path::AllowedPaths;
use crate::error::{Error, Result};
use crate::kube::Kube;
use crate::output::Report;
use crate::retry::RetryPolicy;
use crate::vault::{Vault, VaultSettings};

/// Settings every command shares, validated before any connection.
pub struct Settings {
    pub kv_mount: String,
    pub allowed: AllowedPaths,
    pub dry_run: bool,
}

/// The connected clients and settings a command runs with.
pub struct Context {
    pub vault: Vault,
    /// Absent when the command needs no Kubernetes access (a rotation without consumers),
    /// so that it runs where no cluster configuration exists.
    pub kube: Option<Kube>,
    pub settings: Settings,
}

impl Context {
    /// The fingerprint key. A dry run never creates it: without one it fingerprints with a
    /// throwaway key, so its decisions hold but its fingerprints match nothing stored.
    pub async fn fingerprint_key(&self) -> Result<FingerprintKey> {
        if !self.settings.dry_run {
            return self.vault.fingerprint_key(&self.settings.kv_mount).await;
        }
        if let Some(key) = self
            .vault
            .existing_fingerprint_key(&self.settings.kv_mount)
            .await?
        {
            return Ok(key);
        }
        tracing::warn!(
            "dry run without a fingerprint key in Vault: fingerprints use a throwaway key"
        );
        let mut bytes = vec![0u8; FingerprintKey::LEN];
        rand::fill(&mut bytes[..]);
        Ok(FingerprintKey::new(bytes).expect("32 bytes"))
    }

    pub fn kube(&self) -> Result<&Kube> {
        self.kube.as_ref().ok_or_else(|| {
            Error::Internal("this command was started without a Kubernetes client".into())
        })
    }

    /// Namespaces in scope: the given ones, every one (`None`), or the context's default.
    pub fn namespaces(&self, scope: &ScopeArgs) -> Vec<Option<String>> {
        if scope.all_namespaces {
            return vec![None];
        }
        let mut namespaces: Vec<String> = scope
            .namespaces
            .iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        if namespaces.is_empty() {
            let default = self
                .kube
                .as_ref()
                .map(Kube::default_namespace)
                .unwrap_or("default");
            namespaces.push(default.to_string());
        }
        namespaces.sort();
        namespaces.dedup();
        namespaces.into_iter().map(Some).collect()
    }
}

fn validate_scope(scope: &ScopeArgs) -> Result<()> {
    for namespace in &scope.namespaces {
        if !crate::domain::is_dns_subdomain(namespace.trim()) {
            return Err(Error::Usage(format!(
                "--namespace {namespace:?} is not a valid namespace name"
            )));
        }
    }
    Ok(())
}

/// Parses and validates everything, connects, then runs the command.
pub async fn run(cli: Cli) -> Result<Report> {
    let settings = Settings {
        kv_mount: cli.policy.kv_mount.clone(),
        allowed: AllowedPaths::new(cli.policy.allowed_paths.clone())?
            .with_mounts(cli.policy.allowed_mounts.clone())?,
        dry_run: cli.policy.dry_run,
    };
    crate::domain::path::validate_mount(&settings.kv_mount)
        .map_err(|reason| Error::Usage(format!("--kv-mount: {reason}")))?;
    match &cli.command {
        Command::ReadBootstrap { scope, .. }
        | Command::Handover { scope, .. }
        | Command::PushSecret { scope, .. }
        | Command::Status { scope, .. } => validate_scope(scope)?,
        _ => {}
    }
    let retry = RetryPolicy::new(cli.retry.max_attempts);
    let vault_settings = VaultSettings::from_args(&cli.vault, cli.retry.timeout)?;
    let needs_kube = match &cli.command {
        Command::Rotate(args) => args
            .refresh
            .iter()
            .chain(&args.restart)
            .any(|t| !t.trim().is_empty()),
        _ => true,
    };
    let kube = match needs_kube {
        true => Some(Kube::connect(&cli.kube, cli.retry.timeout, retry).await?),
        false => None,
    };
    let vault = Vault::connect(&vault_settings, retry).await?;
    let context = Context {
        vault,
        kube,
        settings,
    };
    match cli.command {
        Command::ReadBootstrap {
            scope,
            selector,
            shards,
        } => read_bootstrap::run(&scope, selector.as_deref(), shards, &context).await,
        Command::WriteVault { secret, expect_uid } => {
            write_vault::run(&secret, expect_uid.as_deref(), &context).await
        }
        Command::MarkConsumed {
            secret,
            expect_uid,
            mode,
        } => mark_consumed::run(&secret, expect_uid.as_deref(), mode, &context).await,
        Command::Handover {
            scope,
            concurrency,
            shard,
            mode,
            selector,
        } => {
            handover::run(
                &scope,
                concurrency,
                shard.as_deref(),
                mode,
                selector.as_deref(),
                &context,
            )
            .await
        }
        Command::Rotate(args) => rotate::run(&args, &context).await,
        Command::PushSecret {
            secret,
            path,
            scope,
        } => push_secret::run(secret.as_deref(), path.as_deref(), &scope, &context).await,
        Command::Status {
            scope,
            grace,
            output,
        } => status::run(&scope, grace, output, &context).await,
    }
}
