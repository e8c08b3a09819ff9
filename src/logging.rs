//! Logs and audit events on stderr (JSON by default), filtered by `RUST_LOG`.

use std::fmt::Display;
use std::sync::OnceLock;

use tracing::Level;
use tracing_subscriber::filter::{filter_fn, FilterExt as _};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

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
/// log expected 404s as errors, with the most they may ever log. Matched by target prefix
/// after `RUST_LOG`, so no directive, however narrow (`vaultrs::api=trace`), re-enables them.
const CAPS: &[(&str, Option<Level>)] = &[
    ("vaultrs", None),
    ("rustify", None),
    ("reqwest", Some(Level::WARN)),
    ("hyper", Some(Level::WARN)),
    ("hyper_util", Some(Level::WARN)),
    ("h2", Some(Level::WARN)),
    ("kube_client", Some(Level::WARN)),
    ("kube", Some(Level::WARN)),
    ("tower", Some(Level::WARN)),
    ("rustls", Some(Level::WARN)),
];

/// The target of audit events: a stream of its own, which no `RUST_LOG` setting silences.
pub const AUDIT_TARGET: &str = "secops::audit";

/// Whether the caps let an event of `level` from `target` through.
fn within_caps(target: &str, level: &Level) -> bool {
    let crate_name = target.split("::").next().unwrap_or(target);
    match CAPS.iter().find(|(name, _)| *name == crate_name) {
        Some((_, Some(most))) => level <= most,
        Some((_, None)) => false,
        None => true,
    }
}

pub fn init(format: LogFormat) {
    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let audit = filter_fn(|meta| meta.target() == AUDIT_TARGET);
    let caps = filter_fn(|meta| within_caps(meta.target(), meta.level()));
    let filter = env.or(audit).and(caps);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Json => tracing_subscriber::registry()
            .with(
                layer
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false)
                    .with_filter(filter),
            )
            .init(),
        LogFormat::Text => tracing_subscriber::registry()
            .with(layer.with_filter(filter))
            .init(),
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
        target: AUDIT_TARGET,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_for_every_target_under_a_capped_crate() {
        assert!(!within_caps("vaultrs", &Level::ERROR));
        assert!(!within_caps("vaultrs::api", &Level::ERROR));
        assert!(!within_caps("rustify::client", &Level::WARN));
        assert!(!within_caps("reqwest::connect", &Level::DEBUG));
        assert!(within_caps("reqwest::connect", &Level::WARN));
        assert!(!within_caps("kube_client::client", &Level::TRACE));
        assert!(within_caps("secops::commands", &Level::TRACE));
        assert!(within_caps(AUDIT_TARGET, &Level::INFO));
        assert!(
            within_caps("kubernetes", &Level::TRACE),
            "a prefix is a crate, not a string"
        );
    }
}
