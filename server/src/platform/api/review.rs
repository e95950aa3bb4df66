//! Reviewer routes (`/v1/review/...`, reviewers and admins): the queue of completed screenings
//! oldest first with time left to the 48-hour deadline, the overdue list, the full report (JSON
//! and HTML) with answers, case study and recordings, score overrides with a reason, and the
//! decision with feedback. Overrides and decisions are written to the audit log.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{PageParams, ReviewerCaller, ValidJson, ValidQuery, encode_cursor};
use super::views::{IdempotencyKeyParam, page_type};
use crate::platform::AppState;
use crate::platform::clock::rfc3339;
use crate::platform::error::{ApiError, ErrorBody};
use crate::platform::objects::ObjectError;
use crate::platform::rules::{AttemptStatus, FeedbackCategory, Outcome};
use crate::platform::store::{Answer, Attempt, Decision, NewOverride, OverrideRow, QueueEntry};
use crate::platform::types::{Paragraph, Reason, Score};

/// A screening waiting for a decision.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueItem {
    /// Attempt id.
    pub attempt_id: String,
    /// Applicant id.
    pub applicant_id: String,
    /// Applicant name.
    pub applicant_name: String,
    /// Rubric id.
    pub discipline: String,
    /// Attempt number in this discipline.
    pub number: i64,
    /// When both parts were in.
    pub ready_at: String,
    /// Results deadline (48 hours after `ready_at`).
    pub results_due_at: String,
    /// Seconds left to the deadline (negative when overdue).
    pub seconds_left: i64,
    /// Past the deadline.
    pub overdue: bool,
}

page_type!(
    /// A page of the review queue.
    QueuePage, QueueItem
);

fn queue_item(e: &QueueEntry, now: i64) -> QueueItem {
    let due = e.attempt.results_due_at.unwrap_or_default();
    QueueItem {
        attempt_id: e.attempt.id.clone(),
        applicant_id: e.attempt.applicant_id.clone(),
        applicant_name: e.applicant_name.clone(),
        discipline: e.attempt.discipline.clone(),
        number: e.attempt.number,
        ready_at: rfc3339(e.attempt.ready_at.unwrap_or_default()),
        results_due_at: rfc3339(due),
        seconds_left: due - now,
        overdue: now >= due,
    }
}

/// Completed screenings awaiting a decision, oldest first.
#[utoipa::path(get, path = "/v1/review/queue", tag = "review", security(("bearer" = [])),
    params(PageParams),
    responses((status = 200, body = QueuePage), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn queue(
    State(state): State<AppState>,
    _caller: ReviewerCaller,
    ValidQuery(page): ValidQuery<PageParams>,
) -> Result<Json<QueuePage>, ApiError> {
    let now = state.now();
    let page = state.store.review_queue(None, &page.to_request()?).await?;
    Ok(Json(QueuePage {
        items: page.items.iter().map(|e| queue_item(e, now)).collect(),
        next_cursor: encode_cursor(page.next),
    }))
}

/// Screenings whose 48-hour results deadline has passed, oldest first.
#[utoipa::path(get, path = "/v1/review/overdue", tag = "review", security(("bearer" = [])),
    params(PageParams),
    responses((status = 200, body = QueuePage), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn overdue(
    State(state): State<AppState>,
    _caller: ReviewerCaller,
    ValidQuery(page): ValidQuery<PageParams>,
) -> Result<Json<QueuePage>, ApiError> {
    let now = state.now();
    let page = state
        .store
        .review_queue(Some(now), &page.to_request()?)
        .await?;
    Ok(Json(QueuePage {
        items: page.items.iter().map(|e| queue_item(e, now)).collect(),
        next_cursor: encode_cursor(page.next),
    }))
}

/// The applicant as a reviewer sees them.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewApplicant {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Country.
    pub country: String,
    /// Credentials.
    pub credentials: String,
    /// Experience.
    pub experience: String,
    /// Years of experience.
    pub years_experience: i64,
}

/// A recording available to reviewers.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordingRef {
    /// Id.
    pub id: String,
    /// Where to fetch the audio.
    pub url: String,
    /// When stored.
    pub created_at: String,
}

