//! `nextmark-bench failover`: how long an applicant waits when the instance running their
//! interview goes away. Two `nextmark serve --demo` processes share one database; per run an
//! interview is started on A and answered once, then
//! - hand-over: the applicant's connection drops and they reconnect through B while A lives
//!   (B asks for the interview, A hands it over at its next lease renewal);
//! - takeover: A is killed (SIGKILL) and the applicant reconnects through B (B waits for A's
//!   lease to lapse).
//!
//! Each time is measured from the reconnect (hand-over) or the kill (takeover) to the arrival
//! of the question the applicant was at, and the question is checked to be the same one.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::fixtures::Paths;
use crate::live::server::{
    SpawnSettings, SpawnedServer, create_interview, find_binary, random_secret,
};
use crate::output::{Machine, markdown_table, utc_now_rfc3339, write_summary};
use crate::stats::Dist;

/// Options of a failover run.
#[derive(Debug, Clone)]
pub struct FailoverOptions {
    /// Repetitions (each with two fresh servers).
    pub runs: usize,
    /// `NEXTMARK_LIVE_LEASE_SECS` of both servers.
    pub lease_secs: u64,
    /// The shared database (default: a SQLite file both open).
    pub database_url: Option<String>,
    /// The `nextmark` binary.
    pub nextmark: Option<PathBuf>,
}

/// One run's figures.
#[derive(Debug, Clone, Serialize)]
struct FailoverRun {
    run: usize,
    handover_s: f64,
    takeover_s: f64,
}

/// What `summary.json` holds.
#[derive(Debug, Serialize)]
struct FailoverSummary {
    started_at: String,
    machine: Machine,
    lease_secs: u64,
    database: String,
    runs: Vec<FailoverRun>,
    handover_s: Option<Dist>,
    takeover_s: Option<Dist>,
    definitions: [(&'static str, &'static str); 2],
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the interview socket, says hello (PCM, no spoken questions) and returns it with the
/// first question event.
async fn join(ws_url: &str, within: Duration) -> Result<(Socket, Value)> {
    let (mut socket, _) = tokio::time::timeout(within, tokio_tungstenite::connect_async(ws_url))
        .await
        .context("connecting timed out")?
        .with_context(|| format!("connecting to {ws_url}"))?;
    let hello = json!({"type": "hello", "protocol": 1, "speech": null,
        "audio": {"encoding": "pcm_s16le", "sample_rate": 16000, "channels": 1}});
    socket.send(Message::Text(hello.to_string().into())).await?;
    let question = next_question(&mut socket, within).await?;
    Ok((socket, question))
}

/// Reads events until a question arrives.
async fn next_question(socket: &mut Socket, within: Duration) -> Result<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let frame = tokio::time::timeout_at(deadline, socket.next())
            .await
            .context("no question in time")?;
        let Some(frame) = frame else {
            bail!("the socket closed before a question");
        };
        if let Message::Text(text) = frame? {
            let event: Value = serde_json::from_str(&text)?;
            match event["type"].as_str() {
                Some("question") => return Ok(event),
                Some("error") if event["fatal"] == true => bail!("fatal error: {event}"),
                _ => {}
            }
        }
    }
}

/// Types an answer that ends the turn and waits for the next question.
async fn answer(socket: &mut Socket, question: &Value) -> Result<Value> {
    let text = if question["id"] == "intro" {
        "Yes, I agree to be recorded, let's begin."
    } else {
        "I have worked in this field for twelve years and supervise junior colleagues."
    };
    socket
        .send(Message::Text(
            json!({"type": "text", "text": text}).to_string().into(),
        ))
        .await?;
    next_question(socket, Duration::from_secs(60)).await
}

fn ws_url(server: &SpawnedServer, demo_ws: &str) -> String {
    let path = demo_ws
        .find("/v1/")
        .map_or(demo_ws, |at| &demo_ws[at..])
        .to_string();
    format!("{}{path}", server.url.replace("http://", "ws://"))
}

/// Runs the failover measurement and writes `runs.jsonl`, `summary.json`, `summary.md`.
pub fn run(paths: &Paths, options: &FailoverOptions, out: &Path) -> Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(run_async(paths, options, out))
}

