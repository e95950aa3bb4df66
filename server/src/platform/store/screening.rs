//! Screening attempts: one interview plus one case study per attempt, each attempt fresh (its
//! own case study, and the items seen before are known); the case study's 72-hour window from
//! receipt; readiness for review once both are in (results due 48 hours later); the reviewer
//! queue and overdue list; score overrides and decisions, both audited.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Page, PageRequest, Store, opt_i64, opt_str, paginate};
use crate::platform::crypto::new_id;
use crate::platform::error::{DbContext, StoreError, is_unique_violation};
use crate::platform::rules::{
    AttemptFacts, AttemptStatus, CASE_STUDY_WINDOW, FeedbackCategory, Outcome, RESULTS_DUE_AFTER,
    attempt_status,
};
use crate::platform::store::people::Principal;

/// A screening attempt with its interview's key facts.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// Id (`att_…`).
    pub id: String,
    /// Whose.
    pub applicant_id: String,
    /// Rubric id.
    pub discipline: String,
    /// 1 for the first attempt in this discipline, 2 for the next, …
    pub number: i64,
    /// When started.
    pub created_at: i64,
    /// The case study assigned to this attempt.
    pub case_study_id: String,
    /// When the applicant received (first opened) the case study.
    pub case_study_issued_at: Option<i64>,
    /// 72 hours after receipt.
    pub case_study_due_at: Option<i64>,
    /// When submitted.
    pub case_study_submitted_at: Option<i64>,
    /// The submitted answer.
    pub case_study_text: Option<String>,
    /// When both parts were in.
    pub ready_at: Option<i64>,
    /// 48 hours after `ready_at`.
    pub results_due_at: Option<i64>,
    /// The decision.
    pub outcome: Option<Outcome>,
    /// Feedback categories given with the decision.
    pub feedback_categories: Vec<FeedbackCategory>,
    /// Free-text feedback.
    pub feedback_text: Option<String>,
    /// When decided.
    pub decided_at: Option<i64>,
    /// The interview.
    pub interview_id: String,
    /// When its link expires.
    pub interview_expires_at: i64,
    /// When it was completed.
    pub interview_completed_at: Option<i64>,
}

impl Attempt {
    /// The facts the status rules need.
    pub fn facts(&self) -> AttemptFacts {
        AttemptFacts {
            interview_expires_at: self.interview_expires_at,
            interview_completed_at: self.interview_completed_at,
            case_study_issued_at: self.case_study_issued_at,
            case_study_due_at: self.case_study_due_at,
            case_study_submitted_at: self.case_study_submitted_at,
            ready_at: self.ready_at,
            outcome: self.outcome,
        }
    }

    /// Status at `now`.
    pub fn status(&self, now: i64) -> AttemptStatus {
        attempt_status(&self.facts(), now)
    }
}

/// A reviewer's decision.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Pass or fail.
    pub outcome: Outcome,
    /// Named feedback categories.
    pub categories: Vec<FeedbackCategory>,
    /// Free-text feedback for the applicant.
    pub text: Option<String>,
}

/// A score override to record.
#[derive(Debug, Clone)]
pub struct NewOverride {
    /// The answer concerned, or `None` for the interview as a whole.
    pub answer_seq: Option<i64>,
    /// `knowledge`, `reasoning`, `clarity` or `overall`.
    pub dimension: String,
    /// New score in hundredths (0–400).
    pub score_centi: i64,
    /// Why.
    pub reason: String,
}

/// A recorded score override.
#[derive(Debug, Clone)]
pub struct OverrideRow {
    /// Id (`ovr_…`).
    pub id: String,
    /// Answer concerned.
    pub answer_seq: Option<i64>,
    /// Dimension.
    pub dimension: String,
    /// New score, hundredths.
    pub score_centi: i64,
    /// Why.
    pub reason: String,
    /// Who.
    pub reviewer_id: String,
    /// When.
    pub created_at: i64,
}

