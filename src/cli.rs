//! The command line in two stages, as ripgrep does it: clap parses flags into plain data
//! (`Cli`), then [`Cli::validate`] turns every flag into typed values (an [`Invocation`])
//! before any client is built, so a usage error exits 2 and never reaches the network.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{BoolishValueParser, PossibleValuesParser, TypedValueParser as _};
use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::{ExposeSecret as _, SecretString};

use crate::commands::{self, CommandPlan, Settings};
use crate::domain::bootstrap::ConsumeMode;
use crate::domain::consumers::{parse_refresh, parse_restart};
use crate::domain::generate::{Generator, PasswordSpec, Recipe, DEFAULT_SYMBOLS};
use crate::domain::path::{validate_mount, validate_path, AllowedPaths};
use crate::domain::rotation::validate_rotation_id;
use crate::domain::shard::Shard;
use crate::domain::{is_dns_subdomain, ClusterName, Scope, SecretRef};
use crate::error::{Error, Result};
use crate::kube::KubeSettings;
use crate::logging::LogFormat;
use crate::retry::RetryPolicy;
use crate::vault::{Login, VaultSettings};

const EXIT_CODES: &str = "\
EXIT CODES:
  0   done, including \"already done\"
  2   usage or configuration error, invalid annotation or path
  3   refused: path not allowed, authority conflict, drift
  4   named object not found
  75  temporary (network, timeout, 429/5xx, sealed Vault, lost race): retry
  1   internal error (a bug)

Secrets are read from files or the environment, never from the command line:
VAULT_TOKEN or --vault-token-file; VAULT_ROLE_ID and --vault-secret-id-file for AppRole.
Every flag can also be set by the environment variable shown in its help.";

/// Hands Kubernetes bootstrap Secrets over to Vault exactly once, then keeps Vault the
/// single authority (RFC-SECOPS-0001).
#[derive(Debug, Parser)]
#[command(name = "secops", version, after_long_help = EXIT_CODES, max_term_width = 100)]
#[command(
    long_about = "Hands Kubernetes bootstrap Secrets over to Vault exactly once, then keeps Vault \
the single authority (RFC-SECOPS-0001).\n\nEach command is one idempotent step: run it again, or after a \
crash at any point, and it converges without writing a second Vault version for the same intent. \
The result is one JSON document on stdout; logs and audit events go to stderr."
)]
pub struct Cli {
    #[command(flatten)]
    pub vault: VaultArgs,
    #[command(flatten)]
    pub kube: KubeArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub retry: RetryArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMethod {
    Token,
    Kubernetes,
    Approle,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Vault")]
pub struct VaultArgs {
    /// Vault or OpenBao address, e.g. https://vault.vault.svc:8200
    #[arg(long, env = "VAULT_ADDR", global = true)]
    pub vault_addr: Option<String>,
    /// PEM file of the CA that signed Vault's certificate
    #[arg(long, env = "VAULT_CACERT", global = true)]
    pub vault_cacert: Option<PathBuf>,
    /// Vault Enterprise namespace
    #[arg(long, env = "VAULT_NAMESPACE", global = true)]
    pub vault_namespace: Option<String>,
    /// Do not verify Vault's TLS certificate (warns on every run)
    #[arg(long, env = "VAULT_SKIP_VERIFY", global = true, value_parser = BoolishValueParser::new())]
    pub vault_skip_verify: bool,
    /// Login method [default: token when a token is given, else kubernetes]
    #[arg(long, value_enum, env = "SECOPS_VAULT_AUTH", global = true)]
    pub vault_auth: Option<AuthMethod>,
    /// File holding a Vault token (else VAULT_TOKEN)
    #[arg(long, env = "VAULT_TOKEN_FILE", global = true)]
    pub vault_token_file: Option<PathBuf>,
    /// Vault role for kubernetes login
    #[arg(long, env = "SECOPS_VAULT_ROLE", global = true)]
    pub vault_role: Option<String>,
    /// Mount of the auth method [default: kubernetes, or approle]
    #[arg(long, env = "SECOPS_VAULT_AUTH_MOUNT", global = true)]
    pub vault_auth_mount: Option<String>,
    /// Service-account token for kubernetes login
    #[arg(
        long,
        env = "SECOPS_VAULT_JWT_FILE",
        global = true,
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )]
    pub vault_jwt_file: PathBuf,
    /// AppRole role id (not a secret)
    #[arg(long, env = "VAULT_ROLE_ID", global = true)]
    pub vault_role_id: Option<String>,
    /// File holding the AppRole secret id
    #[arg(long, env = "SECOPS_VAULT_SECRET_ID_FILE", global = true)]
    pub vault_secret_id_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Kubernetes")]
pub struct KubeArgs {
    /// Kubeconfig file [default: in-cluster config, else KUBECONFIG or ~/.kube/config]
    #[arg(long, env = "SECOPS_KUBECONFIG", global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use
    #[arg(long, env = "SECOPS_KUBE_CONTEXT", global = true)]
    pub context: Option<String>,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Policy")]
pub struct PolicyArgs {
    /// KV v2 mount
    #[arg(long, env = "SECOPS_KV_MOUNT", default_value = "secret", global = true)]
    pub kv_mount: String,
    /// This cluster's name when several share one Vault: recorded in every origin
    /// (bootstrap:CLUSTER/NS/NAME) and what {cluster} stands for in --allowed-path; a DNS
    /// label; empty: the unnamed cluster (origins NS/NAME)
    #[arg(long, env = "SECOPS_CLUSTER", global = true)]
    pub cluster_name: Option<String>,
    /// Glob template a Kubernetes-sourced write may target; {namespace} is the Secret's
    /// namespace, {cluster} --cluster-name, `*` one path segment, `**` any number
    /// [default: {namespace}/**]
    #[arg(
        long = "allowed-path",
        env = "SECOPS_ALLOWED_PATHS",
        value_delimiter = ',',
        global = true
    )]
    pub allowed_paths: Vec<String>,
    /// Another KV mount a secops.dev/vault-mount annotation may name (repeatable)
    #[arg(
        long = "allowed-mount",
        env = "SECOPS_ALLOWED_MOUNTS",
        value_delimiter = ',',
        global = true
    )]
    pub allowed_mounts: Vec<String>,
    /// Decide and report, change nothing (outcome `planned`)
    #[arg(long, env = "SECOPS_DRY_RUN", global = true, value_parser = BoolishValueParser::new())]
    pub dry_run: bool,
    /// How long a claim on a Vault path (write-vault, handover, push-secret) naming a
    /// deleted Secret is honoured before its re-created Secret's run takes it over; the
    /// holder renews it once past three quarters of it; 1s to 1d
    #[arg(long, env = "SECOPS_PATH_CLAIM_LEASE", default_value = "120s",
          value_parser = parse_claim_lease, global = true)]
    pub path_claim_lease: Duration,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Output")]
