//! The transcription bench: each fixture answer goes through the live path
//! (`engine::asr::driver::transcribe_stream` on a shared `WorkerPool`), paced at real time or
//! as fast as possible, and is measured for real-time factor, partial-caption lag, final lag,
//! end-of-answer final lag, word error rate and dropped partials.
//!
//! Every transcript event goes to `events.jsonl` and every decode the pool ran to
//! `decodes.jsonl` (through [`Metered`], a pass-through backend that times each decode
//! exactly once), so each figure in `summary.json` can be recomputed from them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nextmark_engine::asr::driver::{
    DriveOptions, StreamRun, TimedEvent, seconds, transcribe_stream,
};
use nextmark_engine::asr::pool::{
    AsrJob, JobKind, PoolConfig, Rejected, Reply, SubmitError, WorkerPool,
};
use nextmark_engine::asr::stream::TranscriptEvent;
use nextmark_engine::asr::{AsrError, Transcriber, WhisperModel};
use nextmark_engine::audio::{DecodeLimits, decode_file};
use nextmark_engine::rubric;
use nextmark_engine::text::word_errors;
use nextmark_server::live::session::{ITEM_FIRST_PROMPT_CHARS, ITEM_PROMPT_CHARS};
use serde::Serialize;

use crate::fixtures::{Clip, Manifest, Paths};
use crate::output::{self, JsonLines, Machine, fmt_opt, markdown_table};
use crate::stats::Dist;
use crate::turns;
use nextmark_engine::turn::TurnConfig;

/// What `asr` was asked to do.
#[derive(Debug, Clone)]
pub struct AsrOptions {
    /// Clip selection: `all` or comma-separated globs (see [`Manifest::select`]).
    pub clips: String,
    /// Pace input at real time (otherwise as fast as possible).
    pub realtime: bool,
    /// Decoder workers; `None`: [`PoolConfig::for_cores`].
    pub workers: Option<usize>,
    /// whisper threads per worker; `None`: cores / workers.
    pub threads: Option<usize>,
    /// Emit partial captions.
    pub partials: bool,
    /// Let a final that finds the pool idle use every core ([`PoolConfig::boost_idle_finals`]).
    pub boost_idle_finals: bool,
    /// Prompt the decoder with the discipline's glossary.
    pub glossary: bool,
    /// Prompt the decoder with the glossary terms of the clip's item, as the live server does
    /// (`Rubric::item_prompt`, at most 100 characters).
    pub item_prompt: bool,
    /// Prompt the decoder with the clip's item terms and then the rest of the glossary
    /// (`Rubric::item_first_prompt`, at most 250 characters).
    pub item_first_prompt: bool,
}

/// How [`ClipResult::rtf`] is defined in realtime mode.
const RTF_REALTIME: &str = "decode compute / audio: the summed whisper CPU time (wall time × \
     threads) of every decode the pool ran for the clip (finals and partials, each counted \
     once) over the clip's audio seconds; wall time is pinned to the audio clock in this mode";
/// How [`ClipResult::rtf`] is defined in fast mode.
const RTF_FAST: &str = "wall / audio: the clip's drive wall time over its audio seconds";

/// One decode the pool ran (or dropped), as recorded by [`Metered`].
#[derive(Debug, Clone, Serialize)]
pub struct DecodeRecord {
    /// `final` or `partial`.
    pub kind: &'static str,
    /// Length of the audio decoded, seconds.
    pub audio_s: f64,
    /// whisper wall time of the decode, seconds (0 when dropped).
    pub compute_s: f64,
    /// Threads it ran on (more than one worker's when it found the pool idle).
    pub threads: usize,
    /// CPU time: `compute_s × threads`.
    pub cpu_s: f64,
    /// Time the job waited in the pool's queue, seconds (0 when dropped).
    pub queued_s: f64,
    /// When the result came back, seconds since the clip's drive started.
    pub done_at_wall_s: f64,
    /// Shed by the pool under load without decoding.
    pub dropped: bool,
    /// Called off by the streaming transcriber once its result could no longer be used
    /// (before it started, or part-way: `compute_s` is then what it ran).
    pub cancelled: bool,
    /// Inference error, if any.
    pub error: Option<String>,
}

