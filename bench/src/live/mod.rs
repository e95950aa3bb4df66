//! The live bench: simulated applicants talk to a running `nextmark serve --demo` over the
//! interview WebSocket (PCM audio, or WebRTC) at real-time pace, at one or more concurrency
//! levels, and the bench measures end-to-end turn latency, cut-ins, caption lag, WER, and the
//! server process's memory and CPU. The capacity is the largest level that stays responsive.
//!
//! Every turn, caption, server message, session and resource sample is written as JSON Lines,
//! so each figure of `summary.json` can be recomputed from them.

mod applicant;
mod peer;
pub(crate) mod server;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

pub use self::applicant::{ClipAudio, Transport};
use self::applicant::{SessionOutcome, SessionPlan, TurnRecord};
pub use self::peer::PeerSetup;
use self::peer::{Comparison, PeerLevel};
use self::server::{MetricDeltas, ResourceSample, Sampler, SpawnSettings, SpawnedServer};
use crate::fixtures::{Manifest, Paths};
use crate::output::{self, JsonLines, Machine, fmt_opt, markdown_table};
use crate::stats::Dist;
use crate::svg;

/// A level meets the capacity target when its p95 voice turn latency is at most this.
pub const TARGET_P95_VOICE_S: f64 = 1.5;
/// Lag "grows" when the second half's median voice turn latency exceeds the first half's by
/// more than this fraction.
pub const LAG_GROWTH_LIMIT: f64 = 0.5;
/// CPU use below which the server counts as idle, percent of one core.
const SETTLE_CPU_PCT: f64 = 15.0;
/// Largest RSS change, MiB, over the quiet samples for the server to count as idle.
const SETTLE_RSS_MIB: f64 = 2.0;
/// Consecutive quiet samples needed.
const SETTLE_SAMPLES: usize = 3;
/// Resume window given to a spawned server: `bye` parks a session for this long before it
/// closes, so parked sessions of one level are gone before the next starts.
const RESUME_WINDOW_SECS: u64 = 5;

/// What `live` was asked to do.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// Concurrency levels to sweep, in order.
    pub sessions: Vec<usize>,
    /// Questions each session answers before `bye`.
    pub turns: usize,
    /// Socket PCM or WebRTC.
    pub transport: Transport,
    /// Clip selection (`all` or globs over manifest file names); answer clips only.
    pub clips: String,
    /// Discipline of the demo interviews.
    pub discipline: String,
    /// A running server to use instead of spawning one.
    pub server: Option<String>,
    /// Its process id, for resource sampling.
    pub server_pid: Option<u32>,
    /// The `nextmark` binary to spawn.
    pub nextmark: Option<PathBuf>,
    /// Delay between the starts of the sessions of a level, seconds.
    pub stagger_s: f64,
    /// `NEXTMARK_LIVE_INTERVIEW_MAX_ITEMS` for a spawned server.
    pub max_items: Option<usize>,
    /// A remote transcription endpoint for a spawned server (`NEXTMARK_LIVE_STT_BASE_URL`).
    pub stt_url: Option<String>,
    /// Run one unmeasured session (one turn, the shortest clip) before the levels.
    pub warmup: bool,
    /// Longest wait for the server to go idle after start-up and after the warm-up (at
    /// start-up it loads or renders the spoken form of every rubric text in the background).
    pub settle_max: Duration,
    /// Also run the faster-whisper peer on the same answers at every level.
    pub peer: Option<PeerSetup>,
}

/// How each figure is defined (copied into `summary.json`).
const DEFINITIONS: [(&str, &str); 11] = [
    (
        "voice_turn_latency_s",
        "arrival of the next question event − wall time the microphone frame holding the answer \
         clip's sample at last_voiced_s was sent; turns with a cut-in have none",
    ),
    (
        "speech_turn_latency_s",
        "wall time the first audible sample (≥ −40 dBFS) of the next question's speech was heard          − the same send time as voice_turn_latency_s. Socket: arrival of the question's first          audio frame + the silence before that sample (playback starts with the first frame);          WebRTC: arrival of the first audible decoded packet on the interviewer's track",
    ),
    (
        "server_turn_latency_s",
        "turn_latency_s of the next question event: server time from the audio frame that ended \
         the answer to the event",
    ),
    (
        "cut_in",
        "a question (or completed) event arrived before the frame holding the clip's sample at \
         last_voiced_s was sent; cut_in_pause says whether the clip position then was inside one \
         of the clip's listed pauses",
    ),
    (
        "caption_lag_s",
        "per final transcript event: arrival − wall time the microphone frame holding the audio \
         just before its end_s (session audio clock) was sent",
    ),
    (
        "wer",
        "word errors of the turn's final texts joined, against the clip's reference_text, summed \
         over the turns without a cut-in / summed reference words",
    ),
    (
        "rss_per_session_mib",
        "(peak RSS during the level − baseline RSS) / sessions; the baseline is the RSS after \
         the warm-up session (after start-up with --no-warmup), the server idle; \
         rss_per_session_from_startup_mib uses the RSS after start-up, before any session",
    ),
    (
        "rss_growth_pct",
        "(largest RSS sampled in the second half of the level's window − largest in the first \
         half) / largest in the first half; with answers_without_text (answered turns whose \
         finals were empty) the soak figures",
    ),
    (
        "cpu_pct",
        "server process utime+stime from /proc/PID/stat per wall second, percent of one core; \
         mean = over the level's whole window, peak = the largest 0.5 s sample",
    ),
    (
        "lag_grows",
        "median voice turn latency of the second half of the turns (turn > turns/2) exceeds that \
         of the first half by more than 50 %",
    ),
    (
        "capacity",
        "the largest swept level with p95 voice turn latency ≤ 1.5 s, no cut-in, no growing lag \
         and no failed session",
    ),
];

/// Median voice turn latency of the first and second halves of the turns.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct LagGrowth {
    /// Median over turns `1..=turns/2`, seconds.
    pub first_half_p50_s: Option<f64>,
    /// Median over the later turns, seconds.
    pub second_half_p50_s: Option<f64>,
    /// `second / first − 1`.
    pub growth: Option<f64>,
    /// `growth > LAG_GROWTH_LIMIT`.
    pub grows: bool,
}

