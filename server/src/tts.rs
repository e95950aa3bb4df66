//! Speech synthesis of the interviewer's questions: embedded espeak-ng, an optional OpenAI-compatible endpoint, and a cache so speaking costs nothing at turn time.
//!
//! - [`Speech`] is one rendered clip: mono `f32` samples at the engine's rate, shared through an
//!   `Arc` so every session playing the same question shares one buffer.
//! - [`SpeechEngine`] is what renders text. [`Espeak`] runs the `espeak-ng` program (the
//!   embedded default: no network, no model download) with a bounded number of processes at once,
//!   so prerendering cannot starve transcription on a small machine. [`OpenAiSpeech`] calls any
//!   OpenAI-compatible `POST {base_url}/audio/speech` endpoint.
//! - [`SpeechCache`] renders each text once per engine and keeps the most recently used clips in
//!   memory (and optionally every clip on disk, so a restart does not render again). Concurrent
//!   requests for the same text wait for one rendering. [`SpeechCache::prerender`] warms it in
//!   the background with the fixed texts of a rubric (`nextmark_engine::interview::spoken_texts`),
//!   so at turn time the next question is a memory lookup or a millisecond's disk read.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::audio::{CreateSpeechRequest, SpeechModel, SpeechResponseFormat, Voice};
use async_trait::async_trait;
use audioadapter_buffers::direct::InterleavedSlice;
use nextmark_engine::audio::{DecodeLimits, check_rate, decode_bytes};
use rubato::{Fft, FixedSync, Resampler};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::{OnceCell, Semaphore};
use tokio::task::JoinHandle;

use crate::platform::config::Secret;

/// Longest endpoint or process message kept in an error, in characters: error bodies and
/// stderr can be large.
const MAX_MESSAGE_CHARS: usize = 300;

/// Scale between `f32` samples in [-1, 1] and 16-bit PCM. A power of two, so that 16-bit audio
/// survives a round trip through `f32` (the disk cache) bit for bit.
const I16_SCALE: f32 = 32_768.0;

/// Errors of speech synthesis. `Clone` so that one failure can be handed to every caller that
/// waited for the same rendering; every field is plain text or a number.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TtsError {
    /// Nothing to say.
    #[error("no text to synthesize")]
    EmptyText,
    /// The synthesizer program is not installed or not on `PATH`.
    #[error(
        "{program} is not installed or not on PATH; install it with `apt-get install -y espeak-ng` \
         (scripts/setup.sh does this) or configure another speech engine"
    )]
    NotInstalled {
        /// The program that was run.
        program: String,
    },
    /// The synthesizer program could not be run or exited with an error.
    #[error("{program} failed: {message}")]
    Process {
        /// The program that was run.
        program: String,
        /// Exit status and what it printed on stderr, or why it could not start.
        message: String,
    },
    /// The speech endpoint answered with an HTTP error.
    #[error("speech endpoint returned HTTP {status}: {message}")]
    Http {
        /// HTTP status code.
        status: u16,
        /// The endpoint's error message (from an OpenAI-style error body when there is one).
        message: String,
    },
    /// The speech endpoint could not be reached or its answer could not be read.
    #[error("speech endpoint request failed: {message}")]
    Request {
        /// What failed (connection refused, reset, …).
        message: String,
    },
    /// Synthesis took longer than the configured limit.
    #[error("speech synthesis timed out after {} ms", .after.as_millis())]
    Timeout {
        /// The limit that was hit.
        after: Duration,
    },
    /// The audio that came back could not be used.
    #[error("bad audio from the speech engine: {message}")]
    BadAudio {
        /// What was wrong with it.
        message: String,
    },
    /// The engine's settings are unusable.
    #[error("invalid speech engine settings: {message}")]
    InvalidConfig {
        /// Which setting and why.
        message: String,
    },
}

impl TtsError {
    fn bad_audio(message: impl Into<String>) -> Self {
        TtsError::BadAudio {
            message: message.into(),
        }
    }
}

/// One rendered utterance: mono samples in [-1, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Speech {
    /// Mono samples; shared, because every session that plays a question plays the same clip.
    pub samples: Arc<[f32]>,
    /// Samples per second.
    pub sample_rate: u32,
}

impl Speech {
    /// A clip from samples at `sample_rate`.
    pub fn new(samples: impl Into<Arc<[f32]>>, sample_rate: u32) -> Self {
        Speech {
            samples: samples.into(),
            sample_rate,
        }
    }

    /// Length in seconds.
    pub fn duration_s(&self) -> f64 {
        if self.sample_rate == 0 {
            return 0.0;
        }
        self.samples.len() as f64 / f64::from(self.sample_rate)
    }

    /// Level in dBFS (RMS over the whole clip, pauses included).
    pub fn rms_dbfs(&self) -> f32 {
        nextmark_engine::audio::rms_dbfs(&self.samples)
    }

    /// The samples as signed 16-bit little-endian PCM (what WebSocket clients receive).
    pub fn to_pcm_s16le(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.samples.len() * 2);
        for &s in self.samples.iter() {
            out.extend_from_slice(&to_i16(s).to_le_bytes());
        }
        out
    }

    /// A clip from signed 16-bit little-endian mono PCM (an odd trailing byte is ignored).
    pub fn from_pcm_s16le(bytes: &[u8], sample_rate: u32) -> Result<Speech, TtsError> {
        check_rate(sample_rate).map_err(|e| TtsError::bad_audio(e.to_string()))?;
        let samples: Vec<f32> = bytes
            .chunks_exact(2)
            .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / I16_SCALE)
            .collect();
        if samples.is_empty() {
            return Err(TtsError::bad_audio("no audio samples"));
        }
        Ok(Speech::new(samples, sample_rate))
    }

    /// The clip as a 16-bit mono WAV file (the disk cache format).
    pub fn to_wav(&self) -> Vec<u8> {
        let data = self.to_pcm_s16le();
        // A clip too long for a 32-bit RIFF size is truncated; speech is seconds, not hours.
        let data_len = u32::try_from(data.len()).unwrap_or(u32::MAX - 36) & !1;
        let mut out = Vec::with_capacity(44 + data_len as usize);
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + data_len).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes()); // integer PCM
        out.extend_from_slice(&1u16.to_le_bytes()); // mono
        out.extend_from_slice(&self.sample_rate.to_le_bytes());
        out.extend_from_slice(&(self.sample_rate * 2).to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes()); // block align
        out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
        out.extend_from_slice(b"data");
        out.extend_from_slice(&data_len.to_le_bytes());
        out.extend_from_slice(&data[..data_len as usize]);
        out
    }

    /// Parses a WAV file: integer PCM of 8, 16, 24 or 32 bits, or 32-bit float, any channel count
    /// (downmixed to mono). Streamed WAVs, whose header sizes are placeholders because the writer
    /// could not seek back (espeak-ng `--stdout`, HTTP endpoints), are read up to the real end.
    pub fn from_wav(bytes: &[u8]) -> Result<Speech, TtsError> {
        if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
            return Err(TtsError::bad_audio("not a RIFF/WAVE file"));
        }
        let mut format: Option<WavFormat> = None;
        let mut pos = 12;
        while pos + 8 <= bytes.len() {
            let id = &bytes[pos..pos + 4];
            let declared = u32::from_le_bytes([
                bytes[pos + 4],
                bytes[pos + 5],
                bytes[pos + 6],
                bytes[pos + 7],
            ]) as usize;
            let body_start = pos + 8;
            let body_end = body_start.saturating_add(declared).min(bytes.len());
            let body = &bytes[body_start..body_end];
            match id {
                b"fmt " => format = Some(WavFormat::parse(body)?),
                b"data" => {
                    let format =
                        format.ok_or_else(|| TtsError::bad_audio("data chunk before fmt chunk"))?;
                    return format.decode(body);
                }
                _ => {}
            }
            // Chunks are padded to an even length.
            pos = body_end + (declared & 1);
        }
        Err(TtsError::bad_audio("no data chunk"))
    }

    /// The clip at another sample rate (48 kHz for WebRTC, 16 kHz for recordings), with
    /// rubato's FFT resampler; the output holds `ceil(len × rate / sample_rate)` samples. CPU
    /// work of a few milliseconds per second of audio.
    pub fn resampled(&self, rate: u32) -> Result<Speech, TtsError> {
        let convert = |e: String| TtsError::bad_audio(format!("resampling to {rate} Hz: {e}"));
        check_rate(rate).map_err(|e| convert(e.to_string()))?;
        check_rate(self.sample_rate).map_err(|e| convert(e.to_string()))?;
        if rate == self.sample_rate || self.samples.is_empty() {
            return Ok(Speech {
                samples: Arc::clone(&self.samples),
                sample_rate: rate,
            });
        }
        let mut fft = Fft::<f32>::new(
            self.sample_rate as usize,
            rate as usize,
            1024,
            1,
            FixedSync::Input,
        )
        .map_err(|e| convert(e.to_string()))?;
        let input = InterleavedSlice::new(&self.samples[..], 1, self.samples.len())
            .map_err(|e| convert(e.to_string()))?;
        let output = fft
            .process_all(&input, self.samples.len(), None)
            .map_err(|e| convert(e.to_string()))?;
        let mut samples = output.take_data();
        // The resampler rounds its length up in floating point; fix it to the exact count.
        let exact =
            (self.samples.len() as u64 * u64::from(rate)).div_ceil(u64::from(self.sample_rate));
        samples.resize(exact as usize, 0.0);
        Ok(Speech::new(samples, rate))
    }
}

