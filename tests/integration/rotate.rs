//! `rotate` (docs/contract.md §6.4): exactly once per rotation id, consumers refreshed on every
//! run, version trimming, and the authority rules.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use kube_emulator::{FaultAction, FaultRule};
use secops::domain::fingerprint::FingerprintKey;
use secops::domain::rotation::{record_path, Parameters, RotationRecord, Target};
use secops::secret::{SecretBytes, SecretData};
use serde_json::{json, Value};

use crate::consumers::{deployment_path, es_path, object, rotate_with, Eso, EsoMode};
use crate::proxy::{FaultProxy, ProxyFault};
use crate::support::{secops, secops_with, Canaries, Cluster, BAO, ROOT_TOKEN};

/// A handed-over secret plus an ExternalSecret and a Deployment that consume it.
fn setup(cluster: &Cluster, ns: &str, canaries: &Canaries) -> String {
    crate::consumers::consumed_secret(cluster, ns, canaries)
}

fn consumer_stamps(cluster: &Cluster, ns: &str) -> (Value, Value) {
    let es = object(cluster, &es_path(ns, "db"));
    let deploy = object(cluster, &deployment_path(ns, "api"));
    (
        es["metadata"]["resourceVersion"].clone(),
        deploy["spec"]["template"]["metadata"]["annotations"]["secops.dev/restartedAt"].clone(),
    )
}

/// A rotation of `NS/db` with its consumers, ESO's controller running meanwhile.
fn rotate(cluster: &Cluster, ns: &str, id: &str, extra: &[&str]) -> crate::support::Run {
    Eso::new(cluster, &[ns], EsoMode::Sync(Duration::ZERO))
        .run_while(|| rotate_with(cluster, ns, id, extra))
}

fn plant_vault_value(canaries: &Canaries, path: &str) {
    let value = BAO.read("secret", path).unwrap()["password"]
        .as_str()
        .unwrap()
        .as_bytes()
        .to_vec();
    canaries.plant_bytes(value);
}

#[test]
fn the_same_rotation_id_writes_once_and_a_new_id_rotates_again() {
    let canaries = Canaries::new();
    let cluster = Cluster::start();
    let ns = "rot-once";
    let path = setup(&cluster, ns, &canaries);

    let planned = rotate(&cluster, ns, "wf-1", &["--dry-run"]);
    assert_eq!(
        (
            planned.code,
            planned.json()["outcome"].clone(),
            planned.json()["version"].clone()
        ),
        (0, json!("planned"), json!(1)),
        "a dry run names the version it would rotate: {}",
        planned.stderr
    );
    assert_eq!(
        BAO.current_version("secret", &path),
        1,
        "a dry run writes nothing"
    );

    let first = rotate(&cluster, ns, "wf-1", &[]);
    assert_eq!(
        (
            first.code,
            first.json()["outcome"].clone(),
            first.json()["version"].clone()
        ),
        (0, json!("rotated"), json!(2)),
        "{}",
        first.stderr
    );
    let rotated = BAO.read("secret", &path).unwrap();
    assert_eq!(rotated["user"], "app", "keys not named keep their values");
    assert_eq!(rotated["password"].as_str().unwrap().len(), 32);
    plant_vault_value(&canaries, &path);
    let meta = BAO.custom_metadata("secret", &path);
    assert_eq!(
        (
            meta["secops-rotation-id"].as_str(),
            meta["secops-rotation-version"].as_str()
        ),
        ("wf-1", "2")
    );
    assert_eq!(
        meta["secops-origin"],
        format!("bootstrap:{ns}/db"),
        "provenance survives rotation"
    );
    assert!(
        !meta.contains_key("secops-adopted-at"),
        "a handed-over path is not adopted"
    );
    let stamps = consumer_stamps(&cluster, ns);
    assert!(
        stamps.1.is_string(),
        "the Deployment's pod template was stamped"
    );

    std::thread::sleep(std::time::Duration::from_millis(1100));
    let again = rotate(&cluster, ns, "wf-1", &[]);
    assert_eq!(
        (
            again.code,
            again.json()["outcome"].clone(),
            again.json()["version"].clone()
        ),
        (0, json!("already-rotated"), json!(2))
    );
    assert_eq!(BAO.current_version("secret", &path), 2);
    assert_eq!(
        consumer_stamps(&cluster, ns),
        stamps,
        "a repeated id derives the same stamps: no second sync or rollout"
    );
    // A path with provenance is never adopted, whether or not `--adopt` is given.
    let adopting = rotate(&cluster, ns, "wf-adopt", &["--adopt"]);
    assert_eq!(adopting.code, 0, "{}", adopting.stderr);
    let meta = BAO.custom_metadata("secret", &path);
    assert!(!meta.contains_key("secops-adopted-at"), "{meta:?}");
    assert_eq!(meta["secops-rotation-id"], "wf-adopt");

    // Racing runs of one id (Argo Events delivers at least once): one version, one
    // `rotated` report and one `rotate` audit event per id.
    const RUNS: usize = 8;
    const IDS: usize = 3;
    let eso = Eso::new(&cluster, &[ns], EsoMode::Sync(Duration::ZERO));
    for id in 0..IDS {
        let id = format!("event-{id}");
        let before = BAO.current_version("secret", &path);
        let runs: Vec<_> = eso.run_while(|| {
            std::thread::scope(|scope| {
                let racers: Vec<_> = (0..RUNS)
                    .map(|_| scope.spawn(|| rotate_with(&cluster, ns, &id, &[])))
                    .collect();
                racers.into_iter().map(|r| r.join().unwrap()).collect()
            })
        });
        let mut rotated = 0;
        let mut audited = 0;
        for run in &runs {
            assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
            let outcome = run.json()["outcome"].as_str().unwrap().to_string();
            assert!(["rotated", "already-rotated"].contains(&outcome.as_str()));
            rotated += usize::from(outcome == "rotated");
            audited += run
                .stderr
                .lines()
                .filter(|l| l.contains("\"audit\":true") && l.contains("\"action\":\"rotate\""))
                .count();
            canaries.assert_run_clean(run);
        }
        let written = BAO.current_version("secret", &path) - before;
        eprintln!(
            "race {id}: {RUNS} runs, {written} version(s) written, {rotated} `rotated` report(s), {audited} rotate audit event(s)"
        );
        assert_eq!(
            (written, rotated, audited),
            (1, 1, 1),
            "{RUNS} concurrent runs of one id: one version, one report, one audit event"
        );
    }
    plant_vault_value(&canaries, &path);
    for run in [&first, &again] {
        canaries.assert_run_clean(run);
    }
    canaries.assert_state_clean(&cluster, ns, "secret", &[&path]);
}

