//! Faults at every request position of handover, rotate and push: a reset, a stall past the
//! timeout, 503 (sealed), 429, 500, or a write whose answer is lost, on the Vault side (the
//! proxy) and on the Kubernetes side (the emulator). After each, a re-run converges: nothing
//! lost, nothing duplicated, and the faulted run exits 75 (temporary).

use kube_emulator::{FaultAction, FaultRule};
use serde_json::json;

use crate::proxy::{FaultProxy, ProxyFault};
use crate::support::{chart_token, secops, secops_with, Canaries, Cluster, BAO, ROOT_TOKEN};

const VAULT_FAULTS: [ProxyFault; 6] = [
    ProxyFault::Reset,
    ProxyFault::Stall,
    ProxyFault::Status(503),
    ProxyFault::Status(429),
    ProxyFault::Status(500),
    ProxyFault::DropAfter,
];

/// What a fault suite saw. Each case injects exactly one fault, so one count serves both.
#[derive(Default)]
struct Tally {
    faults: usize,
    lost: usize,
    duplicated: usize,
}

impl Tally {
    fn injected(&mut self) {
        self.faults += 1;
    }

    fn assert_clean(&self, suite: &str) {
        let Tally {
            faults,
            lost,
            duplicated,
        } = self;
        eprintln!(
            "fault suite ({suite}): {faults} cases, {faults} faults injected, {lost} lost, {duplicated} duplicated"
        );
        assert_eq!((lost, duplicated), (&0, &0), "{suite}");
    }
}

fn through(proxy: &FaultProxy, cluster: &Cluster, args: &[&str]) -> crate::support::Run {
    through_as(proxy, cluster, ROOT_TOKEN, args)
}

/// Through the proxy, with `token` (e.g. one carrying only the chart's policy).
fn through_as(
    proxy: &FaultProxy,
    cluster: &Cluster,
    token: &str,
    args: &[&str],
) -> crate::support::Run {
    let mut full = vec!["--max-attempts", "1", "--timeout", "1s"];
    full.extend_from_slice(args);
    secops_with(
        Some(cluster),
        &full,
        &[("VAULT_ADDR", proxy.addr.as_str()), ("VAULT_TOKEN", token)],
    )
}

/// The re-run Argo makes after a fault, with the same token.
fn rerun_as(cluster: &Cluster, token: &str, args: &[&str]) -> crate::support::Run {
    secops_with(
        Some(cluster),
        args,
        &[("VAULT_ADDR", BAO.addr.as_str()), ("VAULT_TOKEN", token)],
    )
}

fn value_of(ns: &str, name: &str) -> Option<String> {
    BAO.read("secret", &format!("{ns}/{name}"))
        .and_then(|d| d["v"].as_str().map(String::from))
}

fn consumed(cluster: &Cluster, ns: &str) -> bool {
    cluster
        .secret(ns, "s")
        .is_some_and(|s| s["metadata"]["labels"]["secops.dev/state"] == "consumed")
}

