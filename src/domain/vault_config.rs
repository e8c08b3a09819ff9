//! The Vault side the chart renders (ConfigMap `secops-vault-policies`): ACL policies and
//! kubernetes-auth roles, parsed from the ConfigMap's layout, compared with what Vault holds,
//! and judged for ownership. I/O-free: `vault-setup` and `status` carry the decisions out.
//!
//! Layout (`charts/secops/templates/vault-policies.yaml`): one key `NAME.hcl` per policy,
//! applied as `secops-NAME` (the name the roles' `token_policies` use), and `roles.json`, an
//! object of `auth/MOUNT/role/NAME` to the role's fields.
//!
//! Ownership: ACL policies carry no metadata, so a policy written by secops starts with the
//! line [`POLICY_MARKER`]; a kubernetes-auth role has no free-form field either, so secops
//! records each role it owns under `<kv-mount>/secops/vault-setup/roles/MOUNT/NAME`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// The first line of every policy secops writes; what follows it names the body's digest.
pub const POLICY_MARKER: &str = "# managed-by: secops vault-setup";

/// The ConfigMap key holding the roles.
pub const ROLES_KEY: &str = "roles.json";

/// Where the ownership record of a role lives, inside the KV mount.
pub fn role_record_path(mount: &str, name: &str) -> String {
    format!("secops/vault-setup/roles/{mount}/{name}")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredPolicy {
    pub name: String,
    /// The rendered HCL, without the marker.
    pub body: String,
}

impl DesiredPolicy {
    pub fn api_path(&self) -> String {
        format!("sys/policies/acl/{}", self.name)
    }

    /// The text secops writes: the marker with the body's digest, then the body.
    pub fn text(&self) -> String {
        let body = normalize_text(&self.body);
        let digest = hex::encode(Sha256::digest(body.as_bytes()));
        format!("{POLICY_MARKER} (sha256:{digest})\n{body}\n")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DesiredRole {
    pub mount: String,
    pub name: String,
    /// The fields secops sets; other fields Vault reports are left alone.
    pub fields: BTreeMap<String, Value>,
}

impl DesiredRole {
    pub fn api_path(&self) -> String {
        format!("auth/{}/role/{}", self.mount, self.name)
    }
}

/// Everything the chart rendered for Vault.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DesiredConfig {
    pub policies: Vec<DesiredPolicy>,
    pub roles: Vec<DesiredRole>,
}

impl DesiredConfig {
    /// The auth mounts the roles live on, each once.
    pub fn auth_mounts(&self) -> Vec<String> {
        let mounts: BTreeSet<&str> = self.roles.iter().map(|r| r.mount.as_str()).collect();
        mounts.into_iter().map(String::from).collect()
    }
}

fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 128
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !text.starts_with('.')
}

/// Parses the ConfigMap's data (or the files of a directory holding it). `source` names it
/// in errors. Errors never quote file contents beyond names.
pub fn parse_rendered(source: &str, files: &BTreeMap<String, String>) -> Result<DesiredConfig> {
    let invalid = |reason: String| Error::Usage(format!("{source}: {reason}"));
    let mut config = DesiredConfig::default();
    for (key, text) in files {
        let Some(stem) = key.strip_suffix(".hcl") else {
            continue;
        };
        if !is_name(stem) {
            return Err(invalid(format!("{key:?} does not name a policy")));
        }
        if text.trim().is_empty() {
            return Err(invalid(format!("{key} is empty")));
        }
        config.policies.push(DesiredPolicy {
            name: format!("secops-{stem}"),
            body: text.clone(),
        });
    }
    let roles_text = files
        .get(ROLES_KEY)
        .ok_or_else(|| invalid(format!("no {ROLES_KEY}")))?;
    let roles: BTreeMap<String, Value> = serde_json::from_str(roles_text)
        .map_err(|_| invalid(format!("{ROLES_KEY} is not a JSON object of roles")))?;
    for (path, fields) in roles {
        let parts: Vec<&str> = path.split('/').collect();
        let (mount, name) = match parts.as_slice() {
            ["auth", mount, "role", name] if is_name(mount) && is_name(name) => (mount, name),
            _ => {
                return Err(invalid(format!(
                    "{ROLES_KEY}: {path:?} is not auth/MOUNT/role/NAME"
                )))
            }
        };
        let Value::Object(fields) = fields else {
            return Err(invalid(format!("{ROLES_KEY}: {path} is not an object")));
        };
        config.roles.push(DesiredRole {
            mount: mount.to_string(),
            name: name.to_string(),
            fields: fields.into_iter().collect(),
        });
    }
    if config.policies.is_empty() && config.roles.is_empty() {
        return Err(invalid("no policy and no role".into()));
    }
    Ok(config)
}

/// Line endings and trailing blanks do not make two policies differ.
fn normalize_text(text: &str) -> String {
    text.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
        .trim_matches('\n')
        .to_string()
}

/// The `path "..."` names a policy grants, for a diff that says what moved, not the text.
pub fn policy_paths(text: &str) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("path") {
            let rest = rest.trim_start();
            if let Some(quoted) = rest.strip_prefix('"') {
                if let Some(end) = quoted.find('"') {
                    paths.insert(quoted[..end].to_string());
                }
            }
        }
    }
    paths
}

