//! The platform around the interview engine: the applicant's journey from application to
//! payout as a `/v1` JSON API over SQLite or PostgreSQL. [`Application`] binds it to a listener
//! (port 0 in tests) and runs it until a shutdown future resolves; [`router`] exposes the routes
//! so more can be merged into the same server.

pub mod api;
pub mod attempts;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod error;
pub mod instance;
pub mod mail;
pub mod objects;
pub mod rules;
pub mod store;
pub mod types;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use anyhow::{Context, Result};
use axum::Router;
use nextmark_engine::rubric::{CaseStudy, Rubric};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use api::router;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{PlatformConfig, Secret};
pub use error::{ApiError, StoreError};
pub use mail::{LogMailer, Mailer, MemoryMailer};
pub use store::{Backend, Store};

use store::{Principal, StaffRole};
use types::DisciplineId;

/// The email of the demo reviewer created by [`Application::ensure_demo_reviewer`].
pub const DEMO_REVIEWER_EMAIL: &str = "reviewer@demo.nextmark.local";
/// The email of the demo admin created by [`Application::ensure_demo_admin`].
pub const DEMO_ADMIN_EMAIL: &str = "admin@demo.nextmark.local";

/// The discipline rubrics, by id (disciplines, case studies).
#[derive(Debug, Clone, Default)]
pub struct Rubrics {
    /// Rubrics keyed by discipline id.
    by_id: BTreeMap<String, Rubric>,
}

impl Rubrics {
    /// Loads every `*.toml` in `dir` with [`Rubric::load`]; any invalid file is an error.
    pub fn load(dir: &Path) -> Result<Self> {
        let rubrics = nextmark_engine::rubric::load_dir(dir)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("loading rubrics from {}", dir.display()))?;
        Ok(Self {
            by_id: rubrics.into_iter().map(|r| (r.id.clone(), r)).collect(),
        })
    }

    /// The rubric of a discipline.
    pub fn get(&self, id: &str) -> Option<&Rubric> {
        self.by_id.get(id)
    }

    /// Discipline ids, sorted.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.by_id.keys().map(String::as_str)
    }
}

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// The source of "now".
    pub clock: Arc<dyn Clock>,
    /// Outgoing links.
    pub mailer: Arc<dyn Mailer>,
    /// Settings.
    pub config: Arc<PlatformConfig>,
    /// Disciplines and case studies.
    pub rubrics: Arc<Rubrics>,
    /// Recordings and reports (a local folder or an S3-compatible store).
    pub objects: objects::Objects,
    /// This instance's id and load, for leases, admission and `/healthz`.
    pub instance: Arc<instance::Instance>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("backend", &self.store.backend())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Now, as unix seconds.
    pub fn now(&self) -> i64 {
        clock::to_unix(self.clock.now())
    }

    /// The public base URL without a trailing slash.
    pub fn public_url(&self) -> &str {
        self.config.public_url.trim_end_matches('/')
    }

    /// Checks requested disciplines against the rubrics (non-empty, known, no repeats).
    pub fn known_disciplines(
        &self,
        requested: &[DisciplineId],
        field: &str,
    ) -> Result<Vec<String>, ApiError> {
        api::applicant::check_disciplines(|id| self.rubrics.get(id).is_some(), requested, field)
    }

    /// The display name of a discipline (its id if unknown).
    pub fn discipline_name(&self, id: &str) -> String {
        self.rubrics
            .get(id)
            .map_or_else(|| id.to_string(), |r| r.name.clone())
    }

    /// A case study of a discipline's rubric.
    pub fn case_study(&self, discipline: &str, id: &str) -> Option<&CaseStudy> {
        self.rubrics
            .get(discipline)?
            .case_studies
            .iter()
            .find(|c| c.id == id)
    }

    /// The end of an applicant's access window (`None` if they never passed).
    pub async fn access_until(&self, applicant_id: &str) -> Result<Option<i64>, StoreError> {
        Ok(rules::access_until(
            self.store.last_pass_at(applicant_id).await?,
            self.store.last_accepted_task_at(applicant_id).await?,
        ))
    }

    /// Recordings created before this instant are past retention.
    pub fn recordings_cutoff(&self) -> i64 {
        self.now() - i64::from(self.config.recordings_retention_days) * 86_400
    }

    /// Creates a staff account if missing, or resets its password; returns the email and the
    /// password (`password`, or a fresh random one).
    pub async fn ensure_staff(
        &self,
        email: &str,
        name: &str,
        role: StaffRole,
        password: Option<&str>,
    ) -> Result<(String, String)> {
        let password = password.map_or_else(crypto::random_token, str::to_string);
        let to_hash = password.clone();
        let hash = tokio::task::spawn_blocking(move || crypto::hash_password(&to_hash))
            .await
            .context("hashing password")??;
        let email = email.trim().to_lowercase();
        if let Some((staff, _)) = self.store.staff_by_email(&email).await? {
            self.store.set_staff_password(&staff.id, &hash).await?;
            return Ok((email, password));
        }
        match self
            .store
            .create_staff(&email, name, role, &hash, self.now())
            .await
        {
            Ok(staff) => {
                tracing::info!(email = %staff.email, role = role.as_str(), "staff account created");
            }
            // Another instance on the same database created it since the lookup (instances
            // started together): set the password on that account instead.
            Err(StoreError::Conflict {
                code: "email_taken",
                ..
            }) => {
                let (staff, _) = self
                    .store
                    .staff_by_email(&email)
                    .await?
                    .context("the staff account another instance created is gone")?;
                self.store.set_staff_password(&staff.id, &hash).await?;
            }
            Err(e) => return Err(e.into()),
        }
        Ok((email, password))
    }
}

