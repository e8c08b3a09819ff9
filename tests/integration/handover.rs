//! Bootstrap handover (docs/contract.md §2–§6.3): read-bootstrap, write-vault, mark-consumed
//! and handover, against OpenBao and the emulator, with a canary scan of every output.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use kube_emulator::{FaultAction, FaultRule};
use serde_json::{json, Value};

use crate::support::{read_dir_files, secops, Canaries, Cluster, TempDir, BAO};

fn rv(cluster: &Cluster, ns: &str, name: &str) -> String {
    cluster.secret(ns, name).unwrap()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

fn is_consumed(cluster: &Cluster, ns: &str, name: &str) -> bool {
    cluster
        .secret(ns, name)
        .is_some_and(|s| s["metadata"]["labels"]["secops.dev/state"] == "consumed")
}

#[test]
fn opaque_tls_and_binary_secrets_are_handed_over_exactly_once() {
    let canaries = Canaries::new();
    let cluster = Cluster::start();
    let ns = "happy";
    cluster.namespace(ns);
    let password = canaries.plant("password");
    let tls_key = canaries.plant("tls-key");
    let binary = canaries.plant_bytes(vec![
        0xff, 0xfe, 0x00, 0x01, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0xc3,
    ]);
    cluster.bootstrap_secret(
        ns,
        "db",
        "happy/db",
        &[("password", &password), ("user", b"app")],
    );
    let tls = json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "tls", "namespace": ns, "labels": {"secops.dev/class": "bootstrap"}, "annotations": {"secops.dev/vault-path": "happy/tls"}},
        "data": {"tls.crt": STANDARD.encode("-----BEGIN CERTIFICATE-----"), "tls.key": STANDARD.encode(&tls_key)},
    });
    cluster.create(tls);
    cluster.bootstrap_secret(ns, "blob", "happy/blob", &[("keystore", &binary)]);

    let run = secops(Some(&cluster), &["handover", "-n", ns]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let result = run.json();
    assert_eq!(result["outcome"], "done");
    assert_eq!(result["counts"]["consumed"], 3, "{result}");
    canaries.assert_run_clean(&run);

    let db = BAO.read("secret", "happy/db").unwrap();
    assert_eq!(
        db["password"].as_str().unwrap().as_bytes(),
        password.as_slice()
    );
    assert_eq!(db["user"], "app");
    let blob = BAO.read("secret", "happy/blob").unwrap();
    assert_eq!(
        STANDARD.decode(blob["keystore"].as_str().unwrap()).unwrap(),
        binary,
        "bytes round-trip"
    );
    assert_eq!(
        BAO.custom_metadata("secret", "happy/blob")["secops-base64-keys"],
        "keystore"
    );
    let tls_meta = BAO.custom_metadata("secret", "happy/tls");
    assert_eq!(tls_meta["secops-k8s-type"], "kubernetes.io/tls");
    let db_meta = BAO.custom_metadata("secret", "happy/db");
    let db_secret = cluster.secret(ns, "db").unwrap();
    assert_eq!(db_meta["secops-origin"], "bootstrap:happy/db");
    assert_eq!(
        db_meta["secops-origin-uid"],
        db_secret["metadata"]["uid"].as_str().unwrap()
    );
    assert_eq!(db_meta["secops-origin-version"], "1");
    assert!(db_meta["secops-origin-fingerprint"].starts_with("hmac-sha256:"));
    assert!(!db_meta.contains_key("secops-base64-keys"));
    let annotations = &db_secret["metadata"]["annotations"];
    assert_eq!(
        db_secret["metadata"]["labels"]["secops.dev/state"],
        "consumed"
    );
    assert_eq!(annotations["secops.dev/vault-version"], "1");
    assert_eq!(
        annotations["secops.dev/fingerprint"].as_str().unwrap(),
        db_meta["secops-origin-fingerprint"]
    );
    assert!(
        annotations["secops.dev/consumed-at"].is_string()
            && annotations["secops.dev/consumed-by"].is_string()
    );
    // One Event per Secret in a batch: the Consumed Event says the handover happened too.
    let events: Vec<(String, String)> = cluster
        .events(ns)
        .iter()
        .map(|e| {
            let text = |f: &str| e[f].as_str().unwrap_or("").to_string();
            (text("reason"), text("message"))
        })
        .collect();
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(
        events.iter().all(|(reason, message)| reason == "Consumed"
            && message.starts_with("handed over and consumed (annotate): Vault secret/")),
        "{events:?}"
    );
    assert!(run
        .stderr
        .lines()
        .any(|l| l.contains("\"audit\":true") && l.contains("\"action\":\"handover-write\"")));

    // Every command again: nothing changes.
    let versions: Vec<u64> = ["db", "tls", "blob"]
        .iter()
        .map(|p| BAO.current_version("secret", &format!("happy/{p}")))
        .collect();
    let resource_versions: Vec<String> = ["db", "tls", "blob"]
        .iter()
        .map(|n| rv(&cluster, ns, n))
        .collect();
    let again = secops(Some(&cluster), &["handover", "-n", ns]);
    assert_eq!(again.code, 0);
    assert_eq!(again.json()["counts"]["already-consumed"], 3);
    let write = secops(Some(&cluster), &["write-vault", "--secret", "happy/db"]);
    assert_eq!(
        (write.code, write.json()["outcome"].clone()),
        (0, json!("unchanged"))
    );
    let mark = secops(Some(&cluster), &["mark-consumed", "--secret", "happy/db"]);
    assert_eq!(
        (mark.code, mark.json()["outcome"].clone()),
        (0, json!("already-consumed"))
    );
    let plan = secops(Some(&cluster), &["read-bootstrap", "-n", ns]);
    assert_eq!(plan.json()["counts"]["consumed"], 3);
    assert_eq!(
        versions,
        ["db", "tls", "blob"]
            .iter()
            .map(|p| BAO.current_version("secret", &format!("happy/{p}")))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        resource_versions,
        ["db", "tls", "blob"]
            .iter()
            .map(|n| rv(&cluster, ns, n))
            .collect::<Vec<_>>()
    );
    for run in [&again, &write, &mark, &plan] {
        canaries.assert_run_clean(run);
    }
    canaries.assert_state_clean(
        &cluster,
        ns,
        "secret",
        &["happy/db", "happy/tls", "happy/blob"],
    );
}

