//! Hostile input and broken state (docs/contract.md §3–§6): every limit checked before the
//! first write, one bad item never sinking a plan, permanent states with permanent exit
//! codes, and no credential in any output (each run's stdout, stderr and output files are
//! scanned for canaries; a leak fails the test). Each case counts in the tally printed at
//! the end.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::support::{chart_token, secops, secops_with, Canaries, Cluster, TempDir, BAO};

/// What the suite tried and saw; printed for the closing note.
#[derive(Default)]
struct Tally {
    inputs: usize,
    panics: usize,
    half_written: usize,
}

impl Tally {
    fn saw(&mut self, run: &crate::support::Run) {
        self.inputs += 1;
        self.panics += usize::from(run.stderr.contains("panicked") || run.code == 101);
    }

    fn report(&self, suite: &str) {
        eprintln!(
            "{suite}: {} inputs, {} panics, {} half-written",
            self.inputs, self.panics, self.half_written
        );
        assert_eq!((self.panics, self.half_written), (0, 0));
    }
}

fn bootstrap(cluster: &Cluster, ns: &str, name: &str, path: &str, extra: Value) {
    let mut secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": ns, "labels": {"secops.dev/class": "bootstrap"},
                     "annotations": {"secops.dev/vault-path": path}},
        "data": {"v": STANDARD.encode("value")},
    });
    if let (Some(secret), Some(extra)) = (secret.as_object_mut(), extra.as_object()) {
        secret.extend(extra.clone());
    }
    cluster.create(secret);
}

/// Nothing under `path` in Vault: no data, no metadata, no claim.
fn untouched(mount: &str, path: &str) -> bool {
    BAO.metadata(mount, path).is_none()
        && BAO
            .metadata(mount, &format!("secops/claims/{path}"))
            .is_none()
}

fn enable_mount(path: &str, version: &str) {
    let (code, body) = BAO.api(
        "POST",
        &format!("sys/mounts/{path}"),
        Some(json!({"type": "kv", "options": {"version": version}})),
    );
    assert!(
        code < 300 || body.to_string().contains("existing mount"),
        "{body}"
    );
}

#[test]
fn every_limit_is_checked_before_the_first_write() {
    let mut tally = Tally::default();
    let cluster = Cluster::start();
    let ns = "limits";
    cluster.namespace(ns);
    // 120 keys whose values are not UTF-8: the base64 key list outgrows a metadata value.
    let binary: serde_json::Map<String, Value> = (0..120)
        .map(|i| {
            (
                format!("binary-key-{i:03}"),
                json!(STANDARD.encode([0xff, 0xfe, i as u8])),
            )
        })
        .collect();
    bootstrap(&cluster, ns, "wide", "limits/wide", json!({"data": binary}));
    bootstrap(
        &cluster,
        ns,
        "typed",
        "limits/typed",
        json!({"type": "x".repeat(600)}),
    );
    for name in ["wide", "typed"] {
        let run = secops(
            Some(&cluster),
            &["write-vault", "--secret", &format!("{ns}/{name}")],
        );
        tally.saw(&run);
        assert_eq!(run.code, 2, "{name}: {}", run.stdout);
        assert!(run.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("512 bytes"));
        tally.half_written += usize::from(!untouched("secret", &format!("limits/{name}")));
    }
    // An output directory that cannot be written: refused before Vault is touched.
    bootstrap(&cluster, ns, "out", "limits/out", json!({}));
    let file = TempDir::new("not-a-dir");
    let blocker = file.path().join("file");
    std::fs::write(&blocker, "").unwrap();
    let run = secops(
        Some(&cluster),
        &[
            "write-vault",
            "--secret",
            "limits/out",
            "--output-dir",
            blocker.to_str().unwrap(),
        ],
    );
    tally.saw(&run);
    assert_eq!(run.code, 2, "{}", run.stderr);
    tally.half_written += usize::from(!untouched("secret", "limits/out"));
    // Mounts secops could not finish a write on: KV v1, and KV v2 demanding metadata CAS.
    enable_mount("limits-kv1", "1");
    enable_mount("limits-mcas", "2");
    let (code, body) = BAO.api(
        "POST",
        "limits-mcas/config",
        Some(json!({"metadata_cas_required": true})),
    );
    assert!(code < 300, "{body}");
    for mount in ["limits-kv1", "limits-mcas"] {
        let name = format!("on-{mount}");
        bootstrap(
            &cluster,
            ns,
            &name,
            "limits/m",
            json!({"metadata": {"name": name, "namespace": ns,
                   "labels": {"secops.dev/class": "bootstrap"},
                   "annotations": {"secops.dev/vault-path": "limits/m", "secops.dev/vault-mount": mount}}}),
        );
        let run = secops(
            Some(&cluster),
            &[
                "write-vault",
                "--secret",
                &format!("{ns}/{name}"),
                "--allowed-mount",
                mount,
            ],
        );
        tally.saw(&run);
        assert_eq!(run.code, 2, "{mount}: {}", run.stdout);
        let (code, _) = BAO.api("GET", &format!("{mount}/limits/m"), None);
        tally.half_written += usize::from(code == 200 || !untouched(mount, "limits/m"));
    }
    tally.report("limits before the first write");
}

