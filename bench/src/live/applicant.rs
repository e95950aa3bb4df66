//! The simulated applicant: one task per interview that talks to the live server as a client
//! would. After each `question` it plays the next fixture answer at real-time pace in 20 ms
//! frames (PCM on the socket, or Opus over a WebRTC call), keeps streaming silence between
//! answers as a microphone does, and records when every frame went out, so that each server
//! event can be set against the audio it answers.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use nextmark_engine::audio::{DecodeLimits, StreamResampler, decode_file};
use nextmark_engine::text::word_errors;
use nextmark_server::live::protocol::ServerMessage;
use nextmark_server::live::webrtc::test_client::WebRtcTestClient;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::fixtures::Clip;

/// Length of one microphone frame, seconds.
pub const FRAME_S: f64 = 0.02;
/// Length of one microphone frame.
const FRAME: Duration = Duration::from_millis(20);
/// Samples in a 20 ms frame at 16 kHz (socket PCM).
const FRAME_16K: usize = 320;
/// Samples in a 20 ms frame at 48 kHz (WebRTC).
const FRAME_48K: usize = 960;
/// Silence is sent over WebRTC in chunks of this many frames (an answer starts at most this
/// late after its question).
const SILENCE_CHUNK_FRAMES: usize = 5;
/// How long a session may wait for the socket, `ready` and the WebRTC call.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long after the end of an answer clip the next question may take before the session is
/// given up as stuck.
const TURN_TIMEOUT: Duration = Duration::from_secs(60);
/// Server messages buffered between the socket reader and the session loop.
const INBOX_CAPACITY: usize = 512;
/// Commands buffered for the microphone task.
const MIC_CAPACITY: usize = 8;
/// How long the session waits after its last question to hear that question's speech.
const SPEECH_WAIT: Duration = Duration::from_secs(5);
/// A sample this loud (−40 dBFS) is audible: the spoken question has started.
const AUDIBLE_LEVEL: f32 = 0.01;

/// How the microphone reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// 16 kHz mono PCM in binary WebSocket frames; questions spoken as 16 kHz PCM frames on the
    /// same socket.
    Ws,
    /// Opus over a WebRTC call signalled on the socket; questions are spoken over the call.
    Webrtc,
}

impl Transport {
    /// The option value: `ws` or `webrtc`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Ws => "ws",
            Transport::Webrtc => "webrtc",
        }
    }
}

/// A fixture answer ready to be played.
#[derive(Debug)]
pub struct ClipAudio {
    /// Its manifest entry.
    pub clip: Clip,
    /// Mono 16 kHz samples.
    pub pcm_16k: Vec<f32>,
    /// Mono 48 kHz samples (WebRTC only), upsampled from `pcm_16k`.
    pub pcm_48k: Option<Vec<f32>>,
}

impl ClipAudio {
    /// Decodes `clip` from `fixtures`, resamples it to 16 kHz (and to 48 kHz if `with_48k`).
    pub fn load(fixtures: &std::path::Path, clip: &Clip, with_48k: bool) -> Result<ClipAudio> {
        let path = fixtures.join(&clip.file);
        let audio = decode_file(&path, DecodeLimits::default())
            .with_context(|| format!("decoding {}", path.display()))?;
        let mut resampler = StreamResampler::new(audio.sample_rate)
            .with_context(|| format!("resampling {}", clip.file))?;
        let mut pcm_16k = Vec::with_capacity(audio.samples.len());
        resampler.push(&audio.samples, &mut pcm_16k)?;
        resampler.flush(&mut pcm_16k)?;
        let pcm_48k = with_48k.then(|| upsample_3x(&pcm_16k));
        Ok(ClipAudio {
            clip: clip.clone(),
            pcm_16k,
            pcm_48k,
        })
    }

    /// Length, seconds.
    pub fn duration_s(&self) -> f64 {
        self.pcm_16k.len() as f64 / 16_000.0
    }

    /// 20 ms frames the clip takes (the last one padded with silence).
    fn frames(&self) -> usize {
        self.pcm_16k.len().div_ceil(FRAME_16K)
    }
}

/// Half-width of the interpolation kernel of [`upsample_3x`], in input samples.
const SINC_HALF_WIDTH: isize = 16;

/// 16 kHz → 48 kHz by Hann-windowed sinc interpolation (band limit 8 kHz). Every third output
/// sample is an input sample unchanged.
pub fn upsample_3x(input: &[f32]) -> Vec<f32> {
    let n = input.len();
    let mut out = Vec::with_capacity(3 * n);
    // The kernel for the two fractional phases (1/3 and 2/3), computed once.
    let kernel = |phase: f64| -> Vec<f64> {
        (-SINC_HALF_WIDTH + 1..=SINC_HALF_WIDTH)
            .map(|k| {
                let d = phase - k as f64;
                let sinc = if d == 0.0 {
                    1.0
                } else {
                    (std::f64::consts::PI * d).sin() / (std::f64::consts::PI * d)
                };
                let w =
                    0.5 + 0.5 * (std::f64::consts::PI * d / (SINC_HALF_WIDTH as f64 + 1.0)).cos();
                sinc * w
            })
            .collect()
    };
    let kernels = [kernel(1.0 / 3.0), kernel(2.0 / 3.0)];
    for i in 0..n {
        out.push(input[i]);
        for taps in &kernels {
            let mut acc = 0.0f64;
            for (j, k) in (-SINC_HALF_WIDTH + 1..=SINC_HALF_WIDTH).enumerate() {
                let idx = i as isize + k;
                if idx >= 0 && (idx as usize) < n {
                    acc += f64::from(input[idx as usize]) * taps[j];
                }
            }
            out.push(acc as f32);
        }
    }
    out
}

