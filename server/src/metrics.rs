//! Prometheus metrics: per-stage latency histograms, live session gauges, counters.
//!
//! Hand-rolled rather than pulled from a metrics crate: the set of metrics is small and fixed,
//! and everything on the per-frame path is a plain atomic (no locks, no allocation). Only the
//! labelled protocol-error counter sits behind a mutex, and it is touched on errors only.
//! [`Metrics::render`] writes the Prometheus text exposition format, version 0.0.4.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

/// Content type of the Prometheus text exposition format served at `/metrics`.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Bucket upper bounds (seconds) for per-stage step times: fine-grained below the 20 ms frame
/// period, then up to the ~1 s turn budget and past it, so overruns stay visible.
pub const STAGE_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Bucket upper bounds (seconds) for end-to-end turn and response latency, centred on the
/// one-second budget between an answer's end and the next question.
pub const TURN_BUCKETS: [f64; 14] = [
    0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 30.0,
];

/// Most distinct `code` label values kept for protocol errors; further codes are counted under
/// `other` so a misbehaving caller cannot grow the exposition without bound.
const MAX_ERROR_CODES: usize = 64;

/// A step of the live pipeline whose time is recorded in `nextmark_stage_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Decoding incoming audio (Opus packets or PCM frames) to samples.
    Decode,
    /// Resampling to the 16 kHz analysis rate.
    Resample,
    /// Voice activity detection and audio quality checks.
    Vad,
    /// A partial (caption) transcription while the applicant speaks.
    PartialTranscription,
    /// The final transcription of a finished utterance.
    FinalTranscription,
    /// Deciding whether the answer is finished.
    TurnDecision,
    /// Scoring an answer against the rubric.
    Scoring,
    /// Choosing the next item, follow-up or finish.
    Selection,
    /// Synthesizing (or fetching from cache) the question's speech.
    SpeechSynthesis,
}

impl Stage {
    /// Every stage, in exposition order.
    pub const ALL: [Stage; 9] = [
        Stage::Decode,
        Stage::Resample,
        Stage::Vad,
        Stage::PartialTranscription,
        Stage::FinalTranscription,
        Stage::TurnDecision,
        Stage::Scoring,
        Stage::Selection,
        Stage::SpeechSynthesis,
    ];

    /// The `stage` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Resample => "resample",
            Stage::Vad => "vad",
            Stage::PartialTranscription => "partial_transcription",
            Stage::FinalTranscription => "final_transcription",
            Stage::TurnDecision => "turn_decision",
            Stage::Scoring => "scoring",
            Stage::Selection => "selection",
            Stage::SpeechSynthesis => "speech_synthesis",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A lock-free histogram with fixed bucket bounds.
#[derive(Debug)]
struct Histogram {
    /// Upper bounds (inclusive, `le`), strictly increasing.
    bounds: &'static [f64],
    /// Per-bucket (not cumulative) counts; one extra slot for `+Inf`. Cumulated at render time
    /// so an observation is a single atomic increment.
    counts: Box<[AtomicU64]>,
    /// Sum of observations in nanoseconds: integer so concurrent sums are exact.
    sum_ns: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }
    }

    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let slot = self.bounds.partition_point(|&b| b < secs);
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Cumulative counts per bound, then the total (the `+Inf` bucket and `_count`).
    fn snapshot(&self) -> (Vec<u64>, u64, f64) {
        let mut running = 0u64;
        let mut cumulative = Vec::with_capacity(self.bounds.len());
        for count in &self.counts[..self.bounds.len()] {
            running += count.load(Ordering::Relaxed);
            cumulative.push(running);
        }
        running += self.counts[self.bounds.len()].load(Ordering::Relaxed);
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        (cumulative, running, sum)
    }

    fn render(
        &self,
        out: &mut String,
        name: &str,
        label: Option<(&str, &str)>,
    ) -> std::fmt::Result {
        let (cumulative, total, sum) = self.snapshot();
        let prefix = match label {
            Some((key, value)) => format!("{key}=\"{}\",", escape_label(value)),
            None => String::new(),
        };
        for (bound, count) in self.bounds.iter().zip(&cumulative) {
            writeln!(out, "{name}_bucket{{{prefix}le=\"{bound}\"}} {count}")?;
        }
        writeln!(out, "{name}_bucket{{{prefix}le=\"+Inf\"}} {total}")?;
        let plain = match label {
            Some((key, value)) => format!("{{{key}=\"{}\"}}", escape_label(value)),
            None => String::new(),
        };
        writeln!(out, "{name}_sum{plain} {sum}")?;
        writeln!(out, "{name}_count{plain} {total}")
    }
}

