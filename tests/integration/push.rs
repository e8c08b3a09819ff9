//! `push-secret` (docs/contract.md §6.5): ownership, compare-before-write, batch mode.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::support::{secops, Canaries, Cluster, BAO};

pub fn internal_secret(cluster: &Cluster, ns: &str, name: &str, path: &str, value: &[u8]) -> Value {
    cluster.create(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": ns, "labels": {"secops.dev/class": "internal"}, "annotations": {"secops.dev/vault-path": path}},
        "data": {"tls.key": STANDARD.encode(value)},
    }))
}

fn change_data(cluster: &Cluster, ns: &str, name: &str, value: &[u8]) {
    cluster.merge_patch_secret(
        ns,
        name,
        json!({"data": {"tls.key": STANDARD.encode(value)}}),
    );
}

#[test]
fn push_writes_only_when_the_source_changes() {
    let canaries = Canaries::new();
    let cluster = Cluster::start();
    let ns = "push-a";
    cluster.namespace(ns);
    internal_secret(&cluster, ns, "cert", "push-a/cert", &canaries.plant("v1"));

    let first = secops(Some(&cluster), &["push-secret", "--secret", "push-a/cert"]);
    assert_eq!(
        (
            first.code,
            first.json()["outcome"].clone(),
            first.json()["version"].clone()
        ),
        (0, json!("pushed"), json!(1)),
        "{}",
        first.stderr
    );
    let meta = BAO.custom_metadata("secret", "push-a/cert");
    assert_eq!(meta["secops-origin"], "push:push-a/cert");
    let source = cluster.secret(ns, "cert").unwrap();
    assert_eq!(
        source["metadata"]["annotations"]["secops.dev/vault-version"],
        "1"
    );
    assert!(source["metadata"]["annotations"]["secops.dev/pushed-at"].is_string());

    let unchanged = secops(Some(&cluster), &["push-secret", "--secret", "push-a/cert"]);
    assert_eq!(
        (unchanged.code, unchanged.json()["outcome"].clone()),
        (0, json!("unchanged"))
    );
    assert_eq!(BAO.current_version("secret", "push-a/cert"), 1);
    assert_eq!(
        cluster.secret(ns, "cert").unwrap()["metadata"]["resourceVersion"],
        source["metadata"]["resourceVersion"],
        "an unchanged push leaves its annotated source alone"
    );
    // The annotation lost (a run that died after its Vault write): the next push finishes it,
    // a dry run does not.
    let unannotated = json!({"metadata": {"annotations": {"secops.dev/vault-version": null}}});
    cluster.merge_patch_secret(ns, "cert", unannotated);
    let version_annotation = || {
        cluster.secret(ns, "cert").unwrap()["metadata"]["annotations"]["secops.dev/vault-version"]
            .clone()
    };
    let dry = secops(
        Some(&cluster),
        &["push-secret", "--secret", "push-a/cert", "--dry-run"],
    );
    assert_eq!(dry.json()["outcome"], "unchanged", "{}", dry.stdout);
    assert_eq!(
        version_annotation(),
        Value::Null,
        "a dry run annotates nothing"
    );
    let finished = secops(Some(&cluster), &["push-secret", "--secret", "push-a/cert"]);
    assert_eq!(
        finished.json()["outcome"],
        "unchanged",
        "{}",
        finished.stdout
    );
    assert_eq!(version_annotation(), "1");

    change_data(&cluster, ns, "cert", &canaries.plant("v2"));
    let changed = secops(Some(&cluster), &["push-secret", "--secret", "push-a/cert"]);
    assert_eq!(
        (
            changed.code,
            changed.json()["outcome"].clone(),
            changed.json()["version"].clone()
        ),
        (0, json!("pushed"), json!(2))
    );
    assert_eq!(
        cluster.secret(ns, "cert").unwrap()["metadata"]["annotations"]["secops.dev/vault-version"],
        "2"
    );

    let batch = secops(Some(&cluster), &["push-secret", "-n", ns]);
    assert_eq!(
        (batch.code, batch.json()["counts"]["unchanged"].clone()),
        (0, json!(1)),
        "{}",
        batch.stdout
    );

    cluster.delete_secret(ns, "cert");
    let gone = secops(Some(&cluster), &["push-secret", "--secret", "push-a/cert"]);
    assert_eq!(gone.code, 4, "the source is gone");
    for run in [&first, &unchanged, &changed, &batch, &gone] {
        canaries.assert_run_clean(run);
    }
    canaries.assert_state_clean(&cluster, ns, "secret", &["push-a/cert"]);
}

#[test]
fn push_never_overwrites_another_owner() {
    let canaries = Canaries::new();
    let cluster = Cluster::start();
    let ns = "push-b";
    cluster.namespace(ns);
    // A bootstrap handover owns push-b/db.
    cluster.bootstrap_secret(
        ns,
        "db",
        "push-b/db",
        &[("password", &canaries.plant("boot"))],
    );
    assert_eq!(secops(Some(&cluster), &["handover", "-n", ns]).code, 0);
    internal_secret(
        &cluster,
        ns,
        "intruder",
        "push-b/db",
        &canaries.plant("intruder"),
    );
    // Another internal Secret owns push-b/shared.
    internal_secret(
        &cluster,
        ns,
        "owner",
        "push-b/shared",
        &canaries.plant("owner"),
    );
    assert_eq!(
        secops(Some(&cluster), &["push-secret", "--secret", "push-b/owner"]).code,
        0
    );
    internal_secret(
        &cluster,
        ns,
        "second",
        "push-b/shared",
        &canaries.plant("second"),
    );

    for (source, path) in [
        ("push-b/intruder", "push-b/db"),
        ("push-b/second", "push-b/shared"),
    ] {
        let before = BAO.current_version("secret", path);
        let run = secops(Some(&cluster), &["push-secret", "--secret", source]);
        assert_eq!(run.code, 3, "{source}: {}", run.stdout);
        assert_eq!(run.json()["error"]["kind"], "not-owned");
        assert_eq!(
            BAO.current_version("secret", path),
            before,
            "{path} untouched"
        );
        canaries.assert_run_clean(&run);
    }
    let outside = secops(
        Some(&cluster),
        &[
            "push-secret",
            "--secret",
            "push-b/second",
            "--path",
            "elsewhere/x",
        ],
    );
    assert_eq!(outside.code, 3, "--allowed-path applies to pushes");
    let not_internal = secops(Some(&cluster), &["push-secret", "--secret", "push-b/db"]);
    assert_eq!(
        not_internal.code, 3,
        "only Secrets labelled internal are pushed (docs/contract.md §6)"
    );
    assert_eq!(not_internal.json()["error"]["kind"], "not-of-class");
}
