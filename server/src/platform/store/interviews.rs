//! The interview repository the live server writes through: create an interview with its
//! 7-day link, look it up by the link token, record which items were asked, commit answers one
//! by one (so an interview can resume on another instance from what was committed), complete it
//! with the report, and attach recordings. Completing a screening interview may make its attempt
//! ready for review.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::ToSchema;

use super::{Store, opt_i64, opt_str};
use crate::platform::crypto::{new_id, sha256_hex};
use crate::platform::error::{DbContext, StoreError, is_unique_violation};
use crate::platform::rules::{INTERVIEW_FINISH_GRACE, INTERVIEW_LINK_VALID};

/// Where an interview stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InterviewStatus {
    /// Link issued, not started.
    Pending,
    /// The applicant is talking.
    Live,
    /// Finished, report stored.
    Completed,
}

impl InterviewStatus {
    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "pending" => Ok(Self::Pending),
            "live" => Ok(Self::Live),
            "completed" => Ok(Self::Completed),
            other => Err(StoreError::Internal(anyhow::anyhow!(
                "unknown interview status {other:?}"
            ))),
        }
    }
}

/// An interview as stored.
#[derive(Debug, Clone)]
pub struct Interview {
    /// Id (`int_…`).
    pub id: String,
    /// The screening attempt, or `None` for demo interviews.
    pub attempt_id: Option<String>,
    /// Rubric id.
    pub discipline: String,
    /// Status.
    pub status: InterviewStatus,
    /// When the link was issued.
    pub created_at: i64,
    /// When the link expires (7 days after issue).
    pub expires_at: i64,
    /// When the applicant started.
    pub started_at: Option<i64>,
    /// The engine's report, once completed.
    pub report: Option<serde_json::Value>,
    /// When completed.
    pub completed_at: Option<i64>,
}

impl Interview {
    /// Until when answers may still be committed: the link expiry, plus a grace period once the
    /// interview has started.
    pub fn writable_until(&self) -> i64 {
        match self.status {
            InterviewStatus::Live => self.expires_at + INTERVIEW_FINISH_GRACE.whole_seconds(),
            _ => self.expires_at,
        }
    }
}

/// A freshly created interview and its link token (shown once to whoever created it; the
/// owner's attempt view derives it again).
#[derive(Debug, Clone)]
pub struct NewInterview {
    /// The interview.
    pub interview: Interview,
    /// The secret token of the interview link.
    pub link_token: String,
}

/// One committed answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Answer {
    /// Position in the interview (0-based, gap-free by convention).
    pub seq: i64,
    /// The rubric item answered.
    pub item_id: String,
    /// Final transcript text.
    pub text: String,
    /// The engine's scores for the answer.
    pub scores: serde_json::Value,
    /// When committed (RFC 3339).
    pub committed_at: String,
}

/// A stored recording file of an interview.
#[derive(Debug, Clone)]
pub struct Recording {
    /// Id (`rec_…`).
    pub id: String,
    /// The interview.
    pub interview_id: String,
    /// Path of the audio file.
    pub path: String,
    /// When stored.
    pub created_at: i64,
}

fn parse_json(
    text: Option<String>,
    what: &'static str,
) -> Result<Option<serde_json::Value>, StoreError> {
    text.map(|t| {
        serde_json::from_str(&t)
            .map_err(|e| StoreError::Internal(anyhow::Error::new(e).context(what)))
    })
    .transpose()
}

fn interview_from_row(row: &AnyRow) -> Result<Interview, StoreError> {
    let status: String = row.try_get("status").ctx("reading interview")?;
    Ok(Interview {
        id: row.try_get("id").ctx("reading interview")?,
        attempt_id: opt_str(row, "attempt_id").ctx("reading interview")?,
        discipline: row.try_get("discipline").ctx("reading interview")?,
        status: InterviewStatus::parse(&status)?,
        created_at: row.try_get("created_at").ctx("reading interview")?,
        expires_at: row.try_get("expires_at").ctx("reading interview")?,
        started_at: opt_i64(row, "started_at").ctx("reading interview")?,
        report: parse_json(
            opt_str(row, "report_json").ctx("reading interview")?,
            "interview report",
        )?,
        completed_at: opt_i64(row, "completed_at").ctx("reading interview")?,
    })
}

