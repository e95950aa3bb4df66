//! Accountability and personal data: the audit log of reviewer and admin actions, idempotency
//! records for retried creates, erasure of an applicant's personal data, the recording retention
//! purge, and clean-up of expired sessions and links.

use sqlx::AnyConnection;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::Row;

use super::people::Principal;
use super::{Page, PageRequest, Store, opt_i64, opt_str, paginate};
use crate::platform::crypto::{hex, random_bytes};
use crate::platform::error::{DbContext, StoreError, is_unique_violation};
use crate::platform::objects::Objects;

/// One audit log entry.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// Id (`aud_…`).
    pub id: String,
    /// When.
    pub at: i64,
    /// Who acted.
    pub actor_id: String,
    /// Their role then.
    pub actor_role: String,
    /// What they did (`screening.decided`, `score.overridden`, …).
    pub action: String,
    /// Kind of thing acted on.
    pub subject_type: String,
    /// Its id.
    pub subject_id: String,
    /// Details.
    pub details: serde_json::Value,
}

/// What a purge removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Database rows deleted.
    pub rows: u64,
    /// Recordings deleted (or found already gone).
    pub files: u64,
    /// Files that could not be deleted (their rows are kept for the next run).
    pub failed: Vec<String>,
}

/// The state of an idempotency key when a request arrives with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyBegin {
    /// First use: run the request, then call `idempotency_finish` (or `_abort`).
    Started,
    /// Seen before with the same request and finished: send this response again.
    Replay {
        /// Stored status.
        status: u16,
        /// Stored content type.
        content_type: Option<String>,
        /// Stored body.
        body: String,
    },
    /// Seen before with the same request, still running.
    InProgress,
    /// Seen before with a different request.
    Mismatch,
}

/// An audit entry id that sorts in write order within one server (time, then a process-wide
/// counter), so the log reads in the order things happened even within one second.
fn audit_id(now: i64) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "aud_{:011x}{:010x}{}",
        now.max(0),
        n & 0xff_ffff_ffff,
        hex(&random_bytes::<6>())
    )
}

/// Writes an audit entry inside the caller's transaction.
pub(super) async fn insert_audit(
    conn: &mut AnyConnection,
    actor: &Principal,
    action: &str,
    subject_type: &str,
    subject_id: &str,
    details: &serde_json::Value,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (id, at, actor_id, actor_role, action, subject_type, subject_id, \
         details_json) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(audit_id(now))
    .bind(now)
    .bind(actor.id())
    .bind(actor.role_name())
    .bind(action)
    .bind(subject_type)
    .bind(subject_id)
    .bind(details.to_string())
    .execute(conn)
    .await
    .ctx("writing audit entry")?;
    Ok(())
}

