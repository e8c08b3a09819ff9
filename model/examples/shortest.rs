//! `cargo run -p secops-model --example shortest -- SCENARIO PROPERTY`: the shortest
//! counterexample to one property (names matched by substring), found single-threaded.
use secops_model::*;
use stateright::{Checker, Model};
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let scenario = scenarios::current()
        .into_iter()
        .chain([
            scenarios::rotation_three(),
            scenarios::prefix_push_race(),
            scenarios::prefix_handover_same_data(),
            scenarios::prefix_consumers(),
            scenarios::prefix_two_paths(),
        ])
        .find(|s| s.name.contains(&args[1]))
        .unwrap();
    let prop = properties::all()
        .into_iter()
        .find(|p| p.name.contains(&args[2]))
        .unwrap()
        .name;
    let mut m = SecopsModel::new(scenario);
    m.only = Some(prop);
    let c = m.checker().spawn_bfs().join();
    println!("{} states", c.unique_state_count());
    if let Some(p) = c.discovery(prop) {
        for l in c.model().explain(&p.into_vec()) {
            println!("{l}");
        }
    }
}
