//! `status`: every violation kind from a constructed state, and the clean state.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::json;

use crate::support::{secops, Cluster, BAO};

fn violation_kinds(run: &crate::support::Run) -> Vec<(String, String)> {
    let mut kinds: Vec<(String, String)> = run.json()["rows"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            r["violations"].as_array().unwrap().iter().map(move |v| {
                (
                    r["secret"].as_str().unwrap_or("").to_string(),
                    v["kind"].as_str().unwrap().to_string(),
                )
            })
        })
        .collect();
    kinds.sort();
    kinds
}

#[test]
fn clean_state_exits_zero_and_shows_each_phase() {
    let cluster = Cluster::start();
    let ns = "st-clean";
    cluster.namespace(ns);
    cluster.bootstrap_secret(ns, "pending", "st-clean/pending", &[("k", b"v-pending")]);
    cluster.bootstrap_secret(ns, "done", "st-clean/done", &[("k", b"v-done")]);
    assert_eq!(
        secops(
            Some(&cluster),
            &[
                "handover",
                "-n",
                ns,
                "--selector",
                "secops.dev/class=bootstrap,!skip"
            ]
        )
        .code,
        0
    );
    cluster.bootstrap_secret(ns, "later", "st-clean/later", &[("k", b"v-later")]);
    cluster.bootstrap_secret(ns, "astray", "other-team/x", &[("k", b"v-astray")]);
    let run = secops(Some(&cluster), &["status", "-n", ns, "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    let rows = run.json()["rows"].as_array().unwrap().clone();
    let phase = |name: &str| {
        rows.iter()
            .find(|r| r["secret"] == format!("{ns}/{name}"))
            .map(|r| (r["authority"].clone(), r["phase"].clone()))
            .unwrap()
    };
    assert_eq!(phase("done"), (json!("vault"), json!("consumed")));
    assert_eq!(phase("later"), (json!("git"), json!("pending")));
    let table = secops(Some(&cluster), &["status", "-n", ns, "--output", "table"]);
    assert!(
        table.stdout.starts_with("SECRET") && table.stdout.contains("st-clean/done"),
        "{}",
        table.stdout
    );
    // A Secret with no valid path shows none, not the bare mount.
    let astray: Vec<&str> = table
        .stdout
        .lines()
        .find(|l| l.starts_with("st-clean/astray"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(astray[1..3], ["-", "git"], "{}", table.stdout);
}

#[test]
fn every_violation_kind_is_reported_with_exit_3() {
    let cluster = Cluster::start();
    let ns = "st-bad";
    cluster.namespace(ns);
    for name in ["two", "drift", "strip", "deleted"] {
        cluster.bootstrap_secret(
            ns,
            name,
            &format!("st-bad/{name}"),
            &[("k", format!("value-{name}").as_bytes())],
        );
    }
    // two authorities: handed over, not consumed, and the grace is zero.
    assert_eq!(
        secops(Some(&cluster), &["write-vault", "--secret", "st-bad/two"]).code,
        0
    );
    // drifted after consumption.
    assert_eq!(
        secops(
            Some(&cluster),
            &[
                "handover",
                "-n",
                ns,
                "--selector",
                "secops.dev/class=bootstrap"
            ]
        )
        .code,
        0
    );
    cluster.merge_patch_secret(
        ns,
        "drift",
        json!({"data": {"k": STANDARD.encode("changed-in-git")}}),
    );
    // strip mode, then the GitOps tool puts data back.
    cluster.merge_patch_secret(
        ns,
        "strip",
        json!({"metadata": {"annotations": {"secops.dev/consumed-mode": "strip"}}}),
    );
    // origin gone before it was consumed (a consumed one is retired: tests/integration/
    // readopt.rs); and a delete-mode consumption, which is fine.
    cluster.bootstrap_secret(ns, "gone", "st-bad/gone", &[("k", b"value-gone")]);
    assert_eq!(
        secops(Some(&cluster), &["write-vault", "--secret", "st-bad/gone"]).code,
        0
    );
    cluster.delete_secret(ns, "gone");
    BAO.api("POST", "secret/metadata/st-bad/deleted", Some(json!({"custom_metadata": {"secops-origin": format!("bootstrap:{ns}/deleted"), "secops-origin-uid": "x", "secops-origin-version": "1", "secops-consumed-mode": "delete"}})));
    cluster.delete_secret(ns, "deleted");
    // a consumed Secret whose Vault path lost its handover.
    cluster.create(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "lost", "namespace": ns, "labels": {"secops.dev/class": "bootstrap", "secops.dev/state": "consumed"}, "annotations": {"secops.dev/vault-path": "st-bad/lost"}},
    }));
    // "two" was consumed by the handover above; make a fresh unconsumed handover for it.
    cluster.bootstrap_secret(ns, "two-b", "st-bad/two-b", &[("k", b"value-two-b")]);
    assert_eq!(
        secops(Some(&cluster), &["write-vault", "--secret", "st-bad/two-b"]).code,
        0
    );

    let run = secops(Some(&cluster), &["status", "-n", ns, "--grace", "0s"]);
    assert_eq!(run.code, 3, "{}", run.stdout);
    let kinds = violation_kinds(&run);
    let expected = [
        ("st-bad/drift", "drifted"),
        ("st-bad/gone", "origin-gone"),
        ("st-bad/lost", "vault-missing"),
        ("st-bad/strip", "not-stripped"),
        ("st-bad/two-b", "two-authorities"),
    ];
    assert_eq!(
        kinds,
        expected.map(|(a, b)| (a.to_string(), b.to_string())),
        "{}",
        run.stdout
    );
    let generous = secops(Some(&cluster), &["status", "-n", ns, "--grace", "1h"]);
    assert!(
        !violation_kinds(&generous)
            .iter()
            .any(|(_, k)| k == "two-authorities"),
        "within the grace period"
    );
}

/// The chart's status policy may list secops's state but not read engine rotation records;
/// one such record on the mount (any team's) must cost the engine rows, not the whole status.
#[test]
fn status_under_the_chart_policy_is_not_sunk_by_an_unreadable_engine_rotation_record() {
    let cluster = Cluster::start();
    let ns = "status-chart";
    cluster.namespace(ns);
    BAO.write(
        "secret",
        "secops/engine-rotations/db-elsewhere/app",
        json!({"rotation_id": "r-1", "rotations": "1"}),
    );
    let token = crate::support::chart_token("status", &[ns.to_string()]);
    let env = [
        ("VAULT_ADDR", BAO.addr.as_str()),
        ("VAULT_TOKEN", token.as_str()),
    ];
    let run = crate::support::secops_with(
        Some(&cluster),
        &["status", "-n", ns, "--output", "json"],
        &env,
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.json()["outcome"], "clean");
}

/// A pushed internal Secret whose data changed since the push is `push-pending`, not
/// `pushed`: the next push publishes it, and until then `status` must not claim Vault holds
/// what the operator holds (issue #21: the fingerprint guard of `assess_internal`). Not a
/// violation: the operator is the source of an internal Secret, so the exit stays 0.
#[test]
fn a_pushed_secret_whose_data_changed_is_push_pending() {
    let cluster = Cluster::start();
    let ns = "st-push";
    cluster.namespace(ns);
    cluster.create(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "cert", "namespace": ns, "labels": {"secops.dev/class": "internal"},
                     "annotations": {"secops.dev/vault-path": "st-push/cert"}},
        "data": {"tls.key": STANDARD.encode("first")},
    }));
    let pushed = secops(Some(&cluster), &["push-secret", "--secret", "st-push/cert"]);
    assert_eq!(pushed.code, 0, "{}", pushed.stdout);
    let phase = || {
        let run = secops(Some(&cluster), &["status", "-n", ns, "--output", "json"]);
        let row = run.json()["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["secret"] == "st-push/cert")
            .cloned()
            .unwrap_or_else(|| panic!("no row for st-push/cert: {}", run.stdout));
        (run.code, row["authority"].clone(), row["phase"].clone())
    };
    assert_eq!(phase(), (0, json!("vault"), json!("pushed")));

    cluster.merge_patch_secret(
        ns,
        "cert",
        json!({"data": {"tls.key": STANDARD.encode("second")}}),
    );
    assert_eq!(
        phase(),
        (0, json!("vault"), json!("push-pending (source changed)"))
    );

    let again = secops(Some(&cluster), &["push-secret", "--secret", "st-push/cert"]);
    assert_eq!(again.code, 0, "{}", again.stdout);
    assert_eq!(phase(), (0, json!("vault"), json!("pushed")));
}
