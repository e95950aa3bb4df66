//! Remote transcription: a [`Transcriber`] over an OpenAI-compatible
//! `POST {base_url}/audio/transcriptions` endpoint (a GPU inference server such as
//! faster-whisper-server, or OpenAI itself), through async-openai.
//!
//! Sessions see the same behaviour as with local whisper: one request per finished utterance
//! (finals) and per caption snapshot (partials), segments with times relative to the clip, the
//! same hallucination filter. Every request has a deadline and one retry; when the endpoint
//! still fails, the utterance goes to the local whisper pool instead (the fallback), and the
//! endpoint is left alone for a cool-down before it is tried again, so that a dead endpoint
//! costs one timeout, not one per utterance. Partials are shed, never queued, when too many
//! requests are in flight.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::types::audio::{AudioInput, AudioResponseFormat, CreateTranscriptionRequest};
use nextmark_engine::asr::pool::{AsrJob, AsrOutput, JobKind, Rejected, Reply};
use nextmark_engine::asr::{AsrError, Segment, Transcriber, filter};
use nextmark_engine::audio::TARGET_RATE;
use serde::Deserialize;

use crate::platform::config::Secret;

/// Settings of the remote endpoint.
#[derive(Debug, Clone)]
pub struct RemoteSttConfig {
    /// Base URL including `/v1` (e.g. `http://10.0.0.5:8000/v1`).
    pub base_url: String,
    /// Model name sent with each request.
    pub model: String,
    /// Bearer key, if the endpoint wants one.
    pub api_key: Option<Secret>,
    /// Deadline of one request (retry included).
    pub timeout: Duration,
    /// Requests in flight at once; partials past it are shed.
    pub max_in_flight: usize,
    /// How long the endpoint is left alone after a failure (utterances go to the fallback).
    pub cool_down: Duration,
}

impl RemoteSttConfig {
    /// Settings for `base_url` with the defaults: `whisper-1`, 5 s deadline, 64 in flight,
    /// 15 s cool-down.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            model: "whisper-1".into(),
            api_key: None,
            timeout: Duration::from_secs(5),
            max_in_flight: 64,
            cool_down: Duration::from_secs(15),
        }
    }
}

/// Counters of the remote transcriber.
#[derive(Debug, Default)]
pub struct RemoteSttStats {
    /// Utterances the endpoint transcribed.
    pub remote_done: AtomicU64,
    /// Utterances that failed remotely and went to the fallback.
    pub fell_back: AtomicU64,
    /// Partials shed because too many requests were in flight.
    pub shed_partials: AtomicU64,
}

/// The remote transcriber, with an optional local fallback.
pub struct RemoteTranscriber {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client<OpenAIConfig>,
    config: RemoteSttConfig,
    fallback: Option<Arc<dyn Transcriber>>,
    runtime: tokio::runtime::Handle,
    in_flight: AtomicUsize,
    /// Until when the endpoint is skipped after a failure.
    cooling_until: Mutex<Option<Instant>>,
    stats: RemoteSttStats,
    name: String,
}

impl std::fmt::Debug for RemoteTranscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteTranscriber")
            .field("base_url", &self.inner.config.base_url)
            .field("model", &self.inner.config.model)
            .field("fallback", &self.inner.fallback.as_ref().map(|t| t.name()))
            .finish()
    }
}

impl RemoteTranscriber {
    /// A transcriber for `config`, sending failed utterances to `fallback` when given. Must be
    /// created inside a tokio runtime (requests run on it).
    pub fn new(config: RemoteSttConfig, fallback: Option<Arc<dyn Transcriber>>) -> Result<Self> {
        let base = config.base_url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("live.stt_base_url {base:?} must start with http:// or https://");
        }
        if config.model.trim().is_empty() {
            bail!("live.stt_model must not be empty");
        }
        if config.timeout.is_zero() || config.max_in_flight == 0 {
            bail!("live.stt_timeout_ms and live.stt_max_in_flight must be more than zero");
        }
        let key = config.api_key.as_ref().map_or("", |k| k.expose());
        // Empty organisation and project: never pick them (or a key) up from the environment.
        let openai = OpenAIConfig::new()
            .with_api_base(base.clone())
            .with_api_key(key)
            .with_org_id("")
            .with_project_id("");
        let name = format!(
            "openai-stt {base} ({}){}",
            config.model,
            fallback
                .as_ref()
                .map(|f| format!(", falls back to {}", f.name()))
                .unwrap_or_default()
        );
        Ok(Self {
            inner: Arc::new(Inner {
                client: Client::with_config(openai),
                config: RemoteSttConfig {
                    base_url: base,
                    ..config
                },
                fallback,
                runtime: tokio::runtime::Handle::try_current()?,
                in_flight: AtomicUsize::new(0),
                cooling_until: Mutex::new(None),
                stats: RemoteSttStats::default(),
                name,
            }),
        })
    }

    /// The counters.
    pub fn stats(&self) -> &RemoteSttStats {
        &self.inner.stats
    }
}

