//! Request extractors: strict JSON bodies and query strings (unknown fields, types and formats
//! become 4xx errors naming the field), pagination parameters and opaque cursors, bearer-token
//! authentication with a role check per route, and the client IP.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::IntoParams;

use crate::platform::AppState;
use crate::platform::error::ApiError;
use crate::platform::store::{PageRequest, Principal, StaffRole};

/// Splits a serde message into (code, field, message), taking the field from "unknown field
/// `x`" / "missing field `x`" messages when the path does not already name it.
fn describe(path: &str, message: &str) -> (String, Option<String>, String) {
    let message = message
        .rsplit_once(" at line ")
        .map_or(message, |(m, _)| m)
        .to_string();
    let quoted = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_string)
    };
    let parent = (path != "." && !path.is_empty()).then(|| path.to_string());
    let join = |name: String| match &parent {
        Some(p) if p == &name || p.ends_with(&format!(".{name}")) => p.clone(),
        Some(p) => format!("{p}.{name}"),
        None => name,
    };
    if let Some(name) = quoted("unknown field `") {
        return ("unknown_field".into(), Some(join(name)), message);
    }
    if let Some(name) = quoted("missing field `") {
        return ("missing_field".into(), Some(join(name)), message);
    }
    ("invalid_field".into(), parent, message)
}

/// Parses a JSON body strictly into `T`.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            let message = inner.to_string();
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("the body is not valid JSON: {message}"),
            );
        }
        let (code, field, message) = describe(&path, &inner.to_string());
        let mut error = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message);
        error.field = field;
        error
    })?;
    de.end().map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("unexpected data after the JSON value: {e}"),
        )
    })?;
    Ok(value)
}

/// A JSON body that must be `application/json` and deserialize into `T` exactly.
#[derive(Debug)]
pub struct ValidJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ValidJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the body is too large",
                )
            } else {
                ApiError::new(rejection.status(), "bad_body", rejection.body_text())
            }
        })?;
        parse_json(&bytes).map(ValidJson)
    }
}

/// A query string that must deserialize into `T` exactly (unknown parameters are errors).
#[derive(Debug)]
pub struct ValidQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ValidQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(query)
            .map(ValidQuery)
            .map_err(|e| {
                let (_, field, message) = describe(".", &e.to_string());
                let mut error =
                    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_query", message);
                error.field = field;
                error
            })
    }
}

/// `?limit=&cursor=` on every list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Items per page, 1–100 (default 50).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageParams {
    /// The storage page request, or 422 naming `limit` or `cursor`.
    pub fn to_request(&self) -> Result<PageRequest, ApiError> {
        let limit = match self.limit {
            None => 50,
            Some(n @ 1..=100) => i64::from(n),
            Some(_) => return Err(ApiError::invalid("limit", "must be between 1 and 100")),
        };
        let after = match &self.cursor {
            None => None,
            Some(cursor) => Some(
                decode_cursor(cursor)
                    .ok_or_else(|| ApiError::invalid("cursor", "not a cursor from this API"))?,
            ),
        };
        Ok(PageRequest { limit, after })
    }
}

/// Encodes a page position as an opaque cursor.
pub fn encode_cursor(next: Option<(i64, String)>) -> Option<String> {
    next.map(|(key, id)| URL_SAFE_NO_PAD.encode(format!("{key}:{id}")))
}

fn decode_cursor(cursor: &str) -> Option<(i64, String)> {
    if cursor.len() > 200 {
        return None;
    }
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
    let (key, id) = text.split_once(':')?;
    Some((key.parse().ok()?, id.to_string()))
}

/// The bearer token of the request, if it carries a well-formed one.
pub fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && token.len() <= 256)
        .then_some(token)
}