/// What to do with one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Absent: write it.
    Create,
    /// Ours, but it differs from the rendered one (edited by hand, or a new chart): write it.
    Update,
    /// Someone else's, and `--adopt` was given: write it and own it from now on.
    Adopt,
    /// Ours and equal: nothing to write.
    Keep,
    /// Someone else's: refuse (exit 3) unless `--adopt`.
    Refuse,
}

/// A decision, with the names of what differs (never values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub action: Action,
    /// Changed role fields, or `policy` plus `+path`/`-path` entries for a policy.
    pub changes: Vec<String>,
}

impl Decision {
    fn new(action: Action, changes: Vec<String>) -> Self {
        Decision { action, changes }
    }

    /// Anything but `Keep` is drift for `status`.
    pub fn is_drift(&self) -> bool {
        self.action != Action::Keep
    }
}

/// Compares a rendered policy with Vault's text of the same name (`None`: absent).
pub fn decide_policy(desired: &DesiredPolicy, actual: Option<&str>, adopt: bool) -> Decision {
    let wanted = desired.text();
    let Some(actual) = actual else {
        return Decision::new(Action::Create, vec!["policy".into()]);
    };
    if normalize_text(actual) == normalize_text(&wanted) {
        return Decision::new(Action::Keep, vec![]);
    }
    let mut changes = vec!["policy".to_string()];
    let (before, after) = (policy_paths(actual), policy_paths(&wanted));
    changes.extend(after.difference(&before).map(|p| format!("+path {p}")));
    changes.extend(before.difference(&after).map(|p| format!("-path {p}")));
    let ours = actual.trim_start().starts_with(POLICY_MARKER);
    let action = match (ours, adopt) {
        (true, _) => Action::Update,
        (false, true) => Action::Adopt,
        (false, false) => Action::Refuse,
    };
    Decision::new(action, changes)
}

/// Seconds of a Vault duration (`600`, `"600"`, `"10m"`, `"1h30m"`), as the role API reads.
fn duration_seconds(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(text) => {
            if let Ok(n) = text.parse::<i64>() {
                return Some(n);
            }
            let mut total = 0i64;
            let mut number = String::new();
            for c in text.chars() {
                if c.is_ascii_digit() {
                    number.push(c);
                    continue;
                }
                let factor = match c {
                    's' => 1,
                    'm' => 60,
                    'h' => 3600,
                    _ => return None,
                };
                total += number.parse::<i64>().ok()? * factor;
                number.clear();
            }
            number.is_empty().then_some(total)
        }
        _ => None,
    }
}

