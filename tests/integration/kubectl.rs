//! Today's kubectl (the one on PATH, v1.32) typed at the emulator as a person would type
//! it: typed creates (sent as protobuf), label and annotate, `get -w`, `rollout restart` and
//! `rollout status`, `create token`, `auth can-i --as` answered from RBAC, and `apply`
//! (a three-way strategic merge, fields validated by the server).

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::Value;

use crate::support::Cluster;

/// Runs kubectl against the emulator; success and stdout+stderr.
fn kubectl(cluster: &Cluster, args: &[&str]) -> (bool, String) {
    let output = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", cluster.kubeconfig())
        .output()
        .expect("kubectl is installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Runs kubectl and insists that it succeeds.
fn ok(cluster: &Cluster, args: &[&str]) -> String {
    let (success, out) = kubectl(cluster, args);
    assert!(success, "kubectl {}: {out}", args.join(" "));
    out
}

fn json(cluster: &Cluster, args: &[&str]) -> Value {
    let out = ok(cluster, &[args, &["-o", "json"]].concat());
    serde_json::from_str(&out).unwrap_or_else(|_| panic!("not JSON: {out}"))
}

/// A raw call with a bearer token: kubectl sends no token over plain http, curl does.
fn curl_as(cluster: &Cluster, token: &str, method: &str, path: &str, body: &str) -> (u16, Value) {
    let output = Command::new("curl")
        .args(["-s", "-X", method, "-w", "\n%{http_code}"])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ])
        .arg(format!("{}{path}", cluster.emulator.url()))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

#[test]
fn typed_creates_reach_the_emulator_as_protobuf_and_are_stored_faithfully() {
    let cluster = Cluster::start();
    ok(&cluster, &["create", "namespace", "typed"]);
    let ns = json(&cluster, &["get", "namespace", "typed"]);
    assert_eq!(ns["status"]["phase"], "Active");

    let out = ok(
        &cluster,
        &[
            "-n",
            "typed",
            "create",
            "secret",
            "generic",
            "db",
            "--from-literal=password=s3cr=et",
            "--from-literal=user=app",
        ],
    );
    assert!(out.contains("secret/db created"), "{out}");
    let secret = cluster.secret("typed", "db").expect("stored");
    assert_eq!(secret["data"]["password"], STANDARD.encode("s3cr=et"));
    assert_eq!(secret["data"]["user"], STANDARD.encode("app"));
    assert_eq!(secret["type"], "Opaque");
    assert!(secret["metadata"]["uid"].is_string());
    let (again, out) = kubectl(
        &cluster,
        &[
            "-n",
            "typed",
            "create",
            "secret",
            "generic",
            "db",
            "--from-literal=a=b",
        ],
    );
    assert!(!again && out.contains("already exists"), "{out}");

    ok(
        &cluster,
        &[
            "-n",
            "typed",
            "create",
            "configmap",
            "cfg",
            "--from-literal=mode=strict",
        ],
    );
    assert_eq!(
        json(&cluster, &["-n", "typed", "get", "cm", "cfg"])["data"]["mode"],
        "strict"
    );
    ok(
        &cluster,
        &["-n", "typed", "create", "serviceaccount", "app"],
    );
    ok(
        &cluster,
        &[
            "-n",
            "typed",
            "create",
            "role",
            "secret-reader",
            "--verb=get",
            "--resource=secrets",
            "--resource-name=db",
        ],
    );
    let role = json(&cluster, &["-n", "typed", "get", "role", "secret-reader"]);
    assert_eq!(role["rules"][0]["verbs"][0], "get");
    assert_eq!(role["rules"][0]["resources"][0], "secrets");
    assert_eq!(role["rules"][0]["resourceNames"][0], "db");
    ok(
        &cluster,
        &[
            "-n",
            "typed",
            "create",
            "rolebinding",
            "app-reads-db",
            "--role=secret-reader",
            "--serviceaccount=typed:app",
        ],
    );
    ok(
        &cluster,
        &[
            "create",
            "clusterrole",
            "ns-lister",
            "--verb=list",
            "--resource=namespaces",
        ],
    );
    ok(
        &cluster,
        &[
            "create",
            "clusterrolebinding",
            "app-lists-ns",
            "--clusterrole=ns-lister",
            "--serviceaccount=typed:app",
        ],
    );
    let binding = json(&cluster, &["get", "clusterrolebinding", "app-lists-ns"]);
    assert_eq!(binding["subjects"][0]["kind"], "ServiceAccount");
    assert_eq!(binding["subjects"][0]["namespace"], "typed");
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole");

    ok(
        &cluster,
        &["-n", "typed", "label", "secret", "db", "tier=db"],
    );
    ok(
        &cluster,
        &[
            "-n",
            "typed",
            "annotate",
            "secret",
            "db",
            "secops.dev/vault-path=typed/db",
        ],
    );
    let secret = cluster.secret("typed", "db").unwrap();
    assert_eq!(secret["metadata"]["labels"]["tier"], "db");
    assert_eq!(
        secret["metadata"]["annotations"]["secops.dev/vault-path"],
        "typed/db"
    );

    // The token kubectl mints authenticates as the service account, with exactly its rights.
    let token = ok(
        &cluster,
        &["-n", "typed", "create", "token", "app", "--duration=15m"],
    );
    let token = token.trim();
    let (code, review) = curl_as(
        &cluster,
        token,
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#,
    );
    assert_eq!(code, 201, "{review}");
    assert_eq!(
        review["status"]["userInfo"]["username"],
        "system:serviceaccount:typed:app"
    );
    let (code, _) = curl_as(
        &cluster,
        token,
        "GET",
        "/api/v1/namespaces/typed/secrets/db",
        "",
    );
    assert_eq!(code, 200, "the rolebinding grants get on db");
    let (code, status) = curl_as(
        &cluster,
        token,
        "GET",
        "/api/v1/namespaces/typed/configmaps/cfg",
        "",
    );
    assert_eq!(
        (code, status["reason"].as_str()),
        (403, Some("Forbidden")),
        "{status}"
    );
    let (code, _) = curl_as(&cluster, token, "GET", "/api/v1/namespaces", "");
    assert_eq!(
        code, 200,
        "the clusterrolebinding grants list on namespaces"
    );

    ok(&cluster, &["-n", "typed", "delete", "secret", "db"]);
    assert!(cluster.secret("typed", "db").is_none());
}

#[test]
fn a_body_that_is_not_protobuf_gets_a_status_and_the_emulator_keeps_serving() {
    let cluster = Cluster::start();
    cluster.namespace("garbage");
    let file = cluster.dir.path().join("body");
    let bodies: [&[u8]; 3] = [
        b"k8s\0\xff\xff\xffnot-protobuf",
        b"{\"kind\":\"Secret\"}",
        b"",
    ];
    for body in bodies {
        std::fs::write(&file, body).unwrap();
        let output = Command::new("curl")
            .args(["-s", "-X", "POST", "-w", "\n%{http_code}"])
            .args(["-H", "Content-Type: application/vnd.kubernetes.protobuf"])
            .args(["--data-binary", &format!("@{}", file.display())])
            .arg(format!(
                "{}/api/v1/namespaces/garbage/secrets",
                cluster.emulator.url()
            ))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        let (status, code) = text.rsplit_once('\n').unwrap();
        let status: Value = serde_json::from_str(status).unwrap();
        assert_eq!(code, "400", "{body:?}: {status}");
        assert_eq!(status["kind"], "Status");
    }
    ok(
        &cluster,
        &[
            "-n",
            "garbage",
            "create",
            "secret",
            "generic",
            "after",
            "--from-literal=k=v",
        ],
    );
}

#[test]
fn get_watch_sees_a_concurrent_change() {
    let cluster = Cluster::start();
    ok(&cluster, &["create", "namespace", "watched"]);
    ok(
        &cluster,
        &[
            "-n",
            "watched",
            "create",
            "secret",
            "generic",
            "db",
            "--from-literal=k=v",
        ],
    );
    let mut watcher = Command::new("kubectl")
        .args([
            "-n",
            "watched",
            "get",
            "secret",
            "db",
            "--watch",
            "--output-watch-events",
        ])
        .args([
            "-o",
            "jsonpath={.type} {.object.metadata.labels.round}{\"\\n\"}",
        ])
        .env("KUBECONFIG", cluster.kubeconfig())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl");
    let (lines, events) = mpsc::channel();
    let stdout = watcher.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    // A bound against hanging, not a measurement: the watch shows up in a few milliseconds.
    let patience = Duration::from_secs(30);
    let first = events
        .recv_timeout(patience)
        .expect("the watch's first event");
    assert_eq!(
        first.trim(),
        "ADDED",
        "the watch starts from the listed state"
    );
    let watching = || {
        let cluster = cluster.emulator.cluster();
        cluster
            .log
            .iter()
            .any(|r| r.verb == "watch" && r.resource == "secrets")
    };
    while !watching() {
        std::thread::sleep(Duration::from_millis(20));
    }
    ok(
        &cluster,
        &["-n", "watched", "label", "secret", "db", "round=2"],
    );
    let seen = events
        .recv_timeout(patience)
        .expect("an event after the label");
    let _ = watcher.kill();
    let _ = watcher.wait();
    assert_eq!(
        seen.trim(),
        "MODIFIED 2",
        "the label change, as it happened"
    );
}

#[test]
fn rollout_restart_starts_a_rollout_that_rollout_status_sees_complete() {
    let cluster = Cluster::start();
    ok(&cluster, &["create", "namespace", "rolling"]);
    ok(
        &cluster,
        &[
            "-n",
            "rolling",
            "create",
            "deployment",
            "api",
            "--image=api:1",
            "--replicas=2",
        ],
    );
    let created = json(&cluster, &["-n", "rolling", "get", "deploy", "api"]);
    assert_eq!(created["metadata"]["generation"], 1);
    assert_eq!(
        created["spec"]["template"]["spec"]["containers"][0]["image"],
        "api:1"
    );

    let out = ok(
        &cluster,
        &["-n", "rolling", "rollout", "restart", "deployment/api"],
    );
    assert!(out.contains("deployment.apps/api restarted"), "{out}");
    let restarted = json(&cluster, &["-n", "rolling", "get", "deploy", "api"]);
    assert_eq!(
        restarted["metadata"]["generation"], 2,
        "a new pod template is a new generation"
    );
    assert!(
        restarted["spec"]["template"]["metadata"]["annotations"]
            ["kubectl.kubernetes.io/restartedAt"]
            .is_string(),
        "{restarted}"
    );
    let out = ok(
        &cluster,
        &[
            "-n",
            "rolling",
            "rollout",
            "status",
            "deployment/api",
            "--timeout=60s",
        ],
    );
    assert!(
        out.contains("deployment \"api\" successfully rolled out"),
        "{out}"
    );
    assert_eq!(restarted["status"]["observedGeneration"], 2);
    assert_eq!(restarted["status"]["updatedReplicas"], 2);

    let (missing, out) = kubectl(
        &cluster,
        &[
            "-n",
            "rolling",
            "rollout",
            "status",
            "deployment/nope",
            "--timeout=5s",
        ],
    );
    assert!(
        !missing && (out.contains("NotFound") || out.contains("not found")),
        "{out}"
    );
}

#[test]
fn auth_can_i_as_a_service_account_answers_from_rbac() {
    let cluster = Cluster::start();
    ok(&cluster, &["create", "namespace", "least"]);
    ok(&cluster, &["create", "namespace", "elsewhere"]);
    ok(
        &cluster,
        &["-n", "least", "create", "serviceaccount", "secops"],
    );
    ok(
        &cluster,
        &[
            "-n",
            "least",
            "create",
            "role",
            "handover",
            "--verb=get,list,patch",
            "--resource=secrets",
        ],
    );
    ok(
        &cluster,
        &[
            "-n",
            "least",
            "create",
            "rolebinding",
            "secops-handover",
            "--role=handover",
            "--serviceaccount=least:secops",
        ],
    );
    let as_secops = "--as=system:serviceaccount:least:secops";
    let can_i = |args: &[&str]| {
        let (_, out) = kubectl(&cluster, &[&["auth", "can-i"], args, &[as_secops]].concat());
        out.trim().to_string()
    };
    assert_eq!(can_i(&["patch", "secrets", "-n", "least"]), "yes");
    assert_eq!(can_i(&["list", "secrets", "-n", "least"]), "yes");
    assert_eq!(can_i(&["delete", "secrets", "-n", "least"]), "no");
    assert_eq!(can_i(&["get", "configmaps", "-n", "least"]), "no");
    assert_eq!(can_i(&["get", "secrets", "-n", "elsewhere"]), "no");
    assert_eq!(
        can_i(&[
            "create",
            "serviceaccounts",
            "--subresource=token",
            "-n",
            "least"
        ]),
        "no"
    );
    assert_eq!(
        can_i(&["get", "/version"]),
        "yes",
        "discovery is open to every user"
    );
    assert_eq!(can_i(&["get", "/metrics"]), "no");
    assert_eq!(
        ok(
            &cluster,
            &["auth", "can-i", "delete", "secrets", "-n", "least"]
        )
        .trim(),
        "yes",
        "the admin may"
    );

    // Impersonation holds for every request, not only the review.
    ok(
        &cluster,
        &[
            "-n",
            "least",
            "create",
            "secret",
            "generic",
            "db",
            "--from-literal=k=v",
        ],
    );
    ok(&cluster, &["-n", "least", "get", "secret", "db", as_secops]);
    let (allowed, out) = kubectl(
        &cluster,
        &["-n", "least", "delete", "secret", "db", as_secops],
    );
    assert!(!allowed && out.contains("Forbidden"), "{out}");
    assert!(out.contains("system:serviceaccount:least:secops"), "{out}");
    assert!(cluster.secret("least", "db").is_some());

    // A service account may not make itself someone else.
    let token = cluster
        .emulator
        .cluster()
        .issue_token(
            "least",
            "secops",
            &[kube_emulator::API_AUDIENCES[0].to_string()],
            600,
        )
        .unwrap();
    let output = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}"])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args([
            "-H",
            "Impersonate-User: kubernetes-admin",
            "-H",
            "Impersonate-Group: system:masters",
        ])
        .arg(format!(
            "{}/api/v1/namespaces/least/configmaps",
            cluster.emulator.url()
        ))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(text.ends_with("\n403"), "{text}");
}

