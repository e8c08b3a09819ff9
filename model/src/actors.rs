//! The actors: each secops command as a small state machine that makes one remote call per
//! transition against the modelled [`World`], in the order the command makes them, and asks
//! the real decision code in `secops::domain` what to do with each answer
//! (`judge_existing`, `check_consumable`, `combine`, `Ownership::of`, `push::judge`,
//! `push::judge_unowned`, `Claim::is_held_by`, `rotation::decide`, `OwnershipRecord::changes`,
//! `Provenance::from_metadata`, `SourceSecret::{require_class, require_uid, target,
//! require_data, is_consumed}`, and real keyed fingerprints).
//!
//! The sequencing itself (which call follows which answer) is transcribed from
//! `src/commands/{write_vault, mark_consumed, handover, handover_protocol, ownership,
//! push_secret, rotate}.rs`, whose async code takes live clients and so cannot run here;
//! each transition names the function and step it stands for.

use secops::domain::bootstrap::{
    check_consumable, combine, judge_existing, ConsumeCheck, ConsumeMode, ExistingPath,
    SourceSecret,
};
use secops::domain::claim::{claim_path, ClaimHeld};
use secops::domain::consumers::{
    is_refreshed, is_stamped, judge_sync, judge_sync_since, trigger_instant, RefreshFor, Sync,
    SyncSince,
};
use secops::domain::fingerprint::{Fingerprint, FingerprintKey};
use secops::domain::names::{self, meta, Class};
use secops::domain::outcome::Outcome;
use secops::domain::path::AllowedPaths;
use secops::domain::provenance::{MetadataPatch, Origin, Ownership, OwnershipRecord, Provenance};
use secops::domain::push::{judge, judge_unowned, PushStep};
use secops::domain::readopt::{judge_recreated, readoption_changes, Recreation};
use secops::domain::rotation::{decide, record_base64_keys, record_path, RotationStep};
use secops::error::Error;
use secops::retry::RACE_ATTEMPTS;

use crate::prefix;
use crate::world::{
    claim_seconds, domain_claim, fingerprint, source_secret, stamp_seconds, timestamp, uid_text,
    CasWrite, Conditional, Data, Meta, Object, ObjectPatch, Owner, Record, Trigger, Val, World,
    Writer, CLAIM_LEASE_SECONDS, CONSUMERS, DEPLOYMENT, EXTERNAL_SECRET, MOUNT, PATHS,
};

/// Which ownership rule the push and handover decisions follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// The protocol as it is: claims, and data without provenance is never taken over.
    Current,
    /// Before the ownership fix: no claim; data without provenance is unowned, so a push
    /// overwrites it (`cas` = current) and a handover finishes it when the data matches.
    /// Before the per-id stamps: consumers are stamped with the run's own clock.
    PreFix,
    /// The protocol before model finding 3's fix: consumers refreshed for a rotation are
    /// judged by instant (`is_stamped`), the triggers are the instant alone, and ESO's sync
    /// by `refreshTime` (`judge_sync`). Otherwise as `Current`.
    Instants,
    /// The claim takeover before model finding 4's fix: a claim naming a deleted uid is
    /// taken over at once (no lease), and its holder writes without fencing itself.
    /// Otherwise as `Current`.
    NoLease,
}

/// A command an actor runs, again and again (Argo's retry) until it has finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// The workflow's two steps for one bootstrap Secret, `write-vault` then
    /// `mark-consumed --mode annotate`, each a process of its own, retried on its own, both
    /// with the `--expect-uid` of the plan.
    Steps { secret: u8 },
    /// `handover --mode annotate` over a scope holding this one Secret: one process.
    Handover { secret: u8 },
    /// `handover --mode annotate --concurrency 1` over a scope holding two Secrets (each
    /// aimed at its own path): one process handing them over one after the other; one
    /// refused Secret does not stop the other, and a crash or exit 75 re-runs both.
    Batch { first: u8, second: u8 },
    /// `push-secret --secret NS/NAME` (no `--adopt`).
    Push { secret: u8 },
    /// `rotate --path P --rotation-id ID` (no `--adopt`), one key replaced.
    Rotate { path: u8, id: u8 },
}

impl Command {
    pub fn secret(&self) -> Option<u8> {
        match *self {
            Command::Steps { secret } | Command::Handover { secret } | Command::Push { secret } => {
                Some(secret)
            }
            Command::Batch { .. } | Command::Rotate { .. } => None,
        }
    }

    /// The Secrets the command works on, in order.
    pub fn secrets(&self) -> Vec<u8> {
        match *self {
            Command::Batch { first, second } => vec![first, second],
            _ => self.secret().into_iter().collect(),
        }
    }

    pub fn label(&self) -> String {
        let name = |s: u8| crate::world::SECRET_NAMES[usize::from(s)];
        match *self {
            Command::Steps { secret } => format!("write-vault+mark-consumed({})", name(secret)),
            Command::Handover { secret } => format!("handover({})", name(secret)),
            Command::Batch { first, second } => {
                format!("handover({}, {})", name(first), name(second))
            }
            Command::Push { secret } => format!("push-secret({})", name(secret)),
            Command::Rotate { path, id } => {
                format!("rotate({}, id{id})", PATHS[usize::from(path)])
            }
        }
    }
}

/// An [`Outcome`] that can be part of a state (the real type has no `Hash`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Out(pub Outcome);

impl std::hash::Hash for Out {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.as_str().hash(state)
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ended {
    /// Exit 0, with its outcome.
    Done(&'static str),
    /// Exit 2, 3 or 4: refused with a reason (the error kind); Argo does not retry.
    Refused(&'static str),
    /// Exit 75 after the model's retries were used up.
    Temporary,
}

/// What an actor does once it holds, or has lost, the claim on its path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Then {
    /// `write_to_vault`: the `cas=0` data write (if ours), else the metadata read.
    HandoverWrite,
    /// `push_one`, `PushStep::Record`: record provenance over the data found.
    PushRecord { version: u8 },
    /// `push_one`, `PushStep::Write`: the data write.
    PushWrite { cas: u8, adopted: bool },
    /// `recreated::readopt`: move provenance to the re-created Secret (the origin's
    /// handover `version`).
    Readopt { version: u8 },
}

/// The program counter: the remote call an actor makes next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pc {
    /// GET the Secret (every command but rotate starts by re-reading its Secret), or, for
    /// rotate, read the rotation record.
    Start,
    /// `ownership::claim`: create the claim with `cas=0`.
    ClaimWrite { then: Then },
    /// `ownership::claim`: read the claim after a refused create.
    ClaimRead { then: Then, denied: bool },
    /// `ownership::require_live`: GET the Secret before taking over a claim naming this
    /// origin under another uid (`ClaimHeld::TakeOver`), the claim at KV `version`.
    ClaimLive { then: Then, version: u8 },
    /// `ownership::claim`: take the claim over with `cas` = its version.
    ClaimTakeOver { then: Then, version: u8 },
    /// `ownership::claim`, `ClaimHeld::Leased`: a claim naming a deleted uid, younger than
    /// the lease: exit 75, and Argo's retry comes once the lease (ending at `until`) has
    /// run out. One transition, like `RotateWaiting`, and scheduled under the same rule.
    ClaimLeased { until: u8 },
    /// `ownership::fence`: renew our claim past its fence (`cas` on its version), then make
    /// the write it guards (`Mem::resume`).
    ClaimRenew,
    /// `recreated::readopt`: the metadata PATCH moving provenance to the new uid.
    ReadoptPatch { version: u8 },
    /// `recreated::mark_stale`: label the Secret stale (conditionally), then refuse.
    MarkStale { authority: u8, version: u8 },
    /// `write_to_vault`: the `cas=0` data write.
    HandoverData,
    /// `write_to_vault`: record provenance (metadata PATCH) for `version`, then done.
    HandoverRecord { version: u8, outcome: Out },
    /// `write_to_vault`: read the metadata after a refused create (or a lost claim).
    HandoverReadMetadata { denied: bool },
    /// `write_to_vault`, `CompareData`: read the current data.
    HandoverReadData,
    /// `handed_over_before`: a consumed Secret's write-vault re-run reads provenance.
    HandedOverBefore,
    /// `mark_consumed::run`: read the metadata and check who owns the path.
    MarkReadMetadata,
    /// `mark_consumed::run`: read the handover version's data.
    MarkReadVersion { version: u8 },
    /// `mark` → `record_consumption`: record `secops-consumed-mode` in Vault's metadata.
    MarkRecord,
    /// `mark`: patch the Secret conditionally on the resourceVersion read.
    MarkPatch,
    /// `mark`: re-read the Secret after a 409.
    MarkReread,
    /// `push_one` → `decide`: read the metadata.
    PushReadMetadata,
    /// `decide`, `CompareData`: read the data.
    PushReadData { current: u8 },
    /// `push_one`: write the data with `cas`.
    PushData { cas: u8, adopted: bool },
    /// `push_one`: record provenance (metadata PATCH).
    PushRecordMetadata {
        version: u8,
        adopted: bool,
        outcome: Out,
    },
    /// `annotate_source`: patch the source conditionally.
    Annotate { version: u8, outcome: Out },
    /// `annotate_source`: re-read the source after a 409.
    AnnotateReread { version: u8, outcome: Out },
    /// `rotate`: read the path's metadata, check authority, `decide`.
    RotateReadMetadata,
    /// `rotate`, `Wait`: polling a live claim. The polls change nothing, so they are one
    /// transition: the record changed (re-decide), or time passes until the claim is stale
    /// (then `TakeOver`). Unless the scenario lets claimants stall past the lease, a waiter
    /// is not scheduled while the claimant is alive between its claim and its completion.
    RotateWaiting { now: u8 },
    /// `rotate`, `CheckWritten`: read the version after the claim's base.
    RotateReadWritten { version: u8 },
    /// `claim_and_write`: read the current data.
    RotateReadCurrent,
    /// `claim_and_write`: claim (or take over) the record with `cas`.
    RotateClaim,
    /// `claim_and_write`: write the data with `cas` = the version read.
    RotateData,
    /// `complete`: complete the record, `cas` = the record version read or claimed.
    RotateComplete { version: u8 },
    /// `stamp_metadata` (from `finish`, or from a run that found the id `AlreadyRotated`):
    /// write the path's metadata (full write, from the metadata read this pass).
    RotateStamp { version: u8 },
    /// `refresh_consumer`: GET the consumer and judge its stamp (`is_stamped`).
    ConsumerGet { consumer: u8 },
    /// `refresh_consumer`: patch the stamp conditionally on the resourceVersion read.
    ConsumerPatch { consumer: u8, resource_version: u8 },
    /// `refresh_consumers`: read the ExternalSecret's status until ESO reports the sync
    /// (`judge_sync`). The polls are one transition, taken once ESO has acted on the
    /// pending `force-sync`: ESO syncs within `--sync-timeout`.
    SyncPoll,
}

/// How `refresh_consumer` left the ExternalSecret (`SyncSince`, which has no `Hash`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Since {
    /// This run wrote the force-sync; ESO had last acted on this trigger.
    Patched(Option<Trigger>),
    /// An earlier run's trigger was present, naming this instant.
    Stamped(i64),
}

