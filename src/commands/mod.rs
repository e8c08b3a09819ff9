//! One module per step command, each `run(&Plan, &Context) -> Result<Report>` over a plan
//! that `cli` validated before any client was built.

pub mod handover;
pub mod handover_protocol;
pub mod mark_consumed;
pub mod ownership;
pub mod pages;
pub mod push_secret;
pub mod read_bootstrap;
pub mod recreated;
pub mod rotate;
pub mod status;
pub mod vault_setup;
pub mod write_vault;

use std::collections::BTreeSet;
use std::sync::Mutex;

use crate::domain::fingerprint::FingerprintKey;
use crate::domain::path::AllowedPaths;
use crate::domain::{ClusterName, Scope};
use crate::error::{Error, Result};
use crate::kube::{Kube, KubeSettings};
use crate::output::Report;
use crate::retry::RetryPolicy;
use crate::vault::{KvMount, Vault, VaultSettings};

/// What to run, with every argument already typed and checked.
pub enum CommandPlan {
    ReadBootstrap(read_bootstrap::Plan),
    WriteVault(write_vault::Plan),
    MarkConsumed(mark_consumed::Plan),
    Handover(handover::Plan),
    Rotate(rotate::Plan),
    PushSecret(push_secret::Plan),
    Status(status::Plan),
    VaultSetup(vault_setup::Plan),
}

impl CommandPlan {
    /// A rotation without consumers runs where no cluster configuration exists.
    pub fn needs_kube(&self) -> bool {
        match self {
            CommandPlan::Rotate(plan) => !plan.consumers.is_empty(),
            CommandPlan::VaultSetup(plan) => plan.source.needs_kube(),
            _ => true,
        }
    }
}

/// Settings every command shares.
pub struct Settings {
    pub kv_mount: String,
    pub allowed: AllowedPaths,
    pub dry_run: bool,
    /// `--cluster-name`: whose origins this run writes and judges.
    pub cluster: Option<ClusterName>,
    /// `--path-claim-lease`, in seconds (`domain::claim`).
    pub claim_lease: i64,
}

/// The connected clients and settings a command runs with.
pub struct Context {
    pub vault: Vault,
    kube: Option<Kube>,
    pub settings: Settings,
    /// Mounts found writable, so each is checked once per process.
    writable_mounts: Mutex<BTreeSet<String>>,
}

impl Context {
    pub async fn connect(
        vault: &VaultSettings,
        kube: Option<&KubeSettings>,
        settings: Settings,
        retry: RetryPolicy,
    ) -> Result<Context> {
        let kube = match kube {
            Some(kube) => Some(Kube::connect(kube, retry).await?),
            None => None,
        };
        Ok(Context {
            vault: Vault::connect(vault, retry).await?,
            kube,
            settings,
            writable_mounts: Mutex::default(),
        })
    }

    /// Refuses, before anything is written, a mount secops cannot finish a write on: one
    /// that is not KV v2, or that requires check-and-set on metadata. A dry run writes
    /// nothing, so needs nothing of the mount.
    pub async fn require_writable(&self, mount: &str) -> Result<()> {
        if self.settings.dry_run {
            return Ok(());
        }
        let mounts = || {
            self.writable_mounts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
        };
        if mounts().contains(mount) {
            return Ok(());
        }
        let refuse = |why: &str| Err(Error::Usage(format!("Vault mount {mount:?} {why}")));
        match self.vault.kv_mount(mount).await? {
            KvMount::Usable => {}
            KvMount::NotKvV2 => return refuse("is not a KV v2 mount"),
            KvMount::MetadataCasRequired => {
                return refuse(
                    "requires check-and-set on metadata writes (metadata_cas_required); \
                     secops records provenance by patch, which HashiCorp Vault cannot guard \
                     either: turn it off for the mounts secops writes",
                )
            }
        }
        mounts().insert(mount.to_string());
        Ok(())
    }

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
        Ok(FingerprintKey::random())
    }

    pub fn kube(&self) -> Result<&Kube> {
        self.kube.as_ref().ok_or_else(|| {
            Error::Internal("this command was started without a Kubernetes client".into())
        })
    }

    /// Namespaces to list: the scope's, or the Kubernetes context's default.
    pub fn namespaces(&self, scope: &Scope) -> Result<Vec<Option<String>>> {
        Ok(scope.namespaces(self.kube()?.default_namespace()))
    }
}

/// Connects, then runs the command.
pub async fn run(invocation: crate::cli::Invocation) -> Result<Report> {
    let context = Context::connect(
        &invocation.vault,
        invocation.kube.as_ref(),
        invocation.settings,
        invocation.retry,
    )
    .await?;
    match &invocation.command {
        CommandPlan::ReadBootstrap(plan) => read_bootstrap::run(plan, &context).await,
        CommandPlan::WriteVault(plan) => write_vault::run(plan, &context).await,
        CommandPlan::MarkConsumed(plan) => mark_consumed::run(plan, &context).await,
        CommandPlan::Handover(plan) => handover::run(plan, &context).await,
        CommandPlan::Rotate(plan) => rotate::run(plan, &context).await,
        CommandPlan::PushSecret(plan) => push_secret::run(plan, &context).await,
        CommandPlan::Status(plan) => status::run(plan, &context).await,
        CommandPlan::VaultSetup(plan) => vault_setup::run(plan, &context).await,
    }
}
