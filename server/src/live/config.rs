//! Settings of the live interview server (the `[live]` table of the configuration file, or
//! `NEXTMARK_LIVE_*` variables): transcription, speech synthesis, WebRTC, recordings, resume.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Result, bail};
use serde::Deserialize;

use super::webrtc::IceServer;
use crate::platform::config::Secret;

/// Which speech synthesizer speaks the questions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TtsBackend {
    /// The embedded espeak-ng (the default; needs no network).
    Espeak,
    /// An OpenAI-compatible `/audio/speech` endpoint.
    Openai,
}

/// Which speech-to-text backend transcribes the answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SttBackend {
    /// whisper.cpp in this process (the default).
    Local,
    /// An OpenAI-compatible `/audio/transcriptions` endpoint, local whisper as the fallback.
    Openai,
}

/// Which vocabulary prompt the transcriber gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VocabularyPrompt {
    /// The discipline's whole glossary, for every answer.
    Glossary,
    /// The glossary terms of the item being answered (`Rubric::item_prompt`); none for the
    /// intro and warm-up.
    Item,
    /// The item's glossary terms first, then the discipline's other terms, up to 250
    /// characters (`Rubric::item_first_prompt`); the glossary's head for the intro and warm-up
    /// (the default).
    ItemFirst,
    /// No prompt.
    None,
}

/// Live server settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiveSettings {
    /// The ggml Whisper model (default: the one `nextmark model install` put in NEXTMARK_HOME).
    pub model: Option<PathBuf>,
    /// Decoder workers (default: one per two cores).
    pub asr_workers: Option<usize>,
    /// whisper threads per worker (default: cores / workers).
    pub asr_threads: Option<usize>,
    /// Let a final that finds every decoder idle run on all the decoders' cores (see
    /// `PoolConfig::boost_idle_finals`): the end of an answer is transcribed ~0.1 s sooner on an
    /// idle machine, for about a fifth more CPU per stream (bench/README.md). Off by default.
    pub asr_boost_idle_finals: bool,
    /// The transcriber's vocabulary prompt. whisper.cpp computes vocabulary logits for every
    /// prompt token: the whole glossary (~200 tokens) costs ~0.15 s of decoding per utterance
    /// and ~100 MB per decoder; `item_first` (~60 tokens, the question's terms first, closed
    /// by a period so that whisper writes the period that ends an answer) costs a quarter of
    /// that; `item` or `none` are leaner still but cut into more thinking pauses
    /// (bench/README.md).
    pub vocabulary_prompt: VocabularyPrompt,
    /// Speech-to-text backend.
    pub stt: SttBackend,
    /// OpenAI-compatible transcription endpoint base URL (e.g. `http://gpu-1:8000/v1`).
    pub stt_base_url: Option<String>,
    /// Model name for the transcription endpoint.
    pub stt_model: String,
    /// Bearer key for the transcription endpoint.
    pub stt_api_key: Option<Secret>,
    /// Deadline of one transcription request, retry included, milliseconds.
    pub stt_timeout_ms: u64,
    /// Requests in flight to the endpoint at once; partial captions past it are shed.
    pub stt_max_in_flight: usize,
    /// Transcribe locally when the endpoint fails (loads the local model too).
    pub stt_fallback: bool,
    /// Live interviews this instance runs at once: its capacity. New interviews past it are
    /// refused before the socket opens (503 `at_capacity`, so a balancer can try another
    /// instance) and `/healthz` reports the load against it. Default: two per core, the
    /// concurrency at which the bench measured compute latency within its target on CPU whisper;
    /// raise it with a remote transcription endpoint.
    pub max_sessions: usize,
    /// This instance's id among those sharing the database (default: host name and port).
    pub instance_id: Option<String>,
    /// How long an interview's lease lasts without renewal, seconds: the time another instance
    /// waits before taking over the interviews of one that died.
    pub lease_secs: u64,
    /// Interview sockets open at once, before or after `hello`; more are refused with 503
    /// before the upgrade (idle sockets cost little, but not nothing).
    pub max_sockets: usize,
    /// Interview sockets open at once from one client address; more get 429.
    pub max_sockets_per_client: usize,
    /// How long a dropped session waits for its applicant to reconnect, seconds.
    pub resume_window_secs: u64,
    /// Where recordings are written, one folder per interview.
    pub recordings_dir: PathBuf,
    /// Largest accepted WebSocket frame, bytes (a second of 48 kHz stereo PCM is 192 kB).
    pub max_frame_bytes: usize,
    /// Seconds a connection may stay silent (no frame at all) before it is treated as dropped.
    pub idle_timeout_secs: u64,
    /// Speech synthesizer.
    pub tts: TtsBackend,
    /// espeak-ng voice.
    pub tts_voice: String,
    /// espeak-ng speed, words per minute.
    pub tts_wpm: u32,
    /// OpenAI-compatible speech endpoint base URL (e.g. `http://host:8000/v1`).
    pub tts_base_url: Option<String>,
    /// Model name for the speech endpoint.
    pub tts_model: String,
    /// Voice name for the speech endpoint.
    pub tts_openai_voice: String,
    /// Bearer key for the speech endpoint.
    pub tts_api_key: Option<Secret>,
    /// Where synthesized question audio is cached across restarts (default: NEXTMARK_HOME/tts).
    pub tts_cache_dir: Option<PathBuf>,
    /// Address the WebRTC media sockets bind to (`0.0.0.0` to advertise every interface).
    pub webrtc_bind_ip: IpAddr,
    /// STUN/TURN servers for deployments behind NAT.
    pub ice_servers: Vec<IceServer>,
    /// Cap on the rubric items one interview asks (default: the engine's 12); short demo and
    /// test interviews set it low.
    pub interview_max_items: Option<usize>,
    /// Render every rubric's fixed texts at start-up (off only in tests that need no voice
    /// ahead of time).
    pub prerender_speech: bool,
}