/// What a run has learned so far; forgotten when the process dies.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Mem {
    /// The Secret as last read.
    pub secret: Option<Object>,
    /// Holder of the claim: `Some(true)` ours.
    pub claimed: Option<bool>,
    /// Our claim (`ownership::Held`): its KV version and `claimed_at`.
    pub held: Option<(u8, u8)>,
    /// The fenced write to make once the claim is renewed.
    pub resume: Option<Pc>,
    /// The claim was renewed and the write it guards is next: the lease clock does not
    /// pass until it is made (the fence margin bounds that delay).
    pub renewed: bool,
    /// Passes through a bounded re-read-and-re-decide loop (`RACE_ATTEMPTS`).
    pub attempt: u8,
    /// Tries of the claim create in `ownership::claim` (its own bounded loop).
    pub claim_attempt: u8,
    /// A create was refused with 403 (push remembers it across its loop).
    pub denied: bool,
    /// The write step's result, for marking: version and Vault's fingerprint.
    pub handed: Option<(u8, Option<String>, Out)>,
    /// The fingerprint of the Secret's data as marking last saw it.
    pub current: Option<String>,
    /// Rotation: the record read, its KV version, the path's metadata read this pass, the
    /// claim being written (with the record version it replaces), the value generated.
    pub record: Option<(Record, u8)>,
    pub metadata: Option<Meta>,
    pub previous: Option<(Record, u8)>,
    /// `previous` came from a superseding foreign write (rebase on the current version), not
    /// from a takeover (which keeps the claim's base).
    pub rebase: bool,
    pub claim: Option<(Record, u8)>,
    pub base: u8,
    pub value: Val,
    /// Rotation done: its outcome, the consumers' stamp (the record's `completed_at`) and
    /// the version written.
    pub rotated: Option<(&'static str, u8, u8)>,
    /// How `refresh_consumer` left the ExternalSecret, for `SyncPoll`.
    pub since: Option<Since>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Actor {
    pub pc: Pc,
    pub mem: Mem,
    /// `Steps`: 0 while in `write-vault`, 1 in `mark-consumed`. `Batch`: the Secret being
    /// handed over (0 the first, 1 the second).
    pub phase: u8,
    /// `Batch`: how the first Secret ended in this run (and, after the run, in the last).
    pub first: Option<Ended>,
    /// Runs that ended (success or refusal); the actor is done after the scenario's count.
    pub runs: u8,
    /// Argo retries after exit 75, bounded.
    pub retries: u8,
    pub last: Option<Ended>,
    /// The uid the plan saw (`--expect-uid`).
    pub plan_uid: Option<u8>,
    /// Rotation values generated so far, so each generation is a distinct value.
    pub generated: u8,
    /// The disturbance epoch (faults, GitOps, operators) the current run started in, and
    /// the one the last finished run started in: an actor is done only when its last run
    /// started after the last disturbance.
    pub run_epoch: u8,
    pub last_epoch: u8,
}

/// Exit-75 retries Argo gives a step in the model.
pub const RETRIES: u8 = 2;
/// Passes through rotate's read-decide loop before exit 75 (the real `STEP_LIMIT` is 45;
/// polls that see nothing change are one transition here, see `Pc::RotateWaiting`).
pub const ROTATE_PASSES: u8 = 4;
/// The model's `--claim-lease`, in clock units.
pub const LEASE: i64 = 1;

/// Everything the decisions need that is not state.
pub struct Ctx {
    pub key: FingerprintKey,
    pub allowed: AllowedPaths,
    pub rule: Rule,
    /// Every rotation refreshes the consumers (`--refresh externalsecret/ns/es --restart
    /// deployment/ns/app`, a non-zero `--sync-timeout`).
    pub consumers: bool,
    /// The real keyed fingerprint of every value on every path (fingerprints are bound to
    /// their target), computed once (HMAC in a debug build of secops is the model's most
    /// expensive step otherwise); the last of each path is that of no data.
    fingerprints: Vec<Vec<Fingerprint>>,
}

impl Ctx {
    pub fn new(rule: Rule, consumers: bool) -> Self {
        let key = FingerprintKey::new(vec![7; FingerprintKey::LEN]).expect("a 32-byte key");
        let fingerprints = PATHS
            .iter()
            .map(|path| {
                let mut all: Vec<_> = (0..=Val::MAX)
                    .map(|v| fingerprint(&key, path, Some(v)))
                    .collect();
                all.push(fingerprint(&key, path, None));
                all
            })
            .collect();
        Self {
            key,
            allowed: AllowedPaths::new(vec![]).expect("the default allowed paths"),
            rule,
            consumers,
            fingerprints,
        }
    }

    fn of_path(&self, path: &str) -> &[Fingerprint] {
        let index = PATHS
            .iter()
            .position(|p| *p == path)
            .expect("a modelled path");
        &self.fingerprints[index]
    }

    /// `FingerprintKey::fingerprint` of a Secret holding `val`, for `path`.
    pub fn fp(&self, path: &str, val: Val) -> Fingerprint {
        self.of_path(path)[usize::from(val)].clone()
    }

    /// The fingerprint of a Secret's data, which may have been stripped.
    pub fn fp_of(&self, path: &str, val: Option<Val>) -> Fingerprint {
        let all = self.of_path(path);
        match val {
            Some(val) => all[usize::from(val)].clone(),
            None => all[all.len() - 1].clone(),
        }
    }
}

/// A trace of the calls made, kept only when a counterexample is printed.
pub struct Log(pub Option<Vec<String>>);

impl Log {
    pub(crate) fn say(&mut self, line: impl FnOnce() -> String) {
        if let Some(lines) = &mut self.0 {
            lines.push(line());
        }
    }
}

/// One actor's next transition: the call at `actor.pc`, applied to `world`, and what the
/// command decides from its answer.
pub struct Step<'a> {
    pub ctx: &'a Ctx,
    pub index: usize,
    pub command: Command,
    pub world: &'a mut World,
    pub actor: &'a mut Actor,
    pub log: &'a mut Log,
    pub epoch: u8,
}

/// The first hex digits of a fingerprint, to tell values apart in a printed trace.
fn short(fp: &Fingerprint) -> String {
    fp.as_str()["hmac-sha256:".len()..]
        .chars()
        .take(6)
        .collect()
}

fn provenance_of(custom: &Meta) -> Option<Provenance> {
    Provenance::from_metadata(custom)
}