pub struct OutputArgs {
    /// Also write result.json and one file per scalar field here (for Argo outputs)
    #[arg(long, env = "SECOPS_OUTPUT_DIR", global = true)]
    pub output_dir: Option<PathBuf>,
    /// Log format on stderr (filter with RUST_LOG)
    #[arg(long, env = "SECOPS_LOG_FORMAT", default_value = "json", global = true,
          value_parser = PossibleValuesParser::new(LogFormat::NAMES).try_map(|s| s.parse::<LogFormat>()))]
    pub log_format: LogFormat,
    /// Also append each audit event (one JSON line per state change) to this file
    #[arg(long, env = "SECOPS_AUDIT_FILE", global = true)]
    pub audit_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Retries")]
pub struct RetryArgs {
    /// Per-request timeout, 1ms to 1h (e.g. 500ms, 10s, 1m)
    #[arg(long, env = "SECOPS_TIMEOUT", default_value = "10s", value_parser = parse_timeout, global = true)]
    pub timeout: Duration,
    /// Attempts for a temporary failure, with exponential backoff and jitter
    #[arg(long, env = "SECOPS_MAX_ATTEMPTS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=20), global = true)]
    pub max_attempts: u32,
}

#[derive(Debug, Args, Clone)]
pub struct ScopeArgs {
    /// Namespace(s) in scope, repeatable or comma separated [default: the context's]
    #[arg(
        short = 'n',
        long = "namespace",
        value_delimiter = ',',
        env = "SECOPS_NAMESPACES"
    )]
    pub namespaces: Vec<String>,
    /// Every namespace
    #[arg(short = 'A', long, conflicts_with = "namespaces", env = "SECOPS_ALL_NAMESPACES", value_parser = BoolishValueParser::new())]
    pub all_namespaces: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    Json,
    Table,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Discover bootstrap Secrets in scope, classify each, and print the plan
    ///
    /// Writes items.json (only actionable items, or shard descriptors with --shards) to
    /// --output-dir for Argo `withParam`. Values are read only to fingerprint them.
    ReadBootstrap(ReadBootstrapArgs),
    /// Copy ONE bootstrap Secret into Vault (the handover write)
    WriteVault(WriteVaultArgs),
    /// Render ONE handed-over bootstrap Secret inert, only after Vault holds it
    MarkConsumed(MarkConsumedArgs),
    /// Hand over every pending bootstrap Secret in scope: write, verify, mark
    Handover(HandoverArgs),
    /// Generate new values for keys of a Vault secret and refresh its consumers
    ///
    /// Exactly once per --rotation-id: the same id never writes twice, across retries, crashes
    /// and concurrent runs; a repeated id refreshes the consumers again and writes nothing.
    Rotate(RotateArgs),
    /// Publish an operator-generated Secret into Vault (internal distribution)
    PushSecret(PushSecretArgs),
    /// Report the authority of every managed secret; exit 3 if an invariant is broken
    Status(StatusArgs),
    /// Apply the Vault policies and kubernetes-auth roles the chart renders
    ///
    /// Compares before writing (a re-run says `unchanged`); refuses (exit 3) a policy or role
    /// of the same name that secops did not write, unless --adopt. With --dry-run, prints the
    /// diff (names and changed fields) and writes nothing.
    VaultSetup(VaultSetupArgs),
}

#[derive(Debug, Args)]
pub struct ReadBootstrapArgs {
    #[command(flatten)]
    scope: ScopeArgs,
    /// Extra label selector, ANDed with secops.dev/class=bootstrap
    #[arg(long, env = "SECOPS_SELECTOR")]
    selector: Option<String>,
    /// Emit N shard descriptors instead of one item per Secret (0: one item per Secret)
    #[arg(long, env = "SECOPS_SHARDS", value_parser = clap::value_parser!(u32).range(0..=1024))]
    shards: Option<u32>,
}

#[derive(Debug, Args)]
pub struct WriteVaultArgs {
    /// The Secret, as NAMESPACE/NAME
    #[arg(long, env = "SECOPS_SECRET")]
    secret: String,
    /// Refuse unless the Secret still has this uid (from the plan)
    #[arg(long, env = "SECOPS_EXPECT_UID")]
    expect_uid: Option<String>,
}

#[derive(Debug, Args)]
pub struct MarkConsumedArgs {
    /// The Secret, as NAMESPACE/NAME
    #[arg(long, env = "SECOPS_SECRET")]
    secret: String,
    /// Refuse unless the Secret still has this uid
    #[arg(long, env = "SECOPS_EXPECT_UID")]
    expect_uid: Option<String>,
    /// How to render it inert: annotate (label and annotate only), strip (also empty the
    /// data), delete (uid precondition)
    #[arg(long, env = "SECOPS_MODE", default_value = "annotate", value_parser = consume_mode())]
    mode: ConsumeMode,
    /// The Vault path the plan named (inside --vault-mount): lets a re-run after
    /// `--mode delete` find the finished handover in Vault once the Secret is gone
    #[arg(long, env = "SECOPS_VAULT_PATH")]
    vault_path: Option<String>,
    /// The KV mount of --vault-path [default: --kv-mount]
    #[arg(long, env = "SECOPS_VAULT_MOUNT", requires = "vault_path")]
    vault_mount: Option<String>,
}

