//! Admin routes (`/v1/admin/...`): staff accounts, applicants, agreement documents (versioned,
//! hashed), roles with hourly pay, matching contractors to roles, tasks and their review, the
//! anonymized per-role export, the audit log, and an on-demand recording purge.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{AdminCaller, PageParams, ValidJson, ValidQuery, encode_cursor};
use super::views::{
    DocumentPage, DocumentView, IdempotencyKeyParam, RolePage, RoleView, TaskPage, TaskView,
    page_type,
};
use crate::platform::AppState;
use crate::platform::clock::rfc3339;
use crate::platform::crypto::hash_password;
use crate::platform::error::{ApiError, ErrorBody, StoreError};
use crate::platform::store::{DocumentKind, NewTask, StaffRole};
use crate::platform::types::{
    Currency, DisciplineId, DocumentBody, Email, HourlyRateCents, NewPassword, Paragraph,
    PersonName, TaskMinutes, Title,
};

/// A staff account.
#[derive(Debug, Serialize, ToSchema)]
pub struct StaffView {
    /// Id.
    pub id: String,
    /// Login email.
    pub email: String,
    /// Name.
    pub name: String,
    /// Role.
    pub role: StaffRole,
    /// When created.
    pub created_at: String,
}

page_type!(
    /// A page of staff.
    StaffPage, StaffView
);

/// Staff accounts.
#[utoipa::path(get, path = "/v1/admin/staff", tag = "admin", security(("bearer" = [])),
    params(PageParams),
    responses((status = 200, body = StaffPage), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_staff(
    State(state): State<AppState>,
    _admin: AdminCaller,
    ValidQuery(page): ValidQuery<PageParams>,
) -> Result<Json<StaffPage>, ApiError> {
    let page = state.store.list_staff(&page.to_request()?).await?;
    Ok(Json(StaffPage {
        items: page
            .items
            .into_iter()
            .map(|s| StaffView {
                id: s.id,
                email: s.email,
                name: s.name,
                role: s.role,
                created_at: rfc3339(s.created_at),
            })
            .collect(),
        next_cursor: encode_cursor(page.next),
    }))
}

/// A new staff account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewStaffRequest {
    /// Login email.
    pub email: Email,
    /// Name.
    pub name: PersonName,
    /// Role.
    pub role: StaffRole,
    /// Initial password (12–256 characters), stored as an argon2id hash.
    pub password: NewPassword,
}

/// Creates a reviewer or admin account.
#[utoipa::path(post, path = "/v1/admin/staff", tag = "admin", security(("bearer" = [])),
    params(IdempotencyKeyParam),
    request_body = NewStaffRequest,
    responses((status = 201, body = StaffView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_staff(
    State(state): State<AppState>,
    AdminCaller(admin): AdminCaller,
    ValidJson(req): ValidJson<NewStaffRequest>,
) -> Result<(StatusCode, Json<StaffView>), ApiError> {
    let password = req.password.expose().to_string();
    let hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| ApiError::internal(anyhow::Error::new(e).context("hashing password")))??;
    let now = state.now();
    let staff = state
        .store
        .create_staff(req.email.as_str(), req.name.as_str(), req.role, &hash, now)
        .await?;
    state
        .store
        .audit(
            &admin,
            "staff.created",
            "staff",
            &staff.id,
            &serde_json::json!({"role": staff.role}),
            now,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(StaffView {
            id: staff.id,
            email: staff.email,
            name: staff.name,
            role: staff.role,
            created_at: rfc3339(staff.created_at),
        }),
    ))
}

/// An applicant in the admin list.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApplicantSummary {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Email.
    pub email: String,
    /// Country.
    pub country: String,
    /// Disciplines applied for.
    pub disciplines: Vec<String>,
    /// Disciplines passed.
    pub passed_disciplines: Vec<String>,
    /// When applied.
    pub created_at: String,
}

page_type!(
    /// A page of applicants.
    ApplicantPage, ApplicantSummary
);

