//! Runs the model checker: every scenario of the current protocol must satisfy every
//! property, and the pre-fix push rule must produce a counterexample.

use secops_model::{check, properties, scenarios};

fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

#[test]
fn the_current_protocol_keeps_every_promise() {
    let mut failed = Vec::new();
    for scenario in scenarios::current() {
        let report = check(scenario, threads(), false);
        report.print();
        for property in report.failures() {
            failed.push(format!("{}: {property}", report.scenario));
        }
    }
    assert!(failed.is_empty(), "failed: {failed:#?}");
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
            || violated.contains(&properties::MARKED_ONLY_IF_NAMED),
        "the checker must find the pre-fix race, found {violated:?}"
    );
}
