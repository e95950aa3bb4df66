//! Response shapes shared by several routes, converted from storage rows; instants are RFC 3339
//! strings, money is in minor units with its currency.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::platform::clock::rfc3339;
use crate::platform::store::{
    AcceptanceRow, Applicant, DocumentKind, DocumentRow, RoleRow, TaskRow, TaskState,
};

/// The `Idempotency-Key` header accepted by creates.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKeyParam {
    /// Makes a create safe to retry: a repeat with the same key and body returns the first
    /// response (header `Idempotent-Replayed: true`) instead of creating again; 1–128 characters
    /// of letters, digits, `-_.:`; kept 24 hours.
    #[serde(rename = "Idempotency-Key")]
    #[param(rename = "Idempotency-Key")]
    pub idempotency_key: Option<String>,
}

/// An applicant's profile.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApplicantView {
    /// Id.
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
    /// When the 18+ attestation was made.
    pub attested_adult_at: String,
    /// When the contractor-eligibility attestation was made.
    pub attested_contractor_at: String,
    /// When they applied.
    pub created_at: String,
}

impl From<&Applicant> for ApplicantView {
    fn from(a: &Applicant) -> Self {
        Self {
            id: a.id.clone(),
            name: a.name.clone(),
            email: a.email.clone(),
            country: a.country.clone(),
            disciplines: a.disciplines.clone(),
            credentials: a.credentials.clone(),
            experience: a.experience.clone(),
            years_experience: a.years_experience,
            attested_adult_at: rfc3339(a.attested_adult_at),
            attested_contractor_at: rfc3339(a.attested_contractor_at),
            created_at: rfc3339(a.created_at),
        }
    }
}

/// A role with its pay.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoleView {
    /// Id.
    pub id: String,
    /// Rubric id of the discipline.
    pub discipline: String,
    /// Name.
    pub name: String,
    /// Hourly pay in minor units (cents).
    pub hourly_rate_cents: i64,
    /// ISO 4217 currency.
    pub currency: String,
    /// When created.
    pub created_at: String,
}

impl From<&RoleRow> for RoleView {
    fn from(r: &RoleRow) -> Self {
        Self {
            id: r.id.clone(),
            discipline: r.discipline.clone(),
            name: r.name.clone(),
            hourly_rate_cents: r.hourly_rate_cents,
            currency: r.currency.clone(),
            created_at: rfc3339(r.created_at),
        }
    }
}

/// A task as staff see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskView {
    /// Id.
    pub id: String,
    /// Role.
    pub role_id: String,
    /// Title.
    pub title: String,
    /// Instructions.
    pub instructions: String,
    /// Expected minutes (20–60).
    pub estimated_minutes: i64,
    /// State.
    pub state: TaskState,
    /// When posted.
    pub created_at: String,
    /// Applicant id of the contractor who took it (staff view only; null for contractors).
    pub taken_by: Option<String>,
    /// When taken.
    pub taken_at: Option<String>,
    /// When submitted.
    pub submitted_at: Option<String>,
    /// Work product.
    pub output: Option<String>,
    /// Minutes spent, as reported.
    pub minutes_spent: Option<i64>,
    /// When reviewed.
    pub reviewed_at: Option<String>,
}

impl TaskView {
    /// The staff view.
    pub fn staff(t: &TaskRow) -> Self {
        Self {
            id: t.id.clone(),
            role_id: t.role_id.clone(),
            title: t.title.clone(),
            instructions: t.instructions.clone(),
            estimated_minutes: t.estimated_minutes,
            state: t.state(),
            created_at: rfc3339(t.created_at),
            taken_by: t.taken_by.clone(),
            taken_at: t.taken_at.map(rfc3339),
            submitted_at: t.submitted_at.map(rfc3339),
            output: t.output.clone(),
            minutes_spent: t.minutes_spent,
            reviewed_at: t.reviewed_at.map(rfc3339),
        }
    }

    /// The contractor view: no other contractor's id, output only for their own work.
    pub fn contractor(t: &TaskRow, me: &str) -> Self {
        let mine = t.taken_by.as_deref() == Some(me);
        let mut view = Self::staff(t);
        view.taken_by = None;
        if !mine {
            view.output = None;
            view.minutes_spent = None;
        }
        view
    }
}

/// A published document version.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentView {
    /// Id.
    pub id: String,
    /// Kind.
    pub kind: DocumentKind,
    /// Version (1, 2, …).
    pub version: i64,
    /// Title.
    pub title: String,
    /// Full text.
    pub body: String,
    /// SHA-256 of the body as UTF-8, hex: send it back when accepting.
    pub sha256: String,
    /// When published.
    pub published_at: String,
}

impl From<&DocumentRow> for DocumentView {
    fn from(d: &DocumentRow) -> Self {
        Self {
            id: d.id.clone(),
            kind: d.kind,
            version: d.version,
            title: d.title.clone(),
            body: d.body.clone(),
            sha256: d.sha256.clone(),
            published_at: rfc3339(d.published_at),
        }
    }
}

/// A recorded acceptance.
#[derive(Debug, Serialize, ToSchema)]
pub struct AcceptanceView {
    /// The document version.
    pub document_id: String,
    /// Kind.
    pub kind: DocumentKind,
    /// Version.
    pub version: i64,
    /// The hash accepted.
    pub sha256: String,
    /// Client IP recorded at acceptance.
    pub ip: Option<String>,
    /// When.
    pub accepted_at: String,
}

impl From<&AcceptanceRow> for AcceptanceView {
    fn from(a: &AcceptanceRow) -> Self {
        Self {
            document_id: a.document_id.clone(),
            kind: a.kind,
            version: a.version,
            sha256: a.sha256.clone(),
            ip: a.ip.clone(),
            accepted_at: rfc3339(a.accepted_at),
        }
    }
}

macro_rules! page_type {
    ($(#[$doc:meta])* $name:ident, $item:ty) => {
        $(#[$doc])*
        #[derive(Debug, Serialize, ToSchema)]
        pub struct $name {
            /// This page's items.
            pub items: Vec<$item>,
            /// Pass as `cursor` for the next page; null on the last page.
            pub next_cursor: Option<String>,
        }
    };
}

page_type!(
    /// A page of roles.
    RolePage, RoleView
);
page_type!(
    /// A page of tasks.
    TaskPage, TaskView
);
page_type!(
    /// A page of documents.
    DocumentPage, DocumentView
);
pub(crate) use page_type;