#[test]
fn handover_survives_a_fault_at_every_request() {
    let canaries = Canaries::new();
    let cluster = Cluster::start();
    let proxy = FaultProxy::start(&BAO.addr);
    let mut tally = Tally::default();
    cluster.namespace("fh-warm");
    cluster.bootstrap_secret("fh-warm", "s", "fh-warm/s", &[("v", b"warm-up-value")]);
    let warm = through(&proxy, &cluster, &["handover", "-n", "fh-warm"]);
    assert_eq!(warm.code, 0, "{}", warm.stderr);
    cluster.namespace("fh-count");
    cluster.bootstrap_secret("fh-count", "s", "fh-count/s", &[("v", b"count-value")]);
    proxy.arm(usize::MAX, ProxyFault::Reset);
    assert_eq!(
        through(&proxy, &cluster, &["handover", "-n", "fh-count"]).code,
        0
    );
    let positions = proxy.served();
    assert!(
        positions >= 3,
        "key read, claim, data write, metadata patch: {positions}"
    );
    // Every faulted run and its re-run hold only the chart's handover policy: recovery must
    // work as deployed (a create-only policy answers 403 on an existing path).
    let namespaces: Vec<String> = (0..positions)
        .flat_map(|p| (0..VAULT_FAULTS.len()).map(move |f| format!("fh-{p}-{f}")))
        .chain((0..7).map(|i| format!("fk-{i}")))
        .collect();
    let token = chart_token("handover", &namespaces);
    for position in 0..positions {
        for (f, fault) in VAULT_FAULTS.iter().enumerate() {
            let ns = format!("fh-{position}-{f}");
            cluster.namespace(&ns);
            let value = canaries.plant(&ns);
            cluster.bootstrap_secret(&ns, "s", &format!("{ns}/s"), &[("v", &value)]);
            proxy.arm(position, *fault);
            let faulted = through_as(&proxy, &cluster, &token, &["handover", "-n", &ns]);
            tally.injected();
            assert_eq!(
                faulted.code, 75,
                "{fault:?} at request {position}: {}",
                faulted.stdout
            );
            if position == 1 && *fault != ProxyFault::DropAfter {
                assert!(
                    BAO.metadata("secret", &format!("{ns}/s")).is_none(),
                    "nothing written before the write"
                );
            }
            let rerun = rerun_as(&cluster, &token, &["handover", "-n", &ns]);
            assert_eq!(
                rerun.code, 0,
                "{fault:?} at {position}, re-run: {}",
                rerun.stdout
            );
            let version = BAO.current_version("secret", &format!("{ns}/s"));
            tally.duplicated += usize::from(version > 1);
            tally.lost += usize::from(
                value_of(&ns, "s").as_deref() != std::str::from_utf8(&value).ok()
                    || !consumed(&cluster, &ns),
            );
            canaries.assert_run_clean(&faulted);
            canaries.assert_run_clean(&rerun);
        }
    }
    // The Kubernetes side: each remote call of the emulator, each fault.
    let kube_faults = [
        ("list", "secrets", FaultAction::Status(503)),
        ("list", "secrets", FaultAction::DropBefore),
        ("patch", "secrets", FaultAction::Status(503)),
        ("patch", "secrets", FaultAction::Status(429)),
        ("patch", "secrets", FaultAction::DropBefore),
        ("patch", "secrets", FaultAction::DropAfter),
        ("patch", "secrets", FaultAction::Hang),
    ];
    for (i, (verb, resource, action)) in kube_faults.iter().enumerate() {
        let ns = format!("fk-{i}");
        cluster.namespace(&ns);
        let value = canaries.plant(&ns);
        cluster.bootstrap_secret(&ns, "s", &format!("{ns}/s"), &[("v", &value)]);
        cluster
            .emulator
            .inject(FaultRule::new(Some(verb), Some(resource), 1, *action));
        let faulted = through_as(&proxy, &cluster, &token, &["handover", "-n", &ns]);
        cluster.emulator.cluster().faults.clear();
        tally.injected();
        assert_eq!(
            faulted.code, 75,
            "{verb} {resource} {action:?}: {}",
            faulted.stdout
        );
        let rerun = rerun_as(&cluster, &token, &["handover", "-n", &ns]);
        assert_eq!(rerun.code, 0, "{}", rerun.stdout);
        tally.duplicated += usize::from(BAO.current_version("secret", &format!("{ns}/s")) > 1);
        tally.lost += usize::from(
            value_of(&ns, "s").as_deref() != std::str::from_utf8(&value).ok()
                || !consumed(&cluster, &ns),
        );
    }
    tally.assert_clean("handover");
}

