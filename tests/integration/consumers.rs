//! Consumers after a rotation (docs/contract.md §6.4, issue #18 item 2 and #14 item 4):
//! ExternalSecrets are force-synced first and workloads restarted only once ESO reports the
//! sync; triggers come from the rotation record and name its id, so a redelivered id changes
//! nothing and a later rotation always refreshes, even within the same second. ESO is modelled from its documented status fields by a small
//! controller that syncs on a `force-sync` change after a delay, or fails.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{kube_emulator_request, secops, Canaries, Cluster, Run, BAO};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EsoMode {
    /// Syncs each `force-sync` change after the delay: `refreshTime` now, `Ready=True`.
    Sync(Duration),
    /// Tries, and reports `Ready=False` (`SecretSyncedError`), as ESO does when the provider
    /// refuses.
    Fail,
}

/// A stand-in for ESO's controller over the emulator, for the namespaces given.
pub struct Eso<'a> {
    cluster: &'a Cluster,
    namespaces: Vec<String>,
    pub mode: Mutex<EsoMode>,
    stop: AtomicBool,
    /// Per ExternalSecret: the `force-sync` value last acted on, and when a new one was seen.
    seen: Mutex<BTreeMap<String, (String, Option<Instant>)>>,
}

fn get(cluster: &Cluster, path: &str) -> Value {
    let mut c = cluster.emulator.cluster();
    let token = c.admin_token().to_string();
    c.handle(&kube_emulator_request("GET", path, &token)).body
}

pub fn merge_patch(cluster: &Cluster, path: &str, body: Value) -> Value {
    let mut c = cluster.emulator.cluster();
    let token = c.admin_token().to_string();
    let mut request = kube_emulator_request("PATCH", path, &token);
    request.content_type = "application/merge-patch+json".into();
    request.body = body.to_string().into_bytes();
    let outcome = c.handle(&request);
    assert_eq!(outcome.code, 200, "{}", outcome.body);
    outcome.body
}

pub fn es_path(ns: &str, name: &str) -> String {
    format!("/apis/external-secrets.io/v1/namespaces/{ns}/externalsecrets/{name}")
}

pub fn deployment_path(ns: &str, name: &str) -> String {
    format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}")
}

pub fn object(cluster: &Cluster, path: &str) -> Value {
    get(cluster, path)
}

fn resource_version(object: &Value) -> u64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl<'a> Eso<'a> {
    pub fn new(cluster: &'a Cluster, namespaces: &[&str], mode: EsoMode) -> Self {
        Eso {
            cluster,
            namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
            mode: Mutex::new(mode),
            stop: AtomicBool::new(false),
            seen: Mutex::new(BTreeMap::new()),
        }
    }

    fn tick(&self) {
        let mode = *self.mode.lock().unwrap();
        for ns in &self.namespaces {
            let list = get(
                self.cluster,
                &format!("/apis/external-secrets.io/v1/namespaces/{ns}/externalsecrets"),
            );
            for es in list["items"].as_array().cloned().unwrap_or_default() {
                let name = es["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let Some(wanted) = es["metadata"]["annotations"]["force-sync"].as_str() else {
                    continue;
                };
                // ESO records what it synced in `status.syncedResourceVersion` (it hashes
                // labels and annotations into it); the force-sync value stands in for that.
                if es["status"]["syncedResourceVersion"].as_str() == Some(wanted) {
                    continue;
                }
                let key = format!("{ns}/{name}");
                let mut seen = self.seen.lock().unwrap();
                let entry = seen.entry(key).or_insert((String::new(), None));
                if entry.0 != wanted {
                    *entry = (wanted.to_string(), Some(Instant::now()));
                }
                let delay = match mode {
                    EsoMode::Sync(delay) => delay,
                    EsoMode::Fail => Duration::ZERO,
                };
                if entry.1.is_some_and(|first| first.elapsed() < delay) {
                    continue;
                }
                let now = jiff::Timestamp::now()
                    .strftime("%Y-%m-%dT%H:%M:%SZ")
                    .to_string();
                let status = match mode {
                    EsoMode::Sync(_) => json!({
                        "refreshTime": now,
                        "syncedResourceVersion": wanted,
                        "conditions": [{"type": "Ready", "status": "True", "reason": "SecretSynced"}],
                    }),
                    EsoMode::Fail => json!({
                        "refreshTime": now,
                        "conditions": [{"type": "Ready", "status": "False", "reason": "SecretSyncedError"}],
                    }),
                };
                merge_patch(
                    self.cluster,
                    &es_path(ns, &name),
                    json!({ "status": status }),
                );
            }
        }
    }

    /// Runs the controller while `f` runs.
    pub fn run_while<T>(&self, f: impl FnOnce() -> T) -> T {
        self.stop.store(false, Ordering::SeqCst);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                while !self.stop.load(Ordering::SeqCst) {
                    self.tick();
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
            let result = f();
            self.stop.store(true, Ordering::SeqCst);
            result
        })
    }
}

