//! Platform API test harness: `spawn_app()` starts the real server on port 0 over a fresh
//! database (SQLite in a temporary folder, or a new PostgreSQL database created through
//! `NEXTMARK_TEST_DATABASE_URL`), with a settable clock and an in-memory mailer. The
//! `platform_test!` macro runs each test against both databases; without the PostgreSQL URL the
//! PostgreSQL variant prints that it was skipped. Logs only when `TEST_LOG` is set.

use std::future::Future;
use std::io::Write as _;
use std::sync::{Arc, Once};

use nextmark_engine::interview::{Action, Event, Interview, InterviewConfig};
use nextmark_engine::report::{ReportMeta, build_report};
use nextmark_server::platform::store::Principal;
use nextmark_server::platform::{
    AppState, Application, ManualClock, MemoryMailer, PlatformConfig, Secret,
};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::Connection as _;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

/// The environment variable naming the PostgreSQL admin connection for tests.
pub const PG_ENV: &str = "NEXTMARK_TEST_DATABASE_URL";

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    /// A SQLite file in a temporary folder.
    Sqlite,
    /// A fresh PostgreSQL database.
    Postgres,
}

/// A running platform server and what a test needs to drive it.
#[derive(Clone)]
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// HTTP client.
    pub client: reqwest::Client,
    /// The server's clock.
    pub clock: ManualClock,
    /// The server's outbox.
    pub mailer: Arc<MemoryMailer>,
    /// The server's state (store, rubrics) for repository calls and fixtures.
    pub state: AppState,
    /// Which database.
    pub db: Db,
    /// A reviewer's session token.
    pub reviewer: String,
    /// An admin's session token.
    pub admin: String,
}

/// A response: status and JSON body (`Null` when not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Parsed body.
    pub body: Value,
    /// Raw body.
    pub text: String,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    /// The error code of an error body.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// The field of an error body.
    pub fn field(&self) -> &str {
        self.body["error"]["field"].as_str().unwrap_or("")
    }

    /// A string member of the body.
    pub fn str(&self, key: &str) -> String {
        self.body[key]
            .as_str()
            .unwrap_or_else(|| panic!("no string {key:?} in {}", self.text))
            .to_string()
    }
}

/// The start of every test: a Monday morning.
pub const T0: OffsetDateTime = datetime!(2025-01-06 09:00 UTC);

