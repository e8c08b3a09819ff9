//! The Kubernetes API emulator, checked with real clients: kubectl, kube-rs and OpenBao's
//! kubernetes auth method.

use std::process::Command;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use crate::support::{secops_with, Cluster, TempDir, BAO};

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

fn names(listing: &str) -> Vec<String> {
    let list: Value =
        serde_json::from_str(listing).unwrap_or_else(|_| panic!("not JSON: {listing}"));
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn kubectl_drives_the_emulator() {
    let cluster = Cluster::start();
    let dir = TempDir::new("kubectl");
    let ns_file = dir.path().join("ns.json");
    std::fs::write(
        &ns_file,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kc"}}).to_string(),
    )
    .unwrap();
    let (ok, out) = kubectl(&cluster, &["create", "-f", ns_file.to_str().unwrap()]);
    assert!(ok, "{out}");
    for (name, tier) in [("one", "db"), ("two", "web"), ("three", "cache")] {
        let file = dir.path().join(format!("{name}.json"));
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "kc", "labels": {"tier": tier}}, "stringData": {"k": "v"}});
        std::fs::write(&file, secret.to_string()).unwrap();
        let (ok, out) = kubectl(&cluster, &["create", "-f", file.to_str().unwrap()]);
        assert!(ok, "{out}");
    }
    let (ok, out) = kubectl(
        &cluster,
        &["-n", "kc", "get", "secret", "one", "-o", "json"],
    );
    assert!(ok, "{out}");
    let one: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        one["data"]["k"], "dg==",
        "stringData folds into base64 data"
    );
    assert!(one["metadata"]["uid"].is_string() && one["metadata"]["resourceVersion"].is_string());

    assert!(
        kubectl(
            &cluster,
            &["-n", "kc", "label", "secret", "one", "extra=yes"]
        )
        .0
    );
    assert!(
        kubectl(
            &cluster,
            &["-n", "kc", "annotate", "secret", "one", "note=hello"]
        )
        .0
    );
    let (ok, out) = kubectl(
        &cluster,
        &[
            "-n",
            "kc",
            "patch",
            "secret",
            "two",
            "--type=merge",
            "-p",
            r#"{"metadata":{"labels":{"merged":"true"}}}"#,
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = kubectl(
        &cluster,
        &[
            "-n",
            "kc",
            "patch",
            "secret",
            "two",
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/metadata/annotations","value":{"json":"patched"}}]"#,
        ],
    );
    assert!(ok, "{out}");
    let (ok, _) = kubectl(
        &cluster,
        &[
            "-n",
            "kc",
            "patch",
            "secret",
            "two",
            "--type=json",
            "-p",
            r#"[{"op":"test","path":"/metadata/labels/tier","value":"nope"}]"#,
        ],
    );
    assert!(!ok, "a failed json-patch test is refused");
    let (_, out) = kubectl(
        &cluster,
        &["-n", "kc", "get", "secret", "two", "-o", "json"],
    );
    let two: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(two["metadata"]["labels"]["merged"], "true");
    assert_eq!(two["metadata"]["annotations"]["json"], "patched");

    let cases: [(&str, &[&str]); 7] = [
        ("tier=db", &["one"]),
        ("tier==web", &["two"]),
        ("tier!=db", &["three", "two"]),
        ("tier in (db,cache)", &["one", "three"]),
        ("tier notin (db,cache)", &["two"]),
        ("extra", &["one"]),
        ("!extra", &["three", "two"]),
    ];
    for (selector, expected) in cases {
        let (ok, out) = kubectl(
            &cluster,
            &["-n", "kc", "get", "secrets", "-l", selector, "-o", "json"],
        );
        assert!(ok, "{selector}: {out}");
        let mut got = names(&out);
        got.sort();
        assert_eq!(got, expected, "selector {selector}");
    }
    let (ok, out) = kubectl(&cluster, &["-n", "kc", "delete", "secret", "one"]);
    assert!(ok, "{out}");
    let (ok, out) = kubectl(&cluster, &["-n", "kc", "get", "secret", "one"]);
    assert!(!ok && out.contains("NotFound"), "{out}");
}

async fn client(cluster: &Cluster) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(cluster.kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

fn api_error(error: kube::Error) -> (u16, String) {
    match error {
        kube::Error::Api(status) => (status.code, status.reason.clone()),
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test]
async fn kube_rs_sees_api_server_conventions() {
    let cluster = Cluster::start();
    cluster.namespace("kr");
    let secrets: Api<Secret> = Api::namespaced(client(&cluster).await, "kr");
    let created = secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "s"}, "stringData": {"a": "b"}}))
                .unwrap(),
        )
        .await
        .unwrap();
    let stale = created.clone();
    let mut fresh = created.clone();
    fresh.metadata.labels = Some([("x".to_string(), "1".to_string())].into());
    secrets
        .replace("s", &PostParams::default(), &fresh)
        .await
        .unwrap();

    let (code, reason) = api_error(
        secrets
            .replace("s", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (code, reason.as_str()),
        (409, "Conflict"),
        "stale resourceVersion on replace"
    );

    let (code, reason) = api_error(secrets.get("missing").await.unwrap_err());
    assert_eq!((code, reason.as_str()), (404, "NotFound"));

    let test_op: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/metadata/name", "value": "other"}]))
            .unwrap();
    let (code, reason) = api_error(
        secrets
            .patch("s", &PatchParams::default(), &Patch::Json::<()>(test_op))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (code, reason.as_str()),
        (422, "Invalid"),
        "failed json-patch test"
    );

    let stale_rv = stale.metadata.resource_version.clone().unwrap();
    let merge = json!({"metadata": {"resourceVersion": stale_rv, "labels": {"y": "2"}}});
    let (code, _) = api_error(
        secrets
            .patch("s", &PatchParams::default(), &Patch::Merge(merge))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 409, "merge patch with a stale resourceVersion");

    let (code, reason) = api_error(
        secrets
            .create(&PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "AlreadyExists"));

    // limit/continue: pages that together hold every object exactly once.
    for i in 0..5 {
        let extra =
            serde_json::from_value(json!({"metadata": {"name": format!("page-{i}")}})).unwrap();
        secrets
            .create(&PostParams::default(), &extra)
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut params = kube::api::ListParams::default().limit(2);
    loop {
        let page = secrets.list(&params).await.unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|s| s.metadata.name.clone().unwrap()));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    assert_eq!(
        seen,
        ["page-0", "page-1", "page-2", "page-3", "page-4", "s"]
    );

    // Across namespaces, with a selector: pages walk namespace by namespace, skip what does
    // not match, and never reach into another kind's objects.
    cluster.namespace("kr-b");
    let other: Api<Secret> = Api::namespaced(client(&cluster).await, "kr-b");
    for name in ["b-1", "b-2"] {
        let labelled =
            serde_json::from_value(json!({"metadata": {"name": name, "labels": {"paged": "yes"}}}))
                .unwrap();
        other
            .create(&PostParams::default(), &labelled)
            .await
            .unwrap();
    }
    let labelled =
        serde_json::from_value(json!({"metadata": {"name": "page-9", "labels": {"paged": "yes"}}}))
            .unwrap();
    secrets
        .create(&PostParams::default(), &labelled)
        .await
        .unwrap();
    cluster.create(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "kr", "labels": {"paged": "yes"}}}));
    let everywhere: Api<Secret> = Api::all(client(&cluster).await);
    let mut seen = Vec::new();
    let mut params = kube::api::ListParams::default()
        .labels("paged=yes")
        .limit(1);
    loop {
        let page = everywhere.list(&params).await.unwrap();
        seen.extend(page.items.iter().map(|s| {
            format!(
                "{}/{}",
                s.metadata.namespace.clone().unwrap(),
                s.metadata.name.clone().unwrap()
            )
        }));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    assert_eq!(seen, ["kr/page-9", "kr-b/b-1", "kr-b/b-2"]);
}