fn recording_from_row(row: &AnyRow) -> Result<Recording, StoreError> {
    Ok(Recording {
        id: row.try_get("id").ctx("reading recording")?,
        interview_id: row.try_get("interview_id").ctx("reading recording")?,
        path: row.try_get("path").ctx("reading recording")?,
        created_at: row.try_get("created_at").ctx("reading recording")?,
    })
}

const INTERVIEW_COLUMNS: &str = "id, attempt_id, discipline, status, created_at, expires_at, \
     started_at, report_json, completed_at";

impl Store {
    /// Creates an interview whose link is valid for 7 days from `now`; `attempt_id` is `None`
    /// for demo interviews.
    pub async fn create_interview(
        &self,
        attempt_id: Option<&str>,
        discipline: &str,
        now: i64,
    ) -> Result<NewInterview, StoreError> {
        let id = new_id("int");
        let link_token = self.keys.interview_link_token(&id);
        let expires_at = now + INTERVIEW_LINK_VALID.whole_seconds();
        sqlx::query(
            "INSERT INTO interviews (id, attempt_id, discipline, status, link_token_hash, \
             created_at, expires_at) VALUES ($1, $2, $3, 'pending', $4, $5, $6)",
        )
        .bind(&id)
        .bind(attempt_id)
        .bind(discipline)
        .bind(sha256_hex(link_token.as_bytes()))
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
        .await
        .ctx("creating interview")?;
        Ok(NewInterview {
            interview: self.get_interview(&id).await?,
            link_token,
        })
    }

    /// The link token of an interview (derived from the server secret).
    pub fn interview_link_token(&self, interview_id: &str) -> String {
        self.keys.interview_link_token(interview_id)
    }