/// A handed-over secret with an ExternalSecret and a Deployment consuming it.
pub fn consumed_secret(cluster: &Cluster, ns: &str, canaries: &Canaries) -> String {
    cluster.namespace(ns);
    let path = format!("{ns}/db");
    cluster.bootstrap_secret(
        ns,
        "db",
        &path,
        &[("password", &canaries.plant(ns)), ("user", b"app")],
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

pub fn rotate_with(cluster: &Cluster, ns: &str, id: &str, extra: &[&str]) -> Run {
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

fn restarted_at(cluster: &Cluster, ns: &str) -> Value {
    object(cluster, &deployment_path(ns, "api"))["spec"]["template"]["metadata"]["annotations"]
        ["secops.dev/restartedAt"]
        .clone()
}

#[test]
fn workloads_restart_only_after_the_external_secret_has_synced() {
    let canaries = Canaries::new();
    let cluster = Cluster::start();
    let ns = "cons-order";
    consumed_secret(&cluster, ns, &canaries);
    let eso = Eso::new(&cluster, &[ns], EsoMode::Sync(Duration::from_millis(1500)));
    let started = Instant::now();
    let run = eso.run_while(|| rotate_with(&cluster, ns, "order-1", &[]));
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "rotate waited for ESO's sync"
    );
    let es = object(&cluster, &es_path(ns, "db"));
    let deploy = object(&cluster, &deployment_path(ns, "api"));
    assert!(
        resource_version(&deploy) > resource_version(&es),
        "the Deployment was restarted after ESO wrote its sync status"
    );
    let trigger = es["metadata"]["annotations"]["force-sync"].clone();
    assert_eq!(
        restarted_at(&cluster, ns),
        trigger,
        "both triggers are the record's"
    );
    let (instant, id) = trigger.as_str().unwrap().split_once('/').unwrap();
    assert!(instant.parse::<jiff::Timestamp>().is_ok(), "{trigger}");
    assert_eq!(id, "order-1");
    for consumer in [&es, &deploy] {
        let annotations = &consumer["metadata"]["annotations"];
        assert_eq!(annotations["secops.dev/rotation-id"], "order-1");
        assert_eq!(
            annotations["secops.dev/rotated-version"],
            format!("secret/{ns}/db@2")
        );
    }
    let consumers = run.json()["consumers"].clone();
    assert_eq!(
        consumers,
        json!([
            {"target": format!("externalsecret/{ns}/db"), "outcome": "refreshed"},
            {"target": format!("deployment/{ns}/api"), "outcome": "refreshed"},
        ])
    );
    canaries.assert_run_clean(&run);
}

#[test]
fn a_failing_sync_holds_the_restart_back_until_a_retry_finds_it_synced() {
    let canaries = Canaries::new();
    let cluster = Cluster::start();
    let ns = "cons-fail";
    let path = consumed_secret(&cluster, ns, &canaries);
    let eso = Eso::new(&cluster, &[ns], EsoMode::Fail);
    let failed = eso.run_while(|| rotate_with(&cluster, ns, "fail-1", &["--sync-timeout", "2s"]));
    assert_eq!(failed.code, 75, "{}", failed.stdout);
    let doc = failed.json();
    assert_eq!(doc["outcome"], "rotated", "the rotation stands");
    assert_eq!(doc["consumers"][0]["outcome"], "failed");
    assert!(doc["consumers"][0]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("SecretSyncedError"));
    assert_eq!(doc["consumers"][1]["outcome"], "failed");
    assert!(
        restarted_at(&cluster, ns).is_null(),
        "no restart before a sync"
    );
    let stamp =
        object(&cluster, &es_path(ns, "db"))["metadata"]["annotations"]["force-sync"].clone();

    *eso.mode.lock().unwrap() = EsoMode::Sync(Duration::ZERO);
    let retried = eso.run_while(|| rotate_with(&cluster, ns, "fail-1", &["--sync-timeout", "10s"]));
    assert_eq!(retried.code, 0, "{}", retried.stdout);
    assert_eq!(retried.json()["outcome"], "already-rotated");
    assert_eq!(
        object(&cluster, &es_path(ns, "db"))["metadata"]["annotations"]["force-sync"],
        stamp,
        "the retry re-drives with the same stamp"
    );
    assert_eq!(retried.json()["consumers"][0]["outcome"], "unchanged");
    assert_eq!(retried.json()["consumers"][1]["outcome"], "refreshed");
    assert!(restarted_at(&cluster, ns).is_string());
    assert_eq!(BAO.current_version("secret", &path), 2);
    canaries.assert_run_clean(&failed);
    canaries.assert_run_clean(&retried);
}

#[test]
fn a_redelivered_rotation_id_rolls_nothing_again() {
    let canaries = Canaries::new();
    let cluster = Cluster::start();
    let ns = "cons-redeliver";
    consumed_secret(&cluster, ns, &canaries);
    let eso = Eso::new(&cluster, &[ns], EsoMode::Sync(Duration::ZERO));
    let first = eso.run_while(|| rotate_with(&cluster, ns, "event-7", &[]));
    assert_eq!(first.code, 0, "{}", first.stderr);
    let es = object(&cluster, &es_path(ns, "db"));
    let deploy = object(&cluster, &deployment_path(ns, "api"));
    std::thread::sleep(Duration::from_millis(1100));
    let again = eso.run_while(|| rotate_with(&cluster, ns, "event-7", &[]));
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.json()["outcome"], "already-rotated");
    assert_eq!(
        (
            object(&cluster, &es_path(ns, "db"))["metadata"]["resourceVersion"].clone(),
            object(&cluster, &deployment_path(ns, "api"))["metadata"]["resourceVersion"].clone()
        ),
        (
            es["metadata"]["resourceVersion"].clone(),
            deploy["metadata"]["resourceVersion"].clone()
        ),
        "same id, same stamps: no new sync, no new rollout"
    );
    assert!(again.json()["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["outcome"] == "unchanged"));
    assert!(
        !again.stderr.contains("\"action\":\"refresh-consumer\""),
        "no audit event for a refresh that did not happen"
    );
    canaries.assert_run_clean(&again);
}

#[test]
fn stamps_are_compared_as_instants_so_garbage_or_future_stamps_are_re_driven() {
    let canaries = Canaries::new();
    let cluster = Cluster::start();
    let ns = "cons-instants";
    consumed_secret(&cluster, ns, &canaries);
    let eso = Eso::new(&cluster, &[ns], EsoMode::Sync(Duration::ZERO));
    let first = eso.run_while(|| rotate_with(&cluster, ns, "inst-1", &[]));
    assert_eq!(first.code, 0, "{}", first.stderr);
    let stamp =
        object(&cluster, &es_path(ns, "db"))["metadata"]["annotations"]["force-sync"].clone();
    let restarted = restarted_at(&cluster, ns);
    for (force_sync, restart) in [("zzz", "zzz"), ("99999999999", "2999-01-01T00:00:00Z")] {
        merge_patch(
            &cluster,
            &es_path(ns, "db"),
            json!({"metadata": {"annotations": {"force-sync": force_sync}}}),
        );
        merge_patch(
            &cluster,
            &deployment_path(ns, "api"),
            json!({"spec": {"template": {"metadata": {"annotations": {"secops.dev/restartedAt": restart}}}}}),
        );
        let rerun = eso.run_while(|| rotate_with(&cluster, ns, "inst-1", &[]));
        assert_eq!(rerun.code, 0, "{force_sync}: {}", rerun.stdout);
        assert!(
            rerun.json()["consumers"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["outcome"] == "refreshed"),
            "{force_sync}: {}",
            rerun.stdout
        );
        assert_eq!(
            object(&cluster, &es_path(ns, "db"))["metadata"]["annotations"]["force-sync"],
            stamp,
            "{force_sync}: re-stamped with the record's stamp"
        );
        assert_eq!(restarted_at(&cluster, ns), restarted, "{restart}");
    }
}

/// Model finding 3: a rotation whose record completes in the same second as an earlier
/// rotation's refresh, or earlier by clock skew between two runs' pods, must still sync
/// and restart the consumers. The earlier rotation here ran on a pod whose clock was 30 s
/// ahead (its record says so), which makes "the same second or earlier" deterministic.
#[test]
fn a_later_rotation_refreshes_the_consumers_even_if_its_stamp_is_not_later() {
    let canaries = Canaries::new();
    let cluster = Cluster::start();
    let ns = "cons-skew";
    let path = consumed_secret(&cluster, ns, &canaries);
    let eso = Eso::new(&cluster, &[ns], EsoMode::Sync(Duration::from_millis(300)));
    let first = secops(
        Some(&cluster),
        &[
            "rotate",
            "--path",
            &path,
            "--key",
            "password",
            "--rotation-id",
            "skew-a",
            "--generator",
            "password",
        ],
    );
    assert_eq!(first.code, 0, "{}", first.stderr);
    let record = "secops/rotation-ids/skew-a";
    let mut data = BAO.read("secret", record).expect("the rotation record");
    let completed: i64 = data["completed_at"].as_str().unwrap().parse().unwrap();
    data["completed_at"] = json!((completed + 30).to_string());
    BAO.write("secret", record, data);
    let skewed = eso.run_while(|| rotate_with(&cluster, ns, "skew-a", &[]));
    assert_eq!(skewed.code, 0, "{}", skewed.stderr);
    let es_before = object(&cluster, &es_path(ns, "db"));
    let restarted_before = restarted_at(&cluster, ns);
    assert!(restarted_before.is_string(), "{}", skewed.stdout);

    let second = eso.run_while(|| rotate_with(&cluster, ns, "skew-b", &[]));
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(second.json()["outcome"], "rotated");
    assert_eq!(
        second.json()["consumers"],
        json!([
            {"target": format!("externalsecret/{ns}/db"), "outcome": "refreshed"},
            {"target": format!("deployment/{ns}/api"), "outcome": "refreshed"},
        ]),
        "skew-b wrote version 3: both consumers must be refreshed for it"
    );
    let es = object(&cluster, &es_path(ns, "db"));
    let deploy = object(&cluster, &deployment_path(ns, "api"));
    assert_ne!(
        es["metadata"]["annotations"]["force-sync"],
        es_before["metadata"]["annotations"]["force-sync"],
        "a new force-sync for skew-b"
    );
    assert_eq!(
        es["status"]["syncedResourceVersion"], es["metadata"]["annotations"]["force-sync"],
        "ESO synced skew-b's force-sync"
    );
    assert_ne!(
        restarted_at(&cluster, ns),
        restarted_before,
        "a new rollout for skew-b"
    );
    assert!(
        resource_version(&deploy) > resource_version(&es),
        "the Deployment was restarted after ESO wrote skew-b's sync"
    );

    // Redelivered, either id changes nothing: skew-b's is the consumers' own, skew-a's is
    // covered by the later version they serve.
    for id in ["skew-b", "skew-a"] {
        let again = eso.run_while(|| rotate_with(&cluster, ns, id, &[]));
        assert_eq!(again.code, 0, "{id}: {}", again.stderr);
        assert!(
            again.json()["consumers"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["outcome"] == "unchanged"),
            "{id}: {}",
            again.stdout
        );
        assert_eq!(
            object(&cluster, &deployment_path(ns, "api"))["metadata"]["resourceVersion"],
            deploy["metadata"]["resourceVersion"],
            "{id}: no new rollout"
        );
    }
    assert_eq!(BAO.current_version("secret", &path), 3);
    canaries.assert_run_clean(&second);
}