#[test]
fn one_bad_item_never_sinks_the_plan() {
    let mut tally = Tally::default();
    let cluster = Cluster::start();
    let ns = "one-bad";
    cluster.namespace(ns);
    let (code, body) = BAO.api(
        "POST",
        "secret/data/one-bad/foreign",
        Some(json!({"data": {"n": 5}})),
    );
    assert!(code < 300, "{body}");
    bootstrap(&cluster, ns, "foreign", "one-bad/foreign", json!({}));
    bootstrap(&cluster, ns, "good", "one-bad/good", json!({}));
    // The vault-path is the namespace itself: allowed by `{namespace}/**`, outside the chart's
    // `one-bad/*` policy.
    bootstrap(&cluster, ns, "bare", "one-bad", json!({}));

    let write = secops(
        Some(&cluster),
        &["write-vault", "--secret", "one-bad/foreign"],
    );
    tally.saw(&write);
    assert_eq!(write.code, 3, "{}", write.stdout);
    assert_eq!(write.json()["error"]["kind"], "conflict");

    let token = chart_token("handover", &[ns.to_string()]);
    let env = [
        ("VAULT_ADDR", BAO.addr.as_str()),
        ("VAULT_TOKEN", token.as_str()),
    ];
    let plan = secops_with(Some(&cluster), &["read-bootstrap", "-n", ns], &env);
    tally.saw(&plan);
    assert_eq!(plan.code, 0, "the plan is still made: {}", plan.stdout);
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
    let expected = [
        ("bare", "forbidden"),
        ("foreign", "conflict"),
        ("good", "pending"),
    ];
    assert_eq!(
        states,
        expected.map(|(n, s)| (n.to_string(), s.to_string()))
    );
    let handover = secops_with(Some(&cluster), &["handover", "-n", ns], &env);
    tally.saw(&handover);
    assert_eq!(
        handover.code, 3,
        "the worst item's code: {}",
        handover.stdout
    );
    assert_eq!(
        handover.json()["counts"]["consumed"],
        1,
        "the good one is handed over"
    );
    tally.report("one bad item");
}

