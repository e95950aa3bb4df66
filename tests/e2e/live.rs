//! Live interviews end to end: the real server (platform API + live routes) on port 0 over a
//! fresh SQLite database, real WebSocket clients (tokio-tungstenite) and a real webrtc-rs peer,
//! real whisper on speech synthesized by espeak-ng, real recordings.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use nextmark_engine::asr::pool::{PoolConfig, WorkerPool};
use nextmark_engine::asr::{Transcriber, WhisperModel};
use nextmark_engine::rubric::Rubric;
use nextmark_server::live::config::LiveSettings;
use nextmark_server::live::webrtc::test_client::WebRtcTestClient;
use nextmark_server::live::{self, LiveDependencies, LiveShared};
use nextmark_server::platform::config::Secret;
use nextmark_server::platform::objects::StorageSettings;
use nextmark_server::platform::{AppState, Dependencies, PlatformConfig};
use nextmark_server::tts::{Espeak, SpeechCache, SpeechEngine};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::{model_path, root};

/// One whisper pool for the whole test binary (loading it per test would waste seconds).
pub fn pool() -> Arc<WorkerPool> {
    static POOL: OnceLock<Arc<WorkerPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let model = WhisperModel::load(&model_path()).expect("load model");
        Arc::new(WorkerPool::start(&model, PoolConfig::for_cores(2)).expect("start pool"))
    })
    .clone()
}

/// Question audio rendered by one test is reused by the others through the disk cache.
fn speech_dir() -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("tempdir"))
        .path()
        .to_path_buf()
}

/// A running live server.
pub struct LiveApp {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// Shared live state (registry, metrics).
    pub live: Arc<LiveShared>,
    /// Platform state (store).
    pub state: AppState,
    /// Where recordings go.
    pub recordings: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    /// Keeps the database and recordings.
    pub dir: Arc<tempfile::TempDir>,
}

/// Starts a server over the database in `dir` (a new one when `None`).
pub async fn spawn_live(
    dir: Option<Arc<tempfile::TempDir>>,
    tweak: impl FnOnce(&mut LiveSettings),
) -> LiveApp {
    spawn_live_with(dir, LiveOptions::default(), tweak)
        .await
        .expect("build the live server")
}

/// What a test server may use instead of the defaults.
#[derive(Default)]
pub struct LiveOptions {
    /// The transcriber (default: the shared local whisper pool).
    pub transcriber: Option<Arc<dyn Transcriber>>,
    /// Object storage (default: a folder in the test's directory).
    pub storage: Option<StorageSettings>,
}

/// [`spawn_live`] with other parts; start-up errors are returned.
pub async fn spawn_live_with(
    dir: Option<Arc<tempfile::TempDir>>,
    options: LiveOptions,
    tweak: impl FnOnce(&mut LiveSettings),
) -> anyhow::Result<LiveApp> {
    crate::platform::init_logs();
    let dir = dir.unwrap_or_else(|| Arc::new(tempfile::tempdir().expect("tempdir")));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mut settings = LiveSettings {
        recordings_dir: dir.path().join("recordings"),
        tts_cache_dir: Some(speech_dir()),
        prerender_speech: false,
        interview_max_items: Some(2),
        ..LiveSettings::default()
    };
    tweak(&mut settings);
    let config = PlatformConfig {
        database_url: format!("sqlite://{}", dir.path().join("live.db").display()),
        public_url: format!("http://127.0.0.1:{port}"),
        rubrics_dir: root().join("rubrics"),
        secret: Some(Secret::new("live-test-secret-live-test-secret-0123")),
        live: settings.clone(),
        storage: options.storage.unwrap_or_else(|| StorageSettings {
            url: format!("file://{}", dir.path().join("objects").display()),
            ..StorageSettings::default()
        }),
        ..PlatformConfig::default()
    };
    let speech =
        Arc::new(SpeechCache::new(Arc::new(Espeak::default())).with_disk_dir(speech_dir()));
    let (app, shared) = live::build(
        config,
        listener,
        LiveDependencies {
            platform: Dependencies::default(),
            transcriber: options
                .transcriber
                .unwrap_or_else(|| pool() as Arc<dyn Transcriber>),
            speech,
            demo: true,
        },
    )
    .await?;
    let state = app.state().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runner = shared.clone();
    let server = tokio::spawn(async move {
        live::run(app, runner, async move {
            let _ = stopped.await;
        })
        .await
        .expect("server ran");
    });
    Ok(LiveApp {
        address: format!("http://127.0.0.1:{port}"),
        live: shared,
        state,
        recordings: settings.recordings_dir,
        stop: Some(stop),
        server: Some(server),
        dir,
    })
}

impl LiveApp {
    /// The interview's recordings as registered, read back from object storage:
    /// (stored location, decoded audio), oldest first.
    pub async fn recordings_of(
        &self,
        interview_id: &str,
    ) -> Vec<(String, nextmark_engine::audio::DecodedAudio)> {
        self.recordings_in(&self.state.store, interview_id).await
    }

    /// [`LiveApp::recordings_of`] once the server has stopped (its pool is closed): through a
    /// connection of its own to the same database.
    pub async fn recordings_after_stop(
        &self,
        interview_id: &str,
    ) -> Vec<(String, nextmark_engine::audio::DecodedAudio)> {
        let url = format!("sqlite://{}", self.dir.path().join("live.db").display());
        let store = nextmark_server::platform::Store::connect(&url, 1, None)
            .await
            .expect("reopen the database");
        let found = self.recordings_in(&store, interview_id).await;
        store.close().await;
        found
    }

    async fn recordings_in(
        &self,
        store: &nextmark_server::platform::Store,
        interview_id: &str,
    ) -> Vec<(String, nextmark_engine::audio::DecodedAudio)> {
        let rows = store
            .recordings_for_interview(interview_id)
            .await
            .expect("recording rows");
        let mut out = Vec::new();
        for row in rows {
            let bytes = self
                .state
                .objects
                .read_location(&row.path)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", row.path));
            let audio = nextmark_engine::audio::decode_bytes(
                bytes.to_vec(),
                Some("opus"),
                &row.path,
                Default::default(),
            )
            .unwrap_or_else(|e| panic!("{}: {e}", row.path));
            out.push((row.path, audio));
        }
        out
    }

