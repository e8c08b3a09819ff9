//! `vault-setup` (issue #22) against OpenBao: fresh apply, re-apply unchanged, hand edits
//! detected by `status` and restored, foreign objects refused, dry runs that write nothing,
//! and a role it applied logging a step in through the emulator. Each test has its own
//! policy names and auth mount, so tests never share Vault objects.

use std::path::Path;

use serde_json::{json, Value};

use crate::support::{chart_policy, secops, secops_with, Cluster, TempDir, BAO};

/// The chart's ConfigMap layout (`NAME.hcl`, `roles.json`) for policy `secops-{stem}` and
/// role `{stem}` on auth mount `mount`.
fn rendered(dir: &Path, stem: &str, mount: &str) {
    rendered_in(dir, stem, mount, "secret")
}

fn rendered_in(dir: &Path, stem: &str, mount: &str, kv: &str) {
    // The handover policy exactly as the chart renders it for namespace `stem`.
    let hcl = chart_policy("handover", &[stem.to_string()], kv);
    std::fs::write(dir.join(format!("{stem}.hcl")), hcl).unwrap();
    let roles = json!({format!("auth/{mount}/role/{stem}"): {
        "bound_service_account_names": [stem],
        "bound_service_account_namespaces": [stem],
        "audience": "vault",
        "token_policies": [format!("secops-{stem}")],
        "token_ttl": "10m",
        "token_max_ttl": "30m",
    }});
    std::fs::write(dir.join("roles.json"), roles.to_string()).unwrap();
}

fn enable_kubernetes_auth(mount: &str) {
    let (code, body) = BAO.api(
        "POST",
        &format!("sys/auth/{mount}"),
        Some(json!({"type": "kubernetes"})),
    );
    assert_eq!(code, 204, "{body}");
}

fn setup(dir: &Path, extra: &[&str]) -> crate::support::Run {
    let dir = dir.to_str().unwrap().to_string();
    let mut args = vec!["vault-setup", "--from-dir", &dir];
    args.extend_from_slice(extra);
    secops(None, &args)
}