impl Step<'_> {
    /// Runs the transition.
    pub fn run(mut self) {
        let batch_goes_on = matches!(self.command, Command::Batch { .. }) && self.actor.phase == 1;
        if self.actor.pc == Pc::Start && !batch_goes_on {
            self.actor.run_epoch = self.epoch;
        }
        match self.command {
            Command::Steps { .. } | Command::Handover { .. } | Command::Batch { .. } => {
                self.handover()
            }
            Command::Push { .. } => self.push(),
            Command::Rotate { .. } => self.rotate(),
        }
    }

    fn secret_index(&self) -> u8 {
        match self.command {
            Command::Batch { first, second } => match self.actor.phase {
                0 => first,
                _ => second,
            },
            command => command.secret().expect("a command with a Secret"),
        }
    }

    fn source(&self) -> SourceSecret {
        source_secret(
            self.secret_index(),
            self.actor.mem.secret.as_ref().expect("the Secret was read"),
        )
    }

    fn owner(&self) -> Owner {
        let object = self.actor.mem.secret.as_ref().expect("the Secret was read");
        Owner {
            internal: matches!(self.command, Command::Push { .. }),
            name: self.secret_index(),
            uid: object.uid,
        }
    }

    fn path(&self) -> String {
        match self.command {
            Command::Rotate { path, .. } => PATHS[usize::from(path)].to_string(),
            _ => self
                .actor
                .mem
                .secret
                .as_ref()
                .and_then(|s| s.annotations.get(names::VAULT_PATH).cloned())
                .expect("the target was read"),
        }
    }

    /// The fingerprint of `val` on this actor's path.
    fn fp(&self, val: Val) -> Fingerprint {
        self.ctx.fp(&self.path(), val)
    }

    fn own_fingerprint(&self) -> Fingerprint {
        self.fp(self
            .actor
            .mem
            .secret
            .as_ref()
            .and_then(|s| s.val)
            .expect("a Secret with data"))
    }

    /// The run is over: Argo re-runs the command until the scenario's count of runs.
    fn end(&mut self, ended: Ended) {
        self.log.say(|| format!("    => {ended:?}"));
        let actor = &mut *self.actor;
        let temporary = |e: Option<Ended>| e == Some(Ended::Temporary);
        match self.command {
            // The workflow's mark-consumed step follows a write-vault step that succeeded.
            Command::Steps { .. } if actor.phase == 0 && matches!(ended, Ended::Done(_)) => {
                actor.phase = 1
            }
            // The batch goes on with its second Secret, whatever became of the first.
            Command::Batch { .. } if actor.phase == 0 => {
                actor.phase = 1;
                actor.first = Some(ended);
            }
            // The batch exits 75 when either Secret did: Argo runs it again.
            Command::Batch { .. }
                if (temporary(Some(ended)) || temporary(actor.first))
                    && actor.retries < RETRIES =>
            {
                self.log.say(|| "    => the batch exits 75".into());
                actor.phase = 0;
                actor.retries += 1;
            }
            _ => {
                actor.phase = 0;
                actor.runs += 1;
                actor.retries = 0;
                actor.last = Some(ended);
                actor.last_epoch = actor.run_epoch;
            }
        }
        actor.pc = Pc::Start;
        actor.mem = Mem::default();
    }

    fn fail(&mut self, error: Error) {
        if error.is_transient() {
            self.log
                .say(|| format!("    => exit 75 ({})", error.kind()));
            // A batch goes on with its other Secret and exits 75 at the end (`end`).
            if self.actor.retries < RETRIES && !matches!(self.command, Command::Batch { .. }) {
                self.actor.retries += 1;
                self.actor.pc = Pc::Start;
                self.actor.mem = Mem::default();
                return;
            }
            return self.end(Ended::Temporary);
        }
        self.end(Ended::Refused(error.kind()))
    }

    fn refuse(&mut self, kind: &'static str) {
        self.end(Ended::Refused(kind))
    }

    fn lost_race(&mut self) {
        self.fail(Error::LostRace {
            action: "model".into(),
        })
    }

    fn get_secret(&mut self) -> Option<Object> {
        let name = self.secret_index();
        let got = self.world.kube.get(name);
        self.log.say(|| match &got {
            Some(o) => format!(
                "k8s GET {} -> uid {} rv {} data {:?}{}",
                crate::world::SECRET_NAMES[usize::from(name)],
                o.uid,
                o.resource_version,
                o.val,
                match o.labels.get(names::STATE_LABEL) {
                    Some(state) => format!(" ({state})"),
                    None => String::new(),
                }
            ),
            None => "k8s GET -> 404".into(),
        });
        got
    }

    // ----- ownership::claim ---------------------------------------------------------------

    fn claim_write(&mut self, then: Then) {
        let owner = self.owner();
        let at = claim_path(&self.path());
        let answer =
            self.world
                .vault
                .write(&at, Data::Claim(owner, self.world.now), 0, Writer::Protocol);
        self.log
            .say(|| format!("vault PUT {MOUNT}/{at} cas=0 -> {answer:?}"));
        match answer {
            CasWrite::Written { version } => {
                self.actor.mem.held = Some((version, self.world.now));
                self.claimed(then, true)
            }
            CasWrite::Mismatch => {
                self.actor.pc = Pc::ClaimRead {
                    then,
                    denied: false,
                }
            }
            CasWrite::Denied => self.actor.pc = Pc::ClaimRead { then, denied: true },
        }
    }

    fn claim_read(&mut self, then: Then, denied: bool) {
        let owner = self.owner();
        let at = claim_path(&self.path());
        let held = self.world.vault.read(&at, None);
        self.log.say(|| {
            format!(
                "vault GET {MOUNT}/{at} -> {:?}",
                held.as_ref().map(|h| &h.1)
            )
        });
        match held {
            Some((version, Data::Claim(holder, claimed_at))) => {
                let held = domain_claim(&holder, claimed_at).held_for(
                    &owner.origin(),
                    &owner.uid(),
                    claim_seconds(self.world.now),
                    CLAIM_LEASE_SECONDS,
                );
                self.log.say(|| format!("    claim decides {held:?}"));
                match held {
                    ClaimHeld::Ours => {
                        self.actor.mem.held = Some((version, claimed_at));
                        self.claimed(then, true)
                    }
                    ClaimHeld::Theirs => self.claimed(then, false),
                    ClaimHeld::Leased { .. } if self.ctx.rule == Rule::NoLease => {
                        self.actor.pc = Pc::ClaimLive { then, version }
                    }
                    ClaimHeld::Leased { until } => {
                        self.actor.pc = Pc::ClaimLeased {
                            until: u8::try_from(until / CLAIM_LEASE_SECONDS)
                                .expect("a small clock"),
                        }
                    }
                    ClaimHeld::TakeOver => self.actor.pc = Pc::ClaimLive { then, version },
                }
            }
            Some(_) => self.refuse("refused"),
            None if denied => self.refuse("forbidden"),
            None => {
                self.actor.mem.claim_attempt += 1;
                match usize::from(self.actor.mem.claim_attempt) < RACE_ATTEMPTS {
                    true => self.actor.pc = Pc::ClaimWrite { then },
                    false => self.lost_race(),
                }
            }
        }
    }

    /// `require_live`: only the object that now bears the name takes its old claim over.
    fn claim_live(&mut self, then: Then, version: u8) {
        let live = self.get_secret().map(|o| o.uid);
        match live == Some(self.owner().uid) {
            true => self.actor.pc = Pc::ClaimTakeOver { then, version },
            false => self.refuse("not-found"),
        }
    }

    fn claim_take_over(&mut self, then: Then, version: u8) {
        let owner = self.owner();
        let at = claim_path(&self.path());
        let answer = self.world.vault.write(
            &at,
            Data::Claim(owner, self.world.now),
            version,
            Writer::Protocol,
        );
        self.log
            .say(|| format!("vault PUT {MOUNT}/{at} cas={version} (takeover) -> {answer:?}"));
        match answer {
            CasWrite::Written { version } => {
                self.actor.mem.held = Some((version, self.world.now));
                self.claimed(then, true)
            }
            // Another run took it over: the claim loop goes round again.
            CasWrite::Mismatch => {
                self.actor.mem.claim_attempt += 1;
                match usize::from(self.actor.mem.claim_attempt) < RACE_ATTEMPTS {
                    true => self.actor.pc = Pc::ClaimWrite { then },
                    false => self.lost_race(),
                }
            }
            CasWrite::Denied => self.refuse("forbidden"),
        }
    }

    /// `ClaimHeld::Leased`: the run exits 75 and Argo's retry comes after the lease. The
    /// wait does not use up the model's retries (Argo's backoff, or the next sync, outlasts
    /// the lease): it ends in a takeover unless the holder renewed meanwhile, which it does
    /// at most once per fenced write, so waits are bounded.
    fn claim_leased(&mut self, until: u8) {
        self.world.now = self.world.now.max(until);
        self.world.second += 1;
        self.log.say(|| {
            format!(
                "    => exit 75 until the claim's lease runs out (now {})",
                self.world.now
            )
        });
        if matches!(self.command, Command::Batch { .. }) {
            return self.fail(Error::temporary(
                "claim",
                "the claim's lease has not run out",
            ));
        }
        self.actor.pc = Pc::Start;
        self.actor.mem = Mem::default();
    }

    /// `ownership::fence` before the claim-reliant write at `pc`: whether to make it now.
    /// The check and the write are one transition: the fence margin covers the delay between
    /// them (a request's latency plus clock skew), which the model takes as bounded by it.
    fn fenced(&mut self, pc: Pc) -> bool {
        self.actor.mem.renewed = false;
        let Some((_, claimed_at)) = self.actor.mem.held else {
            return true;
        };
        if self.ctx.rule == Rule::NoLease {
            return true;
        }
        let claim = domain_claim(&self.owner(), claimed_at);
        if claim.within_fence(claim_seconds(self.world.now), CLAIM_LEASE_SECONDS) {
            return true;
        }
        self.log.say(|| {
            format!(
                "    past the claim's fence (claimed at {claimed_at}, now {})",
                self.world.now
            )
        });
        self.actor.mem.resume = Some(pc);
        self.actor.pc = Pc::ClaimRenew;
        false
    }

    fn claim_renew(&mut self) {
        let (version, _) = self.actor.mem.held.expect("a held claim");
        let owner = self.owner();
        let at = claim_path(&self.path());
        let now = self.world.now;
        let answer =
            self.world
                .vault
                .write(&at, Data::Claim(owner, now), version, Writer::Protocol);
        self.log
            .say(|| format!("vault PUT {MOUNT}/{at} cas={version} (renewal) -> {answer:?}"));
        match answer {
            CasWrite::Written { version } => {
                self.actor.mem.held = Some((version, now));
                self.actor.mem.renewed = true;
                self.actor.pc = self.actor.mem.resume.take().expect("the fenced write");
            }
            // Taken over since: exit 75, the retry re-decides.
            CasWrite::Mismatch => self.lost_race(),
            CasWrite::Denied => self.refuse("forbidden"),
        }
    }

    fn claimed(&mut self, then: Then, ours: bool) {
        self.actor.mem.claimed = Some(ours);
        self.actor.mem.claim_attempt = 0;
        match then {
            Then::HandoverWrite if ours => self.actor.pc = Pc::HandoverData,
            Then::HandoverWrite => self.actor.pc = Pc::HandoverReadMetadata { denied: false },
            _ if !ours => self.refuse("not-owned"),
            Then::Readopt { version } => self.actor.pc = Pc::ReadoptPatch { version },
            Then::PushRecord { version } => {
                self.actor.pc = Pc::PushRecordMetadata {
                    version,
                    adopted: false,
                    outcome: Out(Outcome::Unchanged),
                }
            }
            Then::PushWrite { cas, adopted } => self.actor.pc = Pc::PushData { cas, adopted },
        }
    }

    fn record(&self, version: u8, adopted: bool) -> MetadataPatch {
        let source = self.source();
        let internal = matches!(self.command, Command::Push { .. });
        let origin: Origin = match internal {
            true => source.push_origin(),
            false => source.bootstrap_origin(),
        };
        OwnershipRecord {
            origin: &origin,
            uid: &source.uid,
            version: version.into(),
            fingerprint: &self.own_fingerprint(),
            base64_keys: &Default::default(),
            k8s_type: &source.secret_type,
            at: "t",
            at_key: (!internal).then_some(meta::HANDOVER_AT),
            adopted,
            // The handover records the source's `secops.dev/max-age` (none in the model);
            // a push records none.
            max_age: match internal {
                true => None,
                false => source.max_age().expect("a valid max-age annotation"),
            },
        }
        .changes()
    }

    fn patch_metadata(&mut self, patch: &MetadataPatch) {
        let path = self.path();
        self.world.vault.patch_metadata(&path, patch);
        self.log.say(|| {
            let origin = patch.get(meta::ORIGIN).cloned().flatten();
            let uid = patch.get(meta::ORIGIN_UID).cloned().flatten();
            let version = patch.get(meta::ORIGIN_VERSION).cloned().flatten();
            format!(
                "vault PATCH {MOUNT}/{path} metadata origin={origin:?} uid={uid:?} version={version:?}"
            )
        });
    }

    // ----- write-vault, mark-consumed, handover ------------------------------------------

    fn handover(&mut self) {
        match self.actor.pc {
            Pc::Start => self.handover_start(),
            Pc::ClaimWrite { then } => self.claim_write(then),
            Pc::ClaimRead { then, denied } => self.claim_read(then, denied),
            Pc::ClaimLive { then, version } => self.claim_live(then, version),
            Pc::ClaimTakeOver { then, version } => self.claim_take_over(then, version),
            Pc::ClaimLeased { until } => self.claim_leased(until),
            Pc::ClaimRenew => self.claim_renew(),
            Pc::ReadoptPatch { version } => {
                if self.fenced(Pc::ReadoptPatch { version }) {
                    self.readopt_patch(version)
                }
            }
            Pc::MarkStale { authority, version } => self.mark_stale(authority, version),
            Pc::MarkRecord => {
                // `record_consumption`, in every mode, before the Secret is marked.
                let path = self.path();
                let patch = MetadataPatch::from([(
                    meta::CONSUMED_MODE.to_string(),
                    Some(ConsumeMode::Annotate.as_str().to_string()),
                )]);
                self.world.vault.patch_metadata(&path, &patch);
                self.log
                    .say(|| format!("vault PATCH {MOUNT}/{path} metadata consumed-mode=annotate"));
                self.actor.pc = Pc::MarkPatch;
            }
            Pc::HandoverData => {
                if !self.fenced(Pc::HandoverData) {
                    return;
                }
                let owner = self.owner();
                let path = self.path();
                let val = self.actor.mem.secret.as_ref().and_then(|s| s.val);
                let answer = self.world.vault.write(
                    &path,
                    Data::Secret(val.expect("data")),
                    0,
                    Writer::Handover(owner),
                );
                self.log
                    .say(|| format!("vault PUT {MOUNT}/{path} cas=0 data {val:?} -> {answer:?}"));
                match answer {
                    CasWrite::Written { version } => {
                        self.actor.pc = Pc::HandoverRecord {
                            version,
                            outcome: Out(Outcome::Written),
                        }
                    }
                    CasWrite::Mismatch => {
                        self.actor.pc = Pc::HandoverReadMetadata { denied: false }
                    }
                    CasWrite::Denied => self.actor.pc = Pc::HandoverReadMetadata { denied: true },
                }
            }
            Pc::HandoverRecord { version, outcome } => {
                if !self.fenced(Pc::HandoverRecord { version, outcome }) {
                    return;
                }
                let patch = self.record(version, false);
                self.patch_metadata(&patch);
                let fp = self.own_fingerprint().as_str().to_string();
                self.handed(version, Some(fp), outcome.0);
            }
            Pc::HandoverReadMetadata { denied } => self.handover_read_metadata(denied),
            Pc::HandoverReadData => {
                let path = self.path();
                let current = self.world.vault.read(&path, None);
                self.log
                    .say(|| format!("vault GET {MOUNT}/{path} -> {current:?}"));
                let Some((version, data)) = current else {
                    return self.next_handover_attempt();
                };
                let held = data.secret().map(|v| self.fp(v));
                if held.as_ref() != Some(&self.own_fingerprint()) {
                    return self.refuse("not-owned");
                }
                self.actor.pc = Pc::HandoverRecord {
                    version,
                    outcome: Out(Outcome::Unchanged),
                };
            }
            Pc::HandedOverBefore => {
                let path = self.path();
                let custom = self.world.vault.read_metadata(&path).map(|m| m.1);
                self.log
                    .say(|| format!("vault GET {MOUNT}/{path} metadata"));
                let provenance = custom.as_ref().and_then(provenance_of);
                let source = self.source();
                match judge_existing(provenance.as_ref(), &source.bootstrap_origin(), &source.uid) {
                    ExistingPath::AlreadyHandedOver { .. } => self.end(Ended::Done("unchanged")),
                    ExistingPath::Conflict { .. } => self.refuse("not-owned"),
                    ExistingPath::CompareData => self.refuse("refused"),
                }
            }
            Pc::MarkReadMetadata => {
                let path = self.path();
                let custom = self.world.vault.read_metadata(&path).map(|m| m.1);
                self.log
                    .say(|| format!("vault GET {MOUNT}/{path} metadata"));
                let provenance = custom.as_ref().and_then(provenance_of);
                let source = self.source();
                match check_consumable(provenance.as_ref(), &source.bootstrap_origin(), &source.uid)
                {
                    ConsumeCheck::Verify { version, recorded } => {
                        self.actor.mem.handed = Some((
                            version as u8,
                            recorded.map(|f| f.as_str().to_string()),
                            Out(Outcome::Unchanged),
                        ));
                        self.actor.pc = Pc::MarkReadVersion {
                            version: version as u8,
                        };
                    }
                    ConsumeCheck::NotHandedOver => self.refuse("not-handed-over"),
                    ConsumeCheck::Conflict { .. } => self.refuse("not-owned"),
                }
            }
            Pc::MarkReadVersion { version } => {
                let path = self.path();
                let held = self.world.vault.read(&path, Some(version));
                self.log
                    .say(|| format!("vault GET {MOUNT}/{path}?version={version} -> {held:?}"));
                let recorded = self.actor.mem.handed.as_ref().and_then(|h| h.1.clone());
                let vault_fp = match held.and_then(|(_, d)| d.secret()) {
                    Some(val) => Some(self.fp(val).as_str().to_string()),
                    None => recorded,
                };
                let Some(vault_fp) = vault_fp else {
                    return self.refuse("refused");
                };
                self.actor.mem.handed = Some((version, Some(vault_fp), Out(Outcome::Unchanged)));
                self.actor.mem.current = Some(self.own_fingerprint().as_str().to_string());
                self.mark_decide();
            }
            Pc::MarkPatch => self.mark_patch(),
            Pc::MarkReread => {
                let Some(fresh) = self.get_secret() else {
                    return self.refuse("not-found");
                };
                let original = self.actor.mem.secret.as_ref().map(|s| s.uid);
                if Some(fresh.uid) != original {
                    return self.refuse("not-found");
                }
                let current = self.ctx.fp_of(&self.path(), fresh.val);
                self.actor.mem.current = Some(current.as_str().to_string());
                self.actor.mem.secret = Some(fresh);
                self.mark_decide();
            }
            pc => unreachable!("{pc:?} in a handover"),
        }
    }

    /// `write-vault` / `mark-consumed` / `handover`: GET the Secret and check it.
    fn handover_start(&mut self) {
        let Some(object) = self.get_secret() else {
            return self.refuse("not-found");
        };
        self.actor.mem.secret = Some(object);
        let source = self.source();
        let steps = matches!(self.command, Command::Steps { .. });
        let expect = self.actor.plan_uid.map(uid_text);
        let checks = || -> Result<(), Error> {
            if steps {
                source.require_class(Class::Bootstrap)?;
                source.require_uid(expect.as_deref())?;
            }
            source.target(MOUNT, &self.ctx.allowed, None)?;
            Ok(())
        };
        if let Err(error) = checks() {
            return self.fail(error);
        }
        let marking = steps && self.actor.phase == 1;
        match (source.is_consumed(), marking, steps) {
            (true, true, _) => self.end(Ended::Done("already-consumed")),
            (true, false, true) => self.actor.pc = Pc::HandedOverBefore,
            (true, false, false) => self.end(Ended::Done("already-consumed")),
            (false, true, _) => self.actor.pc = Pc::MarkReadMetadata,
            (false, false, _) => {
                if let Err(error) = source.require_data() {
                    return self.fail(error);
                }
                self.start_handover_attempt();
            }
        }
    }

    fn start_handover_attempt(&mut self) {
        match self.ctx.rule {
            Rule::Current | Rule::Instants | Rule::NoLease => {
                self.actor.pc = Pc::ClaimWrite {
                    then: Then::HandoverWrite,
                }
            }
            // Before the fix there was no claim: every writer went straight to `cas=0`.
            Rule::PreFix => {
                self.actor.mem.claimed = Some(true);
                self.actor.pc = Pc::HandoverData;
            }
        }
    }

    /// The next pass of `write_to_vault`'s loop: the claim was decided once, before it.
    fn next_handover_attempt(&mut self) {
        self.actor.mem.attempt += 1;
        if usize::from(self.actor.mem.attempt) >= RACE_ATTEMPTS {
            return self.lost_race();
        }
        self.actor.pc = match self.actor.mem.claimed {
            Some(true) => Pc::HandoverData,
            _ => Pc::HandoverReadMetadata { denied: false },
        };
    }

    fn handover_read_metadata(&mut self, denied: bool) {
        let path = self.path();
        let metadata = self.world.vault.read_metadata(&path);
        self.log.say(|| {
            format!(
                "vault GET {MOUNT}/{path} metadata -> {:?}",
                metadata.as_ref().map(|m| (m.0, m.1.get(meta::ORIGIN)))
            )
        });
        let claimed = self.actor.mem.claimed;
        let Some((_, custom)) = metadata else {
            return match claimed {
                Some(false) => self.refuse("not-owned"),
                _ if denied => self.refuse("forbidden"),
                _ => self.next_handover_attempt(),
            };
        };
        let provenance = provenance_of(&custom);
        let source = self.source();
        let origin = source.bootstrap_origin();
        let current = self.own_fingerprint();
        match judge_recreated(provenance.as_ref(), &origin, &source.uid, Some(&current)) {
            Some(Recreation::Readopt { version, .. }) => {
                self.actor.mem.metadata = Some(custom);
                self.actor.pc = Pc::ClaimWrite {
                    then: Then::Readopt {
                        version: version as u8,
                    },
                };
                return;
            }
            Some(Recreation::Stale {
                authority_uid,
                version,
            }) => {
                let authority = authority_uid
                    .strip_prefix("uid-")
                    .and_then(|u| u.parse().ok())
                    .expect("a modelled uid");
                let object = self.actor.mem.secret.as_ref().expect("the Secret");
                let marked = object.labels.get(names::STATE_LABEL).map(String::as_str)
                    == Some(names::STATE_STALE)
                    && object.annotations.get(names::AUTHORITY_UID) == Some(&authority_uid);
                return match marked {
                    true => self.refuse("stale"),
                    false => {
                        self.actor.pc = Pc::MarkStale {
                            authority,
                            version: version as u8,
                        }
                    }
                };
            }
            None => {}
        }
        match judge_existing(provenance.as_ref(), &origin, &source.uid) {
            ExistingPath::AlreadyHandedOver { version } => {
                let recorded = provenance
                    .and_then(|p| p.origin_fingerprint)
                    .map(|f| f.as_str().to_string());
                self.handed(version as u8, recorded, Outcome::Unchanged)
            }
            ExistingPath::Conflict { .. } => self.refuse("not-owned"),
            // Data without provenance is ours to finish only under our claim.
            ExistingPath::CompareData if claimed == Some(false) => self.refuse("not-owned"),
            ExistingPath::CompareData => self.actor.pc = Pc::HandoverReadData,
        }
    }

    /// `readopt`: under the claim (taken over from the old uid if need be), provenance moves
    /// to the re-created Secret; the data is not written.
    fn readopt_patch(&mut self, version: u8) {
        let custom = self.actor.mem.metadata.clone().expect("the metadata read");
        let provenance = provenance_of(&custom).expect("provenance");
        let recorded = provenance
            .origin_fingerprint
            .as_ref()
            .map(|f| f.as_str().to_string());
        let uid = self.owner().uid();
        let patch = readoption_changes(&custom, &provenance, &uid, "t");
        self.patch_metadata(&patch);
        self.handed(version, recorded, Outcome::Readopted);
    }

    /// `mark_stale`: the conditional patch; whatever its answer, the run is refused.
    fn mark_stale(&mut self, authority: u8, version: u8) {
        let object = self.actor.mem.secret.clone().expect("the Secret");
        let patch = ObjectPatch {
            labels: Meta::from([(
                names::STATE_LABEL.to_string(),
                names::STATE_STALE.to_string(),
            )]),
            annotations: Meta::from([
                (names::AUTHORITY_UID.to_string(), uid_text(authority)),
                (names::VAULT_VERSION.to_string(), version.to_string()),
            ]),
            strip_data: false,
        };
        let name = self.secret_index();
        let answer = self.world.kube.patch(name, object.resource_version, &patch);
        self.log.say(|| {
            format!(
                "k8s PATCH {} rv={} stale (authority uid {authority}) -> {answer:?}",
                crate::world::SECRET_NAMES[usize::from(name)],
                object.resource_version
            )
        });
        self.refuse("stale")
    }

    /// The write step is over: `write-vault` ends; `handover` goes on to `mark`.
    fn handed(&mut self, version: u8, vault_fp: Option<String>, outcome: Outcome) {
        match self.command {
            Command::Steps { .. } => self.end(Ended::Done(outcome.as_str())),
            _ => {
                self.actor.mem.handed = Some((version, vault_fp, Out(outcome)));
                self.actor.mem.current = Some(self.own_fingerprint().as_str().to_string());
                self.mark_decide();
            }
        }
    }

    /// `mark`'s checks before its conditional write (no remote call).
    fn mark_decide(&mut self) {
        let source = self.source();
        let (_, vault_fp, written) = self.actor.mem.handed.clone().expect("handed");
        let outcome = |marked| combine(written.0, marked).as_str();
        if source.is_consumed() {
            let marked = outcome(Outcome::AlreadyConsumed);
            return self.end(Ended::Done(marked));
        }
        if vault_fp.is_some() && vault_fp != self.actor.mem.current {
            return self.refuse("drifted");
        }
        self.actor.pc = Pc::MarkRecord;
    }

    fn mark_patch(&mut self) {
        let (version, _, written) = self.actor.mem.handed.clone().expect("handed");
        let object = self.actor.mem.secret.clone().expect("the Secret");
        let patch = ObjectPatch {
            labels: Meta::from([(
                names::STATE_LABEL.to_string(),
                names::STATE_CONSUMED.to_string(),
            )]),
            annotations: Meta::from([
                (names::VAULT_VERSION.to_string(), version.to_string()),
                (
                    names::FINGERPRINT.to_string(),
                    self.actor.mem.current.clone().expect("current"),
                ),
                (
                    names::CONSUMED_MODE.to_string(),
                    ConsumeMode::Annotate.as_str().to_string(),
                ),
            ]),
            strip_data: false,
        };
        let name = self.secret_index();
        let answer = self.world.kube.patch(name, object.resource_version, &patch);
        self.log.say(|| {
            format!(
                "k8s PATCH {} rv={} consumed (vault version {version}) -> {answer:?}",
                crate::world::SECRET_NAMES[usize::from(name)],
                object.resource_version
            )
        });
        match answer {
            Conditional::Applied => {
                let marked = combine(written.0, Outcome::Consumed).as_str();
                self.end(Ended::Done(marked))
            }
            Conditional::Gone => self.refuse("not-found"),
            Conditional::Conflict => {
                self.actor.mem.attempt += 1;
                match usize::from(self.actor.mem.attempt) < RACE_ATTEMPTS {
                    true => self.actor.pc = Pc::MarkReread,
                    false => self.lost_race(),
                }
            }
        }
    }

    // ----- push-secret ---------------------------------------------------------------------

    fn push(&mut self) {
        match self.actor.pc {
            Pc::Start => {
                let Some(object) = self.get_secret() else {
                    return self.refuse("not-found");
                };
                self.actor.mem.secret = Some(object);
                let source = self.source();
                let checks = || -> Result<(), Error> {
                    source.require_class(Class::Internal)?;
                    source.target(MOUNT, &self.ctx.allowed, None)?;
                    source.require_data()
                };
                if let Err(error) = checks() {
                    return self.fail(error);
                }
                self.actor.pc = Pc::PushReadMetadata;
            }
            Pc::PushReadMetadata => {
                let path = self.path();
                let metadata = self.world.vault.read_metadata(&path);
                self.log.say(|| {
                    format!(
                        "vault GET {MOUNT}/{path} metadata -> {:?}",
                        metadata.as_ref().map(|m| (m.0, m.1.get(meta::ORIGIN)))
                    )
                });
                let fp = self.own_fingerprint();
                let source = self.source();
                let step = match &metadata {
                    None => self.judge(None, Ownership::Unowned, &fp),
                    Some((current, custom)) => {
                        let provenance = provenance_of(custom);
                        let ownership =
                            Ownership::of(provenance.as_ref(), &source.push_origin(), &source.uid);
                        self.judge(Some((*current).into()), ownership, &fp)
                    }
                };
                self.push_step(step);
            }
            Pc::PushReadData { current } => {
                let path = self.path();
                let held = self.world.vault.read(&path, None);
                self.log
                    .say(|| format!("vault GET {MOUNT}/{path} -> {held:?}"));
                let held = held.and_then(|(v, d)| d.secret().map(|val| (v, self.fp(val))));
                let fp = self.own_fingerprint();
                let held = held.as_ref().map(|(v, f)| (u64::from(*v), f));
                let step = match self.ctx.rule {
                    Rule::Current | Rule::Instants | Rule::NoLease => {
                        judge_unowned(current.into(), held, &fp, false)
                    }
                    Rule::PreFix => prefix::judge_unowned(current.into(), held, &fp),
                };
                self.push_step(step);
            }
            Pc::ClaimWrite { then } => self.claim_write(then),
            Pc::ClaimRead { then, denied } => self.claim_read(then, denied),
            Pc::ClaimLive { then, version } => self.claim_live(then, version),
            Pc::ClaimTakeOver { then, version } => self.claim_take_over(then, version),
            Pc::ClaimLeased { until } => self.claim_leased(until),
            Pc::ClaimRenew => self.claim_renew(),
            Pc::PushData { cas, adopted } => {
                if !self.fenced(Pc::PushData { cas, adopted }) {
                    return;
                }
                let owner = self.owner();
                let path = self.path();
                let val = self.actor.mem.secret.as_ref().and_then(|s| s.val);
                let answer = self.world.vault.write(
                    &path,
                    Data::Secret(val.expect("data")),
                    cas,
                    Writer::Push(owner),
                );
                self.log.say(|| {
                    format!("vault PUT {MOUNT}/{path} cas={cas} data {val:?} -> {answer:?}")
                });
                match answer {
                    CasWrite::Written { version } => {
                        self.actor.pc = Pc::PushRecordMetadata {
                            version,
                            adopted,
                            outcome: Out(Outcome::Pushed),
                        }
                    }
                    CasWrite::Denied if self.actor.mem.denied => self.refuse("forbidden"),
                    CasWrite::Denied | CasWrite::Mismatch => {
                        self.actor.mem.denied |= answer == CasWrite::Denied;
                        self.next_push_attempt();
                    }
                }
            }
            Pc::PushRecordMetadata {
                version,
                adopted,
                outcome,
            } => {
                if !self.fenced(Pc::PushRecordMetadata {
                    version,
                    adopted,
                    outcome,
                }) {
                    return;
                }
                let patch = self.record(version, adopted);
                self.patch_metadata(&patch);
                self.annotate_check(version, outcome.0);
            }
            Pc::Annotate { version, outcome } => {
                let object = self.actor.mem.secret.clone().expect("the source");
                let patch = ObjectPatch {
                    annotations: Meta::from([
                        (names::VAULT_VERSION.to_string(), version.to_string()),
                        (
                            names::FINGERPRINT.to_string(),
                            self.own_fingerprint().as_str().to_string(),
                        ),
                    ]),
                    ..Default::default()
                };
                let name = self.secret_index();
                let answer = self.world.kube.patch(name, object.resource_version, &patch);
                self.log.say(|| {
                    format!(
                        "k8s PATCH {} rv={} pushed (vault version {version}) -> {answer:?}",
                        crate::world::SECRET_NAMES[usize::from(name)],
                        object.resource_version
                    )
                });
                match answer {
                    Conditional::Applied => self.end(Ended::Done(outcome.0.as_str())),
                    Conditional::Gone => self.refuse("not-found"),
                    Conditional::Conflict => {
                        self.actor.mem.attempt += 1;
                        match usize::from(self.actor.mem.attempt) < RACE_ATTEMPTS {
                            true => self.actor.pc = Pc::AnnotateReread { version, outcome },
                            false => self.lost_race(),
                        }
                    }
                }
            }
            Pc::AnnotateReread { version, outcome } => {
                let Some(fresh) = self.get_secret() else {
                    return self.refuse("not-found");
                };
                let object = self.actor.mem.secret.as_ref().expect("the source");
                let fresh_fp = self.ctx.fp_of(&self.path(), fresh.val);
                if fresh.uid != object.uid || fresh_fp != self.own_fingerprint() {
                    // The source changed during the push: the next push publishes it.
                    return self.end(Ended::Done(outcome.0.as_str()));
                }
                self.actor.mem.secret = Some(fresh);
                self.annotate_check(version, outcome.0);
            }
            pc => unreachable!("{pc:?} in a push"),
        }
    }

    fn judge(
        &self,
        current: Option<u64>,
        ownership: Ownership,
        fingerprint: &Fingerprint,
    ) -> PushStep {
        match self.ctx.rule {
            Rule::Current | Rule::Instants | Rule::NoLease => {
                judge(current, ownership, fingerprint)
            }
            Rule::PreFix => prefix::judge(current, ownership, fingerprint),
        }
    }

    fn push_step(&mut self, step: PushStep) {
        let fp = self.own_fingerprint();
        self.log
            .say(|| format!("    push decides {step:?} (own data {})", short(&fp)));
        let prefix = self.ctx.rule == Rule::PreFix;
        // `push_one` holds a claim for one pass of its loop, when the step takes one.
        self.actor.mem.held = None;
        match step {
            PushStep::Unchanged { version } => {
                self.annotate_check(version as u8, Outcome::Unchanged)
            }
            PushStep::Conflict { .. } => self.refuse("not-owned"),
            PushStep::NotAdopted => self.refuse("not-adopted"),
            PushStep::Record { version } if prefix => {
                self.actor.pc = Pc::PushRecordMetadata {
                    version: version as u8,
                    adopted: false,
                    outcome: Out(Outcome::Unchanged),
                }
            }
            PushStep::Record { version } => {
                self.actor.pc = Pc::ClaimWrite {
                    then: Then::PushRecord {
                        version: version as u8,
                    },
                }
            }
            PushStep::Write {
                cas,
                claim,
                adopted,
            } => {
                let (cas, then) = (
                    cas as u8,
                    Then::PushWrite {
                        cas: cas as u8,
                        adopted,
                    },
                );
                self.actor.pc = match claim && !prefix {
                    true => Pc::ClaimWrite { then },
                    false => Pc::PushData { cas, adopted },
                }
            }
            PushStep::CompareData { current_version } => {
                self.actor.pc = Pc::PushReadData {
                    current: current_version as u8,
                }
            }
        }
    }

    fn next_push_attempt(&mut self) {
        self.actor.mem.attempt += 1;
        match usize::from(self.actor.mem.attempt) < RACE_ATTEMPTS {
            true => self.actor.pc = Pc::PushReadMetadata,
            false => self.lost_race(),
        }
    }

    /// `annotate_source`'s check before its conditional write (no remote call).
    fn annotate_check(&mut self, version: u8, outcome: Outcome) {
        let object = self.actor.mem.secret.as_ref().expect("the source");
        let fp = self.own_fingerprint();
        if object.annotations.get(names::VAULT_VERSION) == Some(&version.to_string())
            && object
                .annotations
                .get(names::FINGERPRINT)
                .map(String::as_str)
                == Some(fp.as_str())
        {
            return self.end(Ended::Done(outcome.as_str()));
        }
        self.actor.mem.attempt = 0;
        self.actor.pc = Pc::Annotate {
            version,
            outcome: Out(outcome),
        };
    }

    // ----- rotate --------------------------------------------------------------------------

    fn rotation_id(&self) -> (String, u8) {
        let Command::Rotate { id, .. } = self.command else {
            unreachable!()
        };
        (record_path(&format!("id{id}")), id)
    }

    fn rotate(&mut self) {
        let (record_at, id) = self.rotation_id();
        let path = self.path();
        match self.actor.pc {
            Pc::Start => {
                let held = self.world.vault.read(&record_at, None);
                self.log
                    .say(|| format!("vault GET {MOUNT}/{record_at} -> {held:?}"));
                self.actor.mem.record = match held {
                    Some((version, Data::Record(record))) => Some((record, version)),
                    _ => None,
                };
                self.actor.pc = Pc::RotateReadMetadata;
            }
            Pc::RotateReadMetadata => {
                let metadata = self.world.vault.read_metadata(&path);
                self.log.say(|| {
                    format!(
                        "vault GET {MOUNT}/{path} metadata -> {:?}",
                        metadata.as_ref().map(|m| (m.0, m.1.get(meta::ORIGIN)))
                    )
                });
                let Some((current, custom)) = metadata else {
                    return self.refuse("not-found");
                };
                // `rotate::check_authority` (private), without `--adopt`.
                match provenance_of(&custom) {
                    Some(Provenance {
                        origin: Origin::Push(_),
                        ..
                    }) => return self.refuse("not-owned"),
                    Some(_) => {}
                    None if custom.contains_key(meta::ADOPTED_AT) => {}
                    None => return self.refuse("not-adopted"),
                }
                self.actor.mem.metadata = Some(custom);
                let record = self.actor.mem.record.clone();
                let domain = record.as_ref().map(|(r, _)| r.to_domain(self.ctx));
                let Command::Rotate { path: target, .. } = self.command else {
                    unreachable!()
                };
                let step = decide(
                    domain.as_ref(),
                    &crate::world::parameters(target),
                    current.into(),
                    self.world.now.into(),
                    LEASE,
                );
                self.log.say(|| format!("    rotate decides {step:?}"));
                match step {
                    RotationStep::OtherIntent => self.refuse("refused"),
                    RotationStep::AlreadyRotated => {
                        // `stamp_metadata`, unless the metadata names this rotation or a later one.
                        let (done, _) = record.expect("AlreadyRotated comes from a record");
                        let version = done.version.expect("a completed record has a version");
                        self.actor.mem.rotated = Some((
                            "already-rotated",
                            done.completed_at.expect("a completed record has a stamp"),
                            version,
                        ));
                        if stamped(&self.actor.mem.metadata, version) {
                            self.rotated()
                        } else {
                            self.actor.pc = Pc::RotateStamp { version };
                        }
                    }
                    RotationStep::Wait => {
                        self.actor.pc = Pc::RotateWaiting {
                            now: self.world.now,
                        }
                    }
                    RotationStep::CheckWritten { version } => {
                        self.actor.pc = Pc::RotateReadWritten {
                            version: version as u8,
                        }
                    }
                    RotationStep::Claim => {
                        self.actor.mem.previous = None;
                        self.actor.pc = Pc::RotateReadCurrent;
                    }
                    RotationStep::TakeOver => {
                        self.actor.mem.previous = record;
                        self.actor.mem.rebase = false;
                        self.actor.pc = Pc::RotateReadCurrent;
                    }
                }
            }
            Pc::RotateWaiting { now } => {
                let held = self.world.vault.read(&record_at, None);
                let seen = self.actor.mem.record.clone();
                self.log
                    .say(|| format!("vault GET {MOUNT}/{record_at} (polling) -> {held:?}"));
                if now == self.world.now && held.as_ref().map(|h| h.0) == seen.as_ref().map(|s| s.1)
                {
                    // Nothing moved: the run (or Argo's retries of it) polls until the lease
                    // has run out. The model's clock is what makes a claim stale.
                    let claimed_at = seen.map_or(0, |(r, _)| r.claimed_at);
                    self.world.now = self.world.now.max(claimed_at + LEASE as u8);
                    self.world.second += 1;
                    self.log
                        .say(|| format!("    ... the lease runs out (now {})", self.world.now));
                }
                self.next_rotate_pass();
            }
            Pc::RotateReadWritten { version } => {
                let held = self.world.vault.read(&path, Some(version));
                self.log
                    .say(|| format!("vault GET {MOUNT}/{path}?version={version} -> {held:?}"));
                let record = self.actor.mem.record.clone().expect("a record");
                let ours = held.and_then(|(_, d)| d.secret()).is_some_and(|val| {
                    record.0.to_domain(self.ctx).intents.contains(&self.fp(val))
                });
                if ours {
                    // This id wrote `version`; its run died (or is about to finish).
                    self.actor.mem.claim = Some(record);
                    self.actor.pc = Pc::RotateComplete { version };
                } else {
                    self.actor.mem.previous = Some(record);
                    self.actor.mem.rebase = true;
                    self.actor.pc = Pc::RotateReadCurrent;
                }
            }
            Pc::RotateReadCurrent => {
                let current = self.world.vault.read(&path, None);
                self.log
                    .say(|| format!("vault GET {MOUNT}/{path} -> {current:?}"));
                let Some((base, _)) = current else {
                    return self.refuse("not-found");
                };
                // `claim_and_write`: a takeover keeps the claim's base; a write since then (by
                // the claimer taken over) sends the run back to decide again.
                let moved = self.actor.mem.previous.as_ref().is_some_and(|(record, _)| {
                    !self.actor.mem.rebase && record.base_version != base
                });
                if moved {
                    self.actor.mem.previous = None;
                    return self.next_rotate_pass();
                }
                let value = 100 + 10 * self.index as u8 + self.actor.generated;
                self.actor.generated += 1;
                let (mut intents, cas) = match self.actor.mem.previous.take() {
                    Some((record, version)) => (record.intents, version),
                    None => (Vec::new(), 0),
                };
                intents.push(value);
                let Command::Rotate { path: target, .. } = self.command else {
                    unreachable!()
                };
                let claim = Record {
                    path: target,
                    base_version: base,
                    intents,
                    claimed_at: self.world.now,
                    version: None,
                    completed_at: None,
                };
                self.actor.mem.claim = Some((claim, cas));
                self.actor.mem.base = base;
                self.actor.mem.value = value;
                self.actor.pc = Pc::RotateClaim;
            }
            Pc::RotateClaim => {
                let (mut claim, cas) = self.actor.mem.claim.clone().expect("a claim");
                // `claim_and_write` reads the clock right before this write.
                claim.claimed_at = self.world.now;
                let answer = self.world.vault.write(
                    &record_at,
                    Data::Record(claim.clone()),
                    cas,
                    Writer::Protocol,
                );
                self.log.say(|| {
                    format!("vault PUT {MOUNT}/{record_at} cas={cas} {claim:?} -> {answer:?}")
                });
                match answer {
                    CasWrite::Written { version } => {
                        self.actor.mem.claim = Some((claim, version));
                        self.actor.pc = Pc::RotateData;
                    }
                    _ => self.next_rotate_pass(),
                }
            }
            Pc::RotateData => {
                let (base, value) = (self.actor.mem.base, self.actor.mem.value);
                let answer = self.world.vault.write(
                    &path,
                    Data::Secret(value),
                    base,
                    Writer::Rotation { id },
                );
                self.log.say(|| {
                    format!("vault PUT {MOUNT}/{path} cas={base} data {value} -> {answer:?}")
                });
                match answer {
                    CasWrite::Written { version } => self.actor.pc = Pc::RotateComplete { version },
                    _ => self.next_rotate_pass(),
                }
            }
            Pc::RotateComplete { version } => {
                let (claim, claim_version) = self.actor.mem.claim.clone().expect("a claim");
                let done = Record {
                    version: Some(version),
                    completed_at: Some(self.world.second),
                    ..claim
                };
                let answer = self.world.vault.write(
                    &record_at,
                    Data::Record(done),
                    claim_version,
                    Writer::Protocol,
                );
                self.log.say(|| {
                    format!("vault PUT {MOUNT}/{record_at} cas={claim_version} done at {version} -> {answer:?}")
                });
                match answer {
                    CasWrite::Written { .. } => {
                        self.actor.mem.rotated = Some(("rotated", self.world.second, version));
                        if self.world.distinct_seconds {
                            self.world.second += 1;
                        }
                        // `finish` → `stamp_metadata`, unless already stamped.
                        if stamped(&self.actor.mem.metadata, version) {
                            self.rotated()
                        } else {
                            self.actor.pc = Pc::RotateStamp { version };
                        }
                    }
                    // Another run changed the record first: re-read and re-decide (a run
                    // that took over recognises this write by its intent).
                    CasWrite::Mismatch | CasWrite::Denied => self.next_rotate_pass(),
                }
            }
            Pc::RotateStamp { version } => {
                let mut custom = self.actor.mem.metadata.clone().expect("metadata");
                custom.insert(meta::ROTATION_ID.into(), format!("id{id}"));
                custom.insert(meta::ROTATED_AT.into(), "t".into());
                custom.insert(meta::ROTATION_VERSION.into(), version.to_string());
                // The model's values are text: the version written has no base64 keys.
                record_base64_keys(&mut custom, version.into(), &Default::default());
                self.world.vault.write_metadata(&path, custom);
                self.log.say(|| {
                    format!("vault POST {MOUNT}/{path} metadata (full) rotation id{id} v{version}")
                });
                self.rotated();
            }
            Pc::ConsumerGet { consumer } => self.consumer_get(consumer),
            Pc::ConsumerPatch {
                consumer,
                resource_version,
            } => self.consumer_patch(consumer, resource_version),
            Pc::SyncPoll => self.sync_poll(),
            pc => unreachable!("{pc:?} in a rotation"),
        }
    }

    /// `rotate_kv` is over: `refresh_consumers`, when there are consumers and a stamp.
    fn rotated(&mut self) {
        let (outcome, ..) = self.actor.mem.rotated.expect("a rotation outcome");
        match self.ctx.consumers {
            true => {
                self.actor.mem.attempt = 0;
                self.actor.pc = Pc::ConsumerGet {
                    consumer: EXTERNAL_SECRET,
                };
            }
            false => self.end(Ended::Done(outcome)),
        }
    }

    fn stamp(&self) -> u8 {
        match self.ctx.rule {
            Rule::Current | Rule::Instants | Rule::NoLease => {
                self.actor.mem.rotated.expect("a rotation outcome").1
            }
            Rule::PreFix => self.world.second,
        }
    }

    /// What `refresh_consumer` refreshes for: this run's rotation.
    fn refresh_for(&self) -> RefreshFor {
        let (_, _, version) = self.actor.mem.rotated.expect("a rotation outcome");
        RefreshFor {
            id: format!("id{}", self.rotation_id().1),
            stamp: stamp_seconds(self.stamp()),
            target: format!("{MOUNT}/{}", self.path()),
            version: Some(version.into()),
        }
    }

    /// The trigger this run writes: before finding 3's fix, the instant alone.
    fn trigger(&self) -> Trigger {
        Trigger {
            stamp: self.stamp(),
            id: match self.ctx.rule {
                Rule::Current | Rule::NoLease => Some(self.rotation_id().1),
                Rule::PreFix | Rule::Instants => None,
            },
        }
    }

    /// `Kube::refresh_consumer`: GET, and leave a consumer already refreshed for this
    /// rotation (or, before the fix, one stamped at or after its instant).
    fn consumer_get(&mut self, consumer: u8) {
        let object = self.world.kube.consumers[usize::from(consumer)].clone();
        let present = object.trigger.map(|t| t.text(consumer));
        let ours = self.refresh_for();
        let already = match self.ctx.rule {
            Rule::Current | Rule::NoLease => {
                let rotated = object.rotated.map(|v| format!("{}@{v}", ours.target));
                is_refreshed(present.as_deref(), rotated.as_deref(), &ours)
            }
            Rule::PreFix | Rule::Instants => {
                let now = stamp_seconds(self.world.second);
                is_stamped(present.as_deref(), ours.stamp, now)
            }
        };
        self.log.say(|| {
            format!(
                "k8s GET {} -> rv {} trigger {present:?} version {:?}: refreshed for {}@{:?}? {already}",
                CONSUMERS[usize::from(consumer)],
                object.resource_version,
                object.rotated,
                ours.id,
                ours.version,
            )
        });
        if consumer == EXTERNAL_SECRET {
            self.actor.mem.since = Some(match already {
                true => Since::Stamped(
                    present
                        .as_deref()
                        .and_then(trigger_instant)
                        .unwrap_or(ours.stamp),
                ),
                false => Since::Patched(object.handled),
            });
        }
        match already {
            true => self.consumer_done(consumer),
            false => {
                self.actor.pc = Pc::ConsumerPatch {
                    consumer,
                    resource_version: object.resource_version,
                }
            }
        }
    }

    fn consumer_patch(&mut self, consumer: u8, resource_version: u8) {
        let (_, id) = self.rotation_id();
        let trigger = self.trigger();
        let (_, _, version) = self.actor.mem.rotated.expect("a rotation outcome");
        let rotated = matches!(self.ctx.rule, Rule::Current | Rule::NoLease).then_some(version);
        let answer =
            self.world
                .kube
                .stamp_consumer(consumer, resource_version, trigger, rotated, id);
        self.log.say(|| {
            format!(
                "k8s PATCH {} rv={resource_version} trigger {:?} version {rotated:?} -> {answer:?}",
                CONSUMERS[usize::from(consumer)],
                trigger.text(consumer)
            )
        });
        match answer {
            Conditional::Applied => self.consumer_done(consumer),
            Conditional::Gone => unreachable!("consumers are never deleted in the model"),
            Conditional::Conflict => {
                self.actor.mem.attempt += 1;
                match usize::from(self.actor.mem.attempt) < RACE_ATTEMPTS {
                    true => self.actor.pc = Pc::ConsumerGet { consumer },
                    false => self.lost_race(),
                }
            }
        }
    }

    /// ExternalSecrets first, then the wait for their sync, then the workloads.
    fn consumer_done(&mut self, consumer: u8) {
        self.actor.mem.attempt = 0;
        match consumer {
            EXTERNAL_SECRET => self.actor.pc = Pc::SyncPoll,
            _ => {
                let (outcome, ..) = self.actor.mem.rotated.expect("a rotation outcome");
                self.end(Ended::Done(outcome))
            }
        }
    }

    fn sync_poll(&mut self) {
        let es = &self.world.kube.consumers[usize::from(EXTERNAL_SECRET)];
        let refresh_time = es
            .refresh_time
            .map(|t| secops::clock::rfc3339(timestamp(stamp_seconds(t))));
        // ESO's `syncedResourceVersion` changes with each sync of changed metadata: the
        // trigger it last acted on stands in for it.
        let synced = es.handled.map(|t| t.text(EXTERNAL_SECRET));
        let sync = match self.ctx.rule {
            Rule::Current | Rule::NoLease => {
                let since = match self
                    .actor
                    .mem
                    .since
                    .clone()
                    .expect("the ExternalSecret read")
                {
                    Since::Patched(before) => SyncSince::Patched {
                        synced_before: before.map(|t| t.text(EXTERNAL_SECRET)),
                    },
                    Since::Stamped(stamp) => SyncSince::Stamped(stamp),
                };
                judge_sync_since(
                    refresh_time.as_deref(),
                    synced.as_deref(),
                    Some("True"),
                    None,
                    &since,
                )
            }
            Rule::PreFix | Rule::Instants => judge_sync(
                refresh_time.as_deref(),
                Some("True"),
                None,
                stamp_seconds(self.stamp()),
            ),
        };
        self.log.say(|| {
            format!(
                "k8s GET {} status refreshTime {refresh_time:?} -> {sync:?}",
                CONSUMERS[usize::from(EXTERNAL_SECRET)]
            )
        });
        match sync {
            Sync::Synced => {
                self.actor.pc = Pc::ConsumerGet {
                    consumer: DEPLOYMENT,
                }
            }
            // Not synced within --sync-timeout: the workloads are not restarted, exit 75.
            Sync::Pending | Sync::Failing(_) => self.fail(Error::temporary(
                "wait for the ExternalSecret to sync",
                "not synced within --sync-timeout",
            )),
        }
    }

    fn next_rotate_pass(&mut self) {
        self.actor.mem.attempt += 1;
        self.actor.mem.record = None;
        match self.actor.mem.attempt < ROTATE_PASSES {
            true => self.actor.pc = Pc::Start,
            false => self.fail(Error::temporary(
                "rotate",
                "another run holds this rotation id",
            )),
        }
    }
}