/// Mono f32 in [-1, 1] as signed 16-bit little-endian PCM.
pub fn to_pcm_s16le(samples: &[f32]) -> Vec<u8> {
    samples
        .iter()
        .flat_map(|s| ((s.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes())
        .collect()
}

/// Where an answer clip sits in the microphone stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Play {
    /// The turn it answers (0-based).
    pub turn: usize,
    /// Index of its first frame in the stream.
    pub first_frame: usize,
    /// Frames of the whole clip.
    pub frames: usize,
}

/// The timeline of one microphone stream: when each frame went out. Frame `k` carries session
/// audio `[k·20 ms, (k+1)·20 ms)`, the server's audio clock.
#[derive(Debug, Default)]
pub struct MicLog {
    /// Seconds since the bench started at which each frame was sent. Over WebRTC the frames of
    /// the chunk being sent are entered with their paced send times when the chunk starts
    /// (and removed again if it is cut short), so a time later than now is a frame not sent
    /// yet.
    pub frame_at_s: Vec<f64>,
    /// The clips played, in order.
    pub plays: Vec<Play>,
}

impl MicLog {
    /// When the audio up to session time `audio_s` had been sent: the send time of the frame
    /// holding the last sample before `audio_s`.
    pub fn sent_at(&self, audio_s: f64) -> Option<f64> {
        if audio_s.is_nan() || audio_s <= 0.0 {
            return None;
        }
        let frame = ((audio_s / FRAME_S - 1e-9).ceil() as usize).checked_sub(1)?;
        self.frame_at_s.get(frame).copied()
    }

    /// The play of `turn`, if its clip started.
    pub fn play(&self, turn: usize) -> Option<Play> {
        self.plays.iter().rev().find(|p| p.turn == turn).copied()
    }
}

/// What the client saw of one answer when the server moved on at `ended_at_s`.
#[derive(Debug, Clone, Default)]
pub struct Judgement {
    /// Send time of the clip's first frame.
    pub clip_started_at_s: Option<f64>,
    /// Send time of the frame holding the clip's sample at `last_voiced_s`, if it was sent
    /// before the server moved on.
    pub voiced_end_sent_at_s: Option<f64>,
    /// The server moved on before the end of the answer's speech was sent.
    pub cut_in: bool,
    /// Clip time reached when it did (cut-ins only), seconds.
    pub cut_at_clip_s: Option<f64>,
    /// The listed pause of the clip that position falls in (cut-ins only).
    pub cut_in_pause: Option<crate::fixtures::Pause>,
}

/// Judges turn `turn` answered with `clip`, ended by a server event at `ended_at_s`.
pub fn judge(log: &MicLog, turn: usize, clip: &Clip, ended_at_s: f64) -> Judgement {
    let Some(play) = log.play(turn) else {
        return Judgement {
            cut_in: true,
            cut_at_clip_s: Some(0.0),
            ..Judgement::default()
        };
    };
    let sent_by = |frame: usize| {
        log.frame_at_s
            .get(frame)
            .copied()
            .filter(|t| *t <= ended_at_s)
    };
    let last_voiced_s = clip.last_voiced_s.unwrap_or(0.0);
    let voiced_frame = ((last_voiced_s / FRAME_S).floor() as usize).min(play.frames.max(1) - 1);
    let voiced_end_sent_at_s = sent_by(play.first_frame + voiced_frame);
    let mut judgement = Judgement {
        clip_started_at_s: log.frame_at_s.get(play.first_frame).copied(),
        voiced_end_sent_at_s,
        ..Judgement::default()
    };
    if voiced_end_sent_at_s.is_none() {
        let sent = (play.first_frame..play.first_frame + play.frames)
            .take_while(|f| sent_by(*f).is_some())
            .count();
        let at = sent as f64 * FRAME_S;
        judgement.cut_in = true;
        judgement.cut_at_clip_s = Some(at);
        judgement.cut_in_pause = clip
            .pauses
            .iter()
            .find(|p| p.start_s <= at && at <= p.end_s)
            .cloned();
    }
    judgement
}

/// One answered question: a line of `turns.jsonl`.
#[derive(Debug, Clone, Serialize)]
pub struct TurnRecord {
    /// Concurrency level (sessions running together).
    pub level: usize,
    /// Session number within the level (0-based).
    pub session: usize,
    /// Turn number within the session (1-based).
    pub turn: usize,
    /// `id` of the question answered.
    pub question_id: String,
    /// Its `index`.
    pub question_index: usize,
    /// When the question arrived, seconds since the bench started.
    pub question_at_s: f64,
    /// The fixture file played as the answer.
    pub clip: String,
    /// The clip's `last_voiced_s` (end of its speech on its own clock).
    pub clip_last_voiced_s: f64,
    /// When the clip's first frame was sent.
    pub clip_started_at_s: Option<f64>,
    /// When the frame holding the sample at `last_voiced_s` was sent.
    pub voiced_end_sent_at_s: Option<f64>,
    /// What ended the turn: `question`, `completed`, or `failed` (the session broke off).
    pub ended_by: String,
    /// When that event arrived.
    pub ended_at_s: Option<f64>,
    /// `id` of the next question.
    pub next_question_id: Option<String>,
    /// Voice turn latency: next question's arrival − `voiced_end_sent_at_s` (no cut-in only).
    pub voice_turn_latency_s: Option<f64>,
    /// When the first audible sample of the next question's speech was heard (socket: arrival
    /// of its first audio frame + the leading silence before that sample; WebRTC: arrival of
    /// the first audible packet), seconds since the bench started.
    pub speech_heard_at_s: Option<f64>,
    /// Speech turn latency: `speech_heard_at_s − voiced_end_sent_at_s` (no cut-in only).
    pub speech_turn_latency_s: Option<f64>,
    /// The next question's `turn_latency_s` (server-measured).
    pub server_turn_latency_s: Option<f64>,
    /// The next question's `turn_end`: the server's reason for ending the answer.
    pub turn_end: Option<String>,
    /// The server moved on before the answer's last voiced sample was sent.
    pub cut_in: bool,
    /// Clip position when it did, seconds.
    pub cut_at_clip_s: Option<f64>,
    /// Whether that position was inside one of the clip's listed pauses.
    pub cut_in_pause: Option<bool>,
    /// That pause's `kind`.
    pub cut_pause_kind: Option<String>,
    /// Last final transcript of the turn: arrival − `voiced_end_sent_at_s`.
    pub end_of_answer_final_lag_s: Option<f64>,
    /// Final transcripts received in the turn.
    pub finals: usize,
    /// Partial captions received in the turn.
    pub partials: usize,
    /// The turn's final texts joined.
    pub text: String,
    /// Word errors against the clip's `reference_text`.
    pub word_errors: usize,
    /// Words in the normalised reference.
    pub reference_words: usize,
    /// `word_errors / reference_words`.
    pub wer: f64,
}

/// A caption (`transcript` event): a line of `captions.jsonl`.
#[derive(Debug, Clone, Serialize)]
pub struct CaptionRecord {
    /// Concurrency level.
    pub level: usize,
    /// Session within the level.
    pub session: usize,
    /// Turn it arrived in (1-based); `None` before the first question.
    pub turn: Option<usize>,
    /// `final` or `partial`.
    pub kind: &'static str,
    /// Utterance number.
    pub utterance: u64,
    /// The text.
    pub text: String,
    /// Session audio clock, seconds.
    pub start_s: f64,
    /// Session audio clock, seconds.
    pub end_s: f64,
    /// Arrival, seconds since the bench started.
    pub at_s: f64,
    /// When the audio up to `end_s` had been sent.
    pub audio_sent_at_s: Option<f64>,
    /// `at_s − audio_sent_at_s`.
    pub lag_s: Option<f64>,
}

/// A server message as received: a line of `messages.jsonl`.
#[derive(Debug, Clone, Serialize)]
pub struct MessageRecord {
    /// Concurrency level.
    pub level: usize,
    /// Session within the level.
    pub session: usize,
    /// Arrival, seconds since the bench started.
    pub at_s: f64,
    /// The JSON message.
    pub message: Value,
}

/// An `error` event from the server.
#[derive(Debug, Clone, Serialize)]
pub struct ServerError {
    /// Arrival, seconds since the bench started.
    pub at_s: f64,
    /// Its `code`.
    pub code: String,
    /// Its `message`.
    pub message: String,
    /// Whether the server closed the connection.
    pub fatal: bool,
}

/// One session: a line of `sessions.jsonl`.
#[derive(Debug, Clone, Serialize)]
pub struct SessionRecord {
    /// Concurrency level.
    pub level: usize,
    /// Session within the level.
    pub session: usize,
    /// The demo interview.
    pub interview_id: String,
    /// `ws` or `webrtc`.
    pub transport: Transport,
    /// The clips planned, one per turn.
    pub clips: Vec<String>,
    /// When the session started connecting, seconds since the bench started.
    pub started_at_s: f64,
    /// When it ended.
    pub ended_at_s: f64,
    /// Turns answered and closed by a server event.
    pub turns: usize,
    /// `bye` (all turns done), `completed` (the interview ended first) or `failed`.
    pub outcome: String,
    /// The `completed` event's reason.
    pub completed_reason: Option<String>,
    /// Why the session failed.
    pub failure: Option<String>,
    /// Every `error` event.
    pub errors: Vec<ServerError>,
    /// `stop_audio` events (the server heard speech over a question being spoken).
    pub stop_audio: usize,
    /// WebRTC: seconds from the offer to a connected call.
    pub webrtc_connect_s: Option<f64>,
}

/// Everything one session recorded.
#[derive(Debug)]
pub struct SessionOutcome {
    /// The session line.
    pub session: SessionRecord,
    /// Its turns.
    pub turns: Vec<TurnRecord>,
    /// Its captions.
    pub captions: Vec<CaptionRecord>,
    /// Every server message.
    pub messages: Vec<MessageRecord>,
}

/// What one session is to do.
#[derive(Debug, Clone)]
pub struct SessionPlan {
    /// Concurrency level it belongs to.
    pub level: usize,
    /// Its number within the level.
    pub session: usize,
    /// The demo interview.
    pub interview_id: String,
    /// Its socket.
    pub ws_url: String,
    /// Socket PCM or WebRTC.
    pub transport: Transport,
    /// The answer clip of each turn; as many turns as clips.
    pub clips: Vec<Arc<ClipAudio>>,
    /// The bench's time origin.
    pub origin: Instant,
    /// Wait this long before connecting (staggered starts).
    pub start_delay: Duration,
}

/// Runs one simulated applicant to the end; failures are recorded, never raised.
pub async fn run(plan: SessionPlan) -> SessionOutcome {
    tokio::time::sleep(plan.start_delay).await;
    let mut session = Session::new(&plan);
    let result = session.drive().await;
    session.finish(result)
}

/// How a session ended normally.
#[derive(Debug, Clone, PartialEq)]
enum Ending {
    /// Every turn answered; `bye` is sent.
    Bye,
    /// The server completed the interview first.
    Completed(String),
}

/// Messages from the socket reader task.
#[derive(Debug)]
enum Inbound {
    /// A text frame and its arrival time.
    Text(f64, String),
    /// A binary frame (question audio) and its arrival time.
    Audio(f64, Vec<u8>),
    /// The socket closed (with the reason, if any).
    Closed(f64, Option<String>),
}

/// Commands to the microphone task.
#[derive(Debug)]
enum MicCommand {
    /// Play this clip for this turn now (cutting short whatever clip is playing).
    Play(usize, Arc<ClipAudio>),
    /// Stop the stream.
    Stop,
}

/// The socket, shared by the session loop (control messages) and the PCM microphone.
type Sink = Arc<tokio::sync::Mutex<SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>>>;

/// Locks the microphone log (a panicked holder leaves usable data).
fn lock(log: &Mutex<MicLog>) -> MutexGuard<'_, MicLog> {
    log.lock().unwrap_or_else(|p| p.into_inner())
}