#[test]
fn plan_then_steps_as_the_workflow_runs_them() {
    let canaries = Canaries::new();
    let cluster = Cluster::start();
    let ns = "steps";
    cluster.namespace(ns);
    for name in ["a", "b"] {
        cluster.bootstrap_secret(
            ns,
            name,
            &format!("steps/{name}"),
            &[("token", &canaries.plant(name))],
        );
    }
    cluster.bootstrap_secret(ns, "empty", "steps/empty", &[]);
    cluster.bootstrap_secret(ns, "escape", "other-team/db", &[("x", b"y")]);
    let out = TempDir::new("plan");
    let plan = secops(
        Some(&cluster),
        &[
            "read-bootstrap",
            "-n",
            ns,
            "--output-dir",
            out.path().to_str().unwrap(),
        ],
    );
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let states: Vec<(String, String)> = plan.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap().into(),
                i["state"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("a", "pending"),
            ("b", "pending"),
            ("empty", "invalid"),
            ("escape", "invalid")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    let files = read_dir_files(out.path());
    let items: Vec<Value> = serde_json::from_str(&files["items.json"]).unwrap();
    assert_eq!(items.len(), 2, "only actionable items go to withParam");
    assert_eq!(files["outcome"], "planned");

    for item in &items {
        let secret = format!(
            "{}/{}",
            item["namespace"].as_str().unwrap(),
            item["name"].as_str().unwrap()
        );
        let uid = item["uid"].as_str().unwrap();
        let write = secops(
            Some(&cluster),
            &["write-vault", "--secret", &secret, "--expect-uid", uid],
        );
        assert_eq!(
            (write.code, write.json()["outcome"].clone()),
            (0, json!("written")),
            "{}",
            write.stderr
        );
        let plan_between = secops(Some(&cluster), &["read-bootstrap", "-n", ns]);
        let state = plan_between.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["uid"] == uid)
            .unwrap()["state"]
            .clone();
        assert_eq!(state, "handed-over");
        let mark = secops(
            Some(&cluster),
            &[
                "mark-consumed",
                "--secret",
                &secret,
                "--expect-uid",
                uid,
                "--mode",
                "strip",
            ],
        );
        assert_eq!(
            (mark.code, mark.json()["outcome"].clone()),
            (0, json!("consumed")),
            "{}",
            mark.stderr
        );
        for run in [&write, &plan_between, &mark] {
            canaries.assert_run_clean(run);
        }
    }
    // Step by step, each step says what it did.
    let mut reasons: Vec<String> = cluster
        .events(ns)
        .iter()
        .filter(|e| e["involvedObject"]["name"] == "a")
        .map(|e| e["reason"].as_str().unwrap_or("").to_string())
        .collect();
    reasons.sort();
    assert_eq!(reasons, ["Consumed", "HandedOver"]);
    let stripped = cluster.secret(ns, "a").unwrap();
    assert!(
        stripped
            .get("data")
            .is_none_or(|d| d.as_object().is_none_or(|m| m.is_empty())),
        "strip empties data: {stripped}"
    );
    assert_eq!(
        stripped["metadata"]["annotations"]["secops.dev/consumed-mode"],
        "strip"
    );
    let wrong_uid = secops(
        Some(&cluster),
        &[
            "write-vault",
            "--secret",
            "steps/b",
            "--expect-uid",
            "not-the-uid",
        ],
    );
    assert_eq!(wrong_uid.code, 4);
    let missing = secops(Some(&cluster), &["write-vault", "--secret", "steps/nope"]);
    assert_eq!(missing.code, 4);
    canaries.assert_state_clean(&cluster, ns, "secret", &["steps/a", "steps/b"]);
}

