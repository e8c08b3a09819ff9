//! Consumers to update after a rotation: ExternalSecrets to force-sync, workloads to restart,
//! in that order, and the judgements of whether a consumer already has a rotation's stamp
//! and whether an ExternalSecret has synced since.

use std::fmt;

use jiff::Timestamp;

use super::is_dns_subdomain;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerKind {
    ExternalSecret,
    Deployment,
    StatefulSet,
    DaemonSet,
}

impl ConsumerKind {
    pub fn name(self) -> &'static str {
        match self {
            ConsumerKind::ExternalSecret => "externalsecret",
            ConsumerKind::Deployment => "deployment",
            ConsumerKind::StatefulSet => "statefulset",
            ConsumerKind::DaemonSet => "daemonset",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    pub kind: ConsumerKind,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.kind.name(), self.namespace, self.name)
    }
}

fn parse(text: &str, flag: &str, kinds: &[ConsumerKind]) -> Result<Consumer> {
    let expected = kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join("|");
    let invalid = || {
        Error::Usage(format!(
            "{flag} {text:?}: expected {expected}/NAMESPACE/NAME"
        ))
    };
    let mut parts = text.split('/');
    let (Some(kind), Some(namespace), Some(name), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    let kind = kinds
        .iter()
        .copied()
        .find(|k| k.name() == kind.to_ascii_lowercase())
        .ok_or_else(invalid)?;
    if !is_dns_subdomain(namespace) || !is_dns_subdomain(name) {
        return Err(invalid());
    }
    Ok(Consumer {
        kind,
        namespace: namespace.into(),
        name: name.into(),
    })
}

pub fn parse_refresh(text: &str) -> Result<Consumer> {
    parse(text, "--refresh", &[ConsumerKind::ExternalSecret])
}

pub fn parse_restart(text: &str) -> Result<Consumer> {
    parse(
        text,
        "--restart",
        &[
            ConsumerKind::Deployment,
            ConsumerKind::StatefulSet,
            ConsumerKind::DaemonSet,
        ],
    )
}

impl Consumer {
    /// Workloads restart only after the ExternalSecrets have synced the new value.
    pub fn is_workload(&self) -> bool {
        self.kind != ConsumerKind::ExternalSecret
    }
}

/// How far a stamp may lie ahead of this run's clock and still count (clock skew between the
/// pods of two runs). A stamp further ahead is not a refresh anyone made: it is re-driven.
pub const MAX_CLOCK_SKEW_SECONDS: i64 = 60;

/// A stamp as Unix seconds: ESO's `force-sync` is free text (secops writes Unix seconds),
/// a pod template's `restartedAt` is RFC 3339; both forms are read in either place.
pub fn parse_stamp(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<i64>() {
        return Some(seconds);
    }
    text.parse::<Timestamp>().ok().map(|t| t.as_second())
}

/// Whether a consumer's current stamp already covers a rotation stamped `stamp`: an instant
/// at or after it, and not in the future. The rule before model finding 3, kept for the
/// model's pre-fix check: it silences a later rotation completing within the same second
/// (or earlier, by skew); refreshes now decide with [`is_refreshed`].
pub fn is_stamped(current: Option<&str>, stamp: i64, now: i64) -> bool {
    current
        .and_then(parse_stamp)
        .is_some_and(|t| t >= stamp && t <= now + MAX_CLOCK_SKEW_SECONDS)
}

/// Where an ExternalSecret stands after its force-sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sync {
    /// ESO refreshed it at or after the stamp and it is `Ready=True`.
    Synced,
    /// Not refreshed since the stamp yet.
    Pending,
    /// Refreshed since the stamp, but not ready; ESO's reason, if any.
    Failing(String),
}