/// Locks the speech onsets (a panicked holder leaves usable data).
fn lock_onsets(onsets: &Mutex<Vec<f64>>) -> MutexGuard<'_, Vec<f64>> {
    onsets.lock().unwrap_or_else(|p| p.into_inner())
}

/// How much earlier than its question event a speech onset may be stamped and still belong to
/// it: the call's packets and the socket's event travel separately.
const ONSET_SLACK_S: f64 = 0.05;

/// The first speech onset of the question that arrived at `question_at_s`: the earliest one no
/// more than [`ONSET_SLACK_S`] before it.
pub fn first_onset_after(onsets: &[f64], question_at_s: f64) -> Option<f64> {
    onsets
        .iter()
        .copied()
        .find(|t| *t >= question_at_s - ONSET_SLACK_S)
        .map(|t| t.max(question_at_s))
}

/// Seconds since `origin`.
fn secs(origin: Instant) -> f64 {
    origin.elapsed().as_secs_f64()
}

/// Sends one JSON message.
async fn send_json(sink: &Sink, value: &Value) -> Result<()> {
    sink.lock()
        .await
        .send(Message::text(value.to_string()))
        .await
        .context("sending a message on the interview socket")
}

/// Forwards text frames with their arrival times until the socket closes.
async fn read_socket(
    mut stream: SplitStream<WebSocketStream<MaybeTlsStream<TcpStream>>>,
    inbox: mpsc::Sender<Inbound>,
    origin: Instant,
) {
    while let Some(message) = stream.next().await {
        let at = secs(origin);
        let inbound = match message {
            Ok(Message::Text(text)) => Inbound::Text(at, text.to_string()),
            Ok(Message::Close(frame)) => Inbound::Closed(at, frame.map(|f| f.reason.to_string())),
            Ok(Message::Binary(bytes)) => Inbound::Audio(at, bytes.to_vec()),
            // Pings and pongs.
            Ok(_) => continue,
            Err(e) => Inbound::Closed(at, Some(e.to_string())),
        };
        let closed = matches!(inbound, Inbound::Closed(..));
        if inbox.send(inbound).await.is_err() || closed {
            return;
        }
    }
    let _ = inbox.send(Inbound::Closed(secs(origin), None)).await;
}