    /// `POST /v1/demo/interviews`.
    pub async fn demo(&self, discipline: &str) -> Value {
        let reply = reqwest::Client::new()
            .post(format!("{}/v1/demo/interviews", self.address))
            .json(&json!({ "discipline": discipline }))
            .send()
            .await
            .expect("demo request");
        assert_eq!(reply.status(), 201);
        reply.json().await.expect("json")
    }

    /// Graceful shutdown (sessions finish their answers in flight).
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task");
        }
    }
}

type Sink = SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>;

/// A WebSocket interview client: sends JSON and PCM, collects events in the background.
pub struct WsClient {
    sink: Sink,
    events: mpsc::Receiver<Value>,
    /// Bytes of question audio received.
    pub audio_bytes: Arc<AtomicUsize>,
    /// Every event seen, in order.
    pub seen: Vec<Value>,
}

impl WsClient {
    /// Connects to `ws_url`.
    pub async fn connect(ws_url: &str) -> Self {
        let (socket, _) = tokio_tungstenite::connect_async(ws_url)
            .await
            .expect("connect the interview socket");
        let (sink, mut stream) = socket.split();
        let (tx, events) = mpsc::channel(1024);
        let audio_bytes = Arc::new(AtomicUsize::new(0));
        let counted = audio_bytes.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                match message {
                    Message::Text(text) => {
                        let value: Value = serde_json::from_str(&text).expect("event is JSON");
                        if tx.send(value).await.is_err() {
                            break;
                        }
                    }
                    Message::Binary(b) => {
                        counted.fetch_add(b.len(), Ordering::Relaxed);
                    }
                    Message::Close(_) => break,
                    _ => {}
                }
            }
        });
        WsClient {
            sink,
            events,
            audio_bytes,
            seen: Vec::new(),
        }
    }

    /// Sends a JSON message.
    pub async fn json(&mut self, value: Value) {
        self.sink
            .send(Message::Text(value.to_string().into()))
            .await
            .expect("send json");
    }

    /// Sends a JSON message, reporting rather than panicking when the server has closed.
    pub async fn try_json(&mut self, value: Value) -> Result<(), WsError> {
        self.sink
            .send(Message::Text(value.to_string().into()))
            .await
    }

    /// Sends raw bytes as one binary frame.
    pub async fn binary(&mut self, bytes: Vec<u8>) {
        self.sink
            .send(Message::Binary(bytes.into()))
            .await
            .expect("send binary");
    }

    /// Sends mono float samples as 16-bit PCM.
    pub async fn pcm(&mut self, samples: &[f32]) {
        self.binary(to_pcm(samples)).await;
    }

    /// Sends the standard hello for 16 kHz mono PCM; `speech` as given (absent when `None`).
    pub async fn hello_pcm(&mut self, speech: Option<Value>) {
        let mut hello = json!({"type": "hello", "protocol": 1,
            "audio": {"encoding": "pcm_s16le", "sample_rate": 16000, "channels": 1}});
        if let Some(s) = speech {
            hello["speech"] = s;
        }
        self.json(hello).await;
    }

    /// The next event, within `within`.
    pub async fn next(&mut self, within: Duration) -> Option<Value> {
        let event = tokio::time::timeout(within, self.events.recv())
            .await
            .ok()
            .flatten()?;
        self.seen.push(event.clone());
        Some(event)
    }

    /// Events already received, without waiting.
    pub fn drain(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            self.seen.push(e.clone());
            out.push(e);
        }
        out
    }

    /// Waits for an event of type `kind`, passing over others.
    pub async fn expect(&mut self, kind: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Some(e) if e["type"] == kind => return e,
                Some(_) => continue,
                None => panic!(
                    "no {kind:?} event within {within:?}; seen: {}",
                    serde_json::to_string(&self.seen).unwrap_or_default()
                ),
            }
        }
    }
}

/// Mono floats to 16-bit little-endian PCM.
pub fn to_pcm(samples: &[f32]) -> Vec<u8> {
    samples
        .iter()
        .flat_map(|s| ((s.clamp(-1.0, 1.0) * 32767.0) as i16).to_le_bytes())
        .collect()
}

/// `text` spoken by espeak-ng, at `rate`.
pub async fn voice(text: &str, rate: u32) -> Vec<f32> {
    let speech = Espeak::default()
        .synthesize(text)
        .await
        .expect("espeak-ng renders");
    speech.resampled(rate).expect("resample").samples.to_vec()
}

pub fn rubric(discipline: &str) -> Rubric {
    Rubric::load(&root().join(format!("rubrics/{discipline}.toml"))).expect("rubric")
}

/// What a knowledgeable applicant says to a question: consent, background, or the item's
/// key concepts, ending with the spoken end phrase.
pub fn answer_for(rubric: &Rubric, question_id: &str) -> String {
    match question_id {
        "intro" => "Yes, I agree to continue.".into(),
        "warmup" => "I have worked in this field for twelve years, mostly in a large teaching \
                     hospital, and I supervise junior colleagues. That's my answer."
            .into(),
        id => {
            let item_id = id
                .strip_prefix("probe:")
                .and_then(|rest| rest.rsplit_once(':').map(|(item, _)| item))
                .unwrap_or(id);
            let item = rubric.item(item_id).expect("question id names an item");
            let terms: Vec<String> = item
                .concepts
                .iter()
                .take(4)
                .map(|c| c.term.clone())
                .collect();
            format!(
                "The most important points are {}. I would explain each of them to the team. \
                 That's my answer.",
                terms.join(", then ")
            )
        }
    }
}