#[test]
fn apply_creates_then_merges_three_ways_and_the_server_validates_fields() {
    let cluster = Cluster::start();
    ok(&cluster, &["create", "namespace", "applied"]);
    let file = cluster.dir.path().join("secret.yaml");
    let manifest = |data: &str, extra: &str| {
        let text = format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\n  namespace: applied\n\
             {extra}type: Opaque\ndata:\n{data}"
        );
        std::fs::write(&file, text).unwrap();
        file.to_str().unwrap().to_string()
    };
    let both = manifest("  a: YQ==\n  b: Yg==\n", "");
    assert!(ok(&cluster, &["apply", "-f", &both]).contains("secret/app created"));
    let created = cluster.secret("applied", "app").unwrap();
    assert!(
        created["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );
    ok(
        &cluster,
        &["-n", "applied", "label", "secret", "app", "keep=me"],
    );

    // Three-way: `b` was applied before and Git dropped it, so it goes; the label was never
    // applied, so it stays.
    let only_a = manifest("  a: YQ==\n", "");
    assert!(ok(&cluster, &["apply", "-f", &only_a]).contains("secret/app configured"));
    let merged = cluster.secret("applied", "app").unwrap();
    assert_eq!(merged["data"], serde_json::json!({"a": "YQ=="}));
    assert_eq!(merged["metadata"]["labels"]["keep"], "me");

    // kubectl leaves validation to the server, which refuses a field Secrets do not have.
    let bogus = manifest("  a: YQ==\n", "bogus: 1\n");
    let (applied, out) = kubectl(&cluster, &["apply", "-f", &bogus]);
    assert!(!applied && out.contains("unknown field \"bogus\""), "{out}");

    // A strategic merge directive the emulator does not implement is refused, not merged.
    let output = Command::new("curl")
        .args(["-s", "-X", "PATCH", "-w", "\n%{http_code}"])
        .args(["-H", "Content-Type: application/strategic-merge-patch+json"])
        .args(["--data-binary", r#"{"data":{"$retainKeys":["a"]}}"#])
        .arg(format!(
            "{}/api/v1/namespaces/applied/secrets/app",
            cluster.emulator.url()
        ))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        text.ends_with("\n400") && text.contains("$retainKeys"),
        "{text}"
    );
}
