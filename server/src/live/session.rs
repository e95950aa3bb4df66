//! One live interview: audio in from whichever connection is attached → front-end →
//! streaming transcriber → turn detector → interview state machine → questions, captions and
//! commits out. The session outlives its connections: a dropped applicant can come back within
//! the resume window and continue at the current question.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use nextmark_engine::asr::pool::{AsrJob, AsrOutput, JobKind};
use nextmark_engine::asr::stream::{
    AsrRequest, StreamConfig, StreamingTranscriber, TranscriptEvent,
};
use nextmark_engine::asr::{AsrError, Segment};
use nextmark_engine::audio::{AudioFrontEnd, OpusPacketDecoder, VadConfig, VadEvent};
use nextmark_engine::interview::{Action, Event, Interview, InterviewConfig, Question, StopReason};
use nextmark_engine::report::{ReportMeta, build_report};
use nextmark_engine::rubric::Rubric;
use nextmark_engine::scoring::SpeechFeatures;
use nextmark_engine::turn::{TurnConfig, TurnDetector, TurnEndReason, ends_with_end_phrase};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::LiveShared;
use super::config::VocabularyPrompt;
use super::protocol::{
    AudioEncoding, AudioFormat, ClientMessage, ServerMessage, SessionState, SpeechAudio,
    SpeechFormat,
};
use super::recording::SessionRecorder;
use super::webrtc::{PeerEvent, WebRtcPeer};
use crate::metrics::Stage;
use crate::platform::store::Answer;

/// Capacity of a session's inbound queue (control messages and audio frames of ~20–100 ms).
pub const INBOUND_CAPACITY: usize = 256;
/// Capacity of a connection's outbound queue. Partial captions are dropped when it is full;
/// everything else waits.
pub const OUTBOUND_CAPACITY: usize = 128;
/// Decode results coming back from the worker pool.
const ASR_RESULTS_CAPACITY: usize = 32;
/// Bytes of question audio per binary frame.
const SPEECH_CHUNK_BYTES: usize = 16 * 1024;
/// Audio clock slack before a stalled stream counts as silence.
const STALL_GRACE: Duration = Duration::from_millis(300);
/// Cores that the partial captions of all live sessions together may use: each session gets
/// this divided by the live sessions (at most its default share), so that with many sessions
/// captions come less often and finals keep the workers.
const PARTIAL_CPU_BUDGET_CORES: f64 = 0.5;
/// How long shutdown waits for the last finals of an answer in progress.
const SHUTDOWN_FINALS_WAIT: Duration = Duration::from_secs(5);

/// What a connection sends to its session.
#[derive(Debug)]
pub enum Inbound {
    /// A connection completed its handshake and takes over the session.
    Attach {
        /// Connection number.
        conn: u64,
        /// The connection's outbound queue.
        out: mpsc::Sender<Outbound>,
        /// Its audio format.
        audio: AudioFormat,
        /// Question audio on the socket: absent (default by input), off, or a format.
        speech: Option<Option<SpeechFormat>>,
    },
    /// A binary audio frame.
    Audio {
        /// Connection number.
        conn: u64,
        /// The frame.
        bytes: Bytes,
    },
    /// A parsed control message (not `hello`).
    Control {
        /// Connection number.
        conn: u64,
        /// The message.
        message: ClientMessage,
    },
    /// The connection closed (or timed out).
    Detached {
        /// Connection number.
        conn: u64,
        /// Whether the client said goodbye on purpose.
        on_purpose: bool,
    },
}

/// What a session sends to its connection.
#[derive(Debug)]
pub enum Outbound {
    /// A JSON event.
    Event(ServerMessage),
    /// A binary frame of question audio.
    Audio(Bytes),
    /// Close the socket after what is queued.
    Close,
}

/// One event handed to the interview state machine, as committed to storage so that an
/// interrupted interview can be rebuilt exactly (the state machine is deterministic).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LoggedEvent {
    /// An answer turn.
    Answer {
        /// Text handed to the engine.
        text: String,
        /// Interview clock, seconds.
        at_s: f64,
        /// Speech features, when spoken.
        speech: Option<SpeechFeatures>,
        /// Typed.
        typed: bool,
    },
    /// "Repeat the question".
    Repeat {
        /// Interview clock, seconds.
        at_s: f64,
    },
    /// A clock tick that changed something (the hard limit).
    Tick {
        /// Interview clock, seconds.
        at_s: f64,
    },
}

impl LoggedEvent {
    fn to_event(&self) -> Event {
        match self.clone() {
            LoggedEvent::Answer {
                text,
                at_s,
                speech,
                typed,
            } => Event::Answer {
                text,
                at_s,
                speech,
                typed,
            },
            LoggedEvent::Repeat { at_s } => Event::RepeatRequested { at_s },
            LoggedEvent::Tick { at_s } => Event::Tick { at_s },
        }
    }

    fn at_s(&self) -> f64 {
        match self {
            LoggedEvent::Answer { at_s, .. }
            | LoggedEvent::Repeat { at_s }
            | LoggedEvent::Tick { at_s } => *at_s,
        }
    }
}

/// Longest item vocabulary prompt, in characters (~30 tokens: each prompt token costs a
/// vocabulary-sized row of logits in every decode).
pub const ITEM_PROMPT_CHARS: usize = 100;
/// Length of an `item_first` prompt: ~60 tokens, a quarter of the whole glossary's decoding
/// cost and buffers.
pub const ITEM_FIRST_PROMPT_CHARS: usize = 250;

/// The stable id of a question on the wire and in storage.
pub fn question_id(rubric: &Rubric, question: &Question) -> String {
    match question {
        Question::Intro => "intro".into(),
        Question::Warmup => "warmup".into(),
        Question::Item { item } => rubric.items[*item].id.clone(),
        Question::Probe { item, probe } => {
            format!("probe:{}:{}", rubric.items[*item].id, probe + 1)
        }
        Question::Closing => "closing".into(),
    }
}

/// A silence decision waits for a rising onset only while audio arrived this recently.
const ONSET_HOLD_MAX: Duration = Duration::from_millis(200);

/// The rubric item a question id is about: the item itself, or the item a probe
/// (`probe:<item>:<n>`) follows up; other ids (intro, warm-up, closing) come back unchanged and
/// name no item.
fn item_of_question(id: &str) -> &str {
    id.strip_prefix("probe:")
        .and_then(|rest| rest.rsplit_once(':'))
        .map_or(id, |(item, _)| item)
}

/// The transcriber's prompt for answers to `question` (a question id; `None` before the first
/// question) under `mode`.
fn vocabulary_prompt(
    mode: VocabularyPrompt,
    rubric: &Rubric,
    question: Option<&str>,
) -> Option<String> {
    let item = question.and_then(|id| rubric.item(item_of_question(id)));
    match mode {
        VocabularyPrompt::Glossary => Some(rubric.glossary_prompt()),
        VocabularyPrompt::ItemFirst => rubric.item_first_prompt(item, ITEM_FIRST_PROMPT_CHARS),
        VocabularyPrompt::Item => item.and_then(|item| rubric.item_prompt(item, ITEM_PROMPT_CHARS)),
        VocabularyPrompt::None => None,
    }
}

/// A seed for the interview's randomised choices that is the same every time the interview
/// is rebuilt.
pub fn seed_for(interview_id: &str) -> u64 {
    interview_id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
}

/// What the session needs to start.
#[derive(Debug, Clone)]
pub struct SessionSeed {
    /// Interview id.
    pub interview_id: String,
    /// The link token (for the report URL of demo interviews).
    pub link_token: String,
    /// Discipline id.
    pub discipline: String,
    /// Demo interview (no screening attempt).
    pub demo: bool,
    /// The screening attempt, for the reviewer's report URL.
    pub attempt_id: Option<String>,
    /// Events committed earlier (rebuild after a restart), in order.
    pub committed: Vec<Answer>,
    /// Until when this instance holds the interview's lease (wall-clock ms), as last written.
    pub lease_until_ms: i64,
}

