//! Where a Kubernetes-sourced write may land in Vault: path syntax and the `--allowed-path`
//! policy (glob templates with `{namespace}` and `{cluster}`; `*` is one segment, `**` any
//! number).

use crate::error::{Error, Result};

use super::names::is_reserved;
use super::ClusterName;

const MAX_PATH_LEN: usize = 512;

/// Checks a KV path from an annotation or a flag; the reason names what is wrong.
pub fn validate_path(path: &str) -> std::result::Result<(), String> {
    if path.is_empty() {
        return Err("the Vault path is empty".into());
    }
    if path.len() > MAX_PATH_LEN {
        return Err(format!(
            "the Vault path is longer than {MAX_PATH_LEN} bytes"
        ));
    }
    if let Some(c) = path
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')))
    {
        return Err(format!(
            "the Vault path contains {c:?}; allowed are letters, digits, '-', '_', '.' and '/'"
        ));
    }
    for segment in path.split('/') {
        match segment {
            "" => return Err(format!("the Vault path {path:?} has an empty segment")),
            "." | ".." => return Err(format!("the Vault path {path:?} has a {segment:?} segment")),
            _ => {}
        }
    }
    Ok(())
}

/// Mount names follow the same rules as paths.
pub fn validate_mount(mount: &str) -> std::result::Result<(), String> {
    validate_path(mount).map_err(|reason| reason.replace("Vault path", "KV mount"))
}

/// The `--allowed-path` templates, and the KV mounts besides `--kv-mount` that a
/// `secops.dev/vault-mount` annotation may name (`--allowed-mount`; none by default).
#[derive(Debug, Clone)]
pub struct AllowedPaths {
    patterns: Vec<String>,
    mounts: Vec<String>,
    /// What `{cluster}` stands for (`--cluster-name`).
    cluster: Option<ClusterName>,
}

impl AllowedPaths {
    pub const DEFAULT: &'static str = "{namespace}/**";

    /// The templates of the unnamed cluster, where `{cluster}` has nothing to stand for.
    pub fn new(patterns: Vec<String>) -> Result<Self> {
        Self::in_cluster(patterns, None)
    }

    pub fn in_cluster(patterns: Vec<String>, cluster: Option<&ClusterName>) -> Result<Self> {
        let patterns: Vec<String> = patterns
            .into_iter()
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        let cluster = cluster.cloned();
        if patterns.is_empty() {
            return Ok(Self {
                patterns: vec![Self::DEFAULT.to_string()],
                mounts: Vec::new(),
                cluster,
            });
        }
        for pattern in &patterns {
            let invalid =
                |reason: &str| Error::Usage(format!("--allowed-path {pattern:?}: {reason}"));
            if cluster.is_none() && pattern.contains("{cluster}") {
                return Err(invalid("{cluster} needs --cluster-name (SECOPS_CLUSTER)"));
            }
            let sample = pattern
                .replace("{namespace}", "ns")
                .replace("{cluster}", "cluster")
                .replace("**", "x")
                .replace('*', "x");
            validate_path(&sample).map_err(|reason| invalid(&reason))?;
        }
        Ok(Self {
            patterns,
            mounts: Vec::new(),
            cluster,
        })
    }

    pub fn with_mounts(mut self, mounts: Vec<String>) -> Result<Self> {
        for mount in mounts.iter().map(|m| m.trim()).filter(|m| !m.is_empty()) {
            validate_mount(mount)
                .map_err(|reason| Error::Usage(format!("--allowed-mount {mount:?}: {reason}")))?;
            self.mounts.push(mount.to_string());
        }
        Ok(self)
    }

    /// A Secret may name another mount only when the operator allowed it: otherwise an
    /// annotation could aim a write at any engine Vault's policy happens to permit.
    pub fn allows_mount(&self, mount: &str, default_mount: &str) -> bool {
        mount == default_mount || self.mounts.iter().any(|m| m == mount)
    }