#[test]
fn authority_conflicts_are_refused_and_leave_everything_untouched() {
    let canaries = Canaries::new();
    let cluster = Cluster::start();
    let ns = "team-a";
    cluster.namespace(ns);
    // Owned by another origin already.
    BAO.write("secret", "team-a/owned", json!({"v": "someone-else"}));
    BAO.api("POST", "secret/metadata/team-a/owned", Some(json!({"custom_metadata": {"secops-origin": "bootstrap:team-z/db", "secops-origin-uid": "u"}})));
    cluster.bootstrap_secret(
        ns,
        "owned",
        "team-a/owned",
        &[("v", &canaries.plant("owned"))],
    );
    // Unowned data that differs.
    BAO.write("secret", "team-a/manual", json!({"v": "typed-by-hand"}));
    cluster.bootstrap_secret(
        ns,
        "manual",
        "team-a/manual",
        &[("v", &canaries.plant("manual"))],
    );
    cluster.bootstrap_secret(ns, "cross", "team-b/db", &[("v", &canaries.plant("cross"))]);
    cluster.bootstrap_secret(
        ns,
        "dots",
        "team-a/../team-b/db",
        &[("v", &canaries.plant("dots"))],
    );
    cluster.bootstrap_secret(
        ns,
        "empty-seg",
        "team-a//db",
        &[("v", &canaries.plant("empty"))],
    );
    cluster.bootstrap_secret(
        ns,
        "reserved",
        "secops/fingerprint-key",
        &[("key", &canaries.plant("reserved"))],
    );

    let expected = [
        ("owned", 3),
        ("manual", 3),
        ("cross", 3),
        ("dots", 2),
        ("empty-seg", 2),
    ];
    for (name, code) in expected {
        let before = rv(&cluster, ns, name);
        let run = secops(
            Some(&cluster),
            &["write-vault", "--secret", &format!("{ns}/{name}")],
        );
        assert_eq!(run.code, code, "{name}: {}", run.stdout);
        assert_eq!(
            run.json()["error"]["message"]
                .as_str()
                .unwrap()
                .lines()
                .count(),
            1
        );
        let mark = secops(
            Some(&cluster),
            &["mark-consumed", "--secret", &format!("{ns}/{name}")],
        );
        assert_ne!(mark.code, 0, "{name} must not be marked");
        assert_eq!(
            before,
            rv(&cluster, ns, name),
            "{name}: the Secret is untouched"
        );
        canaries.assert_run_clean(&run);
        canaries.assert_run_clean(&mark);
    }
    let reserved = secops(
        Some(&cluster),
        &[
            "--allowed-path",
            "**",
            "write-vault",
            "--secret",
            "team-a/reserved",
        ],
    );
    assert_eq!(reserved.code, 3, "secops's own prefix is never a target");
    assert_eq!(
        BAO.read("secret", "team-a/owned").unwrap()["v"],
        "someone-else"
    );
    assert_eq!(
        BAO.read("secret", "team-a/manual").unwrap()["v"],
        "typed-by-hand"
    );
    assert_eq!(BAO.current_version("secret", "team-a/owned"), 1);
    assert!(BAO.read("secret", "team-b/db").is_none());

    let batch = secops(Some(&cluster), &["handover", "-n", ns]);
    assert_eq!(
        batch.code, 3,
        "the worst outcome of the batch: {}",
        batch.stdout
    );
    assert_eq!(batch.json()["counts"]["failed"], 6);
    canaries.assert_run_clean(&batch);
    canaries.assert_state_clean(&cluster, ns, "secret", &["team-a/owned", "team-a/manual"]);
}

