//! The applicant's own routes (`/v1/me/...`): profile and access status, screening attempts
//! (start or reapply, interview link, case study receipt and submission, result and feedback),
//! agreements, tasks, payouts, and their data export and erasure. An applicant only ever sees
//! their own records; someone else's id answers 404.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rand::seq::IndexedRandom;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{ApplicantCaller, ClientIp, PageParams, ValidJson, ValidQuery, encode_cursor};
use super::views::{
    AcceptanceView, ApplicantView, DocumentView, IdempotencyKeyParam, RoleView, TaskPage, TaskView,
    page_type,
};
use crate::platform::AppState;
use crate::platform::clock::{from_unix, rfc3339};
use crate::platform::error::{ApiError, ErrorBody, StoreError};
use crate::platform::mail::Message;
use crate::platform::rules::{
    AttemptStatus, FeedbackCategory, Outcome, PastAttempt, REAPPLY_AFTER_FAIL, may_start_attempt,
    payout_date,
};
use crate::platform::store::{Answer, Attempt, DocumentKind};
use crate::platform::types::{DisciplineId, LongText, MinutesSpent, Sha256Hex};

/// Where the interview of an attempt stands.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// The link can be used.
    Open,
    /// The interview is done.
    Completed,
    /// The link expired before the interview was completed.
    Expired,
}

/// The interview part of an attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct InterviewRef {
    /// Interview id.
    pub id: String,
    /// The interview link to open in a browser (valid 7 days from issue).
    pub url: String,
    /// The token in that link (for `GET /v1/interview-links/{token}`).
    pub link_token: String,
    /// State.
    pub state: LinkState,
    /// When the link expires.
    pub expires_at: String,
    /// When completed.
    pub completed_at: Option<String>,
}

/// The case-study part of an attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaseStudyRef {
    /// Case study id from the discipline's rubric.
    pub id: String,
    /// Title.
    pub title: String,
    /// Expected working time, minutes.
    pub minutes: u32,
    /// When received (first opened); the 72-hour window starts then.
    pub received_at: Option<String>,
    /// Submission deadline.
    pub due_at: Option<String>,
    /// When submitted.
    pub submitted_at: Option<String>,
}

/// The decision on an attempt, as the applicant sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResultView {
    /// Pass or fail.
    pub outcome: Outcome,
    /// Named feedback categories.
    pub feedback_categories: Vec<FeedbackCategory>,
    /// The reviewer's feedback.
    pub feedback_text: Option<String>,
    /// When decided.
    pub decided_at: String,
    /// After a fail: from when a new attempt in this discipline is possible.
    pub reapply_from: Option<String>,
}

/// A screening attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    /// Id.
    pub id: String,
    /// Rubric id.
    pub discipline: String,
    /// 1 for the first attempt in this discipline, 2 for the next, …
    pub number: i64,
    /// Status now.
    pub status: AttemptStatus,
    /// When started.
    pub created_at: String,
    /// The voice interview.
    pub interview: InterviewRef,
    /// The written case study.
    pub case_study: CaseStudyRef,
    /// When results are due (48 hours after both parts are in).
    pub results_due_at: Option<String>,
    /// The decision, once made.
    pub result: Option<ResultView>,
}

page_type!(
    /// A page of attempts.
    AttemptPage, AttemptView
);

