-- Access control. Failed sign-ins and link uses, counted per account or client over a sliding hour (lockout and
-- rate limiting). Rows older than the window are deleted as new failures arrive.
CREATE TABLE failed_attempts (
    scope TEXT NOT NULL CHECK (scope IN ('login', 'link')),
    subject_hash TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX failed_attempts_subject ON failed_attempts (scope, subject_hash, at);

-- A revoked interview link opens nothing from then on (410 link_revoked).
ALTER TABLE interviews ADD COLUMN link_revoked_at BIGINT;