/// The interview part of a report.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewInterview {
    /// Interview id.
    pub id: String,
    /// When completed.
    pub completed_at: Option<String>,
    /// Answers with transcripts and scores.
    pub answers: Vec<Answer>,
    /// The engine's report.
    pub report: Option<serde_json::Value>,
    /// Recordings (until the retention purge).
    pub recordings: Vec<RecordingRef>,
}

/// The case-study part of a report.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewCaseStudy {
    /// Id.
    pub id: String,
    /// Title.
    pub title: String,
    /// The exercise.
    pub prompt: String,
    /// When received.
    pub received_at: Option<String>,
    /// When submitted.
    pub submitted_at: Option<String>,
    /// The answer.
    pub answer: Option<String>,
}

/// A score override.
#[derive(Debug, Serialize, ToSchema)]
pub struct OverrideView {
    /// Id.
    pub id: String,
    /// The answer concerned (null: the whole interview).
    pub answer_seq: Option<i64>,
    /// Dimension.
    pub dimension: String,
    /// New score, 0–4.
    pub score: f64,
    /// Why.
    pub reason: String,
    /// Reviewer id.
    pub reviewer_id: String,
    /// When.
    pub created_at: String,
}

impl From<&OverrideRow> for OverrideView {
    fn from(o: &OverrideRow) -> Self {
        Self {
            id: o.id.clone(),
            answer_seq: o.answer_seq,
            dimension: o.dimension.clone(),
            score: o.score_centi as f64 / 100.0,
            reason: o.reason.clone(),
            reviewer_id: o.reviewer_id.clone(),
            created_at: rfc3339(o.created_at),
        }
    }
}

/// The decision as recorded.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewResult {
    /// Pass or fail.
    pub outcome: Outcome,
    /// Feedback categories.
    pub feedback_categories: Vec<FeedbackCategory>,
    /// Feedback text.
    pub feedback_text: Option<String>,
    /// When.
    pub decided_at: String,
}

/// Everything a reviewer needs to decide.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewReport {
    /// Attempt id.
    pub attempt_id: String,
    /// Status.
    pub status: AttemptStatus,
    /// Rubric id.
    pub discipline: String,
    /// Attempt number.
    pub number: i64,
    /// The applicant.
    pub applicant: ReviewApplicant,
    /// The interview.
    pub interview: ReviewInterview,
    /// The case study.
    pub case_study: ReviewCaseStudy,
    /// Score overrides so far.
    pub overrides: Vec<OverrideView>,
    /// When both parts were in.
    pub ready_at: Option<String>,
    /// Results deadline.
    pub results_due_at: Option<String>,
    /// The decision, once made.
    pub result: Option<ReviewResult>,
}

async fn report_for(state: &AppState, attempt: &Attempt) -> Result<ReviewReport, ApiError> {
    let now = state.now();
    let applicant = state.store.applicant(&attempt.applicant_id).await?;
    let interview = state.store.get_interview(&attempt.interview_id).await?;
    let case = state.case_study(&attempt.discipline, &attempt.case_study_id);
    Ok(ReviewReport {
        attempt_id: attempt.id.clone(),
        status: attempt.status(now),
        discipline: attempt.discipline.clone(),
        number: attempt.number,
        applicant: ReviewApplicant {
            id: applicant.id,
            name: applicant.name,
            country: applicant.country,
            credentials: applicant.credentials,
            experience: applicant.experience,
            years_experience: applicant.years_experience,
        },
        interview: ReviewInterview {
            id: interview.id.clone(),
            completed_at: interview.completed_at.map(rfc3339),
            answers: state.store.answers(&interview.id).await?,
            report: interview.report.clone(),
            recordings: state
                .store
                .recordings_for_interview(&interview.id)
                .await?
                .into_iter()
                .map(|r| RecordingRef {
                    url: format!("/v1/review/recordings/{}", r.id),
                    id: r.id,
                    created_at: rfc3339(r.created_at),
                })
                .collect(),
        },
        case_study: ReviewCaseStudy {
            id: attempt.case_study_id.clone(),
            title: case.as_ref().map(|c| c.title.clone()).unwrap_or_default(),
            prompt: case.as_ref().map(|c| c.prompt.clone()).unwrap_or_default(),
            received_at: attempt.case_study_issued_at.map(rfc3339),
            submitted_at: attempt.case_study_submitted_at.map(rfc3339),
            answer: attempt.case_study_text.clone(),
        },
        overrides: state
            .store
            .overrides(&attempt.id)
            .await?
            .iter()
            .map(OverrideView::from)
            .collect(),
        ready_at: attempt.ready_at.map(rfc3339),
        results_due_at: attempt.results_due_at.map(rfc3339),
        result: match (attempt.outcome, attempt.decided_at) {
            (Some(outcome), Some(at)) => Some(ReviewResult {
                outcome,
                feedback_categories: attempt.feedback_categories.clone(),
                feedback_text: attempt.feedback_text.clone(),
                decided_at: rfc3339(at),
            }),
            _ => None,
        },
    })
}