/// Audio decoding for the attached connection.
enum Input {
    Pcm,
    Opus(OpusPacketDecoder),
    Webrtc,
}

struct Connection {
    id: u64,
    out: mpsc::Sender<Outbound>,
    input: Input,
    front: AudioFrontEnd,
    /// Session audio time at which this connection's front-end started.
    clock_offset_s: f64,
    speech: Option<SpeechFormat>,
    peer: Option<WebRtcPeer>,
    /// Frames refused since the last error event (to avoid an error storm).
    refused_frames: u32,
    /// When this connection's audio started arriving, and how much has arrived since
    /// (seconds at the declared rate): a client that sends far more audio than time passes
    /// has declared the wrong sample rate.
    rate_check: Option<(Instant, f64)>,
    /// The rate warning was sent.
    rate_warned: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Waiting for the first connection.
    NotStarted,
    /// The question's audio plays until this session time.
    Speaking { until_s: f64 },
    /// Listening since this session time.
    Listening { since_s: f64 },
    /// The turn ended; waiting for the last finals before handing the answer on.
    Closing { reason: TurnEndReason },
    /// Finished.
    Done,
}

struct AnswerSoFar {
    texts: Vec<String>,
    segments: Vec<Segment>,
    first_voice_s: Option<f64>,
    last_voice_s: Option<f64>,
}

impl AnswerSoFar {
    fn new() -> Self {
        AnswerSoFar {
            texts: Vec::new(),
            segments: Vec::new(),
            first_voice_s: None,
            last_voice_s: None,
        }
    }

    fn text(&self) -> String {
        self.texts
            .iter()
            .filter(|t| !t.is_empty())
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn features(&self, words: usize) -> SpeechFeatures {
        let mut pauses = Vec::new();
        let mut speech_s = 0.0;
        let mut last_end: Option<f64> = None;
        for s in &self.segments {
            speech_s += (s.end_s - s.start_s).max(0.0);
            if let Some(e) = last_end
                && s.start_s - e >= 1.0
            {
                pauses.push((e, s.start_s));
            }
            last_end = Some(s.end_s);
        }
        let duration_s = match (self.first_voice_s, self.last_voice_s) {
            (Some(a), Some(b)) if b > a => b - a,
            _ => speech_s,
        };
        SpeechFeatures {
            duration_s,
            speech_s,
            pauses,
            words,
        }
    }
}

/// A decode result on its way back from the pool.
type AsrResult = (u64, Result<AsrOutput, AsrError>, JobKind);

/// Runs one interview session until it completes, is abandoned, or the server shuts down.
pub async fn run_session(
    live: Arc<LiveShared>,
    seed: SessionSeed,
    inbound: mpsc::Receiver<Inbound>,
    cancel: CancellationToken,
) {
    let rubrics = live.platform.rubrics.clone();
    let Some(rubric) = rubrics.get(&seed.discipline) else {
        tracing::error!(discipline = %seed.discipline, "session for an unknown discipline");
        live.forget(&seed.interview_id);
        return;
    };
    let interview_id = seed.interview_id.clone();
    let mut session = Session::new(live.clone(), rubric, seed);
    if let Err(e) = session.replay_committed() {
        tracing::error!(interview = %interview_id, error = format!("{e:#}"), "could not rebuild the interview");
    }
    live.metrics.inc_sessions_started();
    let lease_until = Arc::new(AtomicI64::new(session.seed.lease_until_ms));
    let moved = CancellationToken::new();
    let ended = CancellationToken::new();
    let keeper = tokio::spawn(keep_lease(
        live.clone(),
        interview_id.clone(),
        lease_until.clone(),
        moved.clone(),
        ended.clone(),
    ));
    session.run(inbound, cancel, moved).await;
    // Stopped between renewals, never inside one: an aborted renewal could have written a new
    // expiry the release below would not match, leaving the lease to lapse on its own.
    ended.cancel();
    if let Err(e) = keeper.await {
        tracing::warn!(interview = %interview_id, error = %e, "the lease keeper failed");
    }
    // Released only if still as this session last wrote it: a newer session of the same
    // interview on this instance may have taken it again meanwhile.
    if let Err(e) = live
        .platform
        .store
        .release_lease(
            &interview_id,
            &live.platform.instance.id,
            lease_until.load(Ordering::Relaxed),
        )
        .await
    {
        tracing::warn!(interview = %interview_id, error = %e, "releasing the lease");
    }
    live.forget(&interview_id);
    tracing::info!(interview = %interview_id, "session ended");
}

/// Keeps the report (JSON, and the HTML a reviewer reads) in object storage beside the
/// recordings, where archives and other tools read it; the database copy serves the API.
async fn archive_report(
    live: &LiveShared,
    interview_id: &str,
    pass: f64,
    report: &nextmark_engine::report::Report,
    json: &serde_json::Value,
) {
    let html = nextmark_engine::report::render_html(report, pass);
    let pretty = serde_json::to_vec_pretty(json).unwrap_or_default();
    for (key, bytes) in [
        (format!("reports/{interview_id}/report.json"), pretty),
        (
            format!("reports/{interview_id}/report.html"),
            html.into_bytes(),
        ),
    ] {
        if let Err(e) = live
            .platform
            .objects
            .put(&key, bytes::Bytes::from(bytes))
            .await
        {
            tracing::warn!(error = format!("{e:#}"), "archiving the report");
        }
    }
}

/// Renews the session's lease every third of its length, at least every 2 s (the renewal also
/// reads whether another instance asked for the interview, so this bounds a hand-over). Cancels `moved` when the session must
/// stop here: another instance asked for the interview (its applicant reconnected there), or
/// the lease was lost (this instance could not renew it in time and another may run it now).
/// Returns between renewals once `ended` is cancelled.
async fn keep_lease(
    live: Arc<LiveShared>,
    interview_id: String,
    lease_until: Arc<AtomicI64>,
    moved: CancellationToken,
    ended: CancellationToken,
) {
    use crate::platform::store::LeaseRenewal;
    let ttl = live.lease_ttl();
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let me = live.platform.instance.id.clone();
    let every = (ttl / 3).min(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = ended.cancelled() => return,
        }
        let now = super::wall_ms();
        match live
            .platform
            .store
            .renew_lease(&interview_id, &me, now, ttl_ms)
            .await
        {
            Ok(LeaseRenewal::Held { wanted_by }) => {
                lease_until.store(now + ttl_ms, Ordering::Relaxed);
                if let Some(other) = wanted_by {
                    tracing::info!(interview = %interview_id, to = %other, "handing the interview over to another instance");
                    moved.cancel();
                    return;
                }
            }
            Ok(LeaseRenewal::Lost) => {
                tracing::warn!(interview = %interview_id, "lost the interview's lease; stopping here");
                moved.cancel();
                return;
            }
            Err(e) => {
                tracing::warn!(interview = %interview_id, error = %e, "renewing the lease");
                if super::wall_ms() >= lease_until.load(Ordering::Relaxed) {
                    moved.cancel();
                    return;
                }
            }
        }
    }
}