impl AttemptView {
    /// The applicant's view of an attempt at `now`.
    pub fn build(state: &AppState, a: &Attempt, now: i64) -> Self {
        let token = state.store.interview_link_token(&a.interview_id);
        let case = state.case_study(&a.discipline, &a.case_study_id);
        let link_state = if a.interview_completed_at.is_some() {
            LinkState::Completed
        } else if now >= a.interview_expires_at {
            LinkState::Expired
        } else {
            LinkState::Open
        };
        Self {
            id: a.id.clone(),
            discipline: a.discipline.clone(),
            number: a.number,
            status: a.status(now),
            created_at: rfc3339(a.created_at),
            interview: InterviewRef {
                id: a.interview_id.clone(),
                url: format!("{}/interview/{token}", state.public_url()),
                link_token: token,
                state: link_state,
                expires_at: rfc3339(a.interview_expires_at),
                completed_at: a.interview_completed_at.map(rfc3339),
            },
            case_study: CaseStudyRef {
                id: a.case_study_id.clone(),
                title: case.as_ref().map(|c| c.title.clone()).unwrap_or_default(),
                minutes: case.as_ref().map_or(0, |c| c.minutes),
                received_at: a.case_study_issued_at.map(rfc3339),
                due_at: a.case_study_due_at.map(rfc3339),
                submitted_at: a.case_study_submitted_at.map(rfc3339),
            },
            results_due_at: a.results_due_at.map(rfc3339),
            result: match (a.outcome, a.decided_at) {
                (Some(outcome), Some(decided_at)) => Some(ResultView {
                    outcome,
                    feedback_categories: a.feedback_categories.clone(),
                    feedback_text: a.feedback_text.clone(),
                    decided_at: rfc3339(decided_at),
                    reapply_from: (outcome == Outcome::Fail)
                        .then(|| rfc3339(decided_at + REAPPLY_AFTER_FAIL.whole_seconds())),
                }),
                _ => None,
            },
        }
    }
}

/// The applicant's profile and standing.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeView {
    /// Profile.
    pub applicant: ApplicantView,
    /// Disciplines passed.
    pub passed_disciplines: Vec<String>,
    /// Whether they may work now (passed, and within 90 days of the pass or last accepted task).
    pub access_active: bool,
    /// When access ends (or ended).
    pub access_until: Option<String>,
    /// Agreements still to accept before any task.
    pub missing_agreements: Vec<DocumentKind>,
    /// Roles matched to.
    pub roles: Vec<RoleView>,
}