impl TestApp {
    /// Sends a request; `token` becomes `Authorization: Bearer`, `body` JSON.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("request reaches the server");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("response body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            body,
            text,
            headers,
        }
    }

    /// GET.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(Method::GET, path, token, None, &[]).await
    }

    /// POST with a JSON body.
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.send(Method::POST, path, token, Some(&body), &[]).await
    }

    /// DELETE.
    pub async fn delete(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(Method::DELETE, path, token, None, &[]).await
    }

    /// The server's "now" in unix seconds.
    pub fn now(&self) -> i64 {
        self.clock.now_unix()
    }

    /// Moves the server's clock.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// An application body for `email` in `disciplines`.
    pub fn application(name: &str, email: &str, disciplines: &[&str]) -> Value {
        json!({
            "name": name,
            "email": email,
            "country": "DE",
            "disciplines": disciplines,
            "credentials": "MD, board certified in emergency medicine",
            "experience": "12 years in emergency departments",
            "years_experience": 12,
            "attestations": {"adult": true, "contractor_eligible": true}
        })
    }

    /// Applies and signs in through the emailed magic link; returns (applicant id, token).
    pub async fn applicant(
        &self,
        name: &str,
        email: &str,
        disciplines: &[&str],
    ) -> (String, String) {
        let applied = self
            .post(
                "/v1/applicants",
                None,
                Self::application(name, email, disciplines),
            )
            .await;
        assert_eq!(applied.status, 201, "{}", applied.text);
        let token = self.sign_in(email).await;
        (applied.str("id"), token)
    }

    /// Exchanges the latest magic link sent to `email` for a session token.
    pub async fn sign_in(&self, email: &str) -> String {
        let link = self.mailer.last_link_to(email).expect("a link was mailed");
        let token = link.split("token=").nth(1).expect("token in link");
        let session = self
            .post("/v1/auth/magic-link/verify", None, json!({"token": token}))
            .await;
        assert_eq!(session.status, 200, "{}", session.text);
        session.str("token")
    }

    /// A fresh session token for a principal, straight from the store.
    pub async fn session_for(&self, principal: &Principal) -> String {
        self.state
            .store
            .create_session(principal, 3600, self.now())
            .await
            .expect("session")
            .0
    }

    /// Completes an attempt's interview the way the live server will: commits `answers` text
    /// answers on items of the discipline not seen before, then the report.
    pub async fn complete_interview(&self, attempt: &Value, answers: usize) -> Vec<String> {
        let store = &self.state.store;
        let token = attempt["interview"]["link_token"]
            .as_str()
            .expect("link token");
        let now = self.now();
        let interview = store
            .get_interview_by_token(token, now)
            .await
            .expect("interview by token");
        let attempt_row = store
            .attempt(attempt["id"].as_str().expect("attempt id"))
            .await
            .expect("attempt");
        let seen = store
            .items_seen_by_applicant(&attempt_row.applicant_id)
            .await
            .expect("items seen");
        let rubric = self
            .state
            .rubrics
            .get(&interview.discipline)
            .expect("rubric");
        // The interview runs through the real engine with text answers; every scored item is
        // committed as it would be live, then the engine's report is stored.
        let mut iv = Interview::new(
            rubric,
            InterviewConfig {
                seed: 11,
                min_items: answers,
                max_items: answers,
                exclude_items: seen.clone(),
                ..InterviewConfig::default()
            },
        );
        store
            .start_interview(&interview.id, now)
            .await
            .expect("start");
        let mut items = Vec::new();
        let mut t = 0.0;
        iv.handle(Event::Start { at_s: t });
        let answer = "I would assess airway, breathing and circulation <b>first</b>, get an ECG and \
                      troponin because the differential includes a heart attack, and escalate if \
                      the patient deteriorates.";
        while !iv.is_finished() {
            t += 60.0;
            for action in iv.handle(Event::Answer {
                text: answer.into(),
                at_s: t,
                speech: None,
                typed: true,
            }) {
                if let Action::Scored { item_id, result } = action {
                    let seq = i64::try_from(items.len()).expect("seq");
                    store
                        .commit_answer(
                            &interview.id,
                            seq,
                            &item_id,
                            &result.answer,
                            &serde_json::to_value(&result.score).expect("score JSON"),
                            now,
                        )
                        .await
                        .expect("commit answer");
                    items.push(item_id);
                }
            }
        }
        assert_eq!(items.len(), answers, "the engine asked {answers} items");
        assert!(
            items.iter().all(|i| !seen.contains(i)),
            "an item seen in an earlier attempt was asked again"
        );
        let report = build_report(
            &iv,
            &ReportMeta {
                interview_id: interview.id.clone(),
                generated_at: "test".into(),
                ..ReportMeta::default()
            },
        );
        store
            .complete_interview(
                &interview.id,
                &serde_json::to_value(&report).expect("report JSON"),
                now,
            )
            .await
            .expect("complete interview");
        items
    }
}

/// `ManualClock` in unix seconds.
trait UnixNow {
    fn now_unix(&self) -> i64;
}

impl UnixNow for ManualClock {
    fn now_unix(&self) -> i64 {
        use nextmark_server::platform::Clock as _;
        self.now().unix_timestamp()
    }
}

/// Routes server logs to the test output when `TEST_LOG` is set (e.g. `TEST_LOG=debug`).
pub fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_env("TEST_LOG")
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .with_test_writer()
                .try_init();
        }
    });
}

/// A database made for one test, removed afterwards (PostgreSQL databases are dropped after a
/// passing test and left behind for inspection after a failing one).
pub enum TestDb {
    /// Kept alive so the folder outlives the server.
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres {
        admin_url: String,
        name: String,
    },
}

