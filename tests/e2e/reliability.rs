//! Promises of `docs/reliability.md` that need a real server process: `kill -9` in the middle of
//! an interview loses nothing committed and the applicant resumes at the current question, on
//! SQLite and on PostgreSQL; link tokens and secrets never reach the logs, even at debug level.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nextmark_server::platform::store::Store;
use serde_json::{Value, json};

use crate::helpers::{model_path, nextmark_bin, root};
use crate::live::WsClient;
use crate::platform::{Db, TestDb};

/// The server secret the processes run with; it must never appear in their logs.
pub const SECRET: &str = "reliability-secret-7f3a9c1e5b2d4806-not-for-logs";

/// A `nextmark serve` process with its log.
pub struct ServerProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// Its stderr (all logs, debug level).
    pub log: PathBuf,
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl ServerProcess {
    /// Starts `nextmark serve --demo` over `database_url` and waits until `/healthz` answers.
    async fn start(database_url: &str, dir: &Path, name: &str) -> ServerProcess {
        Self::start_with(database_url, dir, name, free_port(), &[]).await
    }

    /// [`ServerProcess::start`] on `port` with more `NEXTMARK_*` variables (later ones win).
    pub async fn start_with(
        database_url: &str,
        dir: &Path,
        name: &str,
        port: u16,
        env: &[(&str, String)],
    ) -> ServerProcess {
        let address = format!("127.0.0.1:{port}");
        let log = dir.join(format!("{name}.log"));
        let mut command = Command::new(nextmark_bin());
        command
            .args(["serve", "--demo", "--listen", &address])
            .args(["--database-url", database_url])
            .env("NEXTMARK_SECRET", SECRET)
            .env("NEXTMARK_PUBLIC_URL", format!("http://{address}"))
            .env("NEXTMARK_RUBRICS_DIR", root().join("rubrics"))
            .env("NEXTMARK_LIVE_MODEL", model_path())
            .env(
                "NEXTMARK_LIVE_RECORDINGS_DIR",
                dir.join(format!("{name}-spool")),
            )
            .env("NEXTMARK_LIVE_TTS_CACHE_DIR", dir.join("speech"))
            .env("NEXTMARK_LIVE_INTERVIEW_MAX_ITEMS", "3")
            .env(
                "NEXTMARK_STORAGE_URL",
                format!("file://{}", dir.join("objects").display()),
            )
            .env("NEXTMARK_LOG", "debug");
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start nextmark serve");
        let mut server = ServerProcess {
            child,
            address: format!("http://{address}"),
            log,
        };
        server.wait_healthy().await;
        server
    }

    async fn wait_healthy(&mut self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "nextmark serve exited ({status}) before it was healthy:\n{}",
                    self.log_text()
                );
            }
            if let Ok(reply) = client.get(format!("{}/healthz", self.address)).send().await
                && reply.status().is_success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nextmark serve not healthy within 120 s:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill_9(&mut self) {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the server");
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A demo interview: (interview id, link token, ws URL).
    pub async fn demo(&self, discipline: &str) -> (String, String, String) {
        let reply = reqwest::Client::new()
            .post(format!("{}/v1/demo/interviews", self.address))
            .json(&json!({ "discipline": discipline }))
            .send()
            .await
            .expect("demo request");
        assert_eq!(reply.status(), 201);
        let body: Value = reply.json().await.expect("json");
        let ws_url = body["ws_url"].as_str().expect("ws_url").to_string();
        let token = ws_url
            .split("/interview-links/")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .expect("token in ws_url")
            .to_string();
        let id = body["interview_id"].as_str().expect("id").to_string();
        (id, token, ws_url)
    }

    /// The live socket of a link on this server.
    pub fn ws_url(&self, token: &str) -> String {
        format!(
            "{}/v1/interview-links/{token}/live",
            self.address.replace("http://", "ws://")
        )
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A typed answer that sounds like consent to the intro and like an answer to anything else.
pub fn typed_answer(question_id: &str, n: usize) -> String {
    if question_id == "intro" {
        "Yes, I agree to be recorded, let's begin.".into()
    } else {
        format!(
            "Answer number {n}: I would first establish the facts, then weigh the main risks, \
             explain the trade-offs to the client and document every decision I make."
        )
    }
}

/// Answers by typing until `count` answers are committed; returns the question then current.
async fn answer_typed(client: &mut WsClient, mut question: Value, count: usize) -> Value {
    for n in 0..count {
        let id = question["id"].as_str().expect("question id").to_string();
        client
            .json(json!({"type": "text", "text": typed_answer(&id, n)}))
            .await;
        question = client.expect("question", Duration::from_secs(30)).await;
    }
    question
}

async fn kill_9_mid_interview_loses_nothing_committed(db: Db) {
    let Some((test_db, url)) = TestDb::create(db).await else {
        eprintln!(
            "SKIPPED kill_9 on PostgreSQL: {} is not set",
            crate::platform::PG_ENV
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut first = ServerProcess::start(&url, dir.path(), "first").await;
    let (interview_id, token, ws_url) = first.demo("law").await;
    let mut client = WsClient::connect(&ws_url).await;
    client.hello_pcm(Some(Value::Null)).await;
    let intro = client.expect("question", Duration::from_secs(30)).await;
    assert_eq!(intro["id"], "intro");
    // Consent, the warm-up and one rubric item are committed; the next item is being asked.
    let current = answer_typed(&mut client, intro, 3).await;
    let current_id = current["id"].as_str().expect("id").to_string();
    let store = Store::connect(&url, 2, Some(SECRET))
        .await
        .expect("open the database");
    let before = store.answers(&interview_id).await.expect("answers");
    assert_eq!(before.len(), 3, "{before:?}");

    first.kill_9();
    drop(client);
    let after = store.answers(&interview_id).await.expect("answers");
    assert_eq!(
        after
            .iter()
            .map(|a| (&a.item_id, &a.text))
            .collect::<Vec<_>>(),
        before
            .iter()
            .map(|a| (&a.item_id, &a.text))
            .collect::<Vec<_>>(),
        "every committed answer survives kill -9 unchanged"
    );

    // A new process on the same database; the same link resumes at the question that was
    // being asked.
    let second = ServerProcess::start(&url, dir.path(), "second").await;
    let mut back = WsClient::connect(&second.ws_url(&token)).await;
    back.hello_pcm(Some(Value::Null)).await;
    let ready = back.expect("ready", Duration::from_secs(30)).await;
    assert_eq!(ready["resumed"], true, "{ready}");
    let again = back.expect("question", Duration::from_secs(30)).await;
    assert_eq!(
        again["id"], current_id,
        "resumes at the current question: {again}"
    );
    // It goes on to the end, and the report holds every answer, before and after the kill.
    let mut question = again;
    let mut n = 10;
    loop {
        let id = question["id"].as_str().expect("id").to_string();
        back.json(json!({"type": "text", "text": typed_answer(&id, n)}))
            .await;
        n += 1;
        let next = loop {
            match back.next(Duration::from_secs(30)).await {
                Some(e) if e["type"] == "question" || e["type"] == "completed" => break e,
                Some(_) => continue,
                None => panic!("no question or completed; seen {:?}", back.seen),
            }
        };
        if next["type"] == "completed" {
            break;
        }
        assert!(n < 30, "the interview does not end: {:?}", back.seen);
        question = next;
    }
    let all = store.answers(&interview_id).await.expect("answers");
    assert!(all.len() > before.len(), "{all:?}");
    for (kept, was) in all.iter().zip(&before) {
        assert_eq!((&kept.item_id, &kept.text), (&was.item_id, &was.text));
    }
    let report = reqwest::Client::new()
        .get(format!(
            "{}/v1/interview-links/{token}/report",
            second.address
        ))
        .send()
        .await
        .expect("report request");
    assert_eq!(report.status(), 200);
    store.close().await;

    // Neither process wrote the link token or the secret to its log, at debug level.
    for server in [&first, &second] {
        let log = server.log_text();
        assert!(
            log.contains("DEBUG"),
            "debug logging was on: {}",
            server.log.display()
        );
        assert!(
            !log.contains(&token),
            "the interview link token is in {}",
            server.log.display()
        );
        assert!(
            !log.contains(SECRET),
            "the secret is in {}",
            server.log.display()
        );
    }
    drop(second);
    test_db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_interview_on_sqlite_resumes_with_every_answer() {
    kill_9_mid_interview_loses_nothing_committed(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_interview_on_postgres_resumes_with_every_answer() {
    kill_9_mid_interview_loses_nothing_committed(Db::Postgres).await;
}

/// The variables of a running process (Linux).
fn environment_of(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .expect("the server's environment")
        .split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// The server caps glibc's malloc arenas at one per core (it restarts itself with
/// `MALLOC_ARENA_MAX` set, in the same process), and keeps a cap the operator set.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_runs_with_one_malloc_arena_per_core_unless_told_otherwise() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("arenas.db").display());
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut capped = ServerProcess::start(&url, dir.path(), "capped").await;
    let env = environment_of(capped.pid());
    assert!(
        env.contains(&format!("MALLOC_ARENA_MAX={cores}")),
        "{:?}",
        env.iter()
            .filter(|v| v.starts_with("MALLOC"))
            .collect::<Vec<_>>()
    );
    capped.kill_9();
    let mut told = ServerProcess::start_with(
        &url,
        dir.path(),
        "told",
        free_port(),
        &[("MALLOC_ARENA_MAX", "5".to_string())],
    )
    .await;
    assert!(environment_of(told.pid()).contains(&"MALLOC_ARENA_MAX=5".to_string()));
    told.kill_9();
}

/// Instances started together on one new SQLite file (a failover pair, a restart racing a
/// health check) all open it: one of them switching the file to WAL can find it locked by
/// another's migration, which SQLite reports at once as `database is locked`, without waiting.
/// Seen in CI (the failover bench's smoke test); without the retry this failed in about one
/// round of 30 here, so 40 rounds of six.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_opening_one_new_sqlite_file_together_all_start() {
    for round in 0..40 {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/together.db", dir.path().display());
        let opening: Vec<_> = (0..6)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { Store::connect(&url, 2, Some(SECRET)).await.map(|_| ()) })
            })
            .collect();
        for (index, task) in opening.into_iter().enumerate() {
            let outcome = task.await.expect("task");
            assert!(
                outcome.is_ok(),
                "round {round}, instance {index}: {:#}",
                outcome.err().map(|e| format!("{e:#}")).unwrap_or_default()
            );
        }
    }
}