#[test]
fn rotate_survives_a_fault_at_every_request() {
    let cluster = Cluster::start();
    let proxy = FaultProxy::start(&BAO.addr);
    let mut tally = Tally::default();
    BAO.write("secret", "fr/warm", json!({"v": "x"}));
    // A claim whose answer was lost is taken over once its lease (1s here) has run out.
    let rotate = |proxy_run: bool, path: &str, id: &str| {
        let args = [
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
            "--claim-lease",
            "1s",
        ];
        if proxy_run {
            through(&proxy, &cluster, &args)
        } else {
            secops(Some(&cluster), &args)
        }
    };
    assert_eq!(rotate(true, "fr/warm", "warm").code, 0);
    proxy.arm(usize::MAX, ProxyFault::Reset);
    assert_eq!(rotate(true, "fr/warm", "count").code, 0);
    let positions = proxy.served();
    assert!(positions >= 6, "{positions}");
    for position in 0..positions {
        for (f, fault) in VAULT_FAULTS.iter().enumerate() {
            let path = format!("fr/p{position}-{f}");
            // One id per rotation: an id names one intent (docs/contract.md §6.4).
            let id = format!("once-{position}-{f}");
            BAO.write("secret", &path, json!({"v": "initial", "keep": "kept"}));
            proxy.arm(position, *fault);
            let faulted = rotate(true, &path, &id);
            tally.injected();
            assert_eq!(
                faulted.code, 75,
                "{fault:?} at request {position}: {}",
                faulted.stdout
            );
            let rerun = rotate(false, &path, &id);
            assert_eq!(
                rerun.code, 0,
                "{fault:?} at {position}, re-run: {}",
                rerun.stdout
            );
            let again = rotate(false, &path, &id);
            assert_eq!(again.json()["outcome"], "already-rotated");
            let version = BAO.current_version("secret", &path);
            tally.duplicated += usize::from(version != 2);
            let data = BAO.read("secret", &path).unwrap();
            tally.lost += usize::from(data["keep"] != "kept" || data["v"] == "initial");
        }
    }
    tally.assert_clean("rotate");
}

#[test]
fn push_survives_a_fault_at_every_request() {
    let cluster = Cluster::start();
    let proxy = FaultProxy::start(&BAO.addr);
    let mut tally = Tally::default();
    let internal = |ns: &str, value: &str| {
        cluster.namespace(ns);
        cluster.create(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "namespace": ns, "labels": {"secops.dev/class": "internal"}, "annotations": {"secops.dev/vault-path": format!("{ns}/s")}},
            "stringData": {"v": value},
        }));
    };
    internal("fp-warm", "warm");
    assert_eq!(
        through(&proxy, &cluster, &["push-secret", "--secret", "fp-warm/s"]).code,
        0
    );
    internal("fp-count", "count");
    proxy.arm(usize::MAX, ProxyFault::Reset);
    assert_eq!(
        through(&proxy, &cluster, &["push-secret", "--secret", "fp-count/s"]).code,
        0
    );
    let positions = proxy.served();
    let namespaces: Vec<String> = (0..positions)
        .flat_map(|p| (0..VAULT_FAULTS.len()).map(move |f| format!("fp-{p}-{f}")))
        .collect();
    let token = chart_token("push", &namespaces);
    for position in 0..positions {
        for (f, fault) in VAULT_FAULTS.iter().enumerate() {
            let ns = format!("fp-{position}-{f}");
            let value = format!("pushed-{ns}");
            internal(&ns, &value);
            proxy.arm(position, *fault);
            let faulted = through_as(
                &proxy,
                &cluster,
                &token,
                &["push-secret", "--secret", &format!("{ns}/s")],
            );
            tally.injected();
            assert_eq!(
                faulted.code, 75,
                "{fault:?} at request {position}: {}",
                faulted.stdout
            );
            let rerun = rerun_as(
                &cluster,
                &token,
                &["push-secret", "--secret", &format!("{ns}/s")],
            );
            assert_eq!(rerun.code, 0, "{}", rerun.stdout);
            tally.duplicated += usize::from(BAO.current_version("secret", &format!("{ns}/s")) != 1);
            tally.lost += usize::from(value_of(&ns, "s").as_deref() != Some(value.as_str()));
            let source = cluster.secret(&ns, "s").unwrap();
            tally.lost +=
                usize::from(source["metadata"]["annotations"]["secops.dev/vault-version"] != "1");
        }
    }
    tally.assert_clean("push");
}

/// A temporary Vault failure while one item is planned is the run's (exit 75: Argo retries
/// it), never that item's state in a plan that exits 0.
#[test]
fn a_temporary_failure_while_planning_fails_the_run() {
    let cluster = Cluster::start();
    let proxy = FaultProxy::start(&BAO.addr);
    cluster.namespace("plan-503");
    cluster.bootstrap_secret("plan-503", "s", "plan-503/s", &[("v", b"plan-value")]);
    proxy.arm_at(
        "GET /v1/secret/metadata/plan-503/s ",
        0,
        ProxyFault::Status(503),
    );
    let run = through(&proxy, &cluster, &["read-bootstrap", "-n", "plan-503"]);
    assert_eq!(run.code, 75, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(proxy.forwarded("GET /v1/secret/metadata/plan-503/s "), 0);
}