/// A monotone float counter (seconds of audio), stored as `f64` bits and added with a
/// compare-and-swap loop.
#[derive(Debug, Default)]
struct FloatCounter {
    bits: AtomicU64,
}

impl FloatCounter {
    fn add(&self, v: f64) {
        if !(v.is_finite() && v > 0.0) {
            return;
        }
        let _ = self
            .bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some((f64::from_bits(old) + v).to_bits())
            });
    }

    fn get(&self) -> f64 {
        f64::from_bits(self.bits.load(Ordering::Relaxed))
    }
}

/// The server's metrics, shared as `Arc<Metrics>` by every session and the `/metrics` route.
#[derive(Debug)]
pub struct Metrics {
    /// Step time of each pipeline stage, indexed by [`Stage`]: where the latency budget goes.
    stages: [Histogram; 9],
    /// Answer's last audio received → next question sent: what the applicant waits.
    turn_latency: Histogram,
    /// Last voiced sample → question event: the part of the wait the server controls once the
    /// applicant has stopped speaking.
    response_latency: Histogram,
    /// Interviews with a connected transport now.
    live_sessions: AtomicI64,
    open_sockets: AtomicI64,
    /// Interviews whose transport dropped and that wait for a resume.
    parked_sessions: AtomicI64,
    /// Utterances waiting for a transcription worker: the first sign of CPU overload.
    asr_queue_depth: AtomicI64,
    /// Interviews started.
    sessions_started: AtomicU64,
    /// Interviews that reached the end and produced a report.
    sessions_completed: AtomicU64,
    /// Interviews resumed after a disconnect.
    sessions_resumed: AtomicU64,
    /// Partial captions dropped under load (by design: finals are never dropped).
    partials_dropped: AtomicU64,
    /// Decodes called off because their result could no longer be used.
    decodes_cancelled: AtomicU64,
    /// Final transcripts produced.
    finals: AtomicU64,
    /// Times the applicant spoke over the interviewer.
    barge_ins: AtomicU64,
    /// Protocol errors sent to clients, by error code.
    protocol_errors: Mutex<BTreeMap<String, u64>>,
    /// Question audio served from the speech cache.
    tts_cache_hits: AtomicU64,
    /// Question audio that had to be synthesized at request time.
    interviews_refused: AtomicU64,
    lease_takeovers: AtomicU64,
    stt_fallbacks: AtomicU64,
    tts_cache_misses: AtomicU64,
    /// Seconds of applicant audio received, across all sessions.
    audio_seconds_received: FloatCounter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Measures a stage from creation to drop (or [`StageTimer::stop`]) and records it.
#[derive(Debug)]
#[must_use = "the stage is timed until this guard is dropped"]
pub struct StageTimer<'a> {
    metrics: &'a Metrics,
    stage: Stage,
    start: Instant,
    /// Set once recorded, so `stop` followed by drop records once.
    done: bool,
}

impl StageTimer<'_> {
    /// Records the elapsed time now and returns it.
    pub fn stop(mut self) -> Duration {
        self.record()
    }

    fn record(&mut self) -> Duration {
        let elapsed = self.start.elapsed();
        if !self.done {
            self.done = true;
            self.metrics.observe(self.stage, elapsed);
        }
        elapsed
    }
}