/// A self-signed CA certificate: OpenBao wants some `kubernetes_ca_cert` even over http.
fn some_ca_pem(dir: &TempDir) -> String {
    let key = dir.path().join("ca.key");
    let cert = dir.path().join("ca.crt");
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=emulator-ca",
        ])
        .args([
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ])
        .output()
        .expect("openssl");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    std::fs::read_to_string(cert).unwrap()
}

#[test]
fn openbao_kubernetes_auth_logs_secops_in_through_the_emulator() {
    let cluster = Cluster::start();
    let dir = TempDir::new("k8s-auth");
    let mount = format!("k8s-{}", std::process::id());
    let (code, body) = BAO.api(
        "POST",
        &format!("sys/auth/{mount}"),
        Some(json!({"type": "kubernetes"})),
    );
    assert_eq!(code, 204, "{body}");
    let config = json!({"kubernetes_host": cluster.emulator.url(), "kubernetes_ca_cert": some_ca_pem(&dir), "disable_local_ca_jwt": true});
    let (code, body) = BAO.api("POST", &format!("auth/{mount}/config"), Some(config));
    assert_eq!(code, 204, "{body}");
    let policy = "path \"secret/*\" { capabilities = [\"read\", \"list\"] }";
    BAO.api(
        "POST",
        "sys/policies/acl/k8s-auth-read",
        Some(json!({"policy": policy})),
    );
    let (code, body) = BAO.api(
        "POST",
        &format!("auth/{mount}/role/secops"),
        Some(json!({"bound_service_account_names": ["secops"], "bound_service_account_namespaces": ["auth"], "audience": "vault", "token_policies": ["k8s-auth-read"]})),
    );
    assert_eq!(code, 204, "{body}");

    cluster.namespace("auth");
    for name in ["secops", "other"] {
        cluster.create(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": "auth"}}));
    }
    // OpenBao reviews the login JWT with itself as bearer, as on a real cluster.
    cluster.create(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "secops-auth-delegator"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
        "subjects": [{"kind": "ServiceAccount", "name": "secops", "namespace": "auth"}, {"kind": "ServiceAccount", "name": "other", "namespace": "auth"}],
    }));
    let token = |sa: &str, audience: &str, lifetime: i64| {
        let jwt = cluster
            .emulator
            .cluster()
            .issue_token("auth", sa, &[audience.to_string()], lifetime)
            .unwrap();
        let file = dir.path().join(format!(
            "{sa}-{}-{lifetime}.jwt",
            audience.replace(['/', ':'], "_")
        ));
        std::fs::write(&file, format!("{jwt}\n")).unwrap();
        file
    };
    let login = |jwt_file: std::path::PathBuf| {
        let file = jwt_file.to_str().unwrap().to_string();
        secops_with(
            Some(&cluster),
            &[
                "read-bootstrap",
                "-n",
                "auth",
                "--vault-auth",
                "kubernetes",
                "--vault-role",
                "secops",
                "--vault-auth-mount",
                &mount,
                "--vault-jwt-file",
                &file,
            ],
            &[("VAULT_ADDR", &BAO.addr)],
        )
    };
    let accepted = login(token("secops", "vault", 3600));
    assert_eq!(accepted.code, 0, "{}", accepted.stderr);
    for (case, file) in [
        ("expired token", token("secops", "vault", -60)),
        ("another service account", token("other", "vault", 3600)),
        (
            "wrong audience",
            token("secops", "https://kubernetes.default.svc", 3600),
        ),
    ] {
        let denied = login(file);
        assert_eq!(denied.code, 2, "{case} must be denied: {}", denied.stderr);
    }
}
