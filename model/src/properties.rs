//! The promises of RFC-SECOPS-0001 and `docs/contract.md`, as properties of every reachable
//! state. "Always" properties are invariants; the "converged" ones are checked in every
//! state where all actors have finished their runs (a run and its fault-free re-run), which
//! is where "eventually" is decided: every actor's runs are bounded, so every path reaches
//! such a state. "Sometimes" properties guard against a vacuous model: the states they name
//! must be reachable.

use secops::domain::names;
use secops::domain::provenance::{Origin, Provenance};
use stateright::Property;

use crate::actors::{Command, Ended};
use secops::domain::rotation::record_path;

use crate::world::{Data, Owner, Record, Writer, PATHS};
use crate::{SecopsModel, State};

pub const ONE_ORIGIN: &str = "one origin per path";
pub const MARKED_ONLY_IF_NAMED: &str =
    "marked consumed or pushed only if provenance names it (uid, version)";
pub const ORIGIN_DATA: &str = "data at the origin version is what that origin wrote";
pub const BOOTSTRAP_ONCE: &str = "no bootstrap value written after the handover";
pub const ROTATION_ONCE: &str = "at most one new version per rotation id";
pub const STAMP_ONCE: &str =
    "no consumer stamped twice per rotation id, each with its record's completed_at";
pub const SETTLED: &str = "converged: every Secret consumed, pushed or refused with a reason";
pub const NOTHING_HALF_WRITTEN: &str = "converged: nothing half-written (data has provenance)";
pub const CONSUMERS_CURRENT: &str = "converged: consumers serve every rotation that reported done";
pub const REACH_DONE: &str = "reachable: all actors finish";
pub const REACH_WORK: &str =
    "reachable: every path handed over or pushed, every rotated path rotated";

pub fn all() -> Vec<Property<SecopsModel>> {
    vec![
        Property::always(ONE_ORIGIN, one_origin),
        Property::always(MARKED_ONLY_IF_NAMED, marked_only_if_named),
        Property::always(ORIGIN_DATA, origin_data),
        Property::always(BOOTSTRAP_ONCE, bootstrap_once),
        Property::always(ROTATION_ONCE, rotation_once),
        Property::always(STAMP_ONCE, stamp_once),
        Property::always(SETTLED, |m, s| !m.all_done(s) || settled(m, s)),
        Property::always(NOTHING_HALF_WRITTEN, |m, s| {
            !m.all_done(s) || nothing_half_written(s)
        }),
        Property::always(CONSUMERS_CURRENT, |m, s| {
            !m.all_done(s) || consumers_current(m, s)
        }),
        Property::sometimes(REACH_DONE, |m, s| m.all_done(s)),
        Property::sometimes(REACH_WORK, work_done),
    ]
}

fn provenance(state: &State, path: &str) -> Option<Provenance> {
    Provenance::from_metadata(&state.world.vault.path(path)?.custom)
}

/// The creation order of a modelled uid (`uid-N`).
fn uid_number(uid: &str) -> Option<u8> {
    uid.strip_prefix("uid-").and_then(|n| n.parse().ok())
}

/// Once provenance names an owner (origin and uid), it names that origin forever; its uid
/// moves only forward, to a later object of the same name (a re-adopted re-created Secret:
/// uids are handed out in creation order here).
fn one_origin(_: &SecopsModel, state: &State) -> bool {
    let number = uid_number;
    state.ghost.first_owner.iter().all(|(path, (origin, uid))| {
        provenance(state, path).is_some_and(|p| {
            p.origin.to_string() == *origin && number(&p.origin_uid) >= number(uid)
        })
    })
}

