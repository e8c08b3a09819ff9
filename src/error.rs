//! The one error type: each variant names the refusal or the action that failed, and maps
//! to an exit status of the contract (`docs/contract.md` §5).

use serde::{Serialize, Serializer};

/// What went wrong, said in one line. No variant carries a secret value or a payload's own
/// parse error (which could quote the value).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag, environment variable or file the user gave is unusable.
    #[error("{0}")]
    Usage(String),

    #[error("{secret}: {reason}")]
    InvalidSource { secret: String, reason: String },

    #[error("{secret}: Vault path {path:?} is not allowed (allowed: {allowed})")]
    PathNotAllowed {
        secret: String,
        path: String,
        allowed: String,
    },

    #[error("{path:?} is under secops/, which holds secops's own state; refusing to {action}")]
    ReservedPath { path: String, action: String },

    #[error("Vault path {path:?} belongs to {owner}, not to {claimant}; refusing to overwrite it")]
    NotOwned {
        path: String,
        owner: String,
        claimant: String,
    },

    #[error("{action}: the path holds data secops did not write (values that are not strings); refusing to touch it")]
    ForeignData { action: String },

    #[error("Vault path {path:?} has no secops provenance; pass --adopt to take it over")]
    NotAdopted { path: String },

    #[error("{secret} is not labelled {selector}; refusing to act on it")]
    NotOfClass { secret: String, selector: String },

    #[error("{secret} has drifted: its data no longer matches what was handed over to Vault (version {version}); Vault stays authoritative, fix the value in Git or rotate in Vault")]
    Drifted { secret: String, version: u64 },

    /// A re-created origin (new uid) holding other data than Vault recorded for it: Vault
    /// stays the authority, the Secret is marked stale (`docs/contract.md` §6.8).
    #[error("{secret} (uid {uid}) is stale: it was re-created with other data than Vault {path} recorded from uid {authority_uid} (version {version}); Vault stays authoritative, retire the Secret from Git (see docs/runbook.md)")]
    Stale {
        secret: String,
        uid: String,
        path: String,
        authority_uid: String,
        version: u64,
    },

    /// Vault or the API server said 403: the identity lacks a permission.
    #[error("{action}: forbidden: {detail}")]
    Forbidden { action: String, detail: String },

    /// A state that forbids the step and that no retry changes.
    #[error("{action}: refused: {detail}")]
    Refused { action: String, detail: String },

    #[error("{what} not found")]
    NotFound { what: String },

    #[error("{secret} is not handed over to Vault yet (no provenance at {path:?}); run write-vault first")]
    NotHandedOver { secret: String, path: String },

    #[error("{action}: authentication failed: {detail}")]
    Unauthenticated { action: String, detail: String },

    /// Vault or the API server refused the request as malformed (400/422): not the user's
    /// flags, but nothing a retry fixes either.
    #[error("{action}: {by} rejected the request: {detail}")]
    Rejected {
        action: String,
        /// "Vault" or "the API server".
        by: &'static str,
        detail: String,
    },

    #[error("{action}: temporary failure: {detail}")]
    Temporary { action: String, detail: String },

    /// A conditional write kept losing to concurrent writers, [`crate::retry::RACE_ATTEMPTS`]
    /// times in a row.
    #[error("{action}: lost the race to concurrent writers repeatedly")]
    LostRace { action: String },

    /// An answer secops cannot make sense of.
    #[error("{action}: {detail}")]
    Remote { action: String, detail: String },

    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The exit statuses of `docs/contract.md` §5, declared from best to worst: when several secrets end
/// differently in one run, the run exits with the greatest. A temporary failure ranks above
/// refusals so that Argo retries the run: the secrets already done are cheap no-ops on the
/// retry, and a permanent refusal still surfaces on the last attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum ExitStatus {
    #[default]
    Ok,
    NotFound,
    Usage,
    Refused,
    Temporary,
    Internal,
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Ok => 0,
            ExitStatus::Internal => 1,
            ExitStatus::Usage => 2,
            ExitStatus::Refused => 3,
            ExitStatus::NotFound => 4,
            ExitStatus::Temporary => 75,
        }
    }
}

