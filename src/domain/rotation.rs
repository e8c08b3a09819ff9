//! Exactly-once rotation. KV v2 `custom_metadata` has no check-and-set, so each rotation id
//! gets a record of its own, created with `cas=0` before the data write (or the engine's
//! rotate call) and completed after it; the data write itself is `cas` = the version read.
//! The record also holds what the id was used for, so one trigger has one effect. The
//! decision tables live here, with the per-version key lists of binary values.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use jiff::Timestamp;

use super::fingerprint::Fingerprint;
use super::names::{meta, RESERVED_PREFIX};
use super::provenance::{decode_key_list, encode_key_list};
use crate::error::{Error, Result};
use crate::secret::{SecretBytes, SecretData};

/// What a rotation acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A path inside the KV mount: secops writes the new values.
    Kv(String),
    /// A static role of a secrets engine (`MOUNT/rotate-role/ROLE`): Vault rotates it.
    StaticRole { mount: String, role: String },
}

impl Target {
    fn encode(&self) -> String {
        match self {
            Target::Kv(path) => format!("kv:{path}"),
            Target::StaticRole { mount, role } => format!("static-role:{mount}/{role}"),
        }
    }

    fn decode(text: &str) -> Option<Target> {
        if let Some(path) = text.strip_prefix("kv:") {
            return Some(Target::Kv(path.to_string()));
        }
        let (mount, role) = text.strip_prefix("static-role:")?.rsplit_once('/')?;
        Some(Target::StaticRole {
            mount: mount.to_string(),
            role: role.to_string(),
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Kv(path) => write!(f, "path {path}"),
            Target::StaticRole { mount, role } => write!(f, "static role {mount}/{role}"),
        }
    }
}

/// What one rotation id was used for. The same id with other parameters is another intent
/// and is refused: a trigger has one effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameters {
    pub target: Target,
    /// The keys regenerated (KV); empty for an engine rotation.
    pub keys: Vec<String>,
    /// The generator's name (KV); empty for an engine rotation.
    pub generator: String,
}

impl fmt::Display for Parameters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.target)?;
        if !self.keys.is_empty() {
            write!(f, ", keys {}", self.keys.join(","))?;
        }
        if !self.generator.is_empty() {
            write!(f, ", generator {}", self.generator)?;
        }
        Ok(())
    }
}

/// The record of one rotation id. Holds no secret: the intent, versions, times, the keyed
/// fingerprints of the data each claimer meant to write, and the keys that data stores
/// base64-encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationRecord {
    pub parameters: Parameters,
    /// KV: the version the claim read and writes on top of.
    pub base_version: u64,
    /// Engine: Vault's `last_vault_rotation` when the claim was made.
    pub base_rotation: Option<Timestamp>,
    pub intents: Vec<Fingerprint>,
    /// KV: the keys of the claimed write whose values are not UTF-8 (decode that version
    /// with these, not with the path's metadata, which describes an older one until done).
    pub base64_keys: BTreeSet<String>,
    pub claimed_at: i64,
    /// KV: the version the rotation wrote, once done.
    pub version: Option<u64>,
    /// Engine: Vault's `last_vault_rotation` that proves the rotation, once done.
    pub rotated: Option<Timestamp>,
    /// When the record was completed (Unix seconds): the consumers' stamp, identical on
    /// every run of the id, so a repeat never causes a second rollout or sync.
    pub completed_at: Option<i64>,
}

/// The record of a rotation id, one per id whatever it rotates.
pub fn record_path(rotation_id: &str) -> String {
    format!("{RESERVED_PREFIX}/rotation-ids/{rotation_id}")
}

/// Rotation ids become path segments: a workflow uid, an event id, a short name.
pub fn validate_rotation_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        && id != "."
        && id != "..";
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "--rotation-id {id:?}: use 1-128 letters, digits, '-', '_', '.', ':'"
        )))
    }
}

fn join<T: AsRef<str>>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|s| s.as_ref().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn split(text: &str) -> impl Iterator<Item = &str> {
    text.split(',').filter(|s| !s.is_empty())
}