/// Judges ESO's documented status fields: `status.refreshTime` and the `Ready` condition.
pub fn judge_sync(
    refresh_time: Option<&str>,
    ready: Option<&str>,
    reason: Option<&str>,
    stamp: i64,
) -> Sync {
    let refreshed = refresh_time
        .and_then(|t| t.parse::<Timestamp>().ok())
        .is_some_and(|t| t.as_second() >= stamp);
    match (refreshed, ready) {
        (true, Some("True")) => Sync::Synced,
        (true, _) => Sync::Failing(reason.unwrap_or("not ready").to_string()),
        (false, _) => Sync::Pending,
    }
}

/// On a refreshed consumer: the rotation id it was last refreshed for.
pub const ROTATION_ID: &str = "secops.dev/rotation-id";
/// On a refreshed consumer: `MOUNT/PATH@VERSION`, the KV version that refresh served.
pub const ROTATED_VERSION: &str = "secops.dev/rotated-version";

/// The rotation a refresh is for. "Already refreshed" is decided by its identity, not by
/// comparing instants: two rotations can complete within one second, or out of order by
/// clock skew between two runs' pods (model finding 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshFor {
    pub id: String,
    /// The record's completion time (Unix seconds), the same for every run of the id.
    pub stamp: i64,
    /// What was rotated (`MOUNT/PATH`, or the static role `MOUNT/ROLE`), and for a KV path
    /// the version written: versions of one path are ordered, instants are not.
    pub target: String,
    pub version: Option<u64>,
}

impl RefreshFor {
    /// The value of the trigger annotation (ESO's `force-sync`, the pod template's
    /// `restartedAt`): the instant, then the id, so two rotations never write the same value
    /// and ESO and the rollout fire for each, while every run of one id writes the same.
    pub fn trigger(&self) -> String {
        // `Kube::refresh_consumer` refuses a stamp out of range before it gets here.
        let at = Timestamp::from_second(self.stamp).unwrap_or(Timestamp::UNIX_EPOCH);
        format!("{}/{}", crate::clock::rfc3339(at), self.id)
    }

    /// `ROTATED_VERSION`'s value, for a KV rotation.
    pub fn rotated_version(&self) -> Option<String> {
        self.version.map(|v| format!("{}@{v}", self.target))
    }
}

/// The instant a trigger names: its own (`INSTANT/ID`), or a stamp of an older secops.
pub fn trigger_instant(trigger: &str) -> Option<i64> {
    parse_stamp(trigger.split('/').next().unwrap_or_default())
}

/// Whether a consumer already serves `ours`: it carries our trigger (a redelivered id), or
/// records a later version of the same path (that refresh served ours too). Anything else,
/// an earlier rotation's trigger, a foreign or garbled one, is refreshed again.
pub fn is_refreshed(
    trigger: Option<&str>,
    rotated_version: Option<&str>,
    ours: &RefreshFor,
) -> bool {
    if trigger == Some(ours.trigger().as_str()) {
        return true;
    }
    let later = rotated_version
        .and_then(|text| text.rsplit_once('@'))
        .and_then(|(target, version)| Some((target, version.parse::<u64>().ok()?)));
    match (later, ours.version) {
        (Some((target, version)), Some(mine)) => target == ours.target && version > mine,
        _ => false,
    }
}

/// How `refresh_consumer` left an ExternalSecret, for judging its sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncSince {
    /// This run wrote the force-sync; ESO's `status.syncedResourceVersion` was this then.
    /// ESO's value changes with every sync of changed metadata, so a move proves a sync of
    /// ours, where `refreshTime` (seconds, ESO's clock) cannot within one second.
    Patched { synced_before: Option<String> },
    /// An earlier run wrote the trigger present, naming this instant: only `refreshTime`
    /// can tell (`judge_sync`).
    Stamped(i64),
}