/// An attempt waiting for a reviewer.
#[derive(Debug, Clone)]
pub struct QueueEntry {
    /// The attempt.
    pub attempt: Attempt,
    /// The applicant's name (reviewers see it).
    pub applicant_name: String,
}

const ATTEMPT_SELECT: &str = "SELECT a.id, a.applicant_id, a.discipline, a.number, a.created_at, \
     a.case_study_id, a.case_study_issued_at, a.case_study_due_at, a.case_study_submitted_at, \
     a.case_study_text, a.ready_at, a.results_due_at, a.outcome, a.feedback_categories, \
     a.feedback_text, a.decided_at, i.id AS interview_id, i.expires_at AS interview_expires_at, \
     i.completed_at AS interview_completed_at, p.name AS applicant_name \
     FROM attempts a JOIN interviews i ON i.attempt_id = a.id \
     JOIN applicants p ON p.id = a.applicant_id";

fn attempt_from_row(row: &AnyRow) -> Result<Attempt, StoreError> {
    let outcome = opt_str(row, "outcome").ctx("reading attempt")?;
    let categories = opt_str(row, "feedback_categories").ctx("reading attempt")?;
    Ok(Attempt {
        id: row.try_get("id").ctx("reading attempt")?,
        applicant_id: row.try_get("applicant_id").ctx("reading attempt")?,
        discipline: row.try_get("discipline").ctx("reading attempt")?,
        number: row.try_get("number").ctx("reading attempt")?,
        created_at: row.try_get("created_at").ctx("reading attempt")?,
        case_study_id: row.try_get("case_study_id").ctx("reading attempt")?,
        case_study_issued_at: opt_i64(row, "case_study_issued_at").ctx("reading attempt")?,
        case_study_due_at: opt_i64(row, "case_study_due_at").ctx("reading attempt")?,
        case_study_submitted_at: opt_i64(row, "case_study_submitted_at").ctx("reading attempt")?,
        case_study_text: opt_str(row, "case_study_text").ctx("reading attempt")?,
        ready_at: opt_i64(row, "ready_at").ctx("reading attempt")?,
        results_due_at: opt_i64(row, "results_due_at").ctx("reading attempt")?,
        outcome: outcome.as_deref().and_then(Outcome::parse),
        feedback_categories: match categories {
            Some(text) => serde_json::from_str(&text).map_err(|e| {
                StoreError::Internal(anyhow::Error::new(e).context("feedback categories"))
            })?,
            None => Vec::new(),
        },
        feedback_text: opt_str(row, "feedback_text").ctx("reading attempt")?,
        decided_at: opt_i64(row, "decided_at").ctx("reading attempt")?,
        interview_id: row.try_get("interview_id").ctx("reading attempt")?,
        interview_expires_at: row.try_get("interview_expires_at").ctx("reading attempt")?,
        interview_completed_at: opt_i64(row, "interview_completed_at").ctx("reading attempt")?,
    })
}

