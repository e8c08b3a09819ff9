//! Logs on stderr (JSON by default), filtered by `RUST_LOG`. Audit events are not logs: they
//! have a stream of their own (`crate::audit`).

use tracing::Level;
use tracing_subscriber::filter::{filter_fn, FilterExt as _};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

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
    let caps = filter_fn(|meta| within_caps(meta.target(), meta.level()));
    let filter = env.and(caps);
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
        assert!(
            within_caps("kubernetes", &Level::TRACE),
            "a prefix is a crate, not a string"
        );
    }
}
