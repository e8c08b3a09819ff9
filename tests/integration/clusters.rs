//! Many clusters, one Vault (issue #19 item 2): two emulators, `east` and `west`, and an
//! unnamed third share one OpenBao mount. Origins name their cluster
//! (`bootstrap:CLUSTER/NS/NAME`, `docs/contract.md` §3), `{cluster}` in `--allowed-path` keeps
//! each cluster in its subtree, and `status` judges only its own cluster's origins.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::support::{chart_token_on, secops_with, Canaries, Cluster, Run, BAO};

/// A mount of its own: `status -A` walks the whole mount, and the other tests' paths in
/// `secret` name origins these emulators do not hold.
const MOUNT: &str = "kv-clusters";
const NS: &str = "app";

fn enable_mount() {
    let (code, body) = BAO.api(
        "POST",
        &format!("sys/mounts/{MOUNT}"),
        Some(json!({"type": "kv", "options": {"version": "2"}})),
    );
    assert!(
        code < 300 || body.to_string().contains("existing mount"),
        "{body}"
    );
}

/// One cluster's secops, under the Vault policies the chart renders for it.
struct Site {
    cluster: Cluster,
    name: Option<&'static str>,
    handover_token: String,
    status_token: String,
}

impl Site {
    fn start(name: Option<&'static str>) -> Site {
        let cluster = Cluster::start();
        cluster.namespace(NS);
        let namespaces = [NS.to_string()];
        Site {
            cluster,
            name,
            handover_token: chart_token_on(MOUNT, "handover", &namespaces),
            status_token: chart_token_on(MOUNT, "status", &namespaces),
        }
    }

    fn run(&self, token: &str, args: &[&str]) -> Run {
        let mut env = vec![
            ("VAULT_ADDR", BAO.addr.as_str()),
            ("VAULT_TOKEN", token),
            ("SECOPS_KV_MOUNT", MOUNT),
        ];
        if let Some(name) = self.name {
            env.push(("SECOPS_CLUSTER", name));
            env.push((
                "SECOPS_ALLOWED_PATHS",
                "{namespace}/{cluster}/**,{namespace}/shared/*",
            ));
        }
        secops_with(Some(&self.cluster), args, &env)
    }

    fn handover(&self, args: &[&str]) -> Run {
        self.run(&self.handover_token, args)
    }

    fn status(&self, args: &[&str]) -> Run {
        let mut all = vec!["status", "-A", "--output", "json"];
        all.extend_from_slice(args);
        self.run(&self.status_token, &all)
    }
}

fn origin(path: &str) -> String {
    BAO.custom_metadata(MOUNT, path)
        .get("secops-origin")
        .cloned()
        .unwrap_or_default()
}

