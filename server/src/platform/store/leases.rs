//! Live interview leases: which instance runs a live interview. Taken atomically in the
//! database (one upsert that succeeds only for the holder or over a lapsed lease), renewed
//! while the session lives, released when it ends, and lapsing on its own when the holder dies.
//! Times are wall-clock milliseconds: a lease is about processes being alive, not about the
//! platform's (testable) calendar.

use sqlx::Row;

use super::{Store, opt_str};
use crate::platform::error::{DbContext, StoreError};

/// The outcome of trying to take a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseTry {
    /// This instance holds it now.
    Acquired,
    /// Another instance holds it for this much longer.
    HeldBy {
        /// The holder's instance id.
        owner: String,
        /// Milliseconds until it lapses unless renewed.
        expires_in_ms: i64,
    },
}

/// The outcome of renewing a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseRenewal {
    /// Still ours; `wanted_by` names an instance that asked for the interview.
    Held {
        /// Another instance with a connection for this interview.
        wanted_by: Option<String>,
    },
    /// No longer ours (it lapsed and another instance took it).
    Lost,
}

impl Store {
    /// Takes the lease of `interview_id` for `owner` until `now_ms + ttl_ms` if it is free,
    /// already `owner`'s, or lapsed.
    pub async fn try_lease(
        &self,
        interview_id: &str,
        owner: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<LeaseTry, StoreError> {
        let taken = sqlx::query(
            "INSERT INTO interview_leases (interview_id, owner, expires_at_ms, wanted_by) \
             VALUES ($1, $2, $3, NULL) \
             ON CONFLICT (interview_id) DO UPDATE SET owner = excluded.owner, \
             expires_at_ms = excluded.expires_at_ms, wanted_by = NULL \
             WHERE interview_leases.owner = excluded.owner OR interview_leases.expires_at_ms < $4",
        )
        .bind(interview_id)
        .bind(owner)
        .bind(now_ms + ttl_ms)
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .ctx("taking an interview lease")?;
        if taken.rows_affected() > 0 {
            return Ok(LeaseTry::Acquired);
        }
        let row = sqlx::query(
            "SELECT owner, expires_at_ms FROM interview_leases WHERE interview_id = $1",
        )
        .bind(interview_id)
        .fetch_optional(&self.pool)
        .await
        .ctx("reading an interview lease")?;
        match row {
            Some(row) => {
                let owner: String = row.try_get("owner").ctx("reading the lease owner")?;
                let expires: i64 = row
                    .try_get("expires_at_ms")
                    .ctx("reading the lease expiry")?;
                Ok(LeaseTry::HeldBy {
                    owner,
                    expires_in_ms: (expires - now_ms).max(0),
                })
            }
            // Released between the two statements: the next try will take it.
            None => Ok(LeaseTry::HeldBy {
                owner: String::new(),
                expires_in_ms: 0,
            }),
        }
    }

    /// Extends `owner`'s lease to `now_ms + ttl_ms`.
    pub async fn renew_lease(
        &self,
        interview_id: &str,
        owner: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<LeaseRenewal, StoreError> {
        let row = sqlx::query(
            "UPDATE interview_leases SET expires_at_ms = $1 \
             WHERE interview_id = $2 AND owner = $3 RETURNING wanted_by",
        )
        .bind(now_ms + ttl_ms)
        .bind(interview_id)
        .bind(owner)
        .fetch_optional(&self.pool)
        .await
        .ctx("renewing an interview lease")?;
        match row {
            Some(row) => Ok(LeaseRenewal::Held {
                wanted_by: opt_str(&row, "wanted_by").ctx("reading the lease")?,
            }),
            None => Ok(LeaseRenewal::Lost),
        }
    }

    /// Tells the holder of the lease (if another instance) that `requester` has a connection
    /// for the interview and wants it handed over.
    pub async fn want_lease(&self, interview_id: &str, requester: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE interview_leases SET wanted_by = $1 WHERE interview_id = $2 AND owner <> $1",
        )
        .bind(requester)
        .bind(interview_id)
        .execute(&self.pool)
        .await
        .ctx("asking for an interview lease")?;
        Ok(())
    }

    /// Gives `owner`'s lease up (the session ended or moved), if it still lapses at
    /// `expires_at_ms` as its holder last wrote: a lease taken again since is left alone.
    pub async fn release_lease(
        &self,
        interview_id: &str,
        owner: &str,
        expires_at_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM interview_leases \
             WHERE interview_id = $1 AND owner = $2 AND expires_at_ms = $3",
        )
        .bind(interview_id)
        .bind(owner)
        .bind(expires_at_ms)
        .execute(&self.pool)
        .await
        .ctx("releasing an interview lease")?;
        Ok(())
    }
}