/// A pass-through [`Transcriber`] over the worker pool that records every decode once.
///
/// Summing `compute_s` over transcript events would miss partials whose result came back
/// after their utterance closed (they produce no event) and would count one decode several
/// times when a late final releases the finals queued behind it; recording at the reply does
/// neither.
struct Metered<'a> {
    /// The shared pool that does the work.
    pool: &'a WorkerPool,
    /// Origin of `done_at_wall_s`.
    started: Instant,
    /// Decodes recorded so far, filled from worker threads.
    log: Arc<Mutex<Vec<DecodeRecord>>>,
}

impl<'a> Metered<'a> {
    /// A recorder for one clip.
    fn new(pool: &'a WorkerPool) -> Self {
        Metered {
            pool,
            started: Instant::now(),
            log: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// The decodes recorded, in completion order.
    fn take(&self) -> Vec<DecodeRecord> {
        std::mem::take(&mut *self.log.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Transcriber for Metered<'_> {
    fn submit(&self, job: AsrJob) -> Result<(), Rejected> {
        let AsrJob {
            kind,
            samples,
            options,
            reply,
        } = job;
        let audio_s = seconds(samples.len());
        let log = Arc::clone(&self.log);
        let started = self.started;
        let wrapped: Reply = Box::new(move |result| {
            let (compute_s, queued_s, threads) = match &result {
                Ok(o) => (o.compute.as_secs_f64(), o.queued.as_secs_f64(), o.threads),
                // A decode stopped part-way cost what it ran.
                Err(AsrError::Cancelled { compute, threads }) => {
                    (compute.as_secs_f64(), 0.0, *threads)
                }
                Err(_) => (0.0, 0.0, 0),
            };
            let record = DecodeRecord {
                kind: match kind {
                    JobKind::Final => "final",
                    JobKind::Partial => "partial",
                },
                audio_s,
                compute_s,
                threads,
                cpu_s: compute_s * threads as f64,
                queued_s,
                done_at_wall_s: started.elapsed().as_secs_f64(),
                dropped: matches!(result, Err(AsrError::Dropped)),
                cancelled: matches!(result, Err(AsrError::Cancelled { .. })),
                error: match &result {
                    Err(AsrError::Dropped | AsrError::Cancelled { .. }) | Ok(_) => None,
                    Err(e) => Some(e.to_string()),
                },
            };
            log.lock().unwrap_or_else(|p| p.into_inner()).push(record);
            reply(result);
        });
        let mut job = AsrJob {
            kind,
            samples,
            options,
            reply: wrapped,
        };
        // Retry a full final queue here, so a job is never wrapped (and recorded) twice.
        loop {
            match self.pool.submit(job) {
                Ok(()) => return Ok(()),
                Err(rejected) if rejected.error == SubmitError::Full => {
                    std::thread::sleep(Duration::from_millis(10));
                    job = rejected.job;
                }
                Err(rejected) => return Err(rejected),
            }
        }
    }

    fn name(&self) -> &str {
        "whisper.cpp (metered)"
    }

    fn queue_depth(&self) -> usize {
        let (finals, partials) = self.pool.queued();
        finals + partials
    }
}

/// One line of `events.jsonl`.
#[derive(Debug, Serialize)]
struct EventLine<'a> {
    /// Fixture file name.
    clip: &'a str,
    /// Position of the event in the clip's run.
    seq: usize,
    /// The event with its timing (`kind`, payload, `at_audio_s`, `at_wall_s`, `compute_s`).
    #[serde(flatten)]
    event: &'a TimedEvent,
}

/// One line of `decodes.jsonl`.
#[derive(Debug, Serialize)]
struct DecodeLine<'a> {
    /// Fixture file name.
    clip: &'a str,
    /// The decode.
    #[serde(flatten)]
    decode: &'a DecodeRecord,
}

/// Decode counts of one clip.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct DecodeCounts {
    /// Final decodes run.
    pub finals: usize,
    /// Partial decodes run.
    pub partials: usize,
    /// Partials shed without decoding.
    pub dropped: usize,
    /// Decodes (counted above too) called off once their result could no longer be used.
    pub cancelled: usize,
}

/// The measurements of one clip.
#[derive(Debug, Clone, Serialize)]
pub struct ClipResult {
    /// Fixture file name.
    pub file: String,
    /// Item answered.
    pub item_id: Option<String>,
    /// `strong`, `weak`, ...
    pub quality: String,
    /// Audio fed, seconds (16 kHz samples / 16000).
    pub audio_s: f64,
    /// Wall time of the drive, seconds.
    pub wall_s: f64,
    /// Summed whisper time of every decode, seconds.
    pub decode_compute_s: f64,
    /// The headline real-time factor: `decode_rtf` in realtime mode, `wall_rtf` in fast mode.
    pub rtf: f64,
    /// `wall_s / audio_s`.
    pub wall_rtf: f64,
    /// `decode_compute_s / audio_s`.
    pub decode_rtf: f64,
    /// Summed whisper time of the final decodes only, seconds.
    pub final_compute_s: f64,
    /// `final_compute_s / audio_s`: the cost of the transcript without captions.
    pub final_decode_rtf: f64,
    /// Partial caption lag, seconds: `at_wall_s − audio_end_s` per partial (realtime only).
    pub partial_lag_s: Option<Dist>,
    /// Final lag, seconds: `at_wall_s − end_s` per final with text (realtime only).
    pub final_lag_s: Option<Dist>,
    /// Last final with text: `at_wall_s − last_voiced_s` (realtime only).
    pub end_of_answer_final_lag_s: Option<f64>,
    /// Word errors against the reference (substitutions + deletions + insertions).
    pub word_errors: usize,
    /// Words in the normalised reference.
    pub reference_words: usize,
    /// `word_errors / reference_words` (errors when the reference is empty).
    pub wer: f64,
    /// Partial events emitted.
    pub partial_events: usize,
    /// Final events emitted.
    pub final_events: usize,
    /// Decodes the pool ran or shed.
    pub decodes: DecodeCounts,
    /// Partials the driver saw dropped (`StreamRun::dropped_partials`).
    pub dropped_partials: usize,
    /// The transcript (all finals joined).
    pub text: String,
    /// The live turn detector replayed over the run (see `turns`): where it ends the answer.
    pub turns: Vec<turns::TurnReplay>,
}

/// Lags of one run, seconds, on the shared clock (wall time from the drive's start equals the
/// audio clock in realtime mode).
struct Lags {
    /// Per partial event.
    partial: Vec<f64>,
    /// Per final event with text.
    fin: Vec<f64>,
    /// From the end of the answer to its last final with text.
    end_of_answer: Option<f64>,
}

fn lags(events: &[TimedEvent], last_voiced_s: Option<f64>) -> Lags {
    let mut partial = Vec::new();
    let mut fin = Vec::new();
    let mut last_final_at: Option<f64> = None;
    for e in events {
        match &e.event {
            TranscriptEvent::Partial { audio_end_s, .. } => partial.push(e.at_wall_s - audio_end_s),
            TranscriptEvent::Final { text, end_s, .. } if !text.trim().is_empty() => {
                fin.push(e.at_wall_s - end_s);
                last_final_at = Some(e.at_wall_s);
            }
            TranscriptEvent::Final { .. } => {}
        }
    }
    let end_of_answer = match (last_final_at, last_voiced_s) {
        (Some(at), Some(voiced)) => Some(at - voiced),
        _ => None,
    };
    Lags {
        partial,
        fin,
        end_of_answer,
    }
}

impl ClipResult {
    fn new(clip: &Clip, run: &StreamRun, decodes: &[DecodeRecord], realtime: bool) -> Self {
        let audio_s = run.audio_s.max(f64::MIN_POSITIVE);
        let decode_compute_s: f64 = decodes.iter().map(|d| d.cpu_s).sum();
        let final_compute_s: f64 = decodes
            .iter()
            .filter(|d| d.kind == "final")
            .map(|d| d.cpu_s)
            .sum();
        let wall_rtf = run.wall_s / audio_s;
        let decode_rtf = decode_compute_s / audio_s;
        let lags = lags(&run.events, clip.last_voiced_s);
        let (errors, words) = word_errors(&clip.reference_text, &run.text);
        let count = |kind: &str| {
            decodes
                .iter()
                .filter(|d| d.kind == kind && !d.dropped)
                .count()
        };
        ClipResult {
            file: clip.file.clone(),
            item_id: clip.item_id.clone(),
            quality: clip.quality.clone(),
            audio_s: run.audio_s,
            wall_s: run.wall_s,
            decode_compute_s,
            rtf: if realtime { decode_rtf } else { wall_rtf },
            wall_rtf,
            decode_rtf,
            final_compute_s,
            final_decode_rtf: final_compute_s / audio_s,
            partial_lag_s: realtime.then(|| Dist::of(&lags.partial)).flatten(),
            final_lag_s: realtime.then(|| Dist::of(&lags.fin)).flatten(),
            end_of_answer_final_lag_s: realtime.then_some(lags.end_of_answer).flatten(),
            word_errors: errors,
            reference_words: words,
            wer: if words == 0 {
                errors as f64
            } else {
                errors as f64 / words as f64
            },
            partial_events: lags_count(&run.events, true),
            final_events: lags_count(&run.events, false),
            decodes: DecodeCounts {
                finals: count("final"),
                partials: count("partial"),
                dropped: decodes.iter().filter(|d| d.dropped).count(),
                cancelled: decodes.iter().filter(|d| d.cancelled).count(),
            },
            dropped_partials: run.dropped_partials,
            text: run.text.clone(),
            turns: Vec::new(),
        }
    }
}

/// Partial (`partial = true`) or final events in a run.
fn lags_count(events: &[TimedEvent], partial: bool) -> usize {
    events
        .iter()
        .filter(|e| matches!(e.event, TranscriptEvent::Partial { .. }) == partial)
        .count()
}

/// The figures over all clips.
#[derive(Debug, Clone, Serialize)]
pub struct Overall {
    /// Clips measured.
    pub clips: usize,
    /// Summed audio, seconds.
    pub audio_s: f64,
    /// Summed drive wall time, seconds.
    pub wall_s: f64,
    /// Summed decode compute, seconds.
    pub decode_compute_s: f64,
    /// Headline RTF over the set (`decode_rtf` realtime, `wall_rtf` fast).
    pub rtf: f64,
    /// Summed wall / summed audio.
    pub wall_rtf: f64,
    /// Summed decode compute / summed audio.
    pub decode_rtf: f64,
    /// Summed final-decode compute, seconds.
    pub final_compute_s: f64,
    /// Summed final-decode compute / summed audio.
    pub final_decode_rtf: f64,
    /// Partial caption lags of all clips pooled, seconds.
    pub partial_lag_s: Option<Dist>,
    /// Final lags of all clips pooled, seconds.
    pub final_lag_s: Option<Dist>,
    /// End-of-answer final lag across clips, seconds.
    pub end_of_answer_final_lag_s: Option<Dist>,
    /// Summed word errors.
    pub word_errors: usize,
    /// Summed reference words.
    pub reference_words: usize,
    /// Set-level WER: summed errors / summed reference words.
    pub wer: f64,
    /// Mean of the per-clip WERs (each clip weighs the same).
    pub mean_clip_wer: f64,
    /// Summed partials dropped.
    pub dropped_partials: usize,
    /// Summed partial events.
    pub partial_events: usize,
    /// Summed final events.
    pub final_events: usize,
}

/// Pool sizing actually used.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PoolSummary {
    /// Worker threads.
    pub workers: usize,
    /// whisper threads per worker.
    pub threads_per_worker: usize,
    /// Whether a final that finds the pool idle runs on every core.
    pub boost_idle_finals: bool,
}