impl RotationRecord {
    /// A fresh claim.
    pub fn claim(parameters: Parameters, claimed_at: i64) -> Self {
        RotationRecord {
            parameters,
            base_version: 0,
            base_rotation: None,
            intents: Vec::new(),
            base64_keys: BTreeSet::new(),
            claimed_at,
            version: None,
            rotated: None,
            completed_at: None,
        }
    }

    pub fn is_complete(&self) -> bool {
        self.completed_at.is_some()
    }

    pub fn to_data(&self) -> SecretData {
        let mut fields: Vec<(&str, String)> = vec![
            ("target", self.parameters.target.encode()),
            ("keys", join(&self.parameters.keys)),
            ("generator", self.parameters.generator.clone()),
            ("base_version", self.base_version.to_string()),
            (
                "intents",
                join(self.intents.iter().map(Fingerprint::as_str)),
            ),
            ("base64_keys", join(&self.base64_keys)),
            ("claimed_at", self.claimed_at.to_string()),
        ];
        if let Some(at) = self.base_rotation {
            fields.push(("base_rotation", at.to_string()));
        }
        if let Some(version) = self.version {
            fields.push(("version", version.to_string()));
        }
        if let Some(at) = self.rotated {
            fields.push(("rotated", at.to_string()));
        }
        if let Some(at) = self.completed_at {
            fields.push(("completed_at", at.to_string()));
        }
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), SecretBytes::from_string(v)))
            .collect()
    }

    pub fn from_data(data: &SecretData) -> Option<Self> {
        let field = |name: &str| data.get(name).and_then(|v| v.as_utf8()).map(str::to_string);
        let instant = |name: &str| field(name).and_then(|v| v.parse::<Timestamp>().ok());
        Some(Self {
            parameters: Parameters {
                target: Target::decode(&field("target")?)?,
                keys: split(&field("keys").unwrap_or_default())
                    .map(String::from)
                    .collect(),
                generator: field("generator").unwrap_or_default(),
            },
            base_version: field("base_version")?.parse().ok()?,
            base_rotation: instant("base_rotation"),
            intents: split(&field("intents").unwrap_or_default())
                .filter_map(Fingerprint::parse)
                .collect(),
            base64_keys: split(&field("base64_keys").unwrap_or_default())
                .map(String::from)
                .collect(),
            claimed_at: field("claimed_at")?.parse().ok()?,
            version: field("version").and_then(|v| v.parse().ok()),
            rotated: instant("rotated"),
            completed_at: field("completed_at").and_then(|v| v.parse().ok()),
        })
    }
}

/// What a KV rotation run does next for its rotation id.
#[derive(Debug, PartialEq, Eq)]
pub enum RotationStep {
    /// No record: claim the id (`cas=0`), then write.
    Claim,
    /// Done before: refresh consumers only.
    AlreadyRotated,
    /// The id was used for something else: refuse, naming the recorded intent.
    OtherIntent,
    /// The path moved past the claim's base: if that next version carries one of the claim's
    /// intents, this id wrote it (a run died before completing the record).
    CheckWritten { version: u64 },
    /// Another run holds a fresh claim and has not written yet: wait for it.
    Wait,
    /// The claim is stale: take it over (`cas` on the record) and write.
    TakeOver,
}

fn open_claim(record: &RotationRecord, now: i64, lease_seconds: i64) -> RotationStep {
    if now - record.claimed_at < lease_seconds {
        RotationStep::Wait
    } else {
        RotationStep::TakeOver
    }
}

/// `lease_seconds`: how long a claim protects an in-flight rotation before another run may
/// take it over (the claimer is presumed dead).
pub fn decide(
    record: Option<&RotationRecord>,
    parameters: &Parameters,
    current_version: u64,
    now: i64,
    lease_seconds: i64,
) -> RotationStep {
    let Some(record) = record else {
        return RotationStep::Claim;
    };
    if record.parameters != *parameters {
        return RotationStep::OtherIntent;
    }
    if record.is_complete() {
        return RotationStep::AlreadyRotated;
    }
    if current_version > record.base_version {
        return RotationStep::CheckWritten {
            version: record.base_version + 1,
        };
    }
    open_claim(record, now, lease_seconds)
}

