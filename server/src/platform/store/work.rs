//! Contract work after a pass: versioned agreements (contractor agreement, NDA) and their
//! acceptances, roles per discipline with hourly pay, matching contractors to roles, tasks taken
//! and submitted with time spent, task review (which extends access), payout lines, and the
//! per-role export of submitted work.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::ToSchema;

use super::people::Principal;
use super::{Page, PageRequest, Store, opt_i64, opt_str, paginate};
use crate::platform::crypto::{new_id, sha256_hex};
use crate::platform::error::{DbContext, StoreError, is_unique_violation};

/// The documents every contractor must accept (latest version) before any task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    /// The independent contractor agreement.
    ContractorAgreement,
    /// The non-disclosure agreement.
    Nda,
}

impl DocumentKind {
    /// Both kinds, in the order they are presented.
    pub const ALL: [DocumentKind; 2] = [DocumentKind::ContractorAgreement, DocumentKind::Nda];

    /// Storage form.
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentKind::ContractorAgreement => "contractor_agreement",
            DocumentKind::Nda => "nda",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "contractor_agreement" => Ok(Self::ContractorAgreement),
            "nda" => Ok(Self::Nda),
            other => Err(StoreError::Internal(anyhow::anyhow!(
                "unknown document kind {other:?}"
            ))),
        }
    }
}

/// A published document version.
#[derive(Debug, Clone)]
pub struct DocumentRow {
    /// Id (`doc_…`).
    pub id: String,
    /// Kind.
    pub kind: DocumentKind,
    /// 1, 2, … per kind.
    pub version: i64,
    /// Title.
    pub title: String,
    /// Full text.
    pub body: String,
    /// SHA-256 of the body (UTF-8), hex.
    pub sha256: String,
    /// When published.
    pub published_at: i64,
}

/// An applicant's acceptance of a document version.
#[derive(Debug, Clone)]
pub struct AcceptanceRow {
    /// The document.
    pub document_id: String,
    /// Its kind.
    pub kind: DocumentKind,
    /// Its version.
    pub version: i64,
    /// The hash the applicant accepted.
    pub sha256: String,
    /// Client IP at acceptance (cleared on erasure).
    pub ip: Option<String>,
    /// When accepted.
    pub accepted_at: i64,
}

/// A role contractors are matched to.
#[derive(Debug, Clone)]
pub struct RoleRow {
    /// Id (`rol_…`).
    pub id: String,
    /// Rubric id of the discipline.
    pub discipline: String,
    /// Name.
    pub name: String,
    /// Hourly pay, minor units.
    pub hourly_rate_cents: i64,
    /// ISO 4217 currency.
    pub currency: String,
    /// When created.
    pub created_at: i64,
}

/// A task to post.
#[derive(Debug, Clone)]
pub struct NewTask {
    /// The role it belongs to.
    pub role_id: String,
    /// Title.
    pub title: String,
    /// What to do.
    pub instructions: String,
    /// Expected minutes (20–60).
    pub estimated_minutes: i64,
}

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Posted, nobody has it.
    Open,
    /// A contractor is working on it.
    Taken,
    /// Submitted, awaiting review.
    Submitted,
    /// Accepted by an admin.
    Accepted,
    /// Rejected by an admin.
    Rejected,
}

/// A task as stored.
#[derive(Debug, Clone)]
pub struct TaskRow {
    /// Id (`tsk_…`).
    pub id: String,
    /// Role.
    pub role_id: String,
    /// Title.
    pub title: String,
    /// Instructions.
    pub instructions: String,
    /// Expected minutes.
    pub estimated_minutes: i64,
    /// When posted.
    pub created_at: i64,
    /// Contractor working on it.
    pub taken_by: Option<String>,
    /// When taken.
    pub taken_at: Option<i64>,
    /// When submitted.
    pub submitted_at: Option<i64>,
    /// The work product.
    pub output: Option<String>,
    /// Minutes the contractor reported.
    pub minutes_spent: Option<i64>,
    /// Hourly rate at submission, minor units.
    pub hourly_rate_cents: Option<i64>,
    /// Currency at submission.
    pub currency: Option<String>,
    /// `accepted` or `rejected`.
    pub review: Option<String>,
    /// When reviewed.
    pub reviewed_at: Option<i64>,
}

