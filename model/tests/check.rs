//! Runs the model checker: every scenario of the current protocol must satisfy every
//! property except the findings it lists as known (each must still be found), and the
//! pre-fix push and handover rules, consumers stamped by each run's clock, consumers judged
//! by instant and a claim takeover without a lease must produce counterexamples, so the
//! checker is known able to fail.

use std::collections::BTreeSet;

use secops_model::{check, properties, scenarios, Scenario};

fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

fn check_scenario(scenario: Scenario) -> Vec<String> {
    let known: BTreeSet<_> = scenario.known.iter().map(|(p, _)| *p).collect();
    let findings = scenario.known.clone();
    let report = check(scenario, threads(), false);
    report.print();
    for (property, finding) in &findings {
        println!("  known finding ({property}): {finding}");
    }
    let failed: BTreeSet<_> = report.failures().into_iter().collect();
    let mut problems = Vec::new();
    for property in failed.difference(&known) {
        problems.push(format!("{}: {property} fails", report.scenario));
    }
    for property in known.difference(&failed) {
        problems.push(format!(
            "{}: the known finding against {property:?} is no longer found: the protocol was fixed, remove it from `known`",
            report.scenario
        ));
    }
    problems
}

#[test]
fn the_current_protocol_keeps_every_promise() {
    let problems: Vec<_> = scenarios::current()
        .into_iter()
        .flat_map(check_scenario)
        .collect();
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
#[ignore = "about 2.9 million states, 2-7 minutes; run with --ignored (or `cargo run -p secops-model -- rotate3`)"]
fn three_rotation_runs_keep_every_promise() {
    let problems = check_scenario(scenarios::rotation_three());
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_pre_fix_push_rule_is_caught() {
    let report = check(scenarios::prefix_push_race(), threads(), true);
    report.print();
    let violated: Vec<_> = report
        .failures()
        .into_iter()
        .filter(|p| report.result(p) == "VIOLATED")
        .collect();
    assert!(
        violated.contains(&properties::ONE_ORIGIN)
            && violated.contains(&properties::MARKED_ONLY_IF_NAMED),
        "the checker must find the pre-fix race, found {violated:?}"
    );
}

#[test]
fn the_pre_fix_handover_rule_is_caught() {
    let report = check(scenarios::prefix_handover_same_data(), threads(), true);
    report.print();
    assert_eq!(
        report.result(properties::ONE_ORIGIN),
        "VIOLATED",
        "two Secrets with the same data must not both own one path"
    );
}

#[test]
fn consumers_stamped_by_the_runs_clock_are_caught() {
    let report = check(scenarios::prefix_consumers(), threads(), true);
    report.print();
    assert_eq!(
        report.result(properties::STAMP_ONCE),
        "VIOLATED",
        "a stamp not derived from the record must stamp a consumer twice for one id"
    );
}

#[test]
fn consumers_judged_by_instant_are_caught_within_one_second() {
    let report = check(scenarios::prefix_same_second(), threads(), true);
    report.print();
    assert_eq!(
        report.result(properties::CONSUMERS_CURRENT),
        "VIOLATED",
        "a second rotation completing in the first one's second must not report done unserved"
    );
}

#[test]
fn the_pre_fix_rule_is_caught_across_two_paths() {
    let report = check(scenarios::prefix_two_paths(), threads(), true);
    report.print();
    // The search stops at its first violation: either ownership invariant will do.
    assert!(
        [properties::ONE_ORIGIN, properties::MARKED_ONLY_IF_NAMED]
            .iter()
            .any(|p| report.result(p) == "VIOLATED"),
        "the batch's second Secret and the push must not both own ns/p1"
    );
}

#[test]
fn a_takeover_without_a_lease_is_caught() {
    let report = check(scenarios::prefix_takeover(), threads(), true);
    report.print();
    println!("  finding: {}", scenarios::FINDING_TAKEOVER);
    // The search stops at its first violation: any invariant the late PATCH breaks will do.
    assert!(
        [
            properties::ONE_ORIGIN,
            properties::MARKED_ONLY_IF_NAMED,
            properties::ORIGIN_DATA
        ]
        .iter()
        .any(|p| report.result(p) == "VIOLATED"),
        "the run a takeover raced must not record the deleted uid after it"
    );
}

#[test]
fn a_push_takeover_without_a_lease_is_caught() {
    let report = check(scenarios::prefix_push_takeover(), threads(), true);
    report.print();
    assert!(
        [properties::ONE_ORIGIN, properties::MARKED_ONLY_IF_NAMED]
            .iter()
            .any(|p| report.result(p) == "VIOLATED"),
        "the push a takeover raced must not record the deleted uid after it"
    );
}