/// The full report of an attempt: applicant, answers and scores, the engine's report,
/// recordings, case study, overrides, decision.
#[utoipa::path(get, path = "/v1/review/attempts/{attempt_id}", tag = "review", security(("bearer" = [])),
    params(("attempt_id" = String, Path, description = "Attempt id")),
    responses((status = 200, body = ReviewReport), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn report(
    State(state): State<AppState>,
    _caller: ReviewerCaller,
    Path(attempt_id): Path<String>,
) -> Result<Json<ReviewReport>, ApiError> {
    let attempt = state.store.attempt(&attempt_id).await?;
    Ok(Json(report_for(&state, &attempt).await?))
}

/// Escapes text for HTML.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Renders a report as a self-contained HTML page (everything escaped).
fn render_html(r: &ReviewReport) -> String {
    let mut html = String::new();
    html.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    html.push_str(&format!(
        "<title>Screening report {}</title><style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}\
         td,th{{border:1px solid #ccc;padding:.3em;vertical-align:top}}table{{border-collapse:collapse}}\
         pre{{white-space:pre-wrap}}</style></head><body>",
        esc(&r.attempt_id)
    ));
    html.push_str(&format!(
        "<h1>{} — {} (attempt {})</h1><p>Status: {:?}. Results due: {}.</p>",
        esc(&r.applicant.name),
        esc(&r.discipline),
        r.number,
        r.status,
        esc(r.results_due_at.as_deref().unwrap_or("-"))
    ));
    html.push_str(&format!(
        "<h2>Applicant</h2><p>{} · {} years · {}</p><p>{}</p><p>{}</p>",
        esc(&r.applicant.country),
        r.applicant.years_experience,
        esc(&r.applicant.id),
        esc(&r.applicant.credentials),
        esc(&r.applicant.experience)
    ));
    html.push_str(
        "<h2>Interview</h2><table><tr><th>#</th><th>Item</th><th>Answer</th><th>Scores</th></tr>",
    );
    for a in &r.interview.answers {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><pre>{}</pre></td></tr>",
            a.seq,
            esc(&a.item_id),
            esc(&a.text),
            esc(&a.scores.to_string())
        ));
    }
    html.push_str("</table>");
    if let Some(report) = &r.interview.report {
        let pretty = serde_json::to_string_pretty(report).unwrap_or_default();
        html.push_str(&format!(
            "<h3>Engine report</h3><pre>{}</pre>",
            esc(&pretty)
        ));
    }
    for rec in &r.interview.recordings {
        html.push_str(&format!(
            "<p>Recording {}: <audio controls src=\"{}\"></audio></p>",
            esc(&rec.id),
            esc(&rec.url)
        ));
    }
    html.push_str(&format!(
        "<h2>Case study: {}</h2><pre>{}</pre><h3>Answer</h3><pre>{}</pre>",
        esc(&r.case_study.title),
        esc(&r.case_study.prompt),
        esc(r.case_study.answer.as_deref().unwrap_or("(not submitted)"))
    ));
    if !r.overrides.is_empty() {
        html.push_str("<h2>Overrides</h2><ul>");
        for o in &r.overrides {
            html.push_str(&format!(
                "<li>{} {} → {:.2}: {}</li>",
                o.answer_seq
                    .map_or("overall".to_string(), |s| format!("answer {s}")),
                esc(&o.dimension),
                o.score,
                esc(&o.reason)
            ));
        }
        html.push_str("</ul>");
    }
    if let Some(result) = &r.result {
        html.push_str(&format!(
            "<h2>Decision: {:?}</h2><p>{}</p>",
            result.outcome,
            esc(result.feedback_text.as_deref().unwrap_or(""))
        ));
    }
    html.push_str("</body></html>");
    html
}