#[test]
fn permanent_states_get_permanent_codes() {
    let mut tally = Tally::default();
    let cluster = Cluster::start();
    let ns = "permanent";
    cluster.namespace(ns);
    // A soft-deleted fingerprint key: exit 3 with how to restore it, not 75 forever.
    enable_mount("permanent-kv", "2");
    bootstrap(&cluster, ns, "a", "permanent/a", json!({}));
    bootstrap(&cluster, ns, "b", "permanent/b", json!({}));
    let on_mount = |secret: &str| {
        secops(
            Some(&cluster),
            &[
                "write-vault",
                "--secret",
                secret,
                "--kv-mount",
                "permanent-kv",
            ],
        )
    };
    assert_eq!(on_mount("permanent/a").code, 0);
    let (code, body) = BAO.api("DELETE", "permanent-kv/data/secops/fingerprint-key", None);
    assert!(code < 300, "{body}");
    let run = on_mount("permanent/b");
    tally.saw(&run);
    assert_eq!(run.code, 3, "{}", run.stdout);
    let message = run.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("bao kv undelete"), "{message}");
    tally.half_written += usize::from(!untouched("permanent-kv", "permanent/b"));

    // Configuration that no retry fixes: exit 2 at once, and never a panic.
    let pem = TempDir::new("garbage-ca");
    let garbage = pem.path().join("ca.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let https = BAO.addr.replace("http://", "https://");
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("VAULT_TOKEN", "line\nbreak")], "token"),
        (
            vec![("VAULT_TOKEN", "root"), ("VAULT_NAMESPACE", "a\nb")],
            "VAULT_NAMESPACE",
        ),
        (
            vec![
                ("VAULT_TOKEN", "root"),
                ("VAULT_ADDR", "http://127.0.0.1:8200/v1/"),
            ],
            "/v1/",
        ),
        (
            vec![("VAULT_TOKEN", "root"), ("VAULT_ADDR", https.as_str())],
            "TLS",
        ),
        (
            vec![
                ("VAULT_TOKEN", "root"),
                ("VAULT_CACERT", garbage.to_str().unwrap()),
            ],
            "ca.pem",
        ),
    ];
    for (env, says) in cases {
        let mut full = vec![("VAULT_ADDR", BAO.addr.as_str())];
        full.extend(env.iter().copied());
        let run = secops_with(Some(&cluster), &["status"], &full);
        tally.saw(&run);
        assert_eq!(run.code, 2, "{env:?}: {}", run.stdout);
        let message = run.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(message.contains(says), "{env:?}: {message}");
        assert!(!message.contains("line\nbreak") && !message.contains("a\nb"));
    }
    tally.report("permanent states");
}

#[test]
fn no_credential_reaches_any_output() {
    let mut tally = Tally::default();
    let canaries = Canaries::new();
    let dir = TempDir::new("credentials");
    // A kubeconfig that does not parse, holding a token.
    let token = String::from_utf8(canaries.plant("kubeconfig-token")).unwrap();
    let broken = dir.path().join("broken");
    std::fs::write(
        &broken,
        format!("apiVersion: v1\nkind: Config\nusers:\n- name: u\n  user:\n    token: {token}\n   bad: [\n"),
    )
    .unwrap();
    // An exec plugin that fails after printing a credential and its own command line.
    let printed = String::from_utf8(canaries.plant("exec-output")).unwrap();
    let exec = dir.path().join("exec");
    std::fs::write(
        &exec,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:1'}}}}]\n\
             contexts: [{{name: x, context: {{cluster: c, user: u}}}}]\ncurrent-context: x\n\
             users:\n- name: u\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n\
                   command: sh\n      args: ['-c', 'echo {printed}; echo {printed} >&2; exit 1']\n\
                   interactiveMode: Never\n"
        ),
    )
    .unwrap();
    for (kubeconfig, expected) in [(&broken, 2), (&exec, 2)] {
        for via in ["KUBECONFIG", "SECOPS_KUBECONFIG"] {
            let run = secops_with(
                None,
                &["status"],
                &[
                    ("VAULT_ADDR", BAO.addr.as_str()),
                    ("VAULT_TOKEN", "root"),
                    (via, kubeconfig.to_str().unwrap()),
                ],
            );
            tally.saw(&run);
            assert_eq!(
                run.code,
                expected,
                "{via}={}: {}",
                kubeconfig.display(),
                run.stdout
            );
            canaries.assert_run_clean(&run);
        }
    }
    // Narrow RUST_LOG directives cannot re-enable the client libraries' body logging.
    let cluster = Cluster::start();
    cluster.namespace("logged");
    let value = canaries.plant("logged-value");
    cluster.bootstrap_secret("logged", "s", "logged/s", &[("v", &value)]);
    let run = secops_with(
        Some(&cluster),
        &["handover", "-n", "logged"],
        &[
            ("VAULT_ADDR", BAO.addr.as_str()),
            ("VAULT_TOKEN", "root"),
            ("RUST_LOG", "trace,vaultrs::api=trace,rustify::endpoint=trace,reqwest::connect=trace,hyper_util::client=trace,kube_client::client=trace"),
        ],
    );
    tally.saw(&run);
    assert_eq!(run.code, 0, "{}", run.stdout);
    canaries.assert_run_clean(&run);
    // Audit events are not logs: RUST_LOG=off leaves them on.
    cluster.bootstrap_secret("logged", "quiet", "logged/quiet", &[("v", b"q")]);
    let quiet = secops_with(
        Some(&cluster),
        &["handover", "-n", "logged"],
        &[
            ("VAULT_ADDR", BAO.addr.as_str()),
            ("VAULT_TOKEN", "root"),
            ("RUST_LOG", "off"),
        ],
    );
    tally.saw(&quiet);
    assert!(quiet.stderr.contains("\"audit\":true"), "{}", quiet.stderr);
    tally.report("credentials");
}

