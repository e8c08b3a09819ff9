//! A handover or push held at one Vault request while the test changes the world under it:
//! the Secret deleted, re-created or changed before it is marked (contract §6.3), the Vault
//! path deleted between the write and the read that judges it, a racing push creating the
//! path this run was refused to create; and a refused create that is no race at all.

use kube_emulator::{FaultAction, FaultRule};
use serde_json::Value;

use crate::proxy::{FaultProxy, ProxyFault};
use crate::support::{chart_policy, secops, secops_with, token_of, Cluster, Run, BAO, ROOT_TOKEN};

/// A handover of `ns/s` in `mode`, held at the write that records how the Secret is
/// consumed (the last Vault request before the marking) while `meanwhile` runs.
fn handover_held(cluster: &Cluster, ns: &str, mode: &str, meanwhile: impl FnOnce()) -> Run {
    cluster.namespace(ns);
    cluster.bootstrap_secret(ns, "s", &format!("{ns}/s"), &[("v", b"held-value")]);
    // The provenance write and then the consumption record both patch the metadata.
    let run = held_at(
        cluster,
        &format!("PATCH /v1/secret/metadata/{ns}/s "),
        1,
        &["handover", "-n", ns, "--mode", mode],
        ROOT_TOKEN,
        meanwhile,
    );
    assert_eq!(
        BAO.current_version("secret", &format!("{ns}/s")),
        1,
        "the handover itself was written once: {}",
        run.stdout
    );
    run
}

/// `args` run through a proxy that holds the request `offset` after the first one whose
/// head contains `needle`, while `meanwhile` runs.
fn held_at(
    cluster: &Cluster,
    needle: &str,
    offset: usize,
    args: &[&str],
    token: &str,
    meanwhile: impl FnOnce(),
) -> Run {
    let proxy = FaultProxy::start(&BAO.addr);
    proxy.arm_at(needle, offset, ProxyFault::Hold);
    std::thread::scope(|scope| {
        // The hold lasts as long as `meanwhile`: no request of the run may time out meanwhile.
        let env = [
            ("VAULT_ADDR", proxy.addr.as_str()),
            ("VAULT_TOKEN", token),
            ("SECOPS_TIMEOUT", "60s"),
        ];
        let run = scope.spawn(move || secops_with(Some(cluster), args, &env));
        proxy.wait_until_holding();
        meanwhile();
        proxy.release();
        run.join().unwrap()
    })
}

fn uid(secret: &Value) -> String {
    secret["metadata"]["uid"].as_str().unwrap().to_string()
}

fn recreate(cluster: &Cluster, ns: &str) -> String {
    cluster.delete_secret(ns, "s");
    let again = cluster.bootstrap_secret(ns, "s", &format!("{ns}/s"), &[("v", b"held-value")]);
    uid(&again)
}

#[test]
fn a_secret_deleted_before_its_marking_is_not_found() {
    let cluster = Cluster::start();
    let run = handover_held(&cluster, "gone-annotate", "annotate", || {
        cluster.delete_secret("gone-annotate", "s")
    });
    assert_eq!(run.code, 4, "{}\n{}", run.stdout, run.stderr);
    assert!(cluster.secret("gone-annotate", "s").is_none());
}

#[test]
fn a_secret_deleted_before_its_deletion_is_already_consumed() {
    let cluster = Cluster::start();
    let run = handover_held(&cluster, "gone-delete", "delete", || {
        cluster.delete_secret("gone-delete", "s")
    });
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        run.json()["items"][0]["outcome"],
        "already-consumed",
        "{}",
        run.stdout
    );
}

#[test]
fn a_secret_recreated_before_its_marking_is_left_alone() {
    for mode in ["annotate", "delete"] {
        let cluster = Cluster::start();
        let ns = format!("recreated-{mode}");
        let mut new_uid = String::new();
        let run = handover_held(&cluster, &ns, mode, || new_uid = recreate(&cluster, &ns));
        assert_eq!(run.code, 4, "{mode}: {}\n{}", run.stdout, run.stderr);
        assert!(run.stdout.contains("re-created"), "{mode}: {}", run.stdout);
        let left = cluster
            .secret(&ns, "s")
            .expect("the re-created Secret is not deleted");
        assert_eq!(uid(&left), new_uid, "{mode}");
        assert!(
            left["metadata"]["labels"].get("secops.dev/state").is_none(),
            "{mode}: the re-created Secret is not marked: {left}"
        );
    }
}

