//! An exhaustive model check of the secops protocols (issue #20): the handover
//! (`write-vault`, `mark-consumed`, `handover`), `push-secret` and `rotate`, run by up to
//! three concurrent actors against a model of Vault KV v2 and Kubernetes, with crashes and
//! lost responses at every remote call, Argo's retries, and a GitOps controller that
//! re-applies or re-creates the bootstrap Secret. [stateright] explores every interleaving
//! breadth-first, so a counterexample it prints is a shortest one.
//!
//! The decisions are the real ones (`secops::domain`, see [`actors`]); the world is
//! [`world`]; the promises checked are [`properties`]; the configurations are
//! [`scenarios`]. `docs/architecture.md` ("What the model checks") says what was checked.

#![forbid(unsafe_code)]

pub mod actors;
pub mod prefix;
pub mod properties;
pub mod scenarios;
pub mod transcribed;
pub mod world;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use stateright::{Checker, HasDiscoveries, Model, Property};

use actors::{is_write, Actor, Command, Ctx, Log, Mem, Pc, Rule, Step};
use world::{Owner, Val, World};

/// A bootstrap or internal Secret present when the actors start.
#[derive(Clone, Copy, Debug)]
pub struct SecretSpec {
    pub name: u8,
    pub internal: bool,
    pub path: u8,
    /// Git's value (bootstrap) or the operator's (internal).
    pub val: Val,
}

/// What the GitOps controller may do to a bootstrap Secret (once per scenario budget).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GitOps {
    /// Self-heal: Git's data applied again; a new resourceVersion.
    Reapply { secret: u8 },
    /// The Secret deleted and created again from Git: a new uid.
    Recreate { secret: u8 },
}

/// One configuration to check exhaustively.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: &'static str,
    pub rule: Rule,
    pub secrets: Vec<SecretSpec>,
    /// Secrets already handed over (Vault version 1, provenance) and marked consumed.
    pub seeded: Vec<u8>,
    pub actors: Vec<Command>,
    /// Runs of each actor that reach an end (exit 0, 2, 3 or 4): 2 = a run and a re-run.
    pub runs: u8,
    /// Crashes (before a call, or after it with the response lost), in all.
    pub faults: u8,
    pub gitops: Vec<GitOps>,
    pub gitops_budget: u8,
    /// How often a rotation run may stall past `--claim-lease` between its claim and its
    /// completion (a paused pod, a partition): a waiter then takes over a claim whose holder
    /// is alive. 0: the lease assumption holds.
    pub stalls: u8,
    /// Vault's policy grants create but not update on data and claim paths.
    pub create_only: bool,
    /// An operator may soft-delete the current version of this path once.
    pub soft_delete: Option<u8>,
    /// Every rotation refreshes an ExternalSecret and restarts a Deployment (ESO acts on
    /// each `force-sync`).
    pub consumers: bool,
    /// Each completed rotation record takes a second of its own; otherwise all completions
    /// (short of a lease passing) fall in one second.
    pub distinct_seconds: bool,
    /// Properties this scenario is known to violate, each with the finding it stands for:
    /// the test requires exactly these to fail, so a fix shows up as a test to update.
    pub known: Vec<(&'static str, &'static str)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// The actor makes its next remote call and acts on the answer.
    Call(usize),
    /// The actor's process dies before its next call; Argo runs it again.
    Crash(usize),
    /// The call is applied but the answer is lost (timeout, pod killed); Argo runs it again.
    LostResponse(usize),
    GitOps(usize),
    /// An operator soft-deletes the current version of the path.
    SoftDelete,
    /// ESO acts on a new `force-sync`: copies the rotated path's current version and
    /// reports the sync.
    Eso,
}