impl TaskRow {
    /// The task's state.
    pub fn state(&self) -> TaskState {
        match (self.review.as_deref(), self.submitted_at, &self.taken_by) {
            (Some("accepted"), ..) => TaskState::Accepted,
            (Some(_), ..) => TaskState::Rejected,
            (None, Some(_), _) => TaskState::Submitted,
            (None, None, Some(_)) => TaskState::Taken,
            (None, None, None) => TaskState::Open,
        }
    }
}

/// One paid unit of work.
#[derive(Debug, Clone)]
pub struct PayoutLine {
    /// The task.
    pub task_id: String,
    /// When submitted.
    pub submitted_at: i64,
    /// Minutes reported.
    pub minutes_spent: i64,
    /// Hourly rate, minor units.
    pub hourly_rate_cents: i64,
    /// Currency.
    pub currency: String,
}

fn document_from_row(row: &AnyRow) -> Result<DocumentRow, StoreError> {
    let kind: String = row.try_get("kind").ctx("reading document")?;
    Ok(DocumentRow {
        id: row.try_get("id").ctx("reading document")?,
        kind: DocumentKind::parse(&kind)?,
        version: row.try_get("version").ctx("reading document")?,
        title: row.try_get("title").ctx("reading document")?,
        body: row.try_get("body").ctx("reading document")?,
        sha256: row.try_get("sha256").ctx("reading document")?,
        published_at: row.try_get("published_at").ctx("reading document")?,
    })
}

fn role_from_row(row: &AnyRow) -> Result<RoleRow, StoreError> {
    Ok(RoleRow {
        id: row.try_get("id").ctx("reading role")?,
        discipline: row.try_get("discipline").ctx("reading role")?,
        name: row.try_get("name").ctx("reading role")?,
        hourly_rate_cents: row.try_get("hourly_rate_cents").ctx("reading role")?,
        currency: row.try_get("currency").ctx("reading role")?,
        created_at: row.try_get("created_at").ctx("reading role")?,
    })
}

fn task_from_row(row: &AnyRow) -> Result<TaskRow, StoreError> {
    Ok(TaskRow {
        id: row.try_get("id").ctx("reading task")?,
        role_id: row.try_get("role_id").ctx("reading task")?,
        title: row.try_get("title").ctx("reading task")?,
        instructions: row.try_get("instructions").ctx("reading task")?,
        estimated_minutes: row.try_get("estimated_minutes").ctx("reading task")?,
        created_at: row.try_get("created_at").ctx("reading task")?,
        taken_by: opt_str(row, "taken_by").ctx("reading task")?,
        taken_at: opt_i64(row, "taken_at").ctx("reading task")?,
        submitted_at: opt_i64(row, "submitted_at").ctx("reading task")?,
        output: opt_str(row, "output").ctx("reading task")?,
        minutes_spent: opt_i64(row, "minutes_spent").ctx("reading task")?,
        hourly_rate_cents: opt_i64(row, "hourly_rate_cents").ctx("reading task")?,
        currency: opt_str(row, "currency").ctx("reading task")?,
        review: opt_str(row, "review").ctx("reading task")?,
        reviewed_at: opt_i64(row, "reviewed_at").ctx("reading task")?,
    })
}

const DOCUMENT_COLUMNS: &str = "id, kind, version, title, body, sha256, published_at";
const TASK_COLUMNS: &str = "t.id, t.role_id, t.title, t.instructions, t.estimated_minutes, \
     t.created_at, t.taken_by, t.taken_at, t.submitted_at, t.output, t.minutes_spent, \
     t.hourly_rate_cents, t.currency, t.review, t.reviewed_at";