/// The Vault paths of a status document's judged rows, sorted.
fn row_paths(run: &Run) -> Vec<String> {
    let mut paths: Vec<String> = run.json()["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["path"].as_str().map(String::from))
        .collect();
    paths.sort();
    paths
}

fn other_clusters(run: &Run) -> Vec<(Value, String, String)> {
    let mut rows: Vec<(Value, String, String)> = run.json()["other_clusters"]
        .as_array()
        .expect("other_clusters is listed")
        .iter()
        .map(|r| {
            (
                r["cluster"].clone(),
                r["path"].as_str().unwrap().to_string(),
                r["origin"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    rows.sort_by(|a, b| a.1.cmp(&b.1));
    rows
}

#[test]
fn two_clusters_share_one_vault_without_colliding() {
    enable_mount();
    let canaries = Canaries::new();
    let east = Site::start(Some("east"));
    let west = Site::start(Some("west"));
    // The same NS/NAME in both clusters, each handed over below its own cluster's prefix.
    for (site, name) in [(&east, "east"), (&west, "west")] {
        let (password, token) = (canaries.plant(name), canaries.plant(name));
        site.cluster.bootstrap_secret(
            NS,
            "db",
            &format!("{NS}/{name}/db"),
            &[("password", &password)],
        );
        // One path both clusters name: only the first hands over to it.
        site.cluster
            .bootstrap_secret(NS, "cfg", &format!("{NS}/shared/cfg"), &[("token", &token)]);
    }
    // A Secret only west has: east must not call its path origin-gone.
    let value = canaries.plant("west-only");
    west.cluster.bootstrap_secret(
        NS,
        "west-only",
        &format!("{NS}/west/west-only"),
        &[("k", &value)],
    );

    let handed = east.handover(&["handover", "-n", NS]);
    canaries.assert_run_clean(&handed);
    assert_eq!(handed.code, 0, "{}{}", handed.stdout, handed.stderr);
    assert_eq!(origin("app/east/db"), "bootstrap:east/app/db");
    assert_eq!(origin("app/shared/cfg"), "bootstrap:east/app/cfg");
    // A push names its cluster too.
    let value = canaries.plant("pushed");
    east.cluster.create(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "pushed", "namespace": NS,
                     "labels": {"secops.dev/class": "internal"},
                     "annotations": {"secops.dev/vault-path": "app/east/pushed"}},
        "data": {"k": STANDARD.encode(&value)},
    }));
    let push_token = chart_token_on(MOUNT, "push", &[NS.to_string()]);
    let pushed = east.run(&push_token, &["push-secret", "--secret", "app/pushed"]);
    canaries.assert_run_clean(&pushed);
    assert_eq!(pushed.code, 0, "{}{}", pushed.stdout, pushed.stderr);
    assert_eq!(origin("app/east/pushed"), "push:east/app/pushed");

    // West: db and west-only hand over; cfg names east's path and is refused (exit 3).
    let handed = west.handover(&["handover", "-n", NS]);
    canaries.assert_run_clean(&handed);
    assert_eq!(handed.code, 3, "{}{}", handed.stdout, handed.stderr);
    assert_eq!(origin("app/west/db"), "bootstrap:west/app/db");
    assert_eq!(origin("app/west/west-only"), "bootstrap:west/app/west-only");
    let refused = west.handover(&["write-vault", "--secret", "app/cfg"]);
    canaries.assert_run_clean(&refused);
    assert_eq!(refused.code, 3, "{}", refused.stdout);
    let message = refused.json()["error"]["message"].to_string();
    assert!(
        message.contains("bootstrap:east/app/cfg") && message.contains("bootstrap:west/app/cfg"),
        "the refusal names both clusters' origins: {message}"
    );
    assert_eq!(origin("app/shared/cfg"), "bootstrap:east/app/cfg");
    assert_eq!(BAO.current_version(MOUNT, "app/shared/cfg"), 1);

    // `{cluster}` keeps each cluster in its subtree.
    east.cluster.bootstrap_secret(
        NS,
        "astray",
        &format!("{NS}/west/astray"),
        &[("k", b"v-astray")],
    );
    let astray = east.handover(&["write-vault", "--secret", "app/astray"]);
    assert_eq!(astray.code, 3, "{}", astray.stdout);
    assert!(BAO.metadata(MOUNT, "app/west/astray").is_none());
    east.cluster.delete_secret(NS, "astray");

    // Each status judges its own cluster only: west's paths are not origin-gone in east.
    let status = east.status(&[]);
    canaries.assert_run_clean(&status);
    assert_eq!(status.code, 0, "{}", status.stdout);
    assert_eq!(
        row_paths(&status),
        ["app/east/db", "app/east/pushed", "app/shared/cfg"]
    );
    assert!(
        status.json().get("other_clusters").is_none(),
        "listed only on request: {}",
        status.stdout
    );
    let listed = east.status(&["--other-clusters"]);
    assert_eq!(listed.code, 0, "{}", listed.stdout);
    assert_eq!(
        row_paths(&listed),
        ["app/east/db", "app/east/pushed", "app/shared/cfg"]
    );
    assert_eq!(
        other_clusters(&listed),
        [
            (
                json!("west"),
                "app/west/db".into(),
                "bootstrap:west/app/db".into()
            ),
            (
                json!("west"),
                "app/west/west-only".into(),
                "bootstrap:west/app/west-only".into()
            ),
        ]
    );
    let table = east.run(
        &east.status_token,
        &["status", "-A", "--output", "table", "--other-clusters"],
    );
    assert!(
        table
            .stdout
            .contains("other-cluster  bootstrap:west/app/db  kv-clusters/app/west/db"),
        "{}",
        table.stdout
    );
    // West's cfg is pending: its path is east's, which west neither judges nor claims.
    let status = west.status(&[]);
    assert_eq!(status.code, 0, "{}", status.stdout);
    assert_eq!(
        row_paths(&status),
        ["app/shared/cfg", "app/west/db", "app/west/west-only"]
    );

    // The unnamed cluster works as before: origins without a cluster, and it judges only those.
    let plain = Site::start(None);
    let value = canaries.plant("plain");
    plain
        .cluster
        .bootstrap_secret(NS, "db", "app/db", &[("k", &value)]);
    let handed = plain.handover(&["handover", "-n", NS]);
    assert_eq!(handed.code, 0, "{}{}", handed.stdout, handed.stderr);
    assert_eq!(origin("app/db"), "bootstrap:app/db");
    let status = plain.status(&[]);
    assert_eq!(status.code, 0, "{}", status.stdout);
    assert_eq!(row_paths(&status), ["app/db"]);
    let listed = plain.status(&["--other-clusters"]);
    let clusters: Vec<Value> = other_clusters(&listed).into_iter().map(|r| r.0).collect();
    assert_eq!(
        clusters,
        [
            json!("east"),
            json!("east"),
            json!("east"),
            json!("west"),
            json!("west")
        ],
        "{}",
        listed.stdout
    );
    let listed = east.status(&["--other-clusters"]);
    assert!(
        other_clusters(&listed).contains(&(
            Value::Null,
            "app/db".into(),
            "bootstrap:app/db".into()
        )),
        "the unnamed cluster's origins are another cluster's to east: {}",
        listed.stdout
    );
    canaries.assert_state_clean(
        &east.cluster,
        NS,
        MOUNT,
        &[
            "app/east/db",
            "app/east/pushed",
            "app/west/db",
            "app/shared/cfg",
            "app/db",
        ],
    );
}