/// A field value in comparable form: durations in seconds, lists as sorted sets of strings
/// (Vault keeps a comma string or a list alike), everything else as JSON.
fn normalize_field(key: &str, value: &Value) -> Value {
    if key.ends_with("_ttl") || key.ends_with("_period") || key == "period" {
        if let Some(seconds) = duration_seconds(value) {
            return Value::from(seconds);
        }
    }
    let list = |items: Vec<String>| {
        let set: BTreeSet<String> = items.into_iter().filter(|s| !s.is_empty()).collect();
        Value::from(set.into_iter().collect::<Vec<_>>())
    };
    match value {
        Value::Array(items) => list(
            items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| i.to_string())
                })
                .collect(),
        ),
        Value::String(text) if key.starts_with("bound_") || key.ends_with("_policies") => {
            list(text.split(',').map(|s| s.trim().to_string()).collect())
        }
        other => other.clone(),
    }
}

/// The fields secops sets that Vault holds differently (names only).
pub fn role_changes(desired: &DesiredRole, actual: &BTreeMap<String, Value>) -> Vec<String> {
    desired
        .fields
        .iter()
        .filter(|(key, value)| {
            let have = actual.get(key.as_str()).unwrap_or(&Value::Null);
            normalize_field(key, value) != normalize_field(key, have)
        })
        .map(|(key, _)| key.clone())
        .collect()
}

/// Compares a rendered role with Vault's (`None`: absent); `owned` says whether secops's
/// ownership record for it exists.
pub fn decide_role(
    desired: &DesiredRole,
    actual: Option<&BTreeMap<String, Value>>,
    owned: bool,
    adopt: bool,
) -> Decision {
    let Some(actual) = actual else {
        return Decision::new(Action::Create, desired.fields.keys().cloned().collect());
    };
    let changes = role_changes(desired, actual);
    let action = match (owned, adopt, changes.is_empty()) {
        (true, _, true) => Action::Keep,
        (true, _, false) => Action::Update,
        (false, true, _) => Action::Adopt,
        (false, false, _) => Action::Refuse,
    };
    Decision::new(action, changes)
}

/// A mount as Vault describes it (`sys/mounts/PATH`, `sys/auth/PATH`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountFacts {
    pub kind: String,
    /// `options.version` of a KV mount.
    pub version: Option<String>,
}

/// What to do about a mount secops needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MountAction {
    Enable,
    Keep,
}

/// What a mount secops needs is, and how a refusal names what it found.
struct Wanted<'a> {
    /// "KV v2 mount", "auth method".
    what: &'a str,
    action: &'a str,
    fits: fn(&MountFacts) -> bool,
    describe: fn(&MountFacts) -> String,
}

/// Absent is enabled only with `--enable-missing`; something else at that path is refused.
fn decide_mount(
    mount: &str,
    actual: Option<&MountFacts>,
    enable_missing: bool,
    wanted: Wanted,
) -> Result<MountAction> {
    match actual {
        None if enable_missing => Ok(MountAction::Enable),
        None => Err(Error::NotFound {
            what: format!(
                "{} {mount:?} (pass --enable-missing to enable it)",
                wanted.what
            ),
        }),
        Some(facts) if (wanted.fits)(facts) => Ok(MountAction::Keep),
        Some(facts) => Err(Error::Refused {
            action: format!("{} {mount:?}", wanted.action),
            detail: (wanted.describe)(facts),
        }),
    }
}

/// The KV v2 mount; another engine or KV v1 at that path is refused.
pub fn decide_kv_mount(
    mount: &str,
    actual: Option<&MountFacts>,
    enable_missing: bool,
) -> Result<MountAction> {
    let wanted = Wanted {
        what: "KV v2 mount",
        action: "use mount",
        fits: |facts| facts.kind == "kv" && facts.version.as_deref() == Some("2"),
        describe: |facts| {
            format!(
                "it is a {} engine (version {}), secops needs KV v2",
                facts.kind,
                facts.version.as_deref().unwrap_or("1")
            )
        },
    };
    decide_mount(mount, actual, enable_missing, wanted)
}

