//! The live interview server: transports (WebSocket, WebRTC signalled over it), one session
//! task per interview, the registry that lets a dropped applicant come back, speech synthesis,
//! recording, metrics, demo interviews, and graceful shutdown.

pub mod config;
pub mod protocol;
pub mod recording;
pub mod session;
pub mod webrtc;
pub mod ws;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use axum::{Json, Router};
use nextmark_engine::asr::Transcriber;
use nextmark_engine::report::{Report, render_html};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::config::LiveSettings;
use self::protocol::{AudioFormat, SpeechFormat};
use self::session::{Inbound, Outbound, SessionSeed, run_session};
use self::webrtc::WebRtcConfig;
use crate::metrics::Metrics;
use crate::platform::error::ApiError;
use crate::platform::store::{Interview as StoredInterview, InterviewStatus};
use crate::platform::{AppState, Application, Dependencies, PlatformConfig};
use crate::tts::SpeechCache;

/// Everything sessions share: the platform state, the transcriber, the voice, metrics, and the
/// registry of live sessions.
pub struct LiveShared {
    /// Platform state (store, clock, rubrics, configuration).
    pub platform: AppState,
    /// Live settings.
    pub settings: LiveSettings,
    /// The speech-to-text backend shared by all sessions.
    pub transcriber: Arc<dyn Transcriber>,
    /// Question audio, cached.
    pub speech: Arc<SpeechCache>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// WebRTC settings.
    pub webrtc: WebRtcConfig,
    /// Whether demo endpoints are on.
    pub demo: bool,
    /// Interview id → the session's inbound queue.
    sessions: Mutex<HashMap<String, mpsc::Sender<Inbound>>>,
    /// Open interview sockets, per client address.
    sockets: Mutex<HashMap<String, usize>>,
    next_conn: AtomicU64,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
    /// Session tasks, so shutdown can wait for them.
    pub tasks: TaskTracker,
}

impl std::fmt::Debug for LiveShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveShared")
            .field("transcriber", &self.transcriber.name())
            .field("demo", &self.demo)
            .finish()
    }
}

/// Why a connection could not join its interview.
#[derive(Debug)]
pub enum AttachError {
    /// Too many live sessions.
    Busy,
    /// The server is shutting down.
    ShuttingDown,
    /// The session ended between lookup and attach.
    Gone,
    /// Another instance runs the interview and did not hand it over in time.
    LiveElsewhere {
        /// Seconds after which trying again may succeed.
        retry_after_secs: u64,
    },
    /// Loading committed answers failed.
    Internal(anyhow::Error),
}

/// Milliseconds since the Unix epoch on the wall clock (leases compare across machines).
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// An admitted interview socket; it leaves the count when dropped.
#[derive(Debug)]
pub struct SocketPermit {
    live: Arc<LiveShared>,
    client: String,
}

impl Drop for SocketPermit {
    fn drop(&mut self) {
        let mut sockets = self.live.lock_sockets();
        if let Some(n) = sockets.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                sockets.remove(&self.client);
            }
        }
    }
}

