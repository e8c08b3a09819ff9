//! Logs and audit events on stderr (JSON by default), filtered by `RUST_LOG`.

use std::fmt::Display;
use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;

use crate::domain::fingerprint::Fingerprint;
use crate::domain::outcome::Outcome;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

impl LogFormat {
    pub const NAMES: [&'static str; 2] = ["json", "text"];
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "json" => Ok(LogFormat::Json),
            "text" => Ok(LogFormat::Text),
            _ => Err(format!("{text:?} is not one of json, text")),
        }
    }
}

/// Libraries that may log request or response bodies (Secret data) at debug/trace, or that
/// log expected 404s as errors. These caps are applied after `RUST_LOG`, so no filter a
/// user sets can turn them on.
const CAPPED: &[&str] = &[
    "vaultrs=off",
    "rustify=off",
    "reqwest=warn",
    "hyper=warn",
    "hyper_util=warn",
    "h2=warn",
    "kube_client=warn",
    "kube=warn",
    "tower=warn",
    "rustls=warn",
];

pub fn init(format: LogFormat) {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    for directive in CAPPED {
        filter = filter.add_directive(directive.parse().expect("valid directive"));
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

/// Who is acting, from the Argo/Kubernetes environment when present.
pub fn actor() -> &'static str {
    static ACTOR: OnceLock<String> = OnceLock::new();
    ACTOR.get_or_init(|| {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if let Some(explicit) = env("SECOPS_ACTOR") {
            return explicit;
        }
        let mut parts = Vec::new();
        if let Some(workflow) = env("ARGO_WORKFLOW_NAME") {
            match env("ARGO_WORKFLOW_UID") {
                Some(uid) => parts.push(format!("workflow:{workflow}/{uid}")),
                None => parts.push(format!("workflow:{workflow}")),
            }
        }
        if let Some(pod) = env("POD_NAME") {
            parts.push(format!("pod:{pod}"));
        }
        if let Some(account) = env("SERVICE_ACCOUNT").or_else(|| env("SECOPS_SERVICE_ACCOUNT")) {
            parts.push(format!("sa:{account}"));
        }
        if parts.is_empty() {
            parts.push(format!(
                "user:{}",
                env("USER").unwrap_or_else(|| "unknown".into())
            ));
        }
        parts.join(",")
    })
}

/// One audit event per state change: a log line with `"audit":true`.
pub fn audit(
    action: &str,
    target: &dyn Display,
    outcome: Outcome,
    vault_version: Option<u64>,
    fingerprint: Option<&Fingerprint>,
) {
    tracing::info!(
        audit = true,
        action,
        target = %target,
        outcome = outcome.as_str(),
        actor = actor(),
        vault_version,
        fingerprint = fingerprint.map(Fingerprint::as_str),
        "audit"
    );
}