/// Ghost state: facts about the history that no actor reads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Ghost {
    /// The first owner (origin, uid) provenance named on each data path.
    pub first_owner: BTreeMap<String, (String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    pub world: World,
    pub actors: Vec<Actor>,
    pub faults: u8,
    pub gitops: u8,
    pub soft_delete: bool,
    /// Stalls past the lease left (`Scenario::stalls`).
    pub stalls: u8,
    /// Disturbances so far (faults, GitOps changes, soft deletes).
    pub epoch: u8,
    pub ghost: Ghost,
}

pub struct SecopsModel {
    pub scenario: Scenario,
    pub ctx: Ctx,
    /// Check only this property (to find its shortest counterexample).
    pub only: Option<&'static str>,
}

impl SecopsModel {
    pub fn new(scenario: Scenario) -> Self {
        // The consumers are those of `ns/p0`.
        assert!(
            !scenario.consumers
                || scenario
                    .actors
                    .iter()
                    .all(|c| !matches!(c, Command::Rotate { path, .. } if *path != 0)),
            "the model's consumers read ns/p0 only"
        );
        let ctx = Ctx::new(scenario.rule, scenario.consumers);
        Self {
            scenario,
            ctx,
            only: None,
        }
    }

    pub fn done(&self, state: &State, actor: &Actor) -> bool {
        actor.runs >= self.scenario.runs && actor.last_epoch == state.epoch
    }

    pub fn all_done(&self, state: &State) -> bool {
        state.actors.iter().all(|a| self.done(state, a)) && !state.world.kube.eso_pending()
    }

    /// Applies an action; with `log`, records the calls it made.
    pub fn apply(&self, state: &State, action: Action, log: &mut Log) -> State {
        let mut next = state.clone();
        match action {
            Action::Call(i) => {
                log.say_line(format!("#{i} {}:", self.scenario.actors[i].label()));
                let live = holds_live_claim(&next);
                let now = next.world.now;
                self.call(&mut next, i, log);
                if live && next.world.now != now {
                    // The clock passed the lease of a claimant that is alive: it stalled.
                    log.say_line("    (a live claimant has stalled past the lease)".into());
                    next.stalls -= 1;
                }
            }
            Action::Crash(i) => {
                log.say_line(format!(
                    "#{i} {}: CRASH before its next call ({:?})",
                    self.scenario.actors[i].label(),
                    next.actors[i].pc
                ));
                next.faults -= 1;
                self.restart(&mut next.actors[i], i);
            }
            Action::LostResponse(i) => {
                log.say_line(format!(
                    "#{i} {}: call applied, RESPONSE LOST:",
                    self.scenario.actors[i].label()
                ));
                next.faults -= 1;
                let before = next.actors[i].clone();
                self.call(&mut next, i, log);
                let generated = next.actors[i].generated;
                next.actors[i] = before;
                next.actors[i].generated = generated;
                self.restart(&mut next.actors[i], i);
            }
            Action::GitOps(g) => {
                next.gitops -= 1;
                let spec = |s: u8| {
                    *self
                        .scenario
                        .secrets
                        .iter()
                        .find(|spec| spec.name == s)
                        .expect("a GitOps Secret is declared")
                };
                match self.scenario.gitops[g] {
                    GitOps::Reapply { secret } => {
                        log.say_line(format!("GitOps re-applies {}", name(secret)));
                        next.world.kube.reapply(secret, spec(secret).val);
                    }
                    GitOps::Recreate { secret } => {
                        let s = spec(secret);
                        log.say_line(format!(
                            "GitOps deletes and re-creates {} (new uid)",
                            name(secret)
                        ));
                        next.world.kube.delete(secret);
                        next.world.kube.create(secret, s.internal, s.path, s.val);
                    }
                }
            }
            Action::SoftDelete => {
                let path = world::PATHS[usize::from(self.scenario.soft_delete.expect("soft"))];
                log.say_line(format!(
                    "an operator soft-deletes the current version of {path}"
                ));
                next.soft_delete = false;
                next.world.vault.soft_delete(path);
            }
            Action::Eso => {
                let version = next
                    .world
                    .vault
                    .path(world::PATHS[0])
                    .map_or(0, |p| p.current_version());
                log.say_line(format!("ESO syncs version {version} (force-sync acted on)"));
                next.world.kube.eso_sync(next.world.second, version);
            }
        }
        if !matches!(action, Action::Call(_) | Action::Eso) {
            next.epoch += 1;
        }
        self.update_ghost(&mut next);
        next
    }

