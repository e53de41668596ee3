//! API errors and the `Status` bodies the real API server answers with.

use serde_json::{Value, json};

use super::registry::ResourceType;

/// An API failure: the HTTP code and the `Status` object the server sends for it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    /// HTTP status code (404, 409, 422…).
    pub code: u16,
    /// Machine-readable reason (`NotFound`, `AlreadyExists`, `Conflict`, `Invalid`…).
    pub reason: &'static str,
    /// Human-readable message, worded like kube-apiserver's.
    pub message: String,
    /// The `details` field of the `Status`, if any.
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

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    fn details_for(rt: &ResourceType, name: &str) -> Value {
        let mut d = json!({ "name": name, "kind": rt.plural });
        if !rt.group.is_empty() {
            d["group"] = json!(rt.group);
        }
        d
    }

    fn qualified(rt: &ResourceType) -> String {
        if rt.group.is_empty() {
            rt.plural.clone()
        } else {
            format!("{}.{}", rt.plural, rt.group)
        }
    }

    /// 404: the object does not exist.
    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", Self::qualified(rt)),
        )
        .with_details(Self::details_for(rt, name))
    }

    /// 404 for a URL that names no served resource.
    pub fn no_route(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
        .with_details(json!({}))
    }

    /// 409: create of an object whose name is taken.
    pub fn already_exists(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", Self::qualified(rt)),
        )
        .with_details(Self::details_for(rt, name))
    }

    /// 409: optimistic-concurrency failure (stale resourceVersion or UID precondition).
    pub fn conflict(rt: &ResourceType, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                Self::qualified(rt)
            ),
        )
        .with_details(Self::details_for(rt, name))
    }

    /// 422: the object fails validation; `causes` are `(field, message)` pairs.
    pub fn invalid(rt: &ResourceType, name: &str, causes: &[(String, String)]) -> Self {
        let text: Vec<String> = causes.iter().map(|(f, m)| format!("{f}: {m}")).collect();
        let message = if text.len() == 1 {
            text.join("")
        } else {
            format!("[{}]", text.join(", "))
        };
        let causes: Vec<Value> = causes
            .iter()
            .map(|(f, m)| json!({ "reason": "FieldValueInvalid", "message": m, "field": f }))
            .collect();
        let mut details = json!({ "name": name, "kind": rt.kind, "causes": causes });
        if !rt.group.is_empty() {
            details["group"] = json!(rt.group);
        }
        Self::new(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {message}", rt.kind),
        )
        .with_details(details)
    }

    /// 400: a malformed request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 500 with no reason: what kube-apiserver answers for a plain (non-API) error from its
    /// storage layer, such as a create that carries a resourceVersion.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "", message)
    }

    /// 500 InternalError, as `errors.NewInternalError` words it (the Service allocators'
    /// "range is full", a webhook that cannot be called).
    pub fn internal_error(cause: impl Into<String>) -> Self {
        let cause = cause.into();
        Self::new(500, "InternalError", format!("Internal error occurred: {cause}"))
            .with_details(json!({ "causes": [{ "message": cause }] }))
    }

    /// 403 from the NamespaceLifecycle admission plugin: a create in a namespace that is
    /// being deleted, with the `NamespaceTerminating` cause clients look for.
    pub fn namespace_terminating(rt: &ResourceType, name: &str, ns: &str) -> Self {
        let mut e = Self::forbidden(
            rt,
            name,
            &format!("unable to create new content in namespace {ns} because it is being terminated"),
        );
        if let Some(d) = e.details.as_mut() {
            d["causes"] = json!([{
                "reason": "NamespaceTerminating",
                "message": format!("namespace {ns} is being terminated"),
                "field": "metadata.namespace",
            }]);
        }
        e
    }

    /// 403: refused by policy (e.g. new content in a terminating namespace).
    pub fn forbidden(rt: &ResourceType, name: &str, why: &str) -> Self {
        Self::new(
            403,
            "Forbidden",
            format!("{} \"{name}\" is forbidden: {why}", Self::qualified(rt)),
        )
        .with_details(Self::details_for(rt, name))
    }

    /// 405: the verb is not supported on this path.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    /// 410: the requested resourceVersion (or continue token) is compacted away.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 504: a list or watch at a resourceVersion the server has not reached, worded and
    /// detailed like storage's TooLargeResourceVersionError (clients retry on the cause).
    pub fn too_large_resource_version(wanted: u64, current: u64) -> Self {
        Self::new(
            504,
            "Timeout",
            format!("Timeout: Too large resource version: {wanted}, current: {current}"),
        )
        .with_details(json!({
            "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
            "retryAfterSeconds": 1,
        }))
    }

    /// 504: the request ran past the server's request timeout.
    pub fn request_timeout() -> Self {
        Self::new(
            504,
            "Timeout",
            "Timeout: request did not complete within requested timeout - context deadline exceeded",
        )
        .with_details(json!({}))
    }

    /// 415: unsupported patch content type.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }

    /// An injected fault, answered as kube-apiserver answers that code: 409 `Conflict`
    /// naming the object `target` (resource type and name, when the request names one), 429
    /// `TooManyRequests` with `retryAfterSeconds` (the server adds `Retry-After`), 500
    /// `InternalError` with its cause, 503 `ServiceUnavailable`, 504 `Timeout`, 410 `Expired`.
    pub fn injected(code: u16, target: Option<&(ResourceType, String)>) -> Self {
        let cause = "injected fault";
        match code {
            409 => match target {
                Some((rt, name)) => Self::conflict(
                    rt,
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                ),
                None => Self::new(
                    409,
                    "Conflict",
                    "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again",
                ),
            },
            410 => Self::expired(format!("too old resource version ({cause})")),
            429 => Self::new(
                429,
                "TooManyRequests",
                "Too many requests, please try again later.",
            )
            .with_details(json!({ "retryAfterSeconds": 1 })),
            503 => Self::new(
                503,
                "ServiceUnavailable",
                format!("the server is currently unable to handle the request ({cause})"),
            )
            .with_details(json!({ "retryAfterSeconds": 1 })),
            504 => Self::new(
                504,
                "Timeout",
                format!("Timeout: request did not complete within the allotted timeout ({cause})"),
            )
            .with_details(json!({ "retryAfterSeconds": 1 })),
            _ => Self::new(
                code,
                "InternalError",
                format!("Internal error occurred: {cause}: HTTP {code}"),
            )
            .with_details(json!({ "causes": [{ "message": format!("{cause}: HTTP {code}") }] })),
        }
    }

    /// The `Status` object for this error.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "code": self.code,
        });
        // `reason` is omitted when empty (StatusReasonUnknown), as Go's omitempty does.
        if !self.reason.is_empty() {
            s["reason"] = json!(self.reason);
        }
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

/// The `Status` a successful delete answers with when the object is gone at once.
pub fn success(rt: &ResourceType, name: &str, uid: &str) -> Value {
    let mut details = json!({ "name": name, "kind": rt.plural, "uid": uid });
    if !rt.group.is_empty() {
        details["group"] = json!(rt.group);
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}

impl ApiError {
    /// 422 for a JSON patch that does not apply (a failed `test`, a missing path).
    pub fn invalid_patch(message: impl Into<String>) -> Self {
        Self::new(422, "Invalid", message)
    }
}
