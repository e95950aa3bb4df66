-- Platform schema: applicants, staff, sessions, screening attempts, interviews, agreements,
-- roles, tasks, audit log. The same file runs on SQLite and PostgreSQL, so it sticks to the
-- common subset: TEXT ids (random, prefixed), BIGINT unix-second timestamps, TEXT JSON, no
-- booleans, no auto-increment, no database-side clock.

CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE applicants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    country TEXT NOT NULL,
    disciplines TEXT NOT NULL,
    credentials TEXT NOT NULL,
    experience TEXT NOT NULL,
    years_experience BIGINT NOT NULL,
    attested_adult_at BIGINT NOT NULL,
    attested_contractor_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    erased_at BIGINT
);
CREATE INDEX applicants_created ON applicants (created_at, id);

CREATE TABLE staff (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('reviewer', 'admin')),
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX staff_created ON staff (created_at, id);

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    principal TEXT NOT NULL CHECK (principal IN ('applicant', 'staff')),
    subject_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_subject ON sessions (subject_id);
CREATE INDEX sessions_expiry ON sessions (expires_at);

CREATE TABLE magic_links (
    nonce_hash TEXT PRIMARY KEY,
    applicant_id TEXT NOT NULL REFERENCES applicants (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX magic_links_applicant ON magic_links (applicant_id);

CREATE TABLE attempts (
    id TEXT PRIMARY KEY,
    applicant_id TEXT NOT NULL REFERENCES applicants (id),
    discipline TEXT NOT NULL,
    number BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    case_study_id TEXT NOT NULL,
    case_study_issued_at BIGINT,
    case_study_due_at BIGINT,
    case_study_submitted_at BIGINT,
    case_study_text TEXT,
    ready_at BIGINT,
    results_due_at BIGINT,
    outcome TEXT CHECK (outcome IN ('pass', 'fail')),
    feedback_categories TEXT,
    feedback_text TEXT,
    decided_at BIGINT,
    decided_by TEXT REFERENCES staff (id),
    UNIQUE (applicant_id, discipline, number)
);
CREATE INDEX attempts_applicant ON attempts (applicant_id, created_at, id);
CREATE INDEX attempts_ready ON attempts (ready_at, id);

CREATE TABLE interviews (
    id TEXT PRIMARY KEY,
    attempt_id TEXT REFERENCES attempts (id),
    discipline TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'live', 'completed')),
    link_token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    started_at BIGINT,
    report_json TEXT,
    completed_at BIGINT
);
CREATE INDEX interviews_attempt ON interviews (attempt_id);

CREATE TABLE interview_items (
    interview_id TEXT NOT NULL REFERENCES interviews (id),
    item_id TEXT NOT NULL,
    asked_at BIGINT NOT NULL,
    PRIMARY KEY (interview_id, item_id)
);

CREATE TABLE answers (
    interview_id TEXT NOT NULL REFERENCES interviews (id),
    seq BIGINT NOT NULL,
    item_id TEXT NOT NULL,
    text TEXT NOT NULL,
    scores_json TEXT NOT NULL,
    committed_at BIGINT NOT NULL,
    PRIMARY KEY (interview_id, seq)
);

CREATE TABLE recordings (
    id TEXT PRIMARY KEY,
    interview_id TEXT NOT NULL REFERENCES interviews (id),
    path TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX recordings_created ON recordings (created_at);
CREATE INDEX recordings_interview ON recordings (interview_id);

CREATE TABLE score_overrides (
    id TEXT PRIMARY KEY,
    attempt_id TEXT NOT NULL REFERENCES attempts (id),
    interview_id TEXT NOT NULL REFERENCES interviews (id),
    answer_seq BIGINT,
    dimension TEXT NOT NULL,
    score_centi BIGINT NOT NULL,
    reason TEXT NOT NULL,
    reviewer_id TEXT NOT NULL REFERENCES staff (id),
    created_at BIGINT NOT NULL
);
CREATE INDEX score_overrides_attempt ON score_overrides (attempt_id, created_at);

CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor_id TEXT NOT NULL,
    actor_role TEXT NOT NULL,
    action TEXT NOT NULL,
    subject_type TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    details_json TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at, id);

CREATE TABLE documents (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('contractor_agreement', 'nda')),
    version BIGINT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    published_at BIGINT NOT NULL,
    published_by TEXT NOT NULL REFERENCES staff (id),
    UNIQUE (kind, version)
);
CREATE INDEX documents_published ON documents (published_at, id);

CREATE TABLE acceptances (
    id TEXT PRIMARY KEY,
    applicant_id TEXT NOT NULL REFERENCES applicants (id),
    document_id TEXT NOT NULL REFERENCES documents (id),
    sha256 TEXT NOT NULL,
    ip TEXT,
    accepted_at BIGINT NOT NULL,
    UNIQUE (applicant_id, document_id)
);

CREATE TABLE roles (
    id TEXT PRIMARY KEY,
    discipline TEXT NOT NULL,
    name TEXT NOT NULL,
    hourly_rate_cents BIGINT NOT NULL,
    currency TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (discipline, name)
);
CREATE INDEX roles_created ON roles (created_at, id);

CREATE TABLE role_members (
    role_id TEXT NOT NULL REFERENCES roles (id),
    applicant_id TEXT NOT NULL REFERENCES applicants (id),
    matched_at BIGINT NOT NULL,
    matched_by TEXT NOT NULL REFERENCES staff (id),
    PRIMARY KEY (role_id, applicant_id)
);
CREATE INDEX role_members_applicant ON role_members (applicant_id);

CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    role_id TEXT NOT NULL REFERENCES roles (id),
    title TEXT NOT NULL,
    instructions TEXT NOT NULL,
    estimated_minutes BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL REFERENCES staff (id),
    taken_by TEXT REFERENCES applicants (id),
    taken_at BIGINT,
    submitted_at BIGINT,
    output TEXT,
    minutes_spent BIGINT,
    hourly_rate_cents BIGINT,
    currency TEXT,
    review TEXT CHECK (review IN ('accepted', 'rejected')),
    reviewed_at BIGINT,
    reviewed_by TEXT REFERENCES staff (id)
);
CREATE INDEX tasks_role ON tasks (role_id, created_at, id);
CREATE INDEX tasks_taker ON tasks (taken_by);

CREATE TABLE idempotency_keys (
    principal TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status BIGINT,
    content_type TEXT,
    response_body TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (principal, idem_key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