/// The report as an HTML page.
#[utoipa::path(get, path = "/v1/review/attempts/{attempt_id}/report.html", tag = "review", security(("bearer" = [])),
    params(("attempt_id" = String, Path, description = "Attempt id")),
    responses((status = 200, description = "HTML report", content_type = "text/html"), (status = 404, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn report_html(
    State(state): State<AppState>,
    _caller: ReviewerCaller,
    Path(attempt_id): Path<String>,
) -> Result<Html<String>, ApiError> {
    let attempt = state.store.attempt(&attempt_id).await?;
    let review = report_for(&state, &attempt).await?;
    // A report written by the interview engine is shown with the engine's own page (scores,
    // evidence, charts, transcript), headed by the attempt's facts.
    let engine_report =
        review.interview.report.as_ref().and_then(|v| {
            serde_json::from_value::<nextmark_engine::report::Report>(v.clone()).ok()
        });
    if let Some(engine_report) = engine_report {
        let pass_min = state
            .rubrics
            .get(&attempt.discipline)
            .map_or(2.0, |r| r.pass.min_dimension);
        let page = nextmark_engine::report::render_html(&engine_report, pass_min);
        let header = format!(
            "<p class=\"muted\">Applicant {} · attempt {} · status {:?} · results due {} · case study: {}{}</p>",
            esc(&review.applicant.name),
            review.number,
            review.status,
            esc(review.results_due_at.as_deref().unwrap_or("-")),
            esc(&review.case_study.title),
            if review.case_study.submitted_at.is_some() {
                " (submitted)"
            } else {
                ""
            },
        );
        return Ok(Html(page.replacen(
            "<h2>Recommendation</h2>",
            &format!("{header}<h2>Recommendation</h2>"),
            1,
        )));
    }
    Ok(Html(render_html(&review)))
}

/// What a score override applies to.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScoreDimension {
    /// Depth of knowledge.
    Knowledge,
    /// Reasoning through complex scenarios.
    Reasoning,
    /// Communication clarity.
    Clarity,
    /// The overall score.
    Overall,
}

impl ScoreDimension {
    fn as_str(self) -> &'static str {
        match self {
            ScoreDimension::Knowledge => "knowledge",
            ScoreDimension::Reasoning => "reasoning",
            ScoreDimension::Clarity => "clarity",
            ScoreDimension::Overall => "overall",
        }
    }
}

/// A score override.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OverrideRequest {
    /// The answer (its `seq`), or omit for the interview as a whole.
    pub answer_seq: Option<u32>,
    /// The dimension overridden.
    pub dimension: ScoreDimension,
    /// The new score, 0–4.
    pub score: Score,
    /// Why (3–2000 characters); kept in the audit log.
    pub reason: Reason,
}

/// Overrides a score with a reason (audited).
#[utoipa::path(post, path = "/v1/review/attempts/{attempt_id}/overrides", tag = "review", security(("bearer" = [])),
    params(("attempt_id" = String, Path, description = "Attempt id"), IdempotencyKeyParam),
    request_body = OverrideRequest,
    responses((status = 201, body = OverrideView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn add_override(
    State(state): State<AppState>,
    ReviewerCaller(reviewer): ReviewerCaller,
    Path(attempt_id): Path<String>,
    ValidJson(req): ValidJson<OverrideRequest>,
) -> Result<(StatusCode, Json<OverrideView>), ApiError> {
    let attempt = state.store.attempt(&attempt_id).await?;
    let row = state
        .store
        .add_override(
            &attempt,
            &NewOverride {
                answer_seq: req.answer_seq.map(i64::from),
                dimension: req.dimension.as_str().to_string(),
                score_centi: req.score.centi(),
                reason: req.reason.as_str().to_string(),
            },
            &reviewer,
            state.now(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(OverrideView::from(&row))))
}

/// Feedback for the applicant.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackInput {
    /// Named categories (at least one for a fail).
    pub categories: Vec<FeedbackCategory>,
    /// Free text.
    pub text: Option<Paragraph>,
}

/// A decision.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// Pass or fail.
    pub outcome: Outcome,
    /// Feedback shown to the applicant.
    pub feedback: FeedbackInput,
}