impl Store {
    /// The audit log, oldest first.
    pub async fn list_audit(&self, page: &PageRequest) -> Result<Page<AuditEntry>, StoreError> {
        let (key, after, limit) = page.binds();
        let rows = sqlx::query(
            "SELECT id, at, actor_id, actor_role, action, subject_type, subject_id, details_json \
             FROM audit_log WHERE (at > $1 OR (at = $1 AND id > $2)) ORDER BY at, id LIMIT $3",
        )
        .bind(key)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("listing audit log")?;
        let items = rows
            .iter()
            .map(|row| {
                let details: String = row.try_get("details_json").ctx("reading audit entry")?;
                Ok(AuditEntry {
                    id: row.try_get("id").ctx("reading audit entry")?,
                    at: row.try_get("at").ctx("reading audit entry")?,
                    actor_id: row.try_get("actor_id").ctx("reading audit entry")?,
                    actor_role: row.try_get("actor_role").ctx("reading audit entry")?,
                    action: row.try_get("action").ctx("reading audit entry")?,
                    subject_type: row.try_get("subject_type").ctx("reading audit entry")?,
                    subject_id: row.try_get("subject_id").ctx("reading audit entry")?,
                    details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(paginate(items, page.limit, |e| (e.at, e.id.clone())))
    }

    /// Writes an audit entry on its own.
    pub async fn audit(
        &self,
        actor: &Principal,
        action: &str,
        subject_type: &str,
        subject_id: &str,
        details: &serde_json::Value,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await.ctx("acquiring connection")?;
        insert_audit(
            &mut conn,
            actor,
            action,
            subject_type,
            subject_id,
            details,
            now,
        )
        .await
    }

    /// Claims an idempotency key for a request, or reports what happened to it before.
    pub async fn idempotency_begin(
        &self,
        principal: &str,
        key: &str,
        method: &str,
        path: &str,
        request_hash: &str,
        now: i64,
    ) -> Result<IdempotencyBegin, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (principal, idem_key, method, path, request_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(principal)
        .bind(key)
        .bind(method)
        .bind(path)
        .bind(request_hash)
        .bind(now)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => return Ok(IdempotencyBegin::Started),
            Err(e) if is_unique_violation(&e) => {}
            Err(e) => return Err(e).ctx("claiming idempotency key"),
        }
        let row = sqlx::query(
            "SELECT method, path, request_hash, status, content_type, response_body \
             FROM idempotency_keys WHERE principal = $1 AND idem_key = $2",
        )
        .bind(principal)
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .ctx("reading idempotency key")?;
        let Some(row) = row else {
            // Deleted between the two statements (aborted): treat as in progress; a retry works.
            return Ok(IdempotencyBegin::InProgress);
        };
        let same = row
            .try_get::<String, _>("method")
            .ctx("reading idempotency key")?
            == method
            && row
                .try_get::<String, _>("path")
                .ctx("reading idempotency key")?
                == path
            && row
                .try_get::<String, _>("request_hash")
                .ctx("reading idempotency key")?
                == request_hash;
        if !same {
            return Ok(IdempotencyBegin::Mismatch);
        }
        match opt_i64(&row, "status").ctx("reading idempotency key")? {
            None => Ok(IdempotencyBegin::InProgress),
            Some(status) => Ok(IdempotencyBegin::Replay {
                status: u16::try_from(status).unwrap_or(200),
                content_type: opt_str(&row, "content_type").ctx("reading idempotency key")?,
                body: opt_str(&row, "response_body")
                    .ctx("reading idempotency key")?
                    .unwrap_or_default(),
            }),
        }
    }

    /// Stores the response of a request whose idempotency key was claimed.
    pub async fn idempotency_finish(
        &self,
        principal: &str,
        key: &str,
        status: u16,
        content_type: Option<&str>,
        body: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE idempotency_keys SET status = $1, content_type = $2, response_body = $3 \
             WHERE principal = $4 AND idem_key = $5",
        )
        .bind(i64::from(status))
        .bind(content_type)
        .bind(body)
        .bind(principal)
        .bind(key)
        .execute(&self.pool)
        .await
        .ctx("storing idempotent response")?;
        Ok(())
    }

    /// Releases a claimed key whose request failed, so that a retry runs again.
    pub async fn idempotency_abort(&self, principal: &str, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM idempotency_keys WHERE principal = $1 AND idem_key = $2")
            .bind(principal)
            .bind(key)
            .execute(&self.pool)
            .await
            .ctx("releasing idempotency key")?;
        Ok(())
    }

    /// Deletes expired sessions and sign-in links, and idempotency keys older than `keys_before`.
    pub async fn purge_expired(&self, now: i64, keys_before: i64) -> Result<u64, StoreError> {
        let mut removed = 0;
        removed += sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .ctx("purging sessions")?
            .rows_affected();
        removed += sqlx::query("DELETE FROM magic_links WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .ctx("purging magic links")?
            .rows_affected();
        removed += sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(keys_before)
            .execute(&self.pool)
            .await
            .ctx("purging idempotency keys")?
            .rows_affected();
        Ok(removed)
    }

    /// Deletes recordings created before `older_than` (unix seconds): the object, then the row.
    /// An object that cannot be deleted keeps its row so the next run retries.
    pub async fn purge_recordings(
        &self,
        older_than: i64,
        objects: &Objects,
    ) -> Result<PurgeReport, StoreError> {
        let rows = sqlx::query("SELECT id, path FROM recordings WHERE created_at < $1")
            .bind(older_than)
            .fetch_all(&self.pool)
            .await
            .ctx("listing expired recordings")?;
        let mut report = PurgeReport::default();
        for row in rows {
            let id: String = row.try_get("id").ctx("reading recording")?;
            let path: String = row.try_get("path").ctx("reading recording")?;
            match objects.delete_location(&path).await {
                Ok(deleted) => report.files += u64::from(deleted),
                Err(e) => {
                    tracing::warn!(recording = %id, path = %path, error = format!("{e:#}"), "could not delete recording");
                    report.failed.push(path);
                    continue;
                }
            }
            report.rows += sqlx::query("DELETE FROM recordings WHERE id = $1")
                .bind(&id)
                .execute(&self.pool)
                .await
                .ctx("deleting recording row")?
                .rows_affected();
        }
        Ok(report)
    }

    /// Erases an applicant's personal data: profile fields, interview answers and reports,
    /// case-study text, feedback text, acceptance IPs, recordings, sessions and links. What
    /// remains is pseudonymous (ids, dates, outcomes, submitted work and pay records).
    pub async fn erase_applicant(
        &self,
        applicant_id: &str,
        now: i64,
        objects: &Objects,
    ) -> Result<PurgeReport, StoreError> {
        let actor = Principal::Applicant {
            id: applicant_id.to_string(),
        };
        let interviews_of = "SELECT i.id FROM interviews i JOIN attempts a ON a.id = i.attempt_id \
                             WHERE a.applicant_id = $1";
        let recordings = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT path FROM recordings WHERE interview_id IN ({interviews_of})"
        )))
        .bind(applicant_id)
        .fetch_all(&self.pool)
        .await
        .ctx("listing recordings to erase")?;
        let mut tx = self.pool.begin().await.ctx("starting erasure")?;
        let mut report = PurgeReport::default();
        for statement in [
            format!("DELETE FROM recordings WHERE interview_id IN ({interviews_of})"),
            format!("DELETE FROM answers WHERE interview_id IN ({interviews_of})"),
            format!("UPDATE interviews SET report_json = NULL WHERE id IN ({interviews_of})"),
            "UPDATE attempts SET case_study_text = NULL, feedback_text = NULL \
             WHERE applicant_id = $1"
                .to_string(),
            "UPDATE acceptances SET ip = NULL WHERE applicant_id = $1".to_string(),
            "DELETE FROM sessions WHERE principal = 'applicant' AND subject_id = $1".to_string(),
            "DELETE FROM magic_links WHERE applicant_id = $1".to_string(),
        ] {
            report.rows += sqlx::query(sqlx::AssertSqlSafe(statement))
                .bind(applicant_id)
                .execute(&mut *tx)
                .await
                .ctx("erasing applicant data")?
                .rows_affected();
        }
        let erased = sqlx::query(
            "UPDATE applicants SET name = '[erased]', email = $1, country = 'ZZ', credentials = '', \
             experience = '', years_experience = 0, erased_at = $2 \
             WHERE id = $3 AND erased_at IS NULL",
        )
        .bind(format!("erased+{applicant_id}@erased.invalid"))
        .bind(now)
        .bind(applicant_id)
        .execute(&mut *tx)
        .await
        .ctx("erasing applicant profile")?;
        if erased.rows_affected() == 0 {
            return Err(StoreError::NotFound("applicant"));
        }
        insert_audit(
            &mut tx,
            &actor,
            "applicant.erased",
            "applicant",
            applicant_id,
            &serde_json::json!({"rows": report.rows}),
            now,
        )
        .await?;
        tx.commit().await.ctx("committing erasure")?;
        for row in recordings {
            let path: String = row.try_get("path").ctx("reading recording path")?;
            match objects.delete_location(&path).await {
                Ok(deleted) => report.files += u64::from(deleted),
                Err(e) => {
                    tracing::warn!(path = %path, error = format!("{e:#}"), "could not delete erased recording");
                    report.failed.push(path);
                }
            }
        }
        Ok(report)
    }
}
