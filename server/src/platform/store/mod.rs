//! Persistence: one [`Store`] over an `sqlx::Any` pool, so the same runtime queries and the same
//! migrations serve SQLite (the embedded default, WAL, file created on first start) and
//! PostgreSQL. Instants are stored as unix seconds (BIGINT), ids as prefixed random text, JSON as
//! text; the submodules add the operations per area of the journey.

mod attempts;
mod interviews;
mod leases;
mod people;
mod privacy;
mod screening;
mod work;

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::Once;
use std::time::Duration as StdDuration;

use anyhow::{Context, Result};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Connection, Row, SqlSafeStr};

pub use attempts::AttemptScope;
pub use interviews::{Answer, Interview, InterviewStatus, NewInterview, Recording};
pub use leases::{LeaseRenewal, LeaseTry};
pub use people::{Applicant, NewApplicant, Principal, StaffMember, StaffRole};
pub use privacy::{AuditEntry, IdempotencyBegin, PurgeReport};
pub use screening::{Attempt, Decision, NewOverride, OverrideRow, QueueEntry};
pub use work::{
    AcceptanceRow, DocumentKind, DocumentRow, NewTask, PayoutLine, RoleRow, TaskRow, TaskState,
};

use super::crypto::Keys;
use super::error::{DbContext, StoreError};

/// The platform schema, embedded at compile time; it runs unchanged on SQLite and PostgreSQL.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "platform",
        include_str!("../../../migrations/0001_platform.sql"),
    ),
    (
        2,
        "access control",
        include_str!("../../../migrations/0002_access_control.sql"),
    ),
    (
        3,
        "leases",
        include_str!("../../../migrations/0003_leases.sql"),
    ),
];

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// A page of rows in `(sort key, id)` order, with the key of the last row when more follow.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The rows.
    pub items: Vec<T>,
    /// Position after the last row, when there are more.
    pub next: Option<(i64, String)>,
}

/// Where a page starts and how long it is.
#[derive(Debug, Clone)]
pub struct PageRequest {
    /// At most this many rows (1–100).
    pub limit: i64,
    /// Start after this `(sort key, id)`; `None` for the first page.
    pub after: Option<(i64, String)>,
}

impl PageRequest {
    /// The first page of `limit` rows.
    pub fn first(limit: i64) -> Self {
        Self { limit, after: None }
    }

    /// The bind values for `(key > $a OR (key = $a AND id > $b))` and `LIMIT $c` (one extra row
    /// tells whether another page follows).
    fn binds(&self) -> (i64, String, i64) {
        match &self.after {
            Some((key, id)) => (*key, id.clone(), self.limit + 1),
            None => (i64::MIN, String::new(), self.limit + 1),
        }
    }
}

/// Cuts the extra row off and computes the next position.
fn paginate<T>(mut rows: Vec<T>, limit: i64, key: impl Fn(&T) -> (i64, String)) -> Page<T> {
    let limit = usize::try_from(limit).unwrap_or(0);
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(&key)
    } else {
        None
    };
    Page { items: rows, next }
}

/// The platform's database.
#[derive(Clone, Debug)]
pub struct Store {
    /// Connections (SQLite or PostgreSQL behind `sqlx::Any`).
    pool: AnyPool,
    /// Which backend, for the few statements that differ.
    backend: Backend,
    /// Derives interview link tokens and pseudonyms.
    keys: Keys,
}

static INSTALL_DRIVERS: Once = Once::new();

/// Adds `mode=rwc` to a SQLite URL without a mode, so the file is created on first start, and
/// returns the file path (if any) so its folder can be created.
fn sqlite_url(url: &str) -> (String, Option<String>) {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let file = (!path.is_empty() && path != ":memory:").then(|| path.to_string());
    if query.split('&').any(|kv| kv.starts_with("mode=")) {
        (url.to_string(), file)
    } else if query.is_empty() {
        (format!("sqlite://{path}?mode=rwc"), file)
    } else {
        (format!("sqlite://{path}?{query}&mode=rwc"), file)
    }
}

/// Whether an error is SQLite's `SQLITE_BUSY` or `SQLITE_LOCKED` (another connection holds
/// the file): worth trying again, unlike a file that cannot be opened or written at all.
fn sqlite_busy(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<sqlx::Error>(),
            Some(sqlx::Error::Database(db))
                if db.code().and_then(|c| c.parse::<i32>().ok()).is_some_and(|c| matches!(c & 0xff, 5 | 6))
        )
    })
}

/// Switches a SQLite file to write-ahead logging, on a connection of its own.
async fn enable_wal(options: &AnyConnectOptions) -> Result<()> {
    let mut conn = sqlx::AnyConnection::connect_with(options)
        .await
        .context("opening the SQLite database")?;
    sqlx::query("PRAGMA journal_mode = WAL")
        .execute(&mut conn)
        .await
        .context("enabling SQLite WAL")?;
    conn.close().await.context("closing set-up connection")?;
    Ok(())
}

