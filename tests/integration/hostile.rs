//! Hostile Secrets through the real binary: each gets a clean exit code and a one-line
//! reason, and nothing is half-written.

use serde_json::json;

use crate::support::{secops, Cluster, BAO};

fn secret_with(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    annotations: serde_json::Value,
    data: serde_json::Value,
) {
    cluster.create(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": ns, "labels": {"secops.dev/class": "bootstrap"}, "annotations": annotations},
        "data": data,
    }));
}

#[test]
fn hostile_annotations_and_payloads_fail_cleanly() {
    let cluster = Cluster::start();
    let ns = "hostile";
    cluster.namespace(ns);
    let value = json!({"k": "dmFsdWU="});
    let cases = [
        (
            "nul",
            json!({"secops.dev/vault-path": "hostile/a\u{0}b"}),
            2,
        ),
        (
            "control",
            json!({"secops.dev/vault-path": "hostile/a\u{1b}[31mb"}),
            2,
        ),
        (
            "newline",
            json!({"secops.dev/vault-path": "hostile/a\nb"}),
            2,
        ),
        (
            "huge",
            json!({"secops.dev/vault-path": format!("hostile/{}", "x".repeat(1 << 20))}),
            2,
        ),
        (
            "traversal",
            json!({"secops.dev/vault-path": "hostile/../../sys/raw"}),
            2,
        ),
        (
            "absolute",
            json!({"secops.dev/vault-path": "/hostile/db"}),
            2,
        ),
        (
            "mount",
            json!({"secops.dev/vault-path": "hostile/db", "secops.dev/vault-mount": "sys"}),
            3,
        ),
        ("unicode", json!({"secops.dev/vault-path": "hostile/dé"}), 2),
    ];
    for (name, annotations, code) in cases {
        secret_with(&cluster, ns, name, annotations, value.clone());
        let run = secops(
            Some(&cluster),
            &["write-vault", "--secret", &format!("{ns}/{name}")],
        );
        assert_eq!(run.code, code, "{name}: {}", run.stdout);
        let message = run.json()["error"]["message"].as_str().unwrap().to_string();
        assert_eq!(message.lines().count(), 1, "{name}: one line");
        assert!(
            message.len() < 2000,
            "{name}: the reason does not echo a megabyte"
        );
        assert!(!run.stderr.contains("panicked"), "{name}");
    }
    assert!(
        BAO.metadata("secret", "hostile/db").is_none(),
        "nothing half-written"
    );
}

/// OpenBao refuses a JSON body this complex; secops reports it in one line and writes nothing.
#[test]
fn ten_thousand_keys_are_refused_cleanly() {
    let cluster = Cluster::start();
    let ns = "many-keys";
    cluster.namespace(ns);
    let data: serde_json::Map<String, serde_json::Value> = (0..10_000)
        .map(|i| (format!("key-{i}"), json!("dmFsdWU=")))
        .collect();
    secret_with(
        &cluster,
        ns,
        "wide",
        json!({"secops.dev/vault-path": "many-keys/wide"}),
        serde_json::Value::Object(data),
    );
    let run = secops(Some(&cluster), &["handover", "-n", ns]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    let message = run.json()["items"][0]["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(message.lines().count(), 1);
    assert!(message.contains("Vault rejected the request"), "{message}");
    assert!(
        BAO.metadata("secret", "many-keys/wide").is_none(),
        "nothing half-written"
    );
    let secret = cluster.secret(ns, "wide").unwrap();
    assert!(
        secret["metadata"]["labels"]
            .get("secops.dev/state")
            .is_none(),
        "not marked"
    );
}
