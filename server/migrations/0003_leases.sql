-- Live interview leases. Several instances share one database; while an interview is live,
-- exactly one of them runs it: the one named here, for as long as it keeps renewing the lease
-- (wall-clock milliseconds). A lapsed lease may be taken by any instance, which then continues
-- from the committed answers. `wanted_by` is set by an instance that got a reconnect for an
-- interview another instance holds: the holder hands the interview over when it sees it.
CREATE TABLE interview_leases (
    interview_id TEXT PRIMARY KEY REFERENCES interviews (id) ON DELETE CASCADE,
    owner TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    wanted_by TEXT
);