/// `summary.json` of an `asr` run.
#[derive(Debug, Clone, Serialize)]
pub struct AsrSummary {
    /// Always `asr`.
    pub kind: &'static str,
    /// `realtime` or `fast`.
    pub mode: &'static str,
    /// What `rtf` means in this mode.
    pub rtf_definition: &'static str,
    /// Start of the run, UTC.
    pub started_utc: String,
    /// End of the run, UTC.
    pub finished_utc: String,
    /// The clip selection asked for.
    pub clip_selection: String,
    /// Model file.
    pub model: PathBuf,
    /// Pool sizing.
    pub pool: PoolSummary,
    /// Partial captions were on.
    pub partials: bool,
    /// The decoder had the discipline glossary as a prompt.
    pub glossary: bool,
    /// The decoder had the glossary terms of the clip's item as a prompt.
    pub item_prompt: bool,
    /// The decoder had the item terms, then the glossary's, up to 250 characters.
    pub item_first_prompt: bool,
    /// Where it ran.
    pub machine: Machine,
    /// Over all clips.
    pub overall: Overall,
    /// The live turn detector replayed over every clip's run, per question kind (finals
    /// reach it at their utterance end + 0.35 s in fast mode, as they came in realtime mode).
    pub turns: Vec<turns::TurnFigures>,
    /// Per clip, in run order.
    pub clips: Vec<ClipResult>,
}