impl LagGrowth {
    /// From the turns of a level (`turns` per session asked for).
    fn of(turns: &[TurnRecord], turns_per_session: usize) -> LagGrowth {
        let half = turns_per_session as f64 / 2.0;
        let pick = |first: bool| -> Vec<f64> {
            turns
                .iter()
                .filter(|t| (t.turn as f64 <= half) == first)
                .filter_map(|t| t.voice_turn_latency_s)
                .collect()
        };
        let first = Dist::of(&pick(true)).map(|d| d.p50);
        let second = Dist::of(&pick(false)).map(|d| d.p50);
        let growth = match (first, second) {
            (Some(f), Some(s)) if f > 0.0 => Some(s / f - 1.0),
            _ => None,
        };
        LagGrowth {
            first_half_p50_s: first,
            second_half_p50_s: second,
            growth,
            grows: growth.is_some_and(|g| g > LAG_GROWTH_LIMIT),
        }
    }
}

/// The figures of one concurrency level.
#[derive(Debug, Clone, Serialize)]
pub struct LevelSummary {
    /// Sessions run together.
    pub sessions: usize,
    /// Sessions that broke off (see `sessions.jsonl`).
    pub sessions_failed: usize,
    /// Sessions whose interview completed before all turns were answered.
    pub sessions_completed_early: usize,
    /// Start of the level, seconds since the bench started.
    pub started_at_s: f64,
    /// Wall time of the level, seconds.
    pub wall_s: f64,
    /// Turns closed by a server event (question or completed).
    pub turns: usize,
    /// Voice turn latency, seconds.
    pub voice_turn_latency_s: Option<Dist>,
    /// Last voiced sample → first audible sample of the spoken question, seconds.
    pub speech_turn_latency_s: Option<Dist>,
    /// Server turn latency (`turn_latency_s`), seconds.
    pub server_turn_latency_s: Option<Dist>,
    /// Turns the server ended before the answer's speech was over.
    pub cut_ins: usize,
    /// Of those, how many fell inside a listed pause of the clip.
    pub cut_ins_in_pause: usize,
    /// Final caption lag, seconds.
    pub caption_lag_s: Option<Dist>,
    /// Partial caption lag (same definition on partial events), seconds.
    pub partial_caption_lag_s: Option<Dist>,
    /// Last final of a turn − its last voiced sample sent, seconds.
    pub end_of_answer_final_lag_s: Option<Dist>,
    /// Summed word errors over turns without a cut-in.
    pub word_errors: usize,
    /// Summed reference words over those turns.
    pub reference_words: usize,
    /// `word_errors / reference_words`.
    pub wer: Option<f64>,
    /// Resident memory after start-up, before any session, MiB.
    pub rss_startup_mib: Option<f64>,
    /// Resident memory the per-session figure counts from: after the warm-up if there was
    /// one, else after start-up, MiB.
    pub rss_baseline_mib: Option<f64>,
    /// Resident memory when the level started, MiB.
    pub rss_level_start_mib: Option<f64>,
    /// Largest resident memory sampled during the level, MiB.
    pub rss_peak_mib: Option<f64>,
    /// `(rss_peak − rss_baseline) / sessions`, MiB.
    pub rss_per_session_mib: Option<f64>,
    /// `(rss_peak − rss_startup) / sessions`, MiB.
    pub rss_per_session_from_startup_mib: Option<f64>,
    /// Largest RSS in the first half of the level's window, MiB.
    pub rss_first_half_peak_mib: Option<f64>,
    /// Largest RSS in the second half, MiB.
    pub rss_second_half_peak_mib: Option<f64>,
    /// Memory growth over the level: second-half peak over first-half peak, percent (a leak
    /// shows here in a long level, e.g. a soak).
    pub rss_growth_pct: Option<f64>,
    /// Final transcript events the clients received.
    pub finals_received: usize,
    /// Answered turns (no cut-in) whose final text was empty: an answer lost on the way.
    pub answers_without_text: usize,
    /// CPU over the level's window, percent of one core.
    pub cpu_mean_pct: Option<f64>,
    /// Largest 0.5 s CPU sample during the level, percent of one core.
    pub cpu_peak_pct: Option<f64>,
    /// `/metrics` differences over the level.
    pub metrics: Option<MetricDeltas>,
    /// `error` events received, by code.
    pub server_errors: BTreeMap<String, usize>,
    /// `stop_audio` events received.
    pub stop_audio: usize,
    /// First versus second half of the turns.
    pub lag_growth: LagGrowth,
    /// Whether the level meets the capacity target.
    pub meets_target: bool,
    /// Why not.
    pub misses: Vec<String>,
}

/// Resource figures of a time window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Resources {
    /// RSS of the first sample in the window, MiB.
    start_mib: Option<f64>,
    /// Largest RSS, MiB.
    peak_mib: Option<f64>,
    /// CPU time over wall time between the first and last samples, percent.
    mean_pct: Option<f64>,
    /// Largest per-sample CPU, percent.
    peak_pct: Option<f64>,
    /// Largest RSS in the first half of the window, MiB.
    first_half_peak_mib: Option<f64>,
    /// Largest RSS in the second half of the window, MiB.
    second_half_peak_mib: Option<f64>,
}

impl Resources {
    fn of(samples: &[ResourceSample], from_s: f64, to_s: f64) -> Resources {
        let inside: Vec<&ResourceSample> = samples
            .iter()
            .filter(|s| s.at_s >= from_s && s.at_s <= to_s)
            .collect();
        let (first, last) = (inside.first(), inside.last());
        let mean_pct = match (first, last) {
            (Some(a), Some(b)) if b.at_s > a.at_s => {
                Some(100.0 * (b.cpu_s - a.cpu_s) / (b.at_s - a.at_s))
            }
            _ => None,
        };
        let middle = (from_s + to_s) / 2.0;
        let peak_where = |keep: &dyn Fn(f64) -> bool| {
            inside
                .iter()
                .filter(|s| keep(s.at_s))
                .map(|s| s.rss_mib)
                .reduce(f64::max)
        };
        Resources {
            first_half_peak_mib: peak_where(&|t| t < middle),
            second_half_peak_mib: peak_where(&|t| t >= middle),
            start_mib: first.map(|s| s.rss_mib),
            peak_mib: inside.iter().map(|s| s.rss_mib).reduce(f64::max),
            mean_pct,
            peak_pct: inside.iter().filter_map(|s| s.cpu_pct).reduce(f64::max),
        }
    }
}

/// Inputs of [`summarize_level`] besides the session outcomes.
struct LevelContext<'a> {
    /// Sessions of the level.
    sessions: usize,
    /// Turns per session asked for.
    turns_per_session: usize,
    /// Window of the level, seconds since the bench started.
    window: (f64, f64),
    /// Every resource sample of the run.
    samples: &'a [ResourceSample],
    /// RSS after start-up, MiB.
    rss_startup_mib: Option<f64>,
    /// RSS the per-session figure counts from, MiB.
    rss_baseline_mib: Option<f64>,
    /// `/metrics` differences.
    metrics: Option<MetricDeltas>,
}