#[test]
fn a_crash_after_the_write_still_reaches_the_consumers_without_a_second_version() {
    let canaries = Canaries::new();
    let cluster = Cluster::start();
    let ns = "rot-crash";
    let path = setup(&cluster, ns, &canaries);
    cluster.emulator.inject(FaultRule::new(
        Some("patch"),
        Some("externalsecrets"),
        1,
        FaultAction::DropBefore,
    ));
    let crashed = rotate(&cluster, ns, "wf-crash", &["--max-attempts", "1"]);
    assert_eq!(crashed.code, 75, "{}", crashed.stdout);
    assert_eq!(crashed.json()["outcome"], "rotated");
    assert_eq!(BAO.current_version("secret", &path), 2);
    let rerun = rotate(&cluster, ns, "wf-crash", &[]);
    assert_eq!(
        (rerun.code, rerun.json()["outcome"].clone()),
        (0, json!("already-rotated"))
    );
    assert!(rerun.json()["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["outcome"] == "refreshed"));
    assert_eq!(BAO.current_version("secret", &path), 2);

    // The process died after its data write and before completing the rotation record:
    // construct that state, and the re-run recognises its own write.
    let key_b64 = BAO.read("secret", "secops/fingerprint-key").unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let key = FingerprintKey::new(STANDARD.decode(key_b64).unwrap()).unwrap();
    let new_password = canaries.plant("half-done");
    BAO.write(
        "secret",
        &path,
        json!({"password": String::from_utf8(new_password.clone()).unwrap(), "user": "app"}),
    );
    let data: SecretData = [
        ("password".to_string(), SecretBytes::new(new_password)),
        ("user".to_string(), SecretBytes::from_string("app".into())),
    ]
    .into_iter()
    .collect();
    let claim = RotationRecord {
        base_version: 2,
        intents: vec![key.fingerprint(
            &secops::domain::bootstrap::Target {
                mount: "secret".into(),
                path: path.clone(),
            },
            &data,
        )],
        ..RotationRecord::claim(
            Parameters {
                target: Target::Kv(path.clone()),
                keys: vec!["password".into()],
                generator: "password".into(),
            },
            jiff::Timestamp::now().as_second(),
        )
    };
    let record: serde_json::Map<String, Value> = claim
        .to_data()
        .iter()
        .map(|(k, v)| (k.clone(), json!(v.as_utf8().unwrap())))
        .collect();
    BAO.write("secret", &record_path("wf-half"), Value::Object(record));
    let recovered = rotate(&cluster, ns, "wf-half", &[]);
    assert_eq!(
        (
            recovered.code,
            recovered.json()["outcome"].clone(),
            recovered.json()["version"].clone()
        ),
        (0, json!("rotated"), json!(3)),
        "{}",
        recovered.stderr
    );
    assert_eq!(
        BAO.current_version("secret", &path),
        3,
        "no second write for the same id"
    );
    assert_eq!(
        BAO.custom_metadata("secret", &path)["secops-rotation-id"],
        "wf-half"
    );
    for run in [&crashed, &rerun, &recovered] {
        canaries.assert_run_clean(run);
    }
}

#[test]
fn keep_versions_destroys_all_but_the_newest_two() {
    let canaries = Canaries::new();
    let cluster = Cluster::start();
    let ns = "rot-keep";
    let path = setup(&cluster, ns, &canaries);
    for i in 0..5 {
        let run = rotate(
            &cluster,
            ns,
            &format!("keep-{i}"),
            &["--keep-versions", "2"],
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    let meta = BAO.metadata("secret", &path).unwrap();
    assert_eq!(meta["current_version"], 6);
    for version in 1..=6u64 {
        let destroyed = meta["versions"][version.to_string()]["destroyed"]
            .as_bool()
            .unwrap();
        assert_eq!(destroyed, version < 5, "version {version}");
    }
    let (code, _) = BAO.api("GET", &format!("secret/data/{path}?version=5"), None);
    assert_eq!(
        code, 200,
        "the previous version survives for the grace window"
    );
    let too_few = rotate(&cluster, ns, "keep-x", &["--keep-versions", "1"]);
    assert_eq!(too_few.code, 2, "never below 2");
}

#[test]
fn rotation_respects_authority() {
    let cluster = Cluster::start();
    BAO.write("secret", "rot-auth/pushed", json!({"k": "v"}));
    BAO.api("POST", "secret/metadata/rot-auth/pushed", Some(json!({"custom_metadata": {"secops-origin": "push:ops/cert", "secops-origin-uid": "u"}})));
    BAO.write(
        "secret",
        "rot-auth/manual",
        json!({"k": "v", "other": "kept"}),
    );
    // Each path its own rotation id: an id names one intent.
    let run = |path: &str, extra: &[&str]| {
        let id = path.replace('/', "-");
        let mut args = vec![
            "rotate",
            "--path",
            path,
            "--key",
            "k",
            "--rotation-id",
            &id,
            "--generator",
            "hex",
            "--length",
            "16",
        ];
        args.extend_from_slice(extra);
        secops(Some(&cluster), &args)
    };
    let pushed = run("rot-auth/pushed", &[]);
    assert_eq!(pushed.code, 3, "a pushed path belongs to its operator");
    assert_eq!(BAO.current_version("secret", "rot-auth/pushed"), 1);
    let manual = run("rot-auth/manual", &[]);
    assert_eq!(manual.code, 3, "no provenance without --adopt");
    let adopted = run("rot-auth/manual", &["--adopt"]);
    assert_eq!(adopted.code, 0, "{}", adopted.stderr);
    let value = BAO.read("secret", "rot-auth/manual").unwrap();
    assert_eq!(
        value["k"].as_str().unwrap().len(),
        32,
        "16 random bytes as hex"
    );
    assert_eq!(value["other"], "kept");
    assert!(BAO
        .custom_metadata("secret", "rot-auth/manual")
        .contains_key("secops-adopted-at"));
    let missing = run("rot-auth/missing", &[]);
    assert_eq!(missing.code, 4);
    let reserved = run("secops/fingerprint-key", &["--adopt"]);
    assert_eq!(reserved.code, 3);
}

#[test]
fn vault_password_policies_generate_the_value() {
    let cluster = Cluster::start();
    let policy =
        "length = 24\nrule \"charset\" {\n  charset = \"abcdefghjkmnpqrstuvwxyz23456789\"\n}\n";
    let (code, body) = BAO.api(
        "POST",
        "sys/policies/password/secops-test",
        Some(json!({"policy": policy})),
    );
    assert!(code == 204 || code == 200, "{body}");
    BAO.write("secret", "rot-policy/app", json!({"token": "old"}));
    let run = secops(
        Some(&cluster),
        &[
            "rotate",
            "--path",
            "rot-policy/app",
            "--key",
            "token",
            "--rotation-id",
            "p1",
            "--generator",
            "vault-policy",
            "--policy",
            "secops-test",
            "--adopt",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let token = BAO.read("secret", "rot-policy/app").unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(token.len(), 24);
    assert!(token
        .chars()
        .all(|c| "abcdefghjkmnpqrstuvwxyz23456789".contains(c)));
    assert!(!run.stdout.contains(&token) && !run.stderr.contains(&token));
}

/// A handed-over secret with a non-UTF-8 key (`bin`, stored base64) and a text key.
fn binary_secret(cluster: &Cluster, ns: &str, canaries: &Canaries, mark: bool) -> String {
    cluster.namespace(ns);
    let path = format!("{ns}/db");
    let mut binary = vec![0xff, 0xfe, 0x00, 0x80];
    binary.extend(canaries.plant(ns));
    canaries.plant_bytes(binary.clone());
    cluster.bootstrap_secret(ns, "db", &path, &[("bin", &binary), ("user", b"app")]);
    let step = if mark {
        secops(Some(cluster), &["handover", "-n", ns])
    } else {
        secops(
            Some(cluster),
            &["write-vault", "--secret", &format!("{ns}/db")],
        )
    };
    assert_eq!(step.code, 0, "{}", step.stdout);
    assert_eq!(
        BAO.custom_metadata("secret", &path)["secops-base64-keys"],
        "bin"
    );
    path
}

/// Issue #14.3: a rotation of a binary key that dies between its data write and its record
/// is recognised by the re-run, whatever the generator: the new version is decoded with the
/// key list of that version (the claim's), not the path's older one.
#[test]
fn a_crashed_rotation_of_a_binary_key_is_recognised_by_its_re_run() {
    let canaries = Canaries::new();
    let cluster = Cluster::start();
    let proxy = FaultProxy::start(&BAO.addr);
    for generator in ["hex", "password"] {
        let ns = format!("rot-bin-{generator}");
        let path = binary_secret(&cluster, &ns, &canaries, true);
        let id = format!("bin-{generator}");
        let args = [
            "rotate",
            "--path",
            path.as_str(),
            "--key",
            "bin",
            "--generator",
            generator,
            "--rotation-id",
            &id,
        ];
        // The data write goes through; the request after it (the record) never arrives.
        proxy.arm_after(&format!("POST /v1/secret/data/{path} "), ProxyFault::Reset);
        let crashed = secops_with(
            Some(&cluster),
            &[&["--max-attempts", "1"][..], &args].concat(),
            &[
                ("VAULT_ADDR", proxy.addr.as_str()),
                ("VAULT_TOKEN", ROOT_TOKEN),
            ],
        );
        assert_eq!(crashed.code, 75, "{generator}: {}", crashed.stdout);
        assert_eq!(BAO.current_version("secret", &path), 2, "{generator}");
        let rerun = secops(Some(&cluster), &args);
        assert_eq!(
            (
                rerun.code,
                rerun.json()["outcome"].clone(),
                rerun.json()["version"].clone()
            ),
            (0, json!("rotated"), json!(2)),
            "{generator}: {}\n{}",
            rerun.stdout,
            rerun.stderr
        );
        assert_eq!(
            BAO.current_version("secret", &path),
            2,
            "{generator}: no second version for one id"
        );
        let meta = BAO.custom_metadata("secret", &path);
        assert!(
            !meta.contains_key("secops-base64-keys"),
            "{generator}: the rotated key is text now"
        );
        assert_eq!(meta["secops-base64-keys-until"], "bin:2", "{generator}");
        let again = secops(Some(&cluster), &args);
        assert_eq!(again.json()["outcome"], "already-rotated", "{generator}");
        for run in [&crashed, &rerun, &again] {
            canaries.assert_run_clean(run);
        }
    }
}

/// A version written outside secops over a path with base64-encoded keys cannot be decoded
/// safely (its key list is unknown): the rotation is refused and writes nothing.
#[test]
fn a_binary_path_with_a_version_written_by_hand_is_not_rotated() {
    let canaries = Canaries::new();
    let cluster = Cluster::start();
    let path = binary_secret(&cluster, "rot-bin-hand", &canaries, true);
    BAO.write("secret", &path, json!({"bin": "//4AgA==", "user": "app"}));
    let run = secops(
        Some(&cluster),
        &[
            "rotate",
            "--path",
            &path,
            "--key",
            "bin",
            "--generator",
            "hex",
            "--rotation-id",
            "by-hand-1",
        ],
    );
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("was not written by a finished secops step"),
        "{}",
        run.stdout
    );
    assert_eq!(BAO.current_version("secret", &path), 2, "nothing written");
    canaries.assert_run_clean(&run);
}

/// Issue #14.3, the other half: after a binary key was rotated, `mark-consumed` must read
/// the handover's version with that version's key list (`base64_keys_at`), or it reports
/// drift that is not there.
#[test]
fn mark_consumed_after_a_binary_key_was_rotated_sees_no_false_drift() {
    let canaries = Canaries::new();
    let cluster = Cluster::start();
    let ns = "rot-bin-mark";
    let path = binary_secret(&cluster, ns, &canaries, false);
    let rotated = secops(
        Some(&cluster),
        &[
            "rotate",
            "--path",
            &path,
            "--key",
            "bin",
            "--generator",
            "hex",
            "--rotation-id",
            "bin-mark",
        ],
    );
    assert_eq!(rotated.code, 0, "{}", rotated.stdout);
    let marked = secops(
        Some(&cluster),
        &["mark-consumed", "--secret", &format!("{ns}/db")],
    );
    assert_eq!(
        (marked.code, marked.json()["outcome"].clone()),
        (0, json!("consumed")),
        "{}",
        marked.stdout
    );
    canaries.assert_run_clean(&marked);
}

/// Issue #14.4: one trigger, one effect. The same id with another key, generator or path
/// is refused (exit 3) naming what the id was used for, and writes nothing.
#[test]
fn a_rotation_id_reused_with_other_parameters_is_refused() {
    let cluster = Cluster::start();
    BAO.write("secret", "rot-intent/a", json!({"k": "v", "other": "o"}));
    BAO.write("secret", "rot-intent/b", json!({"k": "v"}));
    let run = |path: &str, key: &str, generator: &str| {
        secops(
            Some(&cluster),
            &[
                "rotate",
                "--path",
                path,
                "--key",
                key,
                "--generator",
                generator,
                "--rotation-id",
                "intent-1",
                "--adopt",
            ],
        )
    };
    let first = run("rot-intent/a", "k", "hex");
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(
        run("rot-intent/a", "k", "hex").json()["outcome"],
        "already-rotated"
    );
    for (path, key, generator) in [
        ("rot-intent/a", "other", "hex"),
        ("rot-intent/a", "k", "password"),
        ("rot-intent/b", "k", "hex"),
    ] {
        let reused = run(path, key, generator);
        assert_eq!(
            reused.code, 3,
            "{path} {key} {generator}: {}",
            reused.stdout
        );
        let message = reused.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            message.contains("path rot-intent/a, keys k, generator hex"),
            "names the recorded intent: {message}"
        );
    }
    assert_eq!(BAO.current_version("secret", "rot-intent/a"), 2);
    assert_eq!(BAO.current_version("secret", "rot-intent/b"), 1);
}

/// Issue #18 item 3: `--if-older-than` rotates only when due, so a frequent schedule keeps a
/// secret within its age without extra versions; `status` reports a value older than its
/// maximum age (`--max-age`, or the path's own `secops-max-age` recorded by the rotation).
#[test]
fn rotation_on_age_and_status_reports_values_past_their_maximum_age() {
    let cluster = Cluster::start();
    let ns = "rot-age";
    cluster.namespace(ns);
    let path = format!("{ns}/db");
    cluster.bootstrap_secret(ns, "db", &path, &[("password", b"age-test-value")]);
    assert_eq!(secops(Some(&cluster), &["handover", "-n", ns]).code, 0);
    let rotate = |id: &str, age: &str| {
        secops(
            Some(&cluster),
            &[
                "rotate",
                "--path",
                &path,
                "--key",
                "password",
                "--generator",
                "hex",
                "--rotation-id",
                id,
                "--if-older-than",
                age,
            ],
        )
    };
    let status = |extra: &[&str]| {
        let mut args = vec!["status", "-n", ns, "--output", "json"];
        args.extend_from_slice(extra);
        secops(Some(&cluster), &args)
    };
    assert_eq!(status(&["--max-age", "1h"]).code, 0);
    let young = rotate("age-0", "1h");
    assert_eq!(
        (young.code, young.json()["outcome"].clone()),
        (0, json!("not-due")),
        "{}",
        young.stdout
    );
    assert_eq!(BAO.current_version("secret", &path), 1);
    std::thread::sleep(Duration::from_millis(2100));
    let old = status(&["--max-age", "1s"]);
    assert_eq!(old.code, 3, "{}", old.stdout);
    assert_eq!(old.json()["rows"][0]["violations"][0]["kind"], "too-old");
    let due = rotate("age-1", "1s");
    assert_eq!(due.json()["outcome"], "rotated", "{}", due.stdout);
    assert_eq!(BAO.custom_metadata("secret", &path)["secops-max-age"], "1s");
    for tick in 0..5 {
        let scheduled = rotate(&format!("age-tick-{tick}"), "1h");
        assert_eq!(scheduled.json()["outcome"], "not-due");
    }
    assert_eq!(
        BAO.current_version("secret", &path),
        2,
        "a frequent schedule writes no extra versions"
    );
    std::thread::sleep(Duration::from_millis(2100));
    let recorded = status(&[]);
    assert_eq!(
        recorded.code, 3,
        "the path's own maximum age applies without --max-age: {}",
        recorded.stdout
    );
}

/// `rotate --path PATH --adopt` of `PATH` (key `v`) under `id`, through `proxy` when given.
fn rotate_adopted(proxy: Option<&FaultProxy>, path: &str, id: &str) -> crate::support::Run {
    let args = [
        "--max-attempts",
        "1",
        "rotate",
        "--path",
        path,
        "--key",
        "v",
        "--generator",
        "hex",
        "--rotation-id",
        id,
        "--adopt",
    ];
    let vault = proxy.map_or(BAO.addr.as_str(), |p| p.addr.as_str());
    secops_with(
        None,
        &args,
        &[("VAULT_ADDR", vault), ("VAULT_TOKEN", ROOT_TOKEN)],
    )
}

/// A run that completed its record but died before stamping the path's metadata: the re-run
/// finds the id done and stamps the metadata, with no second version.
#[test]
fn a_rotation_that_died_before_its_metadata_is_stamped_by_the_re_run() {
    let path = "rot-unstamped/app";
    BAO.write("secret", path, json!({"v": "initial"}));
    let proxy = FaultProxy::start(&BAO.addr);
    proxy.arm_at(
        &format!("POST /v1/secret/metadata/{path} "),
        0,
        ProxyFault::Reset,
    );
    let crashed = rotate_adopted(Some(&proxy), path, "unstamped-1");
    assert_eq!(crashed.code, 75, "{}", crashed.stdout);
    assert!(!BAO
        .custom_metadata("secret", path)
        .contains_key("secops-rotation-id"));
    let rerun = rotate_adopted(None, path, "unstamped-1");
    assert_eq!(
        (rerun.code, rerun.json()["outcome"].clone()),
        (0, json!("already-rotated")),
        "{}",
        rerun.stderr
    );
    let meta = BAO.custom_metadata("secret", path);
    assert_eq!(meta["secops-rotation-id"], "unstamped-1");
    assert_eq!(meta["secops-rotation-version"], "2");
    assert_eq!(BAO.current_version("secret", path), 2);
}

/// A run that claimed the id and died before its write, then a version written by someone
/// else: the re-run finds that version is not the id's, moves the claim's base onto it and
/// rotates from there, keeping the other keys it holds.
#[test]
fn a_claim_superseded_by_a_foreign_write_is_rebased_and_rotates() {
    let path = "rot-rebase/app";
    BAO.write("secret", path, json!({"v": "initial"}));
    let proxy = FaultProxy::start(&BAO.addr);
    proxy.arm_at(
        &format!("POST /v1/secret/data/{path} "),
        0,
        ProxyFault::Reset,
    );
    let crashed = rotate_adopted(Some(&proxy), path, "rebase-1");
    assert_eq!(crashed.code, 75, "{}", crashed.stdout);
    assert_eq!(
        BAO.current_version("secret", path),
        1,
        "died before its write"
    );
    BAO.write("secret", path, json!({"v": "by-hand", "added": "kept"}));
    let rerun = rotate_adopted(None, path, "rebase-1");
    assert_eq!(
        (
            rerun.code,
            rerun.json()["outcome"].clone(),
            rerun.json()["version"].clone()
        ),
        (0, json!("rotated"), json!(3)),
        "{}\n{}",
        rerun.stdout,
        rerun.stderr
    );
    let data = BAO.read("secret", path).unwrap();
    assert_eq!(data["added"], "kept");
    assert_ne!(data["v"], "by-hand");
}