/// The set's figures; `partial_lags` and `final_lags` are every clip's lags pooled (empty in
/// fast mode).
fn overall(
    clips: &[ClipResult],
    realtime: bool,
    partial_lags: &[f64],
    final_lags: &[f64],
) -> Overall {
    let audio_s: f64 = clips.iter().map(|c| c.audio_s).sum();
    let wall_s: f64 = clips.iter().map(|c| c.wall_s).sum();
    let decode_compute_s: f64 = clips.iter().map(|c| c.decode_compute_s).sum();
    let final_compute_s: f64 = clips.iter().map(|c| c.final_compute_s).sum();
    let safe_audio = audio_s.max(f64::MIN_POSITIVE);
    let word_errors: usize = clips.iter().map(|c| c.word_errors).sum();
    let reference_words: usize = clips.iter().map(|c| c.reference_words).sum();
    Overall {
        clips: clips.len(),
        audio_s,
        wall_s,
        decode_compute_s,
        rtf: if realtime {
            decode_compute_s / safe_audio
        } else {
            wall_s / safe_audio
        },
        wall_rtf: wall_s / safe_audio,
        decode_rtf: decode_compute_s / safe_audio,
        final_compute_s,
        final_decode_rtf: final_compute_s / safe_audio,
        partial_lag_s: Dist::of(partial_lags),
        final_lag_s: Dist::of(final_lags),
        end_of_answer_final_lag_s: Dist::of(
            &clips
                .iter()
                .filter_map(|c| c.end_of_answer_final_lag_s)
                .collect::<Vec<_>>(),
        ),
        word_errors,
        reference_words,
        wer: if reference_words == 0 {
            word_errors as f64
        } else {
            word_errors as f64 / reference_words as f64
        },
        mean_clip_wer: clips.iter().map(|c| c.wer).sum::<f64>() / clips.len().max(1) as f64,
        dropped_partials: clips.iter().map(|c| c.dropped_partials).sum(),
        partial_events: clips.iter().map(|c| c.partial_events).sum(),
        final_events: clips.iter().map(|c| c.final_events).sum(),
    }
}

