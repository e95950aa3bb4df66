//! Scale-out promises of `docs/deploy.md`, with real parts: two `nextmark serve` processes on
//! one PostgreSQL behind the documented nginx configuration (hand-over to another instance,
//! `kill -9` of the owner, takeover once the lease lapses); recordings through moto's S3 server;
//! transcription through faster-whisper-server's OpenAI-compatible endpoint, killed mid-interview.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nextmark_server::platform::objects::StorageSettings;
use nextmark_server::platform::store::Store;
use nextmark_server::stt::{RemoteSttConfig, RemoteTranscriber};
use serde_json::{Value, json};

use crate::live::{
    LiveOptions, WsClient, answer_for, pool, rubric, spawn_live_with, speak_until_next, voice,
};
use crate::platform::{Db, TestDb};
use crate::reliability::{SECRET, ServerProcess, free_port, typed_answer};

/// Where `scripts/services.sh` put the Python servers and the CTranslate2 weights.
fn services_home() -> PathBuf {
    nextmark_server::models::nextmark_home()
}

/// A helper process, killed when dropped.
struct Service {
    child: Child,
    log: PathBuf,
}

impl Service {
    fn start(program: &Path, args: &[&str], env: &[(&str, &str)], log: PathBuf) -> Service {
        let mut command = Command::new(program);
        command.args(args);
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{} could not start ({e}); `make test` installs it (scripts/services.sh)",
                    program.display()
                )
            });
        Service { child, log }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits until `url` answers 2xx (the process must stay up meanwhile).
    async fn wait_ready(&mut self, url: &str, within: Duration) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{url}: the server exited ({status}):\n{}", self.log_text());
            }
            if let Ok(reply) = client.get(url).send().await
                && reply.status().is_success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{url} not ready within {within:?}:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// Reads events until a question or `completed` (skipping captions and the like).
async fn next_question(client: &mut WsClient, within: Duration) -> Value {
    loop {
        match client.next(within).await {
            Some(e) if e["type"] == "question" || e["type"] == "completed" => return e,
            Some(e) if e["type"] == "error" && e["fatal"] == true => {
                panic!("fatal error: {e}; seen {:?}", client.seen)
            }
            Some(_) => continue,
            None => panic!("no question within {within:?}; seen {:?}", client.seen),
        }
    }
}

/// Types answers until `count` more are committed; returns the question then asked.
async fn type_answers(
    client: &mut WsClient,
    mut question: Value,
    count: usize,
    n0: usize,
) -> Value {
    for n in 0..count {
        let id = question["id"].as_str().expect("question id").to_string();
        client
            .json(json!({"type": "text", "text": typed_answer(&id, n0 + n)}))
            .await;
        question = next_question(client, Duration::from_secs(30)).await;
    }
    question
}

/// The `completed` event that follows the closing words (it may have been read already).
async fn wait_completed(client: &mut WsClient) -> Value {
    match client.seen.iter().find(|e| e["type"] == "completed") {
        Some(done) => done.clone(),
        None => client.expect("completed", Duration::from_secs(30)).await,
    }
}

/// Types answers from `question` on until the interview completes; returns `completed`.
async fn type_until_completed(client: &mut WsClient, mut question: Value, n0: usize) -> Value {
    for n in n0..n0 + 30 {
        if question["type"] == "completed" {
            return question;
        }
        if question["id"] == "closing" {
            return wait_completed(client).await;
        }
        let id = question["id"].as_str().expect("question id").to_string();
        client
            .json(json!({"type": "text", "text": typed_answer(&id, n)}))
            .await;
        question = next_question(client, Duration::from_secs(30)).await;
    }
    panic!("the interview does not end: {:?}", client.seen)
}

/// A fetched text document (metrics).
async fn get_text(url: &str) -> String {
    reqwest::get(url)
        .await
        .expect("request")
        .text()
        .await
        .expect("text")
}