fn summarize_level(outcomes: &[SessionOutcome], cx: &LevelContext<'_>) -> LevelSummary {
    let turns: Vec<TurnRecord> = outcomes.iter().flat_map(|o| o.turns.clone()).collect();
    let closed: Vec<&TurnRecord> = turns.iter().filter(|t| t.ended_by != "failed").collect();
    let collect = |f: &dyn Fn(&TurnRecord) -> Option<f64>| -> Vec<f64> {
        closed.iter().filter_map(|t| f(t)).collect()
    };
    let caption_lags = |kind: &str| -> Vec<f64> {
        outcomes
            .iter()
            .flat_map(|o| &o.captions)
            .filter(|c| c.kind == kind && !(kind == "final" && c.text.trim().is_empty()))
            .filter_map(|c| c.lag_s)
            .collect()
    };
    let wer_turns: Vec<&&TurnRecord> = closed.iter().filter(|t| !t.cut_in).collect();
    let word_errors: usize = wer_turns.iter().map(|t| t.word_errors).sum();
    let reference_words: usize = wer_turns.iter().map(|t| t.reference_words).sum();
    let resources = Resources::of(cx.samples, cx.window.0, cx.window.1);
    let per_session = |peak, base| per_session_of(peak, base, cx.sessions);
    let mut server_errors = BTreeMap::new();
    for e in outcomes.iter().flat_map(|o| &o.session.errors) {
        *server_errors.entry(e.code.clone()).or_insert(0) += 1;
    }
    let voice = Dist::of(&collect(&|t| t.voice_turn_latency_s));
    let cut_ins = closed.iter().filter(|t| t.cut_in).count();
    let sessions_failed = outcomes
        .iter()
        .filter(|o| o.session.outcome == "failed")
        .count();
    let lag_growth = LagGrowth::of(&turns, cx.turns_per_session);
    let mut misses = Vec::new();
    match voice {
        Some(d) if d.p95 <= TARGET_P95_VOICE_S => {}
        Some(d) => misses.push(format!(
            "p95 voice turn latency {:.2} s > {TARGET_P95_VOICE_S} s",
            d.p95
        )),
        None => misses.push("no voice turn latency measured".into()),
    }
    if cut_ins > 0 {
        misses.push(format!("{cut_ins} cut-in(s)"));
    }
    if lag_growth.grows {
        misses.push("lag grows".into());
    }
    if sessions_failed > 0 {
        misses.push(format!("{sessions_failed} session(s) failed"));
    }
    LevelSummary {
        sessions: cx.sessions,
        sessions_failed,
        sessions_completed_early: outcomes
            .iter()
            .filter(|o| o.session.outcome == "completed")
            .count(),
        started_at_s: cx.window.0,
        wall_s: cx.window.1 - cx.window.0,
        turns: closed.len(),
        voice_turn_latency_s: voice,
        speech_turn_latency_s: Dist::of(&collect(&|t| t.speech_turn_latency_s)),
        server_turn_latency_s: Dist::of(&collect(&|t| t.server_turn_latency_s)),
        cut_ins,
        cut_ins_in_pause: closed
            .iter()
            .filter(|t| t.cut_in && t.cut_in_pause == Some(true))
            .count(),
        caption_lag_s: Dist::of(&caption_lags("final")),
        partial_caption_lag_s: Dist::of(&caption_lags("partial")),
        end_of_answer_final_lag_s: Dist::of(&collect(&|t| t.end_of_answer_final_lag_s)),
        word_errors,
        reference_words,
        wer: (reference_words > 0).then(|| word_errors as f64 / reference_words as f64),
        rss_startup_mib: cx.rss_startup_mib,
        rss_baseline_mib: cx.rss_baseline_mib,
        rss_level_start_mib: resources.start_mib,
        rss_peak_mib: resources.peak_mib,
        rss_per_session_mib: per_session(resources.peak_mib, cx.rss_baseline_mib),
        rss_per_session_from_startup_mib: per_session(resources.peak_mib, cx.rss_startup_mib),
        rss_first_half_peak_mib: resources.first_half_peak_mib,
        rss_second_half_peak_mib: resources.second_half_peak_mib,
        rss_growth_pct: resources
            .first_half_peak_mib
            .zip(resources.second_half_peak_mib)
            .filter(|(a, _)| *a > 0.0)
            .map(|(a, b)| 100.0 * (b - a) / a),
        finals_received: outcomes
            .iter()
            .flat_map(|o| &o.captions)
            .filter(|c| c.kind == "final")
            .count(),
        answers_without_text: closed
            .iter()
            .filter(|t| t.ended_by == "question" && !t.cut_in && t.text.trim().is_empty())
            .count(),
        cpu_mean_pct: resources.mean_pct,
        cpu_peak_pct: resources.peak_pct,
        metrics: cx.metrics.clone(),
        server_errors,
        stop_audio: outcomes.iter().map(|o| o.session.stop_audio).sum(),
        lag_growth,
        meets_target: misses.is_empty(),
        misses,
    }
}

/// `(peak − base) / sessions`.
fn per_session_of(peak: Option<f64>, base: Option<f64>, sessions: usize) -> Option<f64> {
    Some((peak? - base?) / sessions.max(1) as f64)
}

/// The largest level that meets the target.
fn capacity(levels: &[LevelSummary]) -> Option<usize> {
    levels
        .iter()
        .filter(|l| l.meets_target)
        .map(|l| l.sessions)
        .max()
}

/// The server the run used.
#[derive(Debug, Clone, Serialize)]
pub struct ServerInfo {
    /// `spawned` or `external`.
    pub mode: &'static str,
    /// Base URL.
    pub url: String,
    /// The binary (spawned only).
    pub binary: Option<PathBuf>,
    /// Whether the binary sits in a `release` folder (spawned only).
    pub release_binary: Option<bool>,
    /// Process id sampled, if any.
    pub pid: Option<u32>,
    /// Environment given to it (spawned only; the secret masked).
    pub env: BTreeMap<String, String>,
    /// Seconds from spawn to `/healthz` = 200.
    pub startup_s: Option<f64>,
    /// Whether its CPU and memory went quiet after start-up (and after the warm-up).
    pub settled: Option<bool>,
    /// RSS after start-up, before any session, MiB.
    pub rss_startup_mib: Option<f64>,
    /// Whether an unmeasured warm-up session ran before the levels.
    pub warmup: bool,
    /// RSS after the warm-up session, the server idle again, MiB.
    pub rss_after_warmup_mib: Option<f64>,
}

