//! Cluster loss: the bootstrap phase repeats (RFC §3.5, docs/contract.md §6.8). A Secret
//! re-created under its old name (new uid) with the data Vault recorded is re-adopted without
//! a Vault write; with other data it is marked stale and Vault stays the authority; a consumed
//! origin removed from Git is retired; a claim naming a uid that no longer exists is taken
//! over, conditionally (model finding 1). Every run holds only the chart's Vault policies.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::support::{chart_token, secops_with, Cluster, Run, BAO};

struct Tokens {
    handover: String,
    push: String,
    status: String,
}

impl Tokens {
    fn for_namespace(ns: &str) -> Tokens {
        let namespaces = [ns.to_string()];
        Tokens {
            handover: chart_token("handover", &namespaces),
            push: chart_token("push", &namespaces),
            status: chart_token("status", &namespaces),
        }
    }
}

fn run(cluster: &Cluster, token: &str, args: &[&str]) -> Run {
    secops_with(
        Some(cluster),
        args,
        &[("VAULT_ADDR", BAO.addr.as_str()), ("VAULT_TOKEN", token)],
    )
}

fn uid(cluster: &Cluster, ns: &str, name: &str) -> String {
    cluster.secret(ns, name).unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string()
}

fn label_state(cluster: &Cluster, ns: &str, name: &str) -> Value {
    cluster.secret(ns, name).unwrap()["metadata"]["labels"]["secops.dev/state"].clone()
}

fn audited(run: &Run, action: &str) -> usize {
    run.stderr
        .lines()
        .filter(|l| l.contains("\"audit\":true") && l.contains(&format!("\"action\":\"{action}\"")))
        .count()
}

fn event_reasons(cluster: &Cluster, ns: &str) -> Vec<String> {
    cluster
        .events(ns)
        .iter()
        .filter_map(|e| e["reason"].as_str().map(String::from))
        .collect()
}