    /// An interview by id.
    pub async fn get_interview(&self, id: &str) -> Result<Interview, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INTERVIEW_COLUMNS} FROM interviews WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .ctx("loading interview")?
        .ok_or(StoreError::NotFound("interview"))?;
        interview_from_row(&row)
    }

    /// The interview of a link token. A link that is not completed and past its validity is
    /// `Expired` (`link_expired`); an unknown token is `NotFound`.
    pub async fn get_interview_by_token(
        &self,
        token: &str,
        now: i64,
    ) -> Result<Interview, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INTERVIEW_COLUMNS}, link_revoked_at FROM interviews \
             WHERE link_token_hash = $1"
        )))
        .bind(sha256_hex(token.as_bytes()))
        .fetch_optional(&self.pool)
        .await
        .ctx("loading interview by link")?
        .ok_or(StoreError::NotFound("interview link"))?;
        let interview = interview_from_row(&row)?;
        if let Some(at) = opt_i64(&row, "link_revoked_at").ctx("reading link revocation")? {
            return Err(StoreError::expired(
                "link_revoked",
                format!(
                    "this interview link was revoked at {}",
                    crate::platform::clock::rfc3339(at)
                ),
            ));
        }
        if interview.status != InterviewStatus::Completed && now >= interview.writable_until() {
            return Err(StoreError::expired(
                "link_expired",
                format!(
                    "this interview link expired at {}",
                    crate::platform::clock::rfc3339(interview.expires_at)
                ),
            ));
        }
        Ok(interview)
    }

    /// Loads an interview that may still take writes at `now`.
    async fn writable_interview(&self, id: &str, now: i64) -> Result<Interview, StoreError> {
        let interview = self.get_interview(id).await?;
        if interview.status == InterviewStatus::Completed {
            return Err(StoreError::conflict(
                "interview_completed",
                "this interview is already completed",
            ));
        }
        if now >= interview.writable_until() {
            return Err(StoreError::expired(
                "link_expired",
                "this interview link has expired",
            ));
        }
        Ok(interview)
    }

    /// Marks a pending interview live (the applicant connected).
    pub async fn start_interview(&self, id: &str, now: i64) -> Result<Interview, StoreError> {
        self.writable_interview(id, now).await?;
        sqlx::query(
            "UPDATE interviews SET status = 'live', started_at = $1 \
             WHERE id = $2 AND status = 'pending'",
        )
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await
        .ctx("starting interview")?;
        self.get_interview(id).await
    }

    /// Records that an item was asked (idempotent), so later attempts can avoid it.
    pub async fn record_item_asked(
        &self,
        interview_id: &str,
        item_id: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO interview_items (interview_id, item_id, asked_at) VALUES ($1, $2, $3) \
             ON CONFLICT (interview_id, item_id) DO NOTHING",
        )
        .bind(interview_id)
        .bind(item_id)
        .bind(now)
        .execute(&self.pool)
        .await
        .ctx("recording asked item")?;
        Ok(())
    }

    /// Commits one final answer. Re-committing the same `seq` with the same item and text is a
    /// no-op (a resumed session may repeat its last write); a different one is a conflict.
    pub async fn commit_answer(
        &self,
        interview_id: &str,
        seq: i64,
        item_id: &str,
        text: &str,
        scores: &serde_json::Value,
        now: i64,
    ) -> Result<(), StoreError> {
        self.writable_interview(interview_id, now).await?;
        self.record_item_asked(interview_id, item_id, now).await?;
        let result = sqlx::query(
            "INSERT INTO answers (interview_id, seq, item_id, text, scores_json, committed_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(interview_id)
        .bind(seq)
        .bind(item_id)
        .bind(text)
        .bind(scores.to_string())
        .bind(now)
        .execute(&self.pool)
        .await;
        match result {
            Err(e) if is_unique_violation(&e) => {
                let same = self
                    .answers(interview_id)
                    .await?
                    .into_iter()
                    .any(|a| a.seq == seq && a.item_id == item_id && a.text == text);
                if same {
                    Ok(())
                } else {
                    Err(StoreError::conflict(
                        "answer_exists",
                        format!("answer {seq} is already committed with different content"),
                    ))
                }
            }
            other => {
                other.ctx("committing answer")?;
                Ok(())
            }
        }
    }

    /// The committed answers, in order.
    pub async fn answers(&self, interview_id: &str) -> Result<Vec<Answer>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, item_id, text, scores_json, committed_at FROM answers \
             WHERE interview_id = $1 ORDER BY seq",
        )
        .bind(interview_id)
        .fetch_all(&self.pool)
        .await
        .ctx("loading answers")?;
        rows.iter()
            .map(|row| {
                let scores: String = row.try_get("scores_json").ctx("reading answer")?;
                Ok(Answer {
                    seq: row.try_get("seq").ctx("reading answer")?,
                    item_id: row.try_get("item_id").ctx("reading answer")?,
                    text: row.try_get("text").ctx("reading answer")?,
                    scores: parse_json(Some(scores), "answer scores")?
                        .unwrap_or(serde_json::Value::Null),
                    committed_at: crate::platform::clock::rfc3339(
                        row.try_get("committed_at").ctx("reading answer")?,
                    ),
                })
            })
            .collect()
    }

    /// Completes an interview with the engine's report. For a screening interview this may make
    /// the attempt ready for review (if the case study is in too).
    pub async fn complete_interview(
        &self,
        interview_id: &str,
        report: &serde_json::Value,
        now: i64,
    ) -> Result<Interview, StoreError> {
        self.writable_interview(interview_id, now).await?;
        let updated = sqlx::query(
            "UPDATE interviews SET status = 'completed', report_json = $1, completed_at = $2, \
             started_at = COALESCE(started_at, $2) WHERE id = $3 AND status <> 'completed'",
        )
        .bind(report.to_string())
        .bind(now)
        .bind(interview_id)
        .execute(&self.pool)
        .await
        .ctx("completing interview")?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::conflict(
                "interview_completed",
                "this interview is already completed",
            ));
        }
        let interview = self.get_interview(interview_id).await?;
        if let Some(attempt_id) = &interview.attempt_id {
            self.mark_ready_if_complete(attempt_id, now).await?;
        }
        Ok(interview)
    }

    /// Every interview item this applicant has been asked in any earlier attempt, sorted, so a
    /// new attempt can start fresh by excluding them.
    pub async fn items_seen_by_applicant(
        &self,
        applicant_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT ii.item_id FROM interview_items ii \
             JOIN interviews i ON i.id = ii.interview_id \
             JOIN attempts a ON a.id = i.attempt_id \
             WHERE a.applicant_id = $1 ORDER BY ii.item_id",
        )
        .bind(applicant_id)
        .fetch_all(&self.pool)
        .await
        .ctx("listing items seen")?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("item_id").ctx("reading item id"))
            .collect()
    }

    /// The interview of a screening attempt (the latest, if several).
    pub async fn interview_for_attempt(&self, attempt_id: &str) -> Result<Interview, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INTERVIEW_COLUMNS} FROM interviews WHERE attempt_id = $1 \
             ORDER BY created_at DESC, id DESC LIMIT 1"
        )))
        .bind(attempt_id)
        .fetch_optional(&self.pool)
        .await
        .ctx("loading attempt interview")?
        .ok_or(StoreError::NotFound("interview"))?;
        interview_from_row(&row)
    }

    /// Revokes the interview link of a screening attempt (audited): from `now` on it opens
    /// nothing, neither the page nor the socket nor a resume. Revoking twice is a no-op.
    pub async fn revoke_interview_link(
        &self,
        attempt_id: &str,
        actor: &crate::platform::store::Principal,
        now: i64,
    ) -> Result<Interview, StoreError> {
        let interview = self.interview_for_attempt(attempt_id).await?;
        let mut tx = self.pool.begin().await.ctx("starting link revocation")?;
        let updated = sqlx::query(
            "UPDATE interviews SET link_revoked_at = $2 WHERE id = $1 AND link_revoked_at IS NULL",
        )
        .bind(&interview.id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .ctx("revoking interview link")?;
        if updated.rows_affected() > 0 {
            super::privacy::insert_audit(
                &mut tx,
                actor,
                "interview.link_revoked",
                "interview",
                &interview.id,
                &serde_json::json!({ "attempt_id": attempt_id }),
                now,
            )
            .await?;
        }
        tx.commit().await.ctx("committing link revocation")?;
        Ok(interview)
    }

    /// Registers a recording file written for an interview.
    pub async fn add_recording(
        &self,
        interview_id: &str,
        path: &str,
        now: i64,
    ) -> Result<Recording, StoreError> {
        let id = new_id("rec");
        sqlx::query(
            "INSERT INTO recordings (id, interview_id, path, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&id)
        .bind(interview_id)
        .bind(path)
        .bind(now)
        .execute(&self.pool)
        .await
        .ctx("adding recording")?;
        Ok(Recording {
            id,
            interview_id: interview_id.to_string(),
            path: path.to_string(),
            created_at: now,
        })
    }

    /// The recordings of an interview, oldest first.
    pub async fn recordings_for_interview(
        &self,
        interview_id: &str,
    ) -> Result<Vec<Recording>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, interview_id, path, created_at FROM recordings \
             WHERE interview_id = $1 ORDER BY created_at, id",
        )
        .bind(interview_id)
        .fetch_all(&self.pool)
        .await
        .ctx("listing recordings")?;
        rows.iter().map(recording_from_row).collect()
    }

    /// One recording.
    pub async fn recording(&self, id: &str) -> Result<Recording, StoreError> {
        let row =
            sqlx::query("SELECT id, interview_id, path, created_at FROM recordings WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .ctx("loading recording")?
                .ok_or(StoreError::NotFound("recording"))?;
        recording_from_row(&row)
    }
}
