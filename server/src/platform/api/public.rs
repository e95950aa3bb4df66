//! Routes without a session: health, the OpenAPI document, applying, signing in (magic links
//! for applicants, passwords for staff) and out, and opening an interview link.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{Caller, ClientIp, ValidJson};
use super::views::{ApplicantView, IdempotencyKeyParam};
use crate::platform::AppState;
use crate::platform::attempts::{self, link_subject};
use crate::platform::clock::rfc3339;
use crate::platform::crypto::{decoy_password_hash, verify_password};
use crate::platform::error::{ApiError, ErrorBody, StoreError};
use crate::platform::instance::Load;
use crate::platform::mail::Message;
use crate::platform::store::{AttemptScope, InterviewStatus, NewApplicant, Principal};
use crate::platform::types::{
    Affirmed, CountryCode, DisciplineId, Email, Paragraph, PersonName, YearsExperience,
};

/// Readiness, database reachability and load, for a load balancer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, `degraded` (database unreachable) or `draining` (shutting down).
    pub status: String,
    /// `ok` or the database error class.
    pub database: String,
    /// This instance's live interviews against its capacity.
    #[serde(flatten)]
    pub load: Load,
}

/// Health check: 200 while the instance can serve (database reachable, not shutting down),
/// 503 otherwise. The body says how loaded it is: `accepting_interviews` is false at capacity,
/// when new interviews are refused with `503 at_capacity` (resumes of its own are still taken).
#[utoipa::path(get, path = "/healthz", tag = "system",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let load = state.instance.load();
    let database = match state.store.ping().await {
        Ok(()) => "ok",
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unreachable");
            "unreachable"
        }
    };
    let (code, status) = if database != "ok" {
        (StatusCode::SERVICE_UNAVAILABLE, "degraded")
    } else if load.draining {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else {
        (StatusCode::OK, "ok")
    };
    (
        code,
        Json(Health {
            status: status.into(),
            database: database.into(),
            load,
        }),
    )
}

/// The OpenAPI document served at `/openapi.json` (serialized once at start-up).
#[derive(Debug, Clone)]
pub struct OpenApiJson(pub std::sync::Arc<String>);

/// This API's OpenAPI 3 document, generated from the handlers and types.
#[utoipa::path(get, path = "/openapi.json", tag = "system",
    responses((status = 200, description = "The OpenAPI 3 document", content_type = "application/json")))]
pub async fn openapi_json(axum::Extension(doc): axum::Extension<OpenApiJson>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        doc.0.as_str().to_owned(),
    )
        .into_response()
}

/// The two attestations every applicant makes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Attestations {
    /// "I am 18 years of age or older." Must be `true`.
    pub adult: Affirmed,
    /// "I am legally able to work as an independent contractor." Must be `true`.
    pub contractor_eligible: Affirmed,
}

/// An application.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    /// Full name.
    pub name: PersonName,
    /// Email; sign-in links go here.
    pub email: Email,
    /// ISO 3166-1 alpha-2 country of residence.
    pub country: CountryCode,
    /// Disciplines to be screened in: rubric ids such as `medicine` (1 or more, no repeats).
    pub disciplines: Vec<DisciplineId>,
    /// Degrees, licences, certifications.
    pub credentials: Paragraph,
    /// Relevant professional experience.
    pub experience: Paragraph,
    /// Years of professional experience.
    pub years_experience: YearsExperience,
    /// Required attestations.
    pub attestations: Attestations,
}

/// Applies. The applicant record is created and a sign-in link is sent to the email.
#[utoipa::path(post, path = "/v1/applicants", tag = "public",
    params(IdempotencyKeyParam),
    request_body = ApplyRequest,
    responses(
        (status = 201, description = "Applied; a sign-in link was sent", body = ApplicantView),
        (status = 409, description = "Email already applied", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody)))]
pub async fn apply(
    State(state): State<AppState>,
    ValidJson(req): ValidJson<ApplyRequest>,
) -> Result<(StatusCode, Json<ApplicantView>), ApiError> {
    let disciplines = state.known_disciplines(&req.disciplines, "disciplines")?;
    let now = state.now();
    let applicant = state
        .store
        .create_applicant(
            &NewApplicant {
                name: req.name.as_str().to_string(),
                email: req.email.as_str().to_string(),
                country: req.country.as_str().to_string(),
                disciplines,
                credentials: req.credentials.as_str().to_string(),
                experience: req.experience.as_str().to_string(),
                years_experience: req.years_experience.get(),
            },
            now,
        )
        .await?;
    send_magic_link(&state, &applicant.id, &applicant.email, now).await?;
    Ok((StatusCode::CREATED, Json(ApplicantView::from(&applicant))))
}

