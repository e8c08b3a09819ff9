//! The audit trail (issue #19 item 4, docs/contract.md §4): one event per state change of
//! every command, on stderr and in `--audit-file`, whatever `RUST_LOG` says; none from a dry
//! run or a re-run that changes nothing. The expectation is the table [`STEPS`]; the events
//! are also checked against what Vault and the emulator hold afterwards.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::consumers::{deployment_path, es_path, object};
use crate::support::{secops_with, Canaries, Cluster, Run, TempDir, BAO};
use crate::vault_setup::some_ca;

/// The KV mount of this test alone, so the fingerprint key's creation is one of its changes.
const KV: &str = "audit-kv";
const AUTH: &str = "audit-k8s";
/// The value of the Secret whose handover "crashed" (the test writes it to Vault itself).
const FINISHED: &str = "not-a-canary-finished-handover";

/// One run of the binary and every state change it makes, in order: (action, target).
struct Step {
    args: &'static [&'static str],
    /// Done to the cluster before the run (what a GitOps tool or a human would do).
    before: Option<fn(&Cluster)>,
    exit: i32,
    changes: &'static [(&'static str, &'static str)],
}

const STEPS: &[Step] = &[
    Step {
        args: &["handover", "-n", "audit-h", "--dry-run"],
        before: None,
        exit: 0,
        changes: &[],
    },
    Step {
        args: &["handover", "-n", "audit-h"],
        before: None,
        exit: 0,
        changes: &[
            ("create-fingerprint-key", "audit-kv/secops/fingerprint-key"),
            ("claim", "audit-kv/secops/claims/audit-h/db"),
            ("handover-write", "audit-kv/audit-h/db"),
            ("record-provenance", "audit-kv/audit-h/db"),
            ("record-consumption", "audit-kv/audit-h/db"),
            ("mark-consumed", "audit-h/db"),
        ],
    },
    Step {
        args: &["handover", "-n", "audit-h"],
        before: None,
        exit: 0,
        changes: &[],
    },
    // A run died between its data write and its provenance: the data is there, unowned.
    Step {
        args: &["handover", "-n", "audit-f"],
        before: Some(|_| BAO.write(KV, "audit-f/db", json!({"password": FINISHED}))),
        exit: 0,
        changes: &[
            ("claim", "audit-kv/secops/claims/audit-f/db"),
            ("handover-finish", "audit-kv/audit-f/db"),
            ("record-consumption", "audit-kv/audit-f/db"),
            ("mark-consumed", "audit-f/db"),
        ],
    },
    Step {
        args: &["write-vault", "--secret", "audit-s/db"],
        before: None,
        exit: 0,
        changes: &[
            ("claim", "audit-kv/secops/claims/audit-s/db"),
            ("handover-write", "audit-kv/audit-s/db"),
            ("record-provenance", "audit-kv/audit-s/db"),
        ],
    },
    Step {
        args: &["mark-consumed", "--secret", "audit-s/db", "--mode", "strip"],
        before: None,
        exit: 0,
        changes: &[
            ("record-consumption", "audit-kv/audit-s/db"),
            ("mark-consumed", "audit-s/db"),
        ],
    },
    Step {
        args: &["write-vault", "--secret", "audit-d/db"],
        before: None,
        exit: 0,
        changes: &[
            ("claim", "audit-kv/secops/claims/audit-d/db"),
            ("handover-write", "audit-kv/audit-d/db"),
            ("record-provenance", "audit-kv/audit-d/db"),
        ],
    },
    Step {
        args: &[
            "mark-consumed",
            "--secret",
            "audit-d/db",
            "--mode",
            "delete",
            "--dry-run",
        ],
        before: None,
        exit: 0,
        changes: &[],
    },
    Step {
        args: &[
            "mark-consumed",
            "--secret",
            "audit-d/db",
            "--mode",
            "delete",
        ],
        before: None,
        exit: 0,
        changes: &[
            ("record-consumption", "audit-kv/audit-d/db"),
            ("delete-secret", "audit-d/db"),
        ],
    },
    Step {
        args: &["write-vault", "--secret", "audit-x/db"],
        before: None,
        exit: 0,
        changes: &[
            ("claim", "audit-kv/secops/claims/audit-x/db"),
            ("handover-write", "audit-kv/audit-x/db"),
            ("record-provenance", "audit-kv/audit-x/db"),
        ],
    },
    Step {
        args: &["mark-consumed", "--secret", "audit-x/db", "--dry-run"],
        before: Some(|cluster| {
            let data = json!({"data": {"password": STANDARD.encode("changed-in-git")}});
            cluster.merge_patch_secret("audit-x", "db", data);
        }),
        exit: 3,
        changes: &[],
    },
    // A refusal writes one thing: the Drifted Event.
    Step {
        args: &["mark-consumed", "--secret", "audit-x/db"],
        before: None,
        exit: 3,
        changes: &[("report-drift", "audit-x/db")],
    },
    Step {
        args: &["push-secret", "--secret", "audit-p/cert", "--dry-run"],
        before: None,
        exit: 0,
        changes: &[],
    },
    Step {
        args: &["push-secret", "--secret", "audit-p/cert"],
        before: None,
        exit: 0,
        changes: &[
            ("claim", "audit-kv/secops/claims/audit-p/cert"),
            ("push", "audit-kv/audit-p/cert"),
            ("record-provenance", "audit-kv/audit-p/cert"),
            ("annotate-push", "audit-p/cert"),
        ],
    },
    Step {
        args: &["push-secret", "-n", "audit-p"],
        before: Some(|cluster| {
            let data = json!({"data": {"tls.key": STANDARD.encode("a-new-key")}});
            cluster.merge_patch_secret("audit-p", "cert", data);
        }),
        exit: 0,
        changes: &[
            ("push", "audit-kv/audit-p/cert"),
            ("record-provenance", "audit-kv/audit-p/cert"),
            ("annotate-push", "audit-p/cert"),
        ],
    },
    Step {
        args: ROTATE_DRY,
        before: None,
        exit: 0,
        changes: &[],
    },
    Step {
        args: ROTATE,
        before: None,
        exit: 0,
        changes: &[
            ("rotation-claim", "audit-kv/secops/rotation-ids/audit-r1"),
            ("rotate", "audit-kv/audit-h/db"),
            ("rotation-complete", "audit-kv/secops/rotation-ids/audit-r1"),
            ("record-rotation", "audit-kv/audit-h/db"),
            ("refresh-consumer", "externalsecret/audit-h/db"),
            ("refresh-consumer", "deployment/audit-h/api"),
        ],
    },
    Step {
        args: ROTATE,
        before: None,
        exit: 0,
        changes: &[],
    },
    Step {
        args: &[
            "rotate",
            "--path",
            "audit-h/db",
            "--key",
            "password",
            "--rotation-id",
            "audit-r2",
            "--generator",
            "hex",
            "--keep-versions",
            "2",
        ],
        before: None,
        exit: 0,
        changes: &[
            ("rotation-claim", "audit-kv/secops/rotation-ids/audit-r2"),
            ("rotate", "audit-kv/audit-h/db"),
            ("rotation-complete", "audit-kv/secops/rotation-ids/audit-r2"),
            ("record-rotation", "audit-kv/audit-h/db"),
            ("destroy-versions", "audit-kv/audit-h/db"),
        ],
    },
    Step {
        args: SETUP_DRY,
        before: None,
        exit: 0,
        changes: &[],
    },
    Step {
        args: SETUP,
        before: None,
        exit: 0,
        changes: &[
            ("vault-setup", "sys/mounts/audit-setup"),
            ("vault-setup", "sys/auth/audit-k8s"),
            ("vault-setup", "auth/audit-k8s/config"),
            ("vault-setup", "sys/policies/acl/secops-audit"),
            (
                "claim",
                "audit-setup/secops/vault-setup/roles/audit-k8s/audit",
            ),
            ("vault-setup", "auth/audit-k8s/role/audit"),
        ],
    },
    Step {
        args: SETUP,
        before: None,
        exit: 0,
        changes: &[],
    },
];

