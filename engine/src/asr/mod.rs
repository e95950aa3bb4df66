//! Speech recognition with whisper.cpp (through whisper-rs): one shared model context, one
//! decoding state per worker, and the per-call `audio_ctx` shortening that makes short clips
//! cheap.

pub mod driver;
pub mod filter;
pub mod pool;
pub mod segmenter;
pub mod stream;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};

use serde::Serialize;
use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
};

use crate::audio::TARGET_RATE;
use crate::model::{ModelError, verify_ggml};

/// Errors of the recogniser.
#[derive(Debug, thiserror::Error)]
pub enum AsrError {
    /// The model file is missing or not a usable ggml Whisper model.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// whisper.cpp refused to load the model.
    #[error("{path}: whisper could not load the model: {message}")]
    Load {
        /// The model file.
        path: PathBuf,
        /// whisper.cpp's complaint.
        message: String,
    },
    /// Inference failed.
    #[error("whisper inference failed: {0}")]
    Inference(String),
    /// A partial caption was dropped because the machine is saturated.
    #[error("partial caption dropped under load")]
    Dropped,
    /// The decode was called off through its [`CancelToken`] (its result could no longer be
    /// used), before it started or part-way through.
    #[error("decode cancelled")]
    Cancelled {
        /// Wall time it had decoded before it stopped (zero if it never started), so that
        /// what it cost is still counted.
        compute: std::time::Duration,
        /// Local threads it ran on (0 if it never started or ran remotely).
        threads: usize,
    },
}

impl AsrError {
    /// [`AsrError::Cancelled`] for a decode that had not run.
    pub fn cancelled_unstarted() -> Self {
        AsrError::Cancelled {
            compute: std::time::Duration::ZERO,
            threads: 0,
        }
    }
}

/// Calls off one decode: cancelling a clone cancels every clone. A decode checks it before it
/// starts and, on the local whisper pool, after the encoder and after every decoder step, so a
/// cancelled decode frees its core at the latest when its encoder pass is done.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token not cancelled yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls the decode off.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`cancel`](Self::cancel) was called on any clone.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A speech-to-text backend that decodes utterances: the local whisper worker pool, or a remote
/// OpenAI-compatible endpoint (in the server crate, which does the network I/O). Streaming state lives in
/// [`stream::StreamingTranscriber`]; a backend only decodes.
pub trait Transcriber: Send + Sync {
    /// Queues one decode. The job's reply is called exactly once: with the result, or with
    /// [`AsrError::Dropped`] for a partial shed under load.
    fn submit(&self, job: pool::AsrJob) -> Result<(), pool::Rejected>;

    /// A name for logs and metrics.
    fn name(&self) -> &str;

    /// Decodes waiting to run (for the queue-depth gauge).
    fn queue_depth(&self) -> usize;

    /// Utterances this backend failed and handed to a fallback backend (a remote endpoint
    /// falling back to local whisper); zero for backends without one.
    fn fallbacks(&self) -> u64 {
        0
    }
}

/// One recognised segment, times relative to the start of the clip given to whisper.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Segment {
    /// Start, seconds.
    pub start_s: f64,
    /// End, seconds.
    pub end_s: f64,
    /// Text, trimmed.
    pub text: String,
    /// whisper's probability that the segment holds no speech.
    #[serde(skip)]
    pub no_speech_prob: f32,
}

/// Options of one recognition call.
#[derive(Debug, Clone, Default)]
pub struct DecodeOptions {
    /// A vocabulary prompt (domain terms) given to the decoder as previous context.
    pub prompt: Option<String>,
    /// Use the full 30 s encoder window instead of one scaled to the clip (the offline
    /// reference path; slower, never shortened).
    pub full_window: bool,
    /// Calls the decode off (a caption whose utterance has been decoded or cut meanwhile).
    pub cancel: CancelToken,
}

/// A loaded model, shared by all workers.
#[derive(Clone)]
pub struct WhisperModel {
    ctx: Arc<WhisperContext>,
    path: PathBuf,
}

impl std::fmt::Debug for WhisperModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperModel")
            .field("path", &self.path)
            .finish()
    }
}

static LOG_HOOK: Once = Once::new();

impl WhisperModel {
    /// Loads and verifies a ggml model file.
    pub fn load(path: &Path) -> Result<Self, AsrError> {
        verify_ggml(path)?;
        LOG_HOOK.call_once(whisper_rs::install_logging_hooks);
        let ctx = WhisperContext::new_with_params(path, WhisperContextParameters::default())
            .map_err(|e| AsrError::Load {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        Ok(WhisperModel {
            ctx: Arc::new(ctx),
            path: path.to_path_buf(),
        })
    }

    /// The model file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A decoding state for one worker thread.
    pub fn worker(&self, threads: usize) -> Result<WhisperWorker, AsrError> {
        let state = self
            .ctx
            .create_state()
            .map_err(|e| AsrError::Inference(e.to_string()))?;
        Ok(WhisperWorker {
            state,
            threads: threads.max(1),
        })
    }
}

/// One worker's decoding state. Not shared between threads.
pub struct WhisperWorker {
    state: WhisperState,
    threads: usize,
}

impl std::fmt::Debug for WhisperWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperWorker")
            .field("threads", &self.threads)
            .finish()
    }
}