fn outcomes(run: &crate::support::Run) -> Vec<(String, String, String)> {
    run.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["path"].as_str().unwrap().to_string(),
                i["action"].as_str().unwrap().to_string(),
                i["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn policy(name: &str) -> Option<String> {
    let (code, body) = BAO.api("GET", &format!("sys/policies/acl/{name}"), None);
    (code == 200).then(|| body["data"]["policy"].as_str().unwrap().to_string())
}

fn role(mount: &str, name: &str) -> Option<Value> {
    let (code, body) = BAO.api("GET", &format!("auth/{mount}/role/{name}"), None);
    (code == 200).then(|| body["data"].clone())
}

#[test]
fn dry_run_writes_nothing_then_a_fresh_apply_and_a_re_apply_that_is_unchanged() {
    let dir = TempDir::new("vs-fresh");
    let (stem, mount) = ("vs-fresh", "k8s-vs-fresh");
    rendered(dir.path(), stem, mount);
    enable_kubernetes_auth(mount);

    let dry = setup(dir.path(), &["--dry-run"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(dry.json()["outcome"], "planned");
    assert_eq!(
        outcomes(&dry),
        [
            (
                format!("sys/policies/acl/secops-{stem}"),
                "create".into(),
                "planned".into()
            ),
            (
                format!("auth/{mount}/role/{stem}"),
                "create".into(),
                "planned".into()
            ),
        ]
    );
    assert!(
        policy(&format!("secops-{stem}")).is_none(),
        "a dry run wrote the policy"
    );
    assert!(role(mount, stem).is_none(), "a dry run wrote the role");

    let applied = setup(dir.path(), &[]);
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    assert_eq!(applied.json()["counts"], json!({"applied": 2}));
    let text = policy(&format!("secops-{stem}")).unwrap();
    assert!(
        text.starts_with("# managed-by: secops vault-setup (sha256:"),
        "{text}"
    );
    let written = role(mount, stem).unwrap();
    assert_eq!(written["token_ttl"], 600);
    assert_eq!(written["token_policies"], json!([format!("secops-{stem}")]));
    assert!(applied.stderr.contains("\"audit\":true"));

    let again = setup(dir.path(), &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.json()["counts"], json!({"unchanged": 2}));
    assert!(
        !again.stderr.contains("\"audit\":true"),
        "a re-run changes nothing"
    );
}

#[test]
fn a_policy_or_role_edited_by_hand_is_reported_by_status_and_restored() {
    let cluster = Cluster::start();
    cluster.namespace("vs-drift");
    let dir = TempDir::new("vs-drift");
    let (stem, mount) = ("vs-drift", "k8s-vs-drift");
    rendered(dir.path(), stem, mount);
    enable_kubernetes_auth(mount);
    assert_eq!(setup(dir.path(), &[]).code, 0);
    let config = dir.path().to_str().unwrap().to_string();
    let status = || {
        secops(
            Some(&cluster),
            &[
                "status",
                "-n",
                "vs-drift",
                "--output",
                "json",
                "--vault-config-from-dir",
                &config,
            ],
        )
    };
    let clean = status();
    assert_eq!(clean.code, 0, "{}", clean.stdout);
    assert_eq!(clean.json()["vault_config"], json!([]));

    // A human widens the policy (keeping secops's marker) and lengthens the role's tokens.
    let name = format!("secops-{stem}");
    let widened = policy(&name)
        .unwrap()
        .replace(&format!("secret/data/{stem}/*"), "secret/data/*");
    BAO.api(
        "PUT",
        &format!("sys/policies/acl/{name}"),
        Some(json!({"policy": widened})),
    );
    BAO.api(
        "POST",
        &format!("auth/{mount}/role/{stem}"),
        Some(json!({"token_ttl": "20m"})),
    );
    let drifted = status();
    assert_eq!(drifted.code, 3, "{}", drifted.stdout);
    let document = drifted.json();
    assert_eq!(document["outcome"], "violations");
    let rows = document["vault_config"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{document}");
    assert_eq!(rows[0]["path"], format!("sys/policies/acl/{name}"));
    assert_eq!(rows[0]["violations"][0]["kind"], "vault-config-drift");
    let detail = rows[0]["violations"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("-path secret/data/*"), "{detail}");
    assert!(rows[1]["violations"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("token_ttl"));

    let dry = setup(dir.path(), &["--dry-run"]);
    assert_eq!(dry.code, 0);
    assert_eq!(dry.json()["counts"], json!({"planned": 2}));
    assert!(
        policy(&name).unwrap().contains("secret/data/*"),
        "a dry run restored it"
    );

    let restored = setup(dir.path(), &[]);
    assert_eq!(restored.code, 0, "{}", restored.stderr);
    assert_eq!(
        outcomes(&restored),
        [
            (
                format!("sys/policies/acl/{name}"),
                "update".into(),
                "applied".into()
            ),
            (
                format!("auth/{mount}/role/{stem}"),
                "update".into(),
                "applied".into()
            ),
        ]
    );
    assert_eq!(role(mount, stem).unwrap()["token_ttl"], 600);
    assert_eq!(status().code, 0);

    // A policy deleted by hand is reported absent.
    BAO.api("DELETE", &format!("sys/policies/acl/{name}"), None);
    let deleted = status();
    assert_eq!(deleted.code, 3, "{}", deleted.stdout);
    assert!(
        deleted.json()["vault_config"][0]["violations"][0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("absent;"),
        "{}",
        deleted.stdout
    );
}

#[test]
fn a_foreign_policy_or_role_of_the_same_name_is_refused_unless_adopted() {
    let dir = TempDir::new("vs-foreign");
    let (stem, mount) = ("vs-foreign", "k8s-vs-foreign");
    rendered(dir.path(), stem, mount);
    enable_kubernetes_auth(mount);
    let name = format!("secops-{stem}");
    let theirs = "path \"secret/*\" {\n  capabilities = [\"read\"]\n}\n";
    BAO.api(
        "PUT",
        &format!("sys/policies/acl/{name}"),
        Some(json!({"policy": theirs})),
    );
    BAO.api(
        "POST",
        &format!("auth/{mount}/role/{stem}"),
        Some(json!({"bound_service_account_names": ["x"], "bound_service_account_namespaces": ["x"]})),
    );
    // Metadata at the role's record path with no version records nothing: still theirs.
    let (code, _) = BAO.api(
        "POST",
        &format!("secret/metadata/secops/vault-setup/roles/{mount}/{stem}"),
        Some(json!({"custom_metadata": {"note": "made by hand"}})),
    );
    assert_eq!(code, 204);
    let cluster = Cluster::start();
    cluster.namespace(stem);
    let config = dir.path().to_str().unwrap().to_string();
    let status = secops(
        Some(&cluster),
        &[
            "status",
            "-n",
            stem,
            "--output",
            "json",
            "--vault-config-from-dir",
            &config,
        ],
    );
    let role_row = status.json()["vault_config"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["path"] == format!("auth/{mount}/role/{stem}"))
        .cloned()
        .unwrap_or_else(|| panic!("{}", status.stdout));
    assert!(
        role_row["violations"][0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("not written by secops"),
        "{role_row}"
    );

    let refused = setup(dir.path(), &[]);
    assert_eq!(refused.code, 3, "{}", refused.stdout);
    let error = &refused.json()["error"];
    assert_eq!(error["kind"], "not-adopted");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("sys/policies/acl/{name}")),
        "{message}"
    );
    assert!(
        message.contains(&format!("auth/{mount}/role/{stem}")),
        "{message}"
    );
    assert_eq!(
        policy(&name).unwrap(),
        theirs,
        "nothing is written on a refusal"
    );
    assert_eq!(
        role(mount, stem).unwrap()["bound_service_account_names"],
        json!(["x"])
    );

    let adopted = setup(dir.path(), &["--adopt"]);
    assert_eq!(adopted.code, 0, "{}", adopted.stderr);
    assert_eq!(adopted.json()["counts"], json!({"adopted": 2}));
    // Adopted once, owned from then on: no --adopt needed again.
    let again = setup(dir.path(), &[]);
    assert_eq!(
        again.json()["counts"],
        json!({"unchanged": 2}),
        "{}",
        again.stdout
    );
}

/// A self-signed CA: OpenBao wants some `kubernetes_ca_cert` when it runs outside a pod.
pub fn some_ca(dir: &TempDir) -> String {
    let (key, cert) = (dir.path().join("ca.key"), dir.path().join("ca.crt"));
    let output = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=vs", "-keyout"])
        .args([key.to_str().unwrap(), "-out", cert.to_str().unwrap()])
        .output()
        .expect("openssl");
    assert!(output.status.success());
    cert.to_str().unwrap().to_string()
}

#[test]
fn from_a_configmap_with_the_bootstrap_policy_only_it_enables_what_is_missing_and_its_role_logs_a_step_in(
) {
    let cluster = Cluster::start();
    let dir = TempDir::new("vs-e2e");
    let (stem, mount, kv) = (
        "vs-e2e",
        format!("k8s-vs-e2e-{}", std::process::id()),
        "kv-vs-e2e",
    );
    rendered_in(dir.path(), stem, &mount, kv);
    let mut data = serde_json::Map::new();
    for entry in std::fs::read_dir(dir.path()).unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap();
        data.insert(entry.file_name().to_string_lossy().to_string(), json!(text));
    }
    cluster.namespace("secops");
    cluster.namespace(stem);
    cluster.create(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "secops-vault-policies", "namespace": "secops"}, "data": data}));
    // The bootstrap policy the chart renders for these names, with --enable-missing and
    // --kubernetes-host: nothing more.
    let bootstrap = format!(
        r#"path "sys/policies/acl/secops-{stem}" {{ capabilities = ["create", "read", "update"] }}
path "auth/{mount}/role/{stem}" {{ capabilities = ["create", "read", "update"] }}
path "{kv}/data/secops/vault-setup/roles/{mount}/{stem}" {{ capabilities = ["create"] }}
path "{kv}/metadata/secops/vault-setup/roles/{mount}/{stem}" {{ capabilities = ["read"] }}
path "sys/mounts/{kv}" {{ capabilities = ["create", "read", "update"] }}
path "sys/auth/{mount}" {{ capabilities = ["create", "read", "update", "sudo"] }}
path "auth/{mount}/config" {{ capabilities = ["create", "read", "update"] }}"#
    );
    let (code, body) = BAO.api(
        "PUT",
        "sys/policies/acl/secops-vs-e2e-bootstrap",
        Some(json!({"policy": bootstrap})),
    );
    assert_eq!(code, 204, "{body}");
    let (code, body) = BAO.api(
        "POST",
        "auth/token/create",
        Some(json!({"policies": ["secops-vs-e2e-bootstrap"], "no_default_policy": true, "ttl": "5m"})),
    );
    assert_eq!(code, 200, "{body}");
    let token = body["auth"]["client_token"].as_str().unwrap().to_string();
    let ca = some_ca(&dir);
    let host = cluster.emulator.url();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "vault-setup",
            "--from-configmap",
            "secops/secops-vault-policies",
            "--kv-mount",
            kv,
            "--enable-missing",
            "--kubernetes-host",
            &host,
            "--kubernetes-ca-file",
            &ca,
            "--kubernetes-use-client-jwt",
        ];
        args.extend_from_slice(extra);
        secops_with(
            Some(&cluster),
            &args,
            &[
                ("VAULT_ADDR", BAO.addr.as_str()),
                ("VAULT_TOKEN", token.as_str()),
            ],
        )
    };
    let applied = run(&[]);
    assert_eq!(applied.code, 0, "{} {}", applied.stdout, applied.stderr);
    let kinds: Vec<(String, String)> = outcomes(&applied)
        .into_iter()
        .map(|(path, action, _)| (path, action))
        .collect();
    assert_eq!(
        kinds,
        [
            (format!("sys/mounts/{kv}"), "create".into()),
            (format!("sys/auth/{mount}"), "create".into()),
            (format!("auth/{mount}/config"), "create".into()),
            (format!("sys/policies/acl/secops-{stem}"), "create".into()),
            (format!("auth/{mount}/role/{stem}"), "create".into()),
        ]
    );
    let again = run(&[]);
    assert_eq!(
        again.json()["counts"],
        json!({"unchanged": 5}),
        "{}",
        again.stdout
    );

    // The role vault-setup applied logs the bound service account in, and the step runs
    // with the policy it applied.
    cluster.create(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": stem, "namespace": stem}}));
    cluster.create(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "vs-e2e-auth-delegator"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
        "subjects": [{"kind": "ServiceAccount", "name": stem, "namespace": stem}],
    }));
    let jwt = cluster
        .emulator
        .cluster()
        .issue_token(stem, stem, &["vault".to_string()], 600)
        .unwrap();
    let jwt_file = dir.path().join("sa.jwt");
    std::fs::write(&jwt_file, jwt).unwrap();
    cluster.bootstrap_secret(
        stem,
        "db",
        &format!("{stem}/db"),
        &[("password", b"hunter2-vs-e2e")],
    );
    let step = secops_with(
        Some(&cluster),
        &[
            "handover",
            "-n",
            stem,
            "--kv-mount",
            kv,
            "--vault-auth",
            "kubernetes",
            "--vault-role",
            stem,
            "--vault-auth-mount",
            &mount,
            "--vault-jwt-file",
            jwt_file.to_str().unwrap(),
        ],
        &[("VAULT_ADDR", BAO.addr.as_str())],
    );
    assert_eq!(step.code, 0, "{} {}", step.stdout, step.stderr);
    assert_eq!(BAO.current_version(kv, &format!("{stem}/db")), 1);
    for run in [&applied, &again, &step] {
        assert!(
            !run.stdout.contains(&token) && !run.stderr.contains(&token),
            "the token leaked"
        );
    }
}

#[test]
fn usage_errors_exit_2_before_anything_connects() {
    let dir = TempDir::new("vs-usage");
    std::fs::write(dir.path().join("x.hcl"), "path \"a\" {}").unwrap();
    std::fs::write(dir.path().join("roles.json"), "not json").unwrap();
    let unreachable = [("VAULT_ADDR", "http://127.0.0.1:9"), ("VAULT_TOKEN", "t")];
    let config = dir.path().to_str().unwrap();
    for args in [
        &["vault-setup"][..],
        &["vault-setup", "--from-dir", config],
        &["vault-setup", "--from-configmap", "no-slash"],
        &["vault-setup", "--from-dir", "/nonexistent"],
        &[
            "vault-setup",
            "--from-configmap",
            "a/b",
            "--kubernetes-host",
            "ftp://x",
        ],
        &["status", "--vault-config-from-configmap", "Bad_NS/x"],
    ] {
        let run = secops_with(None, args, &unreachable);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stdout);
    }
}
