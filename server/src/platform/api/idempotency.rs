//! `Idempotency-Key` on creates: the first POST with a key runs and its successful response is
//! stored; a retry with the same key and the same request gets that response again (marked
//! `Idempotent-Replayed: true`) instead of creating a second record; the same key with a
//! different request is refused. Keys are scoped to the caller's credentials and kept 24 hours.
//! Sign-in routes (`/v1/auth/*`) are excluded so session tokens are never stored.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::platform::AppState;
use crate::platform::crypto::sha256_hex;
use crate::platform::error::ApiError;
use crate::platform::store::IdempotencyBegin;

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// Largest request body buffered for hashing (matches the router's body limit).
pub const BODY_LIMIT: usize = 1024 * 1024;
/// Largest response stored for replay.
const RESPONSE_LIMIT: usize = 4 * 1024 * 1024;

fn valid_key(key: &str) -> bool {
    (1..=128).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The middleware.
pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST || req.uri().path().starts_with("/v1/auth/") {
        return next.run(req).await;
    }
    let Some(raw) = req.headers().get(HEADER) else {
        return next.run(req).await;
    };
    let Some(key) = raw
        .to_str()
        .ok()
        .filter(|k| valid_key(k))
        .map(str::to_string)
    else {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
            "Idempotency-Key must be 1-128 characters of letters, digits, '-', '_', '.', ':'",
        )
        .with_field("Idempotency-Key")
        .into_response();
    };
    let principal = sha256_hex(
        req.headers()
            .get(AUTHORIZATION)
            .map_or(b"anonymous".as_slice(), HeaderValue::as_bytes),
    );
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let (parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, BODY_LIMIT).await else {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the body is too large",
        )
        .into_response();
    };
    let request_hash = sha256_hex(&bytes);
    let now = state.now();
    let begun = state
        .store
        .idempotency_begin(&principal, &key, &method, &path, &request_hash, now)
        .await;
    match begun {
        Err(e) => ApiError::from(e).into_response(),
        Ok(IdempotencyBegin::Started) => {
            let response = next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
            if !response.status().is_success() {
                release(&state, &principal, &key).await;
                return response;
            }
            let (rparts, rbody) = response.into_parts();
            let Ok(body) = to_bytes(rbody, RESPONSE_LIMIT).await else {
                release(&state, &principal, &key).await;
                return ApiError::internal(anyhow::anyhow!("response too large to store"))
                    .into_response();
            };
            match std::str::from_utf8(&body) {
                Ok(text) => {
                    let content_type = rparts
                        .headers
                        .get(CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok());
                    if let Err(e) = state
                        .store
                        .idempotency_finish(
                            &principal,
                            &key,
                            rparts.status.as_u16(),
                            content_type,
                            text,
                        )
                        .await
                    {
                        tracing::warn!(error = %e, "could not store idempotent response");
                    }
                }
                Err(_) => release(&state, &principal, &key).await,
            }
            Response::from_parts(rparts, Body::from(body))
        }
        Ok(IdempotencyBegin::Replay {
            status,
            content_type,
            body,
        }) => {
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            if let Some(ct) = content_type.and_then(|ct| HeaderValue::from_str(&ct).ok()) {
                response.headers_mut().insert(CONTENT_TYPE, ct);
            }
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            response
        }
        Ok(IdempotencyBegin::InProgress) => ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_in_progress",
            "a request with this Idempotency-Key is still being processed; retry shortly",
        )
        .into_response(),
        Ok(IdempotencyBegin::Mismatch) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used for a different request",
        )
        .with_field("Idempotency-Key")
        .into_response(),
    }
}

async fn release(state: &AppState, principal: &str, key: &str) {
    if let Err(e) = state.store.idempotency_abort(principal, key).await {
        tracing::warn!(error = %e, "could not release idempotency key");
    }
}