impl Drop for StageTimer<'_> {
    fn drop(&mut self) {
        self.record();
    }
}

impl Metrics {
    /// Empty metrics: every counter at zero.
    pub fn new() -> Self {
        Metrics {
            stages: std::array::from_fn(|_| Histogram::new(&STAGE_BUCKETS)),
            turn_latency: Histogram::new(&TURN_BUCKETS),
            response_latency: Histogram::new(&TURN_BUCKETS),
            live_sessions: AtomicI64::new(0),
            open_sockets: AtomicI64::new(0),
            parked_sessions: AtomicI64::new(0),
            asr_queue_depth: AtomicI64::new(0),
            sessions_started: AtomicU64::new(0),
            sessions_completed: AtomicU64::new(0),
            sessions_resumed: AtomicU64::new(0),
            partials_dropped: AtomicU64::new(0),
            decodes_cancelled: AtomicU64::new(0),
            finals: AtomicU64::new(0),
            barge_ins: AtomicU64::new(0),
            protocol_errors: Mutex::new(BTreeMap::new()),
            tts_cache_hits: AtomicU64::new(0),
            tts_cache_misses: AtomicU64::new(0),
            interviews_refused: AtomicU64::new(0),
            lease_takeovers: AtomicU64::new(0),
            stt_fallbacks: AtomicU64::new(0),
            audio_seconds_received: FloatCounter::default(),
        }
    }

    /// Records one step time of `stage`.
    pub fn observe(&self, stage: Stage, elapsed: Duration) {
        self.stages[stage.index()].observe(elapsed);
    }