/// Encoder frames per second of audio (whisper: 1500 frames for 30 s).
const CTX_PER_SECOND: f64 = 50.0;
/// Below this many encoder frames tiny models start to hallucinate.
const MIN_AUDIO_CTX: i32 = 384;
/// Extra encoder frames beyond the clip, so that its end is never cut.
const AUDIO_CTX_MARGIN: i32 = 128;

/// The encoder context to use for a clip of `seconds`: ~50 frames a second plus a margin,
/// never below a floor that keeps tiny.en from hallucinating, never above the full window.
pub fn audio_ctx_for(seconds: f64) -> i32 {
    let needed = (seconds * CTX_PER_SECOND).ceil() as i32 + AUDIO_CTX_MARGIN;
    needed.clamp(MIN_AUDIO_CTX, 1500)
}

impl WhisperWorker {
    /// Transcribes one clip of 16 kHz mono audio (at most 30 s) on the worker's threads.
    pub fn transcribe(
        &mut self,
        samples: &[f32],
        opts: &DecodeOptions,
    ) -> Result<Vec<Segment>, AsrError> {
        self.transcribe_on(samples, opts, self.threads)
    }

    /// [`transcribe`](Self::transcribe) on `threads` threads for this call.
    ///
    /// A decode with a vocabulary prompt whose text is far too short for its audio (see
    /// [`prompt_collapsed`]) is run again without the prompt, and the wordier result is kept.
    ///
    /// A decode that loops is not redone: [`filter::clean_segments`] collapses the loop and
    /// the words around it are right, while a decode without the prompt writes the periods the
    /// prompt suppresses, and the turn rules then cut thinking pauses (bench/README.md).
    pub fn transcribe_on(
        &mut self,
        samples: &[f32],
        opts: &DecodeOptions,
        threads: usize,
    ) -> Result<Vec<Segment>, AsrError> {
        let segments = self.decode(samples, opts, threads)?;
        if opts.prompt.is_none() || !prompt_collapsed(&segments, samples.len()) {
            return Ok(segments);
        }
        let unprompted = DecodeOptions {
            prompt: None,
            ..opts.clone()
        };
        let retry = self.decode(samples, &unprompted, threads)?;
        let (before, after) = (word_count(&segments), word_count(&retry));
        tracing::info!(
            audio_s = samples.len() as f64 / f64::from(TARGET_RATE),
            words_with_prompt = before,
            words_without = after,
            "prompted decode collapsed; decoded again without the prompt"
        );
        Ok(if after > before { retry } else { segments })
    }

    fn decode(
        &mut self,
        samples: &[f32],
        opts: &DecodeOptions,
        threads: usize,
    ) -> Result<Vec<Segment>, AsrError> {
        let seconds = samples.len() as f64 / f64::from(TARGET_RATE);
        let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        params.set_n_threads(threads.max(1) as i32);
        params.set_language(Some("en"));
        params.set_translate(false);
        params.set_no_context(true);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_special(false);
        params.set_print_timestamps(false);
        params.set_suppress_blank(true);
        params.set_suppress_nst(true);
        params.set_temperature_inc(0.0);
        if !opts.full_window {
            params.set_audio_ctx(audio_ctx_for(seconds));
        }
        if let Some(prompt) = &opts.prompt {
            params.set_initial_prompt(prompt);
        }
        set_abort_hook(&mut params, &opts.cancel);
        // whisper needs at least one second of audio; pad short clips with silence.
        let min = TARGET_RATE as usize + TARGET_RATE as usize / 10;
        let padded;
        let input = if samples.len() < min {
            padded = {
                let mut v = samples.to_vec();
                v.resize(min, 0.0);
                v
            };
            &padded[..]
        } else {
            samples
        };
        if opts.cancel.is_cancelled() {
            return Err(AsrError::cancelled_unstarted());
        }
        let outcome = self.state.full(params, input);
        if opts.cancel.is_cancelled() {
            // Whatever whisper returned, nobody wants it now (an abort reads as a failure).
            return Err(AsrError::cancelled_unstarted());
        }
        outcome.map_err(|e| AsrError::Inference(e.to_string()))?;
        let mut segments = Vec::new();
        for seg in self.state.as_iter() {
            let text = seg
                .to_str_lossy()
                .map_err(|e| AsrError::Inference(e.to_string()))?
                .trim()
                .to_string();
            if text.is_empty() {
                continue;
            }
            segments.push(Segment {
                start_s: seg.start_timestamp() as f64 / 100.0,
                end_s: (seg.end_timestamp() as f64 / 100.0).min(seconds.max(0.0)),
                text,
                no_speech_prob: seg.no_speech_probability(),
            });
        }
        Ok(segments)
    }
}