/// Whether a transcript of the synthesized consent ("Yes, I agree to continue.") came through:
/// tiny.en hears espeak-ng's voice imperfectly, so any of its key words will do.
fn sounds_like_consent(text: &str) -> bool {
    let t = text.to_lowercase();
    ["yes", "agree", "continu"].iter().any(|w| t.contains(w))
}

/// Streams `speech` at `speed`× real time in 100 ms frames, then silence, until a new
/// question or `completed` arrives; returns that event and how much of the speech had been
/// sent when it came.
pub async fn speak_until_next(
    client: &mut WsClient,
    speech: &[f32],
    speed: f64,
    within: Duration,
) -> (Value, f64) {
    const FRAME: usize = 1600;
    let silence = vec![0.0f32; FRAME];
    let started = Instant::now();
    let mut sent = 0usize;
    loop {
        let frame = if sent < speech.len() {
            let end = (sent + FRAME).min(speech.len());
            &speech[sent..end]
        } else {
            &silence[..]
        };
        let n = frame.len();
        client.pcm(frame).await;
        if sent < speech.len() {
            sent += n;
        }
        tokio::time::sleep(Duration::from_secs_f64(0.1 / speed)).await;
        // One event at a time, so that those after the next question (the `completed` right
        // behind the closing one) stay queued for the caller.
        while let Some(event) = client.next(Duration::ZERO).await {
            if event["type"] == "question" || event["type"] == "completed" {
                return (event, sent as f64 / speech.len().max(1) as f64);
            }
            if event["type"] == "error" && event["fatal"] == true {
                panic!("fatal error: {event}");
            }
        }
        assert!(
            started.elapsed() < within,
            "no next question within {within:?}; seen: {}",
            serde_json::to_string(&client.seen).unwrap_or_default()
        );
    }
}

