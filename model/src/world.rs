//! The outside world as the protocol sees it: Vault KV v2 and the Kubernetes Secrets, each
//! remote call one function. Only what the protocol can observe or rely on is modelled:
//!
//! - KV v2: numbered versions, `cas` on data writes (`cas=0` creates only), soft delete,
//!   `custom_metadata` changed by a merge PATCH or a full write, both *without* any check
//!   (as in HashiCorp Vault), and an optional create-only policy under which a `cas=0` write
//!   to an existing path is answered 403 (Vault checks `update` before `cas`).
//! - Kubernetes: Secrets with a uid (new on re-create) and a resourceVersion; every patch
//!   and delete is conditional on the resourceVersion read. The rotated path's consumers: an
//!   ExternalSecret (ESO acts on each new `force-sync`) and a Deployment.
//!
//! Claims (`secops/claims/<path>`) and rotation records (`secops/rotation-ids/<id>`) are
//! ordinary KV paths here, as they are in Vault: the same `cas` rules arbitrate them.
//!
//! Each version also carries a ghost field, who wrote it, which no actor reads: the
//! invariants use it to say what "the origin wrote" means.

use std::collections::BTreeMap;

use secops::domain::bootstrap::{SourceSecret, Target};
use secops::domain::claim::Claim;
use secops::domain::fingerprint::{Fingerprint, FingerprintKey};
use secops::domain::names::{self, Class};
use secops::domain::provenance::{MetadataPatch, Origin};
use secops::domain::rotation::{self, Parameters, RotationRecord};
use secops::domain::SecretRef;
use secops::secret::{SecretBytes, SecretData};

/// A secret value. Values are small numbers: Git's value of a bootstrap Secret, an
/// operator's value of an internal one, or one a rotation generated.
pub type Val = u8;
/// `custom_metadata`, with the real key names (`secops-origin`, ...).
pub type Meta = BTreeMap<String, String>;

pub const NAMESPACE: &str = "ns";
pub const MOUNT: &str = "secret";
/// Kubernetes Secret names, by index.
pub const SECRET_NAMES: [&str; 4] = ["a", "b", "x", "y"];
/// Vault paths (inside the mount), by index; allowed by the default `{namespace}/**`.
pub const PATHS: [&str; 2] = ["ns/p0", "ns/p1"];

/// Who a Secret is: its class, name and uid. With the class this is an origin plus a uid,
/// the pair provenance and claims name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner {
    pub internal: bool,
    pub name: u8,
    pub uid: u8,
}

impl Owner {
    pub fn reference(&self) -> SecretRef {
        SecretRef::new(NAMESPACE, SECRET_NAMES[usize::from(self.name)])
    }

    pub fn origin(&self) -> Origin {
        match self.internal {
            false => Origin::Bootstrap(self.reference()),
            true => Origin::Push(self.reference()),
        }
    }

    pub fn uid(&self) -> String {
        uid_text(self.uid)
    }
}

pub fn uid_text(uid: u8) -> String {
    format!("uid-{uid}")
}

/// Ghost: who wrote a version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Writer {
    /// Present before the actors start (a finished handover).
    Seed(Owner),
    Handover(Owner),
    Push(Owner),
    Rotation {
        id: u8,
    },
    /// A claim or rotation record.
    Protocol,
}

/// A rotation record as held in its KV path, `secops/rotation-ids/<id>` (the real type has
/// no `Hash`). The intent it records is the path rotated (the modelled `rotate` always
/// regenerates the one key with one generator, see [`parameters`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Record {
    /// The path index the id was used for (`Parameters::target`).
    pub path: u8,
    pub base_version: u8,
    pub intents: Vec<Val>,
    pub claimed_at: u8,
    /// The version written and the completion instant (the consumers' stamp, see
    /// [`World::second`]), set together when the record is completed.
    pub version: Option<u8>,
    pub completed_at: Option<u8>,
}

impl Record {
    pub fn to_domain(&self, ctx: &crate::actors::Ctx) -> RotationRecord {
        let path = PATHS[usize::from(self.path)];
        RotationRecord {
            base_version: self.base_version.into(),
            intents: self.intents.iter().map(|v| ctx.fp(path, *v)).collect(),
            claimed_at: self.claimed_at.into(),
            version: self.version.map(u64::from),
            completed_at: self.completed_at.map(stamp_seconds),
            ..RotationRecord::claim(parameters(self.path), self.claimed_at.into())
        }
    }
}

/// The generator the modelled `rotate` names (its values are the model's own, see
/// `Pc::RotateReadCurrent`).
pub const GENERATOR: &str = "model";