/// whisper.cpp's abort hook: `data` points at the `AtomicBool` of the decode's
/// [`CancelToken`]. whisper asks it after the encoder and after every decoder step.
#[allow(unsafe_code)]
unsafe extern "C" fn abort_requested(data: *mut std::ffi::c_void) -> bool {
    // SAFETY: `set_abort_hook` passes a pointer to the token's `AtomicBool`; the token lives in
    // the `DecodeOptions` borrowed for the whole `full` call, the only time whisper calls this.
    unsafe { (*data.cast::<AtomicBool>()).load(Ordering::Relaxed) }
}

/// Lets whisper stop a decode part-way when its token is cancelled. whisper-rs's closure-based
/// `set_abort_callback_safe` reads its user data as the closure's own type while it stores a
/// boxed trait object there (whisper-rs 0.16), so a closure that captures anything reads
/// garbage; the raw hook with a pointer to the flag is used instead.
#[allow(unsafe_code)]
fn set_abort_hook(params: &mut FullParams<'_, '_>, cancel: &CancelToken) {
    let flag: &AtomicBool = &cancel.0;
    // SAFETY: `abort_requested` only reads the `AtomicBool` this pointer points at, which
    // outlives the `full` call that `params` is passed to (see `abort_requested`).
    unsafe {
        params.set_abort_callback(Some(abort_requested));
        params.set_abort_callback_user_data(std::ptr::from_ref(flag).cast_mut().cast());
    }
}

/// Audio shorter than this is never judged collapsed: a short clip may hold one word.
const COLLAPSE_MIN_AUDIO_S: f64 = 3.0;
/// Fewer words a second than this over a whole utterance is not speech transcribed: people
/// say two to three words a second, and utterances are cut at pauses, so they are mostly
/// speech.
const COLLAPSE_WORDS_PER_S: f64 = 0.25;

/// Whether a decode gave some words but far too few for its audio. With a vocabulary prompt
/// tiny.en now and then answers a whole utterance with a fragment of the prompt and stops
/// (seen: 14 s of speech → "norar", after a prompt holding "noradrenaline"); without the
/// prompt the same audio decodes normally. No words at all (noise, silence, whisper's
/// `[BLANK_AUDIO]`) is not a collapse: decoding noise twice would only cost time.
pub fn prompt_collapsed(segments: &[Segment], samples: usize) -> bool {
    let seconds = samples as f64 / f64::from(TARGET_RATE);
    let words = word_count(segments);
    seconds >= COLLAPSE_MIN_AUDIO_S && words > 0 && (words as f64) < seconds * COLLAPSE_WORDS_PER_S
}

/// Words in the segments that are not whisper's noise phrases or annotations.
fn word_count(segments: &[Segment]) -> usize {
    segments
        .iter()
        .filter(|s| !filter::is_hallucination(s))
        .map(|s| s.text.split_whitespace().count())
        .sum()
}

/// Joins segment texts with single spaces.
pub fn join_text(segments: &[Segment]) -> String {
    let mut out = String::new();
    for s in segments {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(s.text.trim());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(text: &str) -> Segment {
        Segment {
            start_s: 0.0,
            end_s: 1.0,
            text: text.to_string(),
            no_speech_prob: 0.0,
        }
    }

    const SECOND: usize = TARGET_RATE as usize;

    #[test]
    fn a_fragment_for_a_long_utterance_is_a_collapse() {
        assert!(prompt_collapsed(&[segment("norar")], 14 * SECOND));
        assert!(prompt_collapsed(&[segment("and so")], 10 * SECOND));
    }

    #[test]
    fn normal_speech_rates_and_short_clips_are_not_collapses() {
        let sentence = segment("I take blood cultures before antibiotics, but I don't delay them.");
        assert!(!prompt_collapsed(&[sentence], 5 * SECOND));
        // One word is a whole answer on a short clip ("Yes.", a long "Hmm").
        assert!(!prompt_collapsed(&[segment("Yes.")], 2 * SECOND));
        assert!(!prompt_collapsed(&[segment("Hmm, yes.")], 4 * SECOND));
    }

    #[test]
    fn no_words_at_all_is_noise_not_a_collapse() {
        assert!(!prompt_collapsed(&[], 12 * SECOND));
        assert!(!prompt_collapsed(&[segment("[BLANK_AUDIO]")], 12 * SECOND));
        assert!(!prompt_collapsed(
            &[segment("Thanks for watching!")],
            12 * SECOND
        ));
    }
}