/// A bootstrap Secret labelled consumed, or an internal Secret annotated as pushed, is named
/// by the provenance of its path (origin and uid), at the version it was marked with.
fn marked_only_if_named(_: &SecopsModel, state: &State) -> bool {
    state.world.kube.secrets.iter().all(|(&name, object)| {
        let internal = object.labels.get(names::CLASS_LABEL).map(String::as_str)
            == Some(names::Class::Internal.label_value());
        let consumed = object.labels.get(names::STATE_LABEL).map(String::as_str)
            == Some(names::STATE_CONSUMED);
        let marked = match internal {
            true => object.annotations.get(names::VAULT_VERSION),
            false if consumed => object.annotations.get(names::VAULT_VERSION),
            false => None,
        };
        let Some(marked) = marked else { return true };
        let owner = Owner {
            internal,
            name,
            uid: object.uid,
        };
        let path = &object.annotations[names::VAULT_PATH];
        provenance(state, path).is_some_and(|p| {
            p.is_owned_by(&owner.origin(), &owner.uid()) && p.origin_version.to_string() == *marked
        })
    })
}

/// Written by `origin` as the object `uid` or an earlier object of its name: a re-created
/// Secret re-adopts, or finishes under a taken-over claim, what its predecessor wrote.
fn written_by(writer: Writer, origin: &Origin, uid: &str) -> bool {
    match writer {
        Writer::Seed(o) | Writer::Handover(o) | Writer::Push(o) => {
            o.origin() == *origin && uid_number(&o.uid()) <= uid_number(uid)
        }
        Writer::Rotation { .. } | Writer::Protocol => false,
    }
}

/// The version provenance names was written by the origin it names, and holds the data
/// whose fingerprint it records.
fn origin_data(model: &SecopsModel, state: &State) -> bool {
    PATHS.iter().all(|path| {
        let Some(p) = provenance(state, path) else {
            return true;
        };
        let Some(version) = state
            .world
            .vault
            .path(path)
            .and_then(|kv| kv.version(p.origin_version as u8))
        else {
            return false;
        };
        let Data::Secret(val) = version.data else {
            return false;
        };
        written_by(version.writer, &p.origin, &p.origin_uid)
            && p.origin_fingerprint == Some(model.ctx.fp(path, val))
    })
}

/// At most one version of a path was ever written from a bootstrap Secret: once handed
/// over, Git's value never comes back over Vault's (rotated) one.
fn bootstrap_once(_: &SecopsModel, state: &State) -> bool {
    PATHS.iter().all(|path| {
        state.world.vault.path(path).is_none_or(|kv| {
            kv.versions
                .iter()
                .filter(|v| matches!(v.writer, Writer::Seed(_) | Writer::Handover(_)))
                .count()
                <= 1
        })
    })
}

/// A rotation id writes at most one version, however often it is run.
fn rotation_once(model: &SecopsModel, state: &State) -> bool {
    model.scenario.actors.iter().all(|command| {
        let Command::Rotate { path, id } = *command else {
            return true;
        };
        state
            .world
            .vault
            .path(PATHS[usize::from(path)])
            .is_none_or(|kv| {
                kv.versions
                    .iter()
                    .filter(|v| v.writer == Writer::Rotation { id })
                    .count()
                    <= 1
            })
    })
}

/// The completed record of rotation `id`, if any.
fn completed_record(state: &State, id: u8) -> Option<Record> {
    match state
        .world
        .vault
        .read(&record_path(&format!("id{id}")), None)
    {
        Some((_, Data::Record(record))) if record.version.is_some() => Some(record),
        _ => None,
    }
}

/// Every run of a rotation id stamps the same value, the record's `completed_at`, and a
/// consumer is stamped once per id however often the id runs, crashes or races itself:
/// a repeated id never syncs or rolls a consumer twice.
fn stamp_once(_: &SecopsModel, state: &State) -> bool {
    state.world.kube.consumers.iter().all(|consumer| {
        consumer
            .stamped_by
            .iter()
            .enumerate()
            .all(|(i, (id, stamp))| {
                let once = consumer.stamped_by[..i]
                    .iter()
                    .all(|(other, _)| other != id);
                let derived = completed_record(state, *id)
                    .is_some_and(|record| record.completed_at == Some(*stamp));
                once && derived
            })
    })
}

