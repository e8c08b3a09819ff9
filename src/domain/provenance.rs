//! Provenance: who owns a Vault path, recorded in its KV v2 `custom_metadata` (`docs/contract.md`
//! §3).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::fingerprint::Fingerprint;
use super::names::meta;
use super::{ClusterName, SecretRef};

/// Where a Vault secret came from: `bootstrap:NS/NAME` or `push:NS/NAME` in the unnamed
/// cluster, `bootstrap:CLUSTER/NS/NAME` or `push:CLUSTER/NS/NAME` in a named one (the
/// Secret's [`SecretRef::cluster`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Bootstrap(SecretRef),
    Push(SecretRef),
    /// Written by something else that still used our key (kept as found, never overwritten).
    Other(String),
}

impl Origin {
    pub fn parse(text: &str) -> Origin {
        if let Some(r) = text
            .strip_prefix("bootstrap:")
            .and_then(parse_origin_secret)
        {
            return Origin::Bootstrap(r);
        }
        if let Some(r) = text.strip_prefix("push:").and_then(parse_origin_secret) {
            return Origin::Push(r);
        }
        Origin::Other(text.to_string())
    }

    /// The Secret it names, with its cluster; `None` for an origin secops did not write.
    pub fn secret(&self) -> Option<&SecretRef> {
        match self {
            Origin::Bootstrap(r) | Origin::Push(r) => Some(r),
            Origin::Other(_) => None,
        }
    }
}

/// `NS/NAME` (the unnamed cluster) or `CLUSTER/NS/NAME`.
fn parse_origin_secret(text: &str) -> Option<SecretRef> {
    match text.split('/').collect::<Vec<_>>()[..] {
        [_, _] => SecretRef::parse(text).ok(),
        [cluster, namespace, name] => {
            let cluster = ClusterName::parse(cluster).ok().flatten()?;
            let secret = SecretRef::parse(&format!("{namespace}/{name}")).ok()?;
            Some(secret.in_cluster(Some(cluster)))
        }
        _ => None,
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, r) = match self {
            Origin::Bootstrap(r) => ("bootstrap", r),
            Origin::Push(r) => ("push", r),
            Origin::Other(text) => return f.write_str(text),
        };
        match &r.cluster {
            Some(cluster) => write!(f, "{kind}:{cluster}/{r}"),
            None => write!(f, "{kind}:{r}"),
        }
    }
}

/// The ownership record of a path, as read back from Vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    pub origin: Origin,
    pub origin_uid: String,
    pub origin_version: u64,
    pub origin_fingerprint: Option<Fingerprint>,
}

impl Provenance {
    /// `None` when the path carries no secops ownership at all.
    pub fn from_metadata(custom: &BTreeMap<String, String>) -> Option<Provenance> {
        let origin = Origin::parse(custom.get(meta::ORIGIN)?);
        Some(Provenance {
            origin,
            origin_uid: custom.get(meta::ORIGIN_UID).cloned().unwrap_or_default(),
            origin_version: custom
                .get(meta::ORIGIN_VERSION)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            origin_fingerprint: custom
                .get(meta::ORIGIN_FINGERPRINT)
                .and_then(|f| Fingerprint::parse(f)),
        })
    }

    /// Same origin and same object (uid): a Secret deleted and re-created under the same
    /// name is a different owner.
    pub fn is_owned_by(&self, origin: &Origin, uid: &str) -> bool {
        self.origin == *origin && self.origin_uid == uid
    }

    /// The owner, as named in refusals and reports.
    pub fn owner(&self) -> String {
        format!("{} (uid {})", self.origin, self.origin_uid)
    }
}

/// Whose a Vault path is, from a claimant's point of view.
#[derive(Debug, PartialEq, Eq)]
pub enum Ownership<'a> {
    /// Provenance names the claimant (origin and uid).
    Ours(&'a Provenance),
    /// Provenance names someone else.
    Theirs { owner: String },
    /// No secops provenance at all (absent path, or data written by something else).
    Unowned,
}

