//! The Vault seam through the binary: logins, error classes, retries, fingerprints.

use serde_json::json;

use crate::support::{free_port, secops, secops_with, Cluster, TempDir, BAO, ROOT_TOKEN};

fn seed(cluster: &Cluster, namespace: &str) {
    cluster.namespace(namespace);
    cluster.bootstrap_secret(
        namespace,
        "db",
        &format!("{namespace}/db"),
        &[("password", b"fingerprint-me")],
    );
}

#[test]
fn wrong_token_is_refused_not_retried() {
    let cluster = Cluster::start();
    seed(&cluster, "wrong-token");
    let run = secops_with(
        Some(&cluster),
        &["read-bootstrap", "-n", "wrong-token"],
        &[("VAULT_ADDR", &BAO.addr), ("VAULT_TOKEN", "not-a-token")],
    );
    assert!(
        run.code == 2 || run.code == 3,
        "exit {}: {}",
        run.code,
        run.stderr
    );
    let message = run.json()["error"]["message"].as_str().unwrap().to_string();
    assert_eq!(message.lines().count(), 1);
    assert!(message.contains("permission denied"), "{message}");
    assert!(!run.stderr.contains("retrying"), "a refusal is not retried");
}

#[test]
fn unreachable_vault_is_temporary_after_the_configured_attempts() {
    let cluster = Cluster::start();
    seed(&cluster, "no-vault");
    let addr = format!("http://127.0.0.1:{}", free_port());
    let run = secops_with(
        Some(&cluster),
        &["read-bootstrap", "-n", "no-vault", "--max-attempts", "3"],
        &[("VAULT_ADDR", &addr), ("VAULT_TOKEN", ROOT_TOKEN)],
    );
    assert_eq!(run.code, 75, "{}", run.stderr);
    assert_eq!(
        run.stderr.matches("temporary failure, retrying").count(),
        2,
        "3 attempts = 2 retries: {}",
        run.stderr
    );
}

#[test]
fn approle_login_works() {
    let (code, _) = BAO.api(
        "POST",
        "sys/auth/approle-test",
        Some(json!({"type": "approle"})),
    );
    assert!(code == 204 || code == 400, "enable approle: {code}");
    BAO.api(
        "POST",
        "sys/policies/acl/secops-read",
        Some(json!({"policy": "path \"secret/*\" { capabilities = [\"read\", \"list\"] }"})),
    );
    let (code, body) = BAO.api(
        "POST",
        "auth/approle-test/role/secops",
        Some(json!({"token_policies": ["secops-read"]})),
    );
    assert!(code == 204 || code == 200, "{body}");
    let (_, role) = BAO.api("GET", "auth/approle-test/role/secops/role-id", None);
    let (_, secret) = BAO.api("POST", "auth/approle-test/role/secops/secret-id", None);
    let dir = TempDir::new("approle");
    let secret_id_file = dir.path().join("secret-id");
    std::fs::write(
        &secret_id_file,
        format!("{}\n", secret["data"]["secret_id"].as_str().unwrap()),
    )
    .unwrap();
    let cluster = Cluster::start();
    seed(&cluster, "approle");
    let role_id = role["data"]["role_id"].as_str().unwrap().to_string();
    let args = [
        "read-bootstrap",
        "-n",
        "approle",
        "--vault-auth",
        "approle",
        "--vault-auth-mount",
        "approle-test",
        "--vault-secret-id-file",
        secret_id_file.to_str().unwrap(),
    ];
    let run = secops_with(
        Some(&cluster),
        &args,
        &[("VAULT_ADDR", &BAO.addr), ("VAULT_ROLE_ID", &role_id)],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["items"][0]["state"], "pending");
    std::fs::write(&secret_id_file, "wrong-secret-id").unwrap();
    let refused = secops_with(
        Some(&cluster),
        &args,
        &[("VAULT_ADDR", &BAO.addr), ("VAULT_ROLE_ID", &role_id)],
    );
    assert_eq!(
        refused.code, 2,
        "a failed login is a configuration error: {}",
        refused.stderr
    );
}

#[test]
fn fingerprints_are_stable_across_processes_and_keyed() {
    let (code, _) = BAO.api(
        "POST",
        "sys/mounts/kv-other",
        Some(json!({"type": "kv", "options": {"version": "2"}})),
    );
    assert!(code == 204 || code == 400);
    let cluster = Cluster::start();
    seed(&cluster, "fingerprint");
    // write-vault creates the key on first use; read-bootstrap only reads it.
    assert_eq!(
        secops(
            Some(&cluster),
            &["write-vault", "--secret", "fingerprint/db"]
        )
        .code,
        0
    );
    let first = secops(Some(&cluster), &["read-bootstrap", "-n", "fingerprint"]).json()["items"][0]
        ["fingerprint"]
        .clone();
    let second = secops(Some(&cluster), &["read-bootstrap", "-n", "fingerprint"]).json()["items"]
        [0]["fingerprint"]
        .clone();
    assert!(first.as_str().unwrap().starts_with("hmac-sha256:"));
    assert_eq!(first, second);
    assert_eq!(
        secops(
            Some(&cluster),
            &[
                "--kv-mount",
                "kv-other",
                "write-vault",
                "--secret",
                "fingerprint/db"
            ]
        )
        .code,
        0
    );
    let other = secops(
        Some(&cluster),
        &[
            "--kv-mount",
            "kv-other",
            "read-bootstrap",
            "-n",
            "fingerprint",
        ],
    )
    .json()["items"][0]["fingerprint"]
        .clone();
    assert_ne!(
        first, other,
        "another mount has another key, so another fingerprint"
    );
}