/// The violations `status` reports, by kind.
fn violation_kinds(run: &crate::support::Run) -> Vec<String> {
    run.json()["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| row["violations"].as_array().cloned().unwrap_or_default())
        .map(|v| v["kind"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn status_never_says_clean_when_it_is_not() {
    let mut tally = Tally::default();
    let cluster = Cluster::start();
    let status = |ns: &str, extra: &[&str]| {
        let mut args = vec!["status", "-n", ns, "--output", "json"];
        args.extend_from_slice(extra);
        secops(Some(&cluster), &args)
    };
    let handed_over = |ns: &str, extra: &[&str]| {
        cluster.namespace(ns);
        cluster.bootstrap_secret(ns, "s", &format!("{ns}/s"), &[("v", b"value")]);
        let mut args = vec!["handover", "-n", ns];
        args.extend_from_slice(extra);
        assert_eq!(secops(Some(&cluster), &args).code, 0);
    };
    let mut expect = |ns: &str, extra: &[&str], kind: &str| {
        let run = status(ns, extra);
        tally.saw(&run);
        assert_eq!(run.code, 3, "{ns}: {}", run.stdout);
        assert!(
            violation_kinds(&run).contains(&kind.to_string()),
            "{ns}: {}",
            run.stdout
        );
        run
    };

    // The fingerprint key deleted: drift can no longer be seen.
    enable_mount("st-key-kv", "2");
    handed_over("st-key", &["--kv-mount", "st-key-kv"]);
    assert_eq!(status("st-key", &["--kv-mount", "st-key-kv"]).code, 0);
    BAO.api("DELETE", "st-key-kv/data/secops/fingerprint-key", None);
    expect(
        "st-key",
        &["--kv-mount", "st-key-kv"],
        "fingerprint-key-lost",
    );

    // Metadata at the key's path with no version yet is no key: nothing was fingerprinted.
    enable_mount("st-nokey-kv", "2");
    cluster.namespace("st-nokey");
    let (code, _) = BAO.api(
        "POST",
        "st-nokey-kv/metadata/secops/fingerprint-key",
        Some(json!({"custom_metadata": {"note": "made by hand"}})),
    );
    assert_eq!(code, 204);
    let no_key = status("st-nokey", &["--kv-mount", "st-nokey-kv"]);
    assert_eq!(no_key.code, 0, "{}", no_key.stdout);

    // The current version of a consumed path soft-deleted.
    handed_over("st-data", &[]);
    BAO.api("DELETE", "secret/data/st-data/s", None);
    expect("st-data", &[], "vault-data-lost");

    // Written, not marked, and then pointed elsewhere: the old path stays owned.
    cluster.namespace("st-moved");
    cluster.bootstrap_secret("st-moved", "s", "st-moved/old", &[("v", b"value")]);
    assert_eq!(
        secops(Some(&cluster), &["write-vault", "--secret", "st-moved/s"]).code,
        0
    );
    cluster.merge_patch_secret(
        "st-moved",
        "s",
        json!({"metadata": {"annotations": {"secops.dev/vault-path": "st-moved/new"}}}),
    );
    expect("st-moved", &[], "origin-moved");

    // Data changed, and the fingerprint annotation removed with it.
    handed_over("st-unannotated", &[]);
    cluster.merge_patch_secret(
        "st-unannotated",
        "s",
        json!({"metadata": {"annotations": {"secops.dev/fingerprint": null}}, "data": {"v": STANDARD.encode("changed")}}),
    );
    expect("st-unannotated", &[], "drifted");

    // Re-created by GitOps after `--mode delete`: two uids, one path.
    handed_over("st-recreated", &["--mode", "delete"]);
    cluster.bootstrap_secret("st-recreated", "s", "st-recreated/s", &[("v", b"value")]);
    let run = expect("st-recreated", &[], "recreated");
    let uids = run.stdout.matches("uid").count();
    assert!(uids >= 2, "both uids named: {}", run.stdout);
    // ... and an internal Secret re-created under the same name.
    cluster.namespace("st-internal");
    let internal = |value: &str| {
        cluster.create(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "op", "namespace": "st-internal", "labels": {"secops.dev/class": "internal"},
                         "annotations": {"secops.dev/vault-path": "st-internal/op"}},
            "data": {"v": STANDARD.encode(value)},
        }))
    };
    internal("one");
    assert_eq!(
        secops(Some(&cluster), &["push-secret", "-n", "st-internal"]).code,
        0
    );
    cluster.delete_secret("st-internal", "op");
    internal("one");
    expect("st-internal", &[], "recreated");

    // A dry run posts no Events, not even the Drifted one.
    cluster.namespace("st-dry");
    cluster.bootstrap_secret("st-dry", "s", "st-dry/s", &[("v", b"value")]);
    assert_eq!(
        secops(Some(&cluster), &["write-vault", "--secret", "st-dry/s"]).code,
        0
    );
    cluster.merge_patch_secret(
        "st-dry",
        "s",
        json!({"data": {"v": STANDARD.encode("drifted")}}),
    );
    let events = |ns: &str| cluster.events(ns).len();
    let before = events("st-dry");
    let dry = secops(
        Some(&cluster),
        &["mark-consumed", "--secret", "st-dry/s", "--dry-run"],
    );
    tally.saw(&dry);
    assert_eq!(dry.code, 3, "{}", dry.stdout);
    assert_eq!(
        events("st-dry"),
        before,
        "a dry run changes nothing, Events included"
    );
    tally.report("status truth");
}

#[test]
fn fingerprints_cannot_be_compared_across_targets() {
    let cluster = Cluster::start();
    for ns in ["oracle-a", "oracle-b"] {
        cluster.namespace(ns);
    }
    // Team A's low-entropy value, handed over; team B plants the same value as a guess.
    cluster.bootstrap_secret(
        "oracle-a",
        "db",
        "oracle-a/db",
        &[("password", b"summer2026")],
    );
    assert_eq!(
        secops(Some(&cluster), &["handover", "-n", "oracle-a"]).code,
        0
    );
    cluster.bootstrap_secret(
        "oracle-b",
        "guess",
        "oracle-b/guess",
        &[("password", b"summer2026")],
    );
    // ... and once more without a usable target, which must get no fingerprint at all.
    cluster.create(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "aimless", "namespace": "oracle-b", "labels": {"secops.dev/class": "bootstrap"}},
        "data": {"password": STANDARD.encode("summer2026")},
    }));
    let recorded =
        BAO.custom_metadata("secret", "oracle-a/db")["secops-origin-fingerprint"].clone();
    let plan = secops(Some(&cluster), &["read-bootstrap", "-n", "oracle-b"]);
    assert_eq!(plan.code, 0, "{}", plan.stdout);
    let items = plan.json()["items"].as_array().unwrap().clone();
    let fingerprint =
        |name: &str| items.iter().find(|i| i["name"] == name).unwrap()["fingerprint"].clone();
    assert!(fingerprint("guess").is_string());
    assert_ne!(
        fingerprint("guess"),
        json!(recorded),
        "the same value under another path differs"
    );
    assert!(
        fingerprint("aimless").is_null(),
        "no target, no fingerprint"
    );
}