#[derive(Debug, Args)]
pub struct HandoverArgs {
    #[command(flatten)]
    scope: ScopeArgs,
    /// Secrets handled at once
    #[arg(long, env = "SECOPS_CONCURRENCY", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    concurrency: u32,
    /// Only Secrets whose uid hashes to shard I of N, as I/N
    #[arg(long, env = "SECOPS_SHARD")]
    shard: Option<String>,
    /// How to render consumed Secrets inert (annotate, strip, delete)
    #[arg(long, env = "SECOPS_MODE", default_value = "annotate", value_parser = consume_mode())]
    mode: ConsumeMode,
    /// Extra label selector, ANDed with secops.dev/class=bootstrap
    #[arg(long, env = "SECOPS_SELECTOR")]
    selector: Option<String>,
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// Path inside the KV mount (KV rotation)
    #[arg(long, env = "SECOPS_PATH")]
    path: Option<String>,
    /// Key to regenerate (repeatable or comma separated); other keys keep their values
    #[arg(long = "key", env = "SECOPS_KEYS", value_delimiter = ',')]
    keys: Vec<String>,
    /// Identity of the trigger (workflow uid, event id); the same id never rotates twice
    #[arg(long, env = "SECOPS_ROTATION_ID")]
    rotation_id: String,
    /// How new values are made (KV rotation)
    #[arg(long, env = "SECOPS_GENERATOR",
          value_parser = PossibleValuesParser::new(Generator::NAMES).try_map(|s| s.parse::<Generator>()))]
    generator: Option<Generator>,
    /// Characters (password) or random bytes (hex, base64) [default: 32]
    #[arg(long, env = "SECOPS_LENGTH", value_parser = clap::value_parser!(u32).range(1..=4096))]
    length: Option<u32>,
    /// Password character classes, each required at least once [default: lower,upper,digit,symbol]
    #[arg(long, env = "SECOPS_CHARSET")]
    charset: Option<String>,
    /// The symbol class of --charset
    #[arg(long, env = "SECOPS_SYMBOLS", default_value = DEFAULT_SYMBOLS)]
    symbols: String,
    /// Keep look-alike characters (0 O 1 l I | and quotes), left out by default
    #[arg(long, env = "SECOPS_ALLOW_LOOKALIKES", value_parser = BoolishValueParser::new())]
    allow_lookalikes: bool,
    /// Vault password policy name (vault-policy generator)
    #[arg(long, env = "SECOPS_PASSWORD_POLICY")]
    policy: Option<String>,
    /// After the write, destroy versions older than the newest N (at least 2; 0 keeps all)
    #[arg(long, env = "SECOPS_KEEP_VERSIONS", value_parser = parse_keep_versions)]
    keep_versions: Option<u32>,
    /// Engine-backed rotation instead of a KV write: Vault rotates the static role MOUNT/ROLE
    /// (POST MOUNT/rotate-role/ROLE), exactly once per rotation id
    #[arg(long, env = "SECOPS_STATIC_ROLE", conflicts_with_all = ["path", "keys", "generator"])]
    static_role: Option<String>,
    /// ExternalSecret to force-sync, as externalsecret/NS/NAME (repeatable or comma separated)
    #[arg(long, env = "SECOPS_REFRESH", value_delimiter = ',')]
    refresh: Vec<String>,
    /// Workload to restart, as deployment|statefulset|daemonset/NS/NAME (repeatable or comma
    /// separated); restarted only after every --refresh ExternalSecret has synced
    #[arg(long, env = "SECOPS_RESTART", value_delimiter = ',')]
    restart: Vec<String>,
    /// How long to wait for the ExternalSecrets to sync before restarting workloads; when it
    /// runs out, exit 75 and the retry re-drives the consumers; 0 restarts without waiting
    #[arg(long, env = "SECOPS_SYNC_TIMEOUT", default_value = "5m", value_parser = parse_sync_timeout)]
    sync_timeout: Duration,
    /// Rotate only when the current value is older than this (else outcome not-due); recorded
    /// as the path's maximum age (secops-max-age); 0 rotates whatever the age
    #[arg(long, env = "SECOPS_IF_OLDER_THAN", value_parser = parse_if_older_than)]
    if_older_than: Option<Duration>,
    /// Take over a path that has no secops provenance (recorded as secops-adopted-at)
    #[arg(long, env = "SECOPS_ADOPT", value_parser = BoolishValueParser::new())]
    adopt: bool,
    /// How long an unfinished claim on this rotation id by another run is honoured before
    /// it is taken over (the claimer presumed dead); longer than one step's retries; 1s to 1d
    #[arg(long, env = "SECOPS_ROTATION_LEASE", default_value = "120s", value_parser = parse_claim_lease)]
    claim_lease: Duration,
}

#[derive(Debug, Args)]
pub struct PushSecretArgs {
    /// The Secret, as NAMESPACE/NAME; without it, every internal Secret in scope
    #[arg(long, env = "SECOPS_SECRET")]
    secret: Option<String>,
    /// Path inside the KV mount [default: the secops.dev/vault-path annotation]
    #[arg(long, env = "SECOPS_PATH")]
    path: Option<String>,
    /// Take over a path holding data secops did not write (recorded as secops-adopted-at);
    /// without it such a path is refused (exit 3)
    #[arg(long, env = "SECOPS_ADOPT", value_parser = BoolishValueParser::new())]
    adopt: bool,
    #[command(flatten)]
    scope: ScopeArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    scope: ScopeArgs,
    /// How long two authorities may coexist before it is a violation; 0 to 365d
    #[arg(long, env = "SECOPS_GRACE", default_value = "1h", value_parser = parse_grace)]
    grace: Duration,
    /// Output format [default: table on a terminal, else json]
    #[arg(long, env = "SECOPS_STATUS_OUTPUT", value_enum)]
    output: Option<StatusFormat>,
    /// Also report Vault-side drift against the policies and roles this ConfigMap renders
    /// (NAMESPACE/NAME, e.g. secops/secops-vault-policies)
    #[arg(
        long,
        env = "SECOPS_VAULT_CONFIG_CONFIGMAP",
        conflicts_with = "vault_config_from_dir"
    )]
    vault_config_from_configmap: Option<String>,
    /// Also report Vault-side drift against the rendered ConfigMap's files in this directory
    #[arg(long, env = "SECOPS_VAULT_CONFIG_DIR")]
    vault_config_from_dir: Option<PathBuf>,
    /// Report a violation for a secret whose current version is older than this (a path's
    /// own secops-max-age takes precedence); 1s to 87600h
    #[arg(long, env = "SECOPS_MAX_AGE", value_parser = parse_max_age)]
    max_age: Option<Duration>,
    /// Also list, apart and unjudged, the Vault paths whose origin is in another cluster
    /// (another --cluster-name, or the unnamed cluster); without it they are left out
    #[arg(long, env = "SECOPS_STATUS_OTHER_CLUSTERS", value_parser = BoolishValueParser::new())]
    other_clusters: bool,
}

