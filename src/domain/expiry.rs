//! Maximum ages (RFC phase 4: rotation "without human intervention", also on age): when a
//! secret's current value is due for rotation, and when `status` reports it as too old.

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::names::meta;

/// A maximum age as written in `secops-max-age` (or a `secops.dev/max-age` annotation): a
/// whole number with `s`, `m`, `h` or `d`, or plain seconds. `None` when malformed or zero.
pub fn parse_max_age(text: &str) -> Option<i64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: i64 = number.parse().ok()?;
    let factor = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    number.checked_mul(factor).filter(|s| *s > 0)
}

/// How a maximum age is recorded: whole seconds, readable by [`parse_max_age`].
pub fn format_max_age(seconds: i64) -> String {
    format!("{seconds}s")
}

/// Whether a value written at `written_at` is due for rotation under `max_age_seconds`. An
/// unknown write time is due: better one rotation too many than a secret never rotated.
pub fn is_due(written_at: Option<Timestamp>, now: Timestamp, max_age_seconds: i64) -> bool {
    written_at.is_none_or(|at| now.as_second() - at.as_second() >= max_age_seconds)
}

/// The maximum age that applies to a path: its own `secops-max-age`, else the default.
pub fn max_age_of(custom: &BTreeMap<String, String>, default: Option<i64>) -> Option<i64> {
    custom
        .get(meta::MAX_AGE)
        .and_then(|text| parse_max_age(text))
        .or(default)
}

/// The age violation of a value written at `written_at`, as a sentence, if it is too old.
pub fn too_old(
    written_at: Option<Timestamp>,
    now: Timestamp,
    max_age: Option<i64>,
) -> Option<String> {
    let (max_age, at) = (max_age?, written_at?);
    let age = now.as_second() - at.as_second();
    (age > max_age).then(|| {
        format!(
            "the current value was written at {} ({age}s ago), older than its maximum age of {max_age}s",
            crate::clock::rfc3339(at)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_ages_parse() {
        assert_eq!(parse_max_age("720h"), Some(720 * 3600));
        assert_eq!(parse_max_age("30d"), Some(30 * 86_400));
        assert_eq!(parse_max_age("90"), Some(90));
        assert_eq!(parse_max_age(&format_max_age(86_400)), Some(86_400));
        for bad in ["", "0", "1w", "h", "-5s"] {
            assert_eq!(parse_max_age(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn due_and_too_old() {
        let now: Timestamp = "2026-06-01T00:00:00Z".parse().unwrap();
        let day_ago: Timestamp = "2026-05-31T00:00:00Z".parse().unwrap();
        assert!(is_due(Some(day_ago), now, 86_400));
        assert!(!is_due(Some(day_ago), now, 86_401));
        assert!(is_due(None, now, 86_400), "unknown age is due");
        assert!(too_old(Some(day_ago), now, Some(3600)).is_some());
        assert!(too_old(Some(day_ago), now, Some(2 * 86_400)).is_none());
        assert!(too_old(Some(day_ago), now, None).is_none());
        let mut custom = BTreeMap::new();
        assert_eq!(max_age_of(&custom, Some(5)), Some(5));
        custom.insert(meta::MAX_AGE.to_string(), "1h".to_string());
        assert_eq!(
            max_age_of(&custom, Some(5)),
            Some(3600),
            "the path's own wins"
        );
    }

    #[test]
    fn a_value_exactly_its_maximum_age_is_due_but_not_yet_too_old() {
        let now: Timestamp = "2026-06-01T00:00:00Z".parse().unwrap();
        let hour_ago: Timestamp = "2026-05-31T23:00:00Z".parse().unwrap();
        assert!(is_due(Some(hour_ago), now, 3600));
        assert!(too_old(Some(hour_ago), now, Some(3600)).is_none());
        assert!(too_old(Some(hour_ago), now, Some(3599)).is_some());
        assert!(too_old(None, now, Some(1)).is_none(), "unknown write time");
        assert_eq!(max_age_of(&BTreeMap::new(), None), None);
        let bad = BTreeMap::from([(meta::MAX_AGE.to_string(), "soon".to_string())]);
        assert_eq!(
            max_age_of(&bad, Some(5)),
            Some(5),
            "unreadable: the default"
        );
        assert_eq!(parse_max_age("5m"), Some(300));
        assert_eq!(parse_max_age("7s"), Some(7));
    }
}