    /// True when some template, with `{namespace}` and `{cluster}` filled in, matches the
    /// path. Paths in secops's own reserved prefix never match.
    pub fn allows(&self, namespace: &str, path: &str) -> bool {
        if is_reserved(path) {
            return false;
        }
        let path: Vec<&str> = path.split('/').collect();
        self.patterns.iter().any(|pattern| {
            let mut pattern = pattern.replace("{namespace}", namespace);
            if let Some(cluster) = &self.cluster {
                pattern = pattern.replace("{cluster}", cluster.as_str());
            }
            let segments: Vec<&str> = pattern.split('/').collect();
            matches_segments(&segments, &path)
        })
    }

    pub fn describe(&self) -> String {
        self.patterns.join(", ")
    }
}

/// Glob matching by dynamic programming, linear in the pattern times the input: after each
/// pattern element, `reachable[j]` says whether the pattern read so far can end just before
/// the input's element `j`. (A backtracking matcher is exponential in the number of
/// wildcards: `{namespace}/**/**/**/**/**/zz` over a 150-segment path took seconds.)
fn glob<P, T>(
    pattern: &[P],
    input: &[T],
    is_any: impl Fn(&P) -> bool,
    matches: impl Fn(&P, &T) -> bool,
) -> bool {
    let mut reachable = vec![false; input.len() + 1];
    reachable[0] = true;
    for element in pattern {
        let mut next = vec![false; input.len() + 1];
        if is_any(element) {
            let mut seen = false;
            for (j, slot) in next.iter_mut().enumerate() {
                seen |= reachable[j];
                *slot = seen;
            }
        } else {
            for (j, item) in input.iter().enumerate() {
                next[j + 1] = reachable[j] && matches(element, item);
            }
        }
        reachable = next;
    }
    reachable[input.len()]
}