/// `summary.json` of a `live` run.
#[derive(Debug, Clone, Serialize)]
pub struct LiveSummary {
    /// Always `live`.
    pub kind: &'static str,
    /// Start of the run, UTC.
    pub started_utc: String,
    /// End of the run, UTC.
    pub finished_utc: String,
    /// `ws` or `webrtc`.
    pub transport: Transport,
    /// Questions answered per session.
    pub turns_per_session: usize,
    /// Levels swept.
    pub sessions_swept: Vec<usize>,
    /// Discipline of the interviews.
    pub discipline: String,
    /// The clip selection asked for.
    pub clip_selection: String,
    /// The clips used, in turn order (session `s`, turn `t` plays clip `(s·turns + t) mod n`).
    pub clips: Vec<String>,
    /// Delay between session starts within a level, seconds.
    pub stagger_s: f64,
    /// The server.
    pub server: ServerInfo,
    /// Where the bench ran.
    pub machine: Machine,
    /// How each figure is defined.
    pub definitions: BTreeMap<&'static str, &'static str>,
    /// The capacity target: p95 voice turn latency bound, seconds.
    pub target_p95_voice_s: f64,
    /// The largest level that met the target, if any.
    pub capacity_sessions: Option<usize>,
    /// One entry per level, in sweep order.
    pub levels: Vec<LevelSummary>,
    /// The faster-whisper peer on the same answers, one entry per level (with `--peer`).
    pub peer: Vec<PeerLevel>,
    /// Ours against the peer, one entry per level (with `--peer`).
    pub ours_vs_peer: Vec<Comparison>,
}

/// Runs the live bench and writes its files into `out`.
pub fn run(paths: &Paths, options: &LiveOptions, out: &Path) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run_async(paths, options, out))
}

/// The JSON Lines files of a run.
struct Files {
    /// `turns.jsonl`.
    turns: JsonLines,
    /// `captions.jsonl`.
    captions: JsonLines,
    /// `messages.jsonl`.
    messages: JsonLines,
    /// `sessions.jsonl`.
    sessions: JsonLines,
}

impl Files {
    fn create(out: &Path) -> Result<Files> {
        Ok(Files {
            turns: JsonLines::create(out.join("turns.jsonl"))?,
            captions: JsonLines::create(out.join("captions.jsonl"))?,
            messages: JsonLines::create(out.join("messages.jsonl"))?,
            sessions: JsonLines::create(out.join("sessions.jsonl"))?,
        })
    }

    fn write(&mut self, outcome: &SessionOutcome) -> Result<()> {
        self.sessions.write(&outcome.session)?;
        for t in &outcome.turns {
            self.turns.write(t)?;
        }
        for c in &outcome.captions {
            self.captions.write(c)?;
        }
        for m in &outcome.messages {
            self.messages.write(m)?;
        }
        Ok(())
    }

    fn finish(self) -> Result<()> {
        self.turns.finish()?;
        self.captions.finish()?;
        self.messages.finish()?;
        self.sessions.finish()
    }
}

/// The server to talk to: spawned (and killed at the end) or external.
struct Target {
    /// Base URL.
    url: String,
    /// The child, if spawned.
    spawned: Option<SpawnedServer>,
    /// What the summary says about it.
    info: ServerInfo,
}