/// The caller's profile, access window, missing agreements and roles.
#[utoipa::path(get, path = "/v1/me", tag = "applicant", security(("bearer" = [])),
    responses((status = 200, body = MeView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn me(
    State(state): State<AppState>,
    caller: ApplicantCaller,
) -> Result<Json<MeView>, ApiError> {
    let now = state.now();
    let applicant = state.store.applicant(&caller.id).await?;
    let until = state.access_until(&caller.id).await?;
    Ok(Json(MeView {
        applicant: ApplicantView::from(&applicant),
        passed_disciplines: state.store.passed_disciplines(&caller.id).await?,
        access_active: until.is_some_and(|u| now < u),
        access_until: until.map(rfc3339),
        missing_agreements: state.store.missing_agreements(&caller.id).await?,
        roles: state
            .store
            .roles_of(&caller.id)
            .await?
            .iter()
            .map(RoleView::from)
            .collect(),
    }))
}

/// An attempt with everything the applicant wrote or said in it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExportedAttempt {
    /// The attempt.
    pub attempt: AttemptView,
    /// Interview answers (transcripts).
    pub answers: Vec<Answer>,
    /// The case-study answer.
    pub case_study_answer: Option<String>,
}

/// Everything stored about the applicant.
#[derive(Debug, Serialize, ToSchema)]
pub struct DataExport {
    /// When exported.
    pub exported_at: String,
    /// Profile and attestations.
    pub applicant: ApplicantView,
    /// Screening attempts.
    pub attempts: Vec<ExportedAttempt>,
    /// Agreement acceptances (with IP).
    pub acceptances: Vec<AcceptanceView>,
    /// Roles.
    pub roles: Vec<RoleView>,
    /// Tasks taken.
    pub tasks: Vec<TaskView>,
    /// Payouts.
    pub payouts: PayoutSchedule,
}

/// Downloads all of the caller's data as JSON.
#[utoipa::path(get, path = "/v1/me/export", tag = "applicant", security(("bearer" = [])),
    responses((status = 200, body = DataExport), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn export(
    State(state): State<AppState>,
    caller: ApplicantCaller,
) -> Result<Json<DataExport>, ApiError> {
    let now = state.now();
    let applicant = state.store.applicant(&caller.id).await?;
    let mut attempts = Vec::new();
    for a in state.store.all_attempts_of(&caller.id).await? {
        attempts.push(ExportedAttempt {
            answers: state.store.answers(&a.interview_id).await?,
            case_study_answer: a.case_study_text.clone(),
            attempt: AttemptView::build(&state, &a, now),
        });
    }
    Ok(Json(DataExport {
        exported_at: rfc3339(now),
        applicant: ApplicantView::from(&applicant),
        attempts,
        acceptances: state
            .store
            .acceptances_of(&caller.id)
            .await?
            .iter()
            .map(AcceptanceView::from)
            .collect(),
        roles: state
            .store
            .roles_of(&caller.id)
            .await?
            .iter()
            .map(RoleView::from)
            .collect(),
        tasks: state
            .store
            .tasks_taken_by(&caller.id)
            .await?
            .iter()
            .map(|t| TaskView::contractor(t, &caller.id))
            .collect(),
        payouts: payout_schedule(&state, &caller.id, now).await?,
    }))
}

/// What erasure removed.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErasureView {
    /// Always true.
    pub erased: bool,
    /// Records deleted or blanked.
    pub records: u64,
    /// Recording files deleted.
    pub files: u64,
}

/// Erases the caller's personal data now and signs them out everywhere. Pseudonymous records
/// (dates, outcomes, submitted work, pay) remain.
#[utoipa::path(delete, path = "/v1/me", tag = "applicant", security(("bearer" = [])),
    responses((status = 200, body = ErasureView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn erase(
    State(state): State<AppState>,
    caller: ApplicantCaller,
) -> Result<Json<ErasureView>, ApiError> {
    let report = state
        .store
        .erase_applicant(&caller.id, state.now(), &state.objects)
        .await?;
    Ok(Json(ErasureView {
        erased: true,
        records: report.rows,
        files: report.files,
    }))
}

/// The caller's attempts, oldest first.
#[utoipa::path(get, path = "/v1/me/attempts", tag = "applicant", security(("bearer" = [])),
    params(PageParams),
    responses((status = 200, body = AttemptPage), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_attempts(
    State(state): State<AppState>,
    caller: ApplicantCaller,
    ValidQuery(page): ValidQuery<PageParams>,
) -> Result<Json<AttemptPage>, ApiError> {
    let now = state.now();
    let page = state
        .store
        .attempts_of(&caller.id, &page.to_request()?)
        .await?;
    Ok(Json(AttemptPage {
        items: page
            .items
            .iter()
            .map(|a| AttemptView::build(&state, a, now))
            .collect(),
        next_cursor: encode_cursor(page.next),
    }))
}

/// Which discipline to be screened in.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartAttemptRequest {
    /// One of the disciplines applied for.
    pub discipline: DisciplineId,
}

/// Starts a screening attempt (first try or reapplication): a new interview link valid 7 days
/// and a case study not given before. Refused while an attempt is open, for 30 days after a fail,
/// and while access from a pass is active.
#[utoipa::path(post, path = "/v1/me/attempts", tag = "applicant", security(("bearer" = [])),
    params(IdempotencyKeyParam),
    request_body = StartAttemptRequest,
    responses(
        (status = 201, body = AttemptView),
        (status = 409, description = "attempt_open, reapply_too_soon or already_qualified", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn start_attempt(
    State(state): State<AppState>,
    caller: ApplicantCaller,
    ValidJson(req): ValidJson<StartAttemptRequest>,
) -> Result<(StatusCode, Json<AttemptView>), ApiError> {
    let now = state.now();
    let discipline =
        state.known_disciplines(std::slice::from_ref(&req.discipline), "discipline")?;
    let discipline = discipline.into_iter().next().unwrap_or_default();
    let applicant = state.store.applicant(&caller.id).await?;
    if !applicant.disciplines.contains(&discipline) {
        return Err(ApiError::invalid(
            "discipline",
            "you did not apply for this discipline",
        ));
    }
    let history: Vec<PastAttempt> = state
        .store
        .all_attempts_of(&caller.id)
        .await?
        .iter()
        .filter(|a| a.discipline == discipline)
        .map(|a| PastAttempt {
            status: a.status(now),
            decided_at: a.decided_at,
        })
        .collect();
    let access_until = state.access_until(&caller.id).await?;
    may_start_attempt(&history, access_until, now)?;
    let used = state
        .store
        .case_studies_used(&caller.id, &discipline)
        .await?;
    let case_study_id = {
        let all: Vec<&str> = state
            .rubrics
            .get(&discipline)
            .map(|r| r.case_studies.iter().map(|c| c.id.as_str()).collect())
            .unwrap_or_default();
        let fresh: Vec<&str> = all
            .iter()
            .copied()
            .filter(|id| !used.iter().any(|u| u == id))
            .collect();
        let pool = if fresh.is_empty() { &all } else { &fresh };
        pool.choose(&mut rand::rng())
            .map(|s| (*s).to_string())
            .ok_or_else(|| {
                StoreError::conflict("no_case_study", "this discipline has no case study yet")
            })?
    };
    let (attempt, token) = state
        .store
        .create_attempt(&caller.id, &discipline, &case_study_id, now)
        .await?;
    state.mailer.send(Message {
        to: applicant.email.clone(),
        subject: "Your Nextmark interview link".into(),
        link: format!("{}/interview/{token}", state.public_url()),
    });
    Ok((
        StatusCode::CREATED,
        Json(AttemptView::build(&state, &attempt, now)),
    ))
}

/// One of the caller's attempts, with the result and feedback once decided.
#[utoipa::path(get, path = "/v1/me/attempts/{attempt_id}", tag = "applicant", security(("bearer" = [])),
    params(("attempt_id" = String, Path, description = "Attempt id")),
    responses((status = 200, body = AttemptView), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn get_attempt(
    State(state): State<AppState>,
    caller: ApplicantCaller,
    Path(attempt_id): Path<String>,
) -> Result<Json<AttemptView>, ApiError> {
    let attempt = state.store.attempt_of(&caller.id, &attempt_id).await?;
    Ok(Json(AttemptView::build(&state, &attempt, state.now())))
}

/// A case-study criterion, as shown to the applicant.
#[derive(Debug, Serialize, ToSchema)]
pub struct CriterionView {
    /// Id.
    pub id: String,
    /// What is judged.
    pub description: String,
}

/// The case study of an attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaseStudyView {
    /// Id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Expected working time (30–45 minutes typically).
    pub minutes: u32,
    /// The exercise.
    pub prompt: String,
    /// How it is marked.
    pub criteria: Vec<CriterionView>,
    /// When received.
    pub received_at: String,
    /// Deadline: 72 hours after receipt.
    pub due_at: String,
    /// When submitted.
    pub submitted_at: Option<String>,
}

/// Receives the attempt's case study; the first call starts its 72-hour window. It must be
/// opened while the interview link is valid.
#[utoipa::path(get, path = "/v1/me/attempts/{attempt_id}/case-study", tag = "applicant", security(("bearer" = [])),
    params(("attempt_id" = String, Path, description = "Attempt id")),
    responses((status = 200, body = CaseStudyView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 410, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn get_case_study(
    State(state): State<AppState>,
    caller: ApplicantCaller,
    Path(attempt_id): Path<String>,
) -> Result<Json<CaseStudyView>, ApiError> {
    let now = state.now();
    let attempt = state.store.attempt_of(&caller.id, &attempt_id).await?;
    let attempt = state.store.receive_case_study(&attempt, now).await?;
    let case = state
        .case_study(&attempt.discipline, &attempt.case_study_id)
        .ok_or_else(|| {
            ApiError::internal(anyhow::anyhow!(
                "case study {} missing from rubric",
                attempt.case_study_id
            ))
        })?;
    Ok(Json(CaseStudyView {
        id: case.id.clone(),
        title: case.title.clone(),
        minutes: case.minutes,
        prompt: case.prompt.clone(),
        criteria: case
            .criteria
            .iter()
            .map(|c| CriterionView {
                id: c.id.clone(),
                description: c.description.clone(),
            })
            .collect(),
        received_at: attempt
            .case_study_issued_at
            .map(rfc3339)
            .unwrap_or_default(),
        due_at: attempt.case_study_due_at.map(rfc3339).unwrap_or_default(),
        submitted_at: attempt.case_study_submitted_at.map(rfc3339),
    }))
}

/// A case-study answer.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitCaseStudyRequest {
    /// The written answer (up to 100 000 characters).
    pub answer: LongText,
}

/// Submits the case-study answer, within 72 hours of receipt.
#[utoipa::path(post, path = "/v1/me/attempts/{attempt_id}/case-study", tag = "applicant", security(("bearer" = [])),
    params(("attempt_id" = String, Path, description = "Attempt id"), IdempotencyKeyParam),
    request_body = SubmitCaseStudyRequest,
    responses((status = 200, body = AttemptView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 410, description = "case_study_expired", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn submit_case_study(
    State(state): State<AppState>,
    caller: ApplicantCaller,
    Path(attempt_id): Path<String>,
    ValidJson(req): ValidJson<SubmitCaseStudyRequest>,
) -> Result<Json<AttemptView>, ApiError> {
    let now = state.now();
    let attempt = state.store.attempt_of(&caller.id, &attempt_id).await?;
    let attempt = state
        .store
        .submit_case_study(&attempt, req.answer.as_str(), now)
        .await?;
    Ok(Json(AttemptView::build(&state, &attempt, now)))
}

/// A current document and whether the caller accepted it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgreementStatus {
    /// The current version.
    pub document: DocumentView,
    /// When the caller accepted this version.
    pub accepted_at: Option<String>,
}

/// The agreements required before any task.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgreementsView {
    /// Whether all required agreements (latest versions) are accepted.
    pub complete: bool,
    /// Kinds not accepted yet (or not published yet).
    pub missing: Vec<DocumentKind>,
    /// Current versions.
    pub documents: Vec<AgreementStatus>,
}

/// The current contractor agreement and NDA, and the caller's acceptances.
#[utoipa::path(get, path = "/v1/me/agreements", tag = "applicant", security(("bearer" = [])),
    responses((status = 200, body = AgreementsView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn agreements(
    State(state): State<AppState>,
    caller: ApplicantCaller,
) -> Result<Json<AgreementsView>, ApiError> {
    let current = state.store.current_documents().await?;
    let accepted = state.store.acceptances_of(&caller.id).await?;
    let missing = state.store.missing_agreements(&caller.id).await?;
    Ok(Json(AgreementsView {
        complete: missing.is_empty(),
        missing,
        documents: current
            .iter()
            .map(|d| AgreementStatus {
                document: DocumentView::from(d),
                accepted_at: accepted
                    .iter()
                    .find(|a| a.document_id == d.id)
                    .map(|a| rfc3339(a.accepted_at)),
            })
            .collect(),
    }))
}

/// An acceptance.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptRequest {
    /// The document version accepted.
    pub document_id: String,
    /// Its SHA-256 as shown (proves which text was accepted).
    pub sha256: Sha256Hex,
}

/// Accepts the current version of a document (after a pass); the time, document hash and client
/// IP are recorded.
#[utoipa::path(post, path = "/v1/me/agreements", tag = "applicant", security(("bearer" = [])),
    params(IdempotencyKeyParam),
    request_body = AcceptRequest,
    responses((status = 201, body = AcceptanceView), (status = 403, description = "not_qualified", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "document_superseded", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn accept_agreement(
    State(state): State<AppState>,
    caller: ApplicantCaller,
    ClientIp(ip): ClientIp,
    ValidJson(req): ValidJson<AcceptRequest>,
) -> Result<(StatusCode, Json<AcceptanceView>), ApiError> {
    if state.store.last_pass_at(&caller.id).await?.is_none() {
        return Err(StoreError::forbidden(
            "not_qualified",
            "agreements are offered after passing screening",
        )
        .into());
    }
    if req.document_id.len() > 64 {
        return Err(ApiError::not_found("document"));
    }
    let acceptance = state
        .store
        .accept_document(
            &caller.id,
            &req.document_id,
            req.sha256.as_str(),
            ip.as_deref(),
            state.now(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(AcceptanceView::from(&acceptance))))
}

/// Open tasks in the caller's roles and the tasks they took.
#[utoipa::path(get, path = "/v1/me/tasks", tag = "applicant", security(("bearer" = [])),
    params(PageParams),
    responses((status = 200, body = TaskPage), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_tasks(
    State(state): State<AppState>,
    caller: ApplicantCaller,
    ValidQuery(page): ValidQuery<PageParams>,
) -> Result<Json<TaskPage>, ApiError> {
    let page = state
        .store
        .tasks_for_contractor(&caller.id, &page.to_request()?)
        .await?;
    Ok(Json(TaskPage {
        items: page
            .items
            .iter()
            .map(|t| TaskView::contractor(t, &caller.id))
            .collect(),
        next_cursor: encode_cursor(page.next),
    }))
}

/// Takes an open task in one of the caller's roles. Requires active access and the current
/// agreements accepted.
#[utoipa::path(post, path = "/v1/me/tasks/{task_id}/take", tag = "applicant", security(("bearer" = [])),
    params(("task_id" = String, Path, description = "Task id")),
    responses((status = 200, body = TaskView),
        (status = 403, description = "access_lapsed or agreements_required", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "task_taken", body = ErrorBody)))]
pub async fn take_task(
    State(state): State<AppState>,
    caller: ApplicantCaller,
    Path(task_id): Path<String>,
) -> Result<Json<TaskView>, ApiError> {
    let now = state.now();
    let task = state.store.task(&task_id).await?;
    let roles = state.store.roles_of(&caller.id).await?;
    if !roles.iter().any(|r| r.id == task.role_id) {
        return Err(ApiError::not_found("task"));
    }
    if state
        .access_until(&caller.id)
        .await?
        .is_none_or(|u| now >= u)
    {
        return Err(StoreError::forbidden(
            "access_lapsed",
            "your access lapsed 90 days after your last accepted task; a new screening is required",
        )
        .into());
    }
    let missing = state.store.missing_agreements(&caller.id).await?;
    if !missing.is_empty() {
        return Err(StoreError::forbidden(
            "agreements_required",
            "accept the current contractor agreement and NDA before taking tasks",
        )
        .into());
    }
    let task = state.store.take_task(&task_id, &caller.id, now).await?;
    Ok(Json(TaskView::contractor(&task, &caller.id)))
}

/// A task submission.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitTaskRequest {
    /// The work product.
    pub output: LongText,
    /// Minutes spent (1–600); pay is hourly.
    pub minutes_spent: MinutesSpent,
}

/// Submits a task the caller took, with the time spent.
#[utoipa::path(post, path = "/v1/me/tasks/{task_id}/submit", tag = "applicant", security(("bearer" = [])),
    params(("task_id" = String, Path, description = "Task id"), IdempotencyKeyParam),
    request_body = SubmitTaskRequest,
    responses((status = 200, body = TaskView), (status = 404, body = ErrorBody),
        (status = 409, description = "task_submitted", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn submit_task(
    State(state): State<AppState>,
    caller: ApplicantCaller,
    Path(task_id): Path<String>,
    ValidJson(req): ValidJson<SubmitTaskRequest>,
) -> Result<Json<TaskView>, ApiError> {
    let task = state
        .store
        .submit_task(
            &task_id,
            &caller.id,
            req.output.as_str(),
            req.minutes_spent.get(),
            state.now(),
        )
        .await?;
    Ok(Json(TaskView::contractor(&task, &caller.id)))
}

/// Whether a payout date has come.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PayoutStatus {
    /// In the future.
    Scheduled,
    /// Today or past.
    Due,
}

/// One Friday's payout in one currency.
#[derive(Debug, Serialize, ToSchema)]
pub struct PayoutView {
    /// The Friday (YYYY-MM-DD, UTC).
    pub date: String,
    /// Scheduled or due.
    pub status: PayoutStatus,
    /// ISO 4217 currency.
    pub currency: String,
    /// Amount in minor units: the sum of minutes × hourly rate / 60, rounded half up.
    pub amount_cents: i64,
    /// Minutes paid.
    pub minutes: i64,
    /// Tasks paid.
    pub task_ids: Vec<String>,
}

/// The caller's payout schedule.
#[derive(Debug, Serialize, ToSchema)]
pub struct PayoutSchedule {
    /// The rule, in words.
    pub rule: String,
    /// The first payout (7–10 days after the first submission when submitted Tuesday–Friday).
    pub first_payout_date: Option<String>,
    /// The next payout on or after today.
    pub next_payout_date: Option<String>,
    /// Payouts by date.
    pub payouts: Vec<PayoutView>,
}

/// The payout schedule of an applicant at `now`.
pub async fn payout_schedule(
    state: &AppState,
    applicant_id: &str,
    now: i64,
) -> Result<PayoutSchedule, ApiError> {
    let today = from_unix(now).date();
    let mut by_date: BTreeMap<(time::Date, String), (i64, i64, Vec<String>)> = BTreeMap::new();
    for line in state.store.payout_lines(applicant_id).await? {
        let date = payout_date(from_unix(line.submitted_at).date());
        let entry = by_date.entry((date, line.currency.clone())).or_default();
        entry.0 += line.minutes_spent * line.hourly_rate_cents;
        entry.1 += line.minutes_spent;
        entry.2.push(line.task_id);
    }
    let payouts: Vec<PayoutView> = by_date
        .into_iter()
        .map(
            |((date, currency), (minute_cents, minutes, task_ids))| PayoutView {
                date: date.to_string(),
                status: if date > today {
                    PayoutStatus::Scheduled
                } else {
                    PayoutStatus::Due
                },
                currency,
                amount_cents: (minute_cents + 30) / 60,
                minutes,
                task_ids,
            },
        )
        .collect();
    Ok(PayoutSchedule {
        rule: "Every Friday (UTC). Work is paid on the first Friday at least 7 days after the day \
               it was submitted: 7-10 days for work submitted Tuesday to Friday, 11-13 days for \
               Saturday to Monday. No invoices."
            .into(),
        first_payout_date: payouts.first().map(|p| p.date.clone()),
        next_payout_date: payouts
            .iter()
            .find(|p| matches!(p.status, PayoutStatus::Scheduled) || p.date == today.to_string())
            .map(|p| p.date.clone()),
        payouts,
    })
}

/// The caller's payouts: every Friday, the first 7–10 days after the first task submission.
#[utoipa::path(get, path = "/v1/me/payouts", tag = "applicant", security(("bearer" = [])),
    responses((status = 200, body = PayoutSchedule), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn payouts(
    State(state): State<AppState>,
    caller: ApplicantCaller,
) -> Result<Json<PayoutSchedule>, ApiError> {
    Ok(Json(
        payout_schedule(&state, &caller.id, state.now()).await?,
    ))
}

/// Checks that a discipline list is non-empty, has no repeats and names loaded rubrics.
pub fn check_disciplines(
    known: impl Fn(&str) -> bool,
    requested: &[DisciplineId],
    field: &str,
) -> Result<Vec<String>, ApiError> {
    if requested.is_empty() {
        return Err(ApiError::invalid(field, "name at least one discipline"));
    }
    let mut out: Vec<String> = Vec::new();
    for (i, d) in requested.iter().enumerate() {
        let name = if field == "discipline" {
            field.to_string()
        } else {
            format!("{field}[{i}]")
        };
        if !known(d.as_str()) {
            return Err(ApiError::invalid(
                name,
                format!("unknown discipline {:?}", d.as_str()),
            ));
        }
        if out.iter().any(|o| o == d.as_str()) {
            return Err(ApiError::invalid(name, "listed twice"));
        }
        out.push(d.as_str().to_string());
    }
    Ok(out)
}