impl LiveShared {
    /// Admits one more interview socket from `client`, within `max_sockets` in all and
    /// `max_sockets_per_client` from one address.
    pub fn admit_socket(self: &Arc<Self>, client: &str) -> Result<SocketPermit, ApiError> {
        let mut sockets = self.lock_sockets();
        let total: usize = sockets.values().sum();
        if total >= self.settings.max_sockets {
            return Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "server_busy",
                "this server holds as many interview connections as it can; try again shortly",
            )
            .with_retry_after(10));
        }
        let mine = sockets.entry(client.to_string()).or_insert(0);
        if *mine >= self.settings.max_sockets_per_client {
            return Err(ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "too_many_connections",
                format!(
                    "at most {} interview connections from one address",
                    self.settings.max_sockets_per_client
                ),
            )
            .with_retry_after(10));
        }
        *mine += 1;
        Ok(SocketPermit {
            live: Arc::clone(self),
            client: client.to_string(),
        })
    }

    /// Interview sockets open now.
    pub fn socket_count(&self) -> usize {
        self.lock_sockets().values().sum()
    }

    fn lock_sockets(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.sockets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Removes a finished session from the registry.
    pub fn forget(&self, interview_id: &str) {
        let mut sessions = self.lock();
        sessions.remove(interview_id);
        self.platform.instance.set_live(sessions.len());
    }

    /// Releases this instance's lease of an interview in the background (a session that
    /// could not start).
    fn release_lease_later(&self, interview_id: &str, lease_until_ms: i64) {
        let store = self.platform.store.clone();
        let me = self.platform.instance.id.clone();
        let id = interview_id.to_string();
        tokio::spawn(async move {
            if let Err(e) = store.release_lease(&id, &me, lease_until_ms).await {
                tracing::warn!(interview = %id, error = %e, "releasing a lease");
            }
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::Sender<Inbound>>> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Live sessions in the registry (attached or parked).
    pub fn session_count(&self) -> usize {
        self.lock().len()
    }

    /// Whether this instance runs the interview now.
    pub fn runs(&self, interview_id: &str) -> bool {
        self.lock()
            .get(interview_id)
            .is_some_and(|tx| !tx.is_closed())
    }

    /// The lease length.
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_secs(self.settings.lease_secs)
    }

    /// Takes the interview's lease for this instance. When another instance holds it, asks
    /// for a hand-over and waits until the holder lets go or the lease lapses (the holder
    /// died): at most one lease length and a little more. Returns when the lease lapses.
    async fn take_lease(&self, interview_id: &str) -> Result<i64, AttachError> {
        use crate::platform::store::LeaseTry;
        let store = &self.platform.store;
        let me = &self.platform.instance.id;
        let ttl_ms = i64::try_from(self.lease_ttl().as_millis()).unwrap_or(i64::MAX);
        let started = tokio::time::Instant::now();
        let give_up = started + self.lease_ttl() + Duration::from_secs(2);
        let mut asked = false;
        loop {
            let now_ms = wall_ms();
            let outcome = store
                .try_lease(interview_id, me, now_ms, ttl_ms)
                .await
                .map_err(|e| AttachError::Internal(anyhow::Error::new(e)))?;
            let LeaseTry::HeldBy {
                owner,
                expires_in_ms,
            } = outcome
            else {
                if asked {
                    self.metrics.inc_lease_takeovers();
                    tracing::info!(interview = %interview_id, waited_ms = started.elapsed().as_millis() as u64, "took the interview over from another instance");
                }
                return Ok(now_ms + ttl_ms);
            };
            if !asked && !owner.is_empty() {
                tracing::info!(interview = %interview_id, holder = %owner, "interview held by another instance; asking for it");
                store
                    .want_lease(interview_id, me)
                    .await
                    .map_err(|e| AttachError::Internal(anyhow::Error::new(e)))?;
                asked = true;
            }
            let now = tokio::time::Instant::now();
            if now >= give_up || self.shutdown.is_cancelled() {
                return Err(AttachError::LiveElsewhere {
                    retry_after_secs: (expires_in_ms as u64).div_ceil(1000).max(1),
                });
            }
            let wait = Duration::from_millis((expires_in_ms as u64).clamp(50, 250));
            tokio::time::sleep(wait.min(give_up - now)).await;
        }
    }

    /// Where the report of an interview can be read once completed.
    pub fn report_url(&self, seed: &SessionSeed) -> String {
        let base = self.platform.public_url();
        if seed.demo {
            format!("{base}/v1/interview-links/{}/report", seed.link_token)
        } else {
            // Screening reports are for reviewers (bearer token), keyed by the attempt.
            format!(
                "{base}/v1/review/attempts/{}/report.html",
                seed.attempt_id.as_deref().unwrap_or("unknown")
            )
        }
    }

    /// Joins a connection to its interview's session, starting the session (rebuilt from what
    /// was committed, if anything) when none is running. Returns the connection number and the
    /// session's inbound queue.
    pub async fn attach(
        self: &Arc<Self>,
        interview: &StoredInterview,
        link_token: &str,
        out: mpsc::Sender<Outbound>,
        audio: AudioFormat,
        speech: Option<Option<SpeechFormat>>,
    ) -> Result<(u64, mpsc::Sender<Inbound>), AttachError> {
        if self.shutdown.is_cancelled() {
            return Err(AttachError::ShuttingDown);
        }
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let existing = self.lock().get(&interview.id).cloned();
        let inbound = match existing {
            Some(tx) if !tx.is_closed() => tx,
            _ => {
                // The lease first, then the committed answers: whatever the previous holder
                // committed before letting go is then visible here.
                let lease_until_ms = self.take_lease(&interview.id).await?;
                // Read again: the previous holder may have finished it meanwhile.
                let status = match self.platform.store.get_interview(&interview.id).await {
                    Ok(now) => now.status,
                    Err(e) => {
                        self.release_lease_later(&interview.id, lease_until_ms);
                        return Err(AttachError::Internal(anyhow::Error::new(e)));
                    }
                };
                if status == InterviewStatus::Completed {
                    self.release_lease_later(&interview.id, lease_until_ms);
                    return Err(AttachError::Gone);
                }
                let committed = if status == InterviewStatus::Live {
                    self.platform
                        .store
                        .answers(&interview.id)
                        .await
                        .map_err(|e| AttachError::Internal(anyhow::Error::new(e)))?
                } else {
                    Vec::new()
                };
                let (tx, rx) = mpsc::channel(session::INBOUND_CAPACITY);
                {
                    let mut sessions = self.lock();
                    if let Some(tx) = sessions.get(&interview.id).filter(|t| !t.is_closed()) {
                        // Another connection started it meanwhile.
                        tx.clone()
                    } else {
                        if sessions.len() >= self.settings.max_sessions {
                            drop(sessions);
                            self.release_lease_later(&interview.id, lease_until_ms);
                            return Err(AttachError::Busy);
                        }
                        sessions.insert(interview.id.clone(), tx.clone());
                        self.platform.instance.set_live(sessions.len());
                        let seed = SessionSeed {
                            interview_id: interview.id.clone(),
                            link_token: link_token.to_string(),
                            discipline: interview.discipline.clone(),
                            demo: interview.attempt_id.is_none(),
                            attempt_id: interview.attempt_id.clone(),
                            committed,
                            lease_until_ms,
                        };
                        let me = self.clone();
                        let cancel = self.shutdown.child_token();
                        self.tasks
                            .spawn(async move { run_session(me, seed, rx, cancel).await });
                        tx
                    }
                }
            }
        };
        inbound
            .send(Inbound::Attach {
                conn,
                out,
                audio,
                speech,
            })
            .await
            .map_err(|_| AttachError::Gone)?;
        Ok((conn, inbound))
    }

    /// Stops accepting sessions and lets every session finish its answer in flight; waits up to
    /// `grace` for them.
    pub async fn shut_down(&self, grace: Duration) {
        self.platform.instance.start_draining();
        self.shutdown.cancel();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some sessions did not stop within the grace period");
        }
    }
}

/// What the live server needs besides the platform configuration.
pub struct LiveDependencies {
    /// Platform dependencies (clock, mailer).
    pub platform: Dependencies,
    /// The transcriber (the whisper worker pool in production).
    pub transcriber: Arc<dyn Transcriber>,
    /// The question voice.
    pub speech: Arc<SpeechCache>,
    /// Demo endpoints on.
    pub demo: bool,
}

/// Builds the platform API with the live interview routes merged in.
pub async fn build(
    config: PlatformConfig,
    listener: TcpListener,
    deps: LiveDependencies,
) -> Result<(Application, Arc<LiveShared>)> {
    let slot: Arc<OnceLock<Arc<LiveShared>>> = Arc::new(OnceLock::new());
    let settings = config.live.clone();
    let webrtc = WebRtcConfig {
        ice_servers: settings.ice_servers.clone(),
        bind_ip: settings.webrtc_bind_ip,
        udp_port_range: None,
    };
    let metrics = Arc::new(Metrics::new());
    let LiveDependencies {
        mut platform,
        transcriber,
        speech,
        demo,
    } = deps;
    let filled = slot.clone();
    platform.extra_routes = Some(Box::new(move |state: AppState| {
        let shared = Arc::new(LiveShared {
            platform: state,
            settings,
            transcriber,
            speech,
            metrics,
            webrtc,
            demo,
            sessions: Mutex::new(HashMap::new()),
            sockets: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        let _ = filled.set(shared.clone());
        router(shared)
    }));
    let app = Application::build_with(config, listener, platform).await?;
    let shared = slot
        .get()
        .cloned()
        .context("the live routes were not built")?;
    // Render every fixed text of every rubric ahead, so speaking costs nothing at turn time.
    let mut texts = Vec::new();
    for id in shared.platform.rubrics.ids() {
        if let Some(rubric) = shared.platform.rubrics.get(id) {
            texts.extend(nextmark_engine::interview::spoken_texts(rubric));
        }
    }
    if shared.settings.prerender_speech {
        shared.speech.prerender(texts);
    }
    Ok((app, shared))
}

/// Serves until `signal` resolves, then shuts the live sessions down gracefully (answers in
/// flight are finished and committed) before the HTTP server stops.
pub async fn run(
    app: Application,
    live: Arc<LiveShared>,
    signal: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    app.run_until_stopped(async move {
        signal.await;
        live.shut_down(Duration::from_secs(15)).await;
    })
    .await
}

fn router(live: Arc<LiveShared>) -> Router {
    let mut router = Router::new()
        .route("/v1/interview-links/{token}/live", get(ws::live_socket))
        .route("/v1/interview-links/{token}/report", get(link_report))
        .route(
            "/v1/interview-links/{token}/report.html",
            get(link_report_html),
        )
        .route("/metrics", get(metrics))
        .merge(crate::web::routes());
    if live.demo {
        router = router.route("/v1/demo/interviews", post(create_demo_interview));
    }
    router.with_state(live)
}

async fn metrics(State(live): State<Arc<LiveShared>>) -> impl IntoResponse {
    live.metrics
        .set_asr_queue_depth(live.transcriber.queue_depth() as i64);
    live.metrics.set_stt_fallbacks(live.transcriber.fallbacks());
    live.metrics.set_open_sockets(live.socket_count() as i64);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        live.metrics.render(),
    )
}

/// Body of `POST /v1/demo/interviews`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoRequest {
    /// Rubric id, e.g. `medicine`.
    pub discipline: String,
}

/// Answer of `POST /v1/demo/interviews`.
#[derive(Debug, Serialize, Deserialize)]
pub struct DemoInterview {
    /// The interview.
    pub interview_id: String,
    /// The WebSocket to talk on.
    pub ws_url: String,
    /// The page an applicant would open.
    pub join_url: String,
}

async fn create_demo_interview(
    State(live): State<Arc<LiveShared>>,
    body: Result<Json<DemoRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<DemoInterview>), ApiError> {
    let Json(body) = body.map_err(|e| ApiError::invalid("body", e.body_text()))?;
    let platform = &live.platform;
    if platform.rubrics.get(&body.discipline).is_none() {
        let known: Vec<&str> = platform.rubrics.ids().collect();
        return Err(ApiError::invalid(
            "discipline",
            format!(
                "unknown discipline {:?}; known: {}",
                body.discipline,
                known.join(", ")
            ),
        ));
    }
    let created = platform
        .store
        .create_interview(None, &body.discipline, platform.now())
        .await?;
    let base = platform.public_url();
    let ws_base = base
        .replacen("https://", "wss://", 1)
        .replacen("http://", "ws://", 1);
    Ok((
        StatusCode::CREATED,
        Json(DemoInterview {
            interview_id: created.interview.id,
            ws_url: format!("{ws_base}/v1/interview-links/{}/live", created.link_token),
            join_url: format!("{base}/interview/{}", created.link_token),
        }),
    ))
}

async fn demo_report(live: &LiveShared, token: &str) -> Result<Report, ApiError> {
    if token.len() > 256 {
        return Err(ApiError::not_found("interview link"));
    }
    let platform = &live.platform;
    let interview = platform
        .store
        .get_interview_by_token(token, platform.now())
        .await?;
    if interview.attempt_id.is_some() {
        // Screening reports are for reviewers only.
        return Err(ApiError::not_found("report"));
    }
    let report = interview.report.ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "interview_not_completed",
            "the interview has no report yet",
        )
    })?;
    serde_json::from_value(report).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "bad_report",
            format!("stored report unreadable: {e}"),
        )
    })
}