async fn run_async(paths: &Paths, options: &FailoverOptions, out: &Path) -> Result<()> {
    let binary = find_binary(options.nextmark.as_deref())?;
    let http = reqwest::Client::new();
    let shared = tempfile::Builder::new()
        .prefix("nextmark-bench-failover-")
        .tempdir()
        .context("creating a temporary folder")?;
    let database = options
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", shared.path().join("shared.db").display()));
    // Instances of one deployment share the signing secret (interview link tokens derive from it).
    let secret = random_secret();
    let mut runs = Vec::new();
    for run in 0..options.runs {
        let settings = |id: &str| SpawnSettings {
            model: paths.model_path().unwrap_or_default(),
            rubrics: paths.rubrics.clone(),
            max_sessions: 8,
            resume_window_secs: 120,
            max_items: Some(4),
            stt_url: None,
            database_url: Some(database.clone()),
            extra_env: vec![
                ("NEXTMARK_SECRET".into(), secret.clone()),
                ("NEXTMARK_LIVE_INSTANCE_ID".into(), format!("{id}-{run}")),
                (
                    "NEXTMARK_LIVE_LEASE_SECS".into(),
                    options.lease_secs.to_string(),
                ),
                (
                    "NEXTMARK_STORAGE_URL".into(),
                    format!("file://{}", shared.path().join("objects").display()),
                ),
            ],
        };
        let mut a =
            SpawnedServer::spawn(&binary, &settings("a"), &out.join(format!("a-{run}.log")))?;
        let mut b =
            SpawnedServer::spawn(&binary, &settings("b"), &out.join(format!("b-{run}.log")))?;
        a.wait_healthy(&http).await?;
        b.wait_healthy(&http).await?;

        // Started on A, one answer committed.
        let demo = create_interview(&http, &a.url, "medicine").await?;
        let (mut socket, intro) = join(&ws_url(&a, &demo.ws_url), Duration::from_secs(30)).await?;
        let current = answer(&mut socket, &intro).await?;
        // The connection drops; the applicant comes back through B while A lives.
        drop(socket);
        let asked = Instant::now();
        let (mut socket, again) = join(&ws_url(&b, &demo.ws_url), Duration::from_secs(60)).await?;
        let handover_s = asked.elapsed().as_secs_f64();
        if again["id"] != current["id"] {
            bail!(
                "hand-over resumed at {} instead of {}",
                again["id"],
                current["id"]
            );
        }
        let current = answer(&mut socket, &again).await?;
        // B dies; the applicant reconnects through A, which waits for B's lease to lapse.
        b.kill_9()?;
        let killed = Instant::now();
        drop(socket);
        let (_socket, again) = join(&ws_url(&a, &demo.ws_url), Duration::from_secs(120)).await?;
        let takeover_s = killed.elapsed().as_secs_f64();
        if again["id"] != current["id"] {
            bail!(
                "takeover resumed at {} instead of {}",
                again["id"],
                current["id"]
            );
        }
        eprintln!(
            "[failover] run {}: hand-over {handover_s:.2} s, takeover after kill -9 {takeover_s:.2} s",
            run + 1
        );
        runs.push(FailoverRun {
            run,
            handover_s,
            takeover_s,
        });
    }
    let handover: Vec<f64> = runs.iter().map(|r| r.handover_s).collect();
    let takeover: Vec<f64> = runs.iter().map(|r| r.takeover_s).collect();
    let summary = FailoverSummary {
        started_at: utc_now_rfc3339(),
        machine: Machine::detect(),
        lease_secs: options.lease_secs,
        database: if database.starts_with("sqlite:") {
            "sqlite (one file, two processes)".into()
        } else {
            "postgresql".into()
        },
        handover_s: Dist::of(&handover),
        takeover_s: Dist::of(&takeover),
        runs,
        definitions: [
            (
                "handover_s",
                "reconnect through instance B while A (the lease holder) lives → the current \
                 question arrives on B",
            ),
            (
                "takeover_s",
                "SIGKILL of the lease holder → the current question arrives on the other \
                 instance (the reconnect starts right after the kill)",
            ),
        ],
    };
    let mut rows = Vec::new();
    for (name, dist) in [
        ("hand-over (holder alive)", &summary.handover_s),
        ("takeover after kill -9", &summary.takeover_s),
    ] {
        if let Some(d) = dist {
            rows.push(vec![
                name.to_string(),
                d.n.to_string(),
                format!("{:.2}", d.p50),
                format!("{:.2}", d.max),
            ]);
        }
    }
    let markdown = format!(
        "# Failover ({} runs, lease {} s, {})\n\n{}\n\n{}\n",
        options.runs,
        options.lease_secs,
        summary.database,
        summary.machine.markdown(),
        markdown_table(&["case", "runs", "p50 s", "max s"], &rows)
    );
    let mut lines = String::new();
    for r in &summary.runs {
        lines.push_str(&serde_json::to_string(r)?);
        lines.push('\n');
    }
    std::fs::write(out.join("runs.jsonl"), lines).context("writing runs.jsonl")?;
    write_summary(out, &summary, &markdown)?;
    print!("{markdown}");
    Ok(())
}