#[test]
fn drift_after_handover_is_refused_and_rotation_is_never_overwritten() {
    let canaries = Canaries::new();
    let cluster = Cluster::start();
    let ns = "drift";
    cluster.namespace(ns);
    cluster.bootstrap_secret(
        ns,
        "git-changed",
        "drift/git-changed",
        &[("v", &canaries.plant("v1"))],
    );
    cluster.bootstrap_secret(
        ns,
        "rotated",
        "drift/rotated",
        &[("v", &canaries.plant("boot"))],
    );
    for name in ["git-changed", "rotated"] {
        assert_eq!(
            secops(
                Some(&cluster),
                &["write-vault", "--secret", &format!("drift/{name}")]
            )
            .code,
            0
        );
    }
    // Git changes the bootstrap value after the handover write.
    let changed = STANDARD.encode(canaries.plant("v2"));
    cluster.merge_patch_secret(ns, "git-changed", json!({"data": {"v": changed}}));
    let before = rv(&cluster, ns, "git-changed");
    let mark = secops(
        Some(&cluster),
        &["mark-consumed", "--secret", "drift/git-changed"],
    );
    assert_eq!(mark.code, 3, "{}", mark.stdout);
    assert_eq!(mark.json()["error"]["kind"], "drifted");
    assert_eq!(before, rv(&cluster, ns, "git-changed"));
    let rewrite = secops(
        Some(&cluster),
        &["write-vault", "--secret", "drift/git-changed"],
    );
    assert_eq!(
        rewrite.json()["outcome"],
        "unchanged",
        "authority has shifted: Git data never overwrites Vault"
    );
    assert_eq!(BAO.current_version("secret", "drift/git-changed"), 1);
    let plan = secops(Some(&cluster), &["read-bootstrap", "-n", ns]);
    let drifted = plan.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "git-changed")
        .unwrap()["state"]
        .clone();
    assert_eq!(drifted, "drifted");
    assert!(cluster
        .events(ns)
        .iter()
        .any(|e| e["reason"] == "Drifted" && e["type"] == "Warning"));

    // A rotation lands between write-vault and mark-consumed.
    BAO.write("secret", "drift/rotated", json!({"v": "rotated-value"}));
    let rewrite = secops(
        Some(&cluster),
        &["write-vault", "--secret", "drift/rotated"],
    );
    assert_eq!(
        (
            rewrite.code,
            rewrite.json()["outcome"].clone(),
            rewrite.json()["version"].clone()
        ),
        (0, json!("unchanged"), json!(1))
    );
    let mark = secops(
        Some(&cluster),
        &["mark-consumed", "--secret", "drift/rotated"],
    );
    assert_eq!(
        mark.code, 0,
        "verifies version 1, not the rotated one: {}",
        mark.stderr
    );
    assert_eq!(
        BAO.read("secret", "drift/rotated").unwrap()["v"],
        "rotated-value"
    );
    assert_eq!(BAO.current_version("secret", "drift/rotated"), 2);
    for run in [&mark, &rewrite, &plan] {
        canaries.assert_run_clean(run);
    }
    canaries.assert_state_clean(
        &cluster,
        ns,
        "secret",
        &["drift/git-changed", "drift/rotated"],
    );
}