/// `**` is any number of segments; within a segment, `*` is any run of characters.
fn matches_segments(pattern: &[&str], path: &[&str]) -> bool {
    glob(
        pattern,
        path,
        |p| *p == "**",
        |p, s| glob(p.as_bytes(), s.as_bytes(), |c| *c == b'*', |c, b| c == b),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(patterns: &[&str]) -> AllowedPaths {
        AllowedPaths::new(patterns.iter().map(|p| p.to_string()).collect()).unwrap()
    }

    #[test]
    fn default_policy_keeps_a_namespace_in_its_own_subtree() {
        let p = policy(&[]);
        assert!(p.allows("team-a", "team-a/db"));
        assert!(p.allows("team-a", "team-a/apps/db/primary"));
        assert!(!p.allows("team-a", "team-b/db"));
        assert!(
            p.allows("team-a", "team-a"),
            "`**` also matches no segment at all"
        );
    }

    #[test]
    fn matching_stays_linear_under_many_wildcards() {
        let p = policy(&["{namespace}/**/**/**/**/**/**/**/zz"]);
        let long = vec!["s"; 250].join("/");
        assert!(!p.allows("ns", &format!("ns/{long}")));
        assert!(p.allows("ns", &format!("ns/{long}/zz")));
        assert!(p.allows("ns", "ns/zz"));
        let stars = policy(&["x/*a*a*a*a*a*a*a*a*a*a*b"]);
        assert!(!stars.allows("ns", &format!("x/{}", "a".repeat(400))));
        assert!(stars.allows("ns", &format!("x/{}b", "a".repeat(400))));
    }

    #[test]
    fn single_star_is_one_segment() {
        let p = policy(&["shared/*/creds"]);
        assert!(p.allows("x", "shared/db/creds"));
        assert!(!p.allows("x", "shared/db/extra/creds"));
        assert!(policy(&["apps/db-*"]).allows("x", "apps/db-main"));
    }

    #[test]
    fn cluster_placeholder_is_the_cluster_name_and_needs_one() {
        let east = ClusterName::parse("east").unwrap();
        let templates = || vec!["{cluster}/{namespace}/**".to_string()];
        let p = AllowedPaths::in_cluster(templates(), east.as_ref()).unwrap();
        assert!(p.allows("team-a", "east/team-a/db"));
        assert!(!p.allows("team-a", "west/team-a/db"));
        assert!(!p.allows("team-a", "team-a/db"));
        let unnamed = AllowedPaths::new(templates()).unwrap_err();
        assert_eq!(unnamed.exit_status().code(), 2);
        assert!(unnamed.to_string().contains("--cluster-name"), "{unnamed}");
    }

    #[test]
    fn reserved_prefix_is_never_allowed() {
        let p = policy(&["**"]);
        assert!(p.allows("secops", "anything/else"));
        assert!(!p.allows("secops", "secops/fingerprint-key"));
        assert!(!policy(&[]).allows("secops", "secops/rotations/x"));
    }

    #[test]
    fn hostile_paths_are_rejected_with_a_reason() {
        for bad in [
            "", "a//b", "a/../b", "./a", "a/", "/a", "a\0b", "a\nb", "a b", "a%2e",
        ] {
            assert!(validate_path(bad).is_err(), "{bad:?}");
        }
        assert!(validate_path(&"a".repeat(513)).is_err());
        assert!(validate_path("team-a/postgres_main.v2").is_ok());
    }

    #[test]
    fn a_path_may_be_exactly_512_bytes_long() {
        assert!(validate_path(&"a".repeat(512)).is_ok());
        assert!(validate_path(&"a".repeat(513))
            .unwrap_err()
            .contains("longer than 512"));
        assert!(validate_path("a").is_ok());
    }

    #[test]
    fn every_character_and_segment_rule_names_its_reason() {
        assert!(validate_path("a b").unwrap_err().contains("' '"));
        assert!(validate_path("a//b").unwrap_err().contains("empty segment"));
        assert!(validate_path("a/../b").unwrap_err().contains("\"..\""));
        assert!(validate_path("./a").unwrap_err().contains("\".\""));
        assert!(
            validate_path("a.b/c-d/e_f").is_ok(),
            "dots inside names are fine"
        );
        let mount = validate_mount("a b").unwrap_err();
        assert!(mount.contains("KV mount"), "{mount}");
        assert!(validate_mount("kv-v2").is_ok());
    }

    #[test]
    fn only_the_default_mount_and_the_allowed_ones_may_be_named() {
        let p = policy(&[]);
        assert!(p.allows_mount("secret", "secret"));
        assert!(!p.allows_mount("kv", "secret"));
        let with = p
            .with_mounts(vec![" kv ".into(), "".into(), "team".into()])
            .unwrap();
        assert!(with.allows_mount("kv", "secret"));
        assert!(with.allows_mount("team", "secret"));
        assert!(with.allows_mount("secret", "secret"));
        assert!(!with.allows_mount("other", "secret"));
        assert!(
            !with.allows_mount("", "secret"),
            "an empty entry allows nothing"
        );
        let bad = policy(&[]).with_mounts(vec!["../sys".into()]).unwrap_err();
        assert_eq!(bad.exit_status().code(), 2);
    }

    #[test]
    fn patterns_are_checked_and_described_as_given() {
        let p = policy(&[" shared/*/creds ", "{namespace}/**"]);
        assert_eq!(p.describe(), "shared/*/creds, {namespace}/**");
        assert!(p.allows("ns", "shared/db/creds"));
        assert!(p.allows("ns", "ns/x"));
        assert!(!p.allows("ns", "shared/db/other"));
        assert_eq!(policy(&["", " "]).describe(), AllowedPaths::DEFAULT);
        let bad = AllowedPaths::new(vec!["a/../b".into()]).unwrap_err();
        assert_eq!(bad.exit_status().code(), 2);
    }

    #[test]
    fn a_literal_segment_matches_only_itself() {
        let p = policy(&["apps/db"]);
        assert!(p.allows("x", "apps/db"));
        assert!(!p.allows("x", "apps/dc"));
        assert!(!p.allows("x", "apps"));
        assert!(!p.allows("x", "apps/db/more"));
        assert!(!p.allows("x", "other/db"));
        assert!(policy(&["a*"]).allows("x", "a"), "`*` may be empty");
        assert!(!policy(&["a*b"]).allows("x", "ab/x"));
        assert!(
            !policy(&["*"]).allows("x", "a/b"),
            "`*` stays in one segment"
        );
    }
}