fn to_i16(sample: f32) -> i16 {
    (sample * I16_SCALE)
        .round()
        .clamp(-I16_SCALE, I16_SCALE - 1.0) as i16
}

/// The `fmt ` chunk of a WAV file, reduced to what decoding needs.
#[derive(Debug, Clone, Copy)]
struct WavFormat {
    float: bool,
    channels: usize,
    sample_rate: u32,
    bits: u16,
}

impl WavFormat {
    fn parse(body: &[u8]) -> Result<Self, TtsError> {
        if body.len() < 16 {
            return Err(TtsError::bad_audio("fmt chunk too short"));
        }
        let u16_at = |i: usize| u16::from_le_bytes([body[i], body[i + 1]]);
        let mut tag = u16_at(0);
        let channels = usize::from(u16_at(2));
        let sample_rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
        let bits = u16_at(14);
        // WAVE_FORMAT_EXTENSIBLE: the real format is the first two bytes of the sub-format GUID.
        if tag == 0xFFFE && body.len() >= 26 {
            tag = u16_at(24);
        }
        let float = match (tag, bits) {
            (1, 8 | 16 | 24 | 32) => false,
            (3, 32) => true,
            _ => {
                return Err(TtsError::bad_audio(format!(
                    "unsupported WAV encoding (format tag {tag}, {bits} bits)"
                )));
            }
        };
        if channels == 0 || channels > 8 {
            return Err(TtsError::bad_audio(format!(
                "unsupported channel count {channels}"
            )));
        }
        check_rate(sample_rate).map_err(|e| TtsError::bad_audio(e.to_string()))?;
        Ok(WavFormat {
            float,
            channels,
            sample_rate,
            bits,
        })
    }

    fn decode(self, data: &[u8]) -> Result<Speech, TtsError> {
        let width = usize::from(self.bits / 8);
        let sample = |b: &[u8]| -> f32 {
            match (self.float, width) {
                (true, _) => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                (false, 1) => (f32::from(b[0]) - 128.0) / 128.0,
                (false, 2) => f32::from(i16::from_le_bytes([b[0], b[1]])) / I16_SCALE,
                (false, 3) => (i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8) as f32 / 8_388_608.0,
                _ => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32 / 2_147_483_648.0,
            }
        };
        let frame = width * self.channels;
        let scale = 1.0 / self.channels as f32;
        let samples: Vec<f32> = data
            .chunks_exact(frame)
            .map(|f| f.chunks_exact(width).map(sample).sum::<f32>() * scale)
            .collect();
        if samples.is_empty() {
            return Err(TtsError::bad_audio("no audio samples"));
        }
        if samples.iter().any(|s| !s.is_finite()) {
            return Err(TtsError::bad_audio("non-finite sample"));
        }
        Ok(Speech::new(samples, self.sample_rate))
    }
}

/// Something that turns text into speech.
#[async_trait]
pub trait SpeechEngine: Send + Sync {
    /// Renders `text`. Empty or blank text is [`TtsError::EmptyText`].
    async fn synthesize(&self, text: &str) -> Result<Speech, TtsError>;

    /// A name that changes whenever the audio for a text would change (program, voice, speed,
    /// endpoint, model): it keys the cache, so switching voices never plays a stale clip.
    fn name(&self) -> String;
}

/// Settings of the embedded espeak-ng synthesizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EspeakConfig {
    /// The program to run: a name looked up on `PATH`, or a path.
    pub program: PathBuf,
    /// espeak-ng voice (`espeak-ng --voices` lists them), e.g. `en-us` or `en-gb`.
    pub voice: String,
    /// Speaking rate in words per minute (espeak-ng's default is 175; a little slower is
    /// easier to follow for applicants who are not native speakers).
    pub words_per_minute: u32,
    /// espeak-ng processes allowed at once. Prerendering a rubric is a burst of work; this
    /// keeps it from taking every core away from live transcription.
    pub max_concurrent: usize,
    /// Longest one rendering may take before it is killed.
    pub timeout_ms: u64,
}

impl Default for EspeakConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        EspeakConfig {
            program: PathBuf::from(Espeak::PROGRAM),
            voice: "en-us".into(),
            words_per_minute: 165,
            max_concurrent: (cores / 2).max(1),
            timeout_ms: 30_000,
        }
    }
}

/// The embedded default engine: the `espeak-ng` program, which writes a 22.05 kHz 16-bit mono
/// WAV to stdout. Text goes in on stdin, never on the command line, so no text can be taken for
/// an option and length is not limited by the argument list.
#[derive(Debug)]
pub struct Espeak {
    config: EspeakConfig,
    /// One permit per process allowed at once.
    permits: Semaphore,
}

impl Espeak {
    /// The program's usual name.
    pub const PROGRAM: &'static str = "espeak-ng";