impl Serialize for ExitStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_u8(self.code())
    }
}

impl Error {
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            Error::Usage(_)
            | Error::InvalidSource { .. }
            | Error::Unauthenticated { .. }
            | Error::Rejected { .. } => ExitStatus::Usage,
            Error::PathNotAllowed { .. }
            | Error::ReservedPath { .. }
            | Error::NotOwned { .. }
            | Error::NotAdopted { .. }
            | Error::NotOfClass { .. }
            | Error::ForeignData { .. }
            | Error::Drifted { .. }
            | Error::Stale { .. }
            | Error::Forbidden { .. }
            | Error::Refused { .. } => ExitStatus::Refused,
            Error::NotFound { .. } | Error::NotHandedOver { .. } => ExitStatus::NotFound,
            Error::Temporary { .. } | Error::LostRace { .. } => ExitStatus::Temporary,
            Error::Remote { .. } | Error::Internal(_) => ExitStatus::Internal,
        }
    }

    /// Only temporary failures are retried; a refusal or a bad input never is.
    pub fn is_transient(&self) -> bool {
        self.exit_status() == ExitStatus::Temporary
    }

    /// A short machine-readable name for result documents.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Usage(_) => "usage",
            Error::InvalidSource { .. } => "invalid",
            Error::PathNotAllowed { .. } => "path-not-allowed",
            Error::ReservedPath { .. } => "reserved-path",
            Error::NotOwned { .. } => "not-owned",
            Error::NotAdopted { .. } => "not-adopted",
            Error::NotOfClass { .. } => "not-of-class",
            Error::ForeignData { .. } => "conflict",
            Error::Drifted { .. } => "drifted",
            Error::Stale { .. } => "stale",
            Error::Forbidden { .. } => "forbidden",
            Error::Refused { .. } => "refused",
            Error::NotFound { .. } => "not-found",
            Error::NotHandedOver { .. } => "not-handed-over",
            Error::Unauthenticated { .. } => "unauthenticated",
            Error::Rejected { .. } => "rejected",
            Error::Temporary { .. } => "temporary",
            Error::LostRace { .. } => "lost-race",
            Error::Remote { .. } => "remote",
            Error::Internal(_) => "internal",
        }
    }

    /// What an HTTP error status from Vault or the API server means for secops. `server`
    /// names who answered. 404 and 409 are answers each adapter decides on first.
    pub fn from_status(code: u16, action: &str, server: &'static str, message: String) -> Self {
        let action = action.to_string();
        match code {
            401 => Error::Unauthenticated {
                action,
                detail: message,
            },
            403 => Error::Forbidden {
                action,
                detail: message,
            },
            // 412: a standby or a replica not yet consistent; 429 and 5xx: overloaded or sealed.
            412 | 429 | 500..=599 => Error::Temporary {
                action,
                detail: format!("HTTP {code}: {message}"),
            },
            400 | 405 | 413 | 422 => Error::Rejected {
                action,
                by: server,
                detail: message,
            },
            _ => Error::Remote {
                action,
                detail: format!("HTTP {code}: {message}"),
            },
        }
    }

    pub fn temporary(action: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Temporary {
            action: action.into(),
            detail: detail.into(),
        }
    }
}

/// Every error in a `source()` chain, looking inside `io::Error`s too: their `source()`
/// skips the error they wrap, which is where a TLS or timeout cause usually sits.
pub fn causes<'a>(
    top: &'a (dyn std::error::Error + 'static),
) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut chain = Vec::new();
    let mut next = Some(top);
    while let Some(error) = next {
        chain.push(error);
        next = match error
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => error.source(),
        };
    }
    chain
}

/// Why a request never got an answer, decided by the error types in its chain.
#[derive(Debug, PartialEq, Eq)]
pub enum TransportFault {
    /// The server's certificate is not trusted: configuration, no retry fixes it.
    Certificate,
    TimedOut,
    /// The server does not speak TLS (an `https://` address for a plain-HTTP server):
    /// configuration, no retry fixes it.
    NotTls,
    /// Refused, reset, unresolvable: temporary.
    Unreachable,
}

