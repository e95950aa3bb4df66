//! Errors by layer: [`StoreError`] says what went wrong in platform terms (not found, a rule
//! refused, expired, internal); [`ApiError`] is the one HTTP edge type that turns any of them into
//! `{"error":{"code","message","field"}}` with the right status, logging the cause chain of
//! unexpected failures instead of showing it.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// What a platform operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The thing does not exist (or is not visible to the caller).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A rule of the journey refuses the request in the current state (409).
    #[error("{message}")]
    Conflict {
        /// Stable machine-readable code.
        code: &'static str,
        /// What happened and what to do.
        message: String,
    },
    /// The link, case study or window has expired (410).
    #[error("{message}")]
    Expired {
        /// Stable machine-readable code.
        code: &'static str,
        /// What expired and when.
        message: String,
    },
    /// The caller may not do this yet, for a reason they can fix (403).
    #[error("{message}")]
    Forbidden {
        /// Stable machine-readable code.
        code: &'static str,
        /// Why and what is missing.
        message: String,
    },
    /// A value is well-formed but not acceptable here (422).
    #[error("{field}: {message}")]
    Invalid {
        /// The offending request field.
        field: String,
        /// Why.
        message: String,
    },
    /// Anything unexpected (database down, corrupt row): a 500, logged with its cause chain.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl StoreError {
    /// A 409 refusal.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }

    /// A 410 expiry.
    pub fn expired(code: &'static str, message: impl Into<String>) -> Self {
        Self::Expired {
            code,
            message: message.into(),
        }
    }

    /// A 403 refusal.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::Forbidden {
            code,
            message: message.into(),
        }
    }

    /// A 422 on one field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Attaches "what we were doing" to database errors, turning them into [`StoreError::Internal`].
pub trait DbContext<T> {
    /// Wraps the error with a description of the operation.
    fn ctx(self, doing: &'static str) -> Result<T, StoreError>;
}

impl<T> DbContext<T> for Result<T, sqlx::Error> {
    fn ctx(self, doing: &'static str) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::Internal(anyhow::Error::new(e).context(doing)))
    }
}

/// Whether a database error is a unique-constraint violation (same on SQLite and PostgreSQL).
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|e| e.is_unique_violation())
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// One error: a stable code for programs, a sentence for people, and the field if one is to blame.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_field`, `unauthenticated`, `reapply_too_soon`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// The request field at fault (JSON path or parameter name), or null.
    pub field: Option<String>,
}

/// The HTTP edge error: every handler returns `Result<_, ApiError>`.
#[derive(Debug)]
pub struct ApiError {
    /// Response status.
    pub status: StatusCode,
    /// Stable code.
    pub code: String,
    /// Message shown to the client.
    pub message: String,
    /// Field at fault.
    pub field: Option<String>,
    /// For 500s: the cause, logged but not sent.
    pub source: Option<anyhow::Error>,
    /// For 429s and 503s: seconds to wait, sent as `Retry-After`.
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    /// An error with a status and code.
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            field: None,
            source: None,
            retry_after_secs: None,
        }
    }

    /// Says when to try again (`Retry-After`).
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// Names the field at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 401: no valid credentials.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    /// 403: authenticated but not allowed.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404 for a named kind of thing.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    /// 422 on one field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message).with_field(field)
    }

    /// 500 with a cause to log.
    pub fn internal(source: anyhow::Error) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal".into(),
            message: "internal error; it has been logged".into(),
            field: None,
            source: Some(source),
            retry_after_secs: None,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(what) => ApiError::not_found(what),
            StoreError::Conflict { code, message } => {
                ApiError::new(StatusCode::CONFLICT, code, message)
            }
            StoreError::Expired { code, message } => ApiError::new(StatusCode::GONE, code, message),
            StoreError::Forbidden { code, message } => {
                ApiError::new(StatusCode::FORBIDDEN, code, message)
            }
            StoreError::Invalid { field, message } => ApiError::invalid(field, message),
            StoreError::Internal(e) => ApiError::internal(e),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        ApiError::internal(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(source) = &self.source {
            tracing::error!(error = format!("{source:#}"), "request failed");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                field: self.field,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}