/// Runs the transcription bench and writes its files into `out`.
pub fn run(paths: &Paths, options: &AsrOptions, out: &Path) -> Result<()> {
    let started_utc = output::utc_now_rfc3339();
    let manifest = Manifest::load(&paths.fixtures)?;
    let clips = manifest.select(&options.clips)?;
    let model_path = paths.model_path()?;
    let model = WhisperModel::load(&model_path)
        .with_context(|| format!("loading the Whisper model {}", model_path.display()))?;
    let config = pool_config(options);
    let pool = WorkerPool::start(&model, config).context("starting the whisper worker pool")?;
    // Prompts by discipline id (whole glossary) or by item id (the item's terms).
    let glossaries = if options.glossary || options.item_prompt || options.item_first_prompt {
        let rubrics = rubric::load_dir(&paths.rubrics)
            .with_context(|| format!("loading rubrics from {}", paths.rubrics.display()))?;
        if options.item_first_prompt {
            rubrics
                .iter()
                .flat_map(|r| {
                    r.items.iter().filter_map(|item| {
                        Some((
                            item.id.clone(),
                            r.item_first_prompt(Some(item), ITEM_FIRST_PROMPT_CHARS)?,
                        ))
                    })
                })
                .collect()
        } else if options.item_prompt {
            rubrics
                .iter()
                .flat_map(|r| {
                    r.items.iter().filter_map(|item| {
                        Some((item.id.clone(), r.item_prompt(item, ITEM_PROMPT_CHARS)?))
                    })
                })
                .collect()
        } else {
            rubrics
                .iter()
                .map(|r| (r.id.clone(), r.glossary_prompt()))
                .collect()
        }
    } else {
        BTreeMap::new()
    };
    let outcome = run_clips(paths, options, &clips, &pool, &glossaries, out);
    pool.shutdown();
    let (results, partial_lags, final_lags) = outcome?;

    let overall = overall(&results, options.realtime, &partial_lags, &final_lags);
    let turn_figures = turns::figures(&clip_turns(&results));
    let summary = AsrSummary {
        kind: "asr",
        mode: if options.realtime { "realtime" } else { "fast" },
        rtf_definition: if options.realtime {
            RTF_REALTIME
        } else {
            RTF_FAST
        },
        started_utc,
        finished_utc: output::utc_now_rfc3339(),
        clip_selection: options.clips.clone(),
        model: model_path,
        pool: PoolSummary {
            workers: config.workers,
            threads_per_worker: config.threads_per_worker,
            boost_idle_finals: config.boost_idle_finals,
        },
        partials: options.partials,
        glossary: options.glossary,
        item_prompt: options.item_prompt,
        item_first_prompt: options.item_first_prompt,
        machine: Machine::detect(),
        overall,
        turns: turn_figures,
        clips: results,
    };
    let md = markdown(&summary);
    output::write_summary(out, &summary, &md)?;
    eprint!("{md}");
    Ok(())
}

