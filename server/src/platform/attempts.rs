//! Lockout and rate limiting of guesses: a staff account takes at most
//! `failed_attempts_per_hour` wrong passwords an hour, and a client at most as many unknown,
//! expired or used links; past that every try (even a right one) gets 429 with `Retry-After`
//! until the oldest failure leaves the hour.

use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, StatusCode};

use super::AppState;
use super::error::ApiError;
use super::store::AttemptScope;

/// Refuses when `subject` has no failed attempts left this hour.
pub async fn check(state: &AppState, scope: AttemptScope, subject: &str) -> Result<(), ApiError> {
    let now = state.now();
    let (failures, frees_at) = state.store.failed_attempts(scope, subject, now).await?;
    if failures < i64::from(state.config.failed_attempts_per_hour) {
        return Ok(());
    }
    let wait = frees_at.map_or(1, |at| (at - now).max(1)) as u64;
    let what = match scope {
        AttemptScope::Login => "failed sign-ins for this account",
        AttemptScope::Link => "invalid links from this address",
    };
    tracing::warn!(scope = ?scope, failures, "attempts refused past the hourly limit");
    Err(ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        format!(
            "too many {what} in the last hour; try again in {} minute(s)",
            wait.div_ceil(60)
        ),
    )
    .with_retry_after(wait))
}

/// Counts a failed attempt of `subject`. A storage failure is logged, never raised: the
/// caller's own answer (401 or 404) matters more.
pub async fn failed(state: &AppState, scope: AttemptScope, subject: &str) {
    if let Err(e) = state
        .store
        .record_failed_attempt(scope, subject, state.now())
        .await
    {
        tracing::error!(error = %e, "recording a failed attempt");
    }
}

/// The client's address: the first `X-Forwarded-For` entry when `trust_forwarded_for` is set
/// (behind a proxy that writes it), else the peer of the connection.
pub fn client_ip(
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    trust_forwarded: bool,
) -> Option<String> {
    let forwarded = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|v| v.parse::<IpAddr>().is_ok());
    match forwarded.filter(|_| trust_forwarded) {
        Some(ip) => Some(ip.to_string()),
        None => peer.map(|addr| addr.ip().to_string()),
    }
}

/// The subject that link attempts are counted under.
pub fn link_subject(ip: Option<&str>) -> String {
    format!("ip:{}", ip.unwrap_or("unknown"))
}