async fn link_report(
    State(live): State<Arc<LiveShared>>,
    Path(token): Path<String>,
) -> Result<Json<Report>, ApiError> {
    demo_report(&live, &token).await.map(Json)
}

async fn link_report_html(
    State(live): State<Arc<LiveShared>>,
    Path(token): Path<String>,
) -> Result<Html<String>, ApiError> {
    let report = demo_report(&live, &token).await?;
    let pass = live
        .platform
        .rubrics
        .get(&report.discipline)
        .map_or(2.0, |r| r.pass.min_dimension);
    Ok(Html(render_html(&report, pass)))
}

/// Question audio clips kept in memory: the most recently played (the rest load from disk).
pub const MAX_SPEECH_CLIPS_IN_MEMORY: usize = 24;

/// The speech synthesizer the settings ask for, behind a cache (on disk under
/// `tts_cache_dir`, default NEXTMARK_HOME/tts).
pub fn speech_cache(settings: &LiveSettings) -> Result<SpeechCache> {
    use self::config::TtsBackend;
    use crate::tts::{Espeak, EspeakConfig, OpenAiSpeech, OpenAiSpeechConfig, SpeechEngine};
    let engine: Arc<dyn SpeechEngine> = match settings.tts {
        TtsBackend::Espeak => Arc::new(
            Espeak::new(EspeakConfig {
                voice: settings.tts_voice.clone(),
                words_per_minute: settings.tts_wpm,
                ..EspeakConfig::default()
            })
            .context("setting up espeak-ng")?,
        ),
        TtsBackend::Openai => {
            let mut config = OpenAiSpeechConfig::new(
                settings
                    .tts_base_url
                    .clone()
                    .context("live.tts_base_url is required with tts = \"openai\"")?,
                settings.tts_model.clone(),
                settings.tts_openai_voice.clone(),
            );
            config.api_key = settings.tts_api_key.clone();
            Arc::new(OpenAiSpeech::new(config).context("setting up the speech endpoint")?)
        }
    };
    let dir = settings
        .tts_cache_dir
        .clone()
        .unwrap_or_else(|| crate::models::nextmark_home().join("tts"));
    // Every rubric's question audio is rendered to disk ahead; memory keeps only the few dozen
    // clips played last (about 1.5 MB each), and the rest load from disk in about a millisecond.
    Ok(SpeechCache::new(engine)
        .with_disk_dir(dir)
        .with_max_entries(MAX_SPEECH_CLIPS_IN_MEMORY))
}