impl TestDb {
    /// A fresh database and its URL; `None` for PostgreSQL without [`PG_ENV`].
    pub async fn create(db: Db) -> Option<(Self, String)> {
        match db {
            Db::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}/platform.db", dir.path().display());
                Some((TestDb::Sqlite(dir), url))
            }
            Db::Postgres => {
                let admin_url = std::env::var(PG_ENV).ok().filter(|u| !u.is_empty())?;
                let name = format!(
                    "nextmark_test_{}",
                    nextmark_server::platform::crypto::hex(
                        &nextmark_server::platform::crypto::random_bytes::<8>()
                    )
                );
                let mut conn = sqlx::PgConnection::connect(&admin_url)
                    .await
                    .unwrap_or_else(|e| panic!("connecting to {PG_ENV}={admin_url}: {e}"));
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                let _ = conn.close().await;
                let base = admin_url.split('?').next().unwrap_or(&admin_url);
                let (server, _) = base.rsplit_once('/').expect("database URL has a path");
                let url = format!("{server}/{name}");
                Some((TestDb::Postgres { admin_url, name }, url))
            }
        }
    }

    /// Drops a PostgreSQL database (a SQLite folder goes with the value).
    pub async fn drop_database(self) {
        let TestDb::Postgres { admin_url, name } = self else {
            return;
        };
        if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await;
            let _ = conn.close().await;
        }
    }
}

/// Starts a server on port 0 over a fresh database; `None` (after saying so on stderr) when the
/// database is PostgreSQL and no URL is configured.
async fn spawn_app(
    db: Db,
) -> Option<(
    TestApp,
    TestDb,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
)> {
    init_logs();
    let (test_db, url) = TestDb::create(db).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind port 0");
    let port = listener.local_addr().expect("address").port();
    let config = PlatformConfig {
        database_url: url,
        public_url: format!("http://127.0.0.1:{port}"),
        rubrics_dir: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rubrics"),
        secret: Some(Secret::new("test-secret-test-secret-test-secret-0123")),
        max_connections: 5,
        // Tests move the clock by weeks; sessions outlive that (expiry has its own test).
        applicant_session_hours: 24 * 365 * 2,
        staff_session_hours: 24 * 365 * 2,
        ..PlatformConfig::default()
    };
    let clock = ManualClock::new(T0);
    let mailer = Arc::new(MemoryMailer::new());
    let app = Application::build_with(
        config,
        listener,
        nextmark_server::platform::Dependencies {
            clock: Arc::new(clock.clone()),
            mailer: mailer.clone(),
            extra_routes: None,
        },
    )
    .await
    .expect("build the application");
    let (reviewer_email, reviewer_password) = app.ensure_demo_reviewer().await.expect("reviewer");
    let (admin_email, admin_password) = app.ensure_demo_admin().await.expect("admin");
    let state = app.state().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        app.run_until_stopped(async move {
            let _ = stopped.await;
        })
        .await
        .expect("server ran");
    });
    let mut test_app = TestApp {
        address: format!("http://127.0.0.1:{port}"),
        // A fresh connection per request: a server may close a kept-alive connection right
        // after an error response, and a request racing that close fails on the client side
        // (hyper's IncompleteMessage) before it reaches the server.
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("http client"),
        clock,
        mailer,
        state,
        db,
        reviewer: String::new(),
        admin: String::new(),
    };
    test_app.reviewer = login(&test_app, &reviewer_email, &reviewer_password).await;
    test_app.admin = login(&test_app, &admin_email, &admin_password).await;
    Some((test_app, test_db, stop, server))
}

async fn login(app: &TestApp, email: &str, password: &str) -> String {
    let reply = app
        .post(
            "/v1/auth/login",
            None,
            json!({"email": email, "password": password}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.str("token")
}

/// Runs one test body against one database, then stops the server and drops the database.
pub async fn run<F, Fut>(db: Db, test: F)
where
    F: FnOnce(TestApp) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some((app, test_db, stop, server)) = spawn_app(db).await else {
        let name = std::thread::current()
            .name()
            .unwrap_or("platform test")
            .to_string();
        // Written past the test harness's capture on purpose: a skip must be visible.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {name}: {PG_ENV} is not set, so this PostgreSQL variant did not run"
        );
        return;
    };
    test(app).await;
    let _ = stop.send(());
    server.await.expect("server task");
    test_db.drop_database().await;
}

