//! Consumers to update after a rotation: ExternalSecrets to force-sync, workloads to restart.

use std::fmt;

use super::is_dns_subdomain;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerKind {
    ExternalSecret,
    Deployment,
    StatefulSet,
    DaemonSet,
}

impl ConsumerKind {
    pub fn name(self) -> &'static str {
        match self {
            ConsumerKind::ExternalSecret => "externalsecret",
            ConsumerKind::Deployment => "deployment",
            ConsumerKind::StatefulSet => "statefulset",
            ConsumerKind::DaemonSet => "daemonset",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    pub kind: ConsumerKind,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.kind.name(), self.namespace, self.name)
    }
}

fn parse(text: &str, flag: &str, kinds: &[ConsumerKind]) -> Result<Consumer> {
    let expected = kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join("|");
    let invalid = || {
        Error::Usage(format!(
            "{flag} {text:?}: expected {expected}/NAMESPACE/NAME"
        ))
    };
    let mut parts = text.split('/');
    let (Some(kind), Some(namespace), Some(name), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    let kind = kinds
        .iter()
        .copied()
        .find(|k| k.name() == kind.to_ascii_lowercase())
        .ok_or_else(invalid)?;
    if !is_dns_subdomain(namespace) || !is_dns_subdomain(name) {
        return Err(invalid());
    }
    Ok(Consumer {
        kind,
        namespace: namespace.into(),
        name: name.into(),
    })
}

pub fn parse_refresh(text: &str) -> Result<Consumer> {
    parse(text, "--refresh", &[ConsumerKind::ExternalSecret])
}

pub fn parse_restart(text: &str) -> Result<Consumer> {
    parse(
        text,
        "--restart",
        &[
            ConsumerKind::Deployment,
            ConsumerKind::StatefulSet,
            ConsumerKind::DaemonSet,
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_syntax() {
        assert_eq!(
            parse_refresh("externalsecret/app/db").unwrap().to_string(),
            "externalsecret/app/db"
        );
        assert_eq!(
            parse_restart("statefulset/app/pg").unwrap().kind,
            ConsumerKind::StatefulSet
        );
        for bad in [
            "deployment/app/x",
            "externalsecret/app",
            "externalsecret/App/x",
            "externalsecret/a/b/c",
        ] {
            assert!(parse_refresh(bad).is_err(), "{bad}");
        }
        assert!(parse_restart("externalsecret/app/x").is_err());
    }
}