impl Store {
    /// Publishes the next version of a document (its SHA-256 computed here), audited.
    pub async fn publish_document(
        &self,
        kind: DocumentKind,
        title: &str,
        body: &str,
        by: &Principal,
        now: i64,
    ) -> Result<DocumentRow, StoreError> {
        let version: Option<i64> =
            sqlx::query("SELECT MAX(version) AS v FROM documents WHERE kind = $1")
                .bind(kind.as_str())
                .fetch_one(&self.pool)
                .await
                .ctx("reading document versions")?
                .try_get("v")
                .ctx("reading document versions")?;
        let id = new_id("doc");
        let sha = sha256_hex(body.as_bytes());
        let mut tx = self.pool.begin().await.ctx("starting publication")?;
        let inserted = sqlx::query(
            "INSERT INTO documents (id, kind, version, title, body, sha256, published_at, published_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&id)
        .bind(kind.as_str())
        .bind(version.unwrap_or(0) + 1)
        .bind(title)
        .bind(body)
        .bind(&sha)
        .bind(now)
        .bind(by.id())
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::conflict(
                    "version_conflict",
                    "another version was published at the same time; retry",
                ));
            }
            other => {
                other.ctx("inserting document")?;
            }
        }
        super::privacy::insert_audit(
            &mut tx,
            by,
            "document.published",
            "document",
            &id,
            &serde_json::json!({"kind": kind, "version": version.unwrap_or(0) + 1, "sha256": sha}),
            now,
        )
        .await?;
        tx.commit().await.ctx("committing publication")?;
        self.document(&id).await
    }

    /// A document version.
    pub async fn document(&self, id: &str) -> Result<DocumentRow, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DOCUMENT_COLUMNS} FROM documents WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .ctx("loading document")?
        .ok_or(StoreError::NotFound("document"))?;
        document_from_row(&row)
    }

    /// The latest version of each kind that has been published.
    pub async fn current_documents(&self) -> Result<Vec<DocumentRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DOCUMENT_COLUMNS} FROM documents d WHERE version = \
             (SELECT MAX(version) FROM documents x WHERE x.kind = d.kind) ORDER BY kind"
        )))
        .fetch_all(&self.pool)
        .await
        .ctx("loading current documents")?;
        rows.iter().map(document_from_row).collect()
    }

    /// All document versions, oldest first.
    pub async fn list_documents(
        &self,
        page: &PageRequest,
    ) -> Result<Page<DocumentRow>, StoreError> {
        let (key, after, limit) = page.binds();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DOCUMENT_COLUMNS} FROM documents \
             WHERE (published_at > $1 OR (published_at = $1 AND id > $2)) \
             ORDER BY published_at, id LIMIT $3"
        )))
        .bind(key)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("listing documents")?;
        let items = rows
            .iter()
            .map(document_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(paginate(items, page.limit, |d| {
            (d.published_at, d.id.clone())
        }))
    }

    /// Records acceptance of the current version of a document, with the hash the applicant saw
    /// and their IP. Accepting the same version again returns the first acceptance.
    pub async fn accept_document(
        &self,
        applicant_id: &str,
        document_id: &str,
        sha256: &str,
        ip: Option<&str>,
        now: i64,
    ) -> Result<AcceptanceRow, StoreError> {
        let document = self.document(document_id).await?;
        let current = self.current_documents().await?;
        if !current.iter().any(|d| d.id == document.id) {
            return Err(StoreError::conflict(
                "document_superseded",
                "a newer version of this document exists; accept that one",
            ));
        }
        if document.sha256 != sha256 {
            return Err(StoreError::invalid(
                "sha256",
                "does not match the document's SHA-256; reload the document and accept the text you read",
            ));
        }
        let inserted = sqlx::query(
            "INSERT INTO acceptances (id, applicant_id, document_id, sha256, ip, accepted_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (applicant_id, document_id) DO NOTHING",
        )
        .bind(new_id("acc"))
        .bind(applicant_id)
        .bind(document_id)
        .bind(sha256)
        .bind(ip)
        .bind(now)
        .execute(&self.pool)
        .await;
        inserted.ctx("recording acceptance")?;
        self.acceptances_of(applicant_id)
            .await?
            .into_iter()
            .find(|a| a.document_id == document_id)
            .ok_or_else(|| StoreError::Internal(anyhow::anyhow!("acceptance vanished")))
    }

    /// An applicant's acceptances, oldest first.
    pub async fn acceptances_of(
        &self,
        applicant_id: &str,
    ) -> Result<Vec<AcceptanceRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.document_id, d.kind, d.version, a.sha256, a.ip, a.accepted_at \
             FROM acceptances a JOIN documents d ON d.id = a.document_id \
             WHERE a.applicant_id = $1 ORDER BY a.accepted_at, a.id",
        )
        .bind(applicant_id)
        .fetch_all(&self.pool)
        .await
        .ctx("listing acceptances")?;
        rows.iter()
            .map(|row| {
                let kind: String = row.try_get("kind").ctx("reading acceptance")?;
                Ok(AcceptanceRow {
                    document_id: row.try_get("document_id").ctx("reading acceptance")?,
                    kind: DocumentKind::parse(&kind)?,
                    version: row.try_get("version").ctx("reading acceptance")?,
                    sha256: row.try_get("sha256").ctx("reading acceptance")?,
                    ip: opt_str(row, "ip").ctx("reading acceptance")?,
                    accepted_at: row.try_get("accepted_at").ctx("reading acceptance")?,
                })
            })
            .collect()
    }

    /// Document kinds whose latest version this applicant has not accepted (a kind never
    /// published counts as missing: nobody can work before both exist).
    pub async fn missing_agreements(
        &self,
        applicant_id: &str,
    ) -> Result<Vec<DocumentKind>, StoreError> {
        let current = self.current_documents().await?;
        let accepted = self.acceptances_of(applicant_id).await?;
        Ok(DocumentKind::ALL
            .into_iter()
            .filter(|kind| {
                !current
                    .iter()
                    .any(|d| d.kind == *kind && accepted.iter().any(|a| a.document_id == d.id))
            })
            .collect())
    }

    /// When the applicant last passed screening (any discipline).
    pub async fn last_pass_at(&self, applicant_id: &str) -> Result<Option<i64>, StoreError> {
        sqlx::query(
            "SELECT MAX(decided_at) AS at FROM attempts WHERE applicant_id = $1 AND outcome = 'pass'",
        )
        .bind(applicant_id)
        .fetch_one(&self.pool)
        .await
        .ctx("reading last pass")?
        .try_get::<Option<i64>, _>("at")
        .ctx("reading last pass")
    }

    /// Disciplines the applicant has passed screening in.
    pub async fn passed_disciplines(&self, applicant_id: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT discipline FROM attempts WHERE applicant_id = $1 AND outcome = 'pass' \
             ORDER BY discipline",
        )
        .bind(applicant_id)
        .fetch_all(&self.pool)
        .await
        .ctx("listing passed disciplines")?;
        rows.iter()
            .map(|r| {
                r.try_get::<String, _>("discipline")
                    .ctx("reading discipline")
            })
            .collect()
    }

    /// When the applicant's last accepted task was accepted.
    pub async fn last_accepted_task_at(
        &self,
        applicant_id: &str,
    ) -> Result<Option<i64>, StoreError> {
        sqlx::query(
            "SELECT MAX(reviewed_at) AS at FROM tasks WHERE taken_by = $1 AND review = 'accepted'",
        )
        .bind(applicant_id)
        .fetch_one(&self.pool)
        .await
        .ctx("reading last accepted task")?
        .try_get::<Option<i64>, _>("at")
        .ctx("reading last accepted task")
    }

    /// Creates a role (`role_exists` if the discipline already has one by that name), audited.
    pub async fn create_role(
        &self,
        discipline: &str,
        name: &str,
        hourly_rate_cents: i64,
        currency: &str,
        by: &Principal,
        now: i64,
    ) -> Result<RoleRow, StoreError> {
        let id = new_id("rol");
        let mut tx = self.pool.begin().await.ctx("starting role creation")?;
        let inserted = sqlx::query(
            "INSERT INTO roles (id, discipline, name, hourly_rate_cents, currency, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(discipline)
        .bind(name)
        .bind(hourly_rate_cents)
        .bind(currency)
        .bind(now)
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::conflict(
                    "role_exists",
                    "this discipline already has a role with that name",
                ));
            }
            other => {
                other.ctx("inserting role")?;
            }
        }
        super::privacy::insert_audit(
            &mut tx,
            by,
            "role.created",
            "role",
            &id,
            &serde_json::json!({"discipline": discipline, "name": name,
                "hourly_rate_cents": hourly_rate_cents, "currency": currency}),
            now,
        )
        .await?;
        tx.commit().await.ctx("committing role")?;
        self.role(&id).await
    }

    /// A role.
    pub async fn role(&self, id: &str) -> Result<RoleRow, StoreError> {
        let row = sqlx::query(
            "SELECT id, discipline, name, hourly_rate_cents, currency, created_at FROM roles WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .ctx("loading role")?
        .ok_or(StoreError::NotFound("role"))?;
        role_from_row(&row)
    }

    /// Roles, oldest first.
    pub async fn list_roles(&self, page: &PageRequest) -> Result<Page<RoleRow>, StoreError> {
        let (key, after, limit) = page.binds();
        let rows = sqlx::query(
            "SELECT id, discipline, name, hourly_rate_cents, currency, created_at FROM roles \
             WHERE (created_at > $1 OR (created_at = $1 AND id > $2)) \
             ORDER BY created_at, id LIMIT $3",
        )
        .bind(key)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("listing roles")?;
        let items = rows
            .iter()
            .map(role_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(paginate(items, page.limit, |r| {
            (r.created_at, r.id.clone())
        }))
    }

    /// Roles an applicant is matched to.
    pub async fn roles_of(&self, applicant_id: &str) -> Result<Vec<RoleRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.id, r.discipline, r.name, r.hourly_rate_cents, r.currency, r.created_at \
             FROM roles r JOIN role_members m ON m.role_id = r.id \
             WHERE m.applicant_id = $1 ORDER BY r.created_at, r.id",
        )
        .bind(applicant_id)
        .fetch_all(&self.pool)
        .await
        .ctx("listing applicant roles")?;
        rows.iter().map(role_from_row).collect()
    }

    /// Matches a contractor to a role (idempotent), audited.
    pub async fn match_role(
        &self,
        role_id: &str,
        applicant_id: &str,
        by: &Principal,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.ctx("starting match")?;
        let inserted = sqlx::query(
            "INSERT INTO role_members (role_id, applicant_id, matched_at, matched_by) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (role_id, applicant_id) DO NOTHING",
        )
        .bind(role_id)
        .bind(applicant_id)
        .bind(now)
        .bind(by.id())
        .execute(&mut *tx)
        .await
        .ctx("matching role")?;
        if inserted.rows_affected() > 0 {
            super::privacy::insert_audit(
                &mut tx,
                by,
                "role.matched",
                "role",
                role_id,
                &serde_json::json!({"applicant_id": applicant_id}),
                now,
            )
            .await?;
        }
        tx.commit().await.ctx("committing match")?;
        Ok(())
    }

    /// Posts a task.
    pub async fn create_task(
        &self,
        new: &NewTask,
        by: &Principal,
        now: i64,
    ) -> Result<TaskRow, StoreError> {
        let id = new_id("tsk");
        sqlx::query(
            "INSERT INTO tasks (id, role_id, title, instructions, estimated_minutes, created_at, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(&new.role_id)
        .bind(&new.title)
        .bind(&new.instructions)
        .bind(new.estimated_minutes)
        .bind(now)
        .bind(by.id())
        .execute(&self.pool)
        .await
        .ctx("inserting task")?;
        self.task(&id).await
    }

    /// A task.
    pub async fn task(&self, id: &str) -> Result<TaskRow, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TASK_COLUMNS} FROM tasks t WHERE t.id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .ctx("loading task")?
        .ok_or(StoreError::NotFound("task"))?;
        task_from_row(&row)
    }

    /// All tasks, oldest first (admin view).
    pub async fn list_tasks(&self, page: &PageRequest) -> Result<Page<TaskRow>, StoreError> {
        let (key, after, limit) = page.binds();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TASK_COLUMNS} FROM tasks t \
             WHERE (t.created_at > $1 OR (t.created_at = $1 AND t.id > $2)) \
             ORDER BY t.created_at, t.id LIMIT $3"
        )))
        .bind(key)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("listing tasks")?;
        let items = rows
            .iter()
            .map(task_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(paginate(items, page.limit, |t| {
            (t.created_at, t.id.clone())
        }))
    }

    /// What a contractor sees: open tasks in their roles, and tasks they have taken.
    pub async fn tasks_for_contractor(
        &self,
        applicant_id: &str,
        page: &PageRequest,
    ) -> Result<Page<TaskRow>, StoreError> {
        let (key, after, limit) = page.binds();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TASK_COLUMNS} FROM tasks t \
             WHERE (t.taken_by = $1 OR (t.taken_by IS NULL AND t.role_id IN \
                   (SELECT role_id FROM role_members WHERE applicant_id = $1))) \
             AND (t.created_at > $2 OR (t.created_at = $2 AND t.id > $3)) \
             ORDER BY t.created_at, t.id LIMIT $4"
        )))
        .bind(applicant_id)
        .bind(key)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("listing contractor tasks")?;
        let items = rows
            .iter()
            .map(task_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(paginate(items, page.limit, |t| {
            (t.created_at, t.id.clone())
        }))
    }

    /// Gives an open task to a contractor (`task_taken` if someone was first). Eligibility is
    /// checked by the caller.
    pub async fn take_task(
        &self,
        task_id: &str,
        applicant_id: &str,
        now: i64,
    ) -> Result<TaskRow, StoreError> {
        let updated = sqlx::query(
            "UPDATE tasks SET taken_by = $1, taken_at = $2 WHERE id = $3 AND taken_by IS NULL",
        )
        .bind(applicant_id)
        .bind(now)
        .bind(task_id)
        .execute(&self.pool)
        .await
        .ctx("taking task")?;
        if updated.rows_affected() == 0 {
            self.task(task_id).await?;
            return Err(StoreError::conflict(
                "task_taken",
                "this task has already been taken",
            ));
        }
        self.task(task_id).await
    }

    /// Submits a taken task with the work product and minutes spent; the role's current rate is
    /// recorded with it.
    pub async fn submit_task(
        &self,
        task_id: &str,
        applicant_id: &str,
        output: &str,
        minutes_spent: i64,
        now: i64,
    ) -> Result<TaskRow, StoreError> {
        let task = self.task(task_id).await?;
        if task.taken_by.as_deref() != Some(applicant_id) {
            return Err(StoreError::NotFound("task"));
        }
        let role = self.role(&task.role_id).await?;
        let updated = sqlx::query(
            "UPDATE tasks SET submitted_at = $1, output = $2, minutes_spent = $3, \
             hourly_rate_cents = $4, currency = $5 \
             WHERE id = $6 AND taken_by = $7 AND submitted_at IS NULL",
        )
        .bind(now)
        .bind(output)
        .bind(minutes_spent)
        .bind(role.hourly_rate_cents)
        .bind(&role.currency)
        .bind(task_id)
        .bind(applicant_id)
        .execute(&self.pool)
        .await
        .ctx("submitting task")?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::conflict(
                "task_submitted",
                "this task was already submitted",
            ));
        }
        self.task(task_id).await
    }

    /// Accepts or rejects a submitted task, audited. Acceptance extends the contractor's access.
    pub async fn review_task(
        &self,
        task_id: &str,
        accepted: bool,
        by: &Principal,
        now: i64,
    ) -> Result<TaskRow, StoreError> {
        let review = if accepted { "accepted" } else { "rejected" };
        let mut tx = self.pool.begin().await.ctx("starting task review")?;
        let updated = sqlx::query(
            "UPDATE tasks SET review = $1, reviewed_at = $2, reviewed_by = $3 \
             WHERE id = $4 AND submitted_at IS NOT NULL AND review IS NULL",
        )
        .bind(review)
        .bind(now)
        .bind(by.id())
        .bind(task_id)
        .execute(&mut *tx)
        .await
        .ctx("reviewing task")?;
        if updated.rows_affected() == 0 {
            drop(tx);
            self.task(task_id).await?;
            return Err(StoreError::conflict(
                "task_not_reviewable",
                "only a submitted, not yet reviewed task can be reviewed",
            ));
        }
        super::privacy::insert_audit(
            &mut tx,
            by,
            "task.reviewed",
            "task",
            task_id,
            &serde_json::json!({"review": review}),
            now,
        )
        .await?;
        tx.commit().await.ctx("committing task review")?;
        self.task(task_id).await
    }

    /// The contractor's paid work: submitted tasks not rejected.
    pub async fn payout_lines(&self, applicant_id: &str) -> Result<Vec<PayoutLine>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, submitted_at, minutes_spent, hourly_rate_cents, currency FROM tasks \
             WHERE taken_by = $1 AND submitted_at IS NOT NULL \
             AND (review IS NULL OR review = 'accepted') ORDER BY submitted_at, id",
        )
        .bind(applicant_id)
        .fetch_all(&self.pool)
        .await
        .ctx("listing payout lines")?;
        rows.iter()
            .map(|row| {
                Ok(PayoutLine {
                    task_id: row.try_get("id").ctx("reading payout line")?,
                    submitted_at: row.try_get("submitted_at").ctx("reading payout line")?,
                    minutes_spent: row.try_get("minutes_spent").ctx("reading payout line")?,
                    hourly_rate_cents: row
                        .try_get("hourly_rate_cents")
                        .ctx("reading payout line")?,
                    currency: row.try_get("currency").ctx("reading payout line")?,
                })
            })
            .collect()
    }

    /// Submitted, not rejected work in a role, by submission time, for the anonymized export.
    pub async fn export_role(
        &self,
        role_id: &str,
        page: &PageRequest,
    ) -> Result<Page<TaskRow>, StoreError> {
        let (key, after, limit) = page.binds();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TASK_COLUMNS} FROM tasks t WHERE t.role_id = $1 \
             AND t.submitted_at IS NOT NULL AND (t.review IS NULL OR t.review = 'accepted') \
             AND (t.submitted_at > $2 OR (t.submitted_at = $2 AND t.id > $3)) \
             ORDER BY t.submitted_at, t.id LIMIT $4"
        )))
        .bind(role_id)
        .bind(key)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("exporting role")?;
        let items = rows
            .iter()
            .map(task_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(paginate(items, page.limit, |t| {
            (t.submitted_at.unwrap_or_default(), t.id.clone())
        }))
    }

    /// Tasks a contractor has taken (for their data export).
    pub async fn tasks_taken_by(&self, applicant_id: &str) -> Result<Vec<TaskRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TASK_COLUMNS} FROM tasks t WHERE t.taken_by = $1 ORDER BY t.created_at, t.id"
        )))
        .bind(applicant_id)
        .fetch_all(&self.pool)
        .await
        .ctx("listing taken tasks")?;
        rows.iter().map(task_from_row).collect()
    }
}