    /// An engine with `config`, checked (the program itself is looked for on first use, or by
    /// [`Espeak::check_installed`]).
    pub fn new(config: EspeakConfig) -> Result<Self, TtsError> {
        let invalid = |message: String| Err(TtsError::InvalidConfig { message });
        let voice_ok = !config.voice.is_empty()
            && !config.voice.starts_with('-')
            && config
                .voice
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_+/".contains(c));
        if !voice_ok {
            return invalid(format!(
                "espeak-ng voice {:?} is not a voice name",
                config.voice
            ));
        }
        if !(80..=450).contains(&config.words_per_minute) {
            return invalid(format!(
                "espeak-ng speed {} wpm is outside 80–450",
                config.words_per_minute
            ));
        }
        if config.max_concurrent == 0 {
            return invalid("espeak-ng max_concurrent must be at least 1".into());
        }
        if config.timeout_ms == 0 {
            return invalid("espeak-ng timeout must be more than zero".into());
        }
        let permits = Semaphore::new(config.max_concurrent);
        Ok(Espeak { config, permits })
    }

    /// The settings in use.
    pub fn config(&self) -> &EspeakConfig {
        &self.config
    }

    /// Runs `espeak-ng --version`: at start-up, to fail with a clear message rather than at the
    /// first question. Returns the version line.
    pub async fn check_installed(&self) -> Result<String, TtsError> {
        let output = tokio::process::Command::new(&self.config.program)
            .arg("--version")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| self.spawn_error(&e))?;
        if !output.status.success() {
            return Err(self.process_error(format!("--version exited with {}", output.status)));
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    fn program_name(&self) -> String {
        self.config.program.display().to_string()
    }

    fn spawn_error(&self, e: &std::io::Error) -> TtsError {
        if e.kind() == ErrorKind::NotFound {
            TtsError::NotInstalled {
                program: self.program_name(),
            }
        } else {
            self.process_error(format!("could not start: {e}"))
        }
    }

    fn process_error(&self, message: String) -> TtsError {
        TtsError::Process {
            program: self.program_name(),
            message: truncate(&message),
        }
    }

    async fn run(&self, text: &str) -> Result<Speech, TtsError> {
        let mut child = tokio::process::Command::new(&self.config.program)
            .args(["--stdout", "--stdin", "-b", "1", "-v"])
            .arg(&self.config.voice)
            .arg("-s")
            .arg(self.config.words_per_minute.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A timed-out or abandoned rendering must not leave a process behind.
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| self.spawn_error(&e))?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| self.process_error("no stdin pipe".into()))?;
        let input = format!("{text}\n").into_bytes();
        // Write and read at once: a process that fills its stdout pipe before it has read all
        // of its input would otherwise wait for us forever.
        let write = async move {
            let written = stdin.write_all(&input).await;
            drop(stdin);
            written
        };
        let (written, output) = tokio::join!(write, child.wait_with_output());
        let output = output.map_err(|e| self.process_error(format!("waiting for it: {e}")))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(self.process_error(format!("{}: {}", output.status, stderr.trim())));
        }
        written.map_err(|e| self.process_error(format!("writing the text: {e}")))?;
        Speech::from_wav(&output.stdout)
    }
}

impl Default for Espeak {
    fn default() -> Self {
        let config = EspeakConfig::default();
        let permits = Semaphore::new(config.max_concurrent);
        Espeak { config, permits }
    }
}

#[async_trait]
impl SpeechEngine for Espeak {
    async fn synthesize(&self, text: &str) -> Result<Speech, TtsError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(TtsError::EmptyText);
        }
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| self.process_error("the engine was shut down".into()))?;
        match tokio::time::timeout(timeout, self.run(text)).await {
            Ok(result) => result,
            Err(_) => Err(TtsError::Timeout { after: timeout }),
        }
    }

    fn name(&self) -> String {
        format!(
            "espeak-ng/{}/{}wpm",
            self.config.voice, self.config.words_per_minute
        )
    }
}

/// Audio encoding asked of an OpenAI-compatible speech endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpeechFormat {
    /// A WAV file (any rate; read from its header).
    #[default]
    Wav,
    /// Raw signed 16-bit little-endian mono PCM at [`SpeechFormat::PCM_RATE`].
    Pcm,
}

impl SpeechFormat {
    /// The rate of `pcm` responses, fixed by the OpenAI API.
    pub const PCM_RATE: u32 = 24_000;
}

/// Settings of an OpenAI-compatible speech endpoint.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiSpeechConfig {
    /// Base URL up to and including the version, e.g. `https://api.openai.com/v1` or
    /// `http://gpu-box:8880/v1`; `/audio/speech` is appended.
    pub base_url: String,
    /// Bearer key; local servers often need none.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// Model name, e.g. `gpt-4o-mini-tts`, `tts-1` or a local server's model.
    pub model: String,
    /// Voice name, e.g. `alloy`.
    pub voice: String,
    /// Audio encoding to ask for.
    #[serde(default)]
    pub format: SpeechFormat,
    /// Longest one request may take, retries included.
    #[serde(default = "OpenAiSpeechConfig::default_timeout_ms")]
    pub timeout_ms: u64,
}

impl OpenAiSpeechConfig {
    /// Default request timeout, milliseconds.
    pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;

    fn default_timeout_ms() -> u64 {
        Self::DEFAULT_TIMEOUT_MS
    }

    /// Settings for `base_url` with `model` and `voice`, no key, WAV and the default timeout.
    pub fn new(
        base_url: impl Into<String>,
        model: impl Into<String>,
        voice: impl Into<String>,
    ) -> Self {
        OpenAiSpeechConfig {
            base_url: base_url.into(),
            api_key: None,
            model: model.into(),
            voice: voice.into(),
            format: SpeechFormat::Wav,
            timeout_ms: Self::DEFAULT_TIMEOUT_MS,
        }
    }
}

/// Speech from an OpenAI-compatible `POST {base_url}/audio/speech` endpoint (OpenAI itself, or a
/// local inference server that speaks the same protocol). The client retries 429 and 5xx
/// answers a few times with backoff, all within the timeout.
pub struct OpenAiSpeech {
    client: Client<OpenAIConfig>,
    config: OpenAiSpeechConfig,
}

