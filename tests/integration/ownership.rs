//! Ownership that cannot be stolen (docs/contract.md §3, §6): one origin per Vault path
//! under racing writers, steps that act only on their class, re-runs after `strip` and
//! `delete`, foreign metadata that survives, and `push-secret --adopt`.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::support::{secops, Cluster, Run, BAO};

fn internal_secret(cluster: &Cluster, ns: &str, name: &str, path: &str, value: &str) -> Value {
    cluster.create(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": ns, "labels": {"secops.dev/class": "internal"},
                     "annotations": {"secops.dev/vault-path": path}},
        "data": {"value": STANDARD.encode(value)},
    }))
}

fn annotations(cluster: &Cluster, ns: &str, name: &str) -> Value {
    cluster
        .secret(ns, name)
        .map(|s| s["metadata"]["annotations"].clone())
        .unwrap_or(Value::Null)
}

fn labels(cluster: &Cluster, ns: &str, name: &str) -> Value {
    cluster
        .secret(ns, name)
        .map(|s| s["metadata"]["labels"].clone())
        .unwrap_or(Value::Null)
}

fn uid(cluster: &Cluster, ns: &str, name: &str) -> String {
    cluster.secret(ns, name).unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Runs several secops processes at once and returns their results.
fn concurrently(cluster: &Arc<Cluster>, runs: &[&[&str]]) -> Vec<Run> {
    let handles: Vec<_> = runs
        .iter()
        .map(|args| {
            let cluster = cluster.clone();
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            std::thread::spawn(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                secops(Some(&cluster), &args)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// The failed items of batch runs, by Secret name, with their error kinds.
fn refusals(runs: &[Run]) -> Vec<(String, String)> {
    runs.iter()
        .flat_map(|run| run.json()["items"].as_array().cloned().unwrap_or_default())
        .filter(|item| item["outcome"] == "failed")
        .map(|item| {
            (
                item["name"].as_str().unwrap().to_string(),
                item["error"]["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// One origin per path: Vault's provenance names exactly one of the contenders (uid
/// included), Vault's data is that contender's, and only that contender is marked as
/// having published it. Returns the winner's name.
fn assert_single_origin(
    cluster: &Cluster,
    ns: &str,
    path: &str,
    contenders: &[(&str, &str, &str)],
) -> String {
    let custom = BAO.custom_metadata("secret", path);
    let origin = custom.get("secops-origin").cloned().unwrap_or_default();
    let (winner, _, value) = contenders
        .iter()
        .find(|(name, kind, _)| origin == format!("{kind}:{ns}/{name}"))
        .unwrap_or_else(|| panic!("{path}: provenance {origin:?} names none of {contenders:?}"));
    assert_eq!(
        custom.get("secops-origin-uid").map(String::as_str),
        Some(uid(cluster, ns, winner).as_str()),
        "{path}: provenance names the winner's uid"
    );
    let data = BAO.read("secret", path).unwrap();
    assert_eq!(
        data["value"], *value,
        "{path}: Vault holds the winner's data"
    );
    for (name, kind, _) in contenders {
        let published = match *kind {
            "push" => annotations(cluster, ns, name)["secops.dev/pushed-at"].is_string(),
            _ => labels(cluster, ns, name)["secops.dev/state"] == "consumed",
        };
        assert_eq!(
            published,
            name == winner,
            "{path}: {kind}:{name} is marked published iff Vault names it"
        );
    }
    winner.to_string()
}

#[test]
fn racing_pushers_leave_every_path_to_one_origin() {
    let cluster = Cluster::start();
    let ns = "own-push";
    cluster.namespace(ns);
    const PAIRS: usize = 100;
    for i in 0..PAIRS {
        // Adjacent names: a batch at concurrency 8 pushes both of a pair at once.
        internal_secret(
            &cluster,
            ns,
            &format!("p{i:03}-a"),
            &format!("{ns}/p{i:03}"),
            &format!("a-{i}"),
        );
        internal_secret(
            &cluster,
            ns,
            &format!("p{i:03}-b"),
            &format!("{ns}/p{i:03}"),
            &format!("b-{i}"),
        );
    }
    let cluster = Arc::new(cluster);
    // Two overlapping batches as well as the pairs within each.
    let batch: &[&str] = &["push-secret", "-n", ns];
    let mut runs = concurrently(&cluster, &[batch, batch]);
    // Argo retries a temporary failure: the retry converges.
    runs.push(secops(Some(&cluster), batch));
    let refused = refusals(&runs[2..]);
    let (mut winners, mut losers) = (0, 0);
    for i in 0..PAIRS {
        let (a, b) = (format!("p{i:03}-a"), format!("p{i:03}-b"));
        let winner = assert_single_origin(
            &cluster,
            ns,
            &format!("{ns}/p{i:03}"),
            &[
                (&a, "push", &format!("a-{i}")),
                (&b, "push", &format!("b-{i}")),
            ],
        );
        winners += 1;
        let loser = if winner == a { &b } else { &a };
        let said = refused.iter().find(|(name, _)| name == loser);
        assert!(
            said.is_some_and(|(_, kind)| kind == "not-owned"),
            "{loser} says it lost: {said:?}"
        );
        losers += 1;
    }
    assert_eq!(runs[2].code, 3, "the last run reports the losers' refusals");
    eprintln!("push race: {PAIRS} pairs, {winners} winners, {losers} losers refused, 0 paths of mixed origin");
}

#[test]
fn handover_racing_push_on_one_path_leaves_one_origin() {
    let cluster = Cluster::start();
    let ns = "own-mixed";
    cluster.namespace(ns);
    const PAIRS: usize = 150;
    for i in 0..PAIRS {
        let path = format!("{ns}/p{i:03}");
        cluster.bootstrap_secret(
            ns,
            &format!("p{i:03}-b"),
            &path,
            &[("value", format!("git-{i}").as_bytes())],
        );
        internal_secret(
            &cluster,
            ns,
            &format!("p{i:03}-i"),
            &path,
            &format!("operator-{i}"),
        );
    }
    let cluster = Arc::new(cluster);
    let handover: &[&str] = &["handover", "-n", ns, "--concurrency", "16"];
    let push: &[&str] = &["push-secret", "-n", ns];
    let mut runs = concurrently(&cluster, &[handover, push]);
    // One retry of each, as Argo would after a temporary failure.
    runs.extend(concurrently(&cluster, &[handover, push]));
    let refused = refusals(&runs[2..]);
    let (mut bootstrap_won, mut push_won) = (0, 0);
    for i in 0..PAIRS {
        let (b, p) = (format!("p{i:03}-b"), format!("p{i:03}-i"));
        let winner = assert_single_origin(
            &cluster,
            ns,
            &format!("{ns}/p{i:03}"),
            &[
                (&b, "bootstrap", &format!("git-{i}")),
                (&p, "push", &format!("operator-{i}")),
            ],
        );
        let loser = if winner == b { &p } else { &b };
        if winner == b {
            bootstrap_won += 1;
        } else {
            push_won += 1;
        }
        assert!(
            refused
                .iter()
                .any(|(name, kind)| name == loser && kind == "not-owned"),
            "{loser} says it lost"
        );
    }
    eprintln!(
        "handover vs push race: {PAIRS} pairs, {bootstrap_won} won by the handover, {push_won} by the push, {PAIRS} losers refused, 0 paths of mixed origin"
    );
}

#[test]
fn steps_refuse_secrets_of_another_class() {
    let cluster = Cluster::start();
    let ns = "own-class";
    cluster.namespace(ns);
    cluster.create(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "plain", "namespace": ns, "annotations": {"secops.dev/vault-path": "own-class/plain"}},
        "data": {"v": STANDARD.encode("x")},
    }));
    internal_secret(&cluster, ns, "operator", "own-class/operator", "y");
    assert_eq!(
        secops(
            Some(&cluster),
            &["push-secret", "--secret", "own-class/operator"]
        )
        .code,
        0
    );

    let unlabelled = secops(
        Some(&cluster),
        &["write-vault", "--secret", "own-class/plain"],
    );
    assert_eq!(unlabelled.code, 3, "{}", unlabelled.stdout);
    assert_eq!(unlabelled.json()["error"]["kind"], "not-of-class");
    assert!(
        BAO.metadata("secret", "own-class/plain").is_none(),
        "nothing written"
    );

    let internal = secops(
        Some(&cluster),
        &[
            "mark-consumed",
            "--secret",
            "own-class/operator",
            "--mode",
            "delete",
        ],
    );
    assert_eq!(internal.code, 3, "{}", internal.stdout);
    assert!(
        cluster.secret(ns, "operator").is_some(),
        "an operator's Secret is never deleted"
    );
}

#[test]
fn steps_report_the_finished_handover_after_strip_and_delete() {
    let cluster = Cluster::start();
    let ns = "own-rerun";
    cluster.namespace(ns);
    cluster.bootstrap_secret(ns, "stripped", "own-rerun/stripped", &[("v", b"s")]);
    cluster.bootstrap_secret(ns, "deleted", "own-rerun/deleted", &[("v", b"d")]);
    let strip = secops(
        Some(&cluster),
        &["mark-consumed", "--secret", "own-rerun/stripped"],
    );
    assert_eq!(strip.code, 4, "not handed over yet");
    for (name, mode) in [("stripped", "strip"), ("deleted", "delete")] {
        let secret = format!("{ns}/{name}");
        assert_eq!(
            secops(Some(&cluster), &["write-vault", "--secret", &secret]).code,
            0
        );
        let marked = secops(
            Some(&cluster),
            &["mark-consumed", "--secret", &secret, "--mode", mode],
        );
        assert_eq!(marked.code, 0, "{}", marked.stdout);
    }
    // The write step of a retried workflow, after strip: Vault's provenance answers.
    let again = secops(
        Some(&cluster),
        &["write-vault", "--secret", "own-rerun/stripped"],
    );
    assert_eq!(again.code, 0, "{}", again.stdout);
    assert_eq!(again.json()["outcome"], "unchanged");
    assert_eq!(again.json()["version"], 1);
    // The mark step of a retried workflow, after delete: the plan's path finds it.
    let gone = [
        "mark-consumed",
        "--secret",
        "own-rerun/deleted",
        "--mode",
        "delete",
    ];
    assert_eq!(
        secops(Some(&cluster), &gone).code,
        4,
        "without the path, nothing to go by"
    );
    let mut with_path = gone.to_vec();
    with_path.extend(["--vault-path", "own-rerun/deleted"]);
    let found = secops(Some(&cluster), &with_path);
    assert_eq!(found.code, 0, "{}", found.stdout);
    assert_eq!(found.json()["outcome"], "already-consumed");
    assert_eq!(found.json()["version"], 1);
    let mut wrong_uid = with_path.clone();
    wrong_uid.extend(["--expect-uid", "another-object"]);
    assert_eq!(secops(Some(&cluster), &wrong_uid).code, 4);
    assert_eq!(BAO.current_version("secret", "own-rerun/deleted"), 1);
}

#[test]
fn foreign_metadata_survives_a_handover_and_a_push() {
    let cluster = Cluster::start();
    let ns = "own-foreign";
    cluster.namespace(ns);
    for path in ["own-foreign/db", "own-foreign/cert"] {
        let (code, body) = BAO.api(
            "POST",
            &format!("secret/metadata/{path}"),
            Some(json!({"custom_metadata": {"owner": "dba-team"}})),
        );
        assert!(code < 300, "{body}");
    }
    cluster.bootstrap_secret(ns, "db", "own-foreign/db", &[("v", b"1")]);
    internal_secret(&cluster, ns, "cert", "own-foreign/cert", "2");
    assert_eq!(secops(Some(&cluster), &["handover", "-n", ns]).code, 0);
    assert_eq!(secops(Some(&cluster), &["push-secret", "-n", ns]).code, 0);
    for (path, origin) in [
        ("own-foreign/db", "bootstrap:own-foreign/db"),
        ("own-foreign/cert", "push:own-foreign/cert"),
    ] {
        let custom = BAO.custom_metadata("secret", path);
        assert_eq!(
            custom.get("owner").map(String::as_str),
            Some("dba-team"),
            "{path}: {custom:?}"
        );
        assert_eq!(
            custom.get("secops-origin").map(String::as_str),
            Some(origin)
        );
    }
}

#[test]
fn push_takes_over_foreign_data_only_with_adopt() {
    let cluster = Cluster::start();
    let ns = "own-adopt";
    cluster.namespace(ns);
    BAO.write(
        "secret",
        "own-adopt/legacy",
        json!({"value": "set-by-hand"}),
    );
    internal_secret(&cluster, ns, "legacy", "own-adopt/legacy", "operator-value");
    let refused = secops(
        Some(&cluster),
        &["push-secret", "--secret", "own-adopt/legacy"],
    );
    assert_eq!(refused.code, 3, "{}", refused.stdout);
    assert_eq!(refused.json()["error"]["kind"], "not-adopted");
    assert_eq!(BAO.current_version("secret", "own-adopt/legacy"), 1);
    assert!(annotations(&cluster, ns, "legacy")["secops.dev/pushed-at"].is_null());

    let adopted = secops(
        Some(&cluster),
        &["push-secret", "--secret", "own-adopt/legacy", "--adopt"],
    );
    assert_eq!(adopted.code, 0, "{}", adopted.stdout);
    assert_eq!(adopted.json()["outcome"], "pushed");
    assert_eq!(
        BAO.read("secret", "own-adopt/legacy").unwrap()["value"],
        "operator-value"
    );
    let custom = BAO.custom_metadata("secret", "own-adopt/legacy");
    assert!(custom.contains_key("secops-adopted-at"), "{custom:?}");
    assert_eq!(
        custom.get("secops-origin").map(String::as_str),
        Some("push:own-adopt/legacy")
    );
}

/// `mark-consumed` renders a Secret inert only when Vault's handover names that Secret: a
/// second bootstrap Secret naming a path another one handed over, with the very same data
/// (so the fingerprints match), is refused and left as it is, and the owner's handover stays
/// untouched (issue #21: the `Conflict` branch of `check_consumable`).
#[test]
fn mark_consumed_refuses_a_path_handed_over_by_another_secret() {
    let cluster = Cluster::start();
    let ns = "own-mark";
    cluster.namespace(ns);
    let path = "own-mark/shared";
    cluster.bootstrap_secret(ns, "owner", path, &[("v", b"same-value")]);
    let written = secops(
        Some(&cluster),
        &["write-vault", "--secret", "own-mark/owner"],
    );
    assert_eq!(written.code, 0, "{}", written.stdout);
    let before = BAO.custom_metadata("secret", path);
    cluster.bootstrap_secret(ns, "intruder", path, &[("v", b"same-value")]);

    let refused = secops(
        Some(&cluster),
        &["mark-consumed", "--secret", "own-mark/intruder"],
    );
    assert_eq!(
        (refused.code, refused.json()["error"]["kind"].clone()),
        (3, json!("not-owned")),
        "{}\n{}",
        refused.stdout,
        refused.stderr
    );
    assert!(
        labels(&cluster, ns, "intruder")["secops.dev/state"].is_null(),
        "the intruder is not marked consumed"
    );
    assert_eq!(
        cluster.secret(ns, "intruder").unwrap()["data"]["v"],
        STANDARD.encode("same-value"),
        "its data is not stripped"
    );
    assert_eq!(
        BAO.custom_metadata("secret", path),
        before,
        "the owner's handover is untouched"
    );
    assert_eq!(BAO.current_version("secret", path), 1);
}

/// `--vault-path` reports `already-consumed` for a Secret that is gone only when Vault records
/// that `--mode delete` removed it: one consumed with `strip` and deleted by hand since was
/// not consumed by deletion, and is reported not found (issue #21).
#[test]
fn a_secret_deleted_by_hand_is_not_reported_consumed_by_deletion() {
    let cluster = Cluster::start();
    let ns = "own-gone";
    cluster.namespace(ns);
    cluster.bootstrap_secret(ns, "s", "own-gone/s", &[("v", b"x")]);
    let handover = secops(Some(&cluster), &["handover", "-n", ns, "--mode", "strip"]);
    assert_eq!(handover.code, 0, "{}", handover.stdout);
    cluster.delete_secret(ns, "s");
    let gone = secops(
        Some(&cluster),
        &[
            "mark-consumed",
            "--secret",
            "own-gone/s",
            "--mode",
            "delete",
            "--vault-path",
            "own-gone/s",
        ],
    );
    assert_eq!(gone.code, 4, "{}\n{}", gone.stdout, gone.stderr);
}