impl Store {
    /// Connects, enables WAL on SQLite, and runs the migrations. Secret material for the keys
    /// is `secret` if given, else one generated on first start and kept in the database.
    pub async fn connect(url: &str, max_connections: u32, secret: Option<&str>) -> Result<Self> {
        INSTALL_DRIVERS.call_once(sqlx::any::install_default_drivers);
        let (url, backend) = if url.starts_with("sqlite:") {
            let (url, file) = sqlite_url(url);
            if let Some(parent) = file
                .as_deref()
                .and_then(|f| std::path::Path::new(f).parent())
                .filter(|p| !p.as_os_str().is_empty())
            {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating database folder {}", parent.display()))?;
            }
            (url, Backend::Sqlite)
        } else {
            (url.to_string(), Backend::Postgres)
        };
        let options = AnyConnectOptions::from_str(&url)
            .with_context(|| format!("parsing database URL for {backend:?}"))?;
        if backend == Backend::Sqlite {
            // WAL persists in the file: set it once, on a dedicated connection, before pooling.
            // Another instance opening the same new file may hold it locked for a moment
            // (switching it to WAL, migrating it), and SQLite then answers `database is locked`
            // at once rather than waiting: try again, as for the migrations below.
            let mut tries = 0;
            loop {
                match enable_wal(&options).await {
                    Ok(()) => break,
                    Err(e) if tries < 10 && sqlite_busy(&e) => {
                        tries += 1;
                        tracing::info!(
                            error = format!("{e:#}"),
                            "enabling WAL raced another process; trying again"
                        );
                        tokio::time::sleep(StdDuration::from_millis(50 * tries)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(StdDuration::from_secs(10))
            .connect_with(options)
            .await
            .with_context(|| format!("connecting to the {backend:?} database"))?;
        let migrator = migrator()?;
        // Instances starting together on one SQLite file race to migrate it (PostgreSQL
        // serialises them with an advisory lock; SQLite has none). The loser's migration fails
        // and rolls back; running again finds it applied by the winner.
        let mut tries = 0;
        loop {
            match migrator.run(&pool).await {
                Ok(()) => break,
                Err(e) if backend == Backend::Sqlite && tries < 5 => {
                    tries += 1;
                    tracing::info!(error = %e, "migrating raced another process; trying again");
                    tokio::time::sleep(StdDuration::from_millis(200 * tries)).await;
                }
                Err(e) => return Err(anyhow::Error::new(e).context("running database migrations")),
            }
        }
        let mut store = Store {
            pool,
            backend,
            keys: Keys::new(b""),
        };
        let secret = match secret {
            Some(s) => s.to_string(),
            None => store.stored_secret().await?,
        };
        store.keys = Keys::new(secret.as_bytes());
        Ok(store)
    }

    /// The pool, for tests and for the components that share this database.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The keys derived from the server secret.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Closes all connections (waits for checked-out ones).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .ctx("pinging the database")?;
        Ok(())
    }

    /// The SQLite journal mode (`wal` expected), or `None` on PostgreSQL.
    pub async fn sqlite_journal_mode(&self) -> Result<Option<String>, StoreError> {
        if self.backend != Backend::Sqlite {
            return Ok(None);
        }
        let row = sqlx::query("PRAGMA journal_mode")
            .fetch_one(&self.pool)
            .await
            .ctx("reading journal mode")?;
        Ok(Some(
            row.try_get::<String, _>(0).ctx("reading journal mode")?,
        ))
    }

    /// The secret kept in `settings`, generated on first use (concurrent starters agree on the
    /// first one written).
    async fn stored_secret(&self) -> Result<String> {
        let candidate = super::crypto::random_token();
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ('secret', $1) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&candidate)
        .execute(&self.pool)
        .await
        .context("storing a generated secret")?;
        let row = sqlx::query("SELECT value FROM settings WHERE name = 'secret'")
            .fetch_one(&self.pool)
            .await
            .context("reading the stored secret")?;
        Ok(row.try_get::<String, _>("value")?)
    }
}

/// The embedded migrations as an sqlx migrator.
fn migrator() -> Result<Migrator> {
    let migrations = MIGRATIONS
        .iter()
        .map(|(version, description, sql)| {
            Migration::new(
                *version,
                Cow::Borrowed(*description),
                MigrationType::Simple,
                sql.into_sql_str(),
                false,
            )
        })
        .collect();
    Ok(Migrator::with_migrations(migrations))
}

/// Reads an optional text column.
fn opt_str(row: &AnyRow, col: &str) -> Result<Option<String>, sqlx::Error> {
    row.try_get::<Option<String>, _>(col)
}

/// Reads an optional integer column.
fn opt_i64(row: &AnyRow, col: &str) -> Result<Option<i64>, sqlx::Error> {
    row.try_get::<Option<i64>, _>(col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_get_create_mode() {
        assert_eq!(
            sqlite_url("sqlite:///tmp/x/db.sqlite"),
            (
                "sqlite:///tmp/x/db.sqlite?mode=rwc".to_string(),
                Some("/tmp/x/db.sqlite".to_string())
            )
        );
        assert_eq!(
            sqlite_url("sqlite://a.db?cache=shared").0,
            "sqlite://a.db?cache=shared&mode=rwc"
        );
        assert_eq!(
            sqlite_url("sqlite://a.db?mode=ro").0,
            "sqlite://a.db?mode=ro"
        );
        assert_eq!(sqlite_url("sqlite::memory:").1, None);
    }

    #[test]
    fn pages_cut_the_extra_row() {
        let page = paginate(vec![1, 2, 3], 2, |n| (i64::from(*n), n.to_string()));
        assert_eq!(page.items, vec![1, 2]);
        assert_eq!(page.next, Some((2, "2".to_string())));
        let last = paginate(vec![1], 2, |n| (i64::from(*n), n.to_string()));
        assert!(last.next.is_none());
    }
}