/// What [`Application::build_with`] takes besides the configuration and listener.
pub struct Dependencies {
    /// The clock (tests use a [`ManualClock`]).
    pub clock: Arc<dyn Clock>,
    /// Outgoing links (tests use a [`MemoryMailer`]).
    pub mailer: Arc<dyn Mailer>,
    /// More routes for the same server (the live interview socket, demo endpoints), built from
    /// the state; they must not set their own fallback.
    pub extra_routes: Option<Box<dyn FnOnce(AppState) -> Router + Send>>,
}

impl Default for Dependencies {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            mailer: Arc::new(LogMailer),
            extra_routes: None,
        }
    }
}

/// The platform API server, bound and ready to run.
pub struct Application {
    /// The bound port (useful with port 0).
    port: u16,
    /// The listener to serve on.
    listener: TcpListener,
    /// All routes.
    router: Router,
    /// Shared state (also for tests and the live server).
    state: AppState,
}

impl Application {
    /// Connects the database (running migrations), loads the rubrics and prepares the routes,
    /// with the system clock and the logging mailer.
    pub async fn build(config: PlatformConfig, listener: TcpListener) -> Result<Self> {
        Self::build_with(config, listener, Dependencies::default()).await
    }

    /// [`Application::build`] with injected dependencies.
    pub async fn build_with(
        config: PlatformConfig,
        listener: TcpListener,
        deps: Dependencies,
    ) -> Result<Self> {
        config.check().context("checking platform configuration")?;
        let rubrics = Rubrics::load(&config.rubrics_dir)?;
        let objects = objects::Objects::open(&config.storage)?;
        objects.check().await?;
        let port = listener
            .local_addr()
            .context("reading the listener address")?
            .port();
        let instance = Arc::new(instance::Instance::new(
            config
                .live
                .instance_id
                .clone()
                .unwrap_or_else(|| instance::Instance::default_id(port)),
            config.live.max_sessions,
        ));
        let store = Store::connect(
            &config.database_url,
            config.max_connections,
            config.secret.as_ref().map(Secret::expose),
        )
        .await?;
        let state = AppState {
            store,
            clock: deps.clock,
            mailer: deps.mailer,
            config: Arc::new(config),
            rubrics: Arc::new(rubrics),
            objects,
            instance,
        };
        if let (Some(email), Some(password)) =
            (&state.config.admin_email, &state.config.admin_password)
        {
            state
                .ensure_staff(
                    email,
                    "Administrator",
                    StaffRole::Admin,
                    Some(password.expose()),
                )
                .await
                .context("creating the configured admin")?;
        }
        let mut router = router(state.clone());
        if let Some(extra) = deps.extra_routes {
            router = router.merge(extra(state.clone()));
        }
        let router = api::harden(router, &state.config);
        Ok(Self {
            port,
            listener,
            router,
            state,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared state (store, clock, config).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Ensures the demo reviewer account exists with a fresh random password, and returns its
    /// email and password (for `make run` to print).
    pub async fn ensure_demo_reviewer(&self) -> Result<(String, String)> {
        self.state
            .ensure_staff(
                DEMO_REVIEWER_EMAIL,
                "Demo Reviewer",
                StaffRole::Reviewer,
                None,
            )
            .await
    }

    /// Ensures the demo admin account exists with a fresh random password, and returns its email
    /// and password.
    pub async fn ensure_demo_admin(&self) -> Result<(String, String)> {
        self.state
            .ensure_staff(DEMO_ADMIN_EMAIL, "Demo Admin", StaffRole::Admin, None)
            .await
    }

    /// Serves until `shutdown` resolves, with the maintenance job (recording retention purge,
    /// expired sessions) running alongside; then closes the database.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let (stop, stopped) = watch::channel(false);
        let maintenance = tokio::spawn(maintenance(self.state.clone(), stopped));
        let served = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await;
        let _ = stop.send(true);
        if let Err(e) = maintenance.await {
            tracing::warn!(error = %e, "maintenance task failed");
        }
        self.state.store.close().await;
        served.context("serving the platform API")
    }
}

/// Runs [`maintenance_once`] every `maintenance_interval_secs` until told to stop; logs how it
/// ended.
async fn maintenance(state: AppState, mut stop: watch::Receiver<bool>) {
    let period = StdDuration::from_secs(state.config.maintenance_interval_secs.max(1));
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                if let Err(e) = maintenance_once(&state).await {
                    tracing::warn!(error = format!("{e:#}"), "maintenance run failed");
                }
            }
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    tracing::debug!("maintenance stopped: server shutting down");
                    return;
                }
            }
        }
    }
}

/// One maintenance run: purge recordings past retention, expired sessions and links, and
/// idempotency keys older than a day.
pub async fn maintenance_once(state: &AppState) -> Result<()> {
    let now = state.now();
    let report = state
        .store
        .purge_recordings(state.recordings_cutoff(), &state.objects)
        .await
        .context("purging recordings")?;
    if report.rows > 0 || !report.failed.is_empty() {
        tracing::info!(
            rows = report.rows,
            files = report.files,
            failed = report.failed.len(),
            "recordings purged"
        );
    }
    state
        .store
        .purge_expired(now, now - 86_400)
        .await
        .context("purging expired sessions")?;
    Ok(())
}

/// The principal of a staff member, for audit entries written outside a request.
pub fn staff_principal(id: &str, role: StaffRole) -> Principal {
    Principal::Staff {
        id: id.to_string(),
        role,
    }
}