    /// Starts timing `stage`; the time is recorded when the guard is dropped.
    pub fn time(&self, stage: Stage) -> StageTimer<'_> {
        StageTimer {
            metrics: self,
            stage,
            start: Instant::now(),
            done: false,
        }
    }

    /// Records a turn latency: answer's last audio received → next question sent.
    pub fn observe_turn_latency(&self, elapsed: Duration) {
        self.turn_latency.observe(elapsed);
    }

    /// Records a response latency: last voiced sample → question event.
    pub fn observe_response_latency(&self, elapsed: Duration) {
        self.response_latency.observe(elapsed);
    }

    /// Sets the number of open interview sockets.
    pub fn set_open_sockets(&self, n: i64) {
        self.open_sockets.store(n, Ordering::Relaxed);
    }

    /// Sets the number of interviews with a connected transport.
    pub fn set_live_sessions(&self, n: i64) {
        self.live_sessions.store(n, Ordering::Relaxed);
    }

    /// One more live interview.
    pub fn inc_live_sessions(&self) {
        self.live_sessions.fetch_add(1, Ordering::Relaxed);
    }

    /// One live interview fewer.
    pub fn dec_live_sessions(&self) {
        self.live_sessions.fetch_sub(1, Ordering::Relaxed);
    }

    /// Sets the number of parked (disconnected, resumable) interviews.
    pub fn set_parked_sessions(&self, n: i64) {
        self.parked_sessions.store(n, Ordering::Relaxed);
    }

    /// One more parked interview.
    pub fn inc_parked_sessions(&self) {
        self.parked_sessions.fetch_add(1, Ordering::Relaxed);
    }

    /// One parked interview fewer (resumed or expired).
    pub fn dec_parked_sessions(&self) {
        self.parked_sessions.fetch_sub(1, Ordering::Relaxed);
    }

    /// Sets the number of utterances waiting for a transcription worker.
    pub fn set_asr_queue_depth(&self, n: i64) {
        self.asr_queue_depth.store(n, Ordering::Relaxed);
    }

    /// Counts a started interview.
    pub fn inc_sessions_started(&self) {
        self.sessions_started.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a completed interview.
    pub fn inc_sessions_completed(&self) {
        self.sessions_completed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a resumed interview.
    pub fn inc_sessions_resumed(&self) {
        self.sessions_resumed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a new interview refused at capacity.
    pub fn inc_interviews_refused(&self) {
        self.interviews_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an interview taken over from another instance.
    pub fn inc_lease_takeovers(&self) {
        self.lease_takeovers.fetch_add(1, Ordering::Relaxed);
    }

    /// Sets the count of utterances the remote transcription endpoint failed and local
    /// whisper decoded instead (the transcriber keeps the count).
    pub fn set_stt_fallbacks(&self, n: u64) {
        self.stt_fallbacks.store(n, Ordering::Relaxed);
    }

    /// Counts a partial caption dropped under load.
    pub fn inc_partials_dropped(&self) {
        self.partials_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a decode called off (a caption of an utterance already cut, or overtaken by a
    /// longer decode).
    pub fn inc_decodes_cancelled(&self) {
        self.decodes_cancelled.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a final transcript.
    pub fn inc_finals(&self) {
        self.finals.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a barge-in (the applicant spoke over the interviewer).
    pub fn inc_barge_ins(&self) {
        self.barge_ins.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a protocol error sent with `code` (the wire protocol's error code).
    pub fn inc_protocol_errors(&self, code: &str) {
        let mut map = self
            .protocol_errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(code) {
            *n += 1;
        } else if map.len() < MAX_ERROR_CODES {
            map.insert(code.to_owned(), 1);
        } else {
            *map.entry("other".to_owned()).or_insert(0) += 1;
        }
    }

    /// Counts question audio served from the speech cache.
    pub fn inc_tts_cache_hits(&self) {
        self.tts_cache_hits.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts question audio synthesized on demand.
    pub fn inc_tts_cache_misses(&self) {
        self.tts_cache_misses.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds received applicant audio, in seconds (non-finite or negative values are ignored).
    pub fn add_audio_seconds_received(&self, seconds: f64) {
        self.audio_seconds_received.add(seconds);
    }

    /// The metrics in the Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing to a String cannot fail.
        let _ = self.render_into(&mut out);
        out
    }

    fn render_into(&self, out: &mut String) -> std::fmt::Result {
        let name = "nextmark_stage_seconds";
        header(
            out,
            name,
            "histogram",
            "Step time of each live pipeline stage.",
        )?;
        for stage in Stage::ALL {
            self.stages[stage.index()].render(out, name, Some(("stage", stage.as_str())))?;
        }
        let name = "nextmark_turn_latency_seconds";
        header(
            out,
            name,
            "histogram",
            "Answer's last audio received to next question sent.",
        )?;
        self.turn_latency.render(out, name, None)?;
        let name = "nextmark_response_latency_seconds";
        header(
            out,
            name,
            "histogram",
            "Last voiced sample to question event.",
        )?;
        self.response_latency.render(out, name, None)?;

        let gauges = [
            (
                "nextmark_live_sessions",
                "Interviews with a connected transport.",
                &self.live_sessions,
            ),
            (
                "nextmark_open_sockets",
                "Interview sockets open, before or after hello.",
                &self.open_sockets,
            ),
            (
                "nextmark_parked_sessions",
                "Disconnected interviews waiting for a resume.",
                &self.parked_sessions,
            ),
            (
                "nextmark_asr_queue_depth",
                "Utterances waiting for a transcription worker.",
                &self.asr_queue_depth,
            ),
        ];
        for (name, help, value) in gauges {
            header(out, name, "gauge", help)?;
            writeln!(out, "{name} {}", value.load(Ordering::Relaxed))?;
        }

        let counters = [
            (
                "nextmark_sessions_started_total",
                "Interviews started.",
                &self.sessions_started,
            ),
            (
                "nextmark_sessions_completed_total",
                "Interviews completed.",
                &self.sessions_completed,
            ),
            (
                "nextmark_sessions_resumed_total",
                "Interviews resumed after a disconnect.",
                &self.sessions_resumed,
            ),
            (
                "nextmark_partials_dropped_total",
                "Partial captions dropped under load.",
                &self.partials_dropped,
            ),
            (
                "nextmark_decodes_cancelled_total",
                "Transcription decodes called off because their result could no longer be used \
                 (a caption of an utterance already cut, or overtaken by a longer decode).",
                &self.decodes_cancelled,
            ),
            (
                "nextmark_finals_total",
                "Final transcripts produced.",
                &self.finals,
            ),
            (
                "nextmark_barge_ins_total",
                "Times the applicant spoke over the interviewer.",
                &self.barge_ins,
            ),
            (
                "nextmark_tts_cache_hits_total",
                "Question audio served from the speech cache.",
                &self.tts_cache_hits,
            ),
            (
                "nextmark_tts_cache_misses_total",
                "Question audio synthesized on demand.",
                &self.tts_cache_misses,
            ),
            (
                "nextmark_interviews_refused_total",
                "New interviews refused at capacity (503 at_capacity).",
                &self.interviews_refused,
            ),
            (
                "nextmark_lease_takeovers_total",
                "Interviews taken over from another instance.",
                &self.lease_takeovers,
            ),
            (
                "nextmark_stt_fallbacks_total",
                "Utterances the remote transcription endpoint failed, decoded by local whisper.",
                &self.stt_fallbacks,
            ),
        ];
        for (name, help, value) in counters {
            header(out, name, "counter", help)?;
            writeln!(out, "{name} {}", value.load(Ordering::Relaxed))?;
        }

        let name = "nextmark_protocol_errors_total";
        header(
            out,
            name,
            "counter",
            "Protocol errors sent to clients, by code.",
        )?;
        {
            let map = self
                .protocol_errors
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for (code, n) in map.iter() {
                writeln!(out, "{name}{{code=\"{}\"}} {n}", escape_label(code))?;
            }
        }

        let name = "nextmark_audio_seconds_received_total";
        header(out, name, "counter", "Seconds of applicant audio received.")?;
        writeln!(out, "{name} {}", self.audio_seconds_received.get())
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) -> std::fmt::Result {
    writeln!(out, "# HELP {name} {help}")?;
    writeln!(out, "# TYPE {name} {kind}")
}

/// Escapes a label value as the exposition format requires: `\`, `"` and newline.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// `GET /metrics`: the metrics in the Prometheus text format.
pub async fn metrics_handler(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.render())
}

/// A router serving `GET /metrics`, to merge into the server's router.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .with_state(metrics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Label pairs of one sample, in order.
    type Labels = Vec<(String, String)>;

    /// One parsed sample line: metric name, labels, value.
    #[derive(Debug)]
    struct Sample {
        name: String,
        labels: Labels,
        value: f64,
    }

    impl Sample {
        fn label(&self, key: &str) -> Option<&str> {
            self.labels
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        }
    }

    fn valid_name(name: &str) -> bool {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    fn parse_value(s: &str) -> Result<f64, String> {
        match s {
            "+Inf" => Ok(f64::INFINITY),
            "-Inf" => Ok(f64::NEG_INFINITY),
            "NaN" => Ok(f64::NAN),
            _ => s.parse::<f64>().map_err(|e| format!("value {s:?}: {e}")),
        }
    }

    fn parse_labels(s: &str) -> Result<Labels, String> {
        let mut labels = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            let eq = rest
                .find('=')
                .ok_or(format!("label without '=' in {s:?}"))?;
            let key = &rest[..eq];
            if !valid_name(key) {
                return Err(format!("bad label name {key:?}"));
            }
            let mut chars = rest[eq + 1..].char_indices();
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label value not quoted in {s:?}"));
            }
            let mut value = String::new();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next().map(|(_, c)| c) {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => return Err(format!("bad escape {other:?}")),
                    },
                    '"' => {
                        end = Some(eq + 1 + i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            let end = end.ok_or(format!("unterminated label value in {s:?}"))?;
            labels.push((key.to_owned(), value));
            rest = &rest[end..];
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            } else if !rest.is_empty() {
                return Err(format!("junk after label in {s:?}"));
            }
        }
        Ok(labels)
    }

    /// A small parser for the text format: every non-comment line must be
    /// `name{labels} value` (labels optional) with a float value; every sample must belong to a
    /// family announced by `# TYPE`.
    fn parse(text: &str) -> Result<(Vec<Sample>, HashMap<String, String>), String> {
        let mut samples = Vec::new();
        let mut types = HashMap::new();
        for line in text.lines() {
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split(' ');
                let name = parts.next().ok_or("TYPE without name")?;
                let kind = parts.next().ok_or("TYPE without kind")?;
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                    return Err(format!("bad type {kind}"));
                }
                types.insert(name.to_owned(), kind.to_owned());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (head, value) = line
                .rsplit_once(' ')
                .ok_or(format!("no value in {line:?}"))?;
            let value = parse_value(value)?;
            let (name, labels) = match head.split_once('{') {
                Some((name, rest)) => {
                    let inner = rest
                        .strip_suffix('}')
                        .ok_or(format!("unclosed labels in {line:?}"))?;
                    (name, parse_labels(inner)?)
                }
                None => (head, Vec::new()),
            };
            if !valid_name(name) {
                return Err(format!("bad metric name {name:?}"));
            }
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
                .unwrap_or(name);
            if !types.contains_key(family) {
                return Err(format!("sample {name} before its # TYPE"));
            }
            samples.push(Sample {
                name: name.to_owned(),
                labels,
                value,
            });
        }
        Ok((samples, types))
    }

    /// Checks every histogram series: buckets cumulative and sorted by `le`, `+Inf` present
    /// and equal to `_count`. Returns the number of series checked.
    fn check_histograms(samples: &[Sample], types: &HashMap<String, String>) -> usize {
        let mut checked = 0;
        for (family, kind) in types {
            if kind != "histogram" {
                continue;
            }
            let bucket_name = format!("{family}_bucket");
            let count_name = format!("{family}_count");
            let mut series: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
            for s in samples.iter().filter(|s| s.name == bucket_name) {
                let le = parse_value(s.label("le").expect("bucket without le")).expect("le");
                let key: Vec<_> = s
                    .labels
                    .iter()
                    .filter(|(k, _)| k != "le")
                    .cloned()
                    .collect();
                series.entry(key).or_default().push((le, s.value));
            }
            for (key, buckets) in series {
                assert!(
                    buckets.windows(2).all(|w| w[0].0 < w[1].0),
                    "{family}{key:?}: le not increasing"
                );
                assert!(
                    buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                    "{family}{key:?}: buckets not cumulative"
                );
                let (last_le, inf) = *buckets.last().expect("buckets");
                assert_eq!(last_le, f64::INFINITY, "{family}{key:?}: no +Inf bucket");
                let count = samples
                    .iter()
                    .find(|s| s.name == count_name && s.labels == key)
                    .expect("_count");
                assert_eq!(inf, count.value, "{family}{key:?}: +Inf != _count");
                let sum_name = format!("{family}_sum");
                assert!(
                    samples
                        .iter()
                        .any(|s| s.name == sum_name && s.labels == key),
                    "{family}{key:?}: no _sum"
                );
                checked += 1;
            }
        }
        checked
    }

    fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> &'a Sample {
        samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && labels.iter().all(|(k, v)| s.label(k) == Some(v))
            })
            .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
    }

    fn bucket(samples: &[Sample], stage: &str, le: &str) -> f64 {
        find(
            samples,
            "nextmark_stage_seconds_bucket",
            &[("stage", stage), ("le", le)],
        )
        .value
    }

    #[test]
    fn observations_land_in_cumulative_buckets() {
        let m = Metrics::new();
        m.observe(Stage::Vad, Duration::from_micros(300)); // <= 0.0005
        m.observe(Stage::Vad, Duration::from_micros(500)); // exactly on a bound: le is inclusive
        m.observe(Stage::Vad, Duration::from_millis(7)); // <= 0.01
        m.observe(Stage::Vad, Duration::from_millis(120)); // <= 0.15
        m.observe(Stage::Vad, Duration::from_secs(60)); // only +Inf
        let (samples, _) = parse(&m.render()).expect("parse");
        assert_eq!(bucket(&samples, "vad", "0.0005"), 2.0);
        assert_eq!(bucket(&samples, "vad", "0.005"), 2.0);
        assert_eq!(bucket(&samples, "vad", "0.01"), 3.0);
        assert_eq!(bucket(&samples, "vad", "0.1"), 3.0);
        assert_eq!(bucket(&samples, "vad", "0.15"), 4.0);
        assert_eq!(bucket(&samples, "vad", "10"), 4.0);
        assert_eq!(bucket(&samples, "vad", "+Inf"), 5.0);
        let count = find(
            &samples,
            "nextmark_stage_seconds_count",
            &[("stage", "vad")],
        );
        assert_eq!(count.value, 5.0);
        let sum = find(&samples, "nextmark_stage_seconds_sum", &[("stage", "vad")]);
        assert!((sum.value - 60.1278).abs() < 1e-9, "sum {}", sum.value);
        // Other stages are untouched.
        assert_eq!(bucket(&samples, "decode", "+Inf"), 0.0);
    }

    #[test]
    fn render_is_parseable_exposition_format() {
        let m = Metrics::new();
        for (i, stage) in Stage::ALL.into_iter().enumerate() {
            m.observe(stage, Duration::from_millis(3 * i as u64 + 1));
        }
        m.observe_turn_latency(Duration::from_millis(850));
        m.observe_response_latency(Duration::from_millis(420));
        m.inc_live_sessions();
        m.inc_live_sessions();
        m.dec_live_sessions();
        m.set_parked_sessions(3);
        m.set_asr_queue_depth(2);
        m.inc_sessions_started();
        m.inc_tts_cache_hits();
        m.inc_protocol_errors("bad \"hello\"\\\n");
        m.add_audio_seconds_received(1.5);
        m.add_audio_seconds_received(0.25);
        let text = m.render();
        assert!(text.ends_with('\n'));
        let (samples, types) = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(check_histograms(&samples, &types), Stage::ALL.len() + 2);
        assert_eq!(types["nextmark_live_sessions"], "gauge");
        assert_eq!(types["nextmark_finals_total"], "counter");
        assert_eq!(find(&samples, "nextmark_live_sessions", &[]).value, 1.0);
        assert_eq!(find(&samples, "nextmark_parked_sessions", &[]).value, 3.0);
        assert_eq!(find(&samples, "nextmark_asr_queue_depth", &[]).value, 2.0);
        assert_eq!(
            find(&samples, "nextmark_sessions_started_total", &[]).value,
            1.0
        );
        assert_eq!(
            find(&samples, "nextmark_tts_cache_hits_total", &[]).value,
            1.0
        );
        assert_eq!(
            find(&samples, "nextmark_tts_cache_misses_total", &[]).value,
            0.0
        );
        assert_eq!(
            find(&samples, "nextmark_audio_seconds_received_total", &[]).value,
            1.75
        );
        // The escaped label value round-trips through the parser.
        assert_eq!(
            find(
                &samples,
                "nextmark_protocol_errors_total",
                &[("code", "bad \"hello\"\\\n")]
            )
            .value,
            1.0
        );
        // Each family is announced once, with HELP before TYPE.
        for family in types.keys() {
            assert_eq!(text.matches(&format!("# TYPE {family} ")).count(), 1);
            assert!(text.contains(&format!("# HELP {family} ")));
        }
    }

    #[test]
    fn concurrent_observations_are_all_counted() {
        let m = Arc::new(Metrics::new());
        let threads = 8;
        let per_thread = 10_000u64;
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let m = Arc::clone(&m);
                std::thread::spawn(move || {
                    for i in 0..per_thread {
                        // 1 ms for even i, 200 ms for odd i.
                        let d = if i % 2 == 0 { 1 } else { 200 };
                        m.observe(Stage::FinalTranscription, Duration::from_millis(d));
                        m.inc_finals();
                        m.add_audio_seconds_received(0.5);
                        m.inc_protocol_errors(if t % 2 == 0 { "a" } else { "b" });
                        let _timer = m.time(Stage::Decode);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("thread");
        }
        let total = threads * per_thread;
        let (samples, types) = parse(&m.render()).expect("parse");
        check_histograms(&samples, &types);
        assert_eq!(
            bucket(&samples, "final_transcription", "0.001"),
            (total / 2) as f64
        );
        assert_eq!(
            bucket(&samples, "final_transcription", "0.15"),
            (total / 2) as f64
        );
        assert_eq!(
            bucket(&samples, "final_transcription", "0.25"),
            total as f64
        );
        let sum = find(
            &samples,
            "nextmark_stage_seconds_sum",
            &[("stage", "final_transcription")],
        );
        assert!((sum.value - (total / 2) as f64 * 0.201).abs() < 1e-6);
        assert_eq!(bucket(&samples, "decode", "+Inf"), total as f64);
        assert_eq!(
            find(&samples, "nextmark_finals_total", &[]).value,
            total as f64
        );
        assert_eq!(
            find(&samples, "nextmark_audio_seconds_received_total", &[]).value,
            total as f64 * 0.5
        );
        let a = find(&samples, "nextmark_protocol_errors_total", &[("code", "a")]);
        let b = find(&samples, "nextmark_protocol_errors_total", &[("code", "b")]);
        assert_eq!(a.value + b.value, total as f64);
    }

    #[test]
    fn labelled_counters_count_per_code_and_cap_cardinality() {
        let m = Metrics::new();
        m.inc_protocol_errors("bad_hello");
        m.inc_protocol_errors("bad_hello");
        m.inc_protocol_errors("unsupported_rate");
        let (samples, _) = parse(&m.render()).expect("parse");
        let by_code = |code: &str| {
            find(
                &samples,
                "nextmark_protocol_errors_total",
                &[("code", code)],
            )
            .value
        };
        assert_eq!(by_code("bad_hello"), 2.0);
        assert_eq!(by_code("unsupported_rate"), 1.0);

        for i in 0..2 * MAX_ERROR_CODES {
            m.inc_protocol_errors(&format!("code_{i}"));
        }
        let (samples, _) = parse(&m.render()).expect("parse");
        let series: Vec<_> = samples
            .iter()
            .filter(|s| s.name == "nextmark_protocol_errors_total")
            .collect();
        assert!(series.len() <= MAX_ERROR_CODES + 1);
        let total: f64 = series.iter().map(|s| s.value).sum();
        assert_eq!(total, (3 + 2 * MAX_ERROR_CODES) as f64);
        assert!(series.iter().any(|s| s.label("code") == Some("other")));
    }

    #[test]
    fn timer_records_once_on_stop_or_drop() {
        let m = Metrics::new();
        {
            let _t = m.time(Stage::Scoring);
            std::thread::sleep(Duration::from_millis(2));
        }
        let elapsed = m.time(Stage::Scoring).stop();
        assert!(elapsed < Duration::from_secs(1));
        let (samples, _) = parse(&m.render()).expect("parse");
        assert_eq!(bucket(&samples, "scoring", "+Inf"), 2.0);
        assert_eq!(
            bucket(&samples, "scoring", "0.001"),
            1.0,
            "the 2 ms sleep is above 1 ms"
        );
    }

    #[tokio::test]
    async fn handler_serves_text_format() {
        let m = Arc::new(Metrics::new());
        m.inc_barge_ins();
        let response = metrics_handler(State(Arc::clone(&m))).await.into_response();
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        let text = String::from_utf8(body.to_vec()).expect("utf-8");
        assert!(text.contains("\nnextmark_barge_ins_total 1\n"));
        let _router: Router = router(m);
    }
}
