//! `cargo run -p secops-model --release [SCENARIO...]`: checks the named scenarios (all of
//! the current protocol's by default, `prefix` for the known-failing pre-fix push rule) and
//! prints states, depth, time and each property's result.

use secops_model::{check, scenarios};

fn main() {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    let mut all = scenarios::current();
    all.push(scenarios::prefix_push_race());
    all.push(scenarios::prefix_handover_same_data());
    all.push(scenarios::prefix_consumers());
    all.push(scenarios::prefix_same_second());
    all.push(scenarios::prefix_two_paths());
    all.push(scenarios::prefix_takeover());
    all.push(scenarios::prefix_push_takeover());
    all.push(scenarios::rotation_three());
    for scenario in all {
        let short = scenario
            .name
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        let extra = scenario.name.starts_with("PRE-FIX") || scenario.name.starts_with("rotate3");
        let picked = wanted.is_empty() && !extra
            || wanted
                .iter()
                .any(|w| scenario.name.contains(w.as_str()) || *w == short);
        if picked {
            check(scenario, threads, false).print();
        }
    }
}