/// The transcriber the settings ask for: the local whisper pool, or the remote endpoint with
/// the local pool as its fallback. Call inside the tokio runtime (remote requests run on it).
pub fn start_transcriber(settings: &LiveSettings) -> Result<Arc<dyn Transcriber>> {
    use self::config::SttBackend;
    match settings.stt {
        SttBackend::Local => Ok(start_local_transcriber(settings)?),
        SttBackend::Openai => {
            let mut config = crate::stt::RemoteSttConfig::new(
                settings
                    .stt_base_url
                    .clone()
                    .context("live.stt = \"openai\" needs live.stt_base_url")?,
            );
            config.model = settings.stt_model.clone();
            config.api_key = settings.stt_api_key.clone();
            config.timeout = Duration::from_millis(settings.stt_timeout_ms);
            config.max_in_flight = settings.stt_max_in_flight;
            let fallback: Option<Arc<dyn Transcriber>> = if settings.stt_fallback {
                Some(start_local_transcriber(settings)?)
            } else {
                None
            };
            Ok(Arc::new(crate::stt::RemoteTranscriber::new(
                config, fallback,
            )?))
        }
    }
}

/// Loads the Whisper model and starts the worker pool sized by the settings.
pub fn start_local_transcriber(
    settings: &LiveSettings,
) -> Result<Arc<nextmark_engine::asr::pool::WorkerPool>> {
    use nextmark_engine::asr::WhisperModel;
    use nextmark_engine::asr::pool::{PoolConfig, WorkerPool};
    let path = crate::models::resolve_model(settings.model.as_deref())
        .context("finding the Whisper model (run `nextmark model install`)")?;
    let model = WhisperModel::load(&path)?;
    let mut pool = PoolConfig::for_cores(crate::cli::default_threads());
    if let Some(workers) = settings.asr_workers {
        pool.workers = workers.max(1);
    }
    if let Some(threads) = settings.asr_threads {
        pool.threads_per_worker = threads.max(1);
    }
    pool.boost_idle_finals = settings.asr_boost_idle_finals;
    Ok(Arc::new(WorkerPool::start(&model, pool)?))
}