/// Interrupt the handover after each remote call that changes state; a re-run converges.
#[test]
fn crash_matrix_converges_with_exactly_one_version() {
    let canaries = Canaries::new();
    let cluster = Cluster::start();
    for ns in ["crash-data", "crash-meta", "crash-lost", "crash-503"] {
        cluster.namespace(ns);
    }
    let check = |ns: &str, runs: &[&crate::support::Run]| {
        assert!(is_consumed(&cluster, ns, "s"), "{ns} converged to consumed");
        assert_eq!(
            BAO.current_version("secret", &format!("{ns}/s")),
            1,
            "{ns}: exactly one handover version"
        );
        assert_eq!(
            BAO.custom_metadata("secret", &format!("{ns}/s"))["secops-origin"],
            format!("bootstrap:{ns}/s")
        );
        for run in runs {
            canaries.assert_run_clean(run);
        }
        canaries.assert_state_clean(&cluster, ns, "secret", &[&format!("{ns}/s")]);
    };

    // A handover makes the fingerprint key before its first data write, so a crash after
    // that write leaves the key behind. Made here, as the Vault this test binary shares may
    // not have handed anything over yet.
    cluster.namespace("crash-key");
    cluster.bootstrap_secret("crash-key", "s", "crash-key/s", &[("v", b"key-maker")]);
    let key_maker = secops(Some(&cluster), &["handover", "-n", "crash-key"]);
    assert_eq!(key_maker.code, 0, "{}", key_maker.stderr);

    // 1. Data written, metadata not: the process died between the two Vault writes.
    let value = canaries.plant("data-only");
    cluster.bootstrap_secret("crash-data", "s", "crash-data/s", &[("v", &value)]);
    BAO.write(
        "secret",
        "crash-data/s",
        json!({"v": String::from_utf8(value).unwrap()}),
    );
    let plan = secops(Some(&cluster), &["read-bootstrap", "-n", "crash-data"]);
    assert_eq!(
        plan.json()["items"][0]["state"],
        "pending",
        "unowned data with our fingerprint is an interrupted handover"
    );
    let rerun = secops(Some(&cluster), &["handover", "-n", "crash-data"]);
    assert_eq!(rerun.code, 0, "{}", rerun.stdout);
    check("crash-data", &[&plan, &rerun]);

    // 2. Data and metadata written, Secret not patched.
    cluster.bootstrap_secret(
        "crash-meta",
        "s",
        "crash-meta/s",
        &[("v", &canaries.plant("meta-done"))],
    );
    let write = secops(Some(&cluster), &["write-vault", "--secret", "crash-meta/s"]);
    let rerun = secops(Some(&cluster), &["handover", "-n", "crash-meta"]);
    assert_eq!(rerun.code, 0, "{}", rerun.stdout);
    assert_eq!(rerun.json()["items"][0]["written"], false);
    check("crash-meta", &[&write, &rerun]);

    // 3. The patch reached the API server, but the answer was lost with the process (one
    //    attempt: a retry would see its own patch's 409 and converge at once).
    cluster.bootstrap_secret(
        "crash-lost",
        "s",
        "crash-lost/s",
        &[("v", &canaries.plant("patch-lost"))],
    );
    cluster.emulator.inject(FaultRule::new(
        Some("patch"),
        Some("secrets"),
        1,
        FaultAction::DropAfter,
    ));
    let crashed = secops(
        Some(&cluster),
        &["handover", "-n", "crash-lost", "--max-attempts", "1"],
    );
    assert_eq!(
        crashed.code, 75,
        "a lost answer is temporary: {}",
        crashed.stdout
    );
    let rerun = secops(Some(&cluster), &["handover", "-n", "crash-lost"]);
    assert_eq!(
        (rerun.code, rerun.json()["items"][0]["outcome"].clone()),
        (0, json!("already-consumed"))
    );
    check("crash-lost", &[&crashed, &rerun]);

    // 4. The API server refuses the patch (503) on every attempt: Vault holds it, the Secret
    //    stays unmarked, and the re-run marks it without a second write.
    cluster.bootstrap_secret(
        "crash-503",
        "s",
        "crash-503/s",
        &[("v", &canaries.plant("patch-503"))],
    );
    cluster.emulator.inject(FaultRule::new(
        Some("patch"),
        Some("secrets"),
        2,
        FaultAction::Status(503),
    ));
    let refused = secops(
        Some(&cluster),
        &["handover", "-n", "crash-503", "--max-attempts", "2"],
    );
    assert_eq!(refused.code, 75, "{}", refused.stdout);
    assert!(!is_consumed(&cluster, "crash-503", "s"));
    assert_eq!(BAO.current_version("secret", "crash-503/s"), 1);
    let rerun = secops(Some(&cluster), &["handover", "-n", "crash-503"]);
    assert_eq!(rerun.code, 0, "{}", rerun.stdout);
    check("crash-503", &[&refused, &rerun]);
}

