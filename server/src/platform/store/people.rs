//! People and credentials: applicants (with their attestations), reviewers and admins,
//! session tokens (stored as SHA-256 hashes) and single-use signed magic links.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::ToSchema;

use super::{Page, PageRequest, Store, opt_i64, paginate};
use crate::platform::crypto::{new_id, random_token, sha256_hex};
use crate::platform::error::{DbContext, StoreError, is_unique_violation};

/// A staff member's role. Admins can do everything reviewers can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StaffRole {
    /// Reads screening reports, overrides scores, decides.
    Reviewer,
    /// Manages staff, documents, roles, tasks; also reviews.
    Admin,
}

impl StaffRole {
    /// Storage form.
    pub fn as_str(self) -> &'static str {
        match self {
            StaffRole::Reviewer => "reviewer",
            StaffRole::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "reviewer" => Ok(StaffRole::Reviewer),
            "admin" => Ok(StaffRole::Admin),
            other => Err(StoreError::Internal(anyhow::anyhow!(
                "unknown staff role {other:?} in database"
            ))),
        }
    }
}

/// Who a session token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An applicant (or contractor, after a pass), signed in by magic link.
    Applicant {
        /// Applicant id.
        id: String,
    },
    /// A reviewer or admin, signed in by password.
    Staff {
        /// Staff id.
        id: String,
        /// Their role.
        role: StaffRole,
    },
}

impl Principal {
    /// The subject's id.
    pub fn id(&self) -> &str {
        match self {
            Principal::Applicant { id } | Principal::Staff { id, .. } => id,
        }
    }

    /// `applicant`, `reviewer` or `admin`.
    pub fn role_name(&self) -> &'static str {
        match self {
            Principal::Applicant { .. } => "applicant",
            Principal::Staff { role, .. } => role.as_str(),
        }
    }
}

/// What an application contains (already validated).
#[derive(Debug, Clone)]
pub struct NewApplicant {
    /// Full name.
    pub name: String,
    /// Normalized email.
    pub email: String,
    /// ISO country code.
    pub country: String,
    /// Rubric ids applied for (known, deduplicated).
    pub disciplines: Vec<String>,
    /// Degrees, licences, certifications.
    pub credentials: String,
    /// Relevant experience.
    pub experience: String,
    /// Years of experience.
    pub years_experience: i64,
}

/// An applicant as stored.
#[derive(Debug, Clone)]
pub struct Applicant {
    /// Id (`app_…`).
    pub id: String,
    /// Full name.
    pub name: String,
    /// Email.
    pub email: String,
    /// ISO country code.
    pub country: String,
    /// Disciplines applied for.
    pub disciplines: Vec<String>,
    /// Credentials.
    pub credentials: String,
    /// Experience.
    pub experience: String,
    /// Years of experience.
    pub years_experience: i64,
    /// When they attested to being 18 or older.
    pub attested_adult_at: i64,
    /// When they attested to being able to work as a contractor.
    pub attested_contractor_at: i64,
    /// When they applied.
    pub created_at: i64,
}

/// A reviewer or admin.
#[derive(Debug, Clone)]
pub struct StaffMember {
    /// Id (`stf_…`).
    pub id: String,
    /// Login email.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: StaffRole,
    /// When created.
    pub created_at: i64,
}

fn applicant_from_row(row: &AnyRow) -> Result<Applicant, StoreError> {
    let disciplines: String = row.try_get("disciplines").ctx("reading applicant")?;
    Ok(Applicant {
        id: row.try_get("id").ctx("reading applicant")?,
        name: row.try_get("name").ctx("reading applicant")?,
        email: row.try_get("email").ctx("reading applicant")?,
        country: row.try_get("country").ctx("reading applicant")?,
        disciplines: serde_json::from_str(&disciplines).map_err(|e| {
            StoreError::Internal(anyhow::Error::new(e).context("applicant disciplines"))
        })?,
        credentials: row.try_get("credentials").ctx("reading applicant")?,
        experience: row.try_get("experience").ctx("reading applicant")?,
        years_experience: row.try_get("years_experience").ctx("reading applicant")?,
        attested_adult_at: row.try_get("attested_adult_at").ctx("reading applicant")?,
        attested_contractor_at: row
            .try_get("attested_contractor_at")
            .ctx("reading applicant")?,
        created_at: row.try_get("created_at").ctx("reading applicant")?,
    })
}

fn staff_from_row(row: &AnyRow) -> Result<StaffMember, StoreError> {
    let role: String = row.try_get("role").ctx("reading staff")?;
    Ok(StaffMember {
        id: row.try_get("id").ctx("reading staff")?,
        email: row.try_get("email").ctx("reading staff")?,
        name: row.try_get("name").ctx("reading staff")?,
        role: StaffRole::parse(&role)?,
        created_at: row.try_get("created_at").ctx("reading staff")?,
    })
}

const APPLICANT_COLUMNS: &str = "id, name, email, country, disciplines, credentials, experience, \
     years_experience, attested_adult_at, attested_contractor_at, created_at";