/// The instance holding an interview's lease, if any.
async fn lease_owner(url: &str, interview_id: &str) -> Option<String> {
    let pool = sqlx::postgres::PgPool::connect(url).await.expect("connect");
    let owner: Option<(String,)> =
        sqlx::query_as("SELECT owner FROM interview_leases WHERE interview_id = $1")
            .bind(interview_id)
            .fetch_optional(&pool)
            .await
            .expect("read lease");
    pool.close().await;
    owner.map(|(o,)| o)
}

/// nginx running `docs/deploy/nginx.conf` with its ports swapped for `proxy`, `a` and `b`.
fn start_nginx(dir: &Path, proxy: u16, a: u16, b: u16) -> Service {
    let recipe = std::fs::read_to_string(crate::helpers::root().join("docs/deploy/nginx.conf"))
        .expect("docs/deploy/nginx.conf");
    let conf = recipe
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{proxy}"))
        .replace("127.0.0.1:8081", &format!("127.0.0.1:{a}"))
        .replace("127.0.0.1:8082", &format!("127.0.0.1:{b}"));
    assert_ne!(
        conf, recipe,
        "the recipe names the ports it is documented with"
    );
    let prefix = dir.join("nginx");
    std::fs::create_dir_all(prefix.join("tmp")).expect("nginx prefix");
    std::fs::write(prefix.join("nginx.conf"), conf).expect("nginx.conf");
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("nginx is installed by `make test` (scripts/services.sh)");
    let prefix_arg = format!("{}/", prefix.display());
    let conf_arg = prefix.join("nginx.conf").display().to_string();
    Service::start(
        &nginx,
        &[
            "-p",
            &prefix_arg,
            "-c",
            &conf_arg,
            "-g",
            "daemon off; user root;",
        ],
        &[],
        dir.join("nginx.stderr"),
    )
}

