//! The wall clock, read in one place: timestamps in annotations, metadata and Events are all
//! RFC 3339 in UTC at second precision.

use jiff::Timestamp;

pub fn now() -> Timestamp {
    Timestamp::now()
}

pub fn rfc3339(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn now_rfc3339() -> String {
    rfc3339(now())
}