#[test]
fn a_secret_is_never_marked_before_vault_holds_it() {
    let cluster = Cluster::start();
    let ns = "order";
    cluster.namespace(ns);
    cluster.bootstrap_secret(ns, "s", "order/s", &[("v", b"value-for-order")]);
    let mark = secops(Some(&cluster), &["mark-consumed", "--secret", "order/s"]);
    assert_eq!(mark.code, 4, "not handed over yet");
    assert!(!is_consumed(&cluster, ns, "s"));
    // Vault refuses the data write (sealed-like 503 is covered by the fault suite); here the
    // Vault path belongs to someone else, so the batch must not mark.
    BAO.write("secret", "order/s", json!({"v": "other"}));
    let run = secops(Some(&cluster), &["handover", "-n", ns]);
    assert_eq!(run.code, 3);
    assert!(!is_consumed(&cluster, ns, "s"));
}

#[test]
fn dry_run_decides_without_writing() {
    let cluster = Cluster::start();
    let ns = "dry";
    cluster.namespace(ns);
    cluster.bootstrap_secret(ns, "s", "dry/s", &[("v", b"dry-value-123")]);
    let before = rv(&cluster, ns, "s");
    let run = secops(Some(&cluster), &["--dry-run", "handover", "-n", ns]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["items"][0]["outcome"], "planned");
    assert!(BAO.metadata("secret", "dry/s").is_none());
    assert_eq!(before, rv(&cluster, ns, "s"));
    let write = secops(
        Some(&cluster),
        &["--dry-run", "write-vault", "--secret", "dry/s"],
    );
    assert_eq!(
        (write.code, write.json()["outcome"].clone()),
        (0, json!("planned"))
    );
    assert!(BAO.metadata("secret", "dry/s").is_none());
}