async fn start_target(
    paths: &Paths,
    options: &LiveOptions,
    http: &reqwest::Client,
    out: &Path,
) -> Result<Target> {
    if let Some(url) = &options.server {
        let url = url.trim_end_matches('/').to_string();
        let healthy = http
            .get(format!("{url}/healthz"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .with_context(|| format!("GET {url}/healthz"))?;
        if !healthy.status().is_success() {
            bail!("{url}/healthz answered {}", healthy.status());
        }
        eprintln!("[live] using the running server at {url}");
        return Ok(Target {
            info: ServerInfo {
                mode: "external",
                url: url.clone(),
                binary: None,
                release_binary: None,
                pid: options.server_pid,
                env: BTreeMap::new(),
                startup_s: None,
                settled: None,
                rss_startup_mib: None,
                warmup: false,
                rss_after_warmup_mib: None,
            },
            url,
            spawned: None,
        });
    }
    let binary = server::find_binary(options.nextmark.as_deref())?;
    let settings = SpawnSettings {
        model: paths.model_path()?,
        rubrics: paths.rubrics.clone(),
        max_sessions: options.sessions.iter().sum::<usize>() + 4,
        resume_window_secs: RESUME_WINDOW_SECS,
        max_items: options.max_items,
        stt_url: options.stt_url.clone(),
        database_url: None,
        extra_env: Vec::new(),
    };
    eprintln!("[live] starting {} serve --demo", binary.display());
    let mut spawned = SpawnedServer::spawn(&binary, &settings, &out.join("server.log"))?;
    let startup = spawned.wait_healthy(http).await?;
    eprintln!(
        "[live] server ready on {} in {:.1} s (pid {})",
        spawned.url,
        startup.as_secs_f64(),
        spawned.pid
    );
    let release = binary
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n == "release");
    if release == Some(false) {
        eprintln!("[live] note: the server is not a release build; its numbers are not comparable");
    }
    Ok(Target {
        url: spawned.url.clone(),
        info: ServerInfo {
            mode: "spawned",
            url: spawned.url.clone(),
            binary: Some(binary),
            release_binary: release,
            pid: Some(spawned.pid),
            env: spawned.env.clone(),
            startup_s: Some(startup.as_secs_f64()),
            settled: None,
            rss_startup_mib: None,
            warmup: false,
            rss_after_warmup_mib: None,
        },
        spawned: Some(spawned),
    })
}

/// Whether the last [`SETTLE_SAMPLES`] samples show an idle server: each below
/// [`SETTLE_CPU_PCT`], RSS moving less than [`SETTLE_RSS_MIB`].
fn quiet(samples: &[ResourceSample]) -> bool {
    if samples.len() < SETTLE_SAMPLES {
        return false;
    }
    let last = &samples[samples.len() - SETTLE_SAMPLES..];
    let (lo, hi) = last.iter().fold((f64::MAX, f64::MIN), |(lo, hi), s| {
        (lo.min(s.rss_mib), hi.max(s.rss_mib))
    });
    last.iter()
        .all(|s| s.cpu_pct.is_some_and(|p| p < SETTLE_CPU_PCT))
        && hi - lo < SETTLE_RSS_MIB
}

/// Waits (up to `max`) for the server to be idle; whether it was, and its RSS then.
async fn settle(sampler: &Sampler, max: Duration) -> (bool, Option<f64>) {
    let until = Instant::now() + max;
    let from = sampler.samples().len();
    loop {
        tokio::time::sleep(server::SAMPLE_PERIOD).await;
        let samples = sampler.samples();
        let recent = &samples[from.min(samples.len())..];
        let idle = quiet(recent);
        if idle || Instant::now() >= until {
            return (idle, samples.last().map(|s| s.rss_mib));
        }
    }
}

async fn run_async(paths: &Paths, options: &LiveOptions, out: &Path) -> Result<()> {
    let started_utc = output::utc_now_rfc3339();
    let origin = Instant::now();
    if options.sessions.is_empty() || options.sessions.contains(&0) {
        bail!("--sessions needs one or more levels of at least 1 session");
    }
    if options.turns == 0 {
        bail!("--turns must be at least 1");
    }
    let manifest = Manifest::load(&paths.fixtures)?;
    let selected: Vec<_> = manifest
        .select(&options.clips)?
        .into_iter()
        .filter(|c| c.item_id.is_some() && c.last_voiced_s.is_some())
        .collect();
    if selected.is_empty() {
        bail!(
            "--clips {:?} selects no answer clip (live plays answers: clips with an item and \
             last_voiced_s)",
            options.clips
        );
    }
    let with_48k = options.transport == Transport::Webrtc;
    let mut clips = Vec::with_capacity(selected.len());
    for clip in &selected {
        clips.push(Arc::new(ClipAudio::load(&paths.fixtures, clip, with_48k)?));
    }
    eprintln!(
        "[live] {} clip(s) ready, {} turn(s) per session, levels {:?}, transport {}",
        clips.len(),
        options.turns,
        options.sessions,
        options.transport.as_str()
    );

    if let Some(peer) = &options.peer {
        eprintln!("[live] preparing the faster-whisper peer (bench/peers/setup.sh)");
        peer.prepare().await?;
    }
    let http = reqwest::Client::new();
    let mut target = start_target(paths, options, &http, out).await?;
    let sampler = target.info.pid.map(|pid| Sampler::start(pid, origin));
    if let Some(sampler) = &sampler {
        eprintln!("[live] waiting for the server to go idle");
        let (idle, rss) = settle(sampler, options.settle_max).await;
        target.info.settled = Some(idle);
        target.info.rss_startup_mib = rss;
        eprintln!(
            "[live] server RSS after start-up {} MiB{}",
            fmt_opt(rss, 1),
            if idle { "" } else { " (still busy)" }
        );
    }

    let mut files = Files::create(out)?;
    if options.warmup {
        let shortest = clips
            .iter()
            .min_by(|a, b| a.duration_s().total_cmp(&b.duration_s()))
            .map(Arc::clone)
            .context("no clip")?;
        eprintln!(
            "[live] warm-up: 1 unmeasured session, 1 turn ({})",
            shortest.clip.file
        );
        let interview = server::create_interview(&http, &target.url, &options.discipline).await?;
        let outcome = applicant::run(SessionPlan {
            level: 0,
            session: 0,
            interview_id: interview.interview_id,
            ws_url: interview.ws_url,
            transport: options.transport,
            clips: vec![shortest],
            origin,
            start_delay: Duration::ZERO,
        })
        .await;
        files.write(&outcome)?;
        if let Some(failure) = &outcome.session.failure {
            bail!("the warm-up session failed: {failure}");
        }
        target.info.warmup = true;
        wait_for_parked(&http, &target).await;
        if let Some(sampler) = &sampler {
            let (idle, rss) = settle(sampler, options.settle_max).await;
            target.info.settled = target.info.settled.map(|s| s && idle);
            target.info.rss_after_warmup_mib = rss;
            eprintln!(
                "[live] server RSS after the warm-up {} MiB",
                fmt_opt(rss, 1)
            );
        }
    }
    let rss_baseline_mib = target
        .info
        .rss_after_warmup_mib
        .or(target.info.rss_startup_mib);
    let mut levels = Vec::new();
    let mut latencies: Vec<(usize, Vec<f64>)> = Vec::new();
    for (i, &n) in options.sessions.iter().enumerate() {
        eprintln!(
            "[live] level {}/{}: {n} session(s) × {} turn(s)",
            i + 1,
            options.sessions.len(),
            options.turns
        );
        if let Some(s) = &sampler {
            s.set_level(Some(n));
        }
        let from_s = origin.elapsed().as_secs_f64();
        let before = server::fetch_metrics(&http, &target.url).await.ok();
        let mut tasks = Vec::with_capacity(n);
        for session in 0..n {
            let interview =
                server::create_interview(&http, &target.url, &options.discipline).await?;
            let plan = SessionPlan {
                level: n,
                session,
                interview_id: interview.interview_id,
                ws_url: interview.ws_url,
                transport: options.transport,
                clips: session_clips(&clips, session, options.turns)
                    .into_iter()
                    .map(Arc::clone)
                    .collect(),
                origin,
                start_delay: Duration::from_secs_f64(options.stagger_s.max(0.0) * session as f64),
            };
            tasks.push(tokio::spawn(applicant::run(plan)));
        }
        let mut outcomes = Vec::with_capacity(n);
        for task in tasks {
            outcomes.push(task.await.context("a session task panicked")?);
        }
        let to_s = origin.elapsed().as_secs_f64();
        let after = server::fetch_metrics(&http, &target.url).await.ok();
        if let Some(s) = &sampler {
            s.set_level(None);
        }
        for o in &outcomes {
            files.write(o)?;
            let s = &o.session;
            eprintln!(
                "[live]   session {}: {} turn(s), {}{}",
                s.session,
                s.turns,
                s.outcome,
                s.failure
                    .as_ref()
                    .map(|f| format!(": {f}"))
                    .unwrap_or_default()
            );
        }
        let samples = sampler.as_ref().map(Sampler::samples).unwrap_or_default();
        let summary = summarize_level(
            &outcomes,
            &LevelContext {
                sessions: n,
                turns_per_session: options.turns,
                window: (from_s, to_s),
                samples: &samples,
                rss_startup_mib: target.info.rss_startup_mib,
                rss_baseline_mib,
                metrics: before
                    .zip(after)
                    .map(|(b, a)| MetricDeltas::between(&b, &a)),
            },
        );
        eprintln!(
            "[live]   voice turn latency p50/p95 {} s, to the spoken question {} s, cut-ins {}, {}",
            p50_p95(summary.voice_turn_latency_s),
            p50_p95(summary.speech_turn_latency_s),
            summary.cut_ins,
            if summary.meets_target {
                "meets the target".to_string()
            } else {
                format!("misses the target: {}", summary.misses.join(", "))
            }
        );
        latencies.push((
            n,
            outcomes
                .iter()
                .flat_map(|o| o.turns.iter().filter_map(|t| t.voice_turn_latency_s))
                .collect(),
        ));
        levels.push(summary);
        if i + 1 < options.sessions.len() {
            wait_for_parked(&http, &target).await;
        }
    }
    files.finish()?;
    let samples = sampler.map(Sampler::stop).unwrap_or_default();
    let mut resources_out = JsonLines::create(out.join("resources.jsonl"))?;
    for s in &samples {
        resources_out.write(s)?;
    }
    resources_out.finish()?;
    drop(target.spawned.take());

    // The peer runs after our server has stopped, on the same answers and levels.
    let mut peer_levels = Vec::new();
    let mut comparisons = Vec::new();
    if let Some(setup) = &options.peer {
        for (level, &n) in levels.iter().zip(&options.sessions) {
            eprintln!("[live] peer: {n} faster-whisper process(es), the same answers");
            let sequences: Vec<Vec<String>> = (0..n)
                .map(|s| {
                    session_clips(&clips, s, options.turns)
                        .into_iter()
                        .map(|c| c.clip.file.clone())
                        .collect()
                })
                .collect();
            let figures =
                peer::run_level(setup, &sequences, options.stagger_s, &out.join("peer")).await?;
            eprintln!(
                "[live]   peer end-of-turn latency p50/p95 {} s, cut-ins {}",
                p50_p95(figures.end_of_turn_latency_s),
                figures.cut_ins
            );
            comparisons.push(Comparison::of(
                n,
                level.voice_turn_latency_s,
                level.wer,
                level.cut_ins,
                &figures,
            ));
            peer_levels.push(figures);
        }
    }

    let summary = LiveSummary {
        kind: "live",
        started_utc,
        finished_utc: output::utc_now_rfc3339(),
        transport: options.transport,
        turns_per_session: options.turns,
        sessions_swept: options.sessions.clone(),
        discipline: options.discipline.clone(),
        clip_selection: options.clips.clone(),
        clips: clips.iter().map(|c| c.clip.file.clone()).collect(),
        stagger_s: options.stagger_s,
        server: target.info,
        machine: Machine::detect(),
        definitions: DEFINITIONS.into_iter().collect(),
        target_p95_voice_s: TARGET_P95_VOICE_S,
        capacity_sessions: capacity(&levels),
        levels,
        peer: peer_levels,
        ours_vs_peer: comparisons,
    };
    write_plots(out, &latencies, &samples, &summary.levels)?;
    let turns = read_turns(&out.join("turns.jsonl"))?;
    let md = markdown(&summary, &turns);
    output::write_summary(out, &summary, &md)?;
    eprint!("{md}");
    Ok(())
}

/// The clips session `session` plays, in turn order: clip `(session · turns + t) mod n`.
fn session_clips<T>(clips: &[T], session: usize, turns: usize) -> Vec<&T> {
    (0..turns)
        .map(|t| &clips[(session * turns + t) % clips.len()])
        .collect()
}

/// Between levels, waits until the spawned server has closed the sessions `bye` parked (up to
/// its resume window + 10 s), so that a level starts without them.
async fn wait_for_parked(http: &reqwest::Client, target: &Target) {
    if target.spawned.is_none() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        return;
    }
    let until = Instant::now() + Duration::from_secs(RESUME_WINDOW_SECS + 10);
    while Instant::now() < until {
        let parked = server::fetch_metrics(http, &target.url)
            .await
            .ok()
            .and_then(|m| server::metric_sum(&m, "nextmark_parked_sessions"));
        if parked.is_none_or(|p| p < 0.5) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// The turn lines written, for the per-turn tables.
fn read_turns(path: &Path) -> Result<Vec<serde_json::Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("parsing {}", path.display())))
        .collect()
}