/// Answers every question until `completed`; returns the question ids asked.
pub async fn run_interview_ws(
    client: &mut WsClient,
    rubric: &Rubric,
    speed: f64,
) -> (Vec<String>, Value) {
    let mut asked = Vec::new();
    let mut event = client.expect("question", Duration::from_secs(30)).await;
    loop {
        match event["type"].as_str() {
            Some("question") => {
                let id = event["id"].as_str().expect("question id").to_string();
                if id != "closing"
                    && let Some(audio) = event.get("audio").filter(|a| !a.is_null())
                {
                    // The question's audio follows as binary frames; tell the server it played.
                    assert_eq!(audio["encoding"], "pcm_s16le");
                    client.json(json!({"type": "playback_ended"})).await;
                }
                asked.push(id.clone());
                if id == "closing" {
                    event = client.expect("completed", Duration::from_secs(30)).await;
                    continue;
                }
                let speech = voice(&answer_for(rubric, &id), 16_000).await;
                let (next, sent) =
                    speak_until_next(client, &speech, speed, Duration::from_secs(120)).await;
                assert!(
                    sent >= 0.999,
                    "the server moved on after {:.0}% of the answer to {id}: a cut-in",
                    sent * 100.0
                );
                event = next;
            }
            Some("completed") => return (asked, event),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_interview_over_websocket_ends_in_a_stored_report() {
    let mut app = spawn_live(None, |_| {}).await;
    let demo = app.demo("medicine").await;
    let ws_url = demo["ws_url"].as_str().expect("ws_url");
    let mut client = WsClient::connect(ws_url).await;
    client.hello_pcm(None).await;
    let ready = client.expect("ready", Duration::from_secs(10)).await;
    assert_eq!(ready["resumed"], false);
    let rubric = rubric("medicine");
    let (asked, completed) = run_interview_ws(&mut client, &rubric, 3.0).await;
    assert_eq!(asked.first().map(String::as_str), Some("intro"));
    assert!(asked.contains(&"warmup".to_string()), "{asked:?}");
    assert!(
        asked.iter().any(|id| rubric.item(id).is_some()),
        "rubric items were asked: {asked:?}"
    );
    assert!(
        client.audio_bytes.load(Ordering::Relaxed) > 16_000,
        "question audio was sent"
    );
    let finals: Vec<&Value> = client
        .seen
        .iter()
        .filter(|e| e["type"] == "transcript" && e["final"] == true)
        .collect();
    assert!(!finals.is_empty(), "final captions were sent");
    let heard: String = finals
        .iter()
        .filter_map(|e| e["text"].as_str())
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    assert!(
        sounds_like_consent(&heard),
        "consent was transcribed: {heard}"
    );

    // The report is stored and served.
    let report_url = completed["report_url"].as_str().expect("report_url");
    let report: Value = reqwest::get(report_url)
        .await
        .expect("report")
        .json()
        .await
        .expect("report json");
    assert!(
        report["items"].as_array().is_some_and(|i| !i.is_empty()),
        "report has scored items: {report}"
    );
    let html = reqwest::get(format!("{report_url}.html"))
        .await
        .expect("html")
        .text()
        .await
        .expect("text");
    assert!(
        html.contains("<svg") || html.contains("<html"),
        "report page renders"
    );
    let interview_id = demo["interview_id"].as_str().expect("id");
    let stored = app
        .state
        .store
        .get_interview(interview_id)
        .await
        .expect("interview");
    assert!(stored.report.is_some() && stored.completed_at.is_some());
    let answers = app
        .state
        .store
        .answers(interview_id)
        .await
        .expect("answers");
    assert!(
        answers.len() >= asked.len() - 1,
        "every answer was committed: asked {asked:?}, committed {:?}",
        answers
            .iter()
            .map(|a| (&a.item_id, &a.text))
            .collect::<Vec<_>>()
    );
    assert!(answers.iter().any(|a| sounds_like_consent(&a.text)));
    // Both recordings are registered, moved to object storage (nothing left in the local
    // spool) and are Ogg Opus holding the interview.
    let recordings = app.recordings_of(interview_id).await;
    assert_eq!(recordings.len(), 2, "applicant and interviewer tracks");
    for (location, audio) in &recordings {
        assert!(
            location.starts_with(&format!("recordings/{interview_id}/")),
            "an object key: {location}"
        );
        assert!(audio.duration_s() > 5.0, "{location} holds the interview");
    }
    assert!(
        !app.recordings.join(interview_id).exists(),
        "the spool folder is emptied once the files are stored"
    );
    // The report is archived beside them.
    let archived = app
        .state
        .objects
        .get(&format!("reports/{interview_id}/report.json"))
        .await
        .expect("archived report");
    let archived: Value = serde_json::from_slice(&archived).expect("report json");
    assert_eq!(archived["items"], report["items"]);
    // Metrics saw the turns.
    let metrics = reqwest::get(format!("{}/metrics", app.address))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("nextmark_sessions_completed_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("nextmark_stage_seconds_count{stage=\"final_transcription\"}"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_resumes_at_the_current_question() {
    let mut app = spawn_live(None, |_| {}).await;
    let demo = app.demo("law").await;
    let ws_url = demo["ws_url"].as_str().expect("ws_url").to_string();
    let rubric = rubric("law");
    let mut client = WsClient::connect(&ws_url).await;
    client.hello_pcm(Some(Value::Null)).await;
    let intro = client.expect("question", Duration::from_secs(10)).await;
    assert_eq!(intro["id"], "intro");
    let consent = voice(&answer_for(&rubric, "intro"), 16_000).await;
    let (warmup, _) = speak_until_next(&mut client, &consent, 3.0, Duration::from_secs(60)).await;
    assert_eq!(warmup["id"], "warmup");
    // The network drops: no goodbye.
    drop(client);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut back = WsClient::connect(&ws_url).await;
    back.hello_pcm(Some(Value::Null)).await;
    let ready = back.expect("ready", Duration::from_secs(10)).await;
    assert_eq!(ready["resumed"], true, "{ready}");
    let again = back.expect("question", Duration::from_secs(10)).await;
    assert_eq!(again["id"], "warmup", "continues at the current question");
    assert_eq!(
        app.live.session_count(),
        1,
        "the same session took the connection back"
    );
    assert_eq!(again["again"], true);
    let answers = app
        .state
        .store
        .answers(demo["interview_id"].as_str().expect("id"))
        .await
        .expect("answers");
    assert_eq!(
        answers.len(),
        1,
        "the consent answer was committed before the drop"
    );
    let background = voice(&answer_for(&rubric, "warmup"), 16_000).await;
    let (next, _) = speak_until_next(&mut back, &background, 3.0, Duration::from_secs(60)).await;
    assert_eq!(next["type"], "question");
    assert!(
        rubric.item(next["id"].as_str().unwrap_or("")).is_some(),
        "{next}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interview_resumes_after_a_server_restart_from_what_was_committed() {
    let mut first = spawn_live(None, |_| {}).await;
    let demo = first.demo("engineering").await;
    let ws_url = demo["ws_url"].as_str().expect("ws_url").to_string();
    let rubric = rubric("engineering");
    let mut client = WsClient::connect(&ws_url).await;
    client.hello_pcm(Some(Value::Null)).await;
    client.expect("question", Duration::from_secs(10)).await;
    let consent = voice(&answer_for(&rubric, "intro"), 16_000).await;
    let (warmup, _) = speak_until_next(&mut client, &consent, 3.0, Duration::from_secs(60)).await;
    assert_eq!(warmup["id"], "warmup");
    // The applicant is still talking when the server is told to stop.
    let background = voice(
        "I have worked in this field for twelve years, mostly on bridges and tunnels, and",
        16_000,
    )
    .await;
    for chunk in background.chunks(1600) {
        client.pcm(chunk).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    // Graceful shutdown: the answer in flight is finished and committed, the client is told,
    // the interview stays resumable.
    let dir = first.dir.clone();
    first.stop().await;
    let bye = loop {
        let e = client.expect("error", Duration::from_secs(10)).await;
        if e["code"] != "rate_mismatch" {
            break e;
        }
    };
    assert_eq!(bye["code"], "server_shutdown");
    assert_eq!(bye["fatal"], true);

    let mut second = spawn_live(Some(dir), |_| {}).await;
    let answers = second
        .state
        .store
        .answers(demo["interview_id"].as_str().expect("id"))
        .await
        .expect("answers");
    assert_eq!(
        answers.len(),
        2,
        "consent and the answer in flight: {answers:?}"
    );
    assert_eq!(answers[1].item_id, "warmup");
    // Whisper may mishear a word or two of synthetic speech ("on-ridges"); most of the
    // content words must be there, which a truncated or lost answer would not give.
    let text = answers[1].text.to_lowercase();
    let heard = ["worked", "field", "years", "bridges", "tunnels"]
        .iter()
        .filter(|word| text.contains(*word))
        .count();
    assert!(heard >= 4, "{heard} of 5 content words in {answers:?}");
    // Same database, same link, new process.
    let ws_url = ws_url.replace(
        &first.address.replace("http://", "ws://"),
        &second.address.replace("http://", "ws://"),
    );
    let mut back = WsClient::connect(&ws_url).await;
    back.hello_pcm(Some(Value::Null)).await;
    let ready = back.expect("ready", Duration::from_secs(10)).await;
    assert_eq!(ready["resumed"], true);
    let again = back.expect("question", Duration::from_secs(10)).await;
    assert!(
        rubric.item(again["id"].as_str().unwrap_or("")).is_some(),
        "rebuilt from the committed answers, it continues after the warm-up: {again}"
    );
    second.stop().await;
    // Each run kept its own recordings: the second did not overwrite the first.
    let recordings = second
        .recordings_after_stop(demo["interview_id"].as_str().expect("id"))
        .await;
    let locations: std::collections::BTreeSet<&str> =
        recordings.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(locations.len(), 4, "two tracks per run: {locations:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_holds_the_turn_open_until_the_typed_answer_arrives() {
    let mut app = spawn_live(None, |_| {}).await;
    let demo = app.demo("law").await;
    let mut client = WsClient::connect(demo["ws_url"].as_str().expect("ws_url")).await;
    client.hello_pcm(Some(Value::Null)).await;
    assert_eq!(
        client.expect("question", Duration::from_secs(10)).await["id"],
        "intro"
    );
    // 16 s of microphone silence (past the 12 s no-answer time) while typing, at 4× pace.
    let silence = vec![0.0f32; 1600];
    for frame in 0..160 {
        client.pcm(&silence).await;
        if frame % 20 == 0 {
            client.json(json!({"type": "typing"})).await;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        assert!(
            !client.drain().iter().any(|e| e["type"] == "question"),
            "the server moved on while the applicant was typing"
        );
    }
    client
        .json(json!({"type": "text", "text": "Yes, I agree to continue."}))
        .await;
    assert_eq!(
        client.expect("question", Duration::from_secs(10)).await["id"],
        "warmup"
    );
    let answers = app
        .state
        .store
        .answers(demo["interview_id"].as_str().expect("id"))
        .await
        .expect("answers");
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].text, "Yes, I agree to continue.");
    assert_eq!(answers[0].scores["event"]["typed"], true);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn talking_over_the_question_stops_it_and_listens() {
    let mut app = spawn_live(None, |_| {}).await;
    let demo = app.demo("medicine").await;
    let mut client = WsClient::connect(demo["ws_url"].as_str().expect("ws_url")).await;
    client.hello_pcm(Some(json!({"sample_rate": 16000}))).await;
    let intro = client.expect("question", Duration::from_secs(10)).await;
    let duration = intro["audio"]["duration_s"]
        .as_f64()
        .expect("question audio");
    assert!(duration > 3.0);
    client.expect("state", Duration::from_secs(5)).await;
    // Start answering at once, at real-time pace, while the intro would still be playing.
    let consent = voice("Yes, yes, I agree to continue with the interview.", 16_000).await;
    let mut stopped = false;
    for chunk in consent.chunks(1600) {
        client.pcm(chunk).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        if client.drain().iter().any(|e| e["type"] == "stop_audio") {
            stopped = true;
            break;
        }
    }
    if !stopped {
        client.expect("stop_audio", Duration::from_secs(5)).await;
    }
    let listening = client
        .seen
        .iter()
        .rev()
        .any(|e| e["type"] == "state" && e["state"] == "listening");
    let listening = listening || {
        let e = client.expect("state", Duration::from_secs(5)).await;
        e["state"] == "listening"
    };
    assert!(listening, "barge-in switches to listening");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thinking_pause_mid_sentence_is_never_cut() {
    let mut app = spawn_live(None, |_| {}).await;
    let demo = app.demo("medicine").await;
    let mut client = WsClient::connect(demo["ws_url"].as_str().expect("ws_url")).await;
    client.hello_pcm(Some(Value::Null)).await;
    client.expect("question", Duration::from_secs(10)).await;
    // "I agree, and I would like to" … 3.5 s of thinking … "ask one question first."
    let mut speech = voice("Yes, I agree, and before we start I would like to", 16_000).await;
    speech.extend(std::iter::repeat_n(0.0, 16_000 * 7 / 2));
    speech.extend(voice("check how long the interview takes.", 16_000).await);
    let (next, sent) = speak_until_next(&mut client, &speech, 2.0, Duration::from_secs(90)).await;
    assert_eq!(next["type"], "question");
    assert!(
        sent >= 0.999,
        "cut in after {:.0}% of the answer",
        sent * 100.0
    );
    app.stop().await;
}

/// A recorded fixture answer, mono 16 kHz, its listed mid-sentence pauses (start, end) and the
/// end of its last word (seconds).
fn fixture_answer(file: &str) -> (Vec<f32>, Vec<(f64, f64)>, f64) {
    let audio = nextmark_engine::audio::decode_file(
        &crate::helpers::fixtures_dir().join(file),
        Default::default(),
    )
    .unwrap_or_else(|e| panic!("{file}: {e}"));
    let mut resampler =
        nextmark_engine::audio::StreamResampler::new(audio.sample_rate).expect("resampler");
    let mut samples = Vec::new();
    resampler
        .push(&audio.samples, &mut samples)
        .expect("resample");
    resampler.flush(&mut samples).expect("flush");
    let manifest = crate::helpers::manifest();
    let clip = manifest["clips"]
        .as_array()
        .and_then(|clips| clips.iter().find(|c| c["file"] == file))
        .unwrap_or_else(|| panic!("{file} is not in the manifest"));
    let pauses = clip["pauses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["kind"] == "mid_sentence")
        .map(|p| {
            (
                p["start_s"].as_f64().expect("start"),
                p["end_s"].as_f64().expect("end"),
            )
        })
        .collect();
    let last_voiced_s = clip["last_voiced_s"].as_f64().expect("last_voiced_s");
    (samples, pauses, last_voiced_s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_answers_with_thinking_pauses_are_never_cut() {
    // Real-time pace: the pauses must be lived through as the applicant would.
    let mut app = spawn_live(None, |_| {}).await;
    let demo = app.demo("medicine").await;
    let rubric = rubric("medicine");
    let mut client = WsClient::connect(demo["ws_url"].as_str().expect("ws_url")).await;
    client.hello_pcm(Some(Value::Null)).await;
    client.expect("question", Duration::from_secs(10)).await;
    let consent = voice(&answer_for(&rubric, "intro"), 16_000).await;
    let (mut question, _) =
        speak_until_next(&mut client, &consent, 3.0, Duration::from_secs(60)).await;
    // An early pause (4.0–6.4 s of a 14 s answer) to the open warm-up question, then a long
    // answer with two pauses (3.2 s and 2.6 s) to the first rubric item.
    for file in [
        "med-sepsis-first-hour.weak.piper.8k.wav",
        "med-chest-pain-ed.strong.piper.16k.wav",
    ] {
        assert_eq!(question["type"], "question", "{question}");
        let (speech, pauses, last_voiced_s) = fixture_answer(file);
        assert!(!pauses.is_empty(), "{file} lists its pauses");
        let (next, sent) =
            speak_until_next(&mut client, &speech, 1.0, Duration::from_secs(120)).await;
        let at_s = sent * speech.len() as f64 / 16_000.0;
        // Moving on in the recording's trailing silence, after the last word, is the point of
        // fast turn-taking; before it (in a pause, or mid-word) is a cut-in.
        assert!(
            at_s >= last_voiced_s,
            "{file} answering {}: the server moved on at {at_s:.2} s of the answer, before its \
             last word ended at {last_voiced_s:.2} s (pauses {pauses:?})",
            question["id"]
        );
        question = next;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_error_events_and_other_sessions_carry_on() {
    let mut app = spawn_live(None, |s| s.max_frame_bytes = 64 * 1024).await;
    let good = app.demo("finance").await;
    let bad = app.demo("finance").await;
    let mut healthy = WsClient::connect(good["ws_url"].as_str().expect("url")).await;
    healthy.hello_pcm(Some(Value::Null)).await;
    healthy.expect("question", Duration::from_secs(10)).await;

    let mut client = WsClient::connect(bad["ws_url"].as_str().expect("url")).await;
    // Audio before hello.
    client.pcm(&[0.0; 320]).await;
    let e = client.expect("error", Duration::from_secs(5)).await;
    assert_eq!(e["code"], "hello_required");
    // Malformed JSON, an unknown type, a bad audio format: errors, the socket stays.
    client.binary(Vec::new()).await;
    client
        .sink
        .send(Message::Text("{not json".into()))
        .await
        .expect("send");
    assert_eq!(
        client.expect("error", Duration::from_secs(5)).await["code"],
        "hello_required"
    );
    assert_eq!(
        client.expect("error", Duration::from_secs(5)).await["code"],
        "bad_json"
    );
    client.json(json!({"type": "dance"})).await;
    assert_eq!(
        client.expect("error", Duration::from_secs(5)).await["code"],
        "unknown_type"
    );
    client
        .json(json!({"type": "hello", "protocol": 1,
            "audio": {"encoding": "pcm_s16le", "sample_rate": 1000, "channels": 1}}))
        .await;
    let e = client.expect("error", Duration::from_secs(5)).await;
    assert_eq!(e["code"], "bad_audio_format");
    assert_eq!(e["fatal"], false);
    // Now a valid hello: the session starts.
    client.hello_pcm(Some(Value::Null)).await;
    client.expect("question", Duration::from_secs(10)).await;
    // An oversized frame and an odd-length PCM frame: errors, the session survives.
    client.binary(vec![0u8; 100 * 1024]).await;
    assert_eq!(
        client.expect("error", Duration::from_secs(5)).await["code"],
        "frame_too_large"
    );
    client.binary(vec![0u8; 3]).await;
    assert_eq!(
        client.expect("error", Duration::from_secs(5)).await["code"],
        "bad_audio"
    );
    client.json(json!({"type": "ping", "nonce": 7})).await;
    assert_eq!(
        client.expect("pong", Duration::from_secs(5)).await["nonce"],
        7
    );
    // A sample rate that lies: 48 kHz audio declared as 8 kHz arrives 6× too fast.
    let mut liar =
        WsClient::connect(app.demo("finance").await["ws_url"].as_str().expect("url")).await;
    liar.json(json!({"type": "hello", "protocol": 1,
        "audio": {"encoding": "pcm_s16le", "sample_rate": 8000, "channels": 1}, "speech": null}))
        .await;
    liar.expect("question", Duration::from_secs(10)).await;
    let started = Instant::now();
    let mut warned = false;
    while started.elapsed() < Duration::from_secs(8) && !warned {
        liar.pcm(&vec![0.0; 4800]).await; // 100 ms at 48 kHz = 0.6 s at 8 kHz
        tokio::time::sleep(Duration::from_millis(100)).await;
        warned = liar.drain().iter().any(|e| e["code"] == "rate_mismatch");
    }
    assert!(warned, "the lying rate was detected: {:?}", liar.seen);

    // The healthy session still answers.
    healthy.json(json!({"type": "ping", "nonce": 1})).await;
    assert_eq!(
        healthy.expect("pong", Duration::from_secs(5)).await["nonce"],
        1
    );
    let consent = voice("Yes, I agree to continue.", 16_000).await;
    let (next, _) = speak_until_next(&mut healthy, &consent, 3.0, Duration::from_secs(60)).await;
    assert_eq!(next["id"], "warmup");

    // A wrong protocol version is fatal for that connection only.
    let mut old = WsClient::connect(bad["ws_url"].as_str().expect("url")).await;
    old.json(json!({"type": "hello", "protocol": 99,
        "audio": {"encoding": "pcm_s16le", "sample_rate": 16000}}))
        .await;
    let e = old.expect("error", Duration::from_secs(5)).await;
    assert_eq!(e["code"], "unsupported_protocol");
    assert_eq!(e["fatal"], true);

    // Unknown links and plain HTTP on the socket URL are clear 4xx answers.
    let r = reqwest::get(format!("{}/v1/interview-links/nope/live", app.address))
        .await
        .expect("get");
    assert_eq!(r.status(), 404);
    let url = good["ws_url"]
        .as_str()
        .expect("url")
        .replace("ws://", "http://");
    let r = reqwest::get(url).await.expect("get");
    assert_eq!(r.status(), 400);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_interviews_reject_unknown_disciplines() {
    let mut app = spawn_live(None, |_| {}).await;
    let r = reqwest::Client::new()
        .post(format!("{}/v1/demo/interviews", app.address))
        .json(&json!({"discipline": "astrology"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.expect("json");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("medicine")
    );
    app.stop().await;
}

/// The HTTP status that refused a WebSocket handshake to `url` (panics if it was accepted).
async fn refused_status(url: &str) -> u16 {
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("{url}: not an HTTP refusal: {e}"),
        Ok(_) => panic!("{url}: the handshake was accepted"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_socket_admits_only_a_valid_link_to_its_own_interview() {
    let mut app = spawn_live(None, |_| {}).await;
    let a = app.demo("law").await;
    let b = app.demo("law").await;
    let ws = |token: &str| {
        format!(
            "{}/v1/interview-links/{token}/live",
            app.address.replace("http://", "ws://")
        )
    };
    // A link joins its own interview and no other: the token is the only credential and it
    // names the interview (WebRTC is signalled on this socket, so it inherits the check).
    for demo in [&a, &b] {
        let mut client = WsClient::connect(demo["ws_url"].as_str().expect("url")).await;
        client.hello_pcm(Some(Value::Null)).await;
        let ready = client.expect("ready", Duration::from_secs(10)).await;
        assert_eq!(ready["interview_id"], demo["interview_id"]);
        client.json(json!({"type": "bye"})).await;
    }
    // Unknown, truncated and over-long tokens are refused before the upgrade.
    let a_token = a["ws_url"]
        .as_str()
        .and_then(|u| u.split("/interview-links/").nth(1))
        .and_then(|rest| rest.split('/').next())
        .expect("token")
        .to_string();
    assert_eq!(refused_status(&ws("not-a-link")).await, 404);
    assert_eq!(
        refused_status(&ws(&a_token[..a_token.len() - 1])).await,
        404
    );
    assert_eq!(refused_status(&ws(&"x".repeat(300))).await, 404);
    // Guessing is limited: after 100 invalid links in an hour this address is refused, even
    // with a valid link, until the hour has passed.
    for n in 3..100 {
        assert_eq!(refused_status(&ws(&format!("guess-{n}"))).await, 404);
    }
    assert_eq!(refused_status(&ws(&a_token)).await, 429);
    app.stop().await;
}

/// Opens a WebSocket to `url` from the local address `from` (127.0.0.x).
async fn connect_from(
    from: [u8; 4],
    url: &str,
) -> Result<WebSocketStream<MaybeTlsStream<TcpStream>>, tokio_tungstenite::tungstenite::Error> {
    let authority = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .expect("host:port");
    let server: std::net::SocketAddr = authority.parse().expect("an IP address");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind((std::net::Ipv4Addr::from(from), 0).into())
        .expect("bind a loopback address");
    let stream = socket.connect(server).await.expect("connect");
    tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
        .await
        .map(|(ws, _)| ws)
}

/// The status of a refused handshake.
fn refusal(result: Result<impl Sized, tokio_tungstenite::tungstenite::Error>) -> u16 {
    match result {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("not an HTTP refusal: {e}"),
        Ok(_) => panic!("the handshake was accepted"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_sockets_do_not_starve_a_live_interview() {
    let mut app = spawn_live(None, |s| s.max_sockets_per_client = 2_000).await;
    let live_demo = app.demo("law").await;
    let idle_demo = app.demo("law").await;
    let idle_url = idle_demo["ws_url"].as_str().expect("url").to_string();
    let mut client = WsClient::connect(live_demo["ws_url"].as_str().expect("url")).await;
    client.hello_pcm(Some(Value::Null)).await;
    let mut question = client.expect("question", Duration::from_secs(10)).await;

    // 1,000 sockets open and say nothing.
    let mut idle = Vec::new();
    for _ in 0..10 {
        let batch = futures_util::future::join_all(
            (0..100).map(|_| tokio_tungstenite::connect_async(idle_url.as_str())),
        )
        .await;
        for opened in batch {
            idle.push(opened.expect("an idle socket opens").0);
        }
    }
    assert!(
        app.live.socket_count() >= 1_001,
        "{}",
        app.live.socket_count()
    );

    // The interview goes on: each typed answer brings the next question.
    for n in 0..3 {
        let text = if question["id"] == "intro" {
            "Yes, I agree, let's begin.".to_string()
        } else {
            format!("Answer {n}: I would check the facts, weigh the risks and document it.")
        };
        client.json(json!({"type": "text", "text": text})).await;
        question = client.expect("question", Duration::from_secs(20)).await;
    }
    // The handshake timeout closes every idle socket, each told why.
    let deadline = Instant::now() + Duration::from_secs(40);
    while app.live.socket_count() > 1 {
        assert!(
            Instant::now() < deadline,
            "{} sockets still open",
            app.live.socket_count()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut told = 0;
    for mut socket in idle.drain(..).take(20) {
        while let Ok(Some(Ok(message))) =
            tokio::time::timeout(Duration::from_secs(5), socket.next()).await
        {
            if let Message::Text(text) = message
                && text.contains("hello_timeout")
            {
                told += 1;
            }
        }
    }
    assert_eq!(told, 20, "idle sockets are told hello_timeout");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_limits_refuse_per_address_and_in_all_and_floods_are_closed() {
    let mut app = spawn_live(None, |s| {
        s.max_sockets = 5;
        s.max_sockets_per_client = 3;
    })
    .await;
    let demo = app.demo("law").await;
    let url = demo["ws_url"].as_str().expect("url").to_string();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(
            connect_from([127, 0, 0, 1], &url)
                .await
                .expect("within the limit"),
        );
    }
    assert_eq!(refusal(connect_from([127, 0, 0, 1], &url).await), 429);
    // Another address still gets in, up to the server's total.
    for _ in 0..2 {
        held.push(
            connect_from([127, 0, 0, 2], &url)
                .await
                .expect("another address"),
        );
    }
    assert_eq!(refusal(connect_from([127, 0, 0, 3], &url).await), 503);
    // Closing one frees a place.
    let mut first = held.remove(0);
    first.close(None).await.expect("close");
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.live.socket_count() > 4 {
        assert!(
            Instant::now() < deadline,
            "the closed socket is still counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    held.push(
        connect_from([127, 0, 0, 1], &url)
            .await
            .expect("a freed place"),
    );
    drop(held);

    // A flood of messages gets an error and a close.
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.live.socket_count() > 0 {
        assert!(Instant::now() < deadline, "sockets did not close");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut flooder = WsClient::connect(&url).await;
    flooder.hello_pcm(Some(Value::Null)).await;
    flooder.expect("question", Duration::from_secs(10)).await;
    // The server may close mid-flood; the sends after that fail, which is the point.
    for n in 0..500 {
        if flooder
            .try_json(json!({"type": "ping", "nonce": n}))
            .await
            .is_err()
        {
            break;
        }
    }
    let e = flooder.expect("error", Duration::from_secs(10)).await;
    assert_eq!(e["code"], "message_flood", "{e}");
    assert_eq!(e["fatal"], true);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_interview_over_webrtc_hears_opus_audio_and_speaks_back() {
    let mut app = spawn_live(None, |_| {}).await;
    let demo = app.demo("medicine").await;
    let rubric = rubric("medicine");
    let mut ws = WsClient::connect(demo["ws_url"].as_str().expect("url")).await;
    ws.json(json!({"type": "hello", "protocol": 1, "audio": {"encoding": "webrtc"}}))
        .await;
    ws.expect("ready", Duration::from_secs(10)).await;
    let (mut peer, offer) = WebRtcTestClient::new("127.0.0.1".parse().expect("ip"))
        .await
        .expect("client peer");
    ws.json(json!({"type": "offer", "sdp": offer})).await;
    let answer = ws.expect("answer", Duration::from_secs(10)).await;
    peer.set_answer(answer["sdp"].as_str().expect("sdp"))
        .await
        .expect("set answer");
    let mut candidates = peer.take_candidates().expect("candidates");
    let mut heard = peer.take_audio().expect("audio");
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut intro = None;
    // Trickle ICE both ways until the first question arrives (it waits for the call).
    while intro.is_none() {
        assert!(
            Instant::now() < deadline,
            "WebRTC did not connect: {:?}",
            ws.seen
        );
        while let Ok(c) = candidates.try_recv() {
            ws.json(json!({"type": "candidate", "candidate": c})).await;
        }
        for e in ws.drain() {
            match e["type"].as_str() {
                Some("candidate") => peer
                    .add_remote_candidate(e["candidate"].clone())
                    .await
                    .expect("add candidate"),
                Some("question") => intro = Some(e),
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The question is heard over the track.
    let mut voiced = 0usize;
    let until = Instant::now() + Duration::from_secs(10);
    while voiced < 48_000 && Instant::now() < until {
        if let Ok(Some(samples)) =
            tokio::time::timeout(Duration::from_millis(200), heard.recv()).await
        {
            voiced += samples.iter().filter(|s| s.abs() > 0.01).count();
        }
    }
    assert!(
        voiced >= 48_000,
        "the interviewer's voice arrived over WebRTC"
    );
    ws.json(json!({"type": "playback_ended"})).await;

    // Answer every question over the microphone track, paced in real time, until the
    // interview completes.
    let mut id = "intro".to_string();
    let mut asked = vec![id.clone()];
    let mut completed = None;
    let completed = loop {
        if let Some(done) = completed.take() {
            break done;
        }
        if id == "closing" {
            break ws.expect("completed", Duration::from_secs(30)).await;
        }
        let speech = voice(&answer_for(&rubric, &id), 48_000).await;
        peer.send_pcm_realtime(&speech).await.expect("send audio");
        let deadline = Instant::now() + Duration::from_secs(30);
        let next = loop {
            assert!(Instant::now() < deadline, "no next question: {:?}", ws.seen);
            peer.send_pcm_realtime(&vec![0.0; 9_600])
                .await
                .expect("silence");
            let events = ws.drain();
            completed = events.iter().find(|e| e["type"] == "completed").cloned();
            if let Some(e) = events
                .into_iter()
                .find(|e| e["type"] == "question" || e["type"] == "completed")
            {
                break e;
            }
        };
        if next["type"] == "completed" {
            break next;
        }
        id = next["id"].as_str().expect("id").to_string();
        asked.push(id.clone());
        if id != "closing" {
            ws.json(json!({"type": "playback_ended"})).await;
        }
    };
    assert!(
        asked.iter().filter(|id| rubric.item(id).is_some()).count() >= 2,
        "rubric items were asked: {asked:?}"
    );
    let finals = ws
        .seen
        .iter()
        .filter(|e| e["type"] == "transcript" && e["final"] == true)
        .count();
    assert!(finals >= 4, "final captions came for the answers");
    let answers = app
        .state
        .store
        .answers(demo["interview_id"].as_str().expect("id"))
        .await
        .expect("answers");
    assert_eq!(
        answers
            .iter()
            .map(|a| a.item_id.as_str())
            .collect::<Vec<_>>(),
        asked
            .iter()
            .filter(|id| *id != "closing")
            .map(String::as_str)
            .collect::<Vec<_>>(),
        "every answer was committed, in order"
    );
    assert!(sounds_like_consent(&answers[0].text), "{answers:?}");
    // The report is stored and served, with the items answered over the call scored.
    let report_url = completed["report_url"].as_str().expect("report_url");
    let report: Value = reqwest::get(report_url)
        .await
        .expect("report")
        .json()
        .await
        .expect("report json");
    assert!(
        report["items"].as_array().is_some_and(|i| i.len() >= 2),
        "report has the scored items: {report}"
    );
    let interview_id = demo["interview_id"].as_str().expect("id");
    let recordings = app.recordings_of(interview_id).await;
    assert_eq!(recordings.len(), 2);
    for (location, audio) in recordings {
        assert!(audio.duration_s() > 10.0, "{location} holds the interview");
    }
    peer.close().await;
    app.stop().await;
}