/// What an engine rotation run does next.
#[derive(Debug, PartialEq, Eq)]
pub enum EngineStep {
    Claim,
    AlreadyRotated,
    OtherIntent,
    /// Vault rotated since the claim was made: the call happened (the proof), complete the
    /// record with this `last_vault_rotation`; never call again.
    Proven {
        rotated: Timestamp,
    },
    Wait,
    /// A stale claim whose call never happened: take it over and call.
    TakeOver,
}

/// `last_rotation`: Vault's `last_vault_rotation` of the role, read now. A rotation Vault
/// made on its own schedule since the claim also counts: the credential was rotated, and
/// calling again would rotate it twice for one id.
pub fn decide_engine(
    record: Option<&RotationRecord>,
    parameters: &Parameters,
    last_rotation: Option<Timestamp>,
    now: i64,
    lease_seconds: i64,
) -> EngineStep {
    let Some(record) = record else {
        return EngineStep::Claim;
    };
    if record.parameters != *parameters {
        return EngineStep::OtherIntent;
    }
    if record.is_complete() {
        return EngineStep::AlreadyRotated;
    }
    match last_rotation {
        Some(rotated) if record.base_rotation.is_none_or(|base| rotated > base) => {
            return EngineStep::Proven { rotated };
        }
        _ => {}
    }
    match open_claim(record, now, lease_seconds) {
        RotationStep::Wait => EngineStep::Wait,
        _ => EngineStep::TakeOver,
    }
}

/// Whether the engine state `status` reads (its `last_vault_rotation` and `completed_at`)
/// already describes the completed rotation `done`, or a later one. Vault's own rotation
/// time orders them: completion times are whole seconds, and two ids of one role can
/// complete within the same one.
pub fn engine_state_is_current(
    recorded_rotation: Option<Timestamp>,
    recorded_completed_at: i64,
    done: &RotationRecord,
) -> bool {
    match (recorded_rotation, done.rotated) {
        (Some(recorded), Some(ours)) => recorded >= ours,
        _ => recorded_completed_at >= done.completed_at.unwrap_or_default(),
    }
}

/// How many newest versions `--keep-versions` keeps, and which older live ones to destroy.
pub fn versions_to_destroy(live: &[u64], written: u64, keep: u32) -> Vec<u64> {
    let keep = u64::from(keep.max(2));
    let oldest_kept = written.saturating_sub(keep - 1);
    live.iter()
        .copied()
        .filter(|v| *v < oldest_kept && *v != written)
        .collect()
}