pub fn transport_fault(error: &(dyn std::error::Error + 'static)) -> TransportFault {
    for cause in causes(error) {
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            if matches!(
                tls,
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
            ) {
                return TransportFault::Certificate;
            }
            if matches!(tls, rustls::Error::InvalidMessage(_)) {
                return TransportFault::NotTls;
            }
        }
        if cause
            .downcast_ref::<reqwest::Error>()
            .is_some_and(reqwest::Error::is_timeout)
            || cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return TransportFault::TimedOut;
        }
    }
    TransportFault::Unreachable
}

/// How an error appears in a result document.
#[derive(Debug, Serialize)]
pub struct ErrorReport {
    pub kind: &'static str,
    pub message: String,
}

impl From<&Error> for ErrorReport {
    fn from(error: &Error) -> Self {
        ErrorReport {
            kind: error.kind(),
            message: error.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_temporary_failures_are_retried() {
        for transient in [
            Error::temporary("a", "b"),
            Error::LostRace { action: "a".into() },
        ] {
            assert!(transient.is_transient());
            assert_eq!(transient.exit_status().code(), 75);
        }
        for permanent in [
            Error::Usage("x".into()),
            Error::NotOwned {
                path: "p".into(),
                owner: "o".into(),
                claimant: "c".into(),
            },
            Error::NotFound { what: "w".into() },
            Error::Forbidden {
                action: "a".into(),
                detail: "d".into(),
            },
            Error::Internal("i".into()),
        ] {
            assert!(!permanent.is_transient(), "{permanent}");
        }
    }

    #[test]
    fn http_statuses_map_to_the_contract() {
        let code = |status| {
            Error::from_status(status, "a", "Vault", "m".into())
                .exit_status()
                .code()
        };
        assert_eq!(
            [401, 403, 412, 429, 503, 400, 422, 418].map(code),
            [2, 3, 75, 75, 75, 2, 2, 1]
        );
    }

    #[test]
    fn exit_codes_follow_the_contract() {
        let code = |e: Error| e.exit_status().code();
        assert_eq!(code(Error::Usage("x".into())), 2);
        assert_eq!(
            code(Error::Rejected {
                action: "a".into(),
                by: "Vault",
                detail: "d".into()
            }),
            2
        );
        assert_eq!(
            code(Error::Drifted {
                secret: "s".into(),
                version: 1
            }),
            3
        );
        assert_eq!(code(Error::NotAdopted { path: "p".into() }), 3);
        assert_eq!(
            code(Error::ReservedPath {
                path: "secops/x".into(),
                action: "rotate".into()
            }),
            3
        );
        assert_eq!(
            code(Error::NotHandedOver {
                secret: "s".into(),
                path: "p".into()
            }),
            4
        );
        assert_eq!(code(Error::Internal("x".into())), 1);
    }

    #[test]
    fn transport_faults_are_found_by_type_anywhere_in_the_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("request failed")]
        struct Wrapper(#[source] std::io::Error);

        let untrusted = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let wrapped = Wrapper(std::io::Error::other(untrusted));
        assert_eq!(transport_fault(&wrapped), TransportFault::Certificate);
        let timed_out = Wrapper(std::io::Error::new(std::io::ErrorKind::TimedOut, "slow"));
        assert_eq!(transport_fault(&timed_out), TransportFault::TimedOut);
        // A message that merely mentions a certificate decides nothing.
        let refused = Wrapper(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "certificate timed out",
        ));
        assert_eq!(transport_fault(&refused), TransportFault::Unreachable);
    }

    #[test]
    fn the_worst_status_wins_and_temporary_outranks_refusals() {
        use ExitStatus::*;
        assert!(Internal > Temporary && Temporary > Refused && Refused > Usage);
        assert!(Usage > NotFound && NotFound > Ok);
        assert_eq!(
            [Ok, Refused, Temporary, NotFound].into_iter().max(),
            Some(Temporary)
        );
    }
}