impl fmt::Debug for OpenAiSpeech {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key is a `Secret`, so this prints `Secret([redacted])` at most.
        f.debug_struct("OpenAiSpeech")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl OpenAiSpeech {
    /// An engine for `config`, checked.
    pub fn new(mut config: OpenAiSpeechConfig) -> Result<Self, TtsError> {
        let invalid = |message: &str| {
            Err(TtsError::InvalidConfig {
                message: message.into(),
            })
        };
        config.base_url = config.base_url.trim_end_matches('/').to_string();
        if !(config.base_url.starts_with("http://") || config.base_url.starts_with("https://")) {
            return invalid("speech endpoint base_url must start with http:// or https://");
        }
        if config.model.trim().is_empty() || config.voice.trim().is_empty() {
            return invalid("speech endpoint model and voice must not be empty");
        }
        if config.timeout_ms == 0 {
            return invalid("speech endpoint timeout must be more than zero");
        }
        let key = config.api_key.as_ref().map_or("", |k| k.expose());
        // Empty organisation and project: never pick them (or a key) up from the environment.
        let openai = OpenAIConfig::new()
            .with_api_base(config.base_url.clone())
            .with_api_key(key)
            .with_org_id("")
            .with_project_id("");
        Ok(OpenAiSpeech {
            client: Client::with_config(openai),
            config,
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &OpenAiSpeechConfig {
        &self.config
    }

    async fn request(&self, text: &str) -> Result<Speech, TtsError> {
        let request = CreateSpeechRequest {
            input: text.to_string(),
            model: SpeechModel::Other(self.config.model.clone()),
            voice: Voice::Other(self.config.voice.clone()),
            instructions: None,
            response_format: Some(match self.config.format {
                SpeechFormat::Wav => SpeechResponseFormat::Wav,
                SpeechFormat::Pcm => SpeechResponseFormat::Pcm,
            }),
            speed: None,
            stream_format: None,
        };
        let response = self
            .client
            .audio()
            .speech()
            .create(request)
            .await
            .map_err(endpoint_error)?;
        decode_response(&response.bytes, self.config.format)
    }
}

#[async_trait]
impl SpeechEngine for OpenAiSpeech {
    async fn synthesize(&self, text: &str) -> Result<Speech, TtsError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(TtsError::EmptyText);
        }
        let timeout = Duration::from_millis(self.config.timeout_ms);
        match tokio::time::timeout(timeout, self.request(text)).await {
            Ok(result) => result,
            Err(_) => Err(TtsError::Timeout { after: timeout }),
        }
    }

    fn name(&self) -> String {
        format!(
            "openai/{}/{}/{}",
            self.config.base_url, self.config.model, self.config.voice
        )
    }
}

/// Maps a client error to a [`TtsError`], keeping the endpoint's own message.
fn endpoint_error(e: OpenAIError) -> TtsError {
    match e {
        OpenAIError::ApiError(api) => TtsError::Http {
            status: api.status_code.as_u16(),
            // For 5xx answers the client passes the raw body on; dig the message out of an
            // OpenAI-style `{"error": {"message": ...}}` body when it is one.
            message: truncate(&error_message(&api.api_error.message)),
        },
        OpenAIError::JSONDeserialize(_, body) => TtsError::Request {
            message: truncate(&format!("unreadable error body: {}", error_message(&body))),
        },
        OpenAIError::Reqwest(e) => {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                message.push_str(": ");
                message.push_str(&s.to_string());
                source = s.source();
            }
            TtsError::Request {
                message: truncate(&message),
            }
        }
        other => TtsError::Request {
            message: truncate(&other.to_string()),
        },
    }
}

/// The `error.message` of an OpenAI-style error body, or the body itself.
fn error_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.get("message"))
                .or_else(|| v.get("detail"))
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| body.trim().to_string())
}

/// Decodes an endpoint's audio: a WAV by its header whatever was asked for, raw PCM when `pcm`
/// was asked for, and anything else the engine's decoder knows (MP3, FLAC, Ogg) as a fallback
/// for servers that ignore `response_format`.
fn decode_response(bytes: &[u8], format: SpeechFormat) -> Result<Speech, TtsError> {
    if bytes.is_empty() {
        return Err(TtsError::bad_audio("empty response body"));
    }
    if bytes.starts_with(b"RIFF") {
        return Speech::from_wav(bytes);
    }
    if format == SpeechFormat::Pcm {
        return Speech::from_pcm_s16le(bytes, SpeechFormat::PCM_RATE);
    }
    let decoded = decode_bytes(
        bytes.to_vec(),
        None,
        "speech endpoint response",
        DecodeLimits::default(),
    )
    .map_err(|e| TtsError::bad_audio(e.to_string()))?;
    Ok(Speech::new(decoded.samples, decoded.sample_rate))
}

fn truncate(message: &str) -> String {
    if message.chars().count() <= MAX_MESSAGE_CHARS {
        return message.to_string();
    }
    let mut short: String = message.chars().take(MAX_MESSAGE_CHARS).collect();
    short.push('…');
    short
}

/// Counters of a [`SpeechCache`], for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    /// Requests answered from memory (including those that waited for another caller's
    /// rendering of the same text).
    pub hits: u64,
    /// Requests that had to render (or load from disk).
    pub misses: u64,
    /// Misses answered from the disk cache instead of the engine.
    pub disk_loads: u64,
    /// Renderings that failed.
    pub failures: u64,
    /// Clips held in memory (every sample rate counted).
    pub entries: usize,
}

/// What a [`SpeechCache::prerender`] run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PrerenderReport {
    /// Texts rendered now (without a disk cache: or loaded from it into memory).
    pub rendered: usize,
    /// Texts that were already in memory, or on disk when the cache has a disk folder.
    pub already_cached: usize,
    /// Texts that failed (each logged).
    pub failed: usize,
}

/// Marks the slot of a clip at the engine's own rate.
const NATIVE_RATE: u32 = 0;

/// Where a clip lives in memory: the text's digest and the sample rate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SlotKey {
    digest: String,
    rate: u32,
}

/// A clip being rendered or rendered; callers wait on the same cell, so one text renders once.
type Slot = Arc<OnceCell<Arc<Speech>>>;

/// The clips in memory, with when each was last asked for.
#[derive(Default)]
struct Slots {
    entries: HashMap<SlotKey, SlotEntry>,
    /// Counts lookups: the use stamp of the next one.
    clock: u64,
}

struct SlotEntry {
    slot: Slot,
    last_used: u64,
}

impl Slots {
    /// The slot for `key`, marked as just used; a new one if there is room, or if the least
    /// recently used finished clip can make room; `None` when every slot is still rendering.
    fn acquire(&mut self, key: &SlotKey, max_entries: usize) -> Option<Slot> {
        self.clock += 1;
        let now = self.clock;
        if let Some(entry) = self.entries.get_mut(key) {
            entry.last_used = now;
            return Some(Arc::clone(&entry.slot));
        }
        if max_entries == 0 {
            return None;
        }
        if self.entries.len() >= max_entries {
            // Sessions playing an evicted clip keep their own `Arc`; only the cache forgets it.
            let oldest = self
                .entries
                .iter()
                .filter(|(_, e)| e.slot.initialized())
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())?;
            self.entries.remove(&oldest);
        }
        let slot = Slot::default();
        self.entries.insert(
            key.clone(),
            SlotEntry {
                slot: Arc::clone(&slot),
                last_used: now,
            },
        );
        Some(slot)
    }
}

struct CacheInner {
    engine: Arc<dyn SpeechEngine>,
    /// The engine's name, taken once: part of every key.
    engine_name: String,
    disk_dir: Option<PathBuf>,
    max_entries: usize,
    slots: Mutex<Slots>,
    hits: AtomicU64,
    misses: AtomicU64,
    disk_loads: AtomicU64,
    failures: AtomicU64,
}

/// Renders each text once per engine and shares the clip. Cheap to clone (one `Arc`).
///
/// Memory holds the `max_entries` most recently used clips (each sample rate counts as one);
/// a new clip pushes out the least recently used. With a disk folder every clip also stays on
/// disk, and [`prerender`](Self::prerender) fills only the disk, so memory holds what sessions
/// are playing rather than whatever was rendered first.
#[derive(Clone)]
pub struct SpeechCache {
    inner: Arc<CacheInner>,
}

impl fmt::Debug for SpeechCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpeechCache")
            .field("engine", &self.inner.engine_name)
            .field("disk_dir", &self.inner.disk_dir)
            .field("stats", &self.stats())
            .finish()
    }
}

impl SpeechCache {
    /// Default limit on clips kept in memory.
    pub const DEFAULT_MAX_ENTRIES: usize = 4096;

    /// A memory-only cache in front of `engine`.
    pub fn new(engine: Arc<dyn SpeechEngine>) -> Self {
        Self::build(engine, None, Self::DEFAULT_MAX_ENTRIES)
    }