#[derive(Debug, Args)]
pub struct VaultSetupArgs {
    /// The rendered ConfigMap, as NAMESPACE/NAME (e.g. secops/secops-vault-policies)
    #[arg(
        long,
        env = "SECOPS_VAULT_CONFIG_CONFIGMAP",
        conflicts_with = "from_dir",
        required_unless_present = "from_dir"
    )]
    from_configmap: Option<String>,
    /// A directory holding the ConfigMap's keys as files (NAME.hcl, roles.json)
    #[arg(long, env = "SECOPS_VAULT_CONFIG_DIR")]
    from_dir: Option<PathBuf>,
    /// Enable the KV v2 mount (--kv-mount) and the kubernetes auth method when absent
    #[arg(long, env = "SECOPS_ENABLE_MISSING", value_parser = BoolishValueParser::new())]
    enable_missing: bool,
    /// Take over policies and roles of the same name that secops did not write
    #[arg(long, env = "SECOPS_ADOPT", value_parser = BoolishValueParser::new())]
    adopt: bool,
    /// Write kubernetes_host to auth/MOUNT/config (the API server as Vault reaches it)
    #[arg(long, env = "SECOPS_KUBERNETES_HOST")]
    kubernetes_host: Option<String>,
    /// PEM file of the API server's CA, written as kubernetes_ca_cert (needs --kubernetes-host)
    #[arg(long, env = "SECOPS_KUBERNETES_CA_FILE", requires = "kubernetes_host")]
    kubernetes_ca_file: Option<PathBuf>,
    /// Vault runs outside the cluster: review logins with the client's own token
    /// (disable_local_ca_jwt; needs --kubernetes-host)
    #[arg(long, env = "SECOPS_KUBERNETES_USE_CLIENT_JWT", requires = "kubernetes_host", value_parser = BoolishValueParser::new())]
    kubernetes_use_client_jwt: bool,
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::ReadBootstrap(_) => "read-bootstrap",
            Command::WriteVault(_) => "write-vault",
            Command::MarkConsumed(_) => "mark-consumed",
            Command::Handover(_) => "handover",
            Command::Rotate(_) => "rotate",
            Command::PushSecret(_) => "push-secret",
            Command::Status(_) => "status",
            Command::VaultSetup(_) => "vault-setup",
        }
    }
}

/// Everything a run needs, typed and checked; nothing here has touched the network.
pub struct Invocation {
    pub command: CommandPlan,
    pub settings: Settings,
    pub vault: VaultSettings,
    /// Absent when the command needs no Kubernetes access (a rotation without consumers),
    /// so that it runs where no cluster configuration exists.
    pub kube: Option<KubeSettings>,
    pub retry: RetryPolicy,
    /// `--audit-file`, open for appending.
    pub audit_file: Option<std::fs::File>,
}

impl Cli {
    /// The second stage: every flag into typed values, the command's plan first (its errors
    /// are the likeliest), then the shared settings and the credentials.
    pub fn validate(&self) -> Result<Invocation> {
        let command = self.command.validate()?;
        if let Some(dir) = &self.output.output_dir {
            crate::output::check_output_dir(dir)?;
        }
        let cluster = ClusterName::parse(self.policy.cluster_name.as_deref().unwrap_or(""))?;
        let settings = Settings {
            kv_mount: self.policy.kv_mount.clone(),
            allowed: AllowedPaths::in_cluster(self.policy.allowed_paths.clone(), cluster.as_ref())?
                .with_mounts(self.policy.allowed_mounts.clone())?,
            dry_run: self.policy.dry_run,
            cluster,
            claim_lease: self.policy.path_claim_lease.as_secs() as i64,
        };
        validate_mount(&settings.kv_mount)
            .map_err(|reason| Error::Usage(format!("--kv-mount: {reason}")))?;
        let kube = command.needs_kube().then(|| KubeSettings {
            kubeconfig: self.kube.kubeconfig.clone(),
            context: self.kube.context.clone(),
            timeout: self.retry.timeout,
            cluster: settings.cluster.clone(),
        });
        let vault = vault_settings(&self.vault, self.retry.timeout)?;
        // Opened last: it creates the file, which a usage error should not leave behind.
        let audit_file = self
            .output
            .audit_file
            .as_deref()
            .map(crate::audit::open_file)
            .transpose()?;
        Ok(Invocation {
            command,
            settings,
            vault,
            kube,
            retry: RetryPolicy::new(self.retry.max_attempts),
            audit_file,
        })
    }
}

impl Command {
    fn validate(&self) -> Result<CommandPlan> {
        Ok(match self {
            Command::ReadBootstrap(args) => {
                CommandPlan::ReadBootstrap(commands::read_bootstrap::Plan {
                    scope: args.scope.validate()?,
                    selector: args.selector.clone(),
                    shards: args.shards.filter(|n| *n > 0),
                })
            }
            Command::WriteVault(args) => CommandPlan::WriteVault(commands::write_vault::Plan {
                secret: SecretRef::parse(&args.secret)?,
                expect_uid: args.expect_uid.clone(),
            }),
            Command::MarkConsumed(args) => {
                if let Some(path) = &args.vault_path {
                    validate_path(path)
                        .map_err(|reason| Error::Usage(format!("--vault-path: {reason}")))?;
                }
                if let Some(mount) = &args.vault_mount {
                    validate_mount(mount)
                        .map_err(|reason| Error::Usage(format!("--vault-mount: {reason}")))?;
                }
                CommandPlan::MarkConsumed(commands::mark_consumed::Plan {
                    secret: SecretRef::parse(&args.secret)?,
                    expect_uid: args.expect_uid.clone(),
                    mode: args.mode,
                    recorded: args
                        .vault_path
                        .clone()
                        .map(|path| (args.vault_mount.clone(), path)),
                })
            }
            Command::Handover(args) => CommandPlan::Handover(commands::handover::Plan {
                scope: args.scope.validate()?,
                concurrency: args.concurrency as usize,
                shard: args.shard.as_deref().map(Shard::parse).transpose()?,
                mode: args.mode,
                selector: args.selector.clone(),
            }),
            Command::Rotate(args) => CommandPlan::Rotate(args.validate()?),
            Command::PushSecret(args) => CommandPlan::PushSecret(args.validate()?),
            Command::Status(args) => CommandPlan::Status(commands::status::Plan {
                scope: args.scope.validate()?,
                grace_seconds: i64::try_from(args.grace.as_secs())
                    .map_err(|_| Error::Usage("--grace is too long".into()))?,
                table: args.output.map(|format| format == StatusFormat::Table),
                vault_config: config_source(
                    args.vault_config_from_configmap.as_deref(),
                    args.vault_config_from_dir.as_deref(),
                    "--vault-config-from-configmap",
                )?,
                max_age_seconds: args.max_age.map(|age| age.as_secs() as i64),
                other_clusters: args.other_clusters,
            }),
            Command::VaultSetup(args) => CommandPlan::VaultSetup(args.validate()?),
        })
    }
}