struct Session<'r> {
    live: Arc<LiveShared>,
    rubric: &'r Rubric,
    seed: SessionSeed,
    engine: Interview<'r>,
    transcriber: StreamingTranscriber,
    turn: TurnDetector,
    conn: Option<Connection>,
    phase: Phase,
    answer: AnswerSoFar,
    /// Final decodes the pool refused (full queue), retried on every tick.
    backlog: VecDeque<AsrRequest>,
    asr_tx: mpsc::Sender<AsrResult>,
    asr_rx: mpsc::Receiver<AsrResult>,
    /// Next commit sequence number.
    seq: i64,
    /// Interview time already spent before this session (a rebuilt interview continues).
    clock_base_s: f64,
    /// The last interview time handed out (the clock never goes back).
    last_clock_s: f64,
    /// Parked (no connection) since.
    parked_since: Option<Instant>,
    /// When the last audio frame arrived and the session time it brought.
    last_audio: Option<(Instant, f64)>,
    /// Wall time when the last voiced audio of the current answer arrived.
    last_voice_wall: Option<Instant>,
    /// The question being asked (for resume and labels).
    current: Option<(String, String, usize)>,
    recorder: Option<SessionRecorder>,
    /// The local folder the recorder writes to until the files move to object storage.
    spool_dir: Option<std::path::PathBuf>,
    /// Decoded microphone audio of the attached WebRTC peer.
    peer_audio: Option<mpsc::Receiver<Vec<f32>>>,
    /// Candidates and state changes of the attached WebRTC peer.
    peer_events: Option<mpsc::Receiver<PeerEvent>>,
    resumed_from_storage: bool,
    /// A WebRTC connection attached: begin (`false`) or continue (`true`) once it connects.
    begin_on_connect: Option<bool>,
    /// While an answer is being handed over: when the turn was decided (the start of the turn
    /// latency reported with the next question).
    turn_from: Option<Instant>,
    /// When the turn detector decided that the current answer ended.
    decided_at: Option<Instant>,
    /// Why the answer being handed over ended (`typed` for a typed answer), reported with the
    /// next question.
    turn_end: Option<&'static str>,
}