/// A fetched JSON document.
async fn get_json(url: &str) -> (u16, Value) {
    let reply = reqwest::get(url).await.expect("request");
    let status = reply.status().as_u16();
    (status, reply.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_behind_nginx_hand_over_and_survive_kill_9() {
    let Some((test_db, url)) = TestDb::create(Db::Postgres).await else {
        eprintln!(
            "SKIPPED two instances on PostgreSQL: {} is not set",
            crate::platform::PG_ENV
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (proxy_port, a_port, b_port) = (free_port(), free_port(), free_port());
    let proxy = format!("http://127.0.0.1:{proxy_port}");
    let shared = |id: &str| {
        vec![
            ("NEXTMARK_PUBLIC_URL", proxy.clone()),
            ("NEXTMARK_TRUST_FORWARDED_FOR", "true".to_string()),
            ("NEXTMARK_LIVE_LEASE_SECS", "3".to_string()),
            ("NEXTMARK_LIVE_INSTANCE_ID", id.to_string()),
            ("NEXTMARK_LIVE_INTERVIEW_MAX_ITEMS", "4".to_string()),
            ("NEXTMARK_ADMIN_EMAIL", "ops@example.org".to_string()),
            (
                "NEXTMARK_ADMIN_PASSWORD",
                "correct horse battery staple".to_string(),
            ),
        ]
    };
    let a = ServerProcess::start_with(&url, dir.path(), "a", a_port, &shared("a")).await;
    let mut b = ServerProcess::start_with(&url, dir.path(), "b", b_port, &shared("b")).await;
    let mut nginx = start_nginx(dir.path(), proxy_port, a_port, b_port);
    nginx
        .wait_ready(&format!("{proxy}/healthz"), Duration::from_secs(20))
        .await;

    // A staff session opened on one instance works on the other, and both see the same
    // reviewer queue (sessions, queues and deadlines live in the database).
    let http = reqwest::Client::new();
    let login: Value = http
        .post(format!("{}/v1/auth/login", a.address))
        .json(&json!({"email": "ops@example.org", "password": "correct horse battery staple"}))
        .send()
        .await
        .expect("login on a")
        .json()
        .await
        .expect("session");
    let token = login["token"].as_str().expect("token").to_string();
    let mut queues = Vec::new();
    for server in [&a, &b] {
        let reply = http
            .get(format!("{}/v1/review/queue", server.address))
            .bearer_auth(&token)
            .send()
            .await
            .expect("queue");
        assert_eq!(
            reply.status(),
            200,
            "the session is known to {}",
            server.address
        );
        queues.push(reply.json::<Value>().await.expect("queue json"));
    }
    assert_eq!(queues[0], queues[1]);

    // Both instances report themselves ready and idle.
    for (server, id) in [(&a, "a"), (&b, "b")] {
        let (status, health) = get_json(&format!("{}/healthz", server.address)).await;
        assert_eq!(status, 200, "{health}");
        assert_eq!(health["instance"], id);
        assert_eq!(health["live_interviews"], 0);
        assert_eq!(health["accepting_interviews"], true);
    }

    // An interview created through the proxy starts on A (connected directly).
    let reply = reqwest::Client::new()
        .post(format!("{proxy}/v1/demo/interviews"))
        .json(&json!({"discipline": "law"}))
        .send()
        .await
        .expect("demo through the proxy");
    assert_eq!(reply.status(), 201);
    let demo: Value = reply.json().await.expect("json");
    let interview_id = demo["interview_id"].as_str().expect("id").to_string();
    let proxied_ws = demo["ws_url"].as_str().expect("ws_url").to_string();
    assert!(proxied_ws.contains(&proxy_port.to_string()), "{proxied_ws}");
    let link = proxied_ws
        .split("/interview-links/")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .expect("token")
        .to_string();
    let mut client = WsClient::connect(&a.ws_url(&link)).await;
    client.hello_pcm(Some(Value::Null)).await;
    let intro = next_question(&mut client, Duration::from_secs(30)).await;
    let current = type_answers(&mut client, intro, 2, 0).await;
    assert_eq!(lease_owner(&url, &interview_id).await.as_deref(), Some("a"));
    let (_, health) = get_json(&format!("{}/healthz", a.address)).await;
    assert_eq!(health["live_interviews"], 1, "{health}");

    // The applicant's network changes: the old socket is gone without a close, and the
    // reconnect reaches B. A is alive and holds the lease; it hands the interview over.
    drop(client);
    let asked_at = Instant::now();
    let mut client = WsClient::connect(&b.ws_url(&link)).await;
    client.hello_pcm(Some(Value::Null)).await;
    let ready = client.expect("ready", Duration::from_secs(15)).await;
    assert_eq!(ready["resumed"], true, "{ready}");
    let again = next_question(&mut client, Duration::from_secs(15)).await;
    let handover = asked_at.elapsed();
    assert_eq!(again["id"], current["id"], "continues at the same question");
    assert_eq!(lease_owner(&url, &interview_id).await.as_deref(), Some("b"));
    let current = type_answers(&mut client, again, 1, 10).await;
    let store = Store::connect(&url, 2, Some(SECRET)).await.expect("store");
    let before = store.answers(&interview_id).await.expect("answers");
    assert_eq!(before.len(), 3, "consent, warm-up and one item: {before:?}");

    // B dies mid-interview. The reconnect goes through nginx, which finds the survivor; A
    // takes over once B's lease lapses and continues from what was committed.
    b.kill_9();
    let killed_at = Instant::now();
    drop(client);
    let mut client = WsClient::connect(&proxied_ws).await;
    client.hello_pcm(Some(Value::Null)).await;
    let ready = client.expect("ready", Duration::from_secs(20)).await;
    assert_eq!(ready["resumed"], true, "{ready}");
    let again = next_question(&mut client, Duration::from_secs(20)).await;
    let takeover = killed_at.elapsed();
    assert_eq!(
        again["id"], current["id"],
        "resumes at the current question"
    );
    assert_eq!(lease_owner(&url, &interview_id).await.as_deref(), Some("a"));
    eprintln!(
        "scale: hand-over to a live instance {:.2} s; takeover after kill -9 {:.2} s (lease 3 s)",
        handover.as_secs_f64(),
        takeover.as_secs_f64()
    );
    assert!(
        takeover < Duration::from_secs(12),
        "takeover took {takeover:?}"
    );

    // It goes on to the end through the proxy; nothing committed before is lost.
    let done = type_until_completed(&mut client, again, 20).await;
    assert_eq!(done["type"], "completed");
    let all = store.answers(&interview_id).await.expect("answers");
    assert!(all.len() > before.len());
    for (kept, was) in all.iter().zip(&before) {
        assert_eq!((&kept.item_id, &kept.text), (&was.item_id, &was.text));
    }
    let seqs: Vec<i64> = all.iter().map(|a| a.seq).collect();
    assert_eq!(seqs, (0..all.len() as i64).collect::<Vec<_>>(), "no gaps");
    let (status, report) = get_json(&format!("{proxy}/v1/interview-links/{link}/report")).await;
    assert_eq!(status, 200, "{report}");
    assert!(report["items"].as_array().is_some_and(|i| !i.is_empty()));
    // Any instance serves the same report (b is dead: ask a directly, and the proxy).
    let (status, direct) =
        get_json(&format!("{}/v1/interview-links/{link}/report", a.address)).await;
    assert_eq!(status, 200);
    assert_eq!(direct, report);
    // Every run's recordings reached the shared object store, whichever instance wrote them.
    let rows = store
        .recordings_for_interview(&interview_id)
        .await
        .expect("recordings");
    assert!(rows.len() >= 4, "A's and B's runs: {rows:?}");
    for row in &rows {
        assert!(
            dir.path().join("objects").join(&row.path).exists(),
            "{} is in the shared store",
            row.path
        );
    }
    assert_eq!(lease_owner(&url, &interview_id).await, None, "released");
    let metrics = get_text(&format!("{}/metrics", a.address)).await;
    assert!(
        metrics.contains("nextmark_lease_takeovers_total 1"),
        "A took one interview over: {metrics}"
    );
    store.close().await;
    drop(nginx);
    drop(a);
    test_db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_interviews_past_capacity_are_refused_before_the_socket_opens() {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let mut app = spawn_live_with(Some(dir), LiveOptions::default(), |s| {
        s.max_sessions = 1;
    })
    .await
    .expect("server");
    let first = app.demo("law").await;
    let second = app.demo("law").await;
    let mut client = WsClient::connect(first["ws_url"].as_str().expect("url")).await;
    client.hello_pcm(Some(Value::Null)).await;
    client.expect("question", Duration::from_secs(20)).await;
    let (status, health) = get_json(&format!("{}/healthz", app.address)).await;
    assert_eq!(status, 200);
    assert_eq!(health["live_interviews"], 1, "{health}");
    assert_eq!(health["accepting_interviews"], false, "{health}");
    assert_eq!(health["load"], 1.0);
    // A second interview gets a 503 with a message and Retry-After, before any upgrade.
    let reply = reqwest::Client::new()
        .get(
            second["ws_url"]
                .as_str()
                .expect("url")
                .replace("ws://", "http://"),
        )
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("request");
    assert_eq!(reply.status(), 503);
    assert!(reply.headers().contains_key("retry-after"));
    let body: Value = reply.json().await.expect("json");
    assert_eq!(body["error"]["code"], "at_capacity", "{body}");
    // The running interview itself still reconnects.
    drop(client);
    let mut back = WsClient::connect(first["ws_url"].as_str().expect("url")).await;
    back.hello_pcm(Some(Value::Null)).await;
    let ready = back.expect("ready", Duration::from_secs(20)).await;
    assert_eq!(ready["resumed"], true);
    // A draining instance tells the balancer to stop sending it work.
    app.state.instance.start_draining();
    let (status, health) = get_json(&format!("{}/healthz", app.address)).await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["status"], "draining");
    assert_eq!(health["accepting_interviews"], false);
    app.stop().await;
}

/// faster-whisper-server over the CTranslate2 tiny.en weights, on a free port.
struct SttServer {
    service: Service,
    /// `http://127.0.0.1:PORT/v1`.
    base_url: String,
}

impl SttServer {
    async fn start(dir: &Path) -> SttServer {
        let home = services_home();
        let program = home.join("services-venv/bin/faster-whisper-server");
        let model = home.join("peer-model");
        let port = free_port().to_string();
        let mut service = Service::start(
            &program,
            &[
                &model.display().to_string(),
                "--host",
                "127.0.0.1",
                "--port",
                &port,
            ],
            &[("OMP_NUM_THREADS", "1")],
            dir.join("faster-whisper-server.log"),
        );
        service
            .wait_ready(
                &format!("http://127.0.0.1:{port}/health"),
                Duration::from_secs(60),
            )
            .await;
        SttServer {
            service,
            base_url: format!("http://127.0.0.1:{port}/v1"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_transcription_runs_the_interview_and_local_whisper_takes_over_when_it_dies() {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let mut stt = SttServer::start(dir.path()).await;
    let mut config = RemoteSttConfig::new(&stt.base_url);
    config.timeout = Duration::from_secs(20);
    let remote = Arc::new(RemoteTranscriber::new(config, Some(pool())).expect("remote"));
    let mut app = spawn_live_with(
        Some(dir.clone()),
        LiveOptions {
            transcriber: Some(remote.clone()),
            ..LiveOptions::default()
        },
        |s| s.interview_max_items = Some(2),
    )
    .await
    .expect("server");
    let demo = app.demo("medicine").await;
    let interview_id = demo["interview_id"].as_str().expect("id").to_string();
    let rubric = rubric("medicine");
    let mut client = WsClient::connect(demo["ws_url"].as_str().expect("url")).await;
    client.hello_pcm(None).await;
    let mut event = client.expect("question", Duration::from_secs(30)).await;
    let mut answered = 0;
    let mut fell_before_kill = u64::MAX;
    while event["type"] == "question" {
        let id = event["id"].as_str().expect("id").to_string();
        if id == "closing" {
            // `completed` follows the closing words; it may have come in the same batch.
            event = wait_completed(&mut client).await;
            break;
        }
        if event.get("audio").is_some_and(|a| !a.is_null()) {
            client.json(json!({"type": "playback_ended"})).await;
        }
        if answered == 2 {
            // Consent and the warm-up went through the endpoint; now it dies.
            let done = remote
                .stats()
                .remote_done
                .load(std::sync::atomic::Ordering::Relaxed);
            assert!(
                done >= 2,
                "the endpoint transcribed the first answers ({done})"
            );
            // (Under a loaded machine a slow request may already have fallen back: count from
            // here.)
            fell_before_kill = remote
                .stats()
                .fell_back
                .load(std::sync::atomic::Ordering::Relaxed);
            stt.service.kill_9();
        }
        let speech = voice(&answer_for(&rubric, &id), 16_000).await;
        let (next, sent) =
            speak_until_next(&mut client, &speech, 2.0, Duration::from_secs(120)).await;
        assert!(sent >= 0.999, "cut in on {id}");
        answered += 1;
        event = next;
    }
    assert_eq!(event["type"], "completed", "{:?}", client.seen);
    assert!(answered >= 3, "answered {answered}");
    let fell_back = remote
        .stats()
        .fell_back
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        fell_before_kill != u64::MAX && fell_back > fell_before_kill,
        "local whisper took over after the kill ({fell_before_kill} → {fell_back})"
    );
    // Every answer was committed with text, those after the kill included.
    let answers = app
        .state
        .store
        .answers(&interview_id)
        .await
        .expect("answers");
    assert_eq!(answers.len(), answered, "{answers:?}");
    for a in &answers {
        assert!(!a.text.trim().is_empty(), "answer {} has text", a.seq);
    }
    let heard = answers[0].text.to_lowercase();
    assert!(
        ["yes", "agree", "continu"]
            .iter()
            .any(|w| heard.contains(w)),
        "consent transcribed by the endpoint: {heard}"
    );
    let metrics = get_text(&format!("{}/metrics", app.address)).await;
    assert!(
        metrics.contains(&format!("nextmark_stt_fallbacks_total {fell_back}")),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_remote_endpoint_that_never_answered_fails_over_per_utterance() {
    // Nothing listens on this port: every request fails at once and goes to the fallback,
    // and without a fallback the job fails with the reason.
    let url = format!("http://127.0.0.1:{}/v1", free_port());
    let remote = RemoteTranscriber::new(RemoteSttConfig::new(&url), None).expect("remote");
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job = nextmark_engine::asr::pool::AsrJob {
        kind: nextmark_engine::asr::pool::JobKind::Final,
        samples: vec![0.0; 16_000],
        options: Default::default(),
        reply: Box::new(move |r| {
            let _ = tx.send(r.map(|o| o.segments.len()).map_err(|e| e.to_string()));
        }),
    };
    nextmark_engine::asr::Transcriber::submit(&remote, job).expect("accepted");
    let result = tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .expect("answered in time")
        .expect("replied");
    let err = result.expect_err("no endpoint, no fallback");
    assert!(err.contains("remote transcription failed"), "{err}");
}

#[tokio::test]
async fn a_cancelled_job_is_not_sent_to_the_remote_endpoint() {
    // Nothing listens on this port: a request would fail with the reason above, so the
    // `Cancelled` reply shows that none was made.
    let url = format!("http://127.0.0.1:{}/v1", free_port());
    let remote = RemoteTranscriber::new(RemoteSttConfig::new(&url), None).expect("remote");
    let (tx, rx) = tokio::sync::oneshot::channel();
    let options = nextmark_engine::asr::DecodeOptions::default();
    options.cancel.cancel();
    let job = nextmark_engine::asr::pool::AsrJob {
        kind: nextmark_engine::asr::pool::JobKind::Partial,
        samples: vec![0.0; 16_000],
        options,
        reply: Box::new(move |r| {
            let _ = tx.send(r.map(|o| o.segments.len()));
        }),
    };
    nextmark_engine::asr::Transcriber::submit(&remote, job).expect("accepted");
    let result = tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .expect("answered in time")
        .expect("replied");
    assert!(
        matches!(
            result,
            Err(nextmark_engine::asr::AsrError::Cancelled { threads: 0, .. })
        ),
        "{result:?}"
    );
}

/// moto's S3 server with authentication on: one bucket, one IAM user whose key it accepts.
struct S3Server {
    _service: Service,
    endpoint: String,
    key_id: String,
    secret: String,
}

impl S3Server {
    /// Starts moto letting the first four requests through unchecked (create the user, its
    /// key and its policy, and the bucket), then checking every signature.
    async fn start(dir: &Path, bucket: &str) -> S3Server {
        let program = services_home().join("services-venv/bin/moto_server");
        let port = free_port().to_string();
        let mut service = Service::start(
            &program,
            &["-H", "127.0.0.1", "-p", &port],
            &[("INITIAL_NO_AUTH_ACTION_COUNT", "4")],
            dir.join("moto.log"),
        );
        let endpoint = format!("http://127.0.0.1:{port}");
        service
            .wait_ready(&format!("{endpoint}/moto-api/"), Duration::from_secs(30))
            .await;
        let client = reqwest::Client::new();
        // A placeholder SigV4 header only routes these calls to IAM (they are not checked yet).
        let iam = |form: Vec<(&'static str, String)>| {
            client
                .post(format!("{endpoint}/"))
                .header(
                    "authorization",
                    "AWS4-HMAC-SHA256 Credential=setup/20260101/us-east-1/iam/aws4_request, \
                     SignedHeaders=host, Signature=0",
                )
                .form(&form)
                .send()
        };
        let base = |action: &str| {
            vec![
                ("Action", action.to_string()),
                ("Version", "2010-05-08".to_string()),
                ("UserName", "nextmark".to_string()),
            ]
        };
        let user = iam(base("CreateUser")).await.expect("create user");
        assert!(
            user.status().is_success(),
            "{}",
            user.text().await.unwrap_or_default()
        );
        let key = iam(base("CreateAccessKey"))
            .await
            .expect("create key")
            .text()
            .await
            .expect("key xml");
        let field = |name: &str| {
            key.split(&format!("<{name}>"))
                .nth(1)
                .and_then(|r| r.split('<').next())
                .unwrap_or_else(|| panic!("{name} in {key}"))
                .to_string()
        };
        let (key_id, secret) = (field("AccessKeyId"), field("SecretAccessKey"));
        let mut policy = base("PutUserPolicy");
        policy.push(("PolicyName", "s3".into()));
        policy.push((
            "PolicyDocument",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#
                .into(),
        ));
        let put = iam(policy).await.expect("policy");
        assert!(
            put.status().is_success(),
            "{}",
            put.text().await.unwrap_or_default()
        );
        let made = client
            .put(format!("{endpoint}/{bucket}"))
            .send()
            .await
            .expect("create bucket");
        assert!(
            made.status().is_success(),
            "{}",
            made.text().await.unwrap_or_default()
        );
        S3Server {
            _service: service,
            endpoint,
            key_id,
            secret,
        }
    }

    fn settings(&self, url: &str, key_id: &str, secret: &str) -> StorageSettings {
        StorageSettings {
            url: url.into(),
            s3_endpoint: Some(self.endpoint.clone()),
            s3_region: "us-east-1".into(),
            s3_access_key_id: Some(key_id.into()),
            s3_secret_access_key: Some(nextmark_server::platform::Secret::new(secret)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_and_reports_round_trip_through_an_s3_server() {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let s3 = S3Server::start(dir.path(), "interviews").await;

    // Start-up refuses a store it cannot use, and says why.
    for (settings, expected) in [
        (
            s3.settings("s3://no-such-bucket", &s3.key_id, &s3.secret),
            "the bucket does not exist",
        ),
        (
            s3.settings("s3://interviews", "AKIAWRONGWRONGWRONG1", &s3.secret),
            "refused the credentials",
        ),
        (
            s3.settings("s3://interviews", &s3.key_id, "not-the-secret"),
            "refused the credentials",
        ),
    ] {
        let started = spawn_live_with(
            None,
            LiveOptions {
                storage: Some(settings),
                ..LiveOptions::default()
            },
            |_| {},
        )
        .await;
        let err = format!("{:#}", started.err().expect("start-up fails"));
        assert!(err.contains(expected), "{err}");
        assert!(
            err.contains("object storage s3://"),
            "names the store: {err}"
        );
        assert!(!err.contains(&s3.secret), "no secret in the message: {err}");
    }

    // A real interview with the store behind a prefix: recordings and the report land there.
    let mut app = spawn_live_with(
        Some(dir.clone()),
        LiveOptions {
            storage: Some(s3.settings("s3://interviews/nextmark", &s3.key_id, &s3.secret)),
            ..LiveOptions::default()
        },
        |s| s.interview_max_items = Some(1),
    )
    .await
    .expect("server on S3");
    let demo = app.demo("law").await;
    let interview_id = demo["interview_id"].as_str().expect("id").to_string();
    let mut client = WsClient::connect(demo["ws_url"].as_str().expect("url")).await;
    client.hello_pcm(None).await;
    let intro = client.expect("question", Duration::from_secs(30)).await;
    assert_eq!(intro["id"], "intro");
    // Consent is spoken (so the applicant track holds speech), the rest typed.
    client.json(json!({"type": "playback_ended"})).await;
    let consent = voice("Yes, I agree to continue.", 16_000).await;
    let (question, _) = speak_until_next(&mut client, &consent, 2.0, Duration::from_secs(60)).await;
    let question = type_until_completed(&mut client, question, 0).await;
    assert_eq!(question["type"], "completed", "{:?}", client.seen);
    let recordings = app.recordings_of(&interview_id).await;
    assert_eq!(recordings.len(), 2, "both tracks");
    for (location, audio) in &recordings {
        assert!(location.starts_with("recordings/"), "{location}");
        assert!(audio.duration_s() > 1.0, "{location}");
    }
    let report = app
        .state
        .objects
        .get(&format!("reports/{interview_id}/report.html"))
        .await
        .expect("report in S3");
    assert!(String::from_utf8_lossy(&report).contains("<html"));
    // The objects really are in the bucket under the prefix: read one back with a client of
    // its own, over the S3 protocol.
    let other = nextmark_server::platform::objects::Objects::open(&s3.settings(
        "s3://interviews",
        &s3.key_id,
        &s3.secret,
    ))
    .expect("second client");
    let raw = other
        .get(&format!("nextmark/{}", recordings[0].0))
        .await
        .expect("object under the prefix");
    assert!(raw.starts_with(b"OggS"), "an Ogg file");
    app.stop().await;
}

/// Opens a demo interview on `app`, says hello and types the consent; returns the client, the
/// interview id and the question then asked.
async fn start_typed(app: &crate::live::LiveApp) -> (WsClient, String, Value) {
    let demo = app.demo("law").await;
    let id = demo["interview_id"].as_str().expect("id").to_string();
    let mut client = WsClient::connect(demo["ws_url"].as_str().expect("url")).await;
    client.hello_pcm(None).await;
    let intro = next_question(&mut client, Duration::from_secs(30)).await;
    client.json(json!({"type": "playback_ended"})).await;
    // A second of room tone, so the applicant's track holds audio.
    client.pcm(&vec![0.0; 16_000]).await;
    let next = type_answers(&mut client, intro, 1, 0).await;
    (client, id, next)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_lease_was_taken_stops_and_says_so() {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let mut app = spawn_live_with(Some(dir.clone()), LiveOptions::default(), |s| {
        s.lease_secs = 3;
    })
    .await
    .expect("server");
    let (mut client, id, _) = start_typed(&app).await;
    // Another instance took the lease (as if this one had been cut off from the database
    // longer than the lease): at its next renewal the session stops instead of running on.
    let db = sqlx::sqlite::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path().join("live.db").display()
    ))
    .await
    .expect("open the database");
    let stolen = sqlx::query(
        "UPDATE interview_leases SET owner = 'elsewhere', expires_at_ms = expires_at_ms + 60000 \
         WHERE interview_id = $1",
    )
    .bind(&id)
    .execute(&db)
    .await
    .expect("take the lease");
    assert_eq!(stolen.rows_affected(), 1, "the session held a lease");
    let error = client.expect("error", Duration::from_secs(10)).await;
    assert_eq!(error["code"], "moved", "{error}");
    assert_eq!(error["fatal"], true);
    // The other holder's lease is left alone.
    let owner: (String,) =
        sqlx::query_as("SELECT owner FROM interview_leases WHERE interview_id = $1")
            .bind(&id)
            .fetch_one(&db)
            .await
            .expect("lease");
    assert_eq!(owner.0, "elsewhere");
    db.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_that_cannot_be_stored_stays_in_the_spool() {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let mut app = spawn_live_with(Some(dir.clone()), LiveOptions::default(), |s| {
        s.interview_max_items = Some(1);
    })
    .await
    .expect("server");
    // The store passed its start-up probe; now nothing can be written under recordings/.
    std::fs::write(dir.path().join("objects").join("recordings"), b"in the way")
        .expect("block the folder");
    let (mut client, id, question) = start_typed(&app).await;
    let done = type_until_completed(&mut client, question, 1).await;
    assert_eq!(done["type"], "completed");
    let recordings = app.recordings_of(&id).await;
    assert_eq!(recordings.len(), 2, "both tracks registered");
    for (location, audio) in &recordings {
        assert!(
            location.starts_with(&app.recordings.display().to_string()),
            "kept in the spool and registered by its path: {location}"
        );
        assert!(std::path::Path::new(location).exists(), "{location}");
        assert!(audio.duration_s() > 0.0, "{location}");
    }
    app.stop().await;
}