async fn send_magic_link(
    state: &AppState,
    applicant_id: &str,
    email: &str,
    now: i64,
) -> Result<(), ApiError> {
    let ttl = i64::from(state.config.magic_link_minutes) * 60;
    let (token, _) = state.store.issue_magic_link(applicant_id, ttl, now).await?;
    state.mailer.send(Message {
        to: email.to_string(),
        subject: "Your Nextmark sign-in link".into(),
        link: format!("{}/sign-in?token={token}", state.public_url()),
    });
    Ok(())
}

/// A request for a sign-in link.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MagicLinkRequest {
    /// The email used to apply.
    pub email: Email,
}

/// Acknowledgement that does not reveal whether the email is known.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// Always `accepted`.
    pub status: String,
    /// What happens next.
    pub message: String,
}

/// Sends a sign-in link to an applicant's email (always 202, known or not).
#[utoipa::path(post, path = "/v1/auth/magic-link", tag = "public",
    request_body = MagicLinkRequest,
    responses((status = 202, body = Accepted), (status = 422, body = ErrorBody)))]
pub async fn request_magic_link(
    State(state): State<AppState>,
    ValidJson(req): ValidJson<MagicLinkRequest>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let now = state.now();
    if let Some(applicant) = state.store.applicant_by_email(req.email.as_str()).await? {
        send_magic_link(&state, &applicant.id, &applicant.email, now).await?;
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            status: "accepted".into(),
            message: "if this email has applied, a sign-in link is on its way".into(),
        }),
    ))
}

/// A magic link token to exchange.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The `token` parameter of the sign-in link.
    pub token: String,
}

/// A session.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// When the session ends (RFC 3339).
    pub expires_at: String,
    /// `applicant`, `reviewer` or `admin`.
    pub role: String,
    /// The applicant or staff id.
    pub subject_id: String,
}

/// Exchanges a single-use sign-in link token for an applicant session.
#[utoipa::path(post, path = "/v1/auth/magic-link/verify", tag = "public",
    request_body = VerifyRequest,
    responses((status = 200, body = SessionView), (status = 401, description = "Invalid, expired or used link", body = ErrorBody),
        (status = 429, description = "Too many invalid links from this address in the last hour", body = ErrorBody)))]
pub async fn verify_magic_link(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ValidJson(req): ValidJson<VerifyRequest>,
) -> Result<Json<SessionView>, ApiError> {
    let now = state.now();
    let subject = link_subject(ip.as_deref());
    attempts::check(&state, AttemptScope::Link, &subject).await?;
    if req.token.is_empty() || req.token.len() > 1024 {
        attempts::failed(&state, AttemptScope::Link, &subject).await;
        return Err(ApiError::unauthenticated("invalid sign-in link").with_field("token"));
    }
    let redeemed = state.store.redeem_magic_link(&req.token, now).await;
    if matches!(&redeemed, Err(e) if !matches!(e, StoreError::Internal(_))) {
        attempts::failed(&state, AttemptScope::Link, &subject).await;
    }
    let applicant_id = match redeemed {
        Ok(id) => id,
        Err(StoreError::Internal(e)) => return Err(ApiError::internal(e)),
        Err(StoreError::Expired { message, .. }) => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "link_expired",
                message,
            ));
        }
        Err(StoreError::Conflict { message, .. }) => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "link_used",
                message,
            ));
        }
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_link",
                "this sign-in link is not valid",
            ));
        }
    };
    let principal = Principal::Applicant { id: applicant_id };
    let ttl = i64::from(state.config.applicant_session_hours) * 3600;
    let (token, expires_at) = state.store.create_session(&principal, ttl, now).await?;
    Ok(Json(SessionView {
        token,
        token_type: "Bearer".into(),
        expires_at: rfc3339(expires_at),
        role: principal.role_name().into(),
        subject_id: principal.id().to_string(),
    }))
}