/// Any signed-in caller (401 otherwise).
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who.
    pub principal: Principal,
    /// Their bearer token (for logout).
    pub token: String,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer_token(parts).ok_or_else(|| {
            ApiError::unauthenticated("sign in and send `Authorization: Bearer <token>`")
        })?;
        let now = state.now();
        let principal = state
            .store
            .principal_for_token(token, now)
            .await?
            .ok_or_else(|| ApiError::unauthenticated("the session is invalid or has expired"))?;
        Ok(Caller {
            principal,
            token: token.to_string(),
        })
    }
}

/// A signed-in applicant (403 for staff).
#[derive(Debug, Clone)]
pub struct ApplicantCaller {
    /// Applicant id.
    pub id: String,
    /// As a principal (for audit entries).
    pub principal: Principal,
}

impl FromRequestParts<AppState> for ApplicantCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        match caller.principal {
            Principal::Applicant { id } => Ok(ApplicantCaller {
                principal: Principal::Applicant { id: id.clone() },
                id,
            }),
            Principal::Staff { .. } => Err(ApiError::forbidden(
                "this route is for applicants; staff use the review and admin routes",
            )),
        }
    }
}

/// A signed-in reviewer or admin (403 for applicants).
#[derive(Debug, Clone)]
pub struct ReviewerCaller(pub Principal);

impl FromRequestParts<AppState> for ReviewerCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        match caller.principal {
            p @ Principal::Staff { .. } => Ok(ReviewerCaller(p)),
            Principal::Applicant { .. } => Err(ApiError::forbidden("reviewers only")),
        }
    }
}

/// A signed-in admin (403 for everyone else).
#[derive(Debug, Clone)]
pub struct AdminCaller(pub Principal);

impl FromRequestParts<AppState> for AdminCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        match caller.principal {
            p @ Principal::Staff {
                role: StaffRole::Admin,
                ..
            } => Ok(AdminCaller(p)),
            _ => Err(ApiError::forbidden("admins only")),
        }
    }
}

/// The client's IP: the first `X-Forwarded-For` hop when configured to trust it, else the peer
/// address, else unknown.
#[derive(Debug, Clone)]
pub struct ClientIp(pub Option<String>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| *addr);
        Ok(ClientIp(crate::platform::attempts::client_ip(
            &parts.headers,
            peer,
            state.config.trust_forwarded_for,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        email: crate::platform::types::Email,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        contact: Inner,
    }

    fn err(body: &str) -> ApiError {
        parse_json::<Outer>(body.as_bytes()).expect_err("must fail")
    }

    #[test]
    fn json_errors_name_the_field() {
        let e = err(r#"{"name":"a","contact":{"email":"nope"}}"#);
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.code, "invalid_field");
        assert_eq!(e.field.as_deref(), Some("contact.email"));
        assert!(e.message.contains("email address"), "{}", e.message);
        assert!(!e.message.contains("line"), "{}", e.message);

        let e = err(r#"{"name":"a","contact":{"email":"a@b.co"},"extra":1}"#);
        assert_eq!(e.code, "unknown_field");
        assert_eq!(e.field.as_deref(), Some("extra"));

        let e = err(r#"{"name":"a","contact":{}}"#);
        assert_eq!(e.code, "missing_field");
        assert_eq!(e.field.as_deref(), Some("contact.email"));

        let e = err(r#"{"name":"a","#);
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.code, "malformed_json");

        let e = err(r#"{"name":"a","contact":{"email":"a@b.co"}} trailing"#);
        assert_eq!(e.code, "malformed_json");
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = encode_cursor(Some((42, "att_x".into()))).expect("cursor");
        let params = PageParams {
            limit: Some(10),
            cursor: Some(cursor),
        };
        let request = params.to_request().expect("valid");
        assert_eq!(request.after, Some((42, "att_x".into())));
        let bad = PageParams {
            limit: None,
            cursor: Some("%%%".into()),
        };
        assert_eq!(
            bad.to_request().expect_err("bad").field.as_deref(),
            Some("cursor")
        );
        let too_many = PageParams {
            limit: Some(101),
            cursor: None,
        };
        assert!(too_many.to_request().is_err());
    }
}