/// The PCM microphone: one 20 ms frame per tick, from the clip playing or silence.
async fn ws_mic(
    sink: Sink,
    log: Arc<Mutex<MicLog>>,
    mut commands: mpsc::Receiver<MicCommand>,
    origin: Instant,
) -> Result<()> {
    let mut ticker = tokio::time::interval(FRAME);
    let mut playing: Option<(Arc<ClipAudio>, usize)> = None;
    let mut frame = [0.0f32; FRAME_16K];
    loop {
        tokio::select! {
            biased;
            command = commands.recv() => match command {
                None | Some(MicCommand::Stop) => return Ok(()),
                Some(MicCommand::Play(turn, audio)) => {
                    let mut log = lock(&log);
                    let first_frame = log.frame_at_s.len();
                    log.plays.push(Play { turn, first_frame, frames: audio.frames() });
                    playing = Some((audio, 0));
                }
            },
            _ = ticker.tick() => {
                frame.fill(0.0);
                let mut finished = false;
                if let Some((audio, pos)) = playing.as_mut() {
                    let end = (*pos + FRAME_16K).min(audio.pcm_16k.len());
                    frame[..end - *pos].copy_from_slice(&audio.pcm_16k[*pos..end]);
                    *pos = end;
                    finished = end >= audio.pcm_16k.len();
                }
                if finished {
                    playing = None;
                }
                let bytes = to_pcm_s16le(&frame);
                lock(&log).frame_at_s.push(secs(origin));
                sink.lock()
                    .await
                    .send(Message::binary(bytes))
                    .await
                    .context("sending microphone audio")?;
            }
        }
    }
}

/// The WebRTC microphone: whole clips and 100 ms silence chunks through
/// [`WebRtcTestClient::send_pcm_realtime`], each started at its frame slot so the stream keeps
/// real-time pace across chunks; a new command cuts the chunk being sent short.
async fn webrtc_mic(
    peer: Arc<WebRtcTestClient>,
    log: Arc<Mutex<MicLog>>,
    mut commands: mpsc::Receiver<MicCommand>,
    origin: Instant,
) -> Result<()> {
    peer.wait_connected(CONNECT_TIMEOUT).await?;
    let stream_origin = tokio::time::Instant::now();
    let silence = vec![0.0f32; FRAME_48K * SILENCE_CHUNK_FRAMES];
    let mut pending: Option<(usize, Arc<ClipAudio>)> = None;
    loop {
        let next_frame = lock(&log).frame_at_s.len();
        let due = stream_origin + FRAME * u32::try_from(next_frame).unwrap_or(u32::MAX);
        tokio::select! {
            biased;
            command = commands.recv() => match command {
                None | Some(MicCommand::Stop) => return Ok(()),
                Some(MicCommand::Play(turn, audio)) => {
                    pending = Some((turn, audio));
                    continue;
                }
            },
            _ = tokio::time::sleep_until(due) => {}
        }
        let playing = pending.take();
        let samples: &[f32] = match &playing {
            Some((_, audio)) => audio
                .pcm_48k
                .as_deref()
                .context("the clip was not prepared at 48 kHz")?,
            None => &silence,
        };
        let frames = samples.len().div_ceil(FRAME_48K);
        let started = Instant::now();
        {
            let mut log = lock(&log);
            let t0 = secs(origin);
            if let Some((turn, _)) = &playing {
                log.plays.push(Play {
                    turn: *turn,
                    first_frame: next_frame,
                    frames,
                });
            }
            log.frame_at_s
                .extend((0..frames).map(|j| t0 + j as f64 * FRAME_S));
        }
        tokio::select! {
            biased;
            command = commands.recv() => {
                // Cut short: keep only the frames already sent (the first goes at once).
                let sent = ((started.elapsed().as_secs_f64() / FRAME_S).floor() as usize + 1)
                    .min(frames);
                lock(&log).frame_at_s.truncate(next_frame + sent);
                match command {
                    None | Some(MicCommand::Stop) => return Ok(()),
                    Some(MicCommand::Play(turn, audio)) => pending = Some((turn, audio)),
                }
            }
            sent = peer.send_pcm_realtime(samples) => {
                sent.context("sending microphone audio over WebRTC")?;
            }
        }
    }
}

/// The open connection of a session.
struct Connection {
    /// The socket's write half.
    sink: Sink,
    /// Server messages from the reader task.
    inbox: mpsc::Receiver<Inbound>,
    /// The reader task.
    reader: tokio::task::JoinHandle<()>,
    /// The WebRTC peer, once created.
    peer: Option<Arc<WebRtcTestClient>>,
    /// The peer's local candidates to forward.
    candidates: Option<mpsc::Receiver<Value>>,
    /// The task listening to the interviewer's voice over the call for speech onsets.
    audio_drain: Option<tokio::task::JoinHandle<()>>,
    /// Commands to the microphone task.
    mic: Option<mpsc::Sender<MicCommand>>,
    /// The microphone task.
    mic_task: Option<tokio::task::JoinHandle<Result<()>>>,
}

impl Connection {
    /// Stops the microphone, says `bye` if asked, and closes everything.
    async fn close(mut self, bye: bool) {
        if let Some(mic) = self.mic.take() {
            let _ = mic.send(MicCommand::Stop).await;
        }
        if let Some(task) = self.mic_task.take()
            && tokio::time::timeout(Duration::from_secs(2), task)
                .await
                .is_err()
        {
            note("the microphone task did not stop within 2 s");
        }
        if bye {
            let _ = send_json(&self.sink, &json!({"type": "bye"})).await;
        }
        let _ = self.sink.lock().await.close().await;
        self.reader.abort();
        if let Some(drain) = self.audio_drain.take() {
            drain.abort();
        }
        if let Some(peer) = self.peer.take()
            && let Ok(peer) = Arc::try_unwrap(peer)
        {
            peer.close().await;
        }
    }
}

