//! The I/O-free core: names of the contract, fingerprints, path policy, provenance and the
//! decision tables of `docs/contract.md` §6. Commands ask it what to do and carry the answer out.

pub mod authority;
pub mod bootstrap;
pub mod claim;
pub mod consumers;
pub mod expiry;
pub mod fingerprint;
pub mod generate;
pub mod names;
pub mod outcome;
pub mod path;
pub mod provenance;
pub mod push;
pub mod readopt;
pub mod rotation;
pub mod shard;
pub mod vault_config;

use std::fmt;

use crate::error::{Error, Result};

/// The namespaces a batch command covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    AllNamespaces,
    /// Sorted and deduplicated; empty means the Kubernetes context's default namespace.
    Namespaces(Vec<String>),
}

impl Scope {
    /// The namespaces to list: `None` stands for all of them.
    pub fn namespaces(&self, default: &str) -> Vec<Option<String>> {
        match self {
            Scope::AllNamespaces => vec![None],
            Scope::Namespaces(names) if names.is_empty() => vec![Some(default.to_string())],
            Scope::Namespaces(names) => names.iter().cloned().map(Some).collect(),
        }
    }

    pub fn contains(&self, namespace: &str, default: &str) -> bool {
        self.namespaces(default)
            .iter()
            .any(|n| n.as_deref().is_none_or(|n| n == namespace))
    }
}

/// The name of a cluster among several sharing one Vault (`--cluster-name`): a DNS-1123
/// label, so it can stand as one path segment and in front of `NS/NAME` in an origin.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterName(String);

impl ClusterName {
    /// `None` for the empty name: the unnamed cluster, which is what every cluster was before
    /// clusters had names (an origin without one belongs to it).
    pub fn parse(text: &str) -> Result<Option<Self>> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        if !is_dns_label(text) {
            return Err(Error::Usage(format!(
                "--cluster-name {text:?}: use at most 63 lowercase letters, digits and '-', \
                 starting and ending with a letter or digit"
            )));
        }
        Ok(Some(Self(text.to_string())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `NS/NAME` of a Kubernetes Secret, and the cluster it was read in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretRef {
    pub namespace: String,
    pub name: String,
    /// Set by the Kubernetes adapter from `--cluster-name`, so every origin made from a
    /// Secret names its cluster; `None` is the unnamed cluster. Not part of the `Display`
    /// form, which is the Secret's name inside its cluster.
    pub cluster: Option<ClusterName>,
}

impl SecretRef {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            cluster: None,
        }
    }

    pub fn in_cluster(self, cluster: Option<ClusterName>) -> Self {
        Self { cluster, ..self }
    }

    pub fn parse(text: &str) -> Result<Self> {
        let (namespace, name) = text
            .split_once('/')
            .ok_or_else(|| Error::Usage(format!("--secret {text:?}: expected NAMESPACE/NAME")))?;
        for part in [namespace, name] {
            if !is_dns_subdomain(part) {
                return Err(Error::Usage(format!(
                    "--secret {text:?}: {part:?} is not a valid Kubernetes name"
                )));
            }
        }
        Ok(Self::new(namespace, name))
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A DNS-1123 label: no dots, at most 63 characters.
pub fn is_dns_label(name: &str) -> bool {
    name.len() <= 63 && !name.contains('.') && is_dns_subdomain(name)
}

pub fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_refs_are_namespace_slash_name() {
        assert_eq!(
            SecretRef::parse("team-a/db").unwrap(),
            SecretRef::new("team-a", "db")
        );
        for bad in ["db", "team-a/", "/db", "Team/db", "a/b/c", "a/../b", "a/\0"] {
            assert_eq!(
                SecretRef::parse(bad).unwrap_err().exit_status().code(),
                2,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn cluster_names_are_dns_labels_and_empty_is_the_unnamed_cluster() {
        assert_eq!(ClusterName::parse("").unwrap(), None);
        assert_eq!(ClusterName::parse(" ").unwrap(), None);
        assert_eq!(
            ClusterName::parse("eu-west-1").unwrap().unwrap().as_str(),
            "eu-west-1"
        );
        for bad in ["east/x", "East", "a.b", "-a", "a-", "a b", &"a".repeat(64)] {
            let error = ClusterName::parse(bad).unwrap_err();
            assert_eq!(error.exit_status().code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn kubernetes_names_follow_the_dns_subdomain_rules() {
        for good in ["a", "a.b", "a-b", "0db", &"a".repeat(253)] {
            assert!(is_dns_subdomain(good), "{good:?}");
        }
        for bad in ["", "-a", "a-", ".a", "a.", "a_b", "A", &"a".repeat(254)] {
            assert!(!is_dns_subdomain(bad), "{bad:?}");
        }
        assert_eq!(SecretRef::new("team-a", "db").to_string(), "team-a/db");
    }

    #[test]
    fn a_scope_lists_and_contains_its_namespaces() {
        assert_eq!(Scope::AllNamespaces.namespaces("default"), vec![None]);
        assert!(Scope::AllNamespaces.contains("any", "default"));
        let none = Scope::Namespaces(vec![]);
        assert_eq!(none.namespaces("default"), vec![Some("default".into())]);
        assert!(none.contains("default", "default"));
        assert!(!none.contains("other", "default"));
        let two = Scope::Namespaces(vec!["a".into(), "b".into()]);
        assert_eq!(
            two.namespaces("default"),
            vec![Some("a".into()), Some("b".into())]
        );
        assert!(two.contains("b", "default"));
        assert!(!two.contains("default", "default"));
    }
}