/// After everything finished: every rotation id whose last run reported done (`rotated` or
/// `already-rotated`, consumers included) is served by both consumers: ESO synced its
/// version or a later one, and the Deployment restarted on it or a later one.
fn consumers_current(model: &SecopsModel, state: &State) -> bool {
    let consumers = &state.world.kube.consumers;
    model
        .scenario
        .actors
        .iter()
        .zip(&state.actors)
        .all(|(command, actor)| {
            let Command::Rotate { id, .. } = *command else {
                return true;
            };
            if consumers.is_empty() || !matches!(actor.last, Some(Ended::Done(_))) {
                return true;
            }
            let version = completed_record(state, id).and_then(|r| r.version);
            version.is_none_or(|v| consumers.iter().all(|c| c.serves >= v))
        })
}

/// After every actor has finished (its last run started after the last fault or GitOps
/// change): each Secret an actor works on is consumed (bootstrap) or annotated with the
/// version its path's provenance names (internal), unless that actor's last run was refused
/// with a reason; a rotation ended in `rotated`, `already-rotated` or a refusal; and no run
/// ended in an exhausted exit 75.
fn settled(model: &SecopsModel, state: &State) -> bool {
    model
        .scenario
        .actors
        .iter()
        .zip(&state.actors)
        .all(|(command, actor)| {
            let secrets = command.secrets();
            if secrets.is_empty() {
                return matches!(actor.last, Some(Ended::Done(_) | Ended::Refused(_)));
            }
            // A batch's first Secret ended as `first`, its last one as `last`.
            let ends = match secrets.len() {
                1 => vec![actor.last],
                _ => vec![actor.first, actor.last],
            };
            secrets
                .iter()
                .zip(ends)
                .all(|(&secret, ended)| secret_settled(state, command, secret, ended))
        })
}

fn secret_settled(state: &State, command: &Command, secret: u8, ended: Option<Ended>) -> bool {
    let refused = match ended {
        Some(Ended::Refused(_)) => true,
        Some(Ended::Done(_)) => false,
        Some(Ended::Temporary) | None => return false,
    };
    let Some(object) = state.world.kube.get(secret) else {
        return true;
    };
    let internal = matches!(command, Command::Push { .. });
    let owner = Owner {
        internal,
        name: secret,
        uid: object.uid,
    };
    let named = provenance(state, &object.annotations[names::VAULT_PATH]).is_some_and(|p| {
        p.is_owned_by(&owner.origin(), &owner.uid())
            && object.annotations.get(names::VAULT_VERSION) == Some(&p.origin_version.to_string())
    });
    let consumed =
        object.labels.get(names::STATE_LABEL).map(String::as_str) == Some(names::STATE_CONSUMED);
    refused || (named && (internal || consumed))
}

/// No data path holds versions without provenance once everything has finished.
fn nothing_half_written(state: &State) -> bool {
    PATHS.iter().all(|path| {
        state
            .world
            .vault
            .path(path)
            .is_none_or(|kv| kv.versions.is_empty() || provenance(state, path).is_some())
    })
}

/// At once: on every path a Secret of the scenario aims at (one not handed over before
/// the start), a Secret consumed or pushed; on every path rotated, a rotation written.
fn work_done(model: &SecopsModel, state: &State) -> bool {
    let scenario = &model.scenario;
    let mut handed = scenario
        .secrets
        .iter()
        .filter(|s| !scenario.seeded.contains(&s.name))
        .map(|s| PATHS[usize::from(s.path)]);
    let mut rotated = scenario.actors.iter().filter_map(|c| match *c {
        Command::Rotate { path, .. } => Some(PATHS[usize::from(path)]),
        _ => None,
    });
    handed.all(|path| {
        state.world.kube.secrets.values().any(|o| {
            let consumed =
                o.labels.get(names::STATE_LABEL).map(String::as_str) == Some(names::STATE_CONSUMED);
            let pushed = o.labels.get(names::CLASS_LABEL).map(String::as_str)
                == Some(names::Class::Internal.label_value())
                && o.annotations.contains_key(names::VAULT_VERSION);
            o.annotations.get(names::VAULT_PATH).map(String::as_str) == Some(path)
                && (consumed || pushed)
        })
    }) && rotated.all(|path| {
        state.world.vault.path(path).is_some_and(|kv| {
            kv.versions
                .iter()
                .any(|v| matches!(v.writer, Writer::Rotation { .. }))
        })
    })
}