impl<'r> Session<'r> {
    fn new(live: Arc<LiveShared>, rubric: &'r Rubric, seed: SessionSeed) -> Self {
        let (asr_tx, asr_rx) = mpsc::channel(ASR_RESULTS_CAPACITY);
        // The whole-glossary prompt is costly (whisper.cpp computes the vocabulary logits of
        // all ~200 prompt tokens: ~0.15 s a decode on one core, ~100 MB of buffers per
        // decoder); a question's own terms or no prompt decode faster, but tiny.en then ends
        // far more pauses with a period, and the turn rules cut into thinking pauses. The
        // default `item_first` keeps a shorter prompt: the question's terms, then the
        // glossary's, closed by a period (bench/README.md, "A prompt that ends with a
        // period"). With `item` and `item_first` the prompt follows the question (see `ask`).
        let prompt = vocabulary_prompt(live.settings.vocabulary_prompt, rubric, None);
        let stream = StreamConfig {
            prompt: prompt.map(Into::into),
            ..StreamConfig::default()
        };
        let mut config = InterviewConfig {
            seed: seed_for(&seed.interview_id),
            ..InterviewConfig::default()
        };
        if let Some(max) = live.settings.interview_max_items {
            config.max_items = max.max(1);
            config.min_items = config.min_items.min(config.max_items);
        }
        let engine = Interview::new(rubric, config);
        let spool_dir = recording_dir(&live.settings.recordings_dir, &seed.interview_id);
        let recorder = match SessionRecorder::create(&spool_dir, 22_050) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "recording disabled for this session"
                );
                None
            }
        };
        Session {
            live,
            rubric,
            engine,
            transcriber: StreamingTranscriber::new(stream),
            turn: TurnDetector::new(TurnConfig::default()),
            conn: None,
            phase: Phase::NotStarted,
            answer: AnswerSoFar::new(),
            backlog: VecDeque::new(),
            asr_tx,
            asr_rx,
            seq: 0,
            clock_base_s: 0.0,
            last_clock_s: 0.0,
            parked_since: None,
            last_audio: None,
            last_voice_wall: None,
            current: None,
            recorder,
            spool_dir: Some(spool_dir),
            peer_audio: None,
            peer_events: None,
            begin_on_connect: None,
            turn_from: None,
            turn_end: None,
            decided_at: None,
            resumed_from_storage: !seed.committed.is_empty(),
            seed,
        }
    }

    /// Rebuilds the state machine from committed events (after a restart or on another
    /// instance). The last question asked becomes the current one.
    fn replay_committed(&mut self) -> anyhow::Result<()> {
        if self.seed.committed.is_empty() {
            return Ok(());
        }
        let mut actions = self.engine.handle(Event::Start { at_s: 0.0 });
        let mut last_at = 0.0;
        for answer in std::mem::take(&mut self.seed.committed) {
            let logged: LoggedEvent = serde_json::from_value(
                answer
                    .scores
                    .get("event")
                    .cloned()
                    .ok_or_else(|| anyhow::anyhow!("answer {} has no event", answer.seq))?,
            )?;
            last_at = logged.at_s();
            actions = self.engine.handle(logged.to_event());
            self.seq = answer.seq + 1;
        }
        for a in &actions {
            if let Action::Ask {
                question,
                text,
                index,
                ..
            } = a
            {
                self.current = Some((question_id(self.rubric, question), text.clone(), *index));
            }
        }
        self.clock_base_s = last_at.max(0.0);
        self.last_clock_s = self.clock_base_s;
        self.phase = Phase::Listening { since_s: 0.0 };
        Ok(())
    }

    /// The interview clock: the session's audio clock (so that transcript times line up with
    /// the recording), continued from where a rebuilt interview left off. Time while no one is
    /// connected does not count against the applicant.
    fn interview_clock(&mut self) -> f64 {
        let now = (self.clock_base_s + self.effective_now()).max(self.last_clock_s);
        self.last_clock_s = now;
        now
    }

    /// Session audio time (seconds of applicant audio received).
    fn audio_now(&self) -> f64 {
        self.transcriber.now_s()
    }

    /// The audio clock, extended by wall time while the stream is stalled (a client that
    /// stops sending still lets a pause count).
    fn effective_now(&self) -> f64 {
        let now = self.audio_now();
        match self.last_audio {
            Some((at, _)) if at.elapsed() > STALL_GRACE => {
                now + (at.elapsed() - STALL_GRACE).as_secs_f64()
            }
            None => now,
            _ => now,
        }
    }

    async fn run(
        &mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        cancel: CancellationToken,
        moved: CancellationToken,
    ) {
        let mut ticks = tokio::time::interval(Duration::from_millis(50));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut last_engine_tick = Instant::now();
        loop {
            if self.phase == Phase::Done {
                break;
            }
            tokio::select! {
                _ = cancel.cancelled() => {
                    self.shutdown(
                        "server_shutdown",
                        "the server is restarting; reconnect with the same link to continue",
                    )
                    .await;
                    break;
                }
                _ = moved.cancelled() => {
                    self.shutdown(
                        "moved",
                        "this interview continues on another connection (another server took \
                         it over); reconnect with the same link to continue here",
                    )
                    .await;
                    break;
                }
                message = inbound.recv() => match message {
                    Some(m) => self.on_inbound(m).await,
                    None => break,
                },
                Some(result) = self.asr_rx.recv() => self.on_asr(result).await,
                samples = recv_opt(&mut self.peer_audio) => match samples {
                    Some(s) => self.on_peer_audio(s).await,
                    None => self.peer_audio = None,
                },
                event = recv_opt(&mut self.peer_events) => match event {
                    Some(e) => self.on_peer_event(e).await,
                    None => self.peer_events = None,
                },
                _ = ticks.tick() => {
                    self.on_tick().await;
                    if last_engine_tick.elapsed() >= Duration::from_secs(1) {
                        last_engine_tick = Instant::now();
                        self.engine_tick().await;
                    }
                }
            }
        }
        if let Some(conn) = self.conn.take()
            && let Some(peer) = conn.peer
        {
            peer.close().await;
        }
        self.live.metrics.dec_live_sessions();
    }

    /// The attached connection's outbound queue (cloned, so that sending does not hold the
    /// connection, whose decoders are not `Sync`, across an await).
    fn out(&self) -> Option<mpsc::Sender<Outbound>> {
        self.conn.as_ref().map(|c| c.out.clone())
    }

    async fn send(&mut self, message: ServerMessage) {
        if let Some(out) = self.out() {
            let _ = out.send(Outbound::Event(message)).await;
        }
    }

    /// Sends a message that may be dropped when the client is slow (partial captions).
    fn send_lossy(&self, message: ServerMessage) {
        if let Some(c) = &self.conn
            && c.out.try_send(Outbound::Event(message)).is_err()
        {
            self.live.metrics.inc_partials_dropped();
        }
    }

    async fn on_inbound(&mut self, message: Inbound) {
        match message {
            Inbound::Attach {
                conn,
                out,
                audio,
                speech,
            } => self.attach(conn, out, audio, speech).await,
            Inbound::Audio { conn, bytes } => {
                if self.conn.as_ref().is_some_and(|c| c.id == conn) {
                    self.on_socket_audio(bytes).await;
                }
            }
            Inbound::Control { conn, message } => {
                if self.conn.as_ref().is_some_and(|c| c.id == conn) {
                    self.on_control(message).await;
                }
            }
            Inbound::Detached { conn, on_purpose } => {
                if self.conn.as_ref().is_some_and(|c| c.id == conn) {
                    self.detach(on_purpose).await;
                }
            }
        }
    }

    async fn attach(
        &mut self,
        conn: u64,
        out: mpsc::Sender<Outbound>,
        audio: AudioFormat,
        speech: Option<Option<SpeechFormat>>,
    ) {
        if let Some(old) = self.conn.take() {
            let _ = old
                .out
                .send(Outbound::Event(ServerMessage::error(
                    "replaced",
                    "this interview was opened in another window",
                    true,
                )))
                .await;
            let _ = old.out.send(Outbound::Close).await;
            self.peer_audio = None;
            self.peer_events = None;
            if let Some(peer) = old.peer {
                peer.close().await;
            }
        } else if self.parked_since.take().is_some() {
            self.live.metrics.dec_parked_sessions();
            self.live.metrics.inc_live_sessions();
        } else {
            self.live.metrics.inc_live_sessions();
        }
        let (input, rate, channels) = match audio.encoding {
            AudioEncoding::PcmS16le => (Input::Pcm, audio.sample_rate, audio.channels),
            AudioEncoding::Opus => match OpusPacketDecoder::new() {
                Ok(d) => (Input::Opus(d), 48_000, 1),
                Err(e) => {
                    let _ = out
                        .send(Outbound::Event(ServerMessage::error(
                            "internal",
                            format!("opus decoder: {e}"),
                            true,
                        )))
                        .await;
                    return;
                }
            },
            AudioEncoding::Webrtc => (Input::Webrtc, 48_000, 1),
        };
        let front = match AudioFrontEnd::new(rate, usize::from(channels), VadConfig::default()) {
            Ok(f) => f,
            Err(e) => {
                // Validated by the socket handler already; a second line of defence.
                let _ = out
                    .send(Outbound::Event(ServerMessage::error(
                        "bad_audio_format",
                        e.to_string(),
                        true,
                    )))
                    .await;
                return;
            }
        };
        let webrtc = matches!(input, Input::Webrtc);
        let speech = match (&input, speech) {
            (_, Some(chosen)) => chosen,
            (Input::Webrtc, None) => None,
            (_, None) => Some(SpeechFormat {
                sample_rate: 16_000,
            }),
        };
        let resumed = !matches!(self.phase, Phase::NotStarted) || self.resumed_from_storage;
        self.conn = Some(Connection {
            id: conn,
            out,
            input,
            front,
            clock_offset_s: self.audio_now(),
            speech,
            peer: None,
            refused_frames: 0,
            rate_check: None,
            rate_warned: false,
        });
        // The clock runs from now even if no audio ever comes (a typed-only client).
        self.last_audio = Some((Instant::now(), self.audio_now()));
        self.send(ServerMessage::Ready {
            interview_id: self.seed.interview_id.clone(),
            discipline: self.live.platform.discipline_name(&self.seed.discipline),
            resumed,
            questions_asked: self.current.as_ref().map_or(0, |c| c.2),
        })
        .await;
        if webrtc {
            // The first question waits for the call to connect, so that it is heard.
            self.begin_on_connect = Some(resumed);
            return;
        }
        self.begin(resumed).await;
    }

    /// Starts the interview, or continues it at the current question.
    async fn begin(&mut self, resumed: bool) {
        if resumed {
            self.live.metrics.inc_sessions_resumed();
            tracing::info!(interview = %self.seed.interview_id, "session resumed");
            if let Some((id, text, index)) = self.current.clone() {
                // Continue at the current question: say it again.
                self.ask(id, text, index, true).await;
            }
        } else {
            if let Err(e) = self
                .live
                .platform
                .store
                .start_interview(&self.seed.interview_id, self.live.platform.now())
                .await
            {
                tracing::warn!(error = %e, "marking the interview started");
            }
            let actions = self.engine.handle(Event::Start { at_s: 0.0 });
            self.apply(actions, None).await;
        }
    }

    async fn detach(&mut self, on_purpose: bool) {
        self.peer_audio = None;
        self.peer_events = None;
        if let Some(conn) = self.conn.take()
            && let Some(peer) = conn.peer
        {
            peer.close().await;
        }
        self.parked_since = Some(Instant::now());
        self.live.metrics.dec_live_sessions();
        self.live.metrics.inc_parked_sessions();
        tracing::info!(
            interview = %self.seed.interview_id,
            on_purpose,
            "connection closed; waiting for the applicant to come back"
        );
    }

    async fn on_control(&mut self, message: ClientMessage) {
        let now = self.effective_now();
        match message {
            ClientMessage::Hello { .. } => {
                self.send(ServerMessage::error(
                    "unexpected_hello",
                    "hello was already received on this connection",
                    false,
                ))
                .await;
            }
            ClientMessage::Ping { nonce } => self.send(ServerMessage::Pong { nonce }).await,
            ClientMessage::Done => {
                if matches!(self.phase, Phase::Listening { .. } | Phase::Speaking { .. }) {
                    if let Phase::Speaking { .. } = self.phase {
                        self.start_listening(now).await;
                    }
                    self.turn.client_done(now);
                    self.poll_turn().await;
                }
            }
            ClientMessage::Repeat => {
                if matches!(self.phase, Phase::Listening { .. } | Phase::Speaking { .. }) {
                    let at_s = self.interview_clock();
                    let actions = self.engine.handle(Event::RepeatRequested { at_s });
                    let label = self.current_label();
                    self.commit(&label, LoggedEvent::Repeat { at_s }, None)
                        .await;
                    self.answer = AnswerSoFar::new();
                    self.apply(actions, None).await;
                }
            }
            ClientMessage::Text { text } => {
                if text.trim().is_empty() || text.len() > 20_000 {
                    self.send(ServerMessage::error(
                        "bad_text",
                        "a typed answer must be 1 to 20000 characters",
                        false,
                    ))
                    .await;
                } else if matches!(self.phase, Phase::Listening { .. } | Phase::Speaking { .. }) {
                    self.hand_over_answer(Some(text)).await;
                }
            }
            ClientMessage::Typing => {
                if let Phase::Listening { .. } = self.phase {
                    // Typing is answering: restart the wait for a spoken answer.
                    if self.answer.texts.is_empty() && self.answer.first_voice_s.is_none() {
                        self.turn.start_question(now);
                    }
                }
            }
            ClientMessage::PlaybackEnded => {
                if let Phase::Speaking { .. } = self.phase {
                    self.start_listening(now).await;
                }
            }
            ClientMessage::Offer { sdp } => self.on_offer(sdp).await,
            ClientMessage::Candidate { candidate } => {
                let result = match self.conn.as_ref().and_then(|c| c.peer.as_ref()) {
                    Some(peer) => peer.add_remote_candidate(candidate).await,
                    None => Err(anyhow::anyhow!("send the offer before candidates")),
                };
                if let Err(e) = result {
                    self.send(ServerMessage::error(
                        "bad_candidate",
                        format!("{e:#}"),
                        false,
                    ))
                    .await;
                }
            }
            ClientMessage::Bye => self.detach(true).await,
        }
    }

    async fn on_offer(&mut self, sdp: String) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if !matches!(conn.input, Input::Webrtc) {
            let _ = conn
                .out
                .send(Outbound::Event(ServerMessage::error(
                    "unexpected_offer",
                    "say \"encoding\": \"webrtc\" in hello to use WebRTC",
                    false,
                )))
                .await;
            return;
        }
        if let Some(old) = conn.peer.take() {
            old.close().await;
        }
        let (audio_tx, audio_rx) = mpsc::channel(64);
        let (events_tx, events_rx) = mpsc::channel(64);
        let config = self.live.webrtc.clone();
        match WebRtcPeer::answer(&config, &sdp, audio_tx, events_tx).await {
            Ok((peer, answer)) => {
                conn.peer = Some(peer);
                self.peer_audio = Some(audio_rx);
                self.peer_events = Some(events_rx);
                let _ = conn
                    .out
                    .send(Outbound::Event(ServerMessage::Answer { sdp: answer }))
                    .await;
            }
            Err(e) => {
                let _ = conn
                    .out
                    .send(Outbound::Event(ServerMessage::error(
                        "bad_offer",
                        format!("{e:#}"),
                        false,
                    )))
                    .await;
            }
        }
    }

    async fn on_peer_event(&mut self, event: PeerEvent) {
        match event {
            PeerEvent::Candidate(candidate) => {
                self.send(ServerMessage::Candidate { candidate }).await
            }
            PeerEvent::Connected => {
                tracing::info!(interview = %self.seed.interview_id, "WebRTC connected");
                if let Some(resumed) = self.begin_on_connect.take() {
                    self.begin(resumed).await;
                    return;
                }
                // Speak the current question again over the new track if it was cut short.
                if let (Phase::Speaking { .. }, Some((_, text, _))) =
                    (self.phase, self.current.clone())
                    && let Ok(speech) = self.live.speech.get(&text).await
                {
                    self.speak_over_peer(&speech);
                }
            }
            PeerEvent::Disconnected => {
                tracing::info!(interview = %self.seed.interview_id, "WebRTC disconnected")
            }
            PeerEvent::Failed(why) => {
                self.send(ServerMessage::error("webrtc_failed", why, false))
                    .await
            }
        }
    }

    async fn on_socket_audio(&mut self, bytes: Bytes) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let metrics = self.live.metrics.clone();
        let timer = Instant::now();
        let decoded: Result<Vec<f32>, String> = match &mut conn.input {
            Input::Webrtc => {
                Err("audio frames are not expected: this connection uses WebRTC".into())
            }
            Input::Pcm => {
                if !bytes
                    .len()
                    .is_multiple_of(2 * usize::from(conn.front_channels()))
                {
                    Err(format!(
                        "a PCM frame of {} bytes is not a whole number of {}-channel 16-bit samples",
                        bytes.len(),
                        conn.front_channels()
                    ))
                } else {
                    Ok(bytes
                        .chunks_exact(2)
                        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
                        .collect())
                }
            }
            Input::Opus(decoder) => decoder
                .decode(&bytes)
                .map(<[f32]>::to_vec)
                .map_err(|e| format!("bad Opus packet: {e}")),
        };
        metrics.observe(Stage::Decode, timer.elapsed());
        match decoded {
            Ok(samples) => {
                if let Some(message) = self.check_rate(samples.len()) {
                    self.live.metrics.inc_protocol_errors("rate_mismatch");
                    self.send(ServerMessage::error("rate_mismatch", message, false))
                        .await;
                }
                self.on_samples(&samples).await
            }
            Err(message) => {
                let conn = self.conn.as_mut().expect("checked above");
                conn.refused_frames += 1;
                // One event per burst of bad frames, not one per frame.
                if conn.refused_frames == 1 || conn.refused_frames.is_multiple_of(50) {
                    self.live.metrics.inc_protocol_errors("bad_audio");
                    self.send(ServerMessage::error("bad_audio", message, false))
                        .await;
                }
            }
        }
    }

    /// Compares the audio received over the first seconds with the wall time that passed. A
    /// microphone sends audio at the rate of time; a client sending much more than that
    /// declared a sample rate lower than its real one (its audio would be slowed down and
    /// deepened, and transcribed badly). Warned once per connection.
    fn check_rate(&mut self, interleaved_samples: usize) -> Option<String> {
        /// Wall time to observe before judging.
        const WINDOW: Duration = Duration::from_secs(4);
        /// Audio seconds per wall second above which the declared rate cannot be right.
        const MAX_SPEED: f64 = 2.5;
        let conn = self.conn.as_mut()?;
        if conn.rate_warned {
            return None;
        }
        let rate = f64::from(conn.front.input_rate()) * conn.front.channels() as f64;
        let seconds = interleaved_samples as f64 / rate;
        let (since, total) = conn.rate_check.get_or_insert((Instant::now(), 0.0));
        *total += seconds;
        let elapsed = since.elapsed();
        if elapsed >= WINDOW {
            let speed = *total / elapsed.as_secs_f64();
            conn.rate_check = Some((Instant::now(), 0.0));
            if speed > MAX_SPEED {
                conn.rate_warned = true;
                return Some(format!(
                    "audio arrives {speed:.1}× faster than real time at the declared {} Hz: \
                     is the sample rate in hello right? (fine only when streaming a file \
                     faster than real time)",
                    conn.front.input_rate()
                ));
            }
        }
        None
    }

    async fn on_peer_audio(&mut self, samples: Vec<f32>) {
        self.on_samples(&samples).await;
    }

    /// Interleaved samples at the connection's input rate. A stream that stalled (a WebRTC
    /// call before the microphone track flows, a network hiccup) first gets the gap filled with
    /// silence, so that the audio clock keeps pace with time as a microphone would, and the
    /// recording and transcript stay aligned with it.
    async fn on_samples(&mut self, samples: &[f32]) {
        /// Longest gap filled in one go; a longer one is mostly a client that paused on purpose.
        const MAX_GAP_S: f64 = 600.0;
        let gap_s = match self.last_audio {
            Some((at, _)) if at.elapsed() > STALL_GRACE => {
                (at.elapsed() - STALL_GRACE).as_secs_f64().min(MAX_GAP_S)
            }
            _ => 0.0,
        };
        if gap_s > 0.0
            && let Some(conn) = self.conn.as_ref()
        {
            let per_second = conn.front.input_rate() as usize * conn.front.channels();
            let mut left = (gap_s * per_second as f64) as usize;
            left -= left % conn.front.channels();
            let silence = vec![0.0f32; per_second];
            while left > 0 {
                let n = left.min(per_second);
                self.push_front(&silence[..n]).await;
                left -= n;
            }
        }
        self.push_front(samples).await;
    }

    /// Runs samples through the front-end, recorder, transcriber and turn detector.
    async fn push_front(&mut self, samples: &[f32]) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let offset = conn.clock_offset_s;
        let (audio, events) = match conn.front.push_f32(samples) {
            Ok(out) => (
                out.audio.to_vec(),
                out.events
                    .iter()
                    .map(|e| shift(*e, offset))
                    .collect::<Vec<_>>(),
            ),
            Err(e) => {
                self.live.metrics.inc_protocol_errors("bad_audio");
                self.send(ServerMessage::error("bad_audio", e.to_string(), false))
                    .await;
                return;
            }
        };
        if let Some(conn) = self.conn.as_ref() {
            let (resample, vad) = conn.front.last_timings();
            self.live.metrics.observe(Stage::Resample, resample);
            self.live.metrics.observe(Stage::Vad, vad);
        }
        self.live
            .metrics
            .add_audio_seconds_received(audio.len() as f64 / 16_000.0);
        if let Some(rec) = self.recorder.as_mut()
            && let Err(e) = rec.push_applicant(&audio)
        {
            tracing::warn!(
                error = format!("{e:#}"),
                "recording failed; recording stops"
            );
            self.recorder = None;
        }
        // Captions of all live sessions together get a fixed share of the machine.
        let sessions = self.live.session_count().max(1) as f64;
        self.transcriber.set_partial_cpu_share(
            (PARTIAL_CPU_BUDGET_CORES / sessions).min(StreamConfig::default().partial_cpu_share),
        );
        // Speculative finals only while nothing waits for a worker: under load they would
        // only delay the real finals.
        self.transcriber
            .set_speculative_finals(self.live.transcriber.queue_depth() == 0);
        let requests = self.transcriber.push(&audio, &events);
        self.last_audio = Some((Instant::now(), self.audio_now()));
        for e in &events {
            match *e {
                VadEvent::SpeechStart { at_s } => {
                    if let Phase::Speaking { .. } = self.phase {
                        // Barge-in: the applicant talks over the question.
                        self.live.metrics.inc_barge_ins();
                        self.stop_playback().await;
                        self.start_listening(at_s).await;
                    }
                    self.turn.voice_start(at_s);
                    if matches!(self.phase, Phase::Listening { .. }) {
                        self.answer.first_voice_s.get_or_insert(at_s);
                    }
                }
                VadEvent::SpeechEnd { at_s } => {
                    self.turn.voice_end(at_s);
                    if matches!(self.phase, Phase::Listening { .. }) {
                        self.answer.last_voice_s = Some(at_s);
                        self.last_voice_wall = Some(Instant::now());
                    }
                }
            }
        }
        self.submit(requests);
        for event in self.transcriber.drain_ready() {
            self.on_transcript(event).await;
        }
        self.poll_turn().await;
    }

    fn submit(&mut self, requests: Vec<AsrRequest>) {
        for request in requests {
            self.backlog.push_back(request);
        }
        while let Some(request) = self.backlog.pop_front() {
            let tx = self.asr_tx.clone();
            let (id, kind) = (request.id, request.kind);
            let job = AsrJob {
                kind,
                samples: request.samples,
                options: request.options,
                reply: Box::new(move |result| match kind {
                    // Finals are never dropped: wait for room (the session drains quickly).
                    JobKind::Final => {
                        let _ = tx.blocking_send((id, result, kind));
                    }
                    JobKind::Partial => {
                        let _ = tx.try_send((id, result, kind));
                    }
                }),
            };
            if let Err(rejected) = self.live.transcriber.submit(job) {
                match kind {
                    JobKind::Final => {
                        let job = rejected.job;
                        self.backlog.push_front(AsrRequest {
                            id,
                            kind,
                            utterance: 0,
                            samples: job.samples,
                            options: job.options,
                        });
                        break;
                    }
                    JobKind::Partial => {
                        self.live.metrics.inc_partials_dropped();
                        // Tell the transcriber the partial will not come.
                        let _ = self.transcriber.on_result(id, Err(AsrError::Dropped));
                    }
                }
            }
        }
    }

    async fn on_asr(&mut self, (id, result, kind): AsrResult) {
        let result = match result {
            Ok(output) => {
                let stage = match kind {
                    JobKind::Final => Stage::FinalTranscription,
                    JobKind::Partial => Stage::PartialTranscription,
                };
                self.live.metrics.observe(stage, output.compute);
                self.transcriber
                    .observe_cost(id, output.compute.as_secs_f64());
                Ok(output.segments)
            }
            Err(AsrError::Dropped) => {
                self.live.metrics.inc_partials_dropped();
                Err(AsrError::Dropped)
            }
            Err(cancelled @ AsrError::Cancelled { .. }) => {
                self.live.metrics.inc_decodes_cancelled();
                Err(cancelled)
            }
            Err(e) => Err(e),
        };
        for event in self.transcriber.on_result(id, result) {
            self.on_transcript(event).await;
        }
        self.poll_turn().await;
    }

    async fn on_transcript(&mut self, event: TranscriptEvent) {
        match event {
            TranscriptEvent::Partial {
                utterance,
                stable,
                unstable,
                audio_end_s,
            } => {
                let text = if unstable.is_empty() {
                    stable.clone()
                } else if stable.is_empty() {
                    unstable.clone()
                } else {
                    format!("{stable} {unstable}")
                };
                self.turn.partial(&text, audio_end_s);
                self.send_lossy(ServerMessage::Transcript {
                    text,
                    stable: Some(stable),
                    is_final: false,
                    utterance,
                    start_s: audio_end_s,
                    end_s: audio_end_s,
                });
            }
            TranscriptEvent::Final {
                utterance,
                text,
                segments,
                start_s,
                end_s,
                ..
            } => {
                self.live.metrics.inc_finals();
                let belongs = match self.phase {
                    Phase::Listening { since_s } => end_s > since_s,
                    Phase::Closing { .. } => true,
                    _ => false,
                };
                if belongs {
                    self.answer.texts.push(text.clone());
                    self.answer.segments.extend(segments);
                }
                self.turn.final_text(&text, start_s, end_s);
                self.send(ServerMessage::Transcript {
                    text,
                    stable: None,
                    is_final: true,
                    utterance,
                    start_s,
                    end_s,
                })
                .await;
            }
        }
    }

    async fn on_tick(&mut self) {
        if !self.backlog.is_empty() {
            self.submit(Vec::new());
        }
        let now = self.effective_now();
        if let Phase::Speaking { until_s } = self.phase
            && self.conn.is_some()
            && now >= until_s
        {
            self.start_listening(until_s).await;
        }
        self.poll_turn().await;
        if let Some(since) = self.parked_since
            && since.elapsed() >= Duration::from_secs(self.live.settings.resume_window_secs)
        {
            tracing::info!(interview = %self.seed.interview_id, "resume window passed; closing the interview");
            self.live.metrics.dec_parked_sessions();
            self.parked_since = None;
            self.live.metrics.inc_live_sessions();
            self.finish(None).await;
        }
    }

    async fn engine_tick(&mut self) {
        if matches!(self.phase, Phase::NotStarted | Phase::Done) || self.parked_since.is_some() {
            return;
        }
        let at_s = self.interview_clock();
        let actions = self.engine.handle(Event::Tick { at_s });
        if !actions.is_empty() {
            let label = self.current_label();
            self.commit(&label, LoggedEvent::Tick { at_s }, None).await;
            self.apply(actions, None).await;
        }
    }

    async fn start_listening(&mut self, at_s: f64) {
        self.phase = Phase::Listening { since_s: at_s };
        self.turn.start_question(at_s);
        self.send(ServerMessage::State {
            state: SessionState::Listening,
        })
        .await;
    }

    async fn stop_playback(&mut self) {
        if let Some(peer) = self.conn.as_ref().and_then(|c| c.peer.as_ref()) {
            peer.stop_playback();
        }
        self.send(ServerMessage::StopAudio).await;
    }

    async fn poll_turn(&mut self) {
        if self.conn.is_none() {
            // Parked: nobody is there to answer; the clock of the answer stands still.
            return;
        }
        let now = self.effective_now();
        match self.phase {
            Phase::Listening { .. } => {
                let audio_flowing = self
                    .last_audio
                    .is_some_and(|(at, _)| at.elapsed() < ONSET_HOLD_MAX);
                if audio_flowing
                    && self
                        .conn
                        .as_ref()
                        .is_some_and(|c| c.front.vad().onset_pending())
                {
                    // Sound is rising: the speaker may be going on. The next audio push either
                    // confirms the voice start, which cancels the silence, or polls again
                    // (held only while audio keeps coming, so a stalled stream cannot hold
                    // the turn open).
                    return;
                }
                let timer = Instant::now();
                let decision = self.turn.poll(now);
                self.live
                    .metrics
                    .observe(Stage::TurnDecision, timer.elapsed());
                if let Some(decision) = decision {
                    self.decided_at = Some(Instant::now());
                    self.phase = Phase::Closing {
                        reason: decision.reason,
                    };
                    self.send(ServerMessage::State {
                        state: SessionState::Thinking,
                    })
                    .await;
                    if self.transcriber.utterance_open() {
                        let requests = self.transcriber.finish();
                        self.submit(requests);
                    }
                }
            }
            Phase::Closing { .. } => {}
            _ => return,
        }
        if let Phase::Closing { reason } = self.phase
            && !self.transcriber.finals_pending()
            && !self.transcriber.utterance_open()
        {
            tracing::debug!(?reason, "answer ended");
            self.turn_end = Some(reason.as_str());
            self.hand_over_answer(None).await;
        }
    }

    /// Hands the finished answer (spoken, or `typed`) to the interview state machine.
    async fn hand_over_answer(&mut self, typed: Option<String>) {
        let answer = std::mem::replace(&mut self.answer, AnswerSoFar::new());
        let (text, speech, is_typed) = match typed {
            Some(t) => (t, None, true),
            None => {
                let mut text = answer.text();
                if let Some(cut) = ends_with_end_phrase(&text) {
                    text.truncate(cut);
                    text = text.trim_end_matches([' ', ',', '.', ';', '-']).to_string();
                }
                let words = text.split_whitespace().count();
                (text, Some(answer.features(words)), false)
            }
        };
        let at_s = self.interview_clock();
        let actions = self.engine.handle(Event::Answer {
            text: text.clone(),
            at_s,
            speech: speech.clone(),
            typed: is_typed,
        });
        let timings = self.engine.last_timings();
        self.live.metrics.observe(Stage::Scoring, timings.scoring);
        self.live
            .metrics
            .observe(Stage::Selection, timings.selection);
        let scored = actions.iter().find_map(|a| match a {
            Action::Scored { result, .. } => serde_json::to_value(&result.score).ok(),
            _ => None,
        });
        let logged = LoggedEvent::Answer {
            text,
            at_s,
            speech,
            typed: is_typed,
        };
        let voice_wall = self.last_voice_wall.take();
        // Committed before anything else happens, so that nothing answered is ever lost (and
        // before a finish closes the interview to writes).
        let label = self.current_label();
        self.commit(&label, logged, scored).await;
        // Compute turn latency: from the decision that the answer ended (or from the typed
        // answer's arrival) to the next question.
        self.turn_from = self.decided_at.take().or(Some(Instant::now()));
        if is_typed {
            self.turn_end = Some("typed");
        }
        self.apply(actions, voice_wall).await;
        self.turn_from = None;
        self.turn_end = None;
    }

    /// Carries out the state machine's actions.
    async fn apply(&mut self, actions: Vec<Action>, voice_wall: Option<Instant>) {
        let mut finish = None;
        for action in actions {
            match action {
                Action::Ask {
                    question,
                    text,
                    index,
                    again,
                } => {
                    let id = question_id(self.rubric, &question);
                    if let Question::Item { .. } = question
                        && let Err(e) = self
                            .live
                            .platform
                            .store
                            .record_item_asked(
                                &self.seed.interview_id,
                                &id,
                                self.live.platform.now(),
                            )
                            .await
                    {
                        tracing::warn!(error = %e, "recording the item asked");
                    }
                    self.current = Some((id.clone(), text.clone(), index));
                    self.ask(id, text, index, again).await;
                    if let Some(at) = voice_wall {
                        self.live.metrics.observe_response_latency(at.elapsed());
                    }
                }
                Action::Scored { .. } => {}
                Action::Finish { reason } => finish = Some(reason),
            }
        }
        if let Some(reason) = finish {
            self.finish(Some(reason)).await;
        }
    }

    /// Sends a question (text, then its audio) and starts speaking it.
    async fn ask(&mut self, id: String, text: String, index: usize, again: bool) {
        let now = self.audio_now();
        // A rubric item says how long a full answer runs; the turn detector is more patient
        // with a finished-sounding first point of a long answer.
        let expected = self.rubric.item(&id).map(|item| item.expected_seconds.0);
        self.turn.set_expected_answer_s(expected);
        let mode = self.live.settings.vocabulary_prompt;
        if matches!(mode, VocabularyPrompt::Item | VocabularyPrompt::ItemFirst) {
            let prompt = vocabulary_prompt(mode, self.rubric, Some(&id));
            self.transcriber.set_prompt(prompt.map(Arc::from));
        }
        self.answer = AnswerSoFar::new();
        let timer = Instant::now();
        let speech = match self.live.speech.get(&text).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "speech synthesis failed; sending text only");
                None
            }
        };
        self.live
            .metrics
            .observe(Stage::SpeechSynthesis, timer.elapsed());
        let socket_format = self.conn.as_ref().and_then(|c| c.speech);
        let mut frames = Vec::new();
        let mut audio_info = None;
        if let (Some(_), Some(format)) = (&speech, socket_format) {
            match self
                .live
                .speech
                .get_at_rate(&text, format.sample_rate)
                .await
            {
                Ok(resampled) => {
                    let pcm = resampled.to_pcm_s16le();
                    audio_info = Some(SpeechAudio {
                        encoding: "pcm_s16le".into(),
                        sample_rate: format.sample_rate,
                        duration_s: resampled.duration_s(),
                        bytes: pcm.len(),
                    });
                    frames = pcm
                        .chunks(SPEECH_CHUNK_BYTES)
                        .map(Bytes::copy_from_slice)
                        .collect();
                }
                Err(e) => tracing::warn!(error = %e, "resampling question audio"),
            }
        }
        let turn_latency_s = self.turn_from.take().map(|at| {
            let elapsed = at.elapsed();
            self.live.metrics.observe_turn_latency(elapsed);
            elapsed.as_secs_f64()
        });
        let turn_end = turn_latency_s.and(self.turn_end.take()).map(str::to_string);
        self.send(ServerMessage::Question {
            id: id.clone(),
            text: text.clone(),
            index,
            again,
            audio: audio_info,
            turn_latency_s,
            turn_end,
        })
        .await;
        if let Some(out) = self.out() {
            for frame in frames {
                let _ = out.send(Outbound::Audio(frame)).await;
            }
        }
        let duration = speech.as_ref().map_or(0.0, |s| s.duration_s());
        if let (Some(speech), Some(rec)) = (&speech, self.recorder.as_mut())
            && let Err(e) = rec.push_interviewer(now, &speech.samples, speech.sample_rate)
        {
            tracing::warn!(error = format!("{e:#}"), "recording the question");
        }
        let over_peer = speech.as_ref().is_some_and(|s| self.speak_over_peer(s));
        let audible = over_peer || socket_format.is_some();
        if audible && duration > 0.0 {
            self.phase = Phase::Speaking {
                until_s: now + duration,
            };
            self.send(ServerMessage::State {
                state: SessionState::Speaking,
            })
            .await;
            // The turn detector starts when listening starts.
        } else {
            self.start_listening(now).await;
        }
    }

    /// Plays the question on the WebRTC track, if one is connected; whether it did.
    fn speak_over_peer(&self, speech: &crate::tts::Speech) -> bool {
        let Some(peer) = self.conn.as_ref().and_then(|c| c.peer.as_ref()) else {
            return false;
        };
        match peer.play(&speech.samples, speech.sample_rate) {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "playing over WebRTC");
                false
            }
        }
    }

    /// The id of the question being answered.
    fn current_label(&self) -> String {
        self.current
            .as_ref()
            .map_or_else(|| "none".to_string(), |c| c.0.clone())
    }

    async fn commit(&mut self, label: &str, event: LoggedEvent, score: Option<serde_json::Value>) {
        let text = match &event {
            LoggedEvent::Answer { text, .. } => text.clone(),
            LoggedEvent::Repeat { .. } => "(asked to repeat the question)".into(),
            LoggedEvent::Tick { .. } => "(time limit)".into(),
        };
        let payload = serde_json::json!({ "event": event, "score": score });
        let seq = self.seq;
        self.seq += 1;
        if let Err(e) = self
            .live
            .platform
            .store
            .commit_answer(
                &self.seed.interview_id,
                seq,
                label,
                &text,
                &payload,
                self.live.platform.now(),
            )
            .await
        {
            tracing::error!(interview = %self.seed.interview_id, seq, error = %e, "committing an answer failed");
            self.send(ServerMessage::error(
                "storage",
                "your answer could not be saved; please try again in a moment",
                false,
            ))
            .await;
        }
    }

    /// Ends the interview: report, recordings, `completed`.
    async fn finish(&mut self, reason: Option<StopReason>) {
        if self.phase == Phase::Done {
            return;
        }
        self.phase = Phase::Done;
        let platform = &self.live.platform;
        let report = build_report(
            &self.engine,
            &ReportMeta {
                interview_id: self.seed.interview_id.clone(),
                generated_at: crate::platform::clock::rfc3339(platform.now()),
                quality: None,
                grader: None,
                regraded: Vec::new(),
            },
        );
        let json = serde_json::to_value(&report).unwrap_or_default();
        if let Err(e) = platform
            .store
            .complete_interview(&self.seed.interview_id, &json, platform.now())
            .await
        {
            tracing::error!(error = %e, "storing the report");
        }
        archive_report(
            &self.live,
            &self.seed.interview_id,
            self.rubric.pass.min_dimension,
            &report,
            &json,
        )
        .await;
        self.store_recordings().await;
        self.live.metrics.inc_sessions_completed();
        let report_url = self.live.report_url(&self.seed);
        self.send(ServerMessage::Completed {
            report_url,
            reason: reason.map_or("interrupted".into(), |r| {
                serde_json::to_value(r)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            }),
        })
        .await;
        if let Some(out) = self.out() {
            let _ = out.send(Outbound::Close).await;
        }
    }

    /// Finishes the recording files of this run, moves them to object storage (under a key
    /// unique to the run, so a resumed interview never overwrites an earlier run) and
    /// registers them with the interview. A file that cannot be uploaded stays in the local
    /// spool and is registered by its path, so it is not lost.
    async fn store_recordings(&mut self) {
        let Some(rec) = self.recorder.take() else {
            return;
        };
        let files = match rec.finish() {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "finishing recordings");
                return;
            }
        };
        let platform = &self.live.platform;
        let run = crate::platform::crypto::new_id("run");
        for f in files {
            let name = f
                .path
                .file_name()
                .map_or_else(|| "audio.opus".into(), |n| n.to_string_lossy().into_owned());
            let key = format!("recordings/{}/{run}/{name}", self.seed.interview_id);
            let location = match platform.objects.put_file(&key, &f.path).await {
                Ok(()) => {
                    if let Err(e) = tokio::fs::remove_file(&f.path).await {
                        tracing::warn!(path = %f.path.display(), error = %e, "removing the spooled recording");
                    }
                    key
                }
                Err(e) => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        path = %f.path.display(),
                        "could not upload a recording; keeping it in the local spool"
                    );
                    f.path.to_string_lossy().into_owned()
                }
            };
            if let Err(e) = platform
                .store
                .add_recording(&self.seed.interview_id, &location, platform.now())
                .await
            {
                tracing::warn!(error = %e, "storing the recording row");
            }
        }
        if let Some(dir) = self.spool_dir.take() {
            // Empty once every file moved; a folder still holding a file is left alone.
            let _ = tokio::fs::remove_dir(&dir).await;
        }
    }

    /// Server shutdown or a move to another instance: finish the answer in flight (its last
    /// finals, then commit it), tell the client why (`code`, `message`), and stop. The
    /// interview stays live and resumes from what was committed.
    async fn shutdown(&mut self, code: &'static str, message: &'static str) {
        if matches!(self.phase, Phase::Listening { .. } | Phase::Closing { .. }) {
            if self.transcriber.utterance_open() {
                let requests = self.transcriber.finish();
                self.submit(requests);
            }
            let deadline = tokio::time::Instant::now() + SHUTDOWN_FINALS_WAIT;
            while self.transcriber.finals_pending() {
                match tokio::time::timeout_at(deadline, self.asr_rx.recv()).await {
                    Ok(Some(result)) => {
                        let (id, r, _) = result;
                        let r = r.map(|o| o.segments);
                        for event in self.transcriber.on_result(id, r) {
                            self.on_transcript(event).await;
                        }
                    }
                    _ => break,
                }
            }
            if !self.answer.text().trim().is_empty() {
                self.hand_over_answer(None).await;
            }
        }
        self.send(ServerMessage::error(code, message, true)).await;
        if let Some(out) = self.out() {
            let _ = out.send(Outbound::Close).await;
        }
        self.store_recordings().await;
        self.phase = Phase::Done;
    }
}