/// `stamp_metadata`'s check: the metadata read already names this rotation or a later one.
fn stamped(metadata: &Option<Meta>, version: u8) -> bool {
    metadata
        .as_ref()
        .and_then(|custom| custom.get(meta::ROTATION_VERSION))
        .and_then(|v| v.parse::<u8>().ok())
        .is_some_and(|v| v >= version)
}

/// Whether an actor holds a live claim: written, and its data write or completion not yet
/// made (a crash ends it: the restarted run no longer holds it).
pub fn holds_live_claim(pc: Pc) -> bool {
    matches!(pc, Pc::RotateData | Pc::RotateComplete { .. })
}

/// Whether the call at `pc` changes the world (a lost response matters only there).
pub fn is_write(pc: Pc) -> bool {
    matches!(
        pc,
        Pc::ClaimWrite { .. }
            | Pc::ClaimTakeOver { .. }
            | Pc::ClaimRenew
            | Pc::ReadoptPatch { .. }
            | Pc::MarkStale { .. }
            | Pc::MarkRecord
            | Pc::HandoverData
            | Pc::HandoverRecord { .. }
            | Pc::MarkPatch
            | Pc::PushData { .. }
            | Pc::PushRecordMetadata { .. }
            | Pc::Annotate { .. }
            | Pc::RotateClaim
            | Pc::RotateData
            | Pc::RotateComplete { .. }
            | Pc::RotateStamp { .. }
            | Pc::ConsumerPatch { .. }
    )
}