    /// The same cache, also keeping clips as WAV files in `dir` (created when first written),
    /// so a restart loads them instead of rendering again.
    pub fn with_disk_dir(self, dir: impl Into<PathBuf>) -> Self {
        let max = self.inner.max_entries;
        Self::build(Arc::clone(&self.inner.engine), Some(dir.into()), max)
    }

    /// The same cache keeping at most `max_entries` clips in memory (the most recently used;
    /// 0 keeps none).
    pub fn with_max_entries(self, max_entries: usize) -> Self {
        let dir = self.inner.disk_dir.clone();
        Self::build(Arc::clone(&self.inner.engine), dir, max_entries)
    }

    fn build(engine: Arc<dyn SpeechEngine>, disk_dir: Option<PathBuf>, max: usize) -> Self {
        SpeechCache {
            inner: Arc::new(CacheInner {
                engine_name: engine.name(),
                engine,
                disk_dir,
                max_entries: max,
                slots: Mutex::new(Slots::default()),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                disk_loads: AtomicU64::new(0),
                failures: AtomicU64::new(0),
            }),
        }
    }

    /// The engine's name (part of every cache key).
    pub fn engine_name(&self) -> &str {
        &self.inner.engine_name
    }

    /// The clip for `text` at the engine's rate: from memory, else from disk, else rendered now.
    /// Concurrent calls for the same text wait for one rendering. Leading and trailing
    /// whitespace does not matter.
    pub async fn get(&self, text: &str) -> Result<Arc<Speech>, TtsError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(TtsError::EmptyText);
        }
        let digest = self.digest(text);
        let key = SlotKey {
            digest: digest.clone(),
            rate: NATIVE_RATE,
        };
        self.through_slot(key, true, || self.render(text, digest))
            .await
    }

    /// The clip for `text` at `rate` (e.g. 48 kHz for WebRTC), resampled once and kept, off the
    /// async runtime.
    pub async fn get_at_rate(&self, text: &str, rate: u32) -> Result<Arc<Speech>, TtsError> {
        let native = self.get(text).await?;
        if native.sample_rate == rate {
            return Ok(native);
        }
        let key = SlotKey {
            digest: self.digest(text.trim()),
            rate,
        };
        self.through_slot(key, false, || async move {
            tokio::task::spawn_blocking(move || native.resampled(rate).map(Arc::new))
                .await
                .map_err(|e| TtsError::bad_audio(format!("resampling task failed: {e}")))?
        })
        .await
    }

    /// Whether `text` is ready in memory at the engine's rate (playing it costs nothing).
    pub fn is_cached(&self, text: &str) -> bool {
        let key = SlotKey {
            digest: self.digest(text.trim()),
            rate: NATIVE_RATE,
        };
        self.lock_slots()
            .entries
            .get(&key)
            .is_some_and(|e| e.slot.initialized())
    }

    /// Renders `texts` in the background, one at a time (the engine bounds its own
    /// concurrency), skipping duplicates and what is already cached. With a disk folder the
    /// clips go to disk only (a rubric's texts are far more than memory keeps, and what the
    /// first texts would leave in memory is not what sessions play); without one, into memory.
    /// Failures are logged and counted, never fatal: a text that failed here is tried again when
    /// it is asked for.
    pub fn prerender(&self, texts: Vec<String>) -> JoinHandle<PrerenderReport> {
        let cache = self.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut report = PrerenderReport::default();
            let mut seen = HashSet::new();
            for text in texts {
                let text = text.trim();
                if text.is_empty() || !seen.insert(text.to_string()) {
                    continue;
                }
                if cache.is_cached(text) || cache.is_on_disk(text).await {
                    report.already_cached += 1;
                    continue;
                }
                let rendered = if cache.inner.disk_dir.is_some() {
                    cache.render_to_disk(text).await
                } else {
                    cache.get(text).await.map(drop)
                };
                match rendered {
                    Ok(_) => report.rendered += 1,
                    Err(e) => {
                        report.failed += 1;
                        tracing::warn!(engine = %cache.engine_name(), text, error = %e, "prerendering a question failed");
                    }
                }
            }
            tracing::info!(
                engine = %cache.engine_name(),
                rendered = report.rendered,
                already_cached = report.already_cached,
                failed = report.failed,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "speech prerendering finished"
            );
            report
        })
    }

    /// Counters so far.
    pub fn stats(&self) -> CacheStats {
        let i = &self.inner;
        CacheStats {
            hits: i.hits.load(Ordering::Relaxed),
            misses: i.misses.load(Ordering::Relaxed),
            disk_loads: i.disk_loads.load(Ordering::Relaxed),
            failures: i.failures.load(Ordering::Relaxed),
            entries: self
                .lock_slots()
                .entries
                .values()
                .filter(|e| e.slot.initialized())
                .count(),
        }
    }

    /// The cache key of a text: engine name and text, hashed (also the disk file name).
    fn digest(&self, text: &str) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.inner.engine_name.as_bytes());
        hasher.update([0u8]);
        hasher.update(text.as_bytes());
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The disk file of the clip with this digest, when the cache has a disk folder.
    fn disk_path(&self, digest: &str) -> Option<PathBuf> {
        self.inner
            .disk_dir
            .as_ref()
            .map(|dir| dir.join(format!("{digest}.wav")))
    }

    /// Whether `text`'s clip is in the disk folder (not read: a corrupt file is found, and
    /// rendered again, when the clip is asked for).
    async fn is_on_disk(&self, text: &str) -> bool {
        match self.disk_path(&self.digest(text)) {
            Some(path) => tokio::fs::try_exists(path).await.unwrap_or(false),
            None => false,
        }
    }

    /// Renders `text` into the disk folder without keeping it in memory.
    async fn render_to_disk(&self, text: &str) -> Result<(), TtsError> {
        self.inner.misses.fetch_add(1, Ordering::Relaxed);
        let rendered = self.render(text, self.digest(text)).await;
        if rendered.is_err() {
            self.inner.failures.fetch_add(1, Ordering::Relaxed);
        }
        rendered.map(drop)
    }

    fn lock_slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        // A panic while holding the lock cannot leave the map inconsistent (single inserts and
        // removes), so a poisoned lock is still usable.
        self.inner
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Answers from the slot for `key`, running `init` when nobody has filled it yet.
    /// `counted` says whether this lookup counts in the hit/miss statistics.
    async fn through_slot<F, Fut>(
        &self,
        key: SlotKey,
        counted: bool,
        init: F,
    ) -> Result<Arc<Speech>, TtsError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Arc<Speech>, TtsError>>,
    {
        let inner = &self.inner;
        let count = |counter: &AtomicU64| {
            if counted {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        };
        let slot = self.lock_slots().acquire(&key, inner.max_entries);
        let Some(slot) = slot else {
            // Every slot is still rendering: render for this caller without keeping the clip.
            count(&inner.misses);
            let result = init().await;
            if result.is_err() {
                count(&inner.failures);
            }
            return result;
        };
        if let Some(speech) = slot.get() {
            count(&inner.hits);
            return Ok(Arc::clone(speech));
        }
        let mut ran = false;
        let result = slot
            .get_or_try_init(|| {
                ran = true;
                init()
            })
            .await
            .map(Arc::clone);
        match (&result, ran) {
            (Ok(_), true) => count(&inner.misses),
            (Ok(_), false) => count(&inner.hits),
            (Err(_), _) => {
                count(&inner.failures);
                // Forget the empty slot, so failed texts do not pile up; a later call retries.
                let mut slots = self.lock_slots();
                if slots
                    .entries
                    .get(&key)
                    .is_some_and(|e| Arc::ptr_eq(&e.slot, &slot) && !e.slot.initialized())
                {
                    slots.entries.remove(&key);
                }
            }
        }
        result
    }

    /// Loads the clip from disk, or renders it (and writes it to disk).
    async fn render(&self, text: &str, digest: String) -> Result<Arc<Speech>, TtsError> {
        let path = self.disk_path(&digest);
        if let Some(path) = &path {
            match tokio::fs::read(path).await {
                Ok(bytes) => match Speech::from_wav(&bytes) {
                    Ok(speech) => {
                        self.inner.disk_loads.fetch_add(1, Ordering::Relaxed);
                        return Ok(Arc::new(speech));
                    }
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "ignoring a corrupt cached speech file")
                    }
                },
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read a cached speech file")
                }
            }
        }
        let started = Instant::now();
        let speech = self.inner.engine.synthesize(text).await?;
        if speech.samples.is_empty() {
            return Err(TtsError::bad_audio("the engine returned no samples"));
        }
        tracing::debug!(
            engine = %self.inner.engine_name,
            audio_s = speech.duration_s(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "rendered a question"
        );
        if let Some(path) = &path
            && let Err(e) = write_atomically(path, &speech.to_wav()).await
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the speech cache file");
        }
        Ok(Arc::new(speech))
    }
}

