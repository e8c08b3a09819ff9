//! `rotate` (docs/contract.md §6.4): exactly once per rotation id, consumers refreshed on every
//! run, version trimming, and the authority rules.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use kube_emulator::{FaultAction, FaultRule};
use secops::domain::fingerprint::FingerprintKey;
use secops::domain::rotation::{record_path, RotationRecord};
use secops::secret::{SecretBytes, SecretData};
use serde_json::{json, Value};

use crate::support::{secops, Canaries, Cluster, BAO};

/// A handed-over secret plus an ExternalSecret and a Deployment that consume it.
fn setup(cluster: &Cluster, ns: &str, canaries: &Canaries) -> String {
    cluster.namespace(ns);
    let path = format!("{ns}/db");
    cluster.bootstrap_secret(
        ns,
        "db",
        &path,
        &[("password", &canaries.plant("boot")), ("user", b"app")],
    );
    let handover = secops(Some(cluster), &["handover", "-n", ns]);
    assert_eq!(handover.code, 0, "{}", handover.stdout);
    cluster.create(json!({"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": {"name": "db", "namespace": ns}, "spec": {"refreshInterval": "1h"}}));
    cluster.create(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": ns},
        "spec": {"template": {"metadata": {"labels": {"app": "api"}}, "spec": {"containers": [{"name": "api", "image": "api:1"}]}}},
    }));
    path
}

fn consumer_stamps(cluster: &Cluster, ns: &str) -> (Value, Value) {
    let mut c = cluster.emulator.cluster();
    let token = c.admin_token().to_string();
    let es = c
        .handle(&crate::support::kube_emulator_request(
            "GET",
            &format!("/apis/external-secrets.io/v1/namespaces/{ns}/externalsecrets/db"),
            &token,
        ))
        .body;
    let deploy = c
        .handle(&crate::support::kube_emulator_request(
            "GET",
            &format!("/apis/apps/v1/namespaces/{ns}/deployments/api"),
            &token,
        ))
        .body;
    (
        es["metadata"]["resourceVersion"].clone(),
        deploy["spec"]["template"]["metadata"]["annotations"]["secops.dev/restartedAt"].clone(),
    )
}

fn rotate(cluster: &Cluster, ns: &str, id: &str, extra: &[&str]) -> crate::support::Run {
    let path = format!("{ns}/db");
    let refresh = format!("externalsecret/{ns}/db");
    let restart = format!("deployment/{ns}/api");
    let mut args = vec![
        "rotate",
        "--path",
        &path,
        "--key",
        "password",
        "--rotation-id",
        id,
        "--generator",
        "password",
        "--refresh",
        &refresh,
        "--restart",
        &restart,
    ];
    args.extend_from_slice(extra);
    secops(Some(cluster), &args)
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
    let cluster = Arc::new(Cluster::start());
    let ns = "rot-once";
    let path = setup(&cluster, ns, &canaries);

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
    assert_ne!(
        consumer_stamps(&cluster, ns),
        stamps,
        "consumers are refreshed again on already-rotated"
    );

    let racers: Vec<_> = (0..8)
        .map(|_| {
            let cluster = cluster.clone();
            std::thread::spawn(move || rotate(&cluster, ns, "event-42", &[]))
        })
        .collect();
    for racer in racers {
        let run = racer.join().unwrap();
        assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
        assert!(["rotated", "already-rotated"].contains(&run.json()["outcome"].as_str().unwrap()));
        canaries.assert_run_clean(&run);
    }
    assert_eq!(
        BAO.current_version("secret", &path),
        3,
        "8 concurrent runs of one id: exactly one new version"
    );
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
        intents: vec![key.fingerprint(&data)],
        claimed_at: jiff::Timestamp::now().as_second(),
        version: None,
    };
    let record: serde_json::Map<String, Value> = claim
        .to_data()
        .iter()
        .map(|(k, v)| (k.clone(), json!(v.as_utf8().unwrap())))
        .collect();
    BAO.write(
        "secret",
        &record_path(&path, "wf-half"),
        Value::Object(record),
    );
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
    let args = |path: &'static str, extra: &'static [&'static str]| {
        let mut args = vec![
            "rotate",
            "--path",
            path,
            "--key",
            "k",
            "--rotation-id",
            "r1",
            "--generator",
            "hex",
            "--length",
            "16",
        ];
        args.extend_from_slice(extra);
        args
    };
    let pushed = secops(Some(&cluster), &args("rot-auth/pushed", &[]));
    assert_eq!(pushed.code, 3, "a pushed path belongs to its operator");
    assert_eq!(BAO.current_version("secret", "rot-auth/pushed"), 1);
    let manual = secops(Some(&cluster), &args("rot-auth/manual", &[]));
    assert_eq!(manual.code, 3, "no provenance without --adopt");
    let adopted = secops(Some(&cluster), &args("rot-auth/manual", &["--adopt"]));
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
    let missing = secops(Some(&cluster), &args("rot-auth/missing", &[]));
    assert_eq!(missing.code, 4);
    let reserved = secops(
        Some(&cluster),
        &args("secops/fingerprint-key", &["--adopt"]),
    );
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