impl ScopeArgs {
    fn validate(&self) -> Result<Scope> {
        if self.all_namespaces {
            return Ok(Scope::AllNamespaces);
        }
        let mut namespaces = Vec::new();
        for namespace in self.namespaces.iter().map(|n| n.trim()) {
            if namespace.is_empty() {
                continue;
            }
            if !is_dns_subdomain(namespace) {
                return Err(Error::Usage(format!(
                    "--namespace {namespace:?} is not a valid namespace name"
                )));
            }
            namespaces.push(namespace.to_string());
        }
        namespaces.sort();
        namespaces.dedup();
        Ok(Scope::Namespaces(namespaces))
    }
}

const DEFAULT_LENGTH: u32 = 32;

impl RotateArgs {
    fn validate(&self) -> Result<commands::rotate::Plan> {
        validate_rotation_id(&self.rotation_id)?;
        let target = match (&self.static_role, &self.path) {
            (Some(role), _) => self.validate_static_role(role)?,
            (None, Some(path)) => commands::rotate::What::Kv(self.validate_kv(path)?),
            (None, None) => {
                return Err(Error::Usage(
                    "rotate needs --path (KV rotation) or --static-role MOUNT/ROLE".into(),
                ))
            }
        };
        let mut consumers = Vec::new();
        for refresh in self.refresh.iter().filter(|t| !t.trim().is_empty()) {
            consumers.push(parse_refresh(refresh.trim())?);
        }
        for restart in self.restart.iter().filter(|t| !t.trim().is_empty()) {
            consumers.push(parse_restart(restart.trim())?);
        }
        Ok(commands::rotate::Plan {
            rotation_id: self.rotation_id.clone(),
            what: target,
            consumers,
            claim_lease_seconds: self.claim_lease.as_secs() as i64,
            sync_timeout: self.sync_timeout,
            if_older_than: self.if_older_than.filter(|age| !age.is_zero()),
        })
    }

    fn validate_static_role(&self, text: &str) -> Result<commands::rotate::What> {
        let invalid = |reason: String| Error::Usage(format!("--static-role {text:?}: {reason}"));
        let (mount, role) = text
            .rsplit_once('/')
            .ok_or_else(|| invalid("expected MOUNT/ROLE".into()))?;
        validate_mount(mount).map_err(invalid)?;
        let role_ok = !role.is_empty()
            && role.len() <= 128
            && role
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && role != "."
            && role != "..";
        if !role_ok {
            return Err(invalid(
                "the role: use letters, digits, '-', '_', '.'".into(),
            ));
        }
        let kv_only = [
            ("--length", self.length.is_some()),
            ("--charset", self.charset.is_some()),
            ("--policy", self.policy.is_some()),
            ("--keep-versions", self.keep_versions.is_some()),
            ("--adopt", self.adopt),
            ("--allow-lookalikes", self.allow_lookalikes),
        ];
        if let Some((flag, _)) = kv_only.iter().find(|(_, given)| *given) {
            return Err(Error::Usage(format!(
                "{flag} is for KV rotation; Vault makes the value of a static role"
            )));
        }
        Ok(commands::rotate::What::StaticRole {
            mount: mount.to_string(),
            role: role.to_string(),
        })
    }

    fn validate_kv(&self, path: &str) -> Result<commands::rotate::KvPlan> {
        validate_path(path).map_err(|reason| Error::Usage(format!("--path: {reason}")))?;
        if crate::domain::names::is_reserved(path) {
            return Err(Error::ReservedPath {
                path: path.to_string(),
                action: "rotate it".into(),
            });
        }
        if self.keys.iter().all(|k| k.trim().is_empty()) {
            return Err(Error::Usage("KV rotation needs --key".into()));
        }
        let generator = self
            .generator
            .ok_or_else(|| Error::Usage("KV rotation needs --generator".into()))?;
        let mut keys: Vec<String> = Vec::new();
        for key in &self.keys {
            let valid = !key.is_empty()
                && key.len() <= 253
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !valid {
                return Err(Error::Usage(format!(
                    "--key {key:?}: use letters, digits, '-', '_', '.'"
                )));
            }
            if !keys.contains(key) {
                keys.push(key.clone());
            }
        }
        let length = self.length.unwrap_or(DEFAULT_LENGTH) as usize;
        let recipe = match generator {
            Generator::Password => Recipe::Password(PasswordSpec::new(
                length,
                self.charset.as_deref(),
                &self.symbols,
                self.allow_lookalikes,
            )?),
            Generator::Hex => Recipe::Hex(length),
            Generator::Base64 => Recipe::Base64(length),
            Generator::VaultPolicy => {
                Recipe::VaultPolicy(self.policy.clone().ok_or_else(|| {
                    Error::Usage("--generator vault-policy needs --policy NAME".into())
                })?)
            }
        };
        let generator_name = match generator {
            Generator::Password => "password",
            Generator::Hex => "hex",
            Generator::Base64 => "base64",
            Generator::VaultPolicy => "vault-policy",
        };
        Ok(commands::rotate::KvPlan {
            path: path.to_string(),
            keys,
            generator: generator_name.to_string(),
            recipe,
            keep_versions: self.keep_versions.filter(|k| *k > 0),
            adopt: self.adopt,
        })
    }
}