/// Writes `bytes` to a temporary file beside `path` and renames it into place, so a reader never
/// sees half a file and a crash never leaves one.
async fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let written = async {
        tokio::fs::write(&tmp, bytes).await?;
        tokio::fs::rename(&tmp, path).await
    }
    .await;
    if written.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    use axum::Json;
    use axum::Router;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::post;

    const SENTENCE: &str = "Hello, and welcome to your screening interview. Are you ready?";

    /// The espeak engine, or `None` (with a message) when espeak-ng is not installed here.
    async fn espeak() -> Option<Espeak> {
        let engine = Espeak::default();
        match engine.check_installed().await {
            Ok(_) => Some(engine),
            Err(e) => {
                eprintln!("SKIPPED: espeak-ng is not available ({e}); run scripts/setup.sh");
                None
            }
        }
    }

    fn tone(rate: u32, seconds: f32, amplitude: f32) -> Speech {
        let n = (rate as f32 * seconds) as usize;
        let samples: Vec<f32> = (0..n)
            .map(|i| {
                amplitude * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / rate as f32).sin()
            })
            .collect();
        Speech::new(samples, rate)
    }

    /// An engine that counts calls and can be slowed down, around a real one.
    struct Counting<E> {
        inner: E,
        calls: AtomicUsize,
        delay: Duration,
    }

    impl<E> Counting<E> {
        fn new(inner: E, delay: Duration) -> Arc<Self> {
            Arc::new(Counting {
                inner,
                calls: AtomicUsize::new(0),
                delay,
            })
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl<E: SpeechEngine> SpeechEngine for Counting<E> {
        async fn synthesize(&self, text: &str) -> Result<Speech, TtsError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            self.inner.synthesize(text).await
        }

        fn name(&self) -> String {
            self.inner.name()
        }
    }

    /// A tone engine, for cache behaviour that needs no program.
    struct Tone;

    #[async_trait]
    impl SpeechEngine for Tone {
        async fn synthesize(&self, text: &str) -> Result<Speech, TtsError> {
            if text.starts_with("FAIL") {
                return Err(TtsError::BadAudio {
                    message: "asked to fail".into(),
                });
            }
            Ok(tone(16_000, 0.01 * text.len() as f32, 0.3))
        }

        fn name(&self) -> String {
            "tone".into()
        }
    }

    #[tokio::test]
    async fn espeak_renders_a_sentence_to_plausible_non_silent_audio() {
        let Some(engine) = espeak().await else { return };
        let speech = engine.synthesize(SENTENCE).await.unwrap();
        assert_eq!(speech.sample_rate, 22_050);
        let d = speech.duration_s();
        assert!((1.0..=6.0).contains(&d), "duration {d} s");
        let peak = speech.samples.iter().fold(0.0f32, |m, s| m.max(s.abs()));
        assert!(peak > 0.05 && peak <= 1.0, "peak {peak}");
        // Sane speech level: neither near-silent nor clipped.
        let level = speech.rms_dbfs();
        assert!((-40.0..=-6.0).contains(&level), "level {level} dBFS");
        // A longer text takes longer to say.
        let longer = engine
            .synthesize(&format!("{SENTENCE} {SENTENCE}"))
            .await
            .unwrap();
        assert!(longer.duration_s() > d * 1.5);
    }

    #[tokio::test]
    async fn espeak_refuses_empty_text_and_bad_settings() {
        let engine = Espeak::default();
        assert_eq!(engine.synthesize("  \n").await, Err(TtsError::EmptyText));
        let bad_voice = EspeakConfig {
            voice: "--stdout".into(),
            ..EspeakConfig::default()
        };
        assert!(matches!(
            Espeak::new(bad_voice),
            Err(TtsError::InvalidConfig { .. })
        ));
        let Some(_) = espeak().await else { return };
        let unknown = Espeak::new(EspeakConfig {
            voice: "xx-nonexistent".into(),
            ..EspeakConfig::default()
        })
        .unwrap();
        let err = unknown.synthesize(SENTENCE).await.unwrap_err();
        assert!(matches!(err, TtsError::Process { .. }), "{err}");
    }

    #[tokio::test]
    async fn missing_espeak_is_a_clear_error() {
        let engine = Espeak::new(EspeakConfig {
            program: "/nonexistent/espeak-ng".into(),
            ..EspeakConfig::default()
        })
        .unwrap();
        let err = engine.synthesize(SENTENCE).await.unwrap_err();
        assert!(matches!(err, TtsError::NotInstalled { .. }), "{err:?}");
        assert!(err.to_string().contains("apt-get install"), "{err}");
        assert!(matches!(
            engine.check_installed().await,
            Err(TtsError::NotInstalled { .. })
        ));
    }

    #[test]
    fn wav_and_pcm_round_trip_exactly() {
        let speech = tone(22_050, 0.5, 0.5);
        let pcm = Speech::from_pcm_s16le(&speech.to_pcm_s16le(), 22_050).unwrap();
        let wav = Speech::from_wav(&pcm.to_wav()).unwrap();
        assert_eq!(wav, pcm);
        assert_eq!(pcm.to_pcm_s16le(), speech.to_pcm_s16le());
        assert_eq!(wav.duration_s(), 0.5);
        // A streamed header (placeholder sizes, as espeak-ng writes to a pipe) still parses.
        let mut streamed = pcm.to_wav();
        streamed[4..8].copy_from_slice(&0x7fff_f024u32.to_le_bytes());
        streamed[40..44].copy_from_slice(&0x7fff_f000u32.to_le_bytes());
        assert_eq!(Speech::from_wav(&streamed).unwrap(), pcm);
        assert!(Speech::from_wav(b"not a wav").is_err());
        assert!(Speech::from_pcm_s16le(&[], 24_000).is_err());
    }

    #[test]
    fn resampled_has_the_right_length_and_level() {
        let speech = tone(22_050, 2.0, 0.5);
        let n = speech.samples.len();
        let up = speech.resampled(48_000).unwrap();
        assert_eq!(up.sample_rate, 48_000);
        assert_eq!(
            up.samples.len(),
            (n as u64 * 48_000).div_ceil(22_050) as usize
        );
        let down = speech.resampled(16_000).unwrap();
        assert_eq!(
            down.samples.len(),
            (n as u64 * 16_000).div_ceil(22_050) as usize
        );
        let mid = |s: &Speech| {
            let len = s.samples.len();
            nextmark_engine::audio::rms_dbfs(&s.samples[len / 4..len * 3 / 4])
        };
        assert!((mid(&up) - mid(&speech)).abs() < 0.5);
        assert_eq!(speech.resampled(22_050).unwrap(), speech);
        assert!(speech.resampled(1_000_000).is_err());
    }

    #[tokio::test]
    async fn cache_hit_returns_the_same_clip_without_rendering_again() {
        let Some(engine) = espeak().await else { return };
        let counting = Counting::new(engine, Duration::ZERO);
        let cache = SpeechCache::new(counting.clone());
        assert!(!cache.is_cached(SENTENCE));
        let first = cache.get(SENTENCE).await.unwrap();
        assert!(cache.is_cached(SENTENCE));
        let second = cache.get(&format!("  {SENTENCE} ")).await.unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(counting.calls(), 1);
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.entries), (1, 1, 1));

        let at_48k = cache.get_at_rate(SENTENCE, 48_000).await.unwrap();
        let again = cache.get_at_rate(SENTENCE, 48_000).await.unwrap();
        assert!(Arc::ptr_eq(&at_48k, &again));
        assert_eq!(at_48k.sample_rate, 48_000);
        assert!((at_48k.duration_s() - first.duration_s()).abs() < 0.001);
        assert_eq!(counting.calls(), 1);
    }

    #[tokio::test]
    async fn concurrent_gets_of_one_text_render_once() {
        let Some(engine) = espeak().await else { return };
        let counting = Counting::new(engine, Duration::from_millis(150));
        let cache = SpeechCache::new(counting.clone());
        let results = futures_util::future::join_all((0..8).map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.get(SENTENCE).await })
        }))
        .await;
        let clips: Vec<Arc<Speech>> = results.into_iter().map(|r| r.unwrap().unwrap()).collect();
        assert_eq!(counting.calls(), 1);
        assert!(clips.iter().all(|c| Arc::ptr_eq(c, &clips[0])));
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses), (7, 1));
    }

    #[tokio::test]
    async fn disk_cache_survives_a_new_cache() {
        let Some(engine) = espeak().await else { return };
        let dir = tempfile::tempdir().unwrap();
        let first = Counting::new(engine, Duration::ZERO);
        let rendered = SpeechCache::new(first.clone())
            .with_disk_dir(dir.path().join("speech"))
            .get(SENTENCE)
            .await
            .unwrap();
        assert_eq!(first.calls(), 1);

        let second = Counting::new(Espeak::default(), Duration::ZERO);
        let cache = SpeechCache::new(second.clone()).with_disk_dir(dir.path().join("speech"));
        let loaded = cache.get(SENTENCE).await.unwrap();
        assert_eq!(second.calls(), 0, "rendered again despite the disk cache");
        assert_eq!(*loaded, *rendered);
        assert_eq!(cache.stats().disk_loads, 1);

        // Another voice is another key: it renders.
        let other = Counting::new(
            Espeak::new(EspeakConfig {
                voice: "en-gb".into(),
                ..EspeakConfig::default()
            })
            .unwrap(),
            Duration::ZERO,
        );
        SpeechCache::new(other.clone())
            .with_disk_dir(dir.path().join("speech"))
            .get(SENTENCE)
            .await
            .unwrap();
        assert_eq!(other.calls(), 1);
    }

    #[tokio::test]
    async fn corrupt_disk_file_is_rendered_again() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Counting::new(Tone, Duration::ZERO);
        let cache = SpeechCache::new(engine.clone()).with_disk_dir(dir.path());
        cache.get("a question").await.unwrap();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            std::fs::write(entry.unwrap().path(), b"garbage").unwrap();
        }
        let fresh = SpeechCache::new(engine.clone()).with_disk_dir(dir.path());
        fresh.get("a question").await.unwrap();
        assert_eq!(engine.calls(), 2);
        assert_eq!(fresh.stats().disk_loads, 0);
    }

    #[tokio::test]
    async fn prerender_warms_the_cache_and_logs_failures() {
        let engine = Counting::new(Tone, Duration::ZERO);
        let cache = SpeechCache::new(engine.clone());
        cache.get("first").await.unwrap();
        let texts = ["first", "second", "second", "FAIL please", "", "third"]
            .map(String::from)
            .to_vec();
        let report = cache.prerender(texts).await.unwrap();
        assert_eq!(
            report,
            PrerenderReport {
                rendered: 2,
                already_cached: 1,
                failed: 1
            }
        );
        assert!(cache.is_cached("second") && cache.is_cached("third"));
        assert!(!cache.is_cached("FAIL please"));
        assert_eq!(engine.calls(), 4);
        assert_eq!(cache.stats().failures, 1);
        // A failure is not cached: the next request tries again.
        assert!(cache.get("FAIL please").await.is_err());
        assert_eq!(engine.calls(), 5);
        assert_eq!(cache.get("  ").await, Err(TtsError::EmptyText));
    }

    #[tokio::test]
    async fn a_full_cache_keeps_the_most_recently_used_clips() {
        let engine = Counting::new(Tone, Duration::ZERO);
        let cache = SpeechCache::new(engine.clone()).with_max_entries(2);
        cache.get("one").await.unwrap();
        cache.get("two").await.unwrap();
        // "one" is used again, so "two" is the least recently used when "three" comes.
        cache.get("one").await.unwrap();
        let three = cache.get("three").await.unwrap();
        assert!(cache.is_cached("one") && cache.is_cached("three"));
        assert!(!cache.is_cached("two"));
        assert_eq!(cache.stats().entries, 2);
        assert_eq!(engine.calls(), 3);
        // A clip pushed out of memory is rendered again; the one a caller holds stays valid.
        cache.get("two").await.unwrap();
        assert_eq!(engine.calls(), 4);
        assert!(!cache.is_cached("one") && three.duration_s() > 0.0);

        let keeps_none = SpeechCache::new(engine.clone()).with_max_entries(0);
        keeps_none.get("one").await.unwrap();
        keeps_none.get("one").await.unwrap();
        assert_eq!(keeps_none.stats().entries, 0);
        assert_eq!(engine.calls(), 6);
    }

    #[tokio::test]
    async fn prerendering_with_a_disk_folder_fills_the_disk_not_memory() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Counting::new(Tone, Duration::ZERO);
        let cache = SpeechCache::new(engine.clone())
            .with_disk_dir(dir.path())
            .with_max_entries(2);
        let texts: Vec<String> = (1..=5).map(|i| format!("question {i}")).collect();
        let report = cache.prerender(texts.clone()).await.unwrap();
        assert_eq!((report.rendered, report.already_cached), (5, 0));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 5);
        assert_eq!(
            cache.stats().entries,
            0,
            "prerendering kept clips in memory"
        );

        // Again, by a new cache on the same folder: nothing renders and nothing is read.
        let again = SpeechCache::new(engine.clone())
            .with_disk_dir(dir.path())
            .with_max_entries(2);
        let report = again.prerender(texts.clone()).await.unwrap();
        assert_eq!((report.rendered, report.already_cached), (0, 5));
        assert_eq!(engine.calls(), 5);
        assert_eq!(again.stats().disk_loads, 0);
        // Asking for a clip loads it from disk into memory.
        again.get(&texts[3]).await.unwrap();
        assert_eq!(again.stats().disk_loads, 1);
        assert!(again.is_cached(&texts[3]));
        assert_eq!(engine.calls(), 5);
    }

    #[tokio::test]
    async fn prerendering_spoken_texts_of_a_rubric_covers_them_all() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rubrics/medicine.toml");
        let rubric = nextmark_engine::rubric::Rubric::load(&path).unwrap();
        let texts = nextmark_engine::interview::spoken_texts(&rubric);
        let cache = SpeechCache::new(Arc::new(Tone));
        let report = cache.prerender(texts.clone()).await.unwrap();
        assert_eq!(report.failed, 0);
        assert!(texts.iter().all(|t| cache.is_cached(t)));
    }

    // ---- OpenAI-compatible endpoint, served locally ----

    #[derive(Clone)]
    enum Reply {
        Audio(&'static str, Vec<u8>),
        Fail(StatusCode, &'static str),
        Hang,
    }

    /// Requests the endpoint received: Authorization header and JSON body.
    type Seen = Arc<Mutex<Vec<(Option<String>, serde_json::Value)>>>;

    #[derive(Clone)]
    struct Endpoint {
        reply: Reply,
        seen: Seen,
    }

    async fn speech_route(
        State(endpoint): State<Endpoint>,
        headers: HeaderMap,
        Json(body): Json<serde_json::Value>,
    ) -> Response {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        endpoint.seen.lock().unwrap().push((auth, body));
        match endpoint.reply {
            Reply::Audio(content_type, bytes) => {
                ([("content-type", content_type)], bytes).into_response()
            }
            Reply::Fail(status, body) => {
                (status, [("content-type", "application/json")], body).into_response()
            }
            Reply::Hang => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                StatusCode::OK.into_response()
            }
        }
    }

    /// Serves `reply` at `/v1/audio/speech` on a free port; returns the base URL and the log of
    /// requests (Authorization header, JSON body).
    async fn serve(reply: Reply) -> (String, Seen) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/v1/audio/speech", post(speech_route))
            .with_state(Endpoint {
                reply,
                seen: Arc::clone(&seen),
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}/v1/"), seen)
    }

    fn openai(base_url: String, format: SpeechFormat, key: Option<&str>) -> OpenAiSpeech {
        OpenAiSpeech::new(OpenAiSpeechConfig {
            api_key: key.map(Secret::new),
            format,
            timeout_ms: 10_000,
            ..OpenAiSpeechConfig::new(base_url, "tts-test", "alloy")
        })
        .unwrap()
    }

    #[tokio::test]
    async fn openai_endpoint_wav_request_and_response() {
        let clip = tone(24_000, 1.0, 0.4);
        let (url, seen) = serve(Reply::Audio("audio/wav", clip.to_wav())).await;
        let engine = openai(url, SpeechFormat::Wav, Some("sk-test-123"));
        let speech = engine.synthesize(SENTENCE).await.unwrap();
        assert_eq!(speech.sample_rate, 24_000);
        assert_eq!(speech.to_pcm_s16le(), clip.to_pcm_s16le());

        let seen = seen.lock().unwrap();
        let (auth, body) = &seen[0];
        assert_eq!(auth.as_deref(), Some("Bearer sk-test-123"));
        assert_eq!(body["model"], "tts-test");
        assert_eq!(body["input"], SENTENCE);
        assert_eq!(body["voice"], "alloy");
        assert_eq!(body["response_format"], "wav");
        // The key never prints.
        assert!(!format!("{engine:?}").contains("sk-test-123"));
        assert!(!engine.name().contains("sk-test-123"));
    }

    #[tokio::test]
    async fn openai_endpoint_raw_pcm_is_24khz() {
        let clip = tone(24_000, 0.5, 0.4);
        let (url, seen) = serve(Reply::Audio("audio/pcm", clip.to_pcm_s16le())).await;
        let speech = openai(url, SpeechFormat::Pcm, None)
            .synthesize("Next question.")
            .await
            .unwrap();
        assert_eq!(speech.sample_rate, SpeechFormat::PCM_RATE);
        assert_eq!(speech.to_pcm_s16le(), clip.to_pcm_s16le());
        assert_eq!(seen.lock().unwrap()[0].1["response_format"], "pcm");
    }

    #[tokio::test]
    async fn openai_endpoint_serves_espeak_wav() {
        let Some(espeak) = espeak().await else { return };
        let clip = espeak.synthesize(SENTENCE).await.unwrap();
        let (url, _) = serve(Reply::Audio("audio/wav", clip.to_wav())).await;
        let speech = openai(url, SpeechFormat::Wav, None)
            .synthesize(SENTENCE)
            .await
            .unwrap();
        assert_eq!(speech, clip);
    }

    #[tokio::test]
    async fn openai_server_error_keeps_the_message() {
        let body = r#"{"error":{"message":"the voice model is overloaded","type":"server_error","param":null,"code":null}}"#;
        let (url, _) = serve(Reply::Fail(StatusCode::INTERNAL_SERVER_ERROR, body)).await;
        let err = openai(url, SpeechFormat::Wav, None)
            .synthesize(SENTENCE)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            TtsError::Http {
                status: 500,
                message: "the voice model is overloaded".into()
            }
        );
    }

    #[tokio::test]
    async fn openai_client_error_keeps_the_message() {
        let body = r#"{"error":{"message":"Invalid API key","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
        let (url, seen) = serve(Reply::Fail(StatusCode::UNAUTHORIZED, body)).await;
        let err = openai(url, SpeechFormat::Wav, Some("wrong"))
            .synthesize(SENTENCE)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            TtsError::Http {
                status: 401,
                message: "Invalid API key".into()
            }
        );
        assert_eq!(seen.lock().unwrap().len(), 1, "a 401 must not be retried");
    }

    #[tokio::test]
    async fn openai_endpoint_timeout() {
        let (url, _) = serve(Reply::Hang).await;
        let engine = OpenAiSpeech::new(OpenAiSpeechConfig {
            timeout_ms: 300,
            ..OpenAiSpeechConfig::new(url, "tts-test", "alloy")
        })
        .unwrap();
        let started = Instant::now();
        let err = engine.synthesize(SENTENCE).await.unwrap_err();
        assert_eq!(
            err,
            TtsError::Timeout {
                after: Duration::from_millis(300)
            }
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn openai_bad_audio_and_unreachable_endpoint() {
        let (url, _) = serve(Reply::Audio("audio/wav", b"RIFF....garbage".to_vec())).await;
        let err = openai(url, SpeechFormat::Wav, None)
            .synthesize(SENTENCE)
            .await
            .unwrap_err();
        assert!(matches!(err, TtsError::BadAudio { .. }), "{err}");

        // A port nobody listens on: bind one, then close it.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = openai(format!("http://{addr}/v1"), SpeechFormat::Wav, None)
            .synthesize(SENTENCE)
            .await
            .unwrap_err();
        assert!(matches!(err, TtsError::Request { .. }), "{err}");

        assert!(matches!(
            OpenAiSpeech::new(OpenAiSpeechConfig::new("ftp://x", "m", "v")),
            Err(TtsError::InvalidConfig { .. })
        ));
    }
}