/// A fresh KV mount and auth method, so vault-setup enables both.
const SETUP: &[&str] = &[
    "vault-setup",
    "--from-dir",
    "{dir}",
    "--enable-missing",
    "--kv-mount",
    "audit-setup",
    "--kubernetes-host",
    "https://kubernetes.default.svc",
    "--kubernetes-ca-file",
    "{ca}",
    "--kubernetes-use-client-jwt",
];

const SETUP_DRY: &[&str] = &[
    "vault-setup",
    "--from-dir",
    "{dir}",
    "--enable-missing",
    "--kv-mount",
    "audit-setup",
    "--kubernetes-host",
    "https://kubernetes.default.svc",
    "--kubernetes-ca-file",
    "{ca}",
    "--kubernetes-use-client-jwt",
    "--dry-run",
];

const ROTATE: &[&str] = &[
    "rotate",
    "--path",
    "audit-h/db",
    "--key",
    "password",
    "--rotation-id",
    "audit-r1",
    "--generator",
    "password",
    "--refresh",
    "externalsecret/audit-h/db",
    "--restart",
    "deployment/audit-h/api",
    "--sync-timeout",
    "0",
];

const ROTATE_DRY: &[&str] = &[
    "rotate",
    "--path",
    "audit-h/db",
    "--key",
    "password",
    "--rotation-id",
    "audit-r1",
    "--generator",
    "password",
    "--refresh",
    "externalsecret/audit-h/db",
    "--dry-run",
];