impl PushSecretArgs {
    fn validate(&self) -> Result<commands::push_secret::Plan> {
        let scope = self.scope.validate()?;
        if let Some(path) = &self.path {
            validate_path(path).map_err(|reason| Error::Usage(format!("--path: {reason}")))?;
        }
        match (&self.secret, &self.path) {
            (Some(secret), path) => Ok(commands::push_secret::Plan::One {
                secret: SecretRef::parse(secret)?,
                path: path.clone(),
                adopt: self.adopt,
            }),
            (None, Some(_)) => Err(Error::Usage(
                "--path needs --secret: a batch push takes each path from its Secret's annotation"
                    .into(),
            )),
            (None, None) => Ok(commands::push_secret::Plan::Batch {
                scope,
                adopt: self.adopt,
            }),
        }
    }
}

/// The rendered Vault configuration: a ConfigMap read at run time, or a directory read and
/// parsed now, so a malformed file exits 2 before anything connects.
fn config_source(
    configmap: Option<&str>,
    dir: Option<&std::path::Path>,
    flag: &str,
) -> Result<Option<commands::vault_setup::ConfigSource>> {
    use commands::vault_setup::ConfigSource;
    match (configmap, dir) {
        (Some(reference), _) => {
            let parsed = SecretRef::parse(reference)
                .map_err(|_| Error::Usage(format!("{flag} {reference:?}: use NAMESPACE/NAME")))?;
            Ok(Some(ConfigSource::ConfigMap {
                namespace: parsed.namespace,
                name: parsed.name,
            }))
        }
        (None, Some(dir)) => {
            let entries = std::fs::read_dir(dir).map_err(|e| {
                Error::Usage(format!(
                    "cannot read directory {}: {}",
                    dir.display(),
                    e.kind()
                ))
            })?;
            let mut files = std::collections::BTreeMap::new();
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                if !entry.path().is_file() || name.starts_with('.') {
                    continue;
                }
                let text = std::fs::read_to_string(entry.path()).map_err(|e| {
                    Error::Usage(format!(
                        "cannot read {}: {}",
                        entry.path().display(),
                        e.kind()
                    ))
                })?;
                files.insert(name, text);
            }
            let label = format!("directory {}", dir.display());
            let config = crate::domain::vault_config::parse_rendered(&label, &files)?;
            Ok(Some(ConfigSource::Parsed { label, config }))
        }
        (None, None) => Ok(None),
    }
}

impl VaultSetupArgs {
    fn validate(&self) -> Result<commands::vault_setup::Plan> {
        let source = config_source(
            self.from_configmap.as_deref(),
            self.from_dir.as_deref(),
            "--from-configmap",
        )?
        .ok_or_else(|| Error::Usage("vault-setup needs --from-configmap or --from-dir".into()))?;
        let kubernetes = match &self.kubernetes_host {
            None => None,
            Some(host) => {
                match url::Url::parse(host) {
                    Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                    }
                    _ => {
                        return Err(Error::Usage(format!(
                            "--kubernetes-host {host:?} is not an http(s) URL"
                        )))
                    }
                }
                let ca_pem = match &self.kubernetes_ca_file {
                    None => None,
                    Some(file) => {
                        let text = std::fs::read_to_string(file).map_err(|e| {
                            Error::Usage(format!(
                                "--kubernetes-ca-file {}: {}",
                                file.display(),
                                e.kind()
                            ))
                        })?;
                        if !text.contains("-----BEGIN CERTIFICATE-----") {
                            return Err(Error::Usage(format!(
                                "--kubernetes-ca-file {}: not a PEM certificate",
                                file.display()
                            )));
                        }
                        Some(text)
                    }
                };
                Some(commands::vault_setup::KubernetesAuthConfig {
                    host: host.clone(),
                    ca_pem,
                    use_client_jwt: self.kubernetes_use_client_jwt,
                })
            }
        };
        Ok(commands::vault_setup::Plan {
            source,
            enable_missing: self.enable_missing,
            adopt: self.adopt,
            kubernetes,
        })
    }
}

/// Reads a credential file; a trailing newline would otherwise break the HTTP header.
fn read_credential(path: &std::path::Path, what: &str) -> Result<SecretString> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Usage(format!(
            "cannot read {what} file {}: {}",
            path.display(),
            e.kind()
        ))
    })?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(Error::Usage(format!(
            "{what} file {} is empty",
            path.display()
        )));
    }
    Ok(SecretString::from(trimmed.to_string()))
}

fn vault_settings(args: &VaultArgs, timeout: Duration) -> Result<VaultSettings> {
    let address = args
        .vault_addr
        .clone()
        .ok_or_else(|| Error::Usage("no Vault address: set --vault-addr or VAULT_ADDR".into()))?;
    match url::Url::parse(&address) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
            if url.path() != "/" || url.query().is_some() {
                return Err(Error::Usage(format!(
                    "--vault-addr {address:?}: give the server's address only, without a path \
                     such as /v1/ (secops adds the API prefix itself)"
                )));
            }
        }
        _ => {
            return Err(Error::Usage(format!(
                "--vault-addr {address:?} is not an http(s) URL"
            )))
        }
    }
    if let Some(ca) = &args.vault_cacert {
        let text = std::fs::read(ca)
            .map_err(|e| Error::Usage(format!("--vault-cacert {}: {}", ca.display(), e.kind())))?;
        if !text
            .windows(PEM_CERTIFICATE.len())
            .any(|w| w == PEM_CERTIFICATE.as_bytes())
        {
            return Err(Error::Usage(format!(
                "--vault-cacert {}: not a PEM certificate (no {PEM_CERTIFICATE} line)",
                ca.display()
            )));
        }
    }
    if let Some(namespace) = &args.vault_namespace {
        require_header_safe(namespace, "VAULT_NAMESPACE")?;
    }
    let env_token = std::env::var("VAULT_TOKEN")
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    let has_token = env_token.is_some() || args.vault_token_file.is_some();
    let method = args.vault_auth.unwrap_or(if has_token {
        AuthMethod::Token
    } else {
        AuthMethod::Kubernetes
    });
    let login = match method {
        AuthMethod::Token => {
            let token = match (&args.vault_token_file, env_token) {
                (Some(file), _) => read_credential(file, "--vault-token-file")?,
                (None, Some(token)) => SecretString::from(token),
                (None, None) => {
                    return Err(Error::Usage(
                        "token auth needs VAULT_TOKEN or --vault-token-file".into(),
                    ))
                }
            };
            require_header_safe(token.expose_secret(), "the Vault token")?;
            Login::Token(token)
        }
        AuthMethod::Kubernetes => Login::Kubernetes {
            mount: args
                .vault_auth_mount
                .clone()
                .unwrap_or_else(|| "kubernetes".into()),
            role: args.vault_role.clone().ok_or_else(|| {
                Error::Usage(
                    "kubernetes auth needs --vault-role (or set VAULT_TOKEN for token auth)".into(),
                )
            })?,
            jwt: read_credential(&args.vault_jwt_file, "--vault-jwt-file")?,
        },
        AuthMethod::Approle => Login::AppRole {
            mount: args
                .vault_auth_mount
                .clone()
                .unwrap_or_else(|| "approle".into()),
            role_id: args
                .vault_role_id
                .clone()
                .ok_or_else(|| Error::Usage("approle auth needs VAULT_ROLE_ID".into()))?,
            secret_id: read_credential(
                args.vault_secret_id_file.as_deref().ok_or_else(|| {
                    Error::Usage("approle auth needs --vault-secret-id-file".into())
                })?,
                "--vault-secret-id-file",
            )?,
        },
    };
    Ok(VaultSettings {
        address,
        ca_cert: args.vault_cacert.clone(),
        namespace: args.vault_namespace.clone().filter(|n| !n.is_empty()),
        skip_verify: args.vault_skip_verify,
        timeout,
        login,
    })
}