/// Notes a harmless anomaly on stderr (the bench has no tracing subscriber).
fn note(what: &str) {
    eprintln!("[live] note: {what}");
}

/// A turn being answered.
#[derive(Debug)]
struct OpenTurn {
    /// 0-based.
    index: usize,
    /// The question's `id`.
    question_id: String,
    /// The question's `index`.
    question_index: usize,
    /// Its arrival.
    at_s: f64,
    /// Final texts so far.
    finals: Vec<String>,
    /// Partial captions so far.
    partials: usize,
    /// Arrival of the last final with text.
    last_final_at_s: Option<f64>,
}

/// One session's state and records.
struct Session<'p> {
    /// What to do.
    plan: &'p SessionPlan,
    /// The microphone's timeline.
    log: Arc<Mutex<MicLog>>,
    /// The session line being filled.
    record: SessionRecord,
    /// The turn being answered.
    current: Option<OpenTurn>,
    /// Closed turns.
    turns: Vec<TurnRecord>,
    /// Every caption.
    captions: Vec<CaptionRecord>,
    /// Every server message.
    messages: Vec<MessageRecord>,
    /// When the WebRTC offer was sent.
    offer_at: Option<Instant>,
    /// Times the interviewer's voice became audible after silence, seconds since the bench
    /// started, in order (the WebRTC listener and the socket audio both add to it).
    speech_onsets: Arc<Mutex<Vec<f64>>>,
    /// The socket's question audio being scanned for its first audible sample.
    socket_speech: Option<SocketSpeech>,
}

/// The spoken question arriving on the socket, until its first audible sample.
#[derive(Debug)]
struct SocketSpeech {
    /// Its sample rate.
    sample_rate: u32,
    /// Arrival of its first frame: playback starts then.
    first_frame_at_s: Option<f64>,
    /// Samples before the current frame, all silent.
    silent_samples: usize,
    /// An odd byte left from the previous frame.
    carry: Option<u8>,
}

impl SocketSpeech {
    /// Scans one binary frame; the time its first audible sample plays, once found.
    fn scan(&mut self, at_s: f64, bytes: &[u8]) -> Option<f64> {
        let first = *self.first_frame_at_s.get_or_insert(at_s);
        let mut joined = Vec::with_capacity(bytes.len() + 1);
        joined.extend(self.carry.take());
        joined.extend_from_slice(bytes);
        if joined.len() % 2 == 1 {
            self.carry = joined.pop();
        }
        for pair in joined.chunks_exact(2) {
            let sample = f32::from(i16::from_le_bytes([pair[0], pair[1]])) / 32768.0;
            if sample.abs() >= AUDIBLE_LEVEL {
                return Some(first + self.silent_samples as f64 / f64::from(self.sample_rate));
            }
            self.silent_samples += 1;
        }
        None
    }
}

/// Listens to the interviewer's voice over the call: records the arrival of every packet that
/// is audible after one that was not.
async fn listen_for_speech(
    mut heard: mpsc::Receiver<Vec<f32>>,
    onsets: Arc<Mutex<Vec<f64>>>,
    origin: Instant,
) {
    let mut audible_before = false;
    while let Some(packet) = heard.recv().await {
        let audible = packet.iter().any(|s| s.abs() >= AUDIBLE_LEVEL);
        if audible && !audible_before {
            lock_onsets(&onsets).push(secs(origin));
        }
        audible_before = audible;
    }
}

impl<'p> Session<'p> {
    fn new(plan: &'p SessionPlan) -> Self {
        Session {
            plan,
            log: Arc::new(Mutex::new(MicLog::default())),
            record: SessionRecord {
                level: plan.level,
                session: plan.session,
                interview_id: plan.interview_id.clone(),
                transport: plan.transport,
                clips: plan.clips.iter().map(|c| c.clip.file.clone()).collect(),
                started_at_s: secs(plan.origin),
                ended_at_s: 0.0,
                turns: 0,
                outcome: String::new(),
                completed_reason: None,
                failure: None,
                errors: Vec::new(),
                stop_audio: 0,
                webrtc_connect_s: None,
            },
            current: None,
            turns: Vec::new(),
            captions: Vec::new(),
            messages: Vec::new(),
            offer_at: None,
            speech_onsets: Arc::new(Mutex::new(Vec::new())),
            socket_speech: None,
        }
    }