fn decode_until(custom: &BTreeMap<String, String>) -> BTreeMap<String, u64> {
    custom
        .get(meta::BASE64_KEYS_UNTIL)
        .map(|text| {
            split(text)
                .filter_map(|entry| {
                    let (key, version) = entry.rsplit_once(':')?;
                    Some((key.to_string(), version.parse().ok()?))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The keys stored base64-encoded in `version` of a path, from its metadata: the current list
/// (`secops-base64-keys`, which describes the newest version secops finished writing) plus
/// the keys a rotation turned into text at a later version (`secops-base64-keys-until`).
/// Every reader of an older version (mark-consumed reads the handover's) must decode with
/// this, not with the current list alone.
pub fn base64_keys_at(custom: &BTreeMap<String, String>, version: u64) -> BTreeSet<String> {
    let mut keys = decode_key_list(custom);
    keys.extend(
        decode_until(custom)
            .into_iter()
            .filter(|(_, until)| version < *until)
            .map(|(key, _)| key),
    );
    keys
}

/// The newest version whose key list the metadata describes: the handover's or push's, or
/// the last finished rotation's. A later version was written by a run that did not finish
/// (or outside secops).
pub fn accounted_version(custom: &BTreeMap<String, String>) -> u64 {
    [meta::ORIGIN_VERSION, meta::ROTATION_VERSION]
        .iter()
        .filter_map(|key| custom.get(*key)?.parse().ok())
        .max()
        .unwrap_or(0)
}

/// Records, after a rotation wrote `version`, which keys that version stores base64-encoded,
/// keeping what older versions need: a key that was base64 before and is text now (generated
/// values are text) is remembered as base64 in versions older than `version`.
pub fn record_base64_keys(
    custom: &mut BTreeMap<String, String>,
    version: u64,
    written: &BTreeSet<String>,
) {
    let before = decode_key_list(custom);
    let mut until = decode_until(custom);
    for key in before.difference(written) {
        until.entry(key.clone()).or_insert(version);
    }
    if written.is_empty() {
        custom.remove(meta::BASE64_KEYS);
    } else {
        custom.insert(meta::BASE64_KEYS.into(), encode_key_list(written));
    }
    if until.is_empty() {
        custom.remove(meta::BASE64_KEYS_UNTIL);
    } else {
        let entries = until.iter().map(|(key, v)| format!("{key}:{v}"));
        custom.insert(meta::BASE64_KEYS_UNTIL.into(), join(entries));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(c: char) -> Fingerprint {
        Fingerprint::parse(&format!("hmac-sha256:{}", c.to_string().repeat(64))).unwrap()
    }

    fn kv(path: &str, keys: &[&str], generator: &str) -> Parameters {
        Parameters {
            target: Target::Kv(path.into()),
            keys: keys.iter().map(|k| k.to_string()).collect(),
            generator: generator.into(),
        }
    }

    fn role() -> Parameters {
        Parameters {
            target: Target::StaticRole {
                mount: "database".into(),
                role: "app".into(),
            },
            keys: Vec::new(),
            generator: String::new(),
        }
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn open(parameters: Parameters) -> RotationRecord {
        RotationRecord {
            base_version: 3,
            intents: vec![fp('a')],
            base64_keys: ["bin".to_string()].into(),
            ..RotationRecord::claim(parameters, 1000)
        }
    }

    #[test]
    fn records_round_trip() {
        let done = RotationRecord {
            intents: vec![fp('a'), fp('b')],
            version: Some(4),
            completed_at: Some(1010),
            ..open(kv("team/db", &["password", "user"], "password"))
        };
        assert_eq!(
            RotationRecord::from_data(&done.to_data()),
            Some(done.clone())
        );
        let engine = RotationRecord {
            base_rotation: Some(at("2026-01-01T00:00:00.123456789Z")),
            rotated: Some(at("2026-01-01T00:00:01Z")),
            completed_at: Some(5),
            ..RotationRecord::claim(role(), 1)
        };
        assert_eq!(RotationRecord::from_data(&engine.to_data()), Some(engine));
    }

    #[test]
    fn kv_decision_table() {
        let parameters = kv("team/db", &["password"], "password");
        let open = open(parameters.clone());
        let done = RotationRecord {
            version: Some(4),
            completed_at: Some(1001),
            ..open.clone()
        };
        assert_eq!(decide(None, &parameters, 3, 1000, 120), RotationStep::Claim);
        assert_eq!(
            decide(Some(&done), &parameters, 9, 1000, 120),
            RotationStep::AlreadyRotated
        );
        assert_eq!(
            decide(Some(&open), &parameters, 4, 1001, 120),
            RotationStep::CheckWritten { version: 4 }
        );
        assert_eq!(
            decide(Some(&open), &parameters, 3, 1001, 120),
            RotationStep::Wait
        );
        assert_eq!(
            decide(Some(&open), &parameters, 3, 1120, 120),
            RotationStep::TakeOver
        );
    }

    #[test]
    fn one_id_has_one_intent() {
        let parameters = kv("team/db", &["password"], "password");
        let done = RotationRecord {
            completed_at: Some(1),
            ..open(parameters.clone())
        };
        for other in [
            kv("team/db", &["user"], "password"),
            kv("team/db", &["password"], "hex"),
            kv("team/other", &["password"], "password"),
            role(),
        ] {
            assert_eq!(
                decide(Some(&done), &other, 4, 1000, 120),
                RotationStep::OtherIntent,
                "{other}"
            );
            assert_eq!(
                decide_engine(Some(&done), &other, None, 1000, 120),
                EngineStep::OtherIntent,
                "{other}"
            );
        }
        assert_eq!(
            parameters.to_string(),
            "path team/db, keys password, generator password"
        );
        assert_eq!(role().to_string(), "static role database/app");
    }

    #[test]
    fn engine_decision_table_takes_vaults_last_rotation_as_proof() {
        let base = at("2026-01-01T00:00:00.5Z");
        let claim = RotationRecord {
            base_rotation: Some(base),
            ..RotationRecord::claim(role(), 1000)
        };
        let p = role();
        assert_eq!(
            decide_engine(None, &p, Some(base), 1000, 120),
            EngineStep::Claim
        );
        let later = at("2026-01-01T00:00:00.6Z");
        assert_eq!(
            decide_engine(Some(&claim), &p, Some(later), 1001, 120),
            EngineStep::Proven { rotated: later },
            "sub-second precision counts"
        );
        assert_eq!(
            decide_engine(Some(&claim), &p, Some(base), 1001, 120),
            EngineStep::Wait,
            "not rotated yet, claim live"
        );
        assert_eq!(
            decide_engine(Some(&claim), &p, Some(base), 1200, 120),
            EngineStep::TakeOver
        );
        let never = RotationRecord::claim(role(), 1000);
        assert_eq!(
            decide_engine(Some(&never), &p, Some(later), 1001, 120),
            EngineStep::Proven { rotated: later }
        );
        let done = RotationRecord {
            completed_at: Some(1),
            ..claim
        };
        assert_eq!(
            decide_engine(Some(&done), &p, Some(later), 1001, 120),
            EngineStep::AlreadyRotated
        );
    }

    #[test]
    fn each_version_is_decoded_with_its_own_key_list() {
        let mut custom = BTreeMap::new();
        custom.insert(meta::BASE64_KEYS.to_string(), "bin,cert".to_string());
        custom.insert(meta::ORIGIN_VERSION.to_string(), "1".to_string());
        let set = |keys: &[&str]| keys.iter().map(|k| k.to_string()).collect::<BTreeSet<_>>();
        // Version 3 rotated `bin` (now text); version 5 rotated `cert`.
        record_base64_keys(&mut custom, 3, &set(&["cert"]));
        record_base64_keys(&mut custom, 5, &set(&[]));
        assert_eq!(base64_keys_at(&custom, 1), set(&["bin", "cert"]));
        assert_eq!(base64_keys_at(&custom, 2), set(&["bin", "cert"]));
        assert_eq!(base64_keys_at(&custom, 3), set(&["cert"]));
        assert_eq!(base64_keys_at(&custom, 5), set(&[]));
        assert!(!custom.contains_key(meta::BASE64_KEYS));
        assert_eq!(custom[meta::BASE64_KEYS_UNTIL], "bin:3,cert:5");
        custom.insert(meta::ROTATION_VERSION.to_string(), "5".to_string());
        assert_eq!(accounted_version(&custom), 5);
        let mut plain = BTreeMap::new();
        record_base64_keys(&mut plain, 2, &set(&[]));
        assert!(plain.is_empty(), "no binary keys, no metadata");
    }

    #[test]
    fn keep_versions_never_destroys_the_written_or_previous_version() {
        assert_eq!(versions_to_destroy(&[1, 2, 3, 4, 5], 5, 2), vec![1, 2, 3]);
        assert_eq!(
            versions_to_destroy(&[1, 2, 3, 4, 5], 5, 1),
            vec![1, 2, 3],
            "below 2 is raised to 2"
        );
        assert_eq!(versions_to_destroy(&[4, 5], 5, 3), Vec::<u64>::new());
    }

    #[test]
    fn rotation_ids_are_safe_path_segments() {
        assert!(validate_rotation_id("3f2a9c1e-1b2c-4d5e-8f90-123456789abc").is_ok());
        for bad in ["", "..", "a/b", "a b", &"x".repeat(129)] {
            assert!(validate_rotation_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn each_rotation_id_has_its_record_in_secops_own_prefix() {
        let path = record_path("wf-1");
        assert_eq!(path, format!("{RESERVED_PREFIX}/rotation-ids/wf-1"));
        assert!(crate::domain::names::is_reserved(&path), "{path}");
        assert_ne!(record_path("wf-2"), path, "one record per id");
    }

    #[test]
    fn rotation_ids_may_use_their_whole_alphabet_and_length() {
        for good in ["a", "x.y", "a_b", "event:42", "A-1", &"x".repeat(128)] {
            assert!(validate_rotation_id(good).is_ok(), "{good:?}");
        }
        for bad in [".", "a%b", "é"] {
            assert_eq!(
                validate_rotation_id(bad).unwrap_err().exit_status().code(),
                2,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_record_missing_what_it_must_hold_is_not_read_as_one() {
        let record = open(kv("team/db", &["password"], "password"));
        let without = |field: &str| {
            let data: SecretData = record
                .to_data()
                .iter()
                .filter(|(k, _)| k.as_str() != field)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            RotationRecord::from_data(&data)
        };
        for field in ["target", "base_version", "claimed_at"] {
            assert_eq!(without(field), None, "{field}");
        }
        let mut foreign = record.to_data();
        foreign.insert(
            "target".into(),
            SecretBytes::from_string("static-role:no-slash".into()),
        );
        assert_eq!(RotationRecord::from_data(&foreign), None);
        foreign.insert("target".into(), SecretBytes::from_string("other".into()));
        assert_eq!(RotationRecord::from_data(&foreign), None);
        assert!(!record.is_complete());
        let engine = RotationRecord::claim(role(), 7);
        let read = RotationRecord::from_data(&engine.to_data()).unwrap();
        assert_eq!(read.parameters.target, role().target);
        assert!(
            read.parameters.keys.is_empty(),
            "no empty key from an empty list"
        );
    }

    #[test]
    fn parameters_name_only_what_they_hold() {
        assert_eq!(
            kv("team/db", &["a", "b"], "").to_string(),
            "path team/db, keys a,b"
        );
        assert_eq!(
            kv("team/db", &[], "hex").to_string(),
            "path team/db, generator hex"
        );
    }

    #[test]
    fn a_claim_is_live_for_exactly_its_lease() {
        let parameters = kv("team/db", &["password"], "password");
        let open = open(parameters.clone());
        assert_eq!(
            decide(Some(&open), &parameters, 3, 1119, 120),
            RotationStep::Wait
        );
        assert_eq!(
            decide(Some(&open), &parameters, 3, 1120, 120),
            RotationStep::TakeOver
        );
        let engine = RotationRecord::claim(role(), 1000);
        assert_eq!(
            decide_engine(Some(&engine), &role(), None, 1119, 120),
            EngineStep::Wait
        );
        assert_eq!(
            decide_engine(Some(&engine), &role(), None, 1120, 120),
            EngineStep::TakeOver
        );
        assert_eq!(
            decide(Some(&open), &parameters, 7, 1000, 120),
            RotationStep::CheckWritten { version: 4 },
            "the claim's next version, whatever came after it"
        );
    }

    #[test]
    fn keep_versions_keeps_the_newest_n() {
        assert_eq!(versions_to_destroy(&[1, 2, 3, 4, 5], 5, 3), vec![1, 2]);
        assert_eq!(
            versions_to_destroy(&[2, 4, 6], 4, 2),
            vec![2],
            "a newer version written outside the run is not ours to destroy"
        );
    }

    #[test]
    fn engine_state_is_ordered_by_vaults_rotation_time_not_the_completion_second() {
        let earlier = at("2026-01-01T00:00:01.100Z");
        let later = at("2026-01-01T00:00:01.900Z");
        let done = |rotated: Option<Timestamp>, completed_at: i64| RotationRecord {
            rotated,
            completed_at: Some(completed_at),
            ..RotationRecord::claim(role(), 0)
        };
        // Two ids completed in one second: the later rotation is recorded over the earlier.
        assert!(!engine_state_is_current(
            Some(earlier),
            1,
            &done(Some(later), 1)
        ));
        assert!(engine_state_is_current(
            Some(later),
            1,
            &done(Some(earlier), 1)
        ));
        assert!(engine_state_is_current(
            Some(later),
            1,
            &done(Some(later), 1)
        ));
        // Without Vault's time on either side, the completion second decides.
        assert!(!engine_state_is_current(None, 1, &done(Some(later), 2)));
        assert!(engine_state_is_current(None, 2, &done(Some(later), 2)));
        assert!(engine_state_is_current(Some(later), 2, &done(None, 2)));
        assert!(!engine_state_is_current(Some(later), 1, &done(None, 2)));
    }
}