/// The status rows' violations as (kind, detail).
fn violations(run: &Run) -> Vec<(String, String)> {
    run.json()["rows"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["violations"].as_array().cloned().unwrap_or_default())
        .map(|v| {
            (
                v["kind"].as_str().unwrap().to_string(),
                v["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `status` exits 3 with one violation, `stale`, naming both uids: Vault's origin and the
/// re-created Secret's.
fn assert_stale_violation(cluster: &Cluster, token: &str, ns: &str, uids: [&str; 2]) -> Run {
    let status = run(cluster, token, &["status", "-n", ns, "--output", "json"]);
    assert_eq!(status.code, 3, "{}", status.stdout);
    let found = violations(&status);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "stale");
    assert!(
        uids.iter().all(|uid| found[0].1.contains(uid)),
        "{}",
        found[0].1
    );
    status
}

/// Backdates the claim on `path` past `--path-claim-lease`, as it is when a Secret is
/// re-created long after its handover: a younger claim of a deleted uid is waited for.
fn age_claim(path: &str) {
    let at = format!("secops/claims/{path}");
    if let Some(mut claim) = BAO.read("secret", &at) {
        claim["claimed_at"] = json!("1");
        BAO.write("secret", &at, claim);
    }
}

/// A cluster where `NS/db` holding `value` was handed over (version 1) under the chart's
/// policies: the start of every cluster-loss story. Returns its first uid.
fn handed_over(ns: &str, value: &[u8]) -> (Cluster, Tokens, String) {
    let cluster = Cluster::start();
    cluster.namespace(ns);
    let tokens = Tokens::for_namespace(ns);
    let path = format!("{ns}/db");
    cluster.bootstrap_secret(ns, "db", &path, &[("password", value)]);
    let first = uid(&cluster, ns, "db");
    let handover = run(&cluster, &tokens.handover, &["handover", "-n", ns]);
    assert_eq!(handover.code, 0, "{}{}", handover.stdout, handover.stderr);
    assert_eq!(BAO.current_version("secret", &path), 1);
    (cluster, tokens, first)
}

fn recreate_bootstrap(cluster: &Cluster, ns: &str, name: &str, value: &[u8]) -> String {
    age_claim(&format!("{ns}/{name}"));
    cluster.delete_secret(ns, name);
    cluster.bootstrap_secret(ns, name, &format!("{ns}/{name}"), &[("password", value)]);
    uid(cluster, ns, name)
}

#[test]
fn a_recreated_bootstrap_secret_with_the_handed_over_data_is_readopted() {
    let ns = "ra-same";
    let path = format!("{ns}/db");
    let (cluster, tokens, first) = handed_over(ns, b"first-value");

    // Cluster loss: GitOps re-creates the Secret from Git, same data, new uid.
    let second = recreate_bootstrap(&cluster, ns, "db", b"first-value");
    assert_ne!(first, second);
    let plan = run(&cluster, &tokens.handover, &["read-bootstrap", "-n", ns]);
    assert_eq!(
        plan.json()["items"][0]["state"],
        "recreated",
        "{}",
        plan.stdout
    );
    assert_eq!(plan.json()["actionable"], 1);

    // A dry run decides and changes nothing.
    let dry = run(
        &cluster,
        &tokens.handover,
        &["handover", "-n", ns, "--dry-run"],
    );
    assert_eq!(
        dry.json()["items"][0]["outcome"],
        "planned",
        "{}",
        dry.stdout
    );
    assert_eq!(
        BAO.custom_metadata("secret", &path)["secops-origin-uid"],
        first
    );
    assert_eq!(label_state(&cluster, ns, "db"), Value::Null);
    assert!(!event_reasons(&cluster, ns).contains(&"Readopted".to_string()));

    let again = run(&cluster, &tokens.handover, &["handover", "-n", ns]);
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    assert_eq!(again.json()["items"][0]["outcome"], "consumed");
    assert_eq!(audited(&again, "handover-readopt"), 1, "{}", again.stderr);
    assert_eq!(BAO.current_version("secret", &path), 1, "no Vault write");
    let custom = BAO.custom_metadata("secret", &path);
    assert_eq!(custom["secops-origin-uid"], second);
    assert_eq!(custom["secops-origin-previous-uids"], first);
    assert_eq!(custom["secops-origin-version"], "1");
    assert_eq!(label_state(&cluster, ns, "db"), "consumed");
    assert!(event_reasons(&cluster, ns).contains(&"Readopted".to_string()));
    let status = run(
        &cluster,
        &tokens.status,
        &["status", "-n", ns, "--output", "json"],
    );
    assert_eq!(status.code, 0, "{}", status.stdout);

    // Step by step, as the Workflow runs it: write-vault re-adopts, mark-consumed marks.
    let third = recreate_bootstrap(&cluster, ns, "db", b"first-value");
    let secret = format!("{ns}/db");
    let write = run(
        &cluster,
        &tokens.handover,
        &["write-vault", "--secret", &secret, "--expect-uid", &third],
    );
    assert_eq!(write.code, 0, "{}{}", write.stdout, write.stderr);
    assert_eq!(write.json()["outcome"], "readopted");
    assert_eq!(write.json()["version"], 1);
    let mark = run(
        &cluster,
        &tokens.handover,
        &["mark-consumed", "--secret", &secret, "--expect-uid", &third],
    );
    assert_eq!(mark.code, 0, "{}{}", mark.stdout, mark.stderr);
    assert_eq!(mark.json()["outcome"], "consumed");
    let custom = BAO.custom_metadata("secret", &path);
    assert_eq!(custom["secops-origin-uid"], third);
    assert_eq!(
        custom["secops-origin-previous-uids"],
        format!("{second},{first}"),
        "history kept, newest first"
    );
    assert_eq!(BAO.current_version("secret", &path), 1);
    let rerun = run(&cluster, &tokens.handover, &["handover", "-n", ns]);
    assert_eq!(rerun.json()["items"][0]["outcome"], "already-consumed");
}

#[test]
fn a_recreated_bootstrap_secret_with_other_data_is_stale_and_vault_stays_the_authority() {
    let ns = "ra-stale";
    let path = format!("{ns}/db");
    let (cluster, tokens, first) = handed_over(ns, b"handed-over");

    // Git holds another value than the one handed over.
    let second = recreate_bootstrap(&cluster, ns, "db", b"other-in-git");
    let refused = run(&cluster, &tokens.handover, &["handover", "-n", ns]);
    assert_eq!(refused.code, 3, "{}{}", refused.stdout, refused.stderr);
    assert_eq!(refused.json()["items"][0]["error"]["kind"], "stale");
    assert_eq!(audited(&refused, "mark-stale"), 1, "{}", refused.stderr);
    assert_eq!(BAO.current_version("secret", &path), 1, "no Vault write");
    assert_eq!(
        BAO.custom_metadata("secret", &path)["secops-origin-uid"],
        first
    );
    assert_eq!(label_state(&cluster, ns, "db"), "stale");
    let annotations = &cluster.secret(ns, "db").unwrap()["metadata"]["annotations"];
    assert_eq!(annotations["secops.dev/authority-uid"], first.as_str());
    assert!(event_reasons(&cluster, ns).contains(&"Stale".to_string()));
    for output in [&refused.stdout, &refused.stderr] {
        assert!(
            !output.contains("other-in-git") && !output.contains(&STANDARD.encode("other-in-git"))
        );
    }

    let status = assert_stale_violation(&cluster, &tokens.status, ns, [&first, &second]);
    assert_eq!(status.json()["rows"][0]["authority"], "vault");
    let plan = run(&cluster, &tokens.handover, &["read-bootstrap", "-n", ns]);
    assert_eq!(plan.json()["items"][0]["state"], "stale", "{}", plan.stdout);
    assert_eq!(
        plan.json()["actionable"],
        0,
        "marked once, then left to a human"
    );

    // A re-run changes nothing; Git reverted to the handed-over value re-adopts it.
    let rerun = run(&cluster, &tokens.handover, &["handover", "-n", ns]);
    assert_eq!((rerun.code, audited(&rerun, "mark-stale")), (3, 0));
    cluster.merge_patch_secret(
        ns,
        "db",
        json!({"data": {"password": STANDARD.encode("handed-over")}}),
    );
    let reverted = run(&cluster, &tokens.handover, &["handover", "-n", ns]);
    assert_eq!(reverted.code, 0, "{}{}", reverted.stdout, reverted.stderr);
    assert_eq!(label_state(&cluster, ns, "db"), "consumed");
    let annotations = &cluster.secret(ns, "db").unwrap()["metadata"]["annotations"];
    assert!(
        annotations.get("secops.dev/authority-uid").is_none(),
        "{annotations}"
    );
    assert_eq!(BAO.current_version("secret", &path), 1);
    assert_eq!(
        BAO.custom_metadata("secret", &path)["secops-origin-uid"],
        second
    );
}

/// A stale label that secops did not write (a manifest committed from `kubectl get -o yaml`
/// carries it) is not a marking: the Secret is still marked for the authority it conflicts
/// with, annotation, audit event and all.
#[test]
fn a_stale_label_without_its_authority_is_marked_again() {
    let ns = "ra-label";
    let (cluster, tokens, first) = handed_over(ns, b"handed-over");
    recreate_bootstrap(&cluster, ns, "db", b"other-in-git");
    cluster.merge_patch_secret(
        ns,
        "db",
        json!({"metadata": {"labels": {"secops.dev/state": "stale"}}}),
    );
    let refused = run(&cluster, &tokens.handover, &["handover", "-n", ns]);
    assert_eq!(refused.code, 3, "{}{}", refused.stdout, refused.stderr);
    assert_eq!(audited(&refused, "mark-stale"), 1, "{}", refused.stderr);
    let annotations = &cluster.secret(ns, "db").unwrap()["metadata"]["annotations"];
    assert_eq!(annotations["secops.dev/authority-uid"], first.as_str());
}

fn internal(cluster: &Cluster, ns: &str, value: &str) -> String {
    age_claim(&format!("{ns}/op"));
    cluster.create(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "op", "namespace": ns, "labels": {"secops.dev/class": "internal"},
                     "annotations": {"secops.dev/vault-path": format!("{ns}/op")}},
        "data": {"value": STANDARD.encode(value)},
    }));
    uid(cluster, ns, "op")
}

#[test]
fn a_recreated_internal_secret_is_readopted_or_stale_under_push() {
    let ns = "ra-push";
    let path = format!("{ns}/op");
    let cluster = Cluster::start();
    cluster.namespace(ns);
    let tokens = Tokens::for_namespace(ns);
    let first = internal(&cluster, ns, "pushed-value");
    let push = run(&cluster, &tokens.push, &["push-secret", "-n", ns]);
    assert_eq!(push.code, 0, "{}{}", push.stdout, push.stderr);

    cluster.delete_secret(ns, "op");
    let second = internal(&cluster, ns, "pushed-value");
    let planned = run(
        &cluster,
        &tokens.push,
        &["push-secret", "-n", ns, "--dry-run"],
    );
    assert_eq!(
        planned.json()["items"][0]["outcome"],
        "planned",
        "{}",
        planned.stdout
    );
    assert_eq!(
        BAO.custom_metadata("secret", &path)["secops-origin-uid"],
        first,
        "a dry run re-adopts nothing"
    );
    let readopted = run(&cluster, &tokens.push, &["push-secret", "-n", ns]);
    assert_eq!(
        readopted.code, 0,
        "{}{}",
        readopted.stdout, readopted.stderr
    );
    assert_eq!(readopted.json()["items"][0]["outcome"], "readopted");
    assert_eq!(
        audited(&readopted, "push-readopt"),
        1,
        "{}",
        readopted.stderr
    );
    assert_eq!(BAO.current_version("secret", &path), 1, "no Vault write");
    let custom = BAO.custom_metadata("secret", &path);
    assert_eq!(custom["secops-origin-uid"], second);
    assert_eq!(custom["secops-origin-previous-uids"], first);
    let annotations = &cluster.secret(ns, "op").unwrap()["metadata"]["annotations"];
    assert_eq!(annotations["secops.dev/vault-version"], "1");
    assert!(event_reasons(&cluster, ns).contains(&"Readopted".to_string()));
    let status = run(
        &cluster,
        &tokens.status,
        &["status", "-n", ns, "--output", "json"],
    );
    assert_eq!(status.code, 0, "{}", status.stdout);

    // Re-created by its operator with a new value: stale, Vault keeps the pushed one.
    cluster.delete_secret(ns, "op");
    let third = internal(&cluster, ns, "regenerated");
    let refused = run(&cluster, &tokens.push, &["push-secret", "-n", ns]);
    assert_eq!(refused.code, 3, "{}{}", refused.stdout, refused.stderr);
    assert_eq!(refused.json()["items"][0]["error"]["kind"], "stale");
    assert_eq!(BAO.current_version("secret", &path), 1, "no Vault write");
    assert_eq!(label_state(&cluster, ns, "op"), "stale");
    assert_stale_violation(&cluster, &tokens.status, ns, [&second, &third]);

    // The operator restores the published value: re-adopted, the stale marking removed.
    cluster.merge_patch_secret(
        ns,
        "op",
        json!({"data": {"value": STANDARD.encode("pushed-value")}}),
    );
    let restored = run(&cluster, &tokens.push, &["push-secret", "-n", ns]);
    assert_eq!(
        restored.json()["items"][0]["outcome"],
        "readopted",
        "{}",
        restored.stdout
    );
    let metadata = &cluster.secret(ns, "op").unwrap()["metadata"];
    assert!(
        metadata["labels"].get("secops.dev/state").is_none(),
        "{metadata}"
    );
    assert!(
        metadata["annotations"].get("secops.dev/stale-at").is_none(),
        "{metadata}"
    );
    let custom = BAO.custom_metadata("secret", &path);
    assert_eq!(custom["secops-origin-uid"], third);
    assert_eq!(
        custom["secops-origin-previous-uids"],
        format!("{second},{first}")
    );
    assert_eq!(BAO.current_version("secret", &path), 1);
}

#[test]
fn a_consumed_origin_removed_from_git_is_retired_not_gone() {
    let ns = "ra-retired";
    let cluster = Cluster::start();
    cluster.namespace(ns);
    let tokens = Tokens::for_namespace(ns);
    cluster.bootstrap_secret(ns, "db", &format!("{ns}/db"), &[("password", b"v")]);
    // Handed over but never consumed: its loss stays a violation.
    cluster.bootstrap_secret(ns, "lost", &format!("{ns}/lost"), &[("password", b"w")]);
    let secret = format!("{ns}/lost");
    assert_eq!(
        run(
            &cluster,
            &tokens.handover,
            &["write-vault", "--secret", &secret]
        )
        .code,
        0
    );
    cluster.delete_secret(ns, "lost");
    let handover = run(&cluster, &tokens.handover, &["handover", "-n", ns]);
    assert_eq!(handover.code, 0, "{}{}", handover.stdout, handover.stderr);
    cluster.delete_secret(ns, "db");

    let status = run(
        &cluster,
        &tokens.status,
        &["status", "-n", ns, "--output", "json"],
    );
    let rows = status.json()["rows"].as_array().cloned().unwrap();
    let phase = |name: &str| {
        rows.iter()
            .find(|r| r["secret"] == format!("{ns}/{name}"))
            .map(|r| {
                (
                    r["phase"].clone(),
                    r["violations"].as_array().unwrap().len(),
                )
            })
    };
    assert_eq!(
        phase("db"),
        Some((json!("retired"), 0)),
        "{}",
        status.stdout
    );
    assert_eq!(
        phase("lost"),
        Some((json!("origin gone"), 1)),
        "{}",
        status.stdout
    );
    assert_eq!(status.code, 3, "only the unconsumed origin is a violation");
    BAO.api("DELETE", &format!("secret/metadata/{ns}/lost"), None);
    let clean = run(
        &cluster,
        &tokens.status,
        &["status", "-n", ns, "--output", "json"],
    );
    assert_eq!(clean.code, 0, "{}", clean.stdout);
}

/// Model finding 1: the claim names a uid that no longer exists (GitOps re-created the
/// Secret between the claim and the provenance write). Simulated by writing the claim (and,
/// for one Secret, the data) as the interrupted run left them.
#[test]
fn a_claim_left_by_a_recreated_origin_is_taken_over_by_exactly_one_run() {
    let ns = "ra-claim";
    let cluster = Arc::new(Cluster::start());
    cluster.namespace(ns);
    let tokens = Tokens::for_namespace(ns);
    let interrupted = |name: &str, data_written: bool| {
        cluster.bootstrap_secret(
            ns,
            name,
            &format!("{ns}/{name}"),
            &[("password", b"git-value")],
        );
        let old = uid(&cluster, ns, name);
        BAO.write(
            "secret",
            &format!("secops/claims/{ns}/{name}"),
            json!({"origin": format!("bootstrap:{ns}/{name}"), "uid": old, "claimed_at": "1"}),
        );
        if data_written {
            BAO.write(
                "secret",
                &format!("{ns}/{name}"),
                json!({"password": "git-value"}),
            );
        }
        let new = recreate_bootstrap(&cluster, ns, name, b"git-value");
        assert_ne!(old, new);
        new
    };
    let late = interrupted("late", true);
    let early = interrupted("early", false);

    let runs: Vec<Run> = (0..2)
        .map(|_| {
            let cluster = cluster.clone();
            let token = tokens.handover.clone();
            std::thread::spawn(move || run(&cluster, &token, &["handover", "-n", ns]))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    for r in &runs {
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    }
    let takeovers: usize = runs.iter().map(|r| audited(r, "claim-takeover")).sum();
    assert_eq!(
        takeovers, 2,
        "one takeover per claim, whatever the number of runs"
    );
    for (name, uid) in [("late", &late), ("early", &early)] {
        let path = format!("{ns}/{name}");
        assert_eq!(
            BAO.custom_metadata("secret", &path)["secops-origin-uid"],
            *uid
        );
        assert_eq!(BAO.current_version("secret", &path), 1, "{name}");
        let claim = BAO
            .read("secret", &format!("secops/claims/{path}"))
            .unwrap();
        assert_eq!(claim["uid"], uid.as_str(), "{claim}");
        assert_eq!(label_state(&cluster, ns, name), "consumed");
    }
}

fn epoch_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Model finding 4: a claim naming a deleted uid may belong to a run of that Secret still
/// writing, so the re-created Secret's run takes it over only once it is older than
/// `--path-claim-lease` (default 120 s); before, it exits 75 with nothing written.
#[test]
fn a_claim_of_a_recreated_origin_is_taken_over_only_after_its_lease() {
    let ns = "ra-lease";
    let cluster = Cluster::start();
    cluster.namespace(ns);
    let tokens = Tokens::for_namespace(ns);
    cluster.bootstrap_secret(ns, "db", &format!("{ns}/db"), &[("password", b"git-value")]);
    let old = uid(&cluster, ns, "db");
    let claim_at = format!("secops/claims/{ns}/db");
    let claim = |claimed_at: u64| json!({"origin": format!("bootstrap:{ns}/db"), "uid": old, "claimed_at": claimed_at.to_string()});
    let new = recreate_bootstrap(&cluster, ns, "db", b"git-value");
    BAO.write("secret", &claim_at, claim(epoch_seconds()));

    let leased = run(&cluster, &tokens.handover, &["handover", "-n", ns]);
    assert_eq!(leased.code, 75, "{}{}", leased.stdout, leased.stderr);
    assert!(leased.stderr.contains("lease ends at"), "{}", leased.stderr);
    assert_eq!(
        BAO.read("secret", &format!("{ns}/db")),
        None,
        "nothing written"
    );
    assert_eq!(BAO.read("secret", &claim_at).unwrap()["uid"], old.as_str());
    assert_eq!(audited(&leased, "claim-takeover"), 0);
    assert!(label_state(&cluster, ns, "db").is_null());

    BAO.write("secret", &claim_at, claim(epoch_seconds() - 121));
    let taken = run(&cluster, &tokens.handover, &["handover", "-n", ns]);
    assert_eq!(taken.code, 0, "{}{}", taken.stdout, taken.stderr);
    assert_eq!(audited(&taken, "claim-takeover"), 1);
    assert_eq!(BAO.read("secret", &claim_at).unwrap()["uid"], new.as_str());
    let custom = BAO.custom_metadata("secret", &format!("{ns}/db"));
    assert_eq!(custom["secops-origin-uid"], new);
    assert_eq!(label_state(&cluster, ns, "db"), "consumed");
}

/// A holder's own claim past its fence (three quarters of the lease) is renewed, with `cas`
/// on its version, before the holder writes under it.
#[test]
fn a_holder_renews_its_claim_past_the_fence_before_writing() {
    let ns = "ra-fence";
    let cluster = Cluster::start();
    cluster.namespace(ns);
    let tokens = Tokens::for_namespace(ns);
    cluster.bootstrap_secret(ns, "db", &format!("{ns}/db"), &[("password", b"git-value")]);
    let live = uid(&cluster, ns, "db");
    let claim_at = format!("secops/claims/{ns}/db");
    BAO.write(
        "secret",
        &claim_at,
        json!({"origin": format!("bootstrap:{ns}/db"), "uid": live, "claimed_at": "1"}),
    );
    let before = epoch_seconds();

    let done = run(&cluster, &tokens.handover, &["handover", "-n", ns]);
    assert_eq!(done.code, 0, "{}{}", done.stdout, done.stderr);
    assert_eq!(BAO.current_version("secret", &claim_at), 2, "renewed once");
    let renewed: u64 = BAO.read("secret", &claim_at).unwrap()["claimed_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(renewed >= before, "{renewed} < {before}");
    assert_eq!(
        BAO.custom_metadata("secret", &format!("{ns}/db"))["secops-origin-uid"],
        live
    );
    assert_eq!(label_state(&cluster, ns, "db"), "consumed");
}