#[test]
fn racing_handovers_write_each_secret_once() {
    let cluster = Cluster::start();
    let ns = "race";
    cluster.namespace(ns);
    for i in 0..50 {
        cluster.bootstrap_secret(
            ns,
            &format!("s{i}"),
            &format!("race/s{i}"),
            &[("v", format!("race-value-{i}").as_bytes())],
        );
    }
    let cluster = std::sync::Arc::new(cluster);
    let runs: Vec<_> = (0..8)
        .map(|_| {
            let cluster = cluster.clone();
            std::thread::spawn(move || {
                secops(
                    Some(&cluster),
                    &["handover", "-n", "race", "--concurrency", "8"],
                )
            })
        })
        .collect();
    for run in runs {
        let run = run.join().unwrap();
        assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    }
    for i in 0..50 {
        assert_eq!(
            BAO.current_version("secret", &format!("race/s{i}")),
            1,
            "s{i}"
        );
        assert!(is_consumed(&cluster, ns, &format!("s{i}")));
    }
    let consumed_events = cluster
        .events(ns)
        .iter()
        .filter(|e| e["reason"] == "Consumed")
        .count();
    assert_eq!(consumed_events, 50, "every Secret consumed exactly once");
}

#[test]
fn a_page_that_cannot_be_listed_ends_the_run_after_the_started_secrets_finish() {
    let cluster = Cluster::start();
    let ns = "pages";
    cluster.namespace(ns);
    // Two pages of 250; names sort in creation order.
    let count = 300;
    for i in 0..count {
        cluster.bootstrap_secret(
            ns,
            &format!("s{i:03}"),
            &format!("pages/s{i:03}"),
            &[("v", format!("page-value-{i}").as_bytes())],
        );
    }
    // The first page lists; the second never does.
    cluster.emulator.inject(
        FaultRule::new(
            Some("list"),
            Some("secrets"),
            u32::MAX,
            FaultAction::Status(503),
        )
        .after(1),
    );
    let faulted = secops(
        Some(&cluster),
        &[
            "--max-attempts",
            "1",
            "handover",
            "-n",
            ns,
            "--concurrency",
            "32",
        ],
    );
    cluster.emulator.cluster().faults.clear();
    assert_eq!(faulted.code, 75, "{}", faulted.stdout);
    // The next page is listed while the first page's last Secrets are in flight; those
    // still finish (nothing is left half-done) and nothing of the unlisted page is touched.
    let states: Vec<(bool, u64)> = (0..count)
        .map(|i| {
            (
                is_consumed(&cluster, ns, &format!("s{i:03}")),
                BAO.current_version("secret", &format!("pages/s{i:03}")),
            )
        })
        .collect();
    assert!(states[..250].iter().all(|s| *s == (true, 1)), "{states:?}");
    assert!(states[250..].iter().all(|s| *s == (false, 0)), "{states:?}");

    let rerun = secops(Some(&cluster), &["handover", "-n", ns]);
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    let counts = &rerun.json()["counts"];
    assert_eq!(
        (
            counts["already-consumed"].clone(),
            counts["consumed"].clone()
        ),
        (json!(250), json!(50))
    );
    for i in 0..count {
        assert_eq!(BAO.current_version("secret", &format!("pages/s{i:03}")), 1);
    }
}

/// `-n` is the whole scope: a Secret of another namespace in the same cluster is neither read
/// nor written.
#[test]
fn a_run_for_one_namespace_leaves_the_others_alone() {
    let cluster = Cluster::start();
    for ns in ["scope-in", "scope-out"] {
        cluster.namespace(ns);
        cluster.bootstrap_secret(ns, "s", &format!("{ns}/s"), &[("v", b"scoped")]);
    }
    let run = secops(Some(&cluster), &["handover", "-n", "scope-in"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["counts"]["consumed"], 1, "{}", run.stdout);
    assert!(is_consumed(&cluster, "scope-in", "s"));
    assert!(!is_consumed(&cluster, "scope-out", "s"));
    assert_eq!(BAO.current_version("secret", "scope-out/s"), 0);
}