/// Declares `mod NAME { sqlite, postgres }` tests running `async fn NAME(app: TestApp)`.
macro_rules! platform_test {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    crate::platform::run(crate::platform::Db::Sqlite, super::$name).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    crate::platform::run(crate::platform::Db::Postgres, super::$name).await;
                }
            }
        )+
    };
}
pub(crate) use platform_test;

impl TestApp {
    /// An applicant who passed screening in `discipline` through the API; returns (id, token).
    pub async fn passed_applicant(&self, email: &str, discipline: &str) -> (String, String) {
        let (id, token) = self.applicant("Pat Passed", email, &[discipline]).await;
        let attempt = self
            .post(
                "/v1/me/attempts",
                Some(&token),
                json!({"discipline": discipline}),
            )
            .await;
        assert_eq!(attempt.status, 201, "{}", attempt.text);
        self.complete_interview(&attempt.body, 2).await;
        let attempt_id = attempt.str("id");
        let path = format!("/v1/me/attempts/{attempt_id}/case-study");
        assert_eq!(self.get(&path, Some(&token)).await.status, 200);
        let submitted = self
            .post(&path, Some(&token), json!({"answer": "A complete answer."}))
            .await;
        assert_eq!(submitted.status, 200, "{}", submitted.text);
        let pass = self
            .post(
                &format!("/v1/review/attempts/{attempt_id}/decision"),
                Some(&self.reviewer),
                json!({"outcome": "pass", "feedback": {"categories": []}}),
            )
            .await;
        assert_eq!(pass.status, 200, "{}", pass.text);
        (id, token)
    }

    /// Publishes a version of a document; returns its JSON.
    pub async fn publish(&self, kind: &str, body: &str) -> Value {
        let reply = self
            .post(
                "/v1/admin/documents",
                Some(&self.admin),
                json!({"kind": kind, "title": format!("{kind} text"), "body": body}),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.text);
        reply.body
    }

    /// Accepts every current agreement as `token`.
    pub async fn accept_all(&self, token: &str) {
        let docs = self.get("/v1/me/agreements", Some(token)).await;
        for doc in docs.body["documents"].as_array().expect("documents") {
            let accepted = self
                .post(
                    "/v1/me/agreements",
                    Some(token),
                    json!({"document_id": doc["document"]["id"], "sha256": doc["document"]["sha256"]}),
                )
                .await;
            assert_eq!(accepted.status, 201, "{}", accepted.text);
        }
    }

    /// Creates a role and matches `applicant_id` to it; returns the role id.
    pub async fn role_for(&self, applicant_id: &str, discipline: &str, rate_cents: i64) -> String {
        let role = self
            .post(
                "/v1/admin/roles",
                Some(&self.admin),
                json!({"discipline": discipline, "name": format!("Role {rate_cents}"),
                       "hourly_rate_cents": rate_cents, "currency": "USD"}),
            )
            .await;
        assert_eq!(role.status, 201, "{}", role.text);
        let role_id = role.str("id");
        let matched = self
            .post(
                &format!("/v1/admin/roles/{role_id}/members"),
                Some(&self.admin),
                json!({"applicant_id": applicant_id}),
            )
            .await;
        assert_eq!(matched.status, 201, "{}", matched.text);
        role_id
    }

    /// Posts a task to a role, takes and submits it as `token` now; returns the task id.
    pub async fn do_task(&self, role_id: &str, token: &str, minutes: i64) -> String {
        let task = self
            .post(
                "/v1/admin/tasks",
                Some(&self.admin),
                json!({"role_id": role_id, "title": "Task", "instructions": "Do it", "estimated_minutes": 30}),
            )
            .await;
        assert_eq!(task.status, 201, "{}", task.text);
        let id = task.str("id");
        let taken = self
            .post(&format!("/v1/me/tasks/{id}/take"), Some(token), json!({}))
            .await;
        assert_eq!(taken.status, 200, "{}", taken.text);
        let done = self
            .post(
                &format!("/v1/me/tasks/{id}/submit"),
                Some(token),
                json!({"output": "done", "minutes_spent": minutes}),
            )
            .await;
        assert_eq!(done.status, 200, "{}", done.text);
        id
    }
}