    /// Connects, converses, and closes the connection whatever happened.
    async fn drive(&mut self) -> Result<Ending> {
        let (socket, _) = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio_tungstenite::connect_async(self.plan.ws_url.as_str()),
        )
        .await
        .map_err(|_| anyhow!("no WebSocket connection within {CONNECT_TIMEOUT:?}"))?
        .with_context(|| format!("connecting to {}", self.plan.ws_url))?;
        let (sink, stream) = socket.split();
        let (inbox_tx, inbox) = mpsc::channel(INBOX_CAPACITY);
        let mut conn = Connection {
            sink: Arc::new(tokio::sync::Mutex::new(sink)),
            inbox,
            reader: tokio::spawn(read_socket(stream, inbox_tx, self.plan.origin)),
            peer: None,
            candidates: None,
            audio_drain: None,
            mic: None,
            mic_task: None,
        };
        let result = self.converse(&mut conn).await;
        if let Some(turn) = self.current.take() {
            let at = secs(self.plan.origin);
            self.close_turn(turn, "failed", at, None, (None, None));
        }
        conn.close(matches!(result, Ok(Ending::Bye))).await;
        result
    }

    /// The protocol: hello, ready, (WebRTC signalling), then questions and answers.
    async fn converse(&mut self, conn: &mut Connection) -> Result<Ending> {
        let hello = match self.plan.transport {
            Transport::Ws => json!({"type": "hello", "protocol": 1,
                "audio": {"encoding": "pcm_s16le", "sample_rate": 16_000, "channels": 1},
                "speech": {"sample_rate": 16_000}}),
            Transport::Webrtc => {
                json!({"type": "hello", "protocol": 1, "audio": {"encoding": "webrtc"}})
            }
        };
        send_json(&conn.sink, &hello).await?;
        let (mic_tx, mic_rx) = mpsc::channel(MIC_CAPACITY);
        conn.mic = Some(mic_tx);
        let mut mic_rx = Some(mic_rx);
        let mut deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
        loop {
            let mic_task = async {
                match conn.mic_task.as_mut() {
                    Some(task) => task.await,
                    None => std::future::pending().await,
                }
            };
            let candidate = async {
                match conn.candidates.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                inbound = conn.inbox.recv() => {
                    let inbound = inbound.context("the socket reader stopped")?;
                    let (at, text) = match inbound {
                        Inbound::Text(at, text) => (at, text),
                        Inbound::Audio(at, bytes) => {
                            self.on_socket_audio(at, &bytes);
                            continue;
                        }
                        Inbound::Closed(at, why) => bail!(
                            "the server closed the socket at {at:.1} s{}",
                            why.map(|w| format!(" ({w})")).unwrap_or_default()
                        ),
                    };
                    let value: Value = serde_json::from_str(&text)
                        .with_context(|| format!("the server sent invalid JSON: {text}"))?;
                    self.messages.push(MessageRecord {
                        level: self.plan.level,
                        session: self.plan.session,
                        at_s: at,
                        message: value.clone(),
                    });
                    let Ok(message) = serde_json::from_value::<ServerMessage>(value) else {
                        // A message this bench does not know: kept in messages.jsonl only.
                        continue;
                    };
                    if let ServerMessage::Ready { .. } = message {
                        self.start_mic(conn, &mut mic_rx).await?;
                    }
                    if let Some(ending) = self.on_message(conn, at, message, &mut deadline).await? {
                        if ending == Ending::Bye {
                            // The last question's speech still counts for the last answer.
                            self.await_speech(conn, at).await;
                        }
                        return Ok(ending);
                    }
                }
                candidate = candidate => match candidate {
                    Some(c) => send_json(&conn.sink, &json!({"type": "candidate", "candidate": c})).await?,
                    None => conn.candidates = None,
                },
                ended = mic_task => {
                    conn.mic_task = None;
                    match ended {
                        Ok(Ok(())) => bail!("the microphone stopped early"),
                        Ok(Err(e)) => return Err(e),
                        Err(e) => bail!("the microphone task failed: {e}"),
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    bail!(
                        "nothing from the server for too long (turn {} of {}): no question within {:?} after the answer",
                        self.turns.len() + 1,
                        self.plan.clips.len(),
                        TURN_TIMEOUT
                    );
                }
            }
        }
    }

    /// Scans question audio from the socket for its first audible sample.
    fn on_socket_audio(&mut self, at: f64, bytes: &[u8]) {
        if let Some(speech) = self.socket_speech.as_mut()
            && let Some(onset) = speech.scan(at, bytes)
        {
            self.socket_speech = None;
            lock_onsets(&self.speech_onsets).push(onset);
        }
    }

    /// Waits (at most [`SPEECH_WAIT`]) until the question that arrived at `question_at_s` is
    /// heard, reading the socket's audio meanwhile.
    async fn await_speech(&mut self, conn: &mut Connection, question_at_s: f64) {
        let deadline = tokio::time::Instant::now() + SPEECH_WAIT;
        loop {
            if first_onset_after(&lock_onsets(&self.speech_onsets), question_at_s).is_some() {
                return;
            }
            tokio::select! {
                inbound = conn.inbox.recv() => match inbound {
                    Some(Inbound::Audio(at, bytes)) => self.on_socket_audio(at, &bytes),
                    Some(Inbound::Text(..)) => {}
                    Some(Inbound::Closed(..)) | None => return,
                },
                // WebRTC onsets arrive from the listener task.
                _ = tokio::time::sleep(FRAME) => {}
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    }

    /// After `ready`: sets up the call (WebRTC) and starts the microphone.
    async fn start_mic(
        &mut self,
        conn: &mut Connection,
        mic_rx: &mut Option<mpsc::Receiver<MicCommand>>,
    ) -> Result<()> {
        let Some(rx) = mic_rx.take() else {
            return Ok(());
        };
        let origin = self.plan.origin;
        let task = match self.plan.transport {
            Transport::Ws => tokio::spawn(ws_mic(conn.sink.clone(), self.log.clone(), rx, origin)),
            Transport::Webrtc => {
                let (mut peer, offer) = WebRtcTestClient::new([127, 0, 0, 1].into())
                    .await
                    .context("creating the WebRTC client peer")?;
                conn.candidates = peer.take_candidates();
                if let Some(heard) = peer.take_audio() {
                    conn.audio_drain = Some(tokio::spawn(listen_for_speech(
                        heard,
                        self.speech_onsets.clone(),
                        origin,
                    )));
                }
                send_json(&conn.sink, &json!({"type": "offer", "sdp": offer})).await?;
                self.offer_at = Some(Instant::now());
                let peer = Arc::new(peer);
                conn.peer = Some(peer.clone());
                tokio::spawn(webrtc_mic(peer, self.log.clone(), rx, origin))
            }
        };
        conn.mic_task = Some(task);
        Ok(())
    }

    /// Handles one server message; `Some` when the session is over.
    async fn on_message(
        &mut self,
        conn: &mut Connection,
        at: f64,
        message: ServerMessage,
        deadline: &mut tokio::time::Instant,
    ) -> Result<Option<Ending>> {
        match message {
            ServerMessage::Question {
                id,
                index,
                audio,
                turn_latency_s,
                turn_end,
                ..
            } => {
                // Question audio on the socket follows this event.
                self.socket_speech = audio.map(|a| SocketSpeech {
                    sample_rate: a.sample_rate,
                    first_frame_at_s: None,
                    silent_samples: 0,
                    carry: None,
                });
                if let Some(open) = self.current.take() {
                    let server = (turn_latency_s, turn_end);
                    self.close_turn(open, "question", at, Some(id.clone()), server);
                }
                let answered = self.turns.len();
                if answered >= self.plan.clips.len() {
                    return Ok(Some(Ending::Bye));
                }
                if self.record.webrtc_connect_s.is_none()
                    && let Some(offer_at) = self.offer_at
                {
                    // The first question waits for the call.
                    self.record.webrtc_connect_s = Some(offer_at.elapsed().as_secs_f64());
                }
                // The applicant answers at once (as if the question had been heard already):
                // the server listens from now on, on both transports.
                send_json(&conn.sink, &json!({"type": "playback_ended"})).await?;
                let clip = Arc::clone(&self.plan.clips[answered]);
                *deadline = tokio::time::Instant::now()
                    + Duration::from_secs_f64(clip.duration_s())
                    + TURN_TIMEOUT;
                self.current = Some(OpenTurn {
                    index: answered,
                    question_id: id,
                    question_index: index,
                    at_s: at,
                    finals: Vec::new(),
                    partials: 0,
                    last_final_at_s: None,
                });
                if let Some(mic) = &conn.mic {
                    mic.send(MicCommand::Play(answered, clip))
                        .await
                        .map_err(|_| anyhow!("the microphone task has stopped"))?;
                }
            }
            ServerMessage::Transcript {
                text,
                is_final,
                utterance,
                start_s,
                end_s,
                ..
            } => {
                let sent = lock(&self.log).sent_at(end_s);
                if let Some(turn) = self.current.as_mut() {
                    if is_final {
                        if !text.trim().is_empty() {
                            turn.last_final_at_s = Some(at);
                        }
                        turn.finals.push(text.clone());
                    } else {
                        turn.partials += 1;
                    }
                }
                self.captions.push(CaptionRecord {
                    level: self.plan.level,
                    session: self.plan.session,
                    turn: self.current.as_ref().map(|t| t.index + 1),
                    kind: if is_final { "final" } else { "partial" },
                    utterance,
                    text,
                    start_s,
                    end_s,
                    at_s: at,
                    audio_sent_at_s: sent,
                    lag_s: sent.map(|s| at - s),
                });
            }
            ServerMessage::Completed { reason, .. } => {
                if let Some(open) = self.current.take() {
                    self.close_turn(open, "completed", at, None, (None, None));
                }
                return Ok(Some(Ending::Completed(reason)));
            }
            ServerMessage::Error {
                code,
                message,
                fatal,
            } => {
                self.record.errors.push(ServerError {
                    at_s: at,
                    code: code.clone(),
                    message: message.clone(),
                    fatal,
                });
                if fatal {
                    bail!("fatal error from the server: {code}: {message}");
                }
            }
            ServerMessage::StopAudio => self.record.stop_audio += 1,
            ServerMessage::Answer { sdp } => {
                let peer = conn
                    .peer
                    .as_ref()
                    .context("an SDP answer without an offer")?;
                peer.set_answer(&sdp).await?;
            }
            ServerMessage::Candidate { candidate } => {
                if let Some(peer) = conn.peer.as_ref() {
                    peer.add_remote_candidate(candidate)
                        .await
                        .context("adding the server's ICE candidate")?;
                }
            }
            ServerMessage::Ready { .. }
            | ServerMessage::State { .. }
            | ServerMessage::Pong { .. } => {}
        }
        Ok(None)
    }

    /// Closes a turn at the server event that ended it.
    fn close_turn(
        &mut self,
        turn: OpenTurn,
        ended_by: &str,
        ended_at_s: f64,
        next_question_id: Option<String>,
        (server_turn_latency_s, turn_end): (Option<f64>, Option<String>),
    ) {
        let audio = &self.plan.clips[turn.index];
        let clip = &audio.clip;
        let judged = judge(&lock(&self.log), turn.index, clip, ended_at_s);
        let text = turn
            .finals
            .iter()
            .map(|t| t.trim())
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        let (errors, words) = word_errors(&clip.reference_text, &text);
        let answered = ended_by == "question";
        let voice = judged
            .voiced_end_sent_at_s
            .filter(|_| answered)
            .map(|v| ended_at_s - v);
        eprintln!(
            "[live]   level {} session {} turn {} ({}): {}, voice latency {} s, server {} s{}",
            self.plan.level,
            self.plan.session,
            turn.index + 1,
            turn.question_id,
            if judged.cut_in && ended_by != "failed" {
                format!(
                    "CUT-IN at {:.2} s of the clip",
                    judged.cut_at_clip_s.unwrap_or(0.0)
                )
            } else {
                format!("ended by {ended_by}")
            },
            crate::output::fmt_opt(voice, 2),
            crate::output::fmt_opt(server_turn_latency_s, 2),
            turn_end
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default(),
        );
        self.turns.push(TurnRecord {
            level: self.plan.level,
            session: self.plan.session,
            turn: turn.index + 1,
            question_id: turn.question_id,
            question_index: turn.question_index,
            question_at_s: turn.at_s,
            clip: clip.file.clone(),
            clip_last_voiced_s: clip.last_voiced_s.unwrap_or(0.0),
            clip_started_at_s: judged.clip_started_at_s,
            voiced_end_sent_at_s: judged.voiced_end_sent_at_s,
            ended_by: ended_by.to_string(),
            ended_at_s: Some(ended_at_s),
            next_question_id,
            voice_turn_latency_s: voice,
            speech_heard_at_s: None,
            speech_turn_latency_s: None,
            server_turn_latency_s,
            turn_end,
            cut_in: judged.cut_in && ended_by != "failed",
            cut_at_clip_s: judged.cut_at_clip_s.filter(|_| ended_by != "failed"),
            cut_in_pause: judged
                .cut_at_clip_s
                .filter(|_| ended_by != "failed")
                .map(|_| judged.cut_in_pause.is_some()),
            cut_pause_kind: judged.cut_in_pause.and_then(|p| p.kind),
            end_of_answer_final_lag_s: match (turn.last_final_at_s, judged.voiced_end_sent_at_s) {
                (Some(f), Some(v)) => Some(f - v),
                _ => None,
            },
            finals: turn.finals.len(),
            partials: turn.partials,
            text,
            word_errors: errors,
            reference_words: words,
            wer: if words == 0 {
                errors as f64
            } else {
                errors as f64 / words as f64
            },
        });
    }

    /// The records, with the outcome filled in.
    fn finish(mut self, result: Result<Ending>) -> SessionOutcome {
        self.record.ended_at_s = secs(self.plan.origin);
        let onsets = lock_onsets(&self.speech_onsets).clone();
        for turn in &mut self.turns {
            // Only answered turns without a cut-in have a voice turn latency to extend.
            if let (Some(_), Some(ended)) = (turn.voice_turn_latency_s, turn.ended_at_s) {
                turn.speech_heard_at_s = first_onset_after(&onsets, ended);
                turn.speech_turn_latency_s = turn
                    .speech_heard_at_s
                    .zip(turn.voiced_end_sent_at_s)
                    .map(|(heard, sent)| heard - sent);
            }
        }
        self.record.turns = self.turns.iter().filter(|t| t.ended_by != "failed").count();
        match result {
            Ok(Ending::Bye) => self.record.outcome = "bye".into(),
            Ok(Ending::Completed(reason)) => {
                self.record.outcome = "completed".into();
                self.record.completed_reason = Some(reason);
            }
            Err(e) => {
                self.record.outcome = "failed".into();
                self.record.failure = Some(format!("{e:#}"));
            }
        }
        SessionOutcome {
            session: self.record,
            turns: self.turns,
            captions: self.captions,
            messages: self.messages,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::Pause;

    fn clip(last_voiced_s: f64, pauses: Vec<(f64, f64)>) -> Clip {
        Clip {
            file: "a.wav".into(),
            item_id: Some("x".into()),
            discipline: None,
            quality: "strong".into(),
            reference_text: "one two three".into(),
            first_voiced_s: Some(0.1),
            last_voiced_s: Some(last_voiced_s),
            pauses: pauses
                .into_iter()
                .map(|(start_s, end_s)| Pause {
                    start_s,
                    end_s,
                    kind: Some("mid_sentence".into()),
                })
                .collect(),
        }
    }

    /// A stream whose frame k went out at 10 + k·0.02 s, with a 1 s clip (50 frames) of turn 0
    /// starting at frame 100.
    fn log() -> MicLog {
        MicLog {
            frame_at_s: (0..300).map(|k| 10.0 + k as f64 * FRAME_S).collect(),
            plays: vec![Play {
                turn: 0,
                first_frame: 100,
                frames: 50,
            }],
        }
    }

    #[test]
    fn voice_latency_runs_from_the_frame_holding_the_last_voiced_sample() {
        let log = log();
        // last_voiced 0.5 s → frame 25 of the clip → stream frame 125, sent at 12.5 s.
        let j = judge(&log, 0, &clip(0.5, vec![]), 13.2);
        assert!(!j.cut_in);
        assert!((j.voiced_end_sent_at_s.unwrap() - 12.5).abs() < 1e-9);
        assert!((j.clip_started_at_s.unwrap() - 12.0).abs() < 1e-9);
        assert!(j.cut_at_clip_s.is_none());
    }

    #[test]
    fn a_question_before_the_last_voiced_sample_is_a_cut_in() {
        let log = log();
        // At 12.31 s frames 100..=115 of the stream were out: 16 frames = 0.32 s of clip.
        let j = judge(&log, 0, &clip(0.9, vec![(0.3, 0.4)]), 12.31);
        assert!(j.cut_in && j.voiced_end_sent_at_s.is_none());
        assert!((j.cut_at_clip_s.unwrap() - 0.32).abs() < 1e-9);
        assert_eq!(j.cut_in_pause.map(|p| p.start_s), Some(0.3));
        let j = judge(&log, 0, &clip(0.9, vec![(0.6, 0.7)]), 12.31);
        assert!(j.cut_in && j.cut_in_pause.is_none());
        // A turn whose clip never started is cut at 0.
        let j = judge(&log, 1, &clip(0.9, vec![]), 12.31);
        assert!(j.cut_in && j.cut_at_clip_s == Some(0.0));
    }

    #[test]
    fn scheduled_frames_after_the_event_do_not_count_as_sent() {
        // WebRTC enters a chunk's frames ahead with their paced times.
        let log = log();
        let j = judge(&log, 0, &clip(0.5, vec![]), 12.49);
        assert!(j.cut_in);
    }

    #[test]
    fn socket_speech_is_heard_at_its_first_audible_sample() {
        let mut speech = SocketSpeech {
            sample_rate: 16_000,
            first_frame_at_s: None,
            silent_samples: 0,
            carry: None,
        };
        // 0.1 s of silence split over two frames, the second ending in half a sample.
        let silence = to_pcm_s16le(&[0.0; 1_600]);
        assert_eq!(speech.scan(5.0, &silence[..1_001]), None);
        assert_eq!(speech.scan(5.3, &silence[1_001..]), None);
        // Then a quiet sample below the audible level, then a loud one: heard at 5.0 + 1601/16k,
        // playback having started with the first frame.
        let mut tail = to_pcm_s16le(&[0.001, 0.5]);
        tail.extend(to_pcm_s16le(&[0.5; 10]));
        let heard = speech.scan(5.6, &tail).unwrap();
        assert!((heard - (5.0 + 1_601.0 / 16_000.0)).abs() < 1e-9, "{heard}");
    }

    #[test]
    fn a_question_is_heard_at_the_first_onset_after_it_arrived() {
        let onsets = [3.0, 10.02, 10.4, 20.0];
        // An onset stamped just before the event belongs to it, at the event's time.
        assert_eq!(first_onset_after(&onsets, 10.05), Some(10.05));
        assert_eq!(first_onset_after(&onsets, 10.2), Some(10.4));
        assert_eq!(first_onset_after(&onsets, 21.0), None);
    }

    #[test]
    fn caption_audio_maps_to_the_frame_that_completed_it() {
        let log = log();
        assert_eq!(log.sent_at(0.0), None);
        assert_eq!(log.sent_at(0.02), Some(10.0));
        assert!((log.sent_at(0.03).unwrap() - 10.02).abs() < 1e-9);
        assert!((log.sent_at(2.0).unwrap() - (10.0 + 99.0 * FRAME_S)).abs() < 1e-9);
        assert_eq!(log.sent_at(100.0), None);
    }

    #[test]
    fn upsampling_keeps_input_samples_and_the_tone() {
        let x: Vec<f32> = (0..1600)
            .map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 16_000.0).sin())
            .collect();
        let y = upsample_3x(&x);
        assert_eq!(y.len(), 3 * x.len());
        assert!(x.iter().zip(y.iter().step_by(3)).all(|(a, b)| a == b));
        // Away from the edges the interpolated samples follow the 440 Hz sine at 48 kHz.
        for (n, v) in y.iter().enumerate().take(4500).skip(300) {
            let expected = (2.0 * std::f64::consts::PI * 440.0 * n as f64 / 48_000.0).sin();
            assert!((f64::from(*v) - expected).abs() < 0.01, "{n}: {v}");
        }
    }

    #[test]
    fn pcm_is_little_endian_and_clamped() {
        assert_eq!(
            to_pcm_s16le(&[0.0, 1.0, -2.0]),
            vec![0, 0, 0xff, 0x7f, 0x01, 0x80]
        );
    }
}