impl Inner {
    fn cooling(&self) -> bool {
        let mut until = self
            .cooling_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match *until {
            Some(t) if Instant::now() < t => true,
            Some(_) => {
                *until = None;
                false
            }
            None => false,
        }
    }

    fn cool_down(&self) {
        *self
            .cooling_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(Instant::now() + self.config.cool_down);
    }

    /// Calls a job's reply on a blocking thread: replies may block (a session waits for room
    /// for a final), which a runtime thread must not.
    fn reply(&self, reply: Reply, result: Result<AsrOutput, AsrError>) {
        drop(self.runtime.spawn_blocking(move || reply(result)));
    }

    /// Hands the job to the fallback, or fails it when there is none.
    fn fall_back(&self, job: AsrJob, why: &str) {
        match &self.fallback {
            Some(local) => {
                self.stats.fell_back.fetch_add(1, Ordering::Relaxed);
                if let Err(Rejected { job, error }) = local.submit(job) {
                    self.reply(
                        job.reply,
                        Err(AsrError::Inference(format!(
                            "remote transcription failed ({why}) and the local fallback \
                             refused: {error}"
                        ))),
                    );
                }
            }
            None => self.reply(
                job.reply,
                Err(AsrError::Inference(format!(
                    "remote transcription failed: {why}"
                ))),
            ),
        }
    }

    /// One request, with the deadline covering a retry.
    async fn transcribe(&self, wav: Vec<u8>, prompt: Option<String>) -> Result<Vec<Segment>> {
        let attempt = || async {
            let request = CreateTranscriptionRequest {
                file: AudioInput::from_vec_u8("utterance.wav".into(), wav.clone()),
                model: self.config.model.clone(),
                language: Some("en".into()),
                prompt: prompt.clone(),
                response_format: Some(AudioResponseFormat::VerboseJson),
                temperature: Some(0.0),
                ..CreateTranscriptionRequest::default()
            };
            // Raw bytes, parsed here: servers differ in which optional segment fields they
            // send (faster-whisper-server has no `seek`), and only a few are needed.
            let body = self
                .client
                .audio()
                .transcription()
                .create_raw(request)
                .await?;
            parse_verbose_json(&body)
        };
        let both = async {
            match attempt().await {
                Ok(segments) => Ok(segments),
                Err(first) => {
                    tracing::debug!(
                        error = format!("{first:#}"),
                        "remote transcription failed once; retrying"
                    );
                    attempt().await
                }
            }
        };
        match tokio::time::timeout(self.config.timeout, both).await {
            Ok(result) => result,
            Err(_) => bail!("no answer within {:?}", self.config.timeout),
        }
    }
}

impl Transcriber for RemoteTranscriber {
    fn submit(&self, job: AsrJob) -> Result<(), Rejected> {
        let inner = &self.inner;
        if job.options.cancel.is_cancelled() {
            inner.reply(job.reply, Err(AsrError::cancelled_unstarted()));
            return Ok(());
        }
        if inner.cooling() {
            inner.fall_back(job, "the endpoint failed recently");
            return Ok(());
        }
        if inner.in_flight.load(Ordering::Relaxed) >= inner.config.max_in_flight {
            if job.kind == JobKind::Partial {
                inner.stats.shed_partials.fetch_add(1, Ordering::Relaxed);
                inner.reply(job.reply, Err(AsrError::Dropped));
            } else {
                inner.fall_back(job, "too many requests in flight");
            }
            return Ok(());
        }
        inner.in_flight.fetch_add(1, Ordering::Relaxed);
        let task = Arc::clone(inner);
        inner.runtime.spawn(async move {
            let submitted = Instant::now();
            let wav = wav_16k(&job.samples);
            let result = task.transcribe(wav, job.options.prompt.clone()).await;
            task.in_flight.fetch_sub(1, Ordering::Relaxed);
            if job.options.cancel.is_cancelled() {
                // The request was already paid for; its answer is simply not wanted any more
                // (and a failure of it is no reason to fall back).
                task.reply(job.reply, Err(AsrError::cancelled_unstarted()));
                return;
            }
            match result {
                Ok(segments) => {
                    task.stats.remote_done.fetch_add(1, Ordering::Relaxed);
                    task.reply(
                        job.reply,
                        Ok(AsrOutput {
                            segments: filter::clean_segments(segments),
                            compute: submitted.elapsed(),
                            queued: Duration::ZERO,
                            threads: 0,
                        }),
                    );
                }
                Err(e) => {
                    let why = format!("{e:#}");
                    tracing::warn!(endpoint = %task.config.base_url, error = %why, "remote transcription failed; using local whisper");
                    task.cool_down();
                    task.fall_back(job, &why);
                }
            }
        });
        Ok(())
    }