/// Actions whose change is a new KV version at the target: each one's `vault_version` is
/// the version it created, so per path they count 1, 2, ... up to Vault's current version.
const KV_WRITES: &[&str] = &[
    "create-fingerprint-key",
    "claim",
    "handover-write",
    "push",
    "rotation-claim",
    "rotate",
    "rotation-complete",
    "claim-takeover",
];

fn audit_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| l.contains("\"audit\":true"))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn action_and_target(event: &Value) -> (String, String) {
    let field = |name: &str| event[name].as_str().unwrap_or_default().to_string();
    (field("action"), field("target"))
}

/// Every secret under `folder` of a KV v2 mount, as `MOUNT/PATH`, sorted.
fn kv_paths(mount: &str, folder: &str) -> Vec<String> {
    let (_, body) = BAO.api("LIST", &format!("{mount}/metadata/{folder}"), None);
    let mut paths: Vec<String> = body["data"]["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|key| {
            let key = format!("{folder}{}", key.as_str().unwrap());
            match key.ends_with('/') {
                true => kv_paths(mount, &key),
                false => vec![format!("{mount}/{key}")],
            }
        })
        .collect();
    paths.sort();
    paths
}

fn setup(cluster: &Cluster, canaries: &Canaries, dir: &std::path::Path) {
    let (code, body) = BAO.api(
        "POST",
        &format!("sys/mounts/{KV}"),
        Some(json!({"type": "kv", "options": {"version": "2"}})),
    );
    assert_eq!(code, 204, "{body}");
    for ns in ["audit-h", "audit-s", "audit-d", "audit-x"] {
        cluster.namespace(ns);
        let value = canaries.plant(ns);
        cluster.bootstrap_secret(ns, "db", &format!("{ns}/db"), &[("password", &value)]);
    }
    cluster.namespace("audit-f");
    cluster.bootstrap_secret(
        "audit-f",
        "db",
        "audit-f/db",
        &[("password", FINISHED.as_bytes())],
    );
    cluster.namespace("audit-p");
    cluster.create(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "cert", "namespace": "audit-p", "labels": {"secops.dev/class": "internal"}, "annotations": {"secops.dev/vault-path": "audit-p/cert"}},
        "data": {"tls.key": STANDARD.encode(canaries.plant("audit-p"))},
    }));
    cluster.create(json!({"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": {"name": "db", "namespace": "audit-h"}, "spec": {"refreshInterval": "1h"}}));
    cluster.create(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": "audit-h"},
        "spec": {"template": {"metadata": {"labels": {"app": "api"}}, "spec": {"containers": [{"name": "api", "image": "api:1"}]}}},
    }));
    std::fs::write(
        dir.join("audit.hcl"),
        "path \"audit-kv/data/audit-h/*\" {\n  capabilities = [\"read\"]\n}\n",
    )
    .unwrap();
    let roles = json!({format!("auth/{AUTH}/role/audit"): {
        "bound_service_account_names": ["audit"],
        "bound_service_account_namespaces": ["audit-h"],
        "token_policies": ["secops-audit"],
    }});
    std::fs::write(dir.join("roles.json"), roles.to_string()).unwrap();
}