/// The intent of `rotate --path P --key value --generator model`, as `Plan::parameters`
/// builds it.
pub fn parameters(path: u8) -> Parameters {
    Parameters {
        target: rotation::Target::Kv(PATHS[usize::from(path)].to_string()),
        keys: vec![KEY.to_string()],
        generator: GENERATOR.to_string(),
    }
}

/// What a KV version holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Data {
    Secret(Val),
    /// A path claim: its holder and `claimed_at`, on the lease clock (`World::now`).
    Claim(Owner, u8),
    Record(Record),
}

impl Data {
    pub fn secret(&self) -> Option<Val> {
        match self {
            Data::Secret(v) => Some(*v),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Version {
    pub data: Data,
    pub deleted: bool,
    pub writer: Writer,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KvPath {
    /// Version `n` is at index `n - 1`.
    pub versions: Vec<Version>,
    pub custom: Meta,
}

impl KvPath {
    pub fn current_version(&self) -> u8 {
        self.versions.len() as u8
    }

    pub fn version(&self, n: u8) -> Option<&Version> {
        n.checked_sub(1)
            .and_then(|i| self.versions.get(usize::from(i)))
    }
}

/// The answer to a `cas` write, as `secops::vault::CasWrite` gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CasWrite {
    Written { version: u8 },
    Mismatch,
    Denied,
}

/// The answer to a conditional Kubernetes write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conditional {
    Applied,
    Conflict,
    Gone,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Vault {
    /// Keyed by the path inside the mount, claims and rotation records included.
    pub paths: BTreeMap<String, KvPath>,
    /// The token holds a create-only policy on data and claim paths: a `cas=0` write to an
    /// existing path is a 403, not a CAS mismatch.
    pub create_only: bool,
}

impl Vault {
    pub fn path(&self, path: &str) -> Option<&KvPath> {
        self.paths.get(path)
    }

    /// `PUT data` with `cas`.
    pub fn write(&mut self, path: &str, data: Data, cas: u8, writer: Writer) -> CasWrite {
        let create_only = self.create_only;
        let entry = self.paths.entry(path.to_string()).or_default();
        let current = entry.current_version();
        if cas != current {
            return match create_only && cas == 0 {
                true => CasWrite::Denied,
                false => CasWrite::Mismatch,
            };
        }
        entry.versions.push(Version {
            data,
            deleted: false,
            writer,
        });
        CasWrite::Written {
            version: current + 1,
        }
    }

    /// `GET data` (current, or one version); a soft-deleted version reads as absent.
    pub fn read(&self, path: &str, version: Option<u8>) -> Option<(u8, Data)> {
        let entry = self.paths.get(path)?;
        let n = version.unwrap_or(entry.current_version());
        let held = entry.version(n)?;
        (!held.deleted).then(|| (n, held.data.clone()))
    }

    /// `GET metadata`: the current version and `custom_metadata`; `None` when nothing exists.
    pub fn read_metadata(&self, path: &str) -> Option<(u8, Meta)> {
        let entry = self.paths.get(path)?;
        Some((entry.current_version(), entry.custom.clone()))
    }

    /// `PATCH metadata` (JSON merge patch), no check-and-set.
    pub fn patch_metadata(&mut self, path: &str, patch: &MetadataPatch) {
        let custom = &mut self.paths.entry(path.to_string()).or_default().custom;
        for (key, value) in patch {
            match value {
                Some(value) => custom.insert(key.clone(), value.clone()),
                None => custom.remove(key),
            };
        }
    }

    /// `POST metadata` with `custom_metadata`: replaces all of it, no check-and-set.
    pub fn write_metadata(&mut self, path: &str, custom: Meta) {
        self.paths.entry(path.to_string()).or_default().custom = custom;
    }

    /// `DELETE data`: soft-deletes the current version (an operator's action).
    pub fn soft_delete(&mut self, path: &str) {
        if let Some(last) = self
            .paths
            .get_mut(path)
            .and_then(|entry| entry.versions.last_mut())
        {
            last.deleted = true;
        }
    }
}

/// A Kubernetes Secret.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Object {
    pub uid: u8,
    pub resource_version: u8,
    /// `None`: no data (stripped).
    pub val: Option<Val>,
    pub labels: Meta,
    pub annotations: Meta,
}

/// The consumers of the rotated path, by index: an ExternalSecret, and a Deployment whose
/// pods read the Kubernetes Secret ESO writes from it.
pub const CONSUMERS: [&str; 2] = ["externalsecret/ns/es", "deployment/ns/app"];
pub const EXTERNAL_SECRET: u8 = 0;
pub const DEPLOYMENT: u8 = 1;

/// Unix seconds of the model's instant `second` ([`World::second`]).
pub fn stamp_seconds(second: u8) -> i64 {
    1_800_000_000 + i64::from(second)
}

/// A consumer as `refresh_consumer` and `external_secret_sync` see it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Consumer {
    pub resource_version: u8,
    /// The trigger written: the ExternalSecret's `force-sync` annotation, the Deployment's
    /// pod-template `secops.dev/restartedAt`; and the version recorded with it
    /// (`secops.dev/rotated-version`, of `ns/p0`).
    pub trigger: Option<Trigger>,
    pub rotated: Option<u8>,
    /// ExternalSecret: ESO's `status.refreshTime` (its sync is always `Ready=True` here),
    /// and the `force-sync` value it last acted on.
    pub refresh_time: Option<u8>,
    pub handled: Option<Trigger>,
    /// Ghost: the Vault version served: the one ESO last copied (ExternalSecret), the one
    /// the pods read at their last restart (Deployment).
    pub serves: u8,
    /// Ghost: every stamp written, with the rotation id whose run wrote it.
    pub stamped_by: Vec<(u8, u8)>,
}

impl Consumer {
    pub fn new(resource_version: u8, serves: u8) -> Self {
        Consumer {
            resource_version,
            trigger: None,
            rotated: None,
            refresh_time: None,
            handled: None,
            serves,
            stamped_by: Vec::new(),
        }
    }
}

pub fn timestamp(seconds: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(seconds).expect("a modelled instant is in range")
}

/// A consumer's trigger: the instant (a record's `completed_at`) and the rotation id that
/// names it (`None`: the trigger before model finding 3's fix, the instant alone).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Trigger {
    pub stamp: u8,
    pub id: Option<u8>,
}

