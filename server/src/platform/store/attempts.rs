//! Failed attempts: wrong passwords per staff account and unknown or dead links per client,
//! counted in the database over a sliding hour so that every instance sharing it enforces the
//! same lockout.

use sqlx::Row;

use super::Store;
use crate::platform::crypto::sha256_hex;
use crate::platform::error::{DbContext, StoreError};

/// The length of the counting window, seconds.
pub const WINDOW_SECS: i64 = 3600;

/// What was attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptScope {
    /// A staff sign-in; the subject is the account's e-mail address.
    Login,
    /// An interview or sign-in link; the subject is the client's address.
    Link,
}

impl AttemptScope {
    fn as_str(self) -> &'static str {
        match self {
            AttemptScope::Login => "login",
            AttemptScope::Link => "link",
        }
    }
}

/// Subjects are stored hashed (an e-mail address is personal data) and case-folded.
fn subject_hash(subject: &str) -> String {
    sha256_hex(subject.trim().to_lowercase().as_bytes())
}

impl Store {
    /// Failed attempts of `subject` in the hour up to `now`, and when the oldest of them
    /// leaves the window (unix seconds).
    pub async fn failed_attempts(
        &self,
        scope: AttemptScope,
        subject: &str,
        now: i64,
    ) -> Result<(i64, Option<i64>), StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(at) AS oldest FROM failed_attempts \
             WHERE scope = $1 AND subject_hash = $2 AND at > $3",
        )
        .bind(scope.as_str())
        .bind(subject_hash(subject))
        .bind(now - WINDOW_SECS)
        .fetch_one(&self.pool)
        .await
        .ctx("counting failed attempts")?;
        let count: i64 = row.try_get("n").ctx("reading the count")?;
        let oldest: Option<i64> = row.try_get("oldest").ctx("reading the oldest attempt")?;
        Ok((count, oldest.map(|at| at + WINDOW_SECS)))
    }

    /// Records a failed attempt of `subject` at `now` and forgets its attempts that have left
    /// the window.
    pub async fn record_failed_attempt(
        &self,
        scope: AttemptScope,
        subject: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let hash = subject_hash(subject);
        let mut tx = self.pool.begin().await.ctx("opening a transaction")?;
        sqlx::query(
            "DELETE FROM failed_attempts WHERE scope = $1 AND subject_hash = $2 AND at <= $3",
        )
        .bind(scope.as_str())
        .bind(&hash)
        .bind(now - WINDOW_SECS)
        .execute(&mut *tx)
        .await
        .ctx("forgetting old failed attempts")?;
        sqlx::query("INSERT INTO failed_attempts (scope, subject_hash, at) VALUES ($1, $2, $3)")
            .bind(scope.as_str())
            .bind(&hash)
            .bind(now)
            .execute(&mut *tx)
            .await
            .ctx("recording a failed attempt")?;
        tx.commit().await.ctx("committing a failed attempt")?;
        Ok(())
    }
}