#[test]
fn a_secret_changed_before_its_marking_is_read_again_and_marked() {
    let cluster = Cluster::start();
    let run = handover_held(&cluster, "touched", "annotate", || {
        cluster.merge_patch_secret(
            "touched",
            "s",
            serde_json::json!({"metadata": {"annotations": {"team": "payments"}}}),
        )
    });
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let marked = cluster.secret("touched", "s").unwrap();
    assert_eq!(marked["metadata"]["labels"]["secops.dev/state"], "consumed");
    assert_eq!(marked["metadata"]["annotations"]["team"], "payments");
}

/// The data a crashed handover left (no provenance yet) is deleted, versions and all, between
/// the run's refused write and its read of the path: the path is free again, so the run
/// writes it afresh.
#[test]
fn a_path_deleted_between_the_write_and_its_read_is_written_afresh() {
    let cluster = Cluster::start();
    let ns = "vanished";
    cluster.namespace(ns);
    cluster.bootstrap_secret(ns, "s", "vanished/s", &[("v", b"held-value")]);
    BAO.write(
        "secret",
        "vanished/s",
        serde_json::json!({"v": "held-value"}),
    );
    let run = held_at(
        &cluster,
        "POST /v1/secret/data/vanished/s ",
        1,
        &["handover", "-n", ns],
        ROOT_TOKEN,
        || {
            let (code, _) = BAO.api("DELETE", "secret/metadata/vanished/s", None);
            assert_eq!(code, 204);
        },
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(BAO.current_version("secret", "vanished/s"), 1);
    assert_eq!(
        BAO.custom_metadata("secret", "vanished/s")["secops-origin"],
        format!("bootstrap:{ns}/s")
    );
}

/// A token with `role`'s chart policy for `ns`, less `create` on the namespace's paths.
fn token_without_create(role: &str, ns: &str) -> String {
    let policy = chart_policy(role, &[ns.to_string()], "secret");
    let data_path = format!("path \"secret/data/{ns}/*\" {{");
    let start = policy
        .find(&data_path)
        .expect("the chart grants the data path");
    let end = start + policy[start..].find('}').unwrap();
    let without_create = format!("{data_path}\n  capabilities = [\"read\", \"update\"]\n");
    token_of(
        role,
        &format!("{}{without_create}{}", &policy[..start], &policy[end..]),
    )
}

/// A policy that lets the run claim the path but not create it is a refusal naming the
/// missing permission, not a race retried until it gives up.
#[test]
fn a_policy_without_create_on_the_path_is_refused() {
    let cluster = Cluster::start();
    let ns = "no-create";
    cluster.namespace(ns);
    cluster.bootstrap_secret(ns, "s", "no-create/s", &[("v", b"denied-value")]);
    internal_secret(&cluster, ns, "op");
    for (role, args) in [
        ("handover", ["handover", "-n", ns]),
        ("push", ["push-secret", "--secret", "no-create/op"]),
    ] {
        let token = token_without_create(role, ns);
        let run = secops_with(
            Some(&cluster),
            &args,
            &[
                ("VAULT_ADDR", BAO.addr.as_str()),
                ("VAULT_TOKEN", token.as_str()),
            ],
        );
        assert_eq!(run.code, 3, "{role}: {}\n{}", run.stdout, run.stderr);
        assert!(
            run.stdout.contains("no create permission"),
            "{}",
            run.stdout
        );
    }
    assert_eq!(BAO.current_version("secret", "no-create/s"), 0);
    assert_eq!(BAO.current_version("secret", "no-create/op"), 0);
}

/// A push whose create was refused while a racing push (allowed to create) published the
/// same Secret: the refusal was the race, and the re-read finds the push done.
#[test]
fn a_push_refused_create_by_a_race_it_lost_finds_the_push_done() {
    let cluster = Cluster::start();
    let ns = "lost-create";
    cluster.namespace(ns);
    internal_secret(&cluster, ns, "op");
    let token = token_without_create("push", ns);
    let racing = std::cell::RefCell::new(None);
    let run = held_at(
        &cluster,
        "POST /v1/secret/data/lost-create/op ",
        1,
        &["push-secret", "--secret", "lost-create/op"],
        &token,
        || {
            *racing.borrow_mut() = Some(secops(
                Some(&cluster),
                &["push-secret", "--secret", "lost-create/op"],
            ))
        },
    );
    let racing = racing.into_inner().unwrap();
    assert_eq!(racing.code, 0, "{}\n{}", racing.stdout, racing.stderr);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(BAO.current_version("secret", "lost-create/op"), 1);
}

/// An internal Secret `NS/NAME` pushed to `NS/NAME`.
fn internal_secret(cluster: &Cluster, ns: &str, name: &str) {
    crate::push::internal_secret(cluster, ns, name, &format!("{ns}/{name}"), b"pushed");
}

/// The Secret changes under the marking (a conflict), then is gone when read again: deleted
/// is what `--mode delete` wanted, and anything else cannot mark what is not there.
#[test]
fn a_secret_gone_after_a_conflict_is_consumed_only_by_deletion() {
    for (mode, code) in [("delete", 0), ("annotate", 4)] {
        let cluster = Cluster::start();
        let ns = format!("conflict-gone-{mode}");
        let run = handover_held(&cluster, &ns, mode, || {
            cluster.merge_patch_secret(
                &ns,
                "s",
                serde_json::json!({"metadata": {"annotations": {"team": "payments"}}}),
            );
            cluster.emulator.inject(FaultRule::new(
                Some("get"),
                Some("secrets"),
                1,
                FaultAction::Status(404),
            ));
        });
        assert_eq!(run.code, code, "{mode}: {}\n{}", run.stdout, run.stderr);
        if code == 0 {
            assert_eq!(run.json()["items"][0]["outcome"], "already-consumed");
        }
    }
}

/// A push held at its provenance write while the source Secret changes under it: the same
/// object with the same data is annotated after a re-read; changed data is left for the next
/// push, unannotated, since the version pushed is not its data.
#[test]
fn a_source_changed_during_its_push_is_annotated_only_if_its_data_is_what_was_pushed() {
    use base64::Engine as _;
    let encode = |v: &[u8]| base64::engine::general_purpose::STANDARD.encode(v);
    for (ns, new_data) in [
        ("push-touched", None),
        ("push-changed", Some(b"changed".as_slice())),
    ] {
        let cluster = Cluster::start();
        cluster.namespace(ns);
        internal_secret(&cluster, ns, "op");
        let run = held_at(
            &cluster,
            &format!("PATCH /v1/secret/metadata/{ns}/op "),
            0,
            &["push-secret", "--secret", &format!("{ns}/op")],
            ROOT_TOKEN,
            || {
                let mut change =
                    serde_json::json!({"metadata": {"annotations": {"team": "payments"}}});
                if let Some(data) = new_data {
                    change["data"] = serde_json::json!({"tls.key": encode(data)});
                }
                cluster.merge_patch_secret(ns, "op", change);
            },
        );
        assert_eq!(run.code, 0, "{ns}: {}\n{}", run.stdout, run.stderr);
        assert_eq!(
            BAO.current_version("secret", &format!("{ns}/op")),
            1,
            "{ns}"
        );
        let source = cluster.secret(ns, "op").unwrap();
        let annotations = &source["metadata"]["annotations"];
        assert_eq!(annotations["team"], "payments", "{ns}");
        match new_data {
            None => assert_eq!(annotations["secops.dev/vault-version"], "1", "{ns}"),
            Some(_) => assert!(
                annotations.get("secops.dev/vault-version").is_none(),
                "{ns}: changed data is not annotated as version 1: {source}"
            ),
        }
    }
}

/// A claim naming a deleted uid (past its lease) is taken over only by the object that now
/// bears the name: a run whose own Secret was re-created after it was listed takes nothing
/// over (the re-created Secret's own run will).
#[test]
fn a_run_whose_secret_is_recreated_takes_no_claim_over() {
    let cluster = Cluster::start();
    let ns = "takeover-gone";
    let claim_at = format!("secops/claims/{ns}/s");
    cluster.namespace(ns);
    BAO.write(
        "secret",
        &claim_at,
        serde_json::json!({"origin": format!("bootstrap:{ns}/s"), "uid": "deleted-long-ago", "claimed_at": "1"}),
    );
    cluster.bootstrap_secret(ns, "s", &format!("{ns}/s"), &[("v", b"held-value")]);
    let run = held_at(
        &cluster,
        // The claim's create (cas 0) fails; the read after it decides the takeover.
        &format!("POST /v1/secret/data/{claim_at} "),
        1,
        &["handover", "-n", ns],
        ROOT_TOKEN,
        || {
            recreate(&cluster, ns);
        },
    );
    assert_eq!(run.code, 4, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("re-created or deleted"),
        "{}",
        run.stdout
    );
    assert_eq!(
        BAO.read("secret", &claim_at).unwrap()["uid"],
        "deleted-long-ago"
    );
    assert_eq!(BAO.current_version("secret", &format!("{ns}/s")), 0);
}