impl<'a> Ownership<'a> {
    pub fn of(provenance: Option<&'a Provenance>, origin: &Origin, uid: &str) -> Self {
        match provenance {
            Some(p) if p.is_owned_by(origin, uid) => Ownership::Ours(p),
            Some(p) => Ownership::Theirs { owner: p.owner() },
            None => Ownership::Unowned,
        }
    }
}

/// Changes to a path's `custom_metadata`, sent as a JSON merge patch: keys not named are
/// left as they are (so rotation records and foreign keys such as a Vault team's `owner`
/// survive), `None` removes a key.
pub type MetadataPatch = BTreeMap<String, Option<String>>;

/// The ownership a handover or push records.
pub struct OwnershipRecord<'a> {
    pub origin: &'a Origin,
    pub uid: &'a str,
    pub version: u64,
    pub fingerprint: &'a Fingerprint,
    pub base64_keys: &'a BTreeSet<String>,
    pub k8s_type: &'a str,
    pub at: &'a str,
    /// `secops-handover-at` for a handover; a push records its time on the source instead.
    pub at_key: Option<&'static str>,
    /// A push that took over data it did not write (`--adopt`) says so.
    pub adopted: bool,
    /// The maximum age of the value (`secops.dev/max-age` on the source), for `status`.
    pub max_age: Option<i64>,
}

impl OwnershipRecord<'_> {
    pub fn changes(&self) -> MetadataPatch {
        let mut patch = MetadataPatch::new();
        let mut set = |key: &str, value: String| patch.insert(key.to_string(), Some(value));
        set(meta::ORIGIN, self.origin.to_string());
        set(meta::ORIGIN_UID, self.uid.to_string());
        set(meta::ORIGIN_VERSION, self.version.to_string());
        set(meta::ORIGIN_FINGERPRINT, self.fingerprint.to_string());
        set(meta::K8S_TYPE, self.k8s_type.to_string());
        if let Some(key) = self.at_key {
            set(key, self.at.to_string());
        }
        if self.adopted {
            set(meta::ADOPTED_AT, self.at.to_string());
        }
        if let Some(seconds) = self.max_age {
            set(meta::MAX_AGE, super::expiry::format_max_age(seconds));
        }
        let base64 = (!self.base64_keys.is_empty()).then(|| encode_key_list(self.base64_keys));
        patch.insert(meta::BASE64_KEYS.to_string(), base64);
        patch
    }
}

pub fn encode_key_list(keys: &BTreeSet<String>) -> String {
    keys.iter().cloned().collect::<Vec<_>>().join(",")
}