/// The per-clip results and the pooled partial and final lags.
type ClipsOutcome = (Vec<ClipResult>, Vec<f64>, Vec<f64>);

fn run_clips(
    paths: &Paths,
    options: &AsrOptions,
    clips: &[&Clip],
    pool: &WorkerPool,
    glossaries: &BTreeMap<String, String>,
    out: &Path,
) -> Result<ClipsOutcome> {
    let mut events_out = JsonLines::create(out.join("events.jsonl"))?;
    let mut decodes_out = JsonLines::create(out.join("decodes.jsonl"))?;
    let mut vad_out = JsonLines::create(out.join("vad.jsonl"))?;
    let expected = turns::expected_lengths(paths)?;
    let lag = (!options.realtime).then_some(turns::DEFAULT_FINAL_LAG_S);
    let mut results = Vec::with_capacity(clips.len());
    let (mut partial_lags, mut final_lags) = (Vec::new(), Vec::new());
    for (i, clip) in clips.iter().enumerate() {
        let path = paths.fixtures.join(&clip.file);
        eprintln!(
            "[asr] clip {}/{} {} ({})",
            i + 1,
            clips.len(),
            clip.file,
            if options.realtime { "realtime" } else { "fast" }
        );
        let audio = decode_file(&path, DecodeLimits::default())
            .with_context(|| format!("decoding {}", path.display()))?;
        let mut drive = DriveOptions {
            realtime: options.realtime,
            ..DriveOptions::default()
        };
        drive.stream.partials = options.partials;
        let key = if options.item_prompt || options.item_first_prompt {
            clip.item_id.as_ref()
        } else {
            clip.discipline.as_ref()
        };
        drive.stream.prompt = key
            .and_then(|k| glossaries.get(k))
            .map(|g| Arc::from(g.as_str()));
        let metered = Metered::new(pool);
        let run = transcribe_stream(&metered, &audio, &drive)
            .with_context(|| format!("transcribing {}", clip.file))?;
        let decodes = metered.take();
        for (seq, event) in run.events.iter().enumerate() {
            events_out.write(&EventLine {
                clip: &clip.file,
                seq,
                event,
            })?;
        }
        for decode in &decodes {
            decodes_out.write(&DecodeLine {
                clip: &clip.file,
                decode,
            })?;
        }
        for (at_audio_s, event) in &run.vad {
            vad_out.write(&turns::VadLine::new(&clip.file, *at_audio_s, *event))?;
        }
        let item_expected = clip
            .item_id
            .as_ref()
            .and_then(|id| expected.get(id))
            .copied();
        let clip_turns = turns::replay_clip(
            clip,
            &turns::Recorded::of(&run.vad, &run.events),
            item_expected,
            TurnConfig::default(),
            lag,
        );
        if options.realtime {
            let l = lags(&run.events, clip.last_voiced_s);
            partial_lags.extend(l.partial);
            final_lags.extend(l.fin);
        }
        let mut result = ClipResult::new(clip, &run, &decodes, options.realtime);
        result.turns = clip_turns.replays;
        eprintln!(
            "[asr]   {:.1} s audio, RTF {:.3}, WER {:.1}%, end-of-answer lag {} s, dropped {}",
            result.audio_s,
            result.rtf,
            100.0 * result.wer,
            fmt_opt(result.end_of_answer_final_lag_s, 2),
            result.dropped_partials
        );
        results.push(result);
    }
    events_out.finish()?;
    decodes_out.finish()?;
    vad_out.finish()?;
    Ok((results, partial_lags, final_lags))
}