    fn call(&self, state: &mut State, i: usize, log: &mut Log) {
        Step {
            ctx: &self.ctx,
            index: i,
            command: self.scenario.actors[i],
            world: &mut state.world,
            actor: &mut state.actors[i],
            log,
            epoch: state.epoch,
        }
        .run();
    }

    fn update_ghost(&self, state: &mut State) {
        for path in world::PATHS {
            if state.ghost.first_owner.contains_key(path) {
                continue;
            }
            let provenance = state
                .world
                .vault
                .path(path)
                .and_then(|p| secops::domain::provenance::Provenance::from_metadata(&p.custom));
            if let Some(p) = provenance {
                state
                    .ghost
                    .first_owner
                    .insert(path.to_string(), (p.origin.to_string(), p.origin_uid));
            }
        }
    }

    /// The calls a counterexample makes, one line each, replayed from its path.
    pub fn explain(&self, path: &[(State, Option<Action>)]) -> Vec<String> {
        let mut lines = Vec::new();
        for (state, action) in path {
            if let Some(action) = action {
                let mut log = Log(Some(Vec::new()));
                self.apply(state, *action, &mut log);
                let mut said = log.0.unwrap_or_default().into_iter();
                // "#i command:" and its call on one line; the decisions indented below.
                if let Some(first) = said.next() {
                    match said.next() {
                        Some(call) if first.ends_with(':') && !call.starts_with(' ') => {
                            lines.push(format!("{first} {call}"))
                        }
                        second => lines.extend([Some(first), second].into_iter().flatten()),
                    }
                }
                lines.extend(said);
            }
        }
        lines
    }
}

/// Whether some actor holds a live rotation claim.
fn holds_live_claim(state: &State) -> bool {
    state
        .actors
        .iter()
        .any(|actor| actors::holds_live_claim(actor.pc))
}

fn name(secret: u8) -> &'static str {
    world::SECRET_NAMES[usize::from(secret)]
}

impl SecopsModel {
    /// The actor's process died: Argo runs the step again (a whole batch from its first
    /// Secret).
    fn restart(&self, actor: &mut Actor, i: usize) {
        actor.pc = Pc::Start;
        actor.mem = Mem::default();
        if matches!(self.scenario.actors[i], Command::Batch { .. }) {
            actor.phase = 0;
        }
    }
}

impl Log {
    fn say_line(&mut self, line: String) {
        if let Some(lines) = &mut self.0 {
            lines.push(line);
        }
    }
}