/// Records the decision with feedback (audited); the applicant then sees both.
#[utoipa::path(post, path = "/v1/review/attempts/{attempt_id}/decision", tag = "review", security(("bearer" = [])),
    params(("attempt_id" = String, Path, description = "Attempt id"), IdempotencyKeyParam),
    request_body = DecisionRequest,
    responses((status = 200, body = ReviewReport), (status = 404, body = ErrorBody),
        (status = 409, description = "not_awaiting_review", body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn decide(
    State(state): State<AppState>,
    ReviewerCaller(reviewer): ReviewerCaller,
    Path(attempt_id): Path<String>,
    ValidJson(req): ValidJson<DecisionRequest>,
) -> Result<Json<ReviewReport>, ApiError> {
    let mut categories: Vec<FeedbackCategory> = Vec::new();
    for c in req.feedback.categories {
        if !categories.contains(&c) {
            categories.push(c);
        }
    }
    if req.outcome == Outcome::Fail && categories.is_empty() {
        return Err(ApiError::invalid(
            "feedback.categories",
            "a fail needs at least one feedback category",
        ));
    }
    state.store.attempt(&attempt_id).await?;
    let attempt = state
        .store
        .decide(
            &attempt_id,
            &Decision {
                outcome: req.outcome,
                categories,
                text: req.feedback.text.map(|t| t.as_str().to_string()),
            },
            &reviewer,
            state.now(),
        )
        .await?;
    Ok(Json(report_for(&state, &attempt).await?))
}

/// Revokes the interview link of an attempt (audited): the link opens nothing from now on
/// (`410 link_revoked` for the page, the socket and resumes); a connection already in an
/// interview is not cut.
#[utoipa::path(post, path = "/v1/review/attempts/{attempt_id}/revoke-link", tag = "review", security(("bearer" = [])),
    params(("attempt_id" = String, Path, description = "Attempt id")),
    responses((status = 204, description = "Revoked (or already revoked)"), (status = 404, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn revoke_link(
    State(state): State<AppState>,
    ReviewerCaller(reviewer): ReviewerCaller,
    Path(attempt_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.store.attempt(&attempt_id).await?;
    state
        .store
        .revoke_interview_link(&attempt_id, &reviewer, state.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A recording's audio.
#[utoipa::path(get, path = "/v1/review/recordings/{recording_id}", tag = "review", security(("bearer" = [])),
    params(("recording_id" = String, Path, description = "Recording id")),
    responses((status = 200, description = "The audio file", content_type = "application/octet-stream"),
        (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn recording(
    State(state): State<AppState>,
    _caller: ReviewerCaller,
    Path(recording_id): Path<String>,
) -> Result<Response, ApiError> {
    let rec = state.store.recording(&recording_id).await?;
    let bytes = match state.objects.read_location(&rec.path).await {
        Ok(bytes) => bytes,
        Err(ObjectError::NotFound(_)) => return Err(ApiError::not_found("recording file")),
        Err(ObjectError::Store(e)) => {
            return Err(ApiError::internal(e.context("reading recording")));
        }
    };
    let content_type = match std::path::Path::new(&rec.path)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("wav") => "audio/wav",
        Some("ogg" | "opus") => "audio/ogg",
        Some("webm") => "audio/webm",
        Some("flac") => "audio/flac",
        Some("mp3") => "audio/mpeg",
        _ => "application/octet-stream",
    };
    Ok(([(header::CONTENT_TYPE, content_type)], Body::from(bytes)).into_response())
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            esc("<b>\"x\" & 'y'</b>"),
            "&lt;b&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/b&gt;"
        );
    }
}