/// [`judge_sync`] for a refresh: by `syncedResourceVersion` when this run wrote the
/// force-sync, else by `refreshTime` against the instant of the trigger present.
pub fn judge_sync_since(
    refresh_time: Option<&str>,
    synced: Option<&str>,
    ready: Option<&str>,
    reason: Option<&str>,
    since: &SyncSince,
) -> Sync {
    match since {
        SyncSince::Stamped(stamp) => judge_sync(refresh_time, ready, reason, *stamp),
        SyncSince::Patched { synced_before } => {
            let moved = synced != synced_before.as_deref();
            match (moved, ready) {
                (true, Some("True")) => Sync::Synced,
                (_, Some("False")) => Sync::Failing(reason.unwrap_or("not ready").to_string()),
                _ => Sync::Pending,
            }
        }
    }
}

#[cfg(test)]
mod refresh_tests {
    use super::*;

    fn rotation(id: &str, stamp: i64, version: Option<u64>) -> RefreshFor {
        RefreshFor {
            id: id.into(),
            stamp,
            target: "secret/ns/db".into(),
            version,
        }
    }

    #[test]
    fn a_consumer_is_refreshed_for_a_rotation_by_identity_not_by_instant() {
        let (a, b) = (rotation("a", 100, Some(2)), rotation("b", 100, Some(3)));
        assert_ne!(a.trigger(), b.trigger(), "one second, two triggers");
        assert_eq!(a.trigger(), "1970-01-01T00:01:40Z/a");
        assert_eq!(trigger_instant(&a.trigger()), Some(100));
        assert_eq!(trigger_instant("100"), Some(100), "an older secops's stamp");
        let a_version = a.rotated_version();
        assert!(
            is_refreshed(Some(&a.trigger()), a_version.as_deref(), &a),
            "redelivered"
        );
        assert!(
            !is_refreshed(Some(&a.trigger()), a_version.as_deref(), &b),
            "a's refresh, same second, does not serve b's version"
        );
        let earlier_by_skew = rotation("b", 70, Some(3));
        assert!(!is_refreshed(
            Some(&a.trigger()),
            a_version.as_deref(),
            &earlier_by_skew
        ));
        let b_version = b.rotated_version();
        assert!(
            is_refreshed(Some(&b.trigger()), b_version.as_deref(), &a),
            "b's later version serves a"
        );
        let other_path = Some("secret/ns/other@9");
        assert!(!is_refreshed(Some(&b.trigger()), other_path, &a));
        assert!(
            !is_refreshed(Some("zzz"), a_version.as_deref(), &a),
            "garbled"
        );
        assert!(!is_refreshed(None, None, &a));
        let engine = RefreshFor {
            version: None,
            target: "database/app".into(),
            ..a.clone()
        };
        assert!(is_refreshed(Some(&engine.trigger()), None, &engine));
        assert!(!is_refreshed(
            Some(&b.trigger()),
            b_version.as_deref(),
            &engine
        ));
    }