/// A `true`/`false` setting from the environment.
fn boolean(name: &str, value: &str) -> Result<bool> {
    match value {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" => Ok(false),
        other => bail!("{name}={other:?}: expected true or false"),
    }
}

impl Default for LiveSettings {
    fn default() -> Self {
        let home = crate::models::nextmark_home();
        Self {
            model: None,
            asr_workers: None,
            asr_threads: None,
            asr_boost_idle_finals: false,
            vocabulary_prompt: VocabularyPrompt::ItemFirst,
            stt: SttBackend::Local,
            stt_base_url: None,
            stt_model: "whisper-1".into(),
            stt_api_key: None,
            stt_timeout_ms: 5_000,
            stt_max_in_flight: 64,
            stt_fallback: true,
            max_sessions: 2 * crate::cli::default_threads(),
            instance_id: None,
            lease_secs: 10,
            max_sockets: 2048,
            max_sockets_per_client: 32,
            resume_window_secs: 120,
            recordings_dir: home.join("recordings"),
            max_frame_bytes: 256 * 1024,
            idle_timeout_secs: 45,
            tts: TtsBackend::Espeak,
            tts_voice: "en-us".into(),
            tts_wpm: 165,
            tts_base_url: None,
            tts_model: "tts-1".into(),
            tts_openai_voice: "alloy".into(),
            tts_api_key: None,
            tts_cache_dir: None,
            webrtc_bind_ip: IpAddr::from([127, 0, 0, 1]),
            ice_servers: Vec::new(),
            interview_max_items: None,
            prerender_speech: true,
        }
    }
}