#[test]
fn a_max_age_annotation_is_recorded_at_handover_or_refused_before_writing() {
    let cluster = Cluster::start();
    let ns = "max-age";
    cluster.namespace(ns);
    let annotated = |name: &str, age: &str| {
        cluster.create(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": ns, "labels": {"secops.dev/class": "bootstrap"},
                         "annotations": {"secops.dev/vault-path": format!("{ns}/{name}"), "secops.dev/max-age": age}},
            "data": {"v": STANDARD.encode("value")},
        }))
    };
    annotated("monthly", "720h");
    annotated("garbled", "a month");
    let good = secops(
        Some(&cluster),
        &["write-vault", "--secret", "max-age/monthly"],
    );
    assert_eq!(good.code, 0, "{}", good.stdout);
    let custom = BAO.custom_metadata("secret", "max-age/monthly");
    assert!(custom.contains_key("secops-max-age"), "{custom:?}");
    let bad = secops(
        Some(&cluster),
        &["write-vault", "--secret", "max-age/garbled"],
    );
    assert_eq!(bad.code, 2, "{}", bad.stdout);
    assert!(untouched("secret", "max-age/garbled"));
}

#[test]
fn vault_init_material_is_never_handed_over_into_the_vault_it_unseals() {
    let canaries = Canaries::new();
    let cluster = Cluster::start();
    let ns = "init-material";
    cluster.namespace(ns);
    let token = String::from_utf8(canaries.plant("root-token")).unwrap();
    let init =
        json!({"unseal_keys_b64": ["k1", "k2", "k3"], "unseal_threshold": 2, "root_token": token});
    let create = |name: &str, mount: Option<&str>| {
        let mut annotations = json!({"secops.dev/vault-path": format!("{ns}/{name}")});
        if let Some(mount) = mount {
            annotations["secops.dev/vault-mount"] = json!(mount);
        }
        cluster.create(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": ns, "labels": {"secops.dev/class": "bootstrap"}, "annotations": annotations},
            "data": {"init.json": STANDARD.encode(init.to_string())},
        }));
    };
    create("init", None);
    let refused = secops(Some(&cluster), &["handover", "-n", ns]);
    assert_eq!(refused.code, 3, "{}", refused.stdout);
    assert_eq!(refused.json()["items"][0]["error"]["kind"], "refused");
    assert!(untouched("secret", &format!("{ns}/init")));
    canaries.assert_run_clean(&refused);
    // Named into a mount of its own, deliberately: handed over there.
    enable_mount("init-kv", "2");
    cluster.delete_secret(ns, "init");
    create("init", Some("init-kv"));
    let named = secops(
        Some(&cluster),
        &["handover", "-n", ns, "--allowed-mount", "init-kv"],
    );
    assert_eq!(named.code, 0, "{}", named.stdout);
    assert_eq!(BAO.current_version("init-kv", &format!("{ns}/init")), 1);
    canaries.assert_run_clean(&named);
}