const PEM_CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----";

/// A value sent as an HTTP header must be visible ASCII: a newline inside a token would
/// otherwise make the client library panic. The value itself is never quoted.
fn require_header_safe(value: &str, what: &str) -> Result<()> {
    if value.bytes().all(|b| b.is_ascii_graphic()) {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "{what} contains characters an HTTP header cannot carry (spaces, newlines or \
         non-ASCII)"
    )))
}

fn consume_mode() -> impl clap::builder::TypedValueParser<Value = ConsumeMode> {
    PossibleValuesParser::new(ConsumeMode::NAMES).try_map(|s| s.parse::<ConsumeMode>())
}

/// `0` keeps every version (the Argo template's default); otherwise at least 2, so the
/// previous value survives a grace window.
fn parse_keep_versions(text: &str) -> std::result::Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(0) => Ok(0),
        Ok(n) if (2..=1000).contains(&n) => Ok(n),
        _ => Err(format!(
            "{text:?}: keep at least 2 versions (or 0 to keep all)"
        )),
    }
}

/// Parses `500ms`, `10s`, `5m`, `2h`, or a plain number of seconds; an amount too large to
/// represent is an error, not a wrapped or saturated value.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 500ms, 10s, 5m or 2h"))?;
    let seconds = |factor: u64| {
        number
            .checked_mul(factor)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("{text:?} is too long"))
    };
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "" | "s" => seconds(1),
        "m" => seconds(60),
        "h" => seconds(3600),
        _ => Err(format!(
            "{text:?}: unknown unit {unit:?} (use ms, s, m or h)"
        )),
    }
}

fn parse_duration_within(
    text: &str,
    min: Duration,
    max: Duration,
    range: &str,
) -> std::result::Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration < min || duration > max {
        return Err(format!("{text:?} is out of range ({range})"));
    }
    Ok(duration)
}

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

fn parse_timeout(text: &str) -> std::result::Result<Duration, String> {
    parse_duration_within(text, Duration::from_millis(1), HOUR, "1ms to 1h")
}

fn parse_claim_lease(text: &str) -> std::result::Result<Duration, String> {
    parse_duration_within(text, Duration::from_secs(1), DAY, "1s to 1d")
}

fn parse_grace(text: &str) -> std::result::Result<Duration, String> {
    parse_duration_within(text, Duration::ZERO, DAY * 365, "0 to 365d")
}

fn parse_sync_timeout(text: &str) -> std::result::Result<Duration, String> {
    parse_duration_within(text, Duration::ZERO, HOUR, "0 to 1h")
}

fn parse_if_older_than(text: &str) -> std::result::Result<Duration, String> {
    parse_duration_within(text, Duration::ZERO, DAY * 3650, "0 to 87600h")
}