/// The pool sizing: `for_cores(available cores)` unless overridden.
fn pool_config(options: &AsrOptions) -> PoolConfig {
    let cores = output::available_cores();
    let mut config = PoolConfig::for_cores(cores);
    if let Some(workers) = options.workers {
        config.workers = workers.max(1);
        config.threads_per_worker = (cores / config.workers).max(1);
        config.max_queued_partials = config.workers;
    }
    if let Some(threads) = options.threads {
        config.threads_per_worker = threads.max(1);
    }
    config.boost_idle_finals = options.boost_idle_finals;
    config
}

fn p50_p95(d: Option<Dist>) -> String {
    match d {
        Some(d) => format!("{:.2} / {:.2}", d.p50, d.p95),
        None => "–".into(),
    }
}

/// `summary.md`: the run's settings and one table row per clip plus the overall row.
pub fn markdown(s: &AsrSummary) -> String {
    let mut md = format!(
        "# nextmark-bench asr ({mode})\n\n\
         Started {started}, {n} clip(s), model `{model}`, {w} worker(s) × {t} thread(s) \
         (idle-pool finals on every core: {boost}), partials {partials}, glossary prompt {glossary}, item prompt {item_prompt}, item-first prompt {item_first}.\n{machine}\n\n\
         RTF = {rtf}. Lags in seconds (realtime mode only): partial = shown − end of the audio \
         it covers; final = shown − utterance end; end-of-answer = last final with text − \
         `last_voiced_s`.\n\n",
        mode = s.mode,
        started = s.started_utc,
        n = s.clips.len(),
        model = s.model.display(),
        w = s.pool.workers,
        t = s.pool.threads_per_worker,
        boost = if s.pool.boost_idle_finals {
            "yes"
        } else {
            "no"
        },
        partials = if s.partials { "on" } else { "off" },
        glossary = if s.glossary { "on" } else { "off" },
        item_prompt = if s.item_prompt { "on" } else { "off" },
        item_first = if s.item_first_prompt { "on" } else { "off" },
        machine = s.machine.markdown(),
        rtf = s.rtf_definition,
    );
    let headers = [
        "clip",
        "audio s",
        "RTF",
        "partial lag p50 / p95",
        "final lag p50 / p95",
        "end-of-answer lag",
        "WER %",
        "dropped partials",
    ];
    let mut rows: Vec<Vec<String>> = s
        .clips
        .iter()
        .map(|c| {
            vec![
                c.file.clone(),
                format!("{:.1}", c.audio_s),
                format!("{:.3}", c.rtf),
                p50_p95(c.partial_lag_s),
                p50_p95(c.final_lag_s),
                fmt_opt(c.end_of_answer_final_lag_s, 2),
                format!("{:.1}", 100.0 * c.wer),
                c.dropped_partials.to_string(),
            ]
        })
        .collect();
    let o = &s.overall;
    rows.push(vec![
        format!("**all {} clips**", o.clips),
        format!("{:.1}", o.audio_s),
        format!("{:.3}", o.rtf),
        p50_p95(o.partial_lag_s),
        p50_p95(o.final_lag_s),
        match o.end_of_answer_final_lag_s {
            Some(d) => format!("p50 {:.2} / p95 {:.2}", d.p50, d.p95),
            None => "–".into(),
        },
        format!("{:.1} (set)", 100.0 * o.wer),
        o.dropped_partials.to_string(),
    ]);
    md.push_str(&markdown_table(&headers, &rows));
    md.push_str(&format!(
        "\nSet-level WER {:.2}% ({} errors / {} reference words); mean per-clip WER {:.2}%. \
         Wall RTF {:.3}, decode RTF {:.3} (finals only {:.3}) over {:.1} s of audio; {} \
         partial and {} final events.\n",
        100.0 * o.wer,
        o.word_errors,
        o.reference_words,
        100.0 * o.mean_clip_wer,
        o.wall_rtf,
        o.decode_rtf,
        o.final_decode_rtf,
        o.audio_s,
        o.partial_events,
        o.final_events
    ));
    md.push_str(
        "\n## Turn replay\n\nThe live turn detector over each run, as the answer to its item \
         and to an open question: cut-ins, and the delay from the last voiced sample to the \
         decision.\n\n",
    );
    md.push_str(&turns::markdown(&s.turns, &clip_turns(&s.clips)));
    md
}