/// The kubernetes auth method at `mount`, under the same rules.
pub fn decide_auth_mount(
    mount: &str,
    actual: Option<&MountFacts>,
    enable_missing: bool,
) -> Result<MountAction> {
    let wanted = Wanted {
        what: "auth method at",
        action: "use auth mount",
        fits: |facts| facts.kind == "kubernetes",
        describe: |facts| format!("it is a {} auth method, not kubernetes", facts.kind),
    };
    decide_mount(mount, actual, enable_missing, wanted)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const HCL: &str = "# comment\npath \"secret/data/a/*\" {\n  capabilities = [\"read\"]\n}\n";

    fn files() -> BTreeMap<String, String> {
        let roles = json!({"auth/kubernetes/role/secops-handover": {
            "bound_service_account_names": ["secops-handover"],
            "bound_service_account_namespaces": ["secops"],
            "audience": "vault", "token_policies": ["secops-handover"],
            "token_ttl": "10m", "token_max_ttl": "30m"}});
        BTreeMap::from([
            ("handover.hcl".to_string(), HCL.to_string()),
            (ROLES_KEY.to_string(), roles.to_string()),
            ("README".to_string(), "ignored".to_string()),
        ])
    }

    fn role() -> DesiredRole {
        parse_rendered("test", &files()).unwrap().roles.remove(0)
    }

    /// What OpenBao answers on a read of the role the chart renders.
    fn as_vault_reads_it() -> BTreeMap<String, Value> {
        serde_json::from_value(json!({
            "bound_service_account_names": ["secops-handover"],
            "bound_service_account_namespaces": ["secops"],
            "audience": "vault", "token_policies": ["secops-handover"], "policies": ["secops-handover"],
            "token_ttl": 600, "token_max_ttl": 1800, "alias_name_source": "serviceaccount_uid",
            "token_bound_cidrs": [], "token_type": "default"}))
        .unwrap()
    }

    #[test]
    fn the_chart_layout_parses_into_named_policies_and_roles() {
        let config = parse_rendered("test", &files()).unwrap();
        assert_eq!(config.policies.len(), 1);
        assert_eq!(config.policies[0].name, "secops-handover");
        assert_eq!(
            config.policies[0].api_path(),
            "sys/policies/acl/secops-handover"
        );
        assert_eq!(
            config.roles[0].api_path(),
            "auth/kubernetes/role/secops-handover"
        );
        assert_eq!(config.auth_mounts(), ["kubernetes"]);
        for (key, value) in [
            (ROLES_KEY, "[1]"),
            (ROLES_KEY, r#"{"sys/x": {}}"#),
            (ROLES_KEY, r#"{"auth/k/role/../x": {}}"#),
            ("bad name.hcl", "x"),
            ("empty.hcl", " \n"),
        ] {
            let mut bad = files();
            bad.insert(key.into(), value.into());
            let error = parse_rendered("test", &bad).unwrap_err();
            assert_eq!(error.exit_status().code(), 2, "{key}: {value}");
        }
        let mut no_roles = files();
        no_roles.remove(ROLES_KEY);
        assert!(parse_rendered("test", &no_roles).is_err());
    }

    #[test]
    fn a_policy_is_ours_by_its_marker_and_compared_by_normalized_text() {
        let policy = DesiredPolicy {
            name: "secops-handover".into(),
            body: HCL.into(),
        };
        let text = policy.text();
        assert!(text.starts_with(POLICY_MARKER));
        assert!(text.contains("(sha256:"));
        assert_eq!(decide_policy(&policy, None, false).action, Action::Create);
        assert_eq!(
            decide_policy(&policy, Some(&text), false).action,
            Action::Keep
        );
        let crlf = text.replace('\n', "\r\n") + "\n\n";
        assert_eq!(
            decide_policy(&policy, Some(&crlf), false).action,
            Action::Keep
        );
        let edited = text.replace("secret/data/a/*", "secret/data/*");
        let decision = decide_policy(&policy, Some(&edited), false);
        assert_eq!(decision.action, Action::Update);
        assert_eq!(
            decision.changes,
            ["policy", "+path secret/data/a/*", "-path secret/data/*"]
        );
        let foreign = "path \"secret/*\" { capabilities = [\"read\"] }";
        assert_eq!(
            decide_policy(&policy, Some(foreign), false).action,
            Action::Refuse
        );
        assert_eq!(
            decide_policy(&policy, Some(foreign), true).action,
            Action::Adopt
        );
        // A marker further down is not a marker.
        let hidden = format!("{foreign}\n{POLICY_MARKER}");
        assert_eq!(
            decide_policy(&policy, Some(&hidden), false).action,
            Action::Refuse
        );
    }

    #[test]
    fn a_role_is_compared_on_the_fields_secops_sets_as_vault_reports_them() {
        let role = role();
        let read = as_vault_reads_it();
        assert_eq!(
            decide_role(&role, Some(&read), true, false).action,
            Action::Keep
        );
        let mut edited = read.clone();
        edited.insert("token_ttl".into(), json!(3600));
        edited.insert(
            "bound_service_account_namespaces".into(),
            json!(["secops", "other"]),
        );
        let decision = decide_role(&role, Some(&edited), true, false);
        assert_eq!(decision.action, Action::Update);
        assert_eq!(
            decision.changes,
            ["bound_service_account_namespaces", "token_ttl"]
        );
        assert_eq!(
            decide_role(&role, Some(&read), false, false).action,
            Action::Refuse
        );
        assert_eq!(
            decide_role(&role, Some(&read), false, true).action,
            Action::Adopt
        );
        assert_eq!(
            decide_role(&role, None, false, false).action,
            Action::Create
        );
        // Order of a list and a comma string do not make a difference.
        let mut reordered = read.clone();
        reordered.insert("token_policies".into(), json!("secops-handover"));
        assert!(role_changes(&role, &reordered).is_empty());
    }

    #[test]
    fn durations_read_back_as_seconds() {
        for (text, seconds) in [("10m", 600), ("1h30m", 5400), ("45", 45), ("2h", 7200)] {
            assert_eq!(duration_seconds(&json!(text)), Some(seconds), "{text}");
        }
        assert_eq!(duration_seconds(&json!("10d")), None);
        assert_eq!(duration_seconds(&json!("10m5")), None);
    }

    #[test]
    fn mounts_are_enabled_only_when_asked_and_never_replaced() {
        let kv2 = MountFacts {
            kind: "kv".into(),
            version: Some("2".into()),
        };
        let kv1 = MountFacts {
            kind: "kv".into(),
            version: None,
        };
        assert_eq!(
            decide_kv_mount("secret", Some(&kv2), false).unwrap(),
            MountAction::Keep
        );
        assert_eq!(
            decide_kv_mount("secret", None, true).unwrap(),
            MountAction::Enable
        );
        assert_eq!(
            decide_kv_mount("secret", None, false)
                .unwrap_err()
                .exit_status()
                .code(),
            4
        );
        assert_eq!(
            decide_kv_mount("secret", Some(&kv1), true)
                .unwrap_err()
                .exit_status()
                .code(),
            3
        );
        let k8s = MountFacts {
            kind: "kubernetes".into(),
            version: None,
        };
        assert_eq!(
            decide_auth_mount("k", Some(&k8s), false).unwrap(),
            MountAction::Keep
        );
        assert_eq!(
            decide_auth_mount("k", Some(&kv2), true)
                .unwrap_err()
                .exit_status()
                .code(),
            3
        );
    }

    #[test]
    fn names_paths_and_drift_are_decided_at_their_edges() {
        assert_eq!(
            role_record_path("kubernetes", "secops-push"),
            "secops/vault-setup/roles/kubernetes/secops-push"
        );
        for good in ["a", "a.b", "a_b-c", &"x".repeat(128)] {
            assert!(is_name(good), "{good:?}");
        }
        for bad in ["", ".a", "a/b", "a b", &"x".repeat(129)] {
            assert!(!is_name(bad), "{bad:?}");
        }
        assert!(!Decision::new(Action::Keep, vec![]).is_drift());
        for action in [
            Action::Create,
            Action::Update,
            Action::Adopt,
            Action::Refuse,
        ] {
            assert!(Decision::new(action, vec![]).is_drift(), "{action:?}");
        }
        let mut roles_only = files();
        roles_only.remove("handover.hcl");
        let config = parse_rendered("test", &roles_only).unwrap();
        assert!(config.policies.is_empty());
        assert_eq!(config.roles.len(), 1);
        let empty = BTreeMap::from([(ROLES_KEY.to_string(), "{}".to_string())]);
        assert_eq!(
            parse_rendered("test", &empty)
                .unwrap_err()
                .exit_status()
                .code(),
            2
        );
        let mut not_object = files();
        not_object.insert(
            ROLES_KEY.into(),
            r#"{"auth/kubernetes/role/r": [1]}"#.into(),
        );
        assert!(parse_rendered("test", &not_object).is_err());
        for path in [
            "auth/kubernetes/role/.hidden",
            "auth/.k/role/r",
            "auth/k/role/a b",
        ] {
            let mut bad = files();
            bad.insert(ROLES_KEY.into(), format!(r#"{{"{path}": {{}}}}"#));
            assert!(parse_rendered("test", &bad).is_err(), "{path}");
        }
    }

    #[test]
    fn fields_compare_as_vault_keeps_them() {
        assert_eq!(duration_seconds(&json!(600)), Some(600));
        assert_eq!(duration_seconds(&json!(true)), None);
        assert_eq!(duration_seconds(&json!("1h1m1s")), Some(3661));
        assert_eq!(normalize_field("period", &json!("1m")), json!(60));
        assert_eq!(normalize_field("token_period", &json!("1m")), json!(60));
        assert_eq!(normalize_field("token_ttl", &json!("soon")), json!("soon"));
        assert_eq!(
            normalize_field("bound_x", &json!("b, a,,a")),
            json!(["a", "b"])
        );
        assert_eq!(normalize_field("token_policies", &json!("p")), json!(["p"]));
        assert_eq!(normalize_field("audience", &json!("a,b")), json!("a,b"));
        assert_eq!(
            normalize_field("other", &json!([2, "x"])),
            json!(["2", "x"])
        );
        assert_eq!(normalize_text("\n\na  \r\nb\n\n"), "a\nb");
        assert_eq!(
            policy_paths("# path \"hidden\"\npath \"a\" {}\n  path \"b\"\npathx"),
            BTreeSet::from(["a".to_string(), "b".to_string()])
        );
    }

    #[test]
    fn only_kv_version_2_is_a_kv_v2_mount() {
        for (kind, version) in [("generic", Some("2")), ("kv", Some("1"))] {
            let facts = MountFacts {
                kind: kind.into(),
                version: version.map(String::from),
            };
            let refused = decide_kv_mount("secret", Some(&facts), true).unwrap_err();
            assert_eq!(refused.exit_status().code(), 3, "{kind} {version:?}");
        }
        assert_eq!(
            decide_auth_mount("k", None, false)
                .unwrap_err()
                .exit_status()
                .code(),
            4
        );
        assert_eq!(
            decide_auth_mount("k", None, true).unwrap(),
            MountAction::Enable
        );
    }
}