/// Staff credentials.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Staff email.
    pub email: Email,
    /// Password.
    pub password: String,
}

/// Signs a reviewer or admin in with email and password.
#[utoipa::path(post, path = "/v1/auth/login", tag = "public",
    request_body = LoginRequest,
    responses((status = 200, body = SessionView), (status = 401, description = "Wrong email or password", body = ErrorBody),
        (status = 429, description = "Too many failed sign-ins for this account in the last hour (locked until the oldest is an hour old)", body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    ValidJson(req): ValidJson<LoginRequest>,
) -> Result<Json<SessionView>, ApiError> {
    if req.password.len() > 1024 {
        return Err(ApiError::invalid("password", "too long"));
    }
    // Counted per address whether or not an account has it, so the answer says nothing
    // about which addresses are staff.
    let account = req.email.as_str().to_string();
    attempts::check(&state, AttemptScope::Login, &account).await?;
    let found = state.store.staff_by_email(req.email.as_str()).await?;
    let hash = found
        .as_ref()
        .map_or_else(|| decoy_password_hash().to_string(), |(_, h)| h.clone());
    let password = req.password;
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .map_err(|e| ApiError::internal(anyhow::Error::new(e).context("verifying password")))?;
    let staff = match (ok, found) {
        (true, Some((staff, _))) => staff,
        _ => {
            attempts::failed(&state, AttemptScope::Login, &account).await;
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "wrong email or password",
            ));
        }
    };
    let now = state.now();
    let principal = Principal::Staff {
        id: staff.id.clone(),
        role: staff.role,
    };
    let ttl = i64::from(state.config.staff_session_hours) * 3600;
    let (token, expires_at) = state.store.create_session(&principal, ttl, now).await?;
    Ok(Json(SessionView {
        token,
        token_type: "Bearer".into(),
        expires_at: rfc3339(expires_at),
        role: principal.role_name().into(),
        subject_id: staff.id,
    }))
}

/// Ends the caller's session.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "session",
    security(("bearer" = [])),
    responses((status = 204, description = "Signed out"), (status = 401, body = ErrorBody)))]
pub async fn logout(State(state): State<AppState>, caller: Caller) -> Result<StatusCode, ApiError> {
    state.store.delete_session(&caller.token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What an interview link leads to.
#[derive(Debug, Serialize, ToSchema)]
pub struct InterviewLinkView {
    /// The interview.
    pub interview_id: String,
    /// Rubric id.
    pub discipline: String,
    /// Discipline name.
    pub discipline_name: String,
    /// Status.
    pub status: InterviewStatus,
    /// When the link expires (RFC 3339).
    pub expires_at: String,
    /// When completed.
    pub completed_at: Option<String>,
}

/// Opens an interview link: the link token is the credential (valid 7 days from issue).
#[utoipa::path(get, path = "/v1/interview-links/{token}", tag = "interview",
    params(("token" = String, Path, description = "The token from the interview link")),
    responses(
        (status = 200, body = InterviewLinkView),
        (status = 404, description = "Unknown link", body = ErrorBody),
        (status = 410, description = "The link expired", body = ErrorBody),
        (status = 429, description = "Too many invalid links from this address in the last hour", body = ErrorBody)))]
pub async fn open_interview_link(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(token): Path<String>,
) -> Result<Json<InterviewLinkView>, ApiError> {
    let subject = link_subject(ip.as_deref());
    attempts::check(&state, AttemptScope::Link, &subject).await?;
    if token.len() > 256 {
        attempts::failed(&state, AttemptScope::Link, &subject).await;
        return Err(ApiError::not_found("interview link"));
    }
    let interview = match state
        .store
        .get_interview_by_token(&token, state.now())
        .await
    {
        Ok(interview) => interview,
        Err(StoreError::Internal(e)) => return Err(ApiError::internal(e)),
        Err(e) => {
            attempts::failed(&state, AttemptScope::Link, &subject).await;
            return Err(e.into());
        }
    };
    Ok(Json(InterviewLinkView {
        discipline_name: state.discipline_name(&interview.discipline),
        interview_id: interview.id,
        discipline: interview.discipline,
        status: interview.status,
        expires_at: rfc3339(interview.expires_at),
        completed_at: interview.completed_at.map(rfc3339),
    }))
}