pub fn decode_key_list(custom: &BTreeMap<String, String>) -> BTreeSet<String> {
    custom
        .get(meta::BASE64_KEYS)
        .map(|list| {
            list.split(',')
                .filter(|k| !k.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_round_trip() {
        for text in ["bootstrap:team-a/db", "push:ops/cert"] {
            assert_eq!(Origin::parse(text).to_string(), text);
        }
        assert_eq!(Origin::parse("manual"), Origin::Other("manual".into()));
        assert_eq!(
            Origin::parse("bootstrap:bad"),
            Origin::Other("bootstrap:bad".into())
        );
    }

    #[test]
    fn origins_name_their_cluster_and_old_ones_belong_to_the_unnamed_cluster() {
        let east = ClusterName::parse("east").unwrap();
        let named = Origin::parse("bootstrap:east/team-a/db");
        assert_eq!(
            named,
            Origin::Bootstrap(SecretRef::new("team-a", "db").in_cluster(east.clone()))
        );
        assert_eq!(named.to_string(), "bootstrap:east/team-a/db");
        assert_eq!(
            Origin::parse("push:west/ops/cert").to_string(),
            "push:west/ops/cert"
        );
        let old = Origin::parse("bootstrap:team-a/db");
        assert_eq!(old.secret().unwrap().cluster, None);
        assert_ne!(
            old, named,
            "the same NS/NAME in another cluster is another origin"
        );
        for bad in [
            "bootstrap:East/team-a/db",
            "bootstrap:/team-a/db",
            "bootstrap:a/b/c/d",
            "push:a.b/ns/n",
        ] {
            assert_eq!(Origin::parse(bad), Origin::Other(bad.into()), "{bad}");
        }
    }

    #[test]
    fn ownership_needs_origin_and_uid() {
        let mut custom = BTreeMap::new();
        custom.insert(meta::ORIGIN.to_string(), "bootstrap:a/b".to_string());
        custom.insert(meta::ORIGIN_UID.to_string(), "uid-1".to_string());
        custom.insert(meta::ORIGIN_VERSION.to_string(), "3".to_string());
        let p = Provenance::from_metadata(&custom).unwrap();
        let origin = Origin::Bootstrap(SecretRef::new("a", "b"));
        assert!(p.is_owned_by(&origin, "uid-1"));
        assert!(!p.is_owned_by(&origin, "uid-2"));
        assert!(!p.is_owned_by(&Origin::Push(SecretRef::new("a", "b")), "uid-1"));
        assert_eq!(p.origin_version, 3);
        assert!(Provenance::from_metadata(&BTreeMap::new()).is_none());
        assert_eq!(
            Ownership::of(Some(&p), &origin, "uid-1"),
            Ownership::Ours(&p)
        );
        assert_eq!(
            Ownership::of(Some(&p), &origin, "uid-2"),
            Ownership::Theirs {
                owner: "bootstrap:a/b (uid uid-1)".into()
            }
        );
        assert_eq!(Ownership::of(None, &origin, "uid-1"), Ownership::Unowned);
    }

    #[test]
    fn an_ownership_record_sets_what_it_knows_and_removes_a_stale_key_list() {
        let origin = Origin::parse("push:ops/cert");
        let fingerprint = Fingerprint::parse(&format!("hmac-sha256:{}", "a".repeat(64))).unwrap();
        let keys: BTreeSet<String> = ["tls.key".to_string(), "ca".to_string()].into();
        let record = OwnershipRecord {
            origin: &origin,
            uid: "uid-1",
            version: 2,
            fingerprint: &fingerprint,
            base64_keys: &keys,
            k8s_type: "kubernetes.io/tls",
            at: "2026-01-01T00:00:00Z",
            at_key: None,
            adopted: true,
            max_age: Some(3600),
        };
        let set = |patch: &MetadataPatch, key: &str| patch.get(key).cloned().flatten();
        let patch = record.changes();
        assert_eq!(set(&patch, meta::ORIGIN).as_deref(), Some("push:ops/cert"));
        assert_eq!(set(&patch, meta::ORIGIN_VERSION).as_deref(), Some("2"));
        assert_eq!(
            set(&patch, meta::BASE64_KEYS).as_deref(),
            Some("ca,tls.key")
        );
        assert_eq!(
            set(&patch, meta::ADOPTED_AT).as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
        assert_eq!(set(&patch, meta::MAX_AGE).as_deref(), Some("3600s"));
        assert!(!patch.contains_key(meta::HANDOVER_AT));

        let none = BTreeSet::new();
        let handover = OwnershipRecord {
            base64_keys: &none,
            at_key: Some(meta::HANDOVER_AT),
            adopted: false,
            max_age: None,
            ..record
        };
        let patch = handover.changes();
        assert_eq!(
            patch.get(meta::BASE64_KEYS),
            Some(&None),
            "no binary keys: an older list is removed"
        );
        assert_eq!(
            set(&patch, meta::HANDOVER_AT).as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
        assert!(!patch.contains_key(meta::ADOPTED_AT));
        assert!(!patch.contains_key(meta::MAX_AGE));

        let custom = BTreeMap::from([(meta::BASE64_KEYS.to_string(), "a,,b".to_string())]);
        assert_eq!(
            decode_key_list(&custom),
            ["a".to_string(), "b".to_string()].into()
        );
        assert!(decode_key_list(&BTreeMap::new()).is_empty());
    }
}
