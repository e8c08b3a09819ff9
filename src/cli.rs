//! The command line: plain data parsed by clap, validated before any client is built.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXIT_CODES: &str = "\
EXIT CODES:
  0   done, including \"already done\"
  2   usage or configuration error, invalid annotation or path
  3   refused: path not allowed, authority conflict, drift
  4   named object not found
  75  temporary (network, timeout, 429/5xx, sealed Vault, lost race): retry
  1   internal error (a bug)

Secrets are read from files or the environment, never from the command line:
VAULT_TOKEN or --vault-token-file; VAULT_ROLE_ID and --vault-secret-id-file for AppRole.";

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
    #[arg(long, env = "VAULT_SKIP_VERIFY", global = true)]
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
    #[arg(long, global = true)]
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
    /// Glob template a Kubernetes-sourced write may target; {namespace} is the Secret's
    /// namespace, `*` one path segment, `**` any number [default: {namespace}/**]
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
    #[arg(long, env = "SECOPS_DRY_RUN", global = true)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Output")]
pub struct OutputArgs {
    /// Also write result.json and one file per scalar field here (for Argo outputs)
    #[arg(long, env = "SECOPS_OUTPUT_DIR", global = true)]
    pub output_dir: Option<PathBuf>,
    /// Log format on stderr (filter with RUST_LOG)
    #[arg(
        long,
        value_enum,
        env = "SECOPS_LOG_FORMAT",
        default_value = "json",
        global = true
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Retries")]
pub struct RetryArgs {
    /// Per-request timeout (e.g. 500ms, 10s, 1m)
    #[arg(long, env = "SECOPS_TIMEOUT", default_value = "10s", value_parser = parse_duration, global = true)]
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
    #[arg(short = 'A', long, conflicts_with = "namespaces")]
    pub all_namespaces: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsumeMode {
    /// Label and annotate only (safe under GitOps self-heal)
    Annotate,
    /// Also empty `data`, keeping the Secret as a tombstone (tell the GitOps tool to ignore /data)
    Strip,
    /// Delete the Secret (uid precondition)
    Delete,
}

impl ConsumeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsumeMode::Annotate => "annotate",
            ConsumeMode::Strip => "strip",
            ConsumeMode::Delete => "delete",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Generator {
    Password,
    Hex,
    Base64,
    VaultPolicy,
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
    ReadBootstrap {
        #[command(flatten)]
        scope: ScopeArgs,
        /// Extra label selector, ANDed with secops.dev/class=bootstrap
        #[arg(long)]
        selector: Option<String>,
        /// Emit N shard descriptors instead of one item per Secret (0: one item per Secret)
        #[arg(long, value_parser = clap::value_parser!(u32).range(0..=1024))]
        shards: Option<u32>,
    },
    /// Copy ONE bootstrap Secret into Vault (the handover write)
    WriteVault {
        /// The Secret, as NAMESPACE/NAME
        #[arg(long)]
        secret: String,
        /// Refuse unless the Secret still has this uid (from the plan)
        #[arg(long)]
        expect_uid: Option<String>,
    },
    /// Render ONE handed-over bootstrap Secret inert, only after Vault holds it
    MarkConsumed {
        /// The Secret, as NAMESPACE/NAME
        #[arg(long)]
        secret: String,
        /// Refuse unless the Secret still has this uid
        #[arg(long)]
        expect_uid: Option<String>,
        /// How to render it inert
        #[arg(long, value_enum, default_value = "annotate")]
        mode: ConsumeMode,
    },
    /// Hand over every pending bootstrap Secret in scope: write, verify, mark
    Handover {
        #[command(flatten)]
        scope: ScopeArgs,
        /// Secrets handled at once
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
        concurrency: u32,
        /// Only Secrets whose uid hashes to shard I of N, as I/N
        #[arg(long)]
        shard: Option<String>,
        /// How to render consumed Secrets inert
        #[arg(long, value_enum, default_value = "annotate")]
        mode: ConsumeMode,
        /// Extra label selector, ANDed with secops.dev/class=bootstrap
        #[arg(long)]
        selector: Option<String>,
    },
    /// Generate new values for keys of a Vault secret and refresh its consumers
    ///
    /// Exactly once per --rotation-id: the same id never writes twice, across retries, crashes
    /// and concurrent runs; a repeated id refreshes the consumers again and writes nothing.
    Rotate(RotateArgs),
    /// Publish an operator-generated Secret into Vault (internal distribution)
    PushSecret {
        /// The Secret, as NAMESPACE/NAME; without it, every internal Secret in scope
        #[arg(long)]
        secret: Option<String>,
        /// Path inside the KV mount [default: the secops.dev/vault-path annotation]
        #[arg(long)]
        path: Option<String>,
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Report the authority of every managed secret; exit 3 if an invariant is broken
    Status {
        #[command(flatten)]
        scope: ScopeArgs,
        /// How long two authorities may coexist before it is a violation
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        grace: Duration,
        /// Output format [default: table on a terminal, else json]
        #[arg(long, value_enum)]
        output: Option<StatusFormat>,
    },
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// Path inside the KV mount
    #[arg(long)]
    pub path: String,
    /// Key to regenerate (repeatable or comma separated); other keys keep their values
    #[arg(long = "key", required = true, value_delimiter = ',')]
    pub keys: Vec<String>,
    /// Identity of the trigger (workflow uid, event id); the same id never rotates twice
    #[arg(long, env = "SECOPS_ROTATION_ID")]
    pub rotation_id: String,
    #[arg(long, value_enum)]
    pub generator: Generator,
    /// Characters (password) or random bytes (hex, base64) [default: 32]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub length: Option<u32>,
    /// Password character classes, each required at least once [default: lower,upper,digit,symbol]
    #[arg(long)]
    pub charset: Option<String>,
    /// The symbol class of --charset
    #[arg(long, default_value = crate::domain::generate::DEFAULT_SYMBOLS)]
    pub symbols: String,
    /// Keep look-alike characters (0 O 1 l I | and quotes), left out by default
    #[arg(long)]
    pub allow_lookalikes: bool,
    /// Vault password policy name (vault-policy generator)
    #[arg(long)]
    pub policy: Option<String>,
    /// After the write, destroy versions older than the newest N (at least 2; 0 keeps all)
    #[arg(long, value_parser = parse_keep_versions)]
    pub keep_versions: Option<u32>,
    /// ExternalSecret to force-sync, as externalsecret/NS/NAME (repeatable or comma separated)
    #[arg(long, value_delimiter = ',')]
    pub refresh: Vec<String>,
    /// Workload to restart, as deployment|statefulset|daemonset/NS/NAME (repeatable or comma separated)
    #[arg(long, value_delimiter = ',')]
    pub restart: Vec<String>,
    /// Take over a path that has no secops provenance (recorded as secops-adopted-at)
    #[arg(long)]
    pub adopt: bool,
    /// How long an unfinished claim on this rotation id by another run is honoured before
    /// it is taken over (the claimer presumed dead); longer than one step's retries
    #[arg(long, env = "SECOPS_ROTATION_LEASE", default_value = "120s", value_parser = parse_duration)]
    pub claim_lease: Duration,
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::ReadBootstrap { .. } => "read-bootstrap",
            Command::WriteVault { .. } => "write-vault",
            Command::MarkConsumed { .. } => "mark-consumed",
            Command::Handover { .. } => "handover",
            Command::Rotate(_) => "rotate",
            Command::PushSecret { .. } => "push-secret",
            Command::Status { .. } => "status",
        }
    }
}

/// `0` keeps every version (the Argo template's default); otherwise at least 2, so the
/// previous value survives a grace window.
fn parse_keep_versions(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(0) => Ok(0),
        Ok(n) if (2..=1000).contains(&n) => Ok(n),
        _ => Err(format!(
            "{text:?}: keep at least 2 versions (or 0 to keep all)"
        )),
    }
}

/// Parses `500ms`, `10s`, `5m`, `2h`, or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 500ms, 10s, 5m or 2h"))?;
    let duration = match unit {
        "ms" => Duration::from_millis(number),
        "" | "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number * 60),
        "h" => Duration::from_secs(number * 3600),
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (use ms, s, m or h)"
            ))
        }
    };
    Ok(duration)
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
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5d").is_err());
    }
}