/// `latency_cdf.svg` and `resources.svg`.
fn write_plots(
    out: &Path,
    latencies: &[(usize, Vec<f64>)],
    samples: &[ResourceSample],
    levels: &[LevelSummary],
) -> Result<()> {
    let cdf = svg::Panel {
        title: "Voice turn latency (last voiced sample sent → next question), CDF".into(),
        x_label: "seconds".into(),
        y_label: "fraction of turns".into(),
        series: latencies
            .iter()
            .map(|(n, v)| svg::Series {
                name: format!("{n} session(s), {} turn(s)", v.len()),
                points: svg::cdf_points(v),
            })
            .collect(),
        markers: vec![(TARGET_P95_VOICE_S, format!("{TARGET_P95_VOICE_S} s"))],
        y_max: Some(1.0),
    };
    let path = out.join("latency_cdf.svg");
    std::fs::write(&path, svg::document(&[cdf]))
        .with_context(|| format!("writing {}", path.display()))?;
    let markers: Vec<(f64, String)> = levels
        .iter()
        .map(|l| (l.started_at_s, format!("{} session(s)", l.sessions)))
        .collect();
    let rss = svg::Panel {
        title: "Server resident memory".into(),
        x_label: "seconds since the bench started".into(),
        y_label: "RSS, MiB".into(),
        series: vec![svg::Series {
            name: "RSS".into(),
            points: samples.iter().map(|s| (s.at_s, s.rss_mib)).collect(),
        }],
        markers: markers.clone(),
        y_max: None,
    };
    let cpu = svg::Panel {
        title: "Server CPU".into(),
        x_label: "seconds since the bench started".into(),
        y_label: "CPU, % of one core".into(),
        series: vec![svg::Series {
            name: "CPU %".into(),
            points: samples
                .iter()
                .filter_map(|s| s.cpu_pct.map(|p| (s.at_s, p)))
                .collect(),
        }],
        markers,
        y_max: None,
    };
    let path = out.join("resources.svg");
    std::fs::write(&path, svg::document(&[rss, cpu]))
        .with_context(|| format!("writing {}", path.display()))
}

fn p50_p95(d: Option<Dist>) -> String {
    match d {
        Some(d) => format!("{:.2} / {:.2}", d.p50, d.p95),
        None => "–".into(),
    }
}