/// Applicants, oldest first (erased ones left out).
#[utoipa::path(get, path = "/v1/admin/applicants", tag = "admin", security(("bearer" = [])),
    params(PageParams),
    responses((status = 200, body = ApplicantPage), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_applicants(
    State(state): State<AppState>,
    _admin: AdminCaller,
    ValidQuery(page): ValidQuery<PageParams>,
) -> Result<Json<ApplicantPage>, ApiError> {
    let page = state.store.list_applicants(&page.to_request()?).await?;
    let mut items = Vec::with_capacity(page.items.len());
    for a in page.items {
        items.push(ApplicantSummary {
            passed_disciplines: state.store.passed_disciplines(&a.id).await?,
            id: a.id,
            name: a.name,
            email: a.email,
            country: a.country,
            disciplines: a.disciplines,
            created_at: rfc3339(a.created_at),
        });
    }
    Ok(Json(ApplicantPage {
        items,
        next_cursor: encode_cursor(page.next),
    }))
}

/// All document versions, oldest first.
#[utoipa::path(get, path = "/v1/admin/documents", tag = "admin", security(("bearer" = [])),
    params(PageParams),
    responses((status = 200, body = DocumentPage), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_documents(
    State(state): State<AppState>,
    _admin: AdminCaller,
    ValidQuery(page): ValidQuery<PageParams>,
) -> Result<Json<DocumentPage>, ApiError> {
    let page = state.store.list_documents(&page.to_request()?).await?;
    Ok(Json(DocumentPage {
        items: page.items.iter().map(DocumentView::from).collect(),
        next_cursor: encode_cursor(page.next),
    }))
}

/// A document version to publish.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDocumentRequest {
    /// Which document.
    pub kind: DocumentKind,
    /// Title.
    pub title: Title,
    /// Full text.
    pub body: DocumentBody,
}

/// Publishes the next version of the contractor agreement or the NDA; contractors must accept
/// it before their next task.
#[utoipa::path(post, path = "/v1/admin/documents", tag = "admin", security(("bearer" = [])),
    params(IdempotencyKeyParam),
    request_body = NewDocumentRequest,
    responses((status = 201, body = DocumentView), (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn publish_document(
    State(state): State<AppState>,
    AdminCaller(admin): AdminCaller,
    ValidJson(req): ValidJson<NewDocumentRequest>,
) -> Result<(StatusCode, Json<DocumentView>), ApiError> {
    let doc = state
        .store
        .publish_document(
            req.kind,
            req.title.as_str(),
            req.body.as_str(),
            &admin,
            state.now(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(DocumentView::from(&doc))))
}

/// Roles, oldest first.
#[utoipa::path(get, path = "/v1/admin/roles", tag = "admin", security(("bearer" = [])),
    params(PageParams),
    responses((status = 200, body = RolePage), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_roles(
    State(state): State<AppState>,
    _admin: AdminCaller,
    ValidQuery(page): ValidQuery<PageParams>,
) -> Result<Json<RolePage>, ApiError> {
    let page = state.store.list_roles(&page.to_request()?).await?;
    Ok(Json(RolePage {
        items: page.items.iter().map(RoleView::from).collect(),
        next_cursor: encode_cursor(page.next),
    }))
}

/// A new role.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRoleRequest {
    /// Rubric id of the discipline.
    pub discipline: DisciplineId,
    /// Name, unique within the discipline.
    pub name: Title,
    /// Hourly pay in minor units.
    pub hourly_rate_cents: HourlyRateCents,
    /// ISO 4217 currency.
    pub currency: Currency,
}

/// Creates a role in a discipline with its hourly pay.
#[utoipa::path(post, path = "/v1/admin/roles", tag = "admin", security(("bearer" = [])),
    params(IdempotencyKeyParam),
    request_body = NewRoleRequest,
    responses((status = 201, body = RoleView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_role(
    State(state): State<AppState>,
    AdminCaller(admin): AdminCaller,
    ValidJson(req): ValidJson<NewRoleRequest>,
) -> Result<(StatusCode, Json<RoleView>), ApiError> {
    let discipline = state
        .known_disciplines(std::slice::from_ref(&req.discipline), "discipline")?
        .into_iter()
        .next()
        .unwrap_or_default();
    let role = state
        .store
        .create_role(
            &discipline,
            req.name.as_str(),
            req.hourly_rate_cents.get(),
            req.currency.as_str(),
            &admin,
            state.now(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(RoleView::from(&role))))
}

/// A contractor to match.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchRequest {
    /// Applicant id (passed in the role's discipline, access active).
    pub applicant_id: String,
}

/// A role membership.
#[derive(Debug, Serialize, ToSchema)]
pub struct MatchView {
    /// Role.
    pub role_id: String,
    /// Contractor.
    pub applicant_id: String,
}

/// Matches a contractor to a role in a discipline they passed (audited; repeat is a no-op).
#[utoipa::path(post, path = "/v1/admin/roles/{role_id}/members", tag = "admin", security(("bearer" = [])),
    params(("role_id" = String, Path, description = "Role id"), IdempotencyKeyParam),
    request_body = MatchRequest,
    responses((status = 201, body = MatchView), (status = 404, body = ErrorBody),
        (status = 409, description = "not_qualified", body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn match_role(
    State(state): State<AppState>,
    AdminCaller(admin): AdminCaller,
    Path(role_id): Path<String>,
    ValidJson(req): ValidJson<MatchRequest>,
) -> Result<(StatusCode, Json<MatchView>), ApiError> {
    let now = state.now();
    let role = state.store.role(&role_id).await?;
    let applicant = state
        .store
        .applicant(&req.applicant_id)
        .await
        .map_err(|e| match e {
            StoreError::NotFound(_) => ApiError::invalid("applicant_id", "no such applicant"),
            other => other.into(),
        })?;
    let passed = state.store.passed_disciplines(&applicant.id).await?;
    let active = state
        .access_until(&applicant.id)
        .await?
        .is_some_and(|u| now < u);
    if !passed.contains(&role.discipline) || !active {
        return Err(StoreError::conflict(
            "not_qualified",
            "the applicant has no active pass in this role's discipline",
        )
        .into());
    }
    state
        .store
        .match_role(&role.id, &applicant.id, &admin, now)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(MatchView {
            role_id: role.id,
            applicant_id: applicant.id,
        }),
    ))
}

/// One anonymized work record.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExportRecord {
    /// Task id.
    pub task_id: String,
    /// Pseudonymous contributor id: stable per contributor, not linkable to them without the
    /// server secret.
    pub contributor: String,
    /// Task title.
    pub title: String,
    /// Instructions.
    pub instructions: String,
    /// The work product.
    pub output: String,
    /// Minutes spent.
    pub minutes_spent: i64,
    /// Submission date (day only, UTC).
    pub submitted_on: String,
    /// `accepted`, or null while not yet reviewed.
    pub review: Option<String>,
}

/// The anonymized export of a role.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoleExport {
    /// The role (no personal data).
    pub role: RoleView,
    /// Records, by submission time.
    pub items: Vec<ExportRecord>,
    /// Cursor for the next page.
    pub next_cursor: Option<String>,
}

/// Submitted work in a role for delivery to AI companies: pseudonymous contributor ids, no
/// names, emails, countries or applicant ids.
#[utoipa::path(get, path = "/v1/admin/roles/{role_id}/export", tag = "admin", security(("bearer" = [])),
    params(("role_id" = String, Path, description = "Role id"), PageParams),
    responses((status = 200, body = RoleExport), (status = 404, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn export_role(
    State(state): State<AppState>,
    _admin: AdminCaller,
    Path(role_id): Path<String>,
    ValidQuery(page): ValidQuery<PageParams>,
) -> Result<Json<RoleExport>, ApiError> {
    let role = state.store.role(&role_id).await?;
    let page = state
        .store
        .export_role(&role.id, &page.to_request()?)
        .await?;
    let keys = state.store.keys();
    Ok(Json(RoleExport {
        role: RoleView::from(&role),
        items: page
            .items
            .iter()
            .map(|t| ExportRecord {
                task_id: t.id.clone(),
                contributor: keys.contributor_id(t.taken_by.as_deref().unwrap_or_default()),
                title: t.title.clone(),
                instructions: t.instructions.clone(),
                output: t.output.clone().unwrap_or_default(),
                minutes_spent: t.minutes_spent.unwrap_or_default(),
                submitted_on: crate::platform::clock::from_unix(t.submitted_at.unwrap_or_default())
                    .date()
                    .to_string(),
                review: t.review.clone(),
            })
            .collect(),
        next_cursor: encode_cursor(page.next),
    }))
}

/// All tasks, oldest first.
#[utoipa::path(get, path = "/v1/admin/tasks", tag = "admin", security(("bearer" = [])),
    params(PageParams),
    responses((status = 200, body = TaskPage), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_tasks(
    State(state): State<AppState>,
    _admin: AdminCaller,
    ValidQuery(page): ValidQuery<PageParams>,
) -> Result<Json<TaskPage>, ApiError> {
    let page = state.store.list_tasks(&page.to_request()?).await?;
    Ok(Json(TaskPage {
        items: page.items.iter().map(TaskView::staff).collect(),
        next_cursor: encode_cursor(page.next),
    }))
}

/// A task to post.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTaskRequest {
    /// The role whose contractors may take it.
    pub role_id: String,
    /// Title.
    pub title: Title,
    /// What to do.
    pub instructions: Paragraph,
    /// Expected minutes, 20–60.
    pub estimated_minutes: TaskMinutes,
}

/// Posts a task to a role.
#[utoipa::path(post, path = "/v1/admin/tasks", tag = "admin", security(("bearer" = [])),
    params(IdempotencyKeyParam),
    request_body = NewTaskRequest,
    responses((status = 201, body = TaskView), (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_task(
    State(state): State<AppState>,
    AdminCaller(admin): AdminCaller,
    ValidJson(req): ValidJson<NewTaskRequest>,
) -> Result<(StatusCode, Json<TaskView>), ApiError> {
    let role = state.store.role(&req.role_id).await.map_err(|e| match e {
        StoreError::NotFound(_) => ApiError::invalid("role_id", "no such role"),
        other => other.into(),
    })?;
    let task = state
        .store
        .create_task(
            &NewTask {
                role_id: role.id,
                title: req.title.as_str().to_string(),
                instructions: req.instructions.as_str().to_string(),
                estimated_minutes: req.estimated_minutes.get(),
            },
            &admin,
            state.now(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(TaskView::staff(&task))))
}

/// The review of a submitted task.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskReview {
    /// The work is accepted (and extends the contractor's access by 90 days from now).
    Accepted,
    /// The work is rejected (not paid, not exported).
    Rejected,
}

/// A task review.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskReviewRequest {
    /// Accepted or rejected.
    pub review: TaskReview,
}

/// Accepts or rejects a submitted task (audited).
#[utoipa::path(post, path = "/v1/admin/tasks/{task_id}/review", tag = "admin", security(("bearer" = [])),
    params(("task_id" = String, Path, description = "Task id"), IdempotencyKeyParam),
    request_body = TaskReviewRequest,
    responses((status = 200, body = TaskView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn review_task(
    State(state): State<AppState>,
    AdminCaller(admin): AdminCaller,
    Path(task_id): Path<String>,
    ValidJson(req): ValidJson<TaskReviewRequest>,
) -> Result<Json<TaskView>, ApiError> {
    let task = state
        .store
        .review_task(
            &task_id,
            matches!(req.review, TaskReview::Accepted),
            &admin,
            state.now(),
        )
        .await?;
    Ok(Json(TaskView::staff(&task)))
}

/// An audit log entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditView {
    /// Id.
    pub id: String,
    /// When.
    pub at: String,
    /// Who.
    pub actor_id: String,
    /// Their role.
    pub actor_role: String,
    /// What (`screening.decided`, `score.overridden`, `document.published`, …).
    pub action: String,
    /// Kind of subject.
    pub subject_type: String,
    /// Subject id.
    pub subject_id: String,
    /// Details.
    pub details: serde_json::Value,
}

page_type!(
    /// A page of the audit log.
    AuditPage, AuditView
);

/// The audit log of reviewer decisions, score overrides and admin actions, oldest first.
#[utoipa::path(get, path = "/v1/admin/audit", tag = "admin", security(("bearer" = [])),
    params(PageParams),
    responses((status = 200, body = AuditPage), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn audit_log(
    State(state): State<AppState>,
    _admin: AdminCaller,
    ValidQuery(page): ValidQuery<PageParams>,
) -> Result<Json<AuditPage>, ApiError> {
    let page = state.store.list_audit(&page.to_request()?).await?;
    Ok(Json(AuditPage {
        items: page
            .items
            .into_iter()
            .map(|e| AuditView {
                id: e.id,
                at: rfc3339(e.at),
                actor_id: e.actor_id,
                actor_role: e.actor_role,
                action: e.action,
                subject_type: e.subject_type,
                subject_id: e.subject_id,
                details: e.details,
            })
            .collect(),
        next_cursor: encode_cursor(page.next),
    }))
}

/// What a recording purge did.
#[derive(Debug, Serialize, ToSchema)]
pub struct PurgeView {
    /// Recordings created before this instant were purged.
    pub older_than: String,
    /// Rows deleted.
    pub rows: u64,
    /// Files deleted.
    pub files: u64,
    /// Files that could not be deleted (retried next run).
    pub failed: Vec<String>,
}

/// Runs the recording retention purge now (it also runs periodically).
#[utoipa::path(post, path = "/v1/admin/recordings/purge", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = PurgeView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn purge_recordings(
    State(state): State<AppState>,
    _admin: AdminCaller,
) -> Result<Json<PurgeView>, ApiError> {
    let older_than = state.recordings_cutoff();
    let report = state
        .store
        .purge_recordings(older_than, &state.objects)
        .await?;
    Ok(Json(PurgeView {
        older_than: rfc3339(older_than),
        rows: report.rows,
        files: report.files,
        failed: report.failed,
    }))
}