/// The turn replays of `clips`, by clip.
fn clip_turns(clips: &[ClipResult]) -> Vec<turns::ClipTurns> {
    clips
        .iter()
        .map(|c| turns::ClipTurns {
            file: c.file.clone(),
            replays: c.turns.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nextmark_engine::asr::Segment;

    fn partial(at_wall_s: f64, audio_end_s: f64) -> TimedEvent {
        TimedEvent {
            event: TranscriptEvent::Partial {
                utterance: 0,
                stable: String::new(),
                unstable: "x".into(),
                audio_end_s,
            },
            at_audio_s: audio_end_s,
            at_wall_s,
            compute_s: 0.1,
        }
    }

    fn fin(at_wall_s: f64, end_s: f64, text: &str) -> TimedEvent {
        TimedEvent {
            event: TranscriptEvent::Final {
                utterance: 0,
                text: text.into(),
                segments: Vec::<Segment>::new(),
                start_s: 0.0,
                end_s,
                forced: false,
            },
            at_audio_s: end_s,
            at_wall_s,
            compute_s: 0.2,
        }
    }

    #[test]
    fn lags_follow_their_definitions() {
        let events = vec![
            partial(1.5, 1.2),
            fin(3.0, 2.5, "hello there"),
            partial(4.4, 4.0),
            fin(6.0, 5.0, "the end"),
            fin(6.1, 5.9, " "),
        ];
        let l = lags(&events, Some(5.2));
        assert_eq!(l.partial.len(), 2);
        assert!((l.partial[0] - 0.3).abs() < 1e-9 && (l.partial[1] - 0.4).abs() < 1e-9);
        assert_eq!(l.fin.len(), 2, "empty finals are not counted");
        assert!((l.fin[0] - 0.5).abs() < 1e-9 && (l.fin[1] - 1.0).abs() < 1e-9);
        let eoa = l.end_of_answer.unwrap();
        assert!((eoa - 0.8).abs() < 1e-9, "{eoa}");
        assert!(lags(&events, None).end_of_answer.is_none());
    }
}