impl Model for SecopsModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let s = &self.scenario;
        let mut world = World {
            distinct_seconds: s.distinct_seconds,
            ..World::default()
        };
        world.vault.create_only = s.create_only;
        for spec in &s.secrets {
            world
                .kube
                .create(spec.name, spec.internal, spec.path, spec.val);
        }
        for &seeded in &s.seeded {
            seed_handover(&self.ctx, &mut world, seeded);
        }
        if s.consumers {
            let serves = world
                .vault
                .path(world::PATHS[0])
                .map_or(0, |p| p.current_version());
            world.kube.add_consumers(serves);
        }
        let actors = s
            .actors
            .iter()
            .map(|command| Actor {
                pc: Pc::Start,
                mem: Mem::default(),
                phase: 0,
                first: None,
                runs: 0,
                retries: 0,
                last: None,
                plan_uid: command
                    .secret()
                    .and_then(|secret| world.kube.get(secret))
                    .map(|o| o.uid),
                generated: 0,
                run_epoch: 0,
                last_epoch: 0,
            })
            .collect();
        let mut state = State {
            world,
            actors,
            faults: s.faults,
            gitops: s.gitops_budget,
            soft_delete: s.soft_delete.is_some(),
            stalls: s.stalls,
            epoch: 0,
            ghost: Ghost::default(),
        };
        self.update_ghost(&mut state);
        vec![state]
    }

    fn actions(&self, state: &State, actions: &mut Vec<Action>) {
        for (i, actor) in state.actors.iter().enumerate() {
            if self.done(state, actor) {
                continue;
            }
            // Waiting ends with the clock passing a lease; unless a claimant may still stall,
            // no live claim (of any id: the clock is shared) may be overtaken by it.
            let waits_for_live_claim =
                matches!(actor.pc, Pc::RotateWaiting { .. } | Pc::ClaimLeased { .. })
                    && (state.stalls == 0 && holds_live_claim(state)
                        || state.actors.iter().any(|a| a.mem.renewed));
            // ESO syncs within --sync-timeout: the wait ends once it has acted.
            let waits_for_eso = actor.pc == Pc::SyncPoll && state.world.kube.eso_pending();
            if !waits_for_live_claim && !waits_for_eso {
                actions.push(Action::Call(i));
            }
            if state.faults > 0 {
                // A crash before the first call of a run only repeats the state.
                if actor.pc != Pc::Start {
                    actions.push(Action::Crash(i));
                }
                if is_write(actor.pc) {
                    actions.push(Action::LostResponse(i));
                }
            }
        }
        if state.gitops > 0 {
            actions.extend((0..self.scenario.gitops.len()).map(Action::GitOps));
        }
        if state.soft_delete {
            actions.push(Action::SoftDelete);
        }
        if state.world.kube.eso_pending() {
            actions.push(Action::Eso);
        }
    }

    fn next_state(&self, state: &State, action: Action) -> Option<State> {
        Some(self.apply(state, action, &mut Log(None)))
    }

    fn properties(&self) -> Vec<Property<Self>> {
        let mut all = properties::all();
        all.retain(|p| self.only.is_none_or(|only| p.name == only));
        all
    }
}

/// A finished handover present before the actors start: version 1 written by the Secret,
/// provenance naming it, the Secret marked consumed.
fn seed_handover(ctx: &Ctx, world: &mut World, secret: u8) {
    use secops::domain::names;
    use secops::domain::provenance::OwnershipRecord;
    let object = world.kube.get(secret).expect("a seeded Secret exists");
    let owner = Owner {
        internal: false,
        name: secret,
        uid: object.uid,
    };
    let path = object.annotations[names::VAULT_PATH].clone();
    let val = object.val.expect("data");
    world.vault.write(
        &path,
        world::Data::Secret(val),
        0,
        world::Writer::Seed(owner),
    );
    let fp = ctx.fp(&path, val);
    let patch = OwnershipRecord {
        origin: &owner.origin(),
        uid: &owner.uid(),
        version: 1,
        fingerprint: &fp,
        base64_keys: &Default::default(),
        k8s_type: "Opaque",
        at: "t",
        at_key: Some(names::meta::HANDOVER_AT),
        adopted: false,
        max_age: None,
    }
    .changes();
    world.vault.patch_metadata(&path, &patch);
    let consumed = world::ObjectPatch {
        labels: world::Meta::from([(
            names::STATE_LABEL.to_string(),
            names::STATE_CONSUMED.to_string(),
        )]),
        annotations: world::Meta::from([
            (names::VAULT_VERSION.to_string(), "1".to_string()),
            (names::FINGERPRINT.to_string(), fp.as_str().to_string()),
        ]),
        strip_data: false,
    };
    world.kube.patch(secret, object.resource_version, &consumed);
}

