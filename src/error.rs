//! The one error type: each variant names the refusal or the action that failed, and maps
//! to an exit code of the contract (section 5).

/// What went wrong, said in one line. No variant carries a secret value or a payload's own
/// parse error (which could quote the value).
#[derive(Debug, thiserror::Error)]
pub enum Error {
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

    #[error("Vault path {path:?} belongs to {owner}, not to {claimant}; refusing to overwrite it")]
    NotOwned {
        path: String,
        owner: String,
        claimant: String,
    },

    #[error("{secret} has drifted: its data no longer matches what was handed over to Vault (version {version}); Vault stays authoritative, fix the value in Git or rotate in Vault")]
    Drifted { secret: String, version: u64 },

    #[error("{what} not found")]
    NotFound { what: String },

    #[error("{secret} is not handed over to Vault yet (no provenance at {path:?}); run write-vault first")]
    NotHandedOver { secret: String, path: String },

    #[error("{action}: refused: {detail}")]
    Refused { action: String, detail: String },

    #[error("{action}: authentication failed: {detail}")]
    Unauthenticated { action: String, detail: String },

    #[error("{action}: temporary failure: {detail}")]
    Temporary { action: String, detail: String },

    #[error("{action}: {detail}")]
    Remote { action: String, detail: String },

    #[error("{0} is not implemented yet")]
    NotImplemented(&'static str),

    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Exit codes of the contract, section 5.
pub mod exit {
    pub const OK: i32 = 0;
    pub const INTERNAL: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const REFUSED: i32 = 3;
    pub const NOT_FOUND: i32 = 4;
    pub const TEMPORARY: i32 = 75;
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::InvalidSource { .. } | Error::Unauthenticated { .. } => {
                exit::USAGE
            }
            Error::PathNotAllowed { .. }
            | Error::NotOwned { .. }
            | Error::Drifted { .. }
            | Error::Refused { .. } => exit::REFUSED,
            Error::NotFound { .. } | Error::NotHandedOver { .. } => exit::NOT_FOUND,
            Error::Temporary { .. } => exit::TEMPORARY,
            Error::Remote { .. } | Error::NotImplemented(_) | Error::Internal(_) => exit::INTERNAL,
        }
    }

    /// Only temporary failures are retried; a refusal or a bad input never is.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Temporary { .. })
    }

    /// A short machine-readable name for result documents.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Usage(_) => "usage",
            Error::InvalidSource { .. } => "invalid",
            Error::PathNotAllowed { .. } => "path-not-allowed",
            Error::NotOwned { .. } => "not-owned",
            Error::Drifted { .. } => "drifted",
            Error::NotFound { .. } => "not-found",
            Error::NotHandedOver { .. } => "not-handed-over",
            Error::Refused { .. } => "refused",
            Error::Unauthenticated { .. } => "unauthenticated",
            Error::Temporary { .. } => "temporary",
            Error::Remote { .. } => "remote",
            Error::NotImplemented(_) => "not-implemented",
            Error::Internal(_) => "internal",
        }
    }
}

/// How bad an exit code is when several secrets end differently in one run. A temporary
/// failure ranks above refusals so that Argo retries the run: the secrets already done are
/// cheap no-ops on the retry, and a permanent refusal still surfaces on the last attempt.
pub fn severity(code: i32) -> u8 {
    match code {
        exit::OK => 0,
        exit::NOT_FOUND => 1,
        exit::USAGE => 2,
        exit::REFUSED => 3,
        exit::TEMPORARY => 4,
        _ => 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_temporary_failures_are_retried() {
        let temporary = Error::Temporary {
            action: "a".into(),
            detail: "b".into(),
        };
        assert!(temporary.is_transient());
        assert_eq!(temporary.exit_code(), 75);
        for permanent in [
            Error::Usage("x".into()),
            Error::NotOwned {
                path: "p".into(),
                owner: "o".into(),
                claimant: "c".into(),
            },
            Error::NotFound { what: "w".into() },
            Error::Internal("i".into()),
        ] {
            assert!(!permanent.is_transient(), "{permanent}");
        }
    }

    #[test]
    fn exit_codes_follow_the_contract() {
        assert_eq!(Error::Usage("x".into()).exit_code(), 2);
        assert_eq!(
            Error::Drifted {
                secret: "s".into(),
                version: 1
            }
            .exit_code(),
            3
        );
        assert_eq!(
            Error::NotHandedOver {
                secret: "s".into(),
                path: "p".into()
            }
            .exit_code(),
            4
        );
        assert_eq!(Error::NotImplemented("rotate").exit_code(), 1);
        assert!(
            severity(75) > severity(3) && severity(3) > severity(0) && severity(1) > severity(75)
        );
    }
}