impl Store {
    /// Records an application; both attestations are stamped `now`. A second application with
    /// the same email is refused (`email_taken`): sign in instead.
    pub async fn create_applicant(
        &self,
        new: &NewApplicant,
        now: i64,
    ) -> Result<Applicant, StoreError> {
        let id = new_id("app");
        let disciplines =
            serde_json::to_string(&new.disciplines).map_err(|e| StoreError::Internal(e.into()))?;
        let result = sqlx::query(
            "INSERT INTO applicants (id, name, email, country, disciplines, credentials, experience, \
             years_experience, attested_adult_at, attested_contractor_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $9)",
        )
        .bind(&id)
        .bind(&new.name)
        .bind(&new.email)
        .bind(&new.country)
        .bind(&disciplines)
        .bind(&new.credentials)
        .bind(&new.experience)
        .bind(new.years_experience)
        .bind(now)
        .execute(&self.pool)
        .await;
        match result {
            Err(e) if is_unique_violation(&e) => Err(StoreError::conflict(
                "email_taken",
                "an application with this email exists; request a sign-in link instead",
            )),
            other => {
                other.ctx("inserting applicant")?;
                self.applicant(&id).await
            }
        }
    }

    /// An applicant who has not been erased.
    pub async fn applicant(&self, id: &str) -> Result<Applicant, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {APPLICANT_COLUMNS} FROM applicants WHERE id = $1 AND erased_at IS NULL"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .ctx("loading applicant")?
        .ok_or(StoreError::NotFound("applicant"))?;
        applicant_from_row(&row)
    }

    /// The applicant with this (normalized) email, if any and not erased.
    pub async fn applicant_by_email(&self, email: &str) -> Result<Option<Applicant>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {APPLICANT_COLUMNS} FROM applicants WHERE email = $1 AND erased_at IS NULL"
        )))
        .bind(email)
        .fetch_optional(&self.pool)
        .await
        .ctx("looking up applicant by email")?;
        row.as_ref().map(applicant_from_row).transpose()
    }

    /// Applicants, oldest first (erased ones left out).
    pub async fn list_applicants(&self, page: &PageRequest) -> Result<Page<Applicant>, StoreError> {
        let (key, id, limit) = page.binds();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {APPLICANT_COLUMNS} FROM applicants WHERE erased_at IS NULL \
             AND (created_at > $1 OR (created_at = $1 AND id > $2)) \
             ORDER BY created_at, id LIMIT $3"
        )))
        .bind(key)
        .bind(id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("listing applicants")?;
        let items = rows
            .iter()
            .map(applicant_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(paginate(items, page.limit, |a| {
            (a.created_at, a.id.clone())
        }))
    }

    /// Adds a reviewer or admin (`email_taken` if the email is in use).
    pub async fn create_staff(
        &self,
        email: &str,
        name: &str,
        role: StaffRole,
        password_hash: &str,
        now: i64,
    ) -> Result<StaffMember, StoreError> {
        let id = new_id("stf");
        let result = sqlx::query(
            "INSERT INTO staff (id, email, name, role, password_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(email)
        .bind(name)
        .bind(role.as_str())
        .bind(password_hash)
        .bind(now)
        .execute(&self.pool)
        .await;
        match result {
            Err(e) if is_unique_violation(&e) => Err(StoreError::conflict(
                "email_taken",
                "a staff account with this email exists",
            )),
            other => {
                other.ctx("inserting staff")?;
                Ok(StaffMember {
                    id,
                    email: email.to_string(),
                    name: name.to_string(),
                    role,
                    created_at: now,
                })
            }
        }
    }

    /// A staff member and their password hash, by email.
    pub async fn staff_by_email(
        &self,
        email: &str,
    ) -> Result<Option<(StaffMember, String)>, StoreError> {
        let row = sqlx::query(
            "SELECT id, email, name, role, created_at, password_hash FROM staff WHERE email = $1",
        )
        .bind(email)
        .fetch_optional(&self.pool)
        .await
        .ctx("looking up staff by email")?;
        match row {
            Some(row) => {
                let hash: String = row.try_get("password_hash").ctx("reading staff")?;
                Ok(Some((staff_from_row(&row)?, hash)))
            }
            None => Ok(None),
        }
    }

    /// Replaces a staff member's password hash and ends their sessions.
    pub async fn set_staff_password(
        &self,
        id: &str,
        password_hash: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE staff SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(id)
            .execute(&self.pool)
            .await
            .ctx("updating staff password")?;
        sqlx::query("DELETE FROM sessions WHERE principal = 'staff' AND subject_id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .ctx("ending staff sessions")?;
        Ok(())
    }

    /// Staff, oldest first.
    pub async fn list_staff(&self, page: &PageRequest) -> Result<Page<StaffMember>, StoreError> {
        let (key, id, limit) = page.binds();
        let rows = sqlx::query(
            "SELECT id, email, name, role, created_at FROM staff \
             WHERE (created_at > $1 OR (created_at = $1 AND id > $2)) \
             ORDER BY created_at, id LIMIT $3",
        )
        .bind(key)
        .bind(id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("listing staff")?;
        let items = rows
            .iter()
            .map(staff_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(paginate(items, page.limit, |s| {
            (s.created_at, s.id.clone())
        }))
    }

    /// Starts a session; returns the bearer token (only its hash is stored) and its expiry.
    pub async fn create_session(
        &self,
        principal: &Principal,
        ttl_secs: i64,
        now: i64,
    ) -> Result<(String, i64), StoreError> {
        let token = random_token();
        let kind = match principal {
            Principal::Applicant { .. } => "applicant",
            Principal::Staff { .. } => "staff",
        };
        let expires_at = now + ttl_secs;
        sqlx::query(
            "INSERT INTO sessions (token_hash, principal, subject_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(sha256_hex(token.as_bytes()))
        .bind(kind)
        .bind(principal.id())
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
        .await
        .ctx("creating session")?;
        Ok((token, expires_at))
    }

    /// Who a bearer token belongs to, if it is a live session of an existing account.
    pub async fn principal_for_token(
        &self,
        token: &str,
        now: i64,
    ) -> Result<Option<Principal>, StoreError> {
        let row = sqlx::query(
            "SELECT s.principal, s.subject_id, st.role, a.id AS applicant_id FROM sessions s \
             LEFT JOIN staff st ON s.principal = 'staff' AND st.id = s.subject_id \
             LEFT JOIN applicants a ON s.principal = 'applicant' AND a.id = s.subject_id \
                AND a.erased_at IS NULL \
             WHERE s.token_hash = $1 AND s.expires_at > $2",
        )
        .bind(sha256_hex(token.as_bytes()))
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .ctx("looking up session")?;
        let Some(row) = row else { return Ok(None) };
        let kind: String = row.try_get("principal").ctx("reading session")?;
        let subject: String = row.try_get("subject_id").ctx("reading session")?;
        Ok(match kind.as_str() {
            "staff" => match row
                .try_get::<Option<String>, _>("role")
                .ctx("reading session")?
            {
                Some(role) => Some(Principal::Staff {
                    id: subject,
                    role: StaffRole::parse(&role)?,
                }),
                None => None,
            },
            _ => row
                .try_get::<Option<String>, _>("applicant_id")
                .ctx("reading session")?
                .map(|id| Principal::Applicant { id }),
        })
    }

    /// Ends the session of this token (no error if it is unknown).
    pub async fn delete_session(&self, token: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(sha256_hex(token.as_bytes()))
            .execute(&self.pool)
            .await
            .ctx("deleting session")?;
        Ok(())
    }

    /// Issues a signed, single-use sign-in link token for an applicant.
    pub async fn issue_magic_link(
        &self,
        applicant_id: &str,
        ttl_secs: i64,
        now: i64,
    ) -> Result<(String, i64), StoreError> {
        let nonce = random_token();
        let expires_at = now + ttl_secs;
        sqlx::query(
            "INSERT INTO magic_links (nonce_hash, applicant_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(sha256_hex(nonce.as_bytes()))
        .bind(applicant_id)
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
        .await
        .ctx("storing magic link")?;
        Ok((
            self.keys.sign_magic_link(applicant_id, expires_at, &nonce),
            expires_at,
        ))
    }

    /// Checks a magic link token (signature, expiry, single use) and marks it used; returns the
    /// applicant id. Errors: `NotFound` (bad or unknown token), `Expired`, `Conflict` (used).
    pub async fn redeem_magic_link(&self, token: &str, now: i64) -> Result<String, StoreError> {
        let claims = self
            .keys
            .verify_magic_link(token)
            .ok_or(StoreError::NotFound("sign-in link"))?;
        if now >= claims.expires_at {
            return Err(StoreError::expired(
                "link_expired",
                "this sign-in link has expired; request a new one",
            ));
        }
        let nonce_hash = sha256_hex(claims.nonce.as_bytes());
        let updated = sqlx::query(
            "UPDATE magic_links SET used_at = $1 \
             WHERE nonce_hash = $2 AND applicant_id = $3 AND used_at IS NULL",
        )
        .bind(now)
        .bind(&nonce_hash)
        .bind(&claims.applicant_id)
        .execute(&self.pool)
        .await
        .ctx("redeeming magic link")?;
        if updated.rows_affected() == 0 {
            let known = sqlx::query("SELECT used_at FROM magic_links WHERE nonce_hash = $1")
                .bind(&nonce_hash)
                .fetch_optional(&self.pool)
                .await
                .ctx("checking magic link")?;
            return Err(match known {
                Some(row)
                    if opt_i64(&row, "used_at")
                        .ctx("reading magic link")?
                        .is_some() =>
                {
                    StoreError::conflict("link_used", "this sign-in link was already used")
                }
                _ => StoreError::NotFound("sign-in link"),
            });
        }
        // Erased applicants cannot sign in.
        self.applicant(&claims.applicant_id).await?;
        Ok(claims.applicant_id)
    }
}