    #[test]
    fn a_sync_of_our_force_sync_is_told_by_the_synced_resource_version() {
        let since = SyncSince::Patched {
            synced_before: Some("1-aaa".into()),
        };
        let at = Some("2026-05-01T10:00:00Z");
        let judge = |synced, ready| judge_sync_since(at, synced, ready, None, &since);
        assert_eq!(
            judge(Some("1-aaa"), Some("True")),
            Sync::Pending,
            "the earlier sync"
        );
        assert_eq!(judge(Some("1-bbb"), Some("True")), Sync::Synced);
        assert_eq!(
            judge(Some("1-aaa"), Some("False")),
            Sync::Failing("not ready".into())
        );
        let never = SyncSince::Patched {
            synced_before: None,
        };
        assert_eq!(
            judge_sync_since(at, Some("1-aaa"), Some("True"), None, &never),
            Sync::Synced
        );
        let stamp = parse_stamp("2026-05-01T10:00:01Z").unwrap();
        assert_eq!(
            judge_sync_since(
                at,
                Some("1-bbb"),
                Some("True"),
                None,
                &SyncSince::Stamped(stamp)
            ),
            Sync::Pending,
            "an earlier run's trigger: by refreshTime"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_compared_as_instants() {
        let now = 1_800_000_000;
        let stamp = now - 10;
        assert!(is_stamped(Some(&stamp.to_string()), stamp, now));
        assert!(is_stamped(
            Some("2027-01-15T08:00:00Z"),
            1_800_000_000,
            1_800_000_000
        ));
        assert!(
            is_stamped(Some(&(now - 5).to_string()), stamp, now),
            "a later rotation's"
        );
        assert!(
            !is_stamped(Some(&(stamp - 1).to_string()), stamp, now),
            "older"
        );
        assert!(!is_stamped(Some("zzz"), stamp, now), "unparseable");
        assert!(!is_stamped(Some("9999999999"), stamp, now), "far future");
        assert!(
            !is_stamped(Some("2999-01-01T00:00:00Z"), stamp, now),
            "far future"
        );
        assert!(!is_stamped(None, stamp, now));
        assert_eq!(parse_stamp("1970-01-01T00:01:40Z"), Some(100));
    }

    #[test]
    fn eso_sync_is_judged_from_refresh_time_and_ready() {
        let stamp = parse_stamp("2026-05-01T10:00:00Z").unwrap();
        assert_eq!(
            judge_sync(Some("2026-05-01T10:00:00Z"), Some("True"), None, stamp),
            Sync::Synced,
            "at the stamp counts"
        );
        assert_eq!(
            judge_sync(Some("2026-05-01T09:59:59Z"), Some("True"), None, stamp),
            Sync::Pending
        );
        assert_eq!(judge_sync(None, None, None, stamp), Sync::Pending);
        assert_eq!(
            judge_sync(
                Some("2026-05-01T10:00:03Z"),
                Some("False"),
                Some("SecretSyncedError"),
                stamp
            ),
            Sync::Failing("SecretSyncedError".into())
        );
    }

    #[test]
    fn consumer_syntax() {
        assert_eq!(
            parse_refresh("externalsecret/app/db").unwrap().to_string(),
            "externalsecret/app/db"
        );
        assert_eq!(
            parse_restart("statefulset/app/pg").unwrap().kind,
            ConsumerKind::StatefulSet
        );
        for bad in [
            "deployment/app/x",
            "externalsecret/app",
            "externalsecret/App/x",
            "externalsecret/a/b/c",
        ] {
            assert!(parse_refresh(bad).is_err(), "{bad}");
        }
        assert!(parse_restart("externalsecret/app/x").is_err());
    }

    #[test]
    fn a_stamp_may_lead_the_clock_by_the_allowed_skew_only() {
        let now = 1_800_000_000;
        let ahead = |s: i64| Some((now + s).to_string());
        assert!(is_stamped(
            ahead(MAX_CLOCK_SKEW_SECONDS).as_deref(),
            now,
            now
        ));
        assert!(!is_stamped(
            ahead(MAX_CLOCK_SKEW_SECONDS + 1).as_deref(),
            now,
            now
        ));
        assert_eq!(parse_stamp(" 42 "), Some(42));
    }

    #[test]
    fn workloads_restart_and_external_secrets_refresh() {
        for (text, kind) in [
            ("deployment/app/web", ConsumerKind::Deployment),
            ("statefulset/app/pg", ConsumerKind::StatefulSet),
            ("daemonset/app/agent", ConsumerKind::DaemonSet),
            ("Deployment/app/web", ConsumerKind::Deployment),
        ] {
            let consumer = parse_restart(text).unwrap();
            assert_eq!(consumer.kind, kind, "{text}");
            assert!(consumer.is_workload(), "{text}");
        }
        assert!(!parse_refresh("externalsecret/app/db")
            .unwrap()
            .is_workload());
        let usage = parse_restart("job/app/x").unwrap_err();
        assert_eq!(usage.exit_status().code(), 2);
        assert!(
            usage
                .to_string()
                .contains("deployment|statefulset|daemonset"),
            "{usage}"
        );
        assert_eq!(
            judge_sync(Some("2026-05-01T10:00:00Z"), None, None, 0),
            Sync::Failing("not ready".into())
        );
    }
}