impl Store {
    /// Starts a screening attempt: the attempt with its assigned case study, and its interview
    /// with a fresh 7-day link. Returns the attempt and the link token. The caller has checked
    /// the reapply rules; a concurrent start in the same discipline loses with `attempt_open`.
    pub async fn create_attempt(
        &self,
        applicant_id: &str,
        discipline: &str,
        case_study_id: &str,
        now: i64,
    ) -> Result<(Attempt, String), StoreError> {
        let number: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM attempts WHERE applicant_id = $1 AND discipline = $2",
        )
        .bind(applicant_id)
        .bind(discipline)
        .fetch_one(&self.pool)
        .await
        .ctx("counting attempts")?
        .try_get("n")
        .ctx("counting attempts")?;
        let id = new_id("att");
        let inserted = sqlx::query(
            "INSERT INTO attempts (id, applicant_id, discipline, number, created_at, case_study_id) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(applicant_id)
        .bind(discipline)
        .bind(number + 1)
        .bind(now)
        .bind(case_study_id)
        .execute(&self.pool)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::conflict(
                    "attempt_open",
                    "another attempt in this discipline was just started",
                ));
            }
            other => {
                other.ctx("inserting attempt")?;
            }
        }
        let interview = self.create_interview(Some(&id), discipline, now).await?;
        Ok((self.attempt(&id).await?, interview.link_token))
    }

    /// An attempt by id.
    pub async fn attempt(&self, id: &str) -> Result<Attempt, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{ATTEMPT_SELECT} WHERE a.id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .ctx("loading attempt")?
        .ok_or(StoreError::NotFound("attempt"))?;
        attempt_from_row(&row)
    }

    /// An attempt, only if it belongs to `applicant_id` (otherwise `NotFound`, so that applicants
    /// cannot probe each other's ids).
    pub async fn attempt_of(&self, applicant_id: &str, id: &str) -> Result<Attempt, StoreError> {
        let attempt = self.attempt(id).await?;
        if attempt.applicant_id != applicant_id {
            return Err(StoreError::NotFound("attempt"));
        }
        Ok(attempt)
    }

    /// An applicant's attempts, oldest first.
    pub async fn attempts_of(
        &self,
        applicant_id: &str,
        page: &PageRequest,
    ) -> Result<Page<Attempt>, StoreError> {
        let (key, after, limit) = page.binds();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{ATTEMPT_SELECT} WHERE a.applicant_id = $1 \
             AND (a.created_at > $2 OR (a.created_at = $2 AND a.id > $3)) \
             ORDER BY a.created_at, a.id LIMIT $4"
        )))
        .bind(applicant_id)
        .bind(key)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("listing attempts")?;
        let items = rows
            .iter()
            .map(attempt_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(paginate(items, page.limit, |a| {
            (a.created_at, a.id.clone())
        }))
    }

    /// All of an applicant's attempts (for rules and exports), oldest first.
    pub async fn all_attempts_of(&self, applicant_id: &str) -> Result<Vec<Attempt>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{ATTEMPT_SELECT} WHERE a.applicant_id = $1 ORDER BY a.created_at, a.id"
        )))
        .bind(applicant_id)
        .fetch_all(&self.pool)
        .await
        .ctx("listing attempts")?;
        rows.iter().map(attempt_from_row).collect()
    }

    /// Records that the applicant received the case study (first opening): the 72-hour window
    /// starts now. Opening it again changes nothing.
    pub async fn receive_case_study(
        &self,
        attempt: &Attempt,
        now: i64,
    ) -> Result<Attempt, StoreError> {
        if attempt.case_study_issued_at.is_some() {
            return Ok(attempt.clone());
        }
        match attempt.status(now) {
            AttemptStatus::InProgress => {}
            AttemptStatus::Expired => {
                return Err(StoreError::expired(
                    "attempt_expired",
                    "this attempt has expired; start a new one",
                ));
            }
            _ => {
                return Err(StoreError::conflict(
                    "attempt_closed",
                    "this attempt is no longer open",
                ));
            }
        }
        sqlx::query(
            "UPDATE attempts SET case_study_issued_at = $1, case_study_due_at = $2 \
             WHERE id = $3 AND case_study_issued_at IS NULL",
        )
        .bind(now)
        .bind(now + CASE_STUDY_WINDOW.whole_seconds())
        .bind(&attempt.id)
        .execute(&self.pool)
        .await
        .ctx("issuing case study")?;
        self.attempt(&attempt.id).await
    }

    /// Stores the case-study answer if received, not yet submitted and within 72 hours.
    pub async fn submit_case_study(
        &self,
        attempt: &Attempt,
        text: &str,
        now: i64,
    ) -> Result<Attempt, StoreError> {
        let Some(due) = attempt.case_study_due_at else {
            return Err(StoreError::conflict(
                "case_study_not_received",
                "open the case study before submitting it",
            ));
        };
        if attempt.case_study_submitted_at.is_some() {
            return Err(StoreError::conflict(
                "case_study_submitted",
                "the case study was already submitted",
            ));
        }
        if now >= due {
            return Err(StoreError::expired(
                "case_study_expired",
                format!(
                    "the 72-hour window for this case study closed at {}",
                    crate::platform::clock::rfc3339(due)
                ),
            ));
        }
        if attempt.status(now) != AttemptStatus::InProgress {
            return Err(StoreError::conflict(
                "attempt_closed",
                "this attempt is no longer open",
            ));
        }
        let updated = sqlx::query(
            "UPDATE attempts SET case_study_submitted_at = $1, case_study_text = $2 \
             WHERE id = $3 AND case_study_submitted_at IS NULL",
        )
        .bind(now)
        .bind(text)
        .bind(&attempt.id)
        .execute(&self.pool)
        .await
        .ctx("submitting case study")?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::conflict(
                "case_study_submitted",
                "the case study was already submitted",
            ));
        }
        self.mark_ready_if_complete(&attempt.id, now).await?;
        self.attempt(&attempt.id).await
    }

    /// Sets `ready_at` (and the 48-hour results deadline) once both the interview and the case
    /// study are in. One statement, run after each part's own write has committed, so whichever
    /// finishes second sees both.
    pub(crate) async fn mark_ready_if_complete(
        &self,
        attempt_id: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE attempts SET ready_at = $1, results_due_at = $2 \
             WHERE id = $3 AND ready_at IS NULL AND case_study_submitted_at IS NOT NULL \
             AND EXISTS (SELECT 1 FROM interviews i WHERE i.attempt_id = attempts.id \
                         AND i.completed_at IS NOT NULL)",
        )
        .bind(now)
        .bind(now + RESULTS_DUE_AFTER.whole_seconds())
        .bind(attempt_id)
        .execute(&self.pool)
        .await
        .ctx("marking attempt ready")?;
        Ok(())
    }

    /// Undecided attempts with both parts in, oldest first; with `overdue_at`, only those whose
    /// results deadline is at or before it.
    pub async fn review_queue(
        &self,
        overdue_at: Option<i64>,
        page: &PageRequest,
    ) -> Result<Page<QueueEntry>, StoreError> {
        let (key, after, limit) = page.binds();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{ATTEMPT_SELECT} WHERE a.ready_at IS NOT NULL AND a.outcome IS NULL \
             AND p.erased_at IS NULL AND a.results_due_at <= $1 \
             AND (a.ready_at > $2 OR (a.ready_at = $2 AND a.id > $3)) \
             ORDER BY a.ready_at, a.id LIMIT $4"
        )))
        .bind(overdue_at.unwrap_or(i64::MAX))
        .bind(key)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("listing review queue")?;
        let items = rows
            .iter()
            .map(|row| {
                Ok(QueueEntry {
                    attempt: attempt_from_row(row)?,
                    applicant_name: row.try_get("applicant_name").ctx("reading queue")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(paginate(items, page.limit, |e| {
            (e.attempt.ready_at.unwrap_or_default(), e.attempt.id.clone())
        }))
    }

    /// Records a decision on an attempt awaiting review, with an audit entry, atomically.
    pub async fn decide(
        &self,
        attempt_id: &str,
        decision: &Decision,
        reviewer: &Principal,
        now: i64,
    ) -> Result<Attempt, StoreError> {
        let categories = serde_json::to_string(&decision.categories)
            .map_err(|e| StoreError::Internal(e.into()))?;
        let mut tx = self.pool.begin().await.ctx("starting decision")?;
        let updated = sqlx::query(
            "UPDATE attempts SET outcome = $1, feedback_categories = $2, feedback_text = $3, \
             decided_at = $4, decided_by = $5 \
             WHERE id = $6 AND outcome IS NULL AND ready_at IS NOT NULL",
        )
        .bind(decision.outcome.as_str())
        .bind(&categories)
        .bind(decision.text.as_deref())
        .bind(now)
        .bind(reviewer.id())
        .bind(attempt_id)
        .execute(&mut *tx)
        .await
        .ctx("recording decision")?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::conflict(
                "not_awaiting_review",
                "this attempt is not awaiting review (already decided, or a part is missing)",
            ));
        }
        let details = serde_json::json!({
            "outcome": decision.outcome,
            "categories": decision.categories,
            "has_feedback_text": decision.text.is_some(),
        });
        super::privacy::insert_audit(
            &mut tx,
            reviewer,
            "screening.decided",
            "attempt",
            attempt_id,
            &details,
            now,
        )
        .await?;
        tx.commit().await.ctx("committing decision")?;
        self.attempt(attempt_id).await
    }

    /// Records a score override on an attempt's interview, with an audit entry, atomically.
    pub async fn add_override(
        &self,
        attempt: &Attempt,
        new: &NewOverride,
        reviewer: &Principal,
        now: i64,
    ) -> Result<OverrideRow, StoreError> {
        if attempt.interview_completed_at.is_none() {
            return Err(StoreError::conflict(
                "interview_not_completed",
                "scores can be overridden once the interview is completed",
            ));
        }
        if let Some(seq) = new.answer_seq {
            let answers = self.answers(&attempt.interview_id).await?;
            if !answers.iter().any(|a| a.seq == seq) {
                return Err(StoreError::invalid("answer_seq", "no answer with this seq"));
            }
        }
        let id = new_id("ovr");
        let mut tx = self.pool.begin().await.ctx("starting override")?;
        sqlx::query(
            "INSERT INTO score_overrides (id, attempt_id, interview_id, answer_seq, dimension, \
             score_centi, reason, reviewer_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&id)
        .bind(&attempt.id)
        .bind(&attempt.interview_id)
        .bind(new.answer_seq)
        .bind(&new.dimension)
        .bind(new.score_centi)
        .bind(&new.reason)
        .bind(reviewer.id())
        .bind(now)
        .execute(&mut *tx)
        .await
        .ctx("inserting override")?;
        let details = serde_json::json!({
            "override_id": id,
            "answer_seq": new.answer_seq,
            "dimension": new.dimension,
            "score": new.score_centi as f64 / 100.0,
            "reason": new.reason,
        });
        super::privacy::insert_audit(
            &mut tx,
            reviewer,
            "score.overridden",
            "attempt",
            &attempt.id,
            &details,
            now,
        )
        .await?;
        tx.commit().await.ctx("committing override")?;
        Ok(OverrideRow {
            id,
            answer_seq: new.answer_seq,
            dimension: new.dimension.clone(),
            score_centi: new.score_centi,
            reason: new.reason.clone(),
            reviewer_id: reviewer.id().to_string(),
            created_at: now,
        })
    }

    /// The overrides on an attempt, oldest first.
    pub async fn overrides(&self, attempt_id: &str) -> Result<Vec<OverrideRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, answer_seq, dimension, score_centi, reason, reviewer_id, created_at \
             FROM score_overrides WHERE attempt_id = $1 ORDER BY created_at, id",
        )
        .bind(attempt_id)
        .fetch_all(&self.pool)
        .await
        .ctx("listing overrides")?;
        rows.iter()
            .map(|row| {
                Ok(OverrideRow {
                    id: row.try_get("id").ctx("reading override")?,
                    answer_seq: opt_i64(row, "answer_seq").ctx("reading override")?,
                    dimension: row.try_get("dimension").ctx("reading override")?,
                    score_centi: row.try_get("score_centi").ctx("reading override")?,
                    reason: row.try_get("reason").ctx("reading override")?,
                    reviewer_id: row.try_get("reviewer_id").ctx("reading override")?,
                    created_at: row.try_get("created_at").ctx("reading override")?,
                })
            })
            .collect()
    }

    /// Case studies already given to this applicant in a discipline.
    pub async fn case_studies_used(
        &self,
        applicant_id: &str,
        discipline: &str,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT case_study_id FROM attempts WHERE applicant_id = $1 AND discipline = $2",
        )
        .bind(applicant_id)
        .bind(discipline)
        .fetch_all(&self.pool)
        .await
        .ctx("listing used case studies")?;
        rows.iter()
            .map(|r| {
                r.try_get::<String, _>("case_study_id")
                    .ctx("reading case study id")
            })
            .collect()
    }
}