    fn name(&self) -> &str {
        &self.inner.name
    }

    fn queue_depth(&self) -> usize {
        self.inner.in_flight.load(Ordering::Relaxed)
            + self.inner.fallback.as_ref().map_or(0, |f| f.queue_depth())
    }

    fn fallbacks(&self) -> u64 {
        self.inner.stats.fell_back.load(Ordering::Relaxed)
    }
}

/// The fields of a `verbose_json` transcription this server uses.
#[derive(Debug, Deserialize)]
struct VerboseTranscription {
    text: String,
    #[serde(default)]
    segments: Option<Vec<VerboseSegment>>,
}

#[derive(Debug, Deserialize)]
struct VerboseSegment {
    start: f64,
    end: f64,
    text: String,
    #[serde(default)]
    no_speech_prob: Option<f32>,
}

/// Segments of a `verbose_json` answer; an answer with text but no segments becomes one
/// segment without times.
fn parse_verbose_json(body: &[u8]) -> Result<Vec<Segment>> {
    let parsed: VerboseTranscription = serde_json::from_slice(body).map_err(|e| {
        let shown = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        anyhow::anyhow!("unreadable transcription answer ({e}): {shown}")
    })?;
    let segments = match parsed.segments {
        Some(segments) => segments
            .into_iter()
            .map(|s| Segment {
                start_s: s.start,
                end_s: s.end,
                text: s.text.trim().to_string(),
                no_speech_prob: s.no_speech_prob.unwrap_or(0.0),
            })
            .filter(|s| !s.text.is_empty())
            .collect(),
        None if parsed.text.trim().is_empty() => Vec::new(),
        None => vec![Segment {
            start_s: 0.0,
            end_s: 0.0,
            text: parsed.text.trim().to_string(),
            no_speech_prob: 0.0,
        }],
    };
    Ok(segments)
}

/// 16 kHz mono float samples as a 16-bit PCM WAV file.
fn wav_16k(samples: &[f32]) -> Vec<u8> {
    let data_len = u32::try_from(samples.len() * 2).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&TARGET_RATE.to_le_bytes());
    out.extend_from_slice(&(TARGET_RATE * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for &s in samples {
        let v = (s.clamp(-1.0, 1.0) * f32::from(i16::MAX)).round() as i16;
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbose_json_with_and_without_optional_fields() {
        let faster_whisper_server = br#"{"task":"transcribe","language":"en","duration":2.0,
            "text":" Hello there.","segments":[{"id":0,"start":0.0,"end":1.5,
            "text":" Hello there.","no_speech_prob":0.01}]}"#;
        let s = parse_verbose_json(faster_whisper_server).expect("parse");
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].text, "Hello there.");
        assert_eq!(s[0].end_s, 1.5);
        let text_only = br#"{"text":"Just text"}"#;
        assert_eq!(
            parse_verbose_json(text_only).expect("parse")[0].text,
            "Just text"
        );
        assert!(
            parse_verbose_json(br#"{"text":"  "}"#)
                .expect("parse")
                .is_empty()
        );
        let err = parse_verbose_json(b"<html>bad gateway</html>").unwrap_err();
        assert!(format!("{err:#}").contains("bad gateway"), "{err:#}");
    }

    #[test]
    fn wav_header_describes_the_samples() {
        let wav = wav_16k(&[0.0, 1.0, -1.0, 2.0]);
        assert_eq!(&wav[..4], b"RIFF");
        assert_eq!(wav.len(), 44 + 8);
        assert_eq!(
            u32::from_le_bytes([wav[24], wav[25], wav[26], wav[27]]),
            16_000
        );
        assert_eq!(i16::from_le_bytes([wav[46], wav[47]]), i16::MAX);
        assert_eq!(i16::from_le_bytes([wav[48], wav[49]]), -i16::MAX);
        assert_eq!(i16::from_le_bytes([wav[50], wav[51]]), i16::MAX, "clamped");
    }
}
