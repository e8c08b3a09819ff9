//! Errors as the API server reports them: `kind: Status` bodies with a reason and a code.

use serde_json::{json, Value};

/// A failed request, rendered as a `metav1.Status` body.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, kind: &str, name: &str) -> Self {
        self.details = Some(json!({ "name": name, "kind": kind }));
        self
    }

    pub fn not_found(kind: &str, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{kind} \"{name}\" not found")).with_details(kind, name)
    }

    pub fn already_exists(kind: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{kind} \"{name}\" already exists"),
        )
        .with_details(kind, name)
    }

    pub fn conflict(kind: &str, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {kind} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again"
            ),
        )
        .with_details(kind, name)
    }

    pub fn precondition_failed(kind: &str, name: &str, what: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!("Precondition failed for {kind} \"{name}\": {what}"),
        )
        .with_details(kind, name)
    }

    pub fn invalid(kind: &str, name: &str, message: impl Into<String>) -> Self {
        Self::new(422, "Invalid", message).with_details(kind, name)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn forbidden(user: &str, verb: &str, resource: &str, namespace: Option<&str>) -> Self {
        let scope = match namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_string(),
        };
        Self::new(
            403,
            "Forbidden",
            format!("{resource} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" {scope}"),
        )
    }

    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource: {method}"),
        )
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {content_type})"))
    }

    pub fn unsupported_protobuf_kind(api_version: &str, kind: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!("the emulator cannot decode a protobuf body of kind {kind:?} (apiVersion {api_version:?}); send it as application/json"),
        )
    }

    /// A watch from a resourceVersion older than the change history the emulator keeps.
    pub fn expired(since: u64, oldest: u64) -> Self {
        Self::new(
            410,
            "Expired",
            format!("too old resource version: {since} ({oldest})"),
        )
    }

    pub fn forbidden_impersonation(user: &str, target: &str) -> Self {
        Self::new(
            403,
            "Forbidden",
            format!("users \"{target}\" is forbidden: User \"{user}\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"),
        )
    }

    /// A status injected by a test fault, with the reason the API server would give for it.
    pub fn injected(code: u16) -> Self {
        let reason = match code {
            409 => "Conflict",
            429 => "TooManyRequests",
            500 => "InternalError",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "Unknown",
        };
        Self::new(code, reason, format!("injected fault: {reason}"))
    }

    pub fn body(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