/// What one exhaustive check found.
pub struct Report {
    pub scenario: &'static str,
    pub unique_states: usize,
    pub states: usize,
    pub max_depth: usize,
    pub elapsed: Duration,
    /// Property name, and the calls of its (shortest) discovery, if any.
    pub discoveries: BTreeMap<&'static str, Vec<String>>,
    pub properties: Vec<(&'static str, stateright::Expectation)>,
}

impl Report {
    /// The property's result: `holds`, `VIOLATED`, or for a reachability check `reached`.
    pub fn result(&self, name: &str) -> &'static str {
        let (_, expectation) = self
            .properties
            .iter()
            .find(|(n, _)| *n == name)
            .expect("a property");
        match (expectation, self.discoveries.contains_key(name)) {
            (stateright::Expectation::Sometimes, true) => "reached",
            (stateright::Expectation::Sometimes, false) => "NOT REACHED",
            (_, false) => "holds",
            (_, true) => "VIOLATED",
        }
    }

    pub fn print(&self) {
        println!(
            "model {}: {} unique states ({} generated), depth {}, {:.1?}",
            self.scenario, self.unique_states, self.states, self.max_depth, self.elapsed
        );
        for (name, _) in &self.properties {
            println!("  {:<58} {}", name, self.result(name));
        }
        for (name, calls) in &self.discoveries {
            if self.result(name) == "VIOLATED" {
                println!("  counterexample to \"{name}\" ({} calls):", calls.len());
                for call in calls {
                    println!("    {call}");
                }
            }
        }
    }

    /// Properties that failed (an invariant violated, or a sanity state never reached).
    pub fn failures(&self) -> Vec<&'static str> {
        self.properties
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| matches!(self.result(n), "VIOLATED" | "NOT REACHED"))
            .collect()
    }
}

/// Explores every state of `scenario` breadth-first on `threads` threads. With
/// `stop_at_failure`, stops at the first violated invariant (for the known-failing variant).
pub fn check(scenario: Scenario, threads: usize, stop_at_failure: bool) -> Report {
    let name = scenario.name;
    let model = SecopsModel::new(scenario);
    let properties: Vec<_> = model
        .properties()
        .iter()
        .map(|p| (p.name, p.expectation.clone()))
        .collect();
    let start = Instant::now();
    let mut builder = model.checker().threads(threads);
    // For exploring a scenario's growth: `SECOPS_MODEL_MAX_DEPTH=N` bounds the search.
    if let Some(depth) = std::env::var("SECOPS_MODEL_MAX_DEPTH")
        .ok()
        .and_then(|d| d.parse().ok())
    {
        builder = builder.target_max_depth(depth);
    }
    if stop_at_failure {
        builder = builder.finish_when(HasDiscoveries::AnyFailures);
    }
    let checker = builder.spawn_bfs().join();
    let elapsed = start.elapsed();
    let mut discoveries: BTreeMap<_, _> = checker
        .discoveries()
        .into_iter()
        .map(|(name, path)| (name, checker.model().explain(&path.into_vec())))
        .collect();
    // stateright's BFS keeps the *last* violating state it meets for an invariant, not the
    // first; a single-threaded search for that one property alone stops at the first,
    // which breadth-first order makes a shortest counterexample.
    let violated: Vec<_> = properties
        .iter()
        .filter(|(n, e)| *e != stateright::Expectation::Sometimes && discoveries.contains_key(n))
        .map(|(n, _)| *n)
        .collect();
    for name in violated {
        let mut model = SecopsModel::new(checker.model().scenario.clone());
        model.only = Some(name);
        let shortest = model.checker().spawn_bfs().join();
        if let Some(path) = shortest.discovery(name) {
            discoveries.insert(name, shortest.model().explain(&path.into_vec()));
        }
    }
    Report {
        scenario: name,
        unique_states: checker.unique_state_count(),
        states: checker.state_count(),
        max_depth: checker.max_depth(),
        elapsed,
        discoveries,
        properties,
    }
}