impl Trigger {
    /// As the consumer holds it (`Kube::refresh_consumer`): `RefreshFor::trigger`, or
    /// before the fix Unix seconds in `force-sync`, RFC 3339 in `restartedAt`.
    pub fn text(&self, consumer: u8) -> String {
        let seconds = stamp_seconds(self.stamp);
        match (self.id, consumer) {
            (Some(id), _) => format!("{}/id{id}", secops::clock::rfc3339(timestamp(seconds))),
            (None, EXTERNAL_SECRET) => seconds.to_string(),
            (None, _) => secops::clock::rfc3339(timestamp(seconds)),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Kube {
    /// Keyed by the index into [`SECRET_NAMES`].
    pub secrets: BTreeMap<u8, Object>,
    /// Indexed by [`CONSUMERS`]; empty unless the scenario's rotations have consumers.
    pub consumers: Vec<Consumer>,
    pub last_resource_version: u8,
    pub last_uid: u8,
}

/// A patch of a Secret: labels and annotations merged, data optionally emptied.
#[derive(Clone, Debug, Default)]
pub struct ObjectPatch {
    pub labels: Meta,
    pub annotations: Meta,
    pub strip_data: bool,
}

impl Kube {
    pub fn get(&self, name: u8) -> Option<Object> {
        self.secrets.get(&name).cloned()
    }

    fn bump(&mut self) -> u8 {
        self.last_resource_version += 1;
        self.last_resource_version
    }

    /// A merge patch conditional on the resourceVersion read.
    pub fn patch(&mut self, name: u8, resource_version: u8, patch: &ObjectPatch) -> Conditional {
        let next = self.last_resource_version + 1;
        let Some(object) = self.secrets.get_mut(&name) else {
            return Conditional::Gone;
        };
        if object.resource_version != resource_version {
            return Conditional::Conflict;
        }
        object.labels.extend(patch.labels.clone());
        object.annotations.extend(patch.annotations.clone());
        if patch.strip_data {
            object.val = None;
        }
        object.resource_version = next;
        self.last_resource_version = next;
        Conditional::Applied
    }

    /// Creates (or, GitOps, re-creates) a Secret: a new uid, a new resourceVersion.
    pub fn create(&mut self, name: u8, internal: bool, path: u8, val: Val) {
        self.last_uid += 1;
        let uid = self.last_uid;
        let resource_version = self.bump();
        let class = match internal {
            true => Class::Internal,
            false => Class::Bootstrap,
        };
        self.secrets.insert(
            name,
            Object {
                uid,
                resource_version,
                val: Some(val),
                labels: Meta::from([(
                    names::CLASS_LABEL.to_string(),
                    class.label_value().to_string(),
                )]),
                annotations: Meta::from([(
                    names::VAULT_PATH.to_string(),
                    PATHS[usize::from(path)].to_string(),
                )]),
            },
        );
    }

    /// GitOps self-heal: Git's data back, and a new resourceVersion; the labels and
    /// annotations secops added are left (a client-side apply does not prune them).
    pub fn reapply(&mut self, name: u8, val: Val) {
        let next = self.bump();
        if let Some(object) = self.secrets.get_mut(&name) {
            object.val = Some(val);
            object.resource_version = next;
        }
    }

    pub fn delete(&mut self, name: u8) {
        self.secrets.remove(&name);
    }

    pub fn add_consumers(&mut self, serves: u8) {
        for _ in CONSUMERS {
            let resource_version = self.bump();
            self.consumers.push(Consumer::new(resource_version, serves));
        }
    }

    /// A merge patch of a consumer's stamp, conditional on the resourceVersion read, by a
    /// run of rotation `id`. A restarted Deployment's pods read what ESO last synced.
    pub fn stamp_consumer(
        &mut self,
        index: u8,
        resource_version: u8,
        trigger: Trigger,
        rotated: Option<u8>,
        id: u8,
    ) -> Conditional {
        let next = self.last_resource_version + 1;
        let synced = self.consumers[usize::from(EXTERNAL_SECRET)].serves;
        let consumer = &mut self.consumers[usize::from(index)];
        if consumer.resource_version != resource_version {
            return Conditional::Conflict;
        }
        consumer.trigger = Some(trigger);
        consumer.rotated = rotated;
        consumer.stamped_by.push((id, trigger.stamp));
        if index == DEPLOYMENT {
            consumer.serves = synced;
        }
        consumer.resource_version = next;
        self.last_resource_version = next;
        Conditional::Applied
    }

    /// ESO has a `force-sync` it has not acted on.
    pub fn eso_pending(&self) -> bool {
        self.consumers
            .get(usize::from(EXTERNAL_SECRET))
            .is_some_and(|es| es.trigger != es.handled)
    }

    /// ESO acts on the `force-sync` at `now`: copies Vault's current `version` and writes
    /// its status (a new resourceVersion).
    pub fn eso_sync(&mut self, now: u8, version: u8) {
        let next = self.bump();
        let es = &mut self.consumers[usize::from(EXTERNAL_SECRET)];
        es.handled = es.trigger;
        es.refresh_time = Some(now);
        es.serves = version;
        es.resource_version = next;
    }
}

/// The one data key every modelled Secret holds.
const KEY: &str = "value";

pub fn secret_data(val: Option<Val>) -> SecretData {
    let mut data = SecretData::new();
    if let Some(val) = val {
        data.insert(KEY.into(), SecretBytes::new(vec![val]));
    }
    data
}

/// The real keyed fingerprint of a Secret's data (`None`: stripped) written to `path`,
/// under the model's fingerprint key.
pub fn fingerprint(key: &FingerprintKey, path: &str, val: Option<Val>) -> Fingerprint {
    let target = Target {
        mount: MOUNT.to_string(),
        path: path.to_string(),
    };
    key.fingerprint(&target, &secret_data(val))
}

/// The Secret as the commands see it, built from the modelled object.
pub fn source_secret(name: u8, object: &Object) -> SourceSecret {
    SourceSecret {
        reference: SecretRef::new(NAMESPACE, SECRET_NAMES[usize::from(name)]),
        uid: uid_text(object.uid),
        resource_version: object.resource_version.to_string(),
        labels: object.labels.clone(),
        annotations: object.annotations.clone(),
        secret_type: "Opaque".into(),
        data: secret_data(object.val),
    }
}

/// The model's `--path-claim-lease` in seconds: the lease clock (`World::now`) counts
/// leases, so a claim is within its fence only in the lease unit it was written in.
pub const CLAIM_LEASE_SECONDS: i64 = 120;

/// A lease-clock reading in seconds, for the real claim decisions.
pub fn claim_seconds(now: u8) -> i64 {
    i64::from(now) * CLAIM_LEASE_SECONDS
}

/// A modelled claim as the real [`Claim`] type, to ask it who holds it.
pub fn domain_claim(owner: &Owner, claimed_at: u8) -> Claim {
    Claim {
        origin: owner.origin(),
        uid: owner.uid(),
        claimed_at: claim_seconds(claimed_at),
    }
}

/// The whole outside world.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct World {
    pub vault: Vault,
    pub kube: Kube,
    /// The clock rotation leases are judged by, in lease units.
    pub now: u8,
    /// The wall clock in seconds, for the consumers' stamps (a record's `completed_at`),
    /// ESO's refresh times and `is_stamped`'s "now". It moves with the lease clock and, when
    /// `distinct_seconds`, after each completed record; otherwise completions share a second.
    pub second: u8,
    pub distinct_seconds: bool,
}