/// A maximum age (`status --max-age`): 1s to 87600h (ten years).
pub fn parse_max_age(text: &str) -> std::result::Result<Duration, String> {
    parse_duration_within(text, Duration::from_secs(1), DAY * 3650, "1s to 87600h")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_tree_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn every_flag_has_an_environment_variable() {
        use clap::CommandFactory;
        let root = Cli::command();
        let mut missing = Vec::new();
        let mut check = |command: &clap::Command| {
            for arg in command.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && !arg.is_positional() && arg.get_env().is_none() {
                    missing.push(format!("{} --{}", command.get_name(), arg.get_id()));
                }
            }
        };
        check(&root);
        for sub in root.get_subcommands() {
            check(sub);
        }
        assert!(missing.is_empty(), "flags without env: {missing:?}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration(&format!("{}h", u64::MAX / 2)).is_err());
    }

    #[test]
    fn durations_are_range_checked_per_flag() {
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("0ms").is_err());
        assert!(parse_timeout("1ms").is_ok());
        assert!(parse_timeout("2h").is_err());
        assert!(parse_timeout(&u64::MAX.to_string()).is_err());
        assert!(parse_grace("0").is_ok());
        assert!(parse_grace(&format!("{}", i64::MAX as u64 + 1)).is_err());
        assert!(parse_grace("8760h").is_ok());
        assert!(parse_grace("8761h").is_err());
        assert!(parse_claim_lease("0s").is_err());
        assert!(parse_claim_lease("25h").is_err());
    }

    fn validate(args: &[&str]) -> Result<Invocation> {
        let mut argv = vec!["secops", "--vault-addr", "http://127.0.0.1:1"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).expect("parses");
        // A token keeps the login offline; the flag names a file that exists.
        // One file per call: tests run in parallel threads of one process.
        static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let token =
            std::env::temp_dir().join(format!("secops-cli-test-{}-{call}", std::process::id()));
        std::fs::write(&token, "t").unwrap();
        let cli = Cli {
            vault: VaultArgs {
                vault_token_file: Some(token),
                ..cli.vault
            },
            ..cli
        };
        cli.validate()
    }

    #[test]
    fn plans_are_typed_before_any_client_exists() {
        let Ok(Invocation {
            command: CommandPlan::Handover(plan),
            kube: Some(_),
            ..
        }) = validate(&["handover", "--shard", "1/4", "-n", "b,a,b"])
        else {
            panic!("a handover plan")
        };
        assert_eq!(plan.shard, Some(Shard { index: 1, count: 4 }));
        assert_eq!(plan.scope, Scope::Namespaces(vec!["a".into(), "b".into()]));
        let Ok(rotation) = validate(&[
            "rotate",
            "--path",
            "a/b",
            "--key",
            "k",
            "--rotation-id",
            "r1",
            "--generator",
            "hex",
        ]) else {
            panic!("a rotation plan")
        };
        assert!(rotation.kube.is_none(), "no consumers, no Kubernetes");
        for bad in [
            &["write-vault", "--secret", "no-slash"][..],
            &["handover", "--shard", "5/4"],
            &[
                "rotate",
                "--path",
                "a/../b",
                "--key",
                "k",
                "--rotation-id",
                "r",
                "--generator",
                "hex",
            ],
            &[
                "rotate",
                "--path",
                "a/b",
                "--key",
                "k",
                "--rotation-id",
                "r",
                "--generator",
                "vault-policy",
            ],
            &[
                "rotate",
                "--path",
                "a/b",
                "--key",
                "k",
                "--rotation-id",
                "r",
                "--generator",
                "hex",
                "--refresh",
                "deployment/a/b",
            ],
            &["push-secret", "--path", "a/b"],
            &["status", "-n", "Bad_NS"],
        ] {
            let error = validate(bad).err().expect("a usage error");
            assert_eq!(error.exit_status().code(), 2, "{bad:?}: {error}");
        }
        let reserved = validate(&[
            "rotate",
            "--path",
            "secops/fingerprint-key",
            "--key",
            "k",
            "--rotation-id",
            "r",
            "--generator",
            "hex",
        ])
        .err()
        .expect("refused");
        assert_eq!(reserved.exit_status().code(), 3);
    }

    #[test]
    fn the_path_claim_lease_is_global_and_defaults_to_two_minutes() {
        let lease = |args: &[&str]| match validate(args) {
            Ok(plan) => plan.settings.claim_lease,
            Err(e) => panic!("a plan: {e}"),
        };
        assert_eq!(lease(&["status"]), 120);
        assert_eq!(lease(&["handover", "--path-claim-lease", "5m"]), 300);
        assert_eq!(lease(&["--path-claim-lease", "30", "status"]), 30);
        assert!(Cli::try_parse_from(["secops", "--path-claim-lease", "0s", "status"]).is_err());
    }

    #[test]
    fn cluster_names_are_checked_before_any_connection() {
        let Ok(named) = validate(&[
            "status",
            "--cluster-name",
            "east",
            "--allowed-path",
            "{namespace}/{cluster}/**",
        ]) else {
            panic!("a plan in cluster east")
        };
        assert_eq!(named.settings.cluster, ClusterName::parse("east").unwrap());
        assert_eq!(named.kube.unwrap().cluster, named.settings.cluster);
        let Ok(unnamed) = validate(&["status", "--cluster-name", ""]) else {
            panic!("an empty name is the unnamed cluster")
        };
        assert_eq!(unnamed.settings.cluster, None);
        for bad in [
            &["status", "--cluster-name", "east/west"][..],
            &["status", "--cluster-name", "East"],
            &["status", "--allowed-path", "{cluster}/**"],
        ] {
            let error = validate(bad).err().expect("a usage error");
            assert_eq!(error.exit_status().code(), 2, "{bad:?}: {error}");
        }
    }

    #[test]
    fn engine_rotation_plans_exclude_kv_flags() {
        let Ok(Invocation {
            command: CommandPlan::Rotate(plan),
            kube: None,
            ..
        }) = validate(&[
            "rotate",
            "--static-role",
            "db/prod/app",
            "--rotation-id",
            "e1",
            "--if-older-than",
            "24h",
        ])
        else {
            panic!("an engine rotation plan")
        };
        assert!(matches!(
            &plan.what,
            commands::rotate::What::StaticRole { mount, role } if mount == "db/prod" && role == "app"
        ));
        assert_eq!(plan.if_older_than, Some(Duration::from_secs(24 * 3600)));
        let Ok(Invocation {
            command: CommandPlan::Rotate(always),
            ..
        }) = validate(&[
            "rotate",
            "--static-role",
            "database/app",
            "--rotation-id",
            "e1",
            "--if-older-than",
            "0",
        ])
        else {
            panic!("a plan")
        };
        assert_eq!(always.if_older_than, None, "0 rotates whatever the age");
        for bad in [
            &["rotate", "--rotation-id", "e1"][..],
            &["rotate", "--static-role", "app", "--rotation-id", "e1"],
            &[
                "rotate",
                "--static-role",
                "database/a b",
                "--rotation-id",
                "e1",
            ],
            &[
                "rotate",
                "--static-role",
                "database/app",
                "--rotation-id",
                "e1",
                "--length",
                "9",
            ],
            &[
                "rotate",
                "--static-role",
                "database/app",
                "--rotation-id",
                "e1",
                "--adopt",
            ],
            &[
                "rotate",
                "--path",
                "a/b",
                "--rotation-id",
                "e1",
                "--generator",
                "hex",
            ],
            &[
                "rotate",
                "--path",
                "a/b",
                "--key",
                "k",
                "--rotation-id",
                "e1",
            ],
        ] {
            let error = validate(bad).err().expect("a usage error");
            assert_eq!(error.exit_status().code(), 2, "{bad:?}: {error}");
        }
        let both = Cli::try_parse_from([
            "secops",
            "rotate",
            "--static-role",
            "database/app",
            "--path",
            "a/b",
            "--rotation-id",
            "e1",
        ]);
        assert!(both.is_err(), "--static-role conflicts with --path");
    }
}