#[test]
fn every_state_change_of_every_command_emits_one_audit_event_whatever_rust_log_says() {
    let canaries = Canaries::new();
    let cluster = Cluster::start();
    let dir = TempDir::new("audit-setup");
    setup(&cluster, &canaries, dir.path());
    let trail = TempDir::new("audit-trail");
    let file = trail.path().join("audit.jsonl");
    let file_arg = file.to_str().unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    let ca = some_ca(&trail);

    let mut expected_all = Vec::new();
    let mut stderr_events = Vec::new();
    for (index, step) in STEPS.iter().enumerate() {
        if let Some(before) = step.before {
            before(&cluster);
        }
        let mut args: Vec<&str> = step
            .args
            .iter()
            .map(|a| match *a {
                "{dir}" => dir_arg,
                "{ca}" => ca.as_str(),
                a => a,
            })
            .collect();
        // The file by flag and by environment, on alternate steps.
        let mut env = vec![
            ("VAULT_ADDR", BAO.addr.as_str()),
            ("VAULT_TOKEN", "root"),
            ("SECOPS_KV_MOUNT", KV),
            ("RUST_LOG", if index % 3 == 0 { "off" } else { "warn" }),
            ("SECOPS_ACTOR", "audit-test"),
        ];
        if index % 2 == 0 {
            args.extend(["--audit-file", file_arg]);
        } else {
            env.push(("SECOPS_AUDIT_FILE", file_arg));
        }
        if index % 4 == 1 {
            env.push(("SECOPS_LOG_FORMAT", "text"));
        }
        let run: Run = secops_with(Some(&cluster), &args, &env);
        let label = step.args.join(" ");
        assert_eq!(
            run.code, step.exit,
            "{label}\n{}\n{}",
            run.stdout, run.stderr
        );
        canaries.assert_run_clean(&run);
        let events = audit_lines(&run.stderr);
        let seen: Vec<(String, String)> = events.iter().map(action_and_target).collect();
        let expected: Vec<(String, String)> = step
            .changes
            .iter()
            .map(|(a, t)| (a.to_string(), t.to_string()))
            .collect();
        assert_eq!(seen, expected, "{label}:\n{}", run.stderr);
        // A rotation's changes all carry its id; no other command's do.
        let rotation_id = step
            .args
            .iter()
            .position(|a| *a == "--rotation-id")
            .map_or(Value::Null, |i| json!(step.args[i + 1]));
        for event in &events {
            assert_eq!(event["actor"], "audit-test", "{event}");
            assert_eq!(event["command"], step.args[0], "{event}");
            assert!(event["outcome"].is_string(), "{event}");
            assert!(event["timestamp"].is_string(), "{event}");
            assert_eq!(event["rotation_id"], rotation_id, "{event}");
            assert!(event.get("vault_version").is_some(), "{event}");
        }
        expected_all.extend(expected);
        stderr_events.extend(events);
    }

    // The file holds the same events as stderr, one JSON line each, appended run after run;
    // neither the planted values nor those secops made (the rotated one, the fingerprint
    // key) are in it.
    let text = std::fs::read_to_string(&file).unwrap();
    for (path, key) in [
        ("audit-h/db", "password"),
        ("secops/fingerprint-key", "key"),
    ] {
        let made = BAO.read(KV, path).unwrap()[key]
            .as_str()
            .unwrap()
            .to_string();
        canaries.plant_bytes(made.into_bytes());
    }
    canaries.assert_absent("the audit file", &text);
    assert!(text.lines().all(|l| l.contains("\"audit\":true")), "{text}");
    let in_file = audit_lines(&text);
    assert_eq!(in_file, stderr_events);
    assert_eq!(
        in_file.iter().map(action_and_target).collect::<Vec<_>>(),
        expected_all
    );

    // Cross-check with Vault: every version of every path in the test's mounts was audited,
    // with its number.
    let mut versions: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for event in &in_file {
        let (action, target) = action_and_target(event);
        if KV_WRITES.contains(&action.as_str()) {
            let version = event["vault_version"]
                .as_u64()
                .expect("a KV write has a version");
            versions.entry(target).or_default().push(version);
        }
    }
    for (target, audited) in &versions {
        let (mount, path) = target.split_once('/').unwrap();
        let current = BAO.current_version(mount, path);
        assert_eq!(
            *audited,
            (1..=current).collect::<Vec<u64>>(),
            "{target}: the audited versions are every version Vault holds"
        );
    }
    // audit-f/db's one version is the test's, standing in for the run that died.
    let written: Vec<String> = [KV, "audit-setup"]
        .iter()
        .flat_map(|mount| kv_paths(mount, ""))
        .filter(|path| path != "audit-kv/audit-f/db")
        .collect();
    assert_eq!(
        versions.keys().cloned().collect::<Vec<_>>(),
        written,
        "every path written was audited"
    );
    // ... and the metadata and Kubernetes writes left what they say.
    let custom = |path: &str| BAO.custom_metadata(KV, path);
    assert_eq!(custom("audit-d/db")["secops-consumed-mode"], "delete");
    assert_eq!(custom("audit-h/db")["secops-rotation-id"], "audit-r2");
    assert!(custom("audit-p/cert").contains_key("secops-origin"));
    assert!(cluster.secret("audit-d", "db").is_none());
    let labels = |ns: &str| cluster.secret(ns, "db").unwrap()["metadata"]["labels"].clone();
    assert_eq!(labels("audit-h")["secops.dev/state"], "consumed");
    assert_eq!(labels("audit-s")["secops.dev/state"], "consumed");
    let es = object(&cluster, &es_path("audit-h", "db"));
    assert!(es["metadata"]["annotations"]["force-sync"].is_string());
    let deploy = object(&cluster, &deployment_path("audit-h", "api"));
    assert!(
        deploy["spec"]["template"]["metadata"]["annotations"]["secops.dev/restartedAt"].is_string()
    );
    canaries.assert_state_clean(&cluster, "audit-h", KV, &["audit-h/db"]);
}

#[test]
fn an_unwritable_audit_file_exits_2_before_connecting() {
    let run = secops_with(
        None,
        &[
            "rotate",
            "--path",
            "a/b",
            "--key",
            "k",
            "--rotation-id",
            "x",
            "--generator",
            "hex",
            "--audit-file",
            "/nonexistent/dir/audit.jsonl",
        ],
        // Nothing listens there: a connection attempt would exit 75.
        &[("VAULT_ADDR", "http://127.0.0.1:9"), ("VAULT_TOKEN", "t")],
    );
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(run.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("--audit-file"));
}