impl LiveSettings {
    /// Applies one `NEXTMARK_LIVE_*` variable (`key` without the prefix); `false` if unknown.
    pub fn apply_env(&mut self, key: &str, name: &str, value: &str) -> Result<bool> {
        let num = |v: &str| -> Result<u64> {
            v.trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("{name}={v:?} is not a valid number"))
        };
        match key {
            "MODEL" => self.model = Some(PathBuf::from(value)),
            "ASR_WORKERS" => self.asr_workers = Some(num(value)? as usize),
            "ASR_THREADS" => self.asr_threads = Some(num(value)? as usize),
            "STT" => {
                self.stt = match value {
                    "local" => SttBackend::Local,
                    "openai" => SttBackend::Openai,
                    other => bail!("{name}={other:?}: expected local or openai"),
                }
            }
            "VOCABULARY_PROMPT" => {
                self.vocabulary_prompt = match value {
                    "glossary" => VocabularyPrompt::Glossary,
                    "item" => VocabularyPrompt::Item,
                    "item_first" => VocabularyPrompt::ItemFirst,
                    "none" => VocabularyPrompt::None,
                    other => bail!("{name}={other:?}: expected glossary, item, item_first or none"),
                }
            }
            "STT_BASE_URL" => self.stt_base_url = Some(value.into()),
            "STT_MODEL" => self.stt_model = value.into(),
            "STT_API_KEY" => self.stt_api_key = Some(Secret::new(value)),
            "STT_TIMEOUT_MS" => self.stt_timeout_ms = num(value)?,
            "STT_MAX_IN_FLIGHT" => self.stt_max_in_flight = num(value)? as usize,
            "STT_FALLBACK" => self.stt_fallback = boolean(name, value)?,
            "ASR_BOOST_IDLE_FINALS" => self.asr_boost_idle_finals = boolean(name, value)?,
            "MAX_SESSIONS" => self.max_sessions = num(value)? as usize,
            "INSTANCE_ID" => self.instance_id = Some(value.into()),
            "LEASE_SECS" => self.lease_secs = num(value)?,
            "MAX_SOCKETS" => self.max_sockets = num(value)? as usize,
            "MAX_SOCKETS_PER_CLIENT" => self.max_sockets_per_client = num(value)? as usize,
            "RESUME_WINDOW_SECS" => self.resume_window_secs = num(value)?,
            "RECORDINGS_DIR" => self.recordings_dir = PathBuf::from(value),
            "MAX_FRAME_BYTES" => self.max_frame_bytes = num(value)? as usize,
            "IDLE_TIMEOUT_SECS" => self.idle_timeout_secs = num(value)?,
            "TTS" => {
                self.tts = match value {
                    "espeak" => TtsBackend::Espeak,
                    "openai" => TtsBackend::Openai,
                    other => bail!("{name}={other:?}: expected espeak or openai"),
                }
            }
            "INTERVIEW_MAX_ITEMS" => self.interview_max_items = Some(num(value)? as usize),
            "TTS_VOICE" => self.tts_voice = value.into(),
            "TTS_WPM" => self.tts_wpm = num(value)? as u32,
            "TTS_BASE_URL" => self.tts_base_url = Some(value.into()),
            "TTS_MODEL" => self.tts_model = value.into(),
            "TTS_OPENAI_VOICE" => self.tts_openai_voice = value.into(),
            "TTS_API_KEY" => self.tts_api_key = Some(Secret::new(value)),
            "TTS_CACHE_DIR" => self.tts_cache_dir = Some(PathBuf::from(value)),
            "WEBRTC_BIND_IP" => {
                self.webrtc_bind_ip = value
                    .parse()
                    .map_err(|_| anyhow::anyhow!("{name}={value:?} is not an IP address"))?
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Rejects settings that cannot work, naming the setting.
    pub fn check(&self) -> Result<()> {
        if self.max_sessions == 0 {
            bail!("live.max_sessions must be at least 1");
        }
        if self.stt == SttBackend::Openai && self.stt_base_url.is_none() {
            bail!("live.stt = \"openai\" needs live.stt_base_url");
        }
        if self.stt_timeout_ms == 0 || self.stt_max_in_flight == 0 {
            bail!("live.stt_timeout_ms and live.stt_max_in_flight must be at least 1");
        }
        if self.lease_secs < 2 {
            bail!("live.lease_secs must be at least 2");
        }
        if self
            .instance_id
            .as_deref()
            .is_some_and(|id| id.trim().is_empty() || id.len() > 200)
        {
            bail!("live.instance_id must be 1 to 200 characters");
        }
        if self.max_sockets == 0 || self.max_sockets_per_client == 0 {
            bail!("live.max_sockets and live.max_sockets_per_client must be at least 1");
        }
        if self.max_frame_bytes < 4096 {
            bail!("live.max_frame_bytes must be at least 4096");
        }
        if self.tts == TtsBackend::Openai && self.tts_base_url.is_none() {
            bail!("live.tts = \"openai\" needs live.tts_base_url");
        }
        if self.idle_timeout_secs < 5 {
            bail!("live.idle_timeout_secs must be at least 5");
        }
        Ok(())
    }
}