/// `summary.md`: settings, one row per level, then each level's turns.
pub fn markdown(s: &LiveSummary, turns: &[serde_json::Value]) -> String {
    let server = match (&s.server.binary, s.server.mode) {
        (Some(binary), _) => format!(
            "spawned `{}` ({} build) on {}, healthy after {} s, RSS after start-up {} MiB, \
             after the warm-up session {} MiB{}",
            binary.display(),
            match s.server.release_binary {
                Some(true) => "release",
                Some(false) => "debug",
                None => "unknown",
            },
            s.server.url,
            fmt_opt(s.server.startup_s, 1),
            fmt_opt(s.server.rss_startup_mib, 1),
            fmt_opt(s.server.rss_after_warmup_mib, 1),
            if s.server.settled == Some(false) {
                " (it did not go idle: baselines are rough)"
            } else {
                ""
            }
        ),
        (None, mode) => format!(
            "{mode} at {}{}",
            s.server.url,
            if s.server.pid.is_some() {
                ""
            } else {
                " (no --server-pid: no memory or CPU figures)"
            }
        ),
    };
    let mut md = format!(
        "# nextmark-bench live ({transport})\n\n\
         Started {started}, {turns} turn(s) per session, levels {levels:?}, discipline {d}, \
         {n} clip(s) (`{sel}`), sessions started {stagger} s apart.\nServer: {server}.\n{machine}\n\n\
         Voice turn latency = next question's arrival − the send time of the frame holding the \
         answer's last voiced sample; to spoken question = the same up to the first audible \
         sample of the question's speech; server = the question's `turn_latency_s`; caption lag = \
         final transcript's arrival − the send time of the audio up to its `end_s`. Seconds. A \
         cut-in is a question that came before the answer's last voiced sample was sent. WER \
         over turns without a cut-in. RSS per session = (peak − baseline) / sessions, the \
         baseline being the idle server after the warm-up session (else after start-up). CPU \
         in % of one core. Lag grows = second-half median voice latency > 1.5 × first-half.\n\n",
        transport = s.transport.as_str(),
        started = s.started_utc,
        turns = s.turns_per_session,
        levels = s.sessions_swept,
        d = s.discipline,
        n = s.clips.len(),
        sel = s.clip_selection,
        stagger = s.stagger_s,
        machine = s.machine.markdown(),
    );
    let headers = [
        "sessions",
        "voice latency p50 / p95",
        "to spoken question p50 / p95",
        "server latency p95",
        "cut-ins",
        "caption lag p50 / p95",
        "WER %",
        "peak RSS MiB",
        "RSS / session MiB",
        "CPU % mean / peak",
        "dropped partials",
        "lag grows? (1st → 2nd half p50)",
        "meets target",
    ];
    let rows: Vec<Vec<String>> = s
        .levels
        .iter()
        .map(|l| {
            let g = &l.lag_growth;
            vec![
                l.sessions.to_string(),
                p50_p95(l.voice_turn_latency_s),
                p50_p95(l.speech_turn_latency_s),
                fmt_opt(l.server_turn_latency_s.map(|d| d.p95), 2),
                if l.cut_ins == 0 {
                    "0".into()
                } else {
                    format!("{} ({} in a pause)", l.cut_ins, l.cut_ins_in_pause)
                },
                p50_p95(l.caption_lag_s),
                fmt_opt(l.wer.map(|w| 100.0 * w), 1),
                fmt_opt(l.rss_peak_mib, 0),
                fmt_opt(l.rss_per_session_mib, 1),
                format!(
                    "{} / {}",
                    fmt_opt(l.cpu_mean_pct, 0),
                    fmt_opt(l.cpu_peak_pct, 0)
                ),
                fmt_opt(l.metrics.as_ref().and_then(|m| m.partials_dropped), 0),
                format!(
                    "{} ({} → {})",
                    match g.growth {
                        None => "–",
                        Some(_) if g.grows => "**yes**",
                        Some(_) => "no",
                    },
                    fmt_opt(g.first_half_p50_s, 2),
                    fmt_opt(g.second_half_p50_s, 2)
                ),
                if l.meets_target {
                    "yes".into()
                } else {
                    format!("no: {}", l.misses.join("; "))
                },
            ]
        })
        .collect();
    md.push_str(&markdown_table(&headers, &rows));
    md.push_str(&match s.capacity_sessions {
        Some(n) => format!(
            "\n**Capacity: {n} session(s)**: the largest level swept with p95 voice turn latency \
             ≤ {} s, no cut-in, no growing lag and no failed session.\n",
            s.target_p95_voice_s
        ),
        None => format!(
            "\n**Capacity: none of the levels swept** meets p95 voice turn latency ≤ {} s with \
             no cut-in, no growing lag and no failed session.\n",
            s.target_p95_voice_s
        ),
    });
    if !s.peer.is_empty() {
        md.push_str(
            "\n## Side by side with the faster-whisper peer\n\n\
             The same answers at the same concurrency through `bench/peers/` (Silero VAD, turn \
             end after 0.8 s of silence, faster-whisper tiny.en int8 per turn), one process per \
             simulated applicant. Peer latency = end of speech → its final text (it asks no \
             question); ours = end of speech → the next question event, a stricter measure. \
             Ratio = ours ÷ peer (target ≤ 0.5 at equal or better WER).\n\n",
        );
        let rows: Vec<Vec<String>> = s
            .peer
            .iter()
            .zip(&s.ours_vs_peer)
            .zip(&s.levels)
            .map(|((p, c), l)| {
                vec![
                    p.sessions.to_string(),
                    p50_p95(l.voice_turn_latency_s),
                    p50_p95(p.end_of_turn_latency_s),
                    format!(
                        "{} / {}",
                        fmt_opt(c.latency_ratio_p50, 2),
                        fmt_opt(c.latency_ratio_p95, 2)
                    ),
                    format!(
                        "{} / {}",
                        fmt_opt(l.wer.map(|w| 100.0 * w), 1),
                        fmt_opt(p.wer.map(|w| 100.0 * w), 1)
                    ),
                    format!("{} / {}", c.cut_ins.0, c.cut_ins.1),
                    if p.sessions_failed == 0 {
                        "0".into()
                    } else {
                        format!("**{}**", p.sessions_failed)
                    },
                ]
            })
            .collect();
        md.push_str(&markdown_table(
            &[
                "sessions",
                "ours voice latency p50 / p95",
                "peer end-of-turn p50 / p95",
                "ratio p50 / p95",
                "WER % ours / peer",
                "cut-ins ours / peer",
                "peer processes failed",
            ],
            &rows,
        ));
    }
    for l in &s.levels {
        md.push_str(&format!(
            "\n## {} session(s)\n\n{} turn(s) in {:.0} s; {} failed, {} completed early; \
             server errors {:?}; stop_audio {}; end-of-answer final lag p50 / p95 {} s; RSS peak \
             first / second half {} / {} MiB (growth {} %); {} finals received, {} answered \
             turn(s) without text.\n\n",
            l.sessions,
            l.turns,
            l.wall_s,
            l.sessions_failed,
            l.sessions_completed_early,
            l.server_errors,
            l.stop_audio,
            p50_p95(l.end_of_answer_final_lag_s),
            fmt_opt(l.rss_first_half_peak_mib, 0),
            fmt_opt(l.rss_second_half_peak_mib, 0),
            fmt_opt(l.rss_growth_pct, 1),
            l.finals_received,
            l.answers_without_text,
        ));
        let num = |t: &serde_json::Value, k: &str| fmt_opt(t[k].as_f64(), 2);
        let rows: Vec<Vec<String>> = turns
            .iter()
            .filter(|t| t["level"].as_u64() == Some(l.sessions as u64))
            .map(|t| {
                vec![
                    t["session"].to_string(),
                    t["turn"].to_string(),
                    format!("`{}`", t["question_id"].as_str().unwrap_or("")),
                    t["clip"].as_str().unwrap_or("").to_string(),
                    match t["turn_end"].as_str() {
                        Some(reason) => {
                            format!("{} ({reason})", t["ended_by"].as_str().unwrap_or(""))
                        }
                        None => t["ended_by"].as_str().unwrap_or("").to_string(),
                    },
                    num(t, "voice_turn_latency_s"),
                    num(t, "speech_turn_latency_s"),
                    num(t, "server_turn_latency_s"),
                    if t["cut_in"].as_bool() == Some(true) {
                        format!("at {} s", num(t, "cut_at_clip_s"))
                    } else {
                        "no".into()
                    },
                    num(t, "end_of_answer_final_lag_s"),
                    fmt_opt(t["wer"].as_f64().map(|w| 100.0 * w), 1),
                ]
            })
            .collect();
        md.push_str(&markdown_table(
            &[
                "session",
                "turn",
                "question",
                "clip",
                "ended by",
                "voice latency",
                "to spoken question",
                "server latency",
                "cut-in",
                "end-of-answer final lag",
                "WER %",
            ],
            &rows,
        ));
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(turn: usize, voice: Option<f64>, cut_in: bool) -> TurnRecord {
        TurnRecord {
            level: 1,
            session: 0,
            turn,
            question_id: "q".into(),
            question_index: turn,
            question_at_s: 0.0,
            clip: "c".into(),
            clip_last_voiced_s: 1.0,
            clip_started_at_s: Some(0.0),
            voiced_end_sent_at_s: voice.map(|_| 1.0),
            ended_by: "question".into(),
            ended_at_s: Some(2.0),
            next_question_id: Some("n".into()),
            voice_turn_latency_s: voice,
            speech_heard_at_s: None,
            speech_turn_latency_s: voice.map(|v| v + 0.1),
            server_turn_latency_s: voice.map(|v| v / 2.0),
            turn_end: None,
            cut_in,
            cut_at_clip_s: cut_in.then_some(0.5),
            cut_in_pause: cut_in.then_some(true),
            cut_pause_kind: None,
            end_of_answer_final_lag_s: None,
            finals: 1,
            partials: 0,
            text: "x".into(),
            word_errors: 1,
            reference_words: 10,
            wer: 0.1,
        }
    }

    #[test]
    fn lag_growth_compares_halves_of_the_turns() {
        let turns = vec![
            turn(1, Some(1.0), false),
            turn(2, Some(1.0), false),
            turn(3, Some(1.6), false),
            turn(4, Some(1.6), false),
        ];
        let g = LagGrowth::of(&turns, 4);
        assert_eq!(
            (g.first_half_p50_s, g.second_half_p50_s),
            (Some(1.0), Some(1.6))
        );
        assert!(g.grows && (g.growth.unwrap() - 0.6).abs() < 1e-9);
        let mild = vec![
            turn(1, Some(1.0), false),
            turn(2, Some(1.0), false),
            turn(3, Some(1.2), false),
            turn(4, None, true),
        ];
        let g = LagGrowth::of(&mild, 4);
        assert!(!g.grows && (g.growth.unwrap() - 0.2).abs() < 1e-9, "{g:?}");
        let g = LagGrowth::of(&turns[..1], 1);
        assert!(g.growth.is_none() && !g.grows);
    }

    #[test]
    fn resources_of_a_window() {
        let sample = |at_s: f64, rss_mib: f64, cpu_s: f64, cpu_pct: Option<f64>| ResourceSample {
            at_s,
            level: None,
            rss_mib,
            cpu_s,
            cpu_pct,
        };
        let samples = vec![
            sample(0.0, 100.0, 0.0, None),
            sample(1.0, 120.0, 0.5, Some(50.0)),
            sample(2.0, 150.0, 2.0, Some(150.0)),
            sample(3.0, 110.0, 2.5, Some(50.0)),
            sample(9.0, 500.0, 9.0, Some(100.0)),
        ];
        let r = Resources::of(&samples, 1.0, 3.0);
        assert_eq!(r.start_mib, Some(120.0));
        assert_eq!(r.peak_mib, Some(150.0));
        assert_eq!(r.mean_pct, Some(100.0));
        assert_eq!(r.peak_pct, Some(150.0));
        // Halves split at 2.0 s: [1, 2) and [2, 3].
        assert_eq!(r.first_half_peak_mib, Some(120.0));
        assert_eq!(r.second_half_peak_mib, Some(150.0));
        assert_eq!(Resources::of(&samples, 20.0, 30.0), Resources::default());
    }

    #[test]
    fn capacity_is_the_largest_level_that_meets_the_target() {
        let outcome = |turns: Vec<TurnRecord>| SessionOutcome {
            session: applicant::SessionRecord {
                level: 1,
                session: 0,
                interview_id: "i".into(),
                transport: Transport::Ws,
                clips: vec![],
                started_at_s: 0.0,
                ended_at_s: 1.0,
                turns: turns.len(),
                outcome: "bye".into(),
                completed_reason: None,
                failure: None,
                errors: vec![],
                stop_audio: 0,
                webrtc_connect_s: None,
            },
            turns,
            captions: vec![],
            messages: vec![],
        };
        let cx = |sessions| LevelContext {
            sessions,
            turns_per_session: 2,
            window: (0.0, 1.0),
            samples: &[],
            rss_startup_mib: None,
            rss_baseline_mib: None,
            metrics: None,
        };
        let good = summarize_level(
            &[outcome(vec![
                turn(1, Some(0.8), false),
                turn(2, Some(0.9), false),
            ])],
            &cx(1),
        );
        assert!(good.meets_target, "{:?}", good.misses);
        assert_eq!(good.wer, Some(0.1));
        let cut = summarize_level(
            &[outcome(vec![
                turn(1, Some(0.8), false),
                turn(2, None, true),
            ])],
            &cx(2),
        );
        assert!(!cut.meets_target);
        assert_eq!((cut.cut_ins, cut.cut_ins_in_pause), (1, 1));
        assert_eq!(cut.reference_words, 10, "cut-in turns are left out of WER");
        let slow = summarize_level(
            &[outcome(vec![
                turn(1, Some(0.8), false),
                turn(2, Some(2.0), false),
            ])],
            &cx(4),
        );
        assert!(!slow.meets_target);
        assert_eq!(capacity(&[good.clone(), cut, slow]), Some(1));
        assert_eq!(capacity(&[]), None);
    }
}