impl Connection {
    fn front_channels(&self) -> u16 {
        self.front.channels() as u16
    }
}

/// The folder for this run's recordings: `<dir>/<interview>/`, or `…/part-N/` when an earlier
/// run of the same interview (before a restart) already recorded there, so nothing is
/// overwritten.
fn recording_dir(dir: &std::path::Path, interview_id: &str) -> std::path::PathBuf {
    let first = dir.join(interview_id);
    if !first.join(super::recording::APPLICANT_FILE).exists() {
        return first;
    }
    (2..)
        .map(|n| first.join(format!("part-{n}")))
        .find(|p| !p.join(super::recording::APPLICANT_FILE).exists())
        .unwrap_or(first)
}

/// Receives from an optional queue; pends forever when there is none.
async fn recv_opt<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn shift(event: VadEvent, offset: f64) -> VadEvent {
    match event {
        VadEvent::SpeechStart { at_s } => VadEvent::SpeechStart {
            at_s: at_s + offset,
        },
        VadEvent::SpeechEnd { at_s } => VadEvent::SpeechEnd {
            at_s: at_s + offset,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_is_about_the_item_it_follows_up() {
        let rubric = Rubric::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rubrics/medicine.toml"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let item = &rubric.items[3];
        let probe = question_id(&rubric, &Question::Probe { item: 3, probe: 0 });
        assert_eq!(item_of_question(&probe), item.id);
        assert_eq!(item_of_question(&item.id), item.id);
        let intro = question_id(&rubric, &Question::Intro);
        assert!(rubric.item(item_of_question(&intro)).is_none());
    }

    #[test]
    fn the_vocabulary_prompt_follows_the_question_in_the_item_modes() {
        let rubric = Rubric::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rubrics/medicine.toml"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let (index, item) = rubric
            .items
            .iter()
            .enumerate()
            .find(|(_, i)| rubric.item_prompt(i, ITEM_PROMPT_CHARS).is_some())
            .expect("an item with glossary terms");
        let own = rubric.item_prompt(item, ITEM_PROMPT_CHARS).unwrap();
        let probe = question_id(
            &rubric,
            &Question::Probe {
                item: index,
                probe: 0,
            },
        );
        let intro = question_id(&rubric, &Question::Intro);
        let prompt = |mode, q: Option<&str>| vocabulary_prompt(mode, &rubric, q);

        // item_first (the default): the glossary's head before an item, the item's terms
        // first for it and for its probes, always within budget.
        let head = prompt(VocabularyPrompt::ItemFirst, None).unwrap();
        assert!(head.starts_with(&rubric.glossary[0]), "{head}");
        assert_eq!(
            prompt(VocabularyPrompt::ItemFirst, Some(&intro)),
            Some(head)
        );
        for q in [item.id.as_str(), probe.as_str()] {
            let p = prompt(VocabularyPrompt::ItemFirst, Some(q)).unwrap();
            assert!(p.starts_with(&own) && p.len() > own.len(), "{q}: {p}");
            assert!(p.chars().count() <= ITEM_FIRST_PROMPT_CHARS);
        }
        // item: the item's own terms only, nothing for the intro.
        assert_eq!(
            prompt(VocabularyPrompt::Item, Some(&item.id)),
            Some(own.clone())
        );
        assert_eq!(prompt(VocabularyPrompt::Item, Some(&probe)), Some(own));
        assert_eq!(prompt(VocabularyPrompt::Item, Some(&intro)), None);
        // glossary: the whole list whatever the question; none: nothing.
        assert_eq!(
            prompt(VocabularyPrompt::Glossary, Some(&item.id)),
            Some(rubric.glossary_prompt())
        );
        assert_eq!(prompt(VocabularyPrompt::None, Some(&item.id)), None);
    }
}
