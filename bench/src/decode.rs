//! `decode`: times single whisper calls on the start of one answer clip, by audio length,
//! threads and vocabulary prompt, and works out the floor each puts under the final lag: a
//! final cannot be shown before the decode of its utterance, which cannot start before the VAD
//! has heard the speech stop.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use nextmark_engine::asr::segmenter::SegmenterConfig;
use nextmark_engine::asr::{DecodeOptions, WhisperModel, audio_ctx_for};
use nextmark_engine::audio::{TARGET_RATE, VadConfig};
use nextmark_engine::rubric;
use nextmark_server::live::session::ITEM_FIRST_PROMPT_CHARS;
use serde::Serialize;

use crate::fixtures::{Clip, Manifest, Paths};
use crate::live::ClipAudio;
use crate::output::{self, JsonLines, Machine, markdown_table};
use crate::stats::percentile;

/// Samples a second of the audio whisper decodes.
const RATE: f64 = TARGET_RATE as f64;

/// What `decode` measures.
#[derive(Debug, Clone)]
pub struct DecodeBenchOptions {
    /// Clips to choose from (`all` or globs, as `asr --clips`); the longest is used.
    pub clips: String,
    /// Audio lengths to decode, seconds from the clip's first voiced instant.
    pub lengths_s: Vec<f64>,
    /// whisper thread counts to try.
    pub threads: Vec<usize>,
    /// Timed calls per combination (after one untimed call).
    pub repeats: usize,
}

/// One timed call, a line of `calls.jsonl`.
#[derive(Debug, Serialize)]
struct CallLine<'a> {
    prompt: &'a str,
    threads: usize,
    length_s: f64,
    audio_ctx: i32,
    compute_s: f64,
    words: usize,
}

/// The figures of one combination of prompt, threads and length.
#[derive(Debug, Clone, Serialize)]
pub struct DecodeRow {
    /// `none` or `item_first` (the server's default vocabulary prompt for the clip's item).
    pub prompt: String,
    /// Characters of the prompt.
    pub prompt_chars: usize,
    /// whisper threads of the call.
    pub threads: usize,
    /// Audio decoded, seconds.
    pub length_s: f64,
    /// Encoder frames the call used (`audio_ctx_for`).
    pub audio_ctx: i32,
    /// Fastest timed call, seconds.
    pub best_s: f64,
    /// Median timed call (nearest rank), seconds.
    pub median_s: f64,
    /// The least final lag an utterance of this length can have with a decode this fast
    /// (see [`final_lag_floor_s`]), seconds.
    pub final_lag_floor_s: f64,
}

/// `summary.json`.
#[derive(Debug, Serialize)]
struct DecodeSummary {
    kind: &'static str,
    started_utc: String,
    finished_utc: String,
    clip: String,
    model: PathBuf,
    repeats: usize,
    vad_hangover_s: f64,
    segmenter_min_pause_s: f64,
    segmenter_long_utterance_s: f64,
    segmenter_long_min_pause_s: f64,
    segmenter_post_roll_s: f64,
    machine: Machine,
    rows: Vec<DecodeRow>,
}

/// The least final lag (shown − utterance end, as `asr` measures it) an utterance of
/// `length_s` can have when its decode takes `decode_s`: the decode starts when the VAD
/// reports the end of speech (`hangover_s` after it), the final is shown no sooner than the
/// segmenter cuts the utterance (after its pause), and the utterance ends `post_roll_s` after
/// the speech.
pub fn final_lag_floor_s(
    length_s: f64,
    decode_s: f64,
    hangover_s: f64,
    segmenter: &SegmenterConfig,
) -> f64 {
    let pause = if length_s >= segmenter.long_utterance_s {
        segmenter.long_min_pause_s
    } else {
        segmenter.min_pause_s
    };
    (hangover_s + decode_s).max(pause) - segmenter.post_roll_s
}

/// The clip as 16 kHz mono, from its first voiced instant less the segmenter's pre-roll.
fn speech_16k(paths: &Paths, clip: &Clip) -> Result<Vec<f32>> {
    let mut samples = ClipAudio::load(&paths.fixtures, clip, false)?.pcm_16k;
    let pre_roll = SegmenterConfig::default().pre_roll_s;
    let from = clip.first_voiced_s.map_or(0.0, |s| (s - pre_roll).max(0.0));
    let skip = ((from * RATE) as usize).min(samples.len());
    Ok(samples.split_off(skip))
}

/// Runs the measurement and writes `calls.jsonl`, `summary.json` and `summary.md` to `out`.
pub fn run(paths: &Paths, options: &DecodeBenchOptions, out: &Path) -> Result<()> {
    let started_utc = output::utc_now_rfc3339();
    if options.lengths_s.is_empty()
        || options
            .lengths_s
            .iter()
            .any(|l| !(l.is_finite() && *l > 0.0))
    {
        bail!("--lengths must be positive seconds, e.g. 2,5,8");
    }
    if options.threads.is_empty() || options.threads.contains(&0) {
        bail!("--threads must be whole numbers of at least 1, e.g. 1,2");
    }
    let manifest = Manifest::load(&paths.fixtures)?;
    let clip = manifest
        .select(&options.clips)?
        .into_iter()
        .filter(|c| c.item_id.is_some())
        .max_by(|a, b| {
            a.last_voiced_s
                .unwrap_or(0.0)
                .total_cmp(&b.last_voiced_s.unwrap_or(0.0))
        })
        .with_context(|| format!("--clips {:?} selects no answer clip", options.clips))?;
    let speech = speech_16k(paths, clip)?;
    let rubrics = rubric::load_dir(&paths.rubrics)
        .with_context(|| format!("loading rubrics from {}", paths.rubrics.display()))?;
    let item_first = rubrics.iter().find_map(|r| {
        let item = r
            .items
            .iter()
            .find(|i| Some(&i.id) == clip.item_id.as_ref())?;
        r.item_first_prompt(Some(item), ITEM_FIRST_PROMPT_CHARS)
    });
    let mut prompts = vec![("none", None)];
    if let Some(p) = item_first {
        prompts.push(("item_first", Some(p)));
    }
    let model_path = paths.model_path()?;
    let model = WhisperModel::load(&model_path)
        .with_context(|| format!("loading the Whisper model {}", model_path.display()))?;
    let mut worker = model.worker(1).context("creating a whisper state")?;
    let segmenter = SegmenterConfig::default();
    let hangover_s = f64::from(VadConfig::default().hangover_ms) / 1000.0;

    let mut calls = JsonLines::create(out.join("calls.jsonl"))?;
    let mut rows = Vec::new();
    for (prompt_name, prompt) in &prompts {
        let opts = DecodeOptions {
            prompt: prompt.clone(),
            ..DecodeOptions::default()
        };
        for &threads in &options.threads {
            for &length_s in &options.lengths_s {
                let n = ((length_s * RATE) as usize).min(speech.len());
                let samples = &speech[..n];
                let length_s = n as f64 / RATE;
                eprintln!("[decode] prompt {prompt_name}, {threads} thread(s), {length_s:.1} s");
                // The first call of a shape allocates; it is not timed.
                worker.transcribe_on(samples, &opts, threads)?;
                let mut sample = Vec::with_capacity(options.repeats.max(1));
                for _ in 0..options.repeats.max(1) {
                    let started = Instant::now();
                    let segments = worker.transcribe_on(samples, &opts, threads)?;
                    let compute_s = started.elapsed().as_secs_f64();
                    let words = segments
                        .iter()
                        .map(|s| s.text.split_whitespace().count())
                        .sum();
                    calls.write(&CallLine {
                        prompt: prompt_name,
                        threads,
                        length_s,
                        audio_ctx: audio_ctx_for(length_s),
                        compute_s,
                        words,
                    })?;
                    sample.push(compute_s);
                }
                sample.sort_by(f64::total_cmp);
                let best_s = sample[0];
                rows.push(DecodeRow {
                    prompt: (*prompt_name).to_string(),
                    prompt_chars: prompt.as_ref().map_or(0, |s| s.chars().count()),
                    threads,
                    length_s,
                    audio_ctx: audio_ctx_for(length_s),
                    best_s,
                    median_s: percentile(&sample, 50.0),
                    final_lag_floor_s: final_lag_floor_s(length_s, best_s, hangover_s, &segmenter),
                });
            }
        }
    }
    calls.finish()?;
    let summary = DecodeSummary {
        kind: "decode",
        started_utc,
        finished_utc: output::utc_now_rfc3339(),
        clip: clip.file.clone(),
        model: model_path,
        repeats: options.repeats.max(1),
        vad_hangover_s: hangover_s,
        segmenter_min_pause_s: segmenter.min_pause_s,
        segmenter_long_utterance_s: segmenter.long_utterance_s,
        segmenter_long_min_pause_s: segmenter.long_min_pause_s,
        segmenter_post_roll_s: segmenter.post_roll_s,
        machine: Machine::detect(),
        rows,
    };
    let md = markdown(&summary);
    output::write_summary(out, &summary, &md)?;
    eprint!("{md}");
    Ok(())
}

fn markdown(s: &DecodeSummary) -> String {
    let rows: Vec<Vec<String>> = s
        .rows
        .iter()
        .map(|r| {
            vec![
                format!("{} ({} chars)", r.prompt, r.prompt_chars),
                r.threads.to_string(),
                format!("{:.1}", r.length_s),
                r.audio_ctx.to_string(),
                format!("{:.3}", r.best_s),
                format!("{:.3}", r.median_s),
                format!("{:.2}", r.final_lag_floor_s),
            ]
        })
        .collect();
    format!(
        "# decode\n\nStarted {}, clip `{}` from its first voiced instant, model `{}`, {} timed \
         call(s) per row after one untimed.\n{}\n\nOne whisper call per row, on an otherwise idle \
         machine. Final-lag floor = max(VAD hangover {:.2} s + best call, the segmenter's pause \
         {:.2} s, or {:.2} s from {:.0} s of speech) − post-roll {:.2} s: the least lag `asr` \
         can show for an utterance of that length.\n\n{}",
        s.started_utc,
        s.clip,
        s.model.display(),
        s.repeats,
        s.machine.markdown(),
        s.vad_hangover_s,
        s.segmenter_min_pause_s,
        s.segmenter_long_min_pause_s,
        s.segmenter_long_utterance_s,
        s.segmenter_post_roll_s,
        markdown_table(
            &[
                "prompt",
                "threads",
                "audio s",
                "audio_ctx",
                "best s",
                "median s",
                "final-lag floor s",
            ],
            &rows,
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_is_the_later_of_the_decode_and_the_cut() {
        let seg = SegmenterConfig {
            min_pause_s: 0.55,
            long_utterance_s: 8.0,
            long_min_pause_s: 0.3,
            post_roll_s: 0.3,
            ..SegmenterConfig::default()
        };
        // A quick decode of a short utterance waits for the cut after its 0.55 s pause.
        assert!((final_lag_floor_s(3.0, 0.1, 0.2, &seg) - 0.25).abs() < 1e-9);
        // A slow decode sets the floor.
        assert!((final_lag_floor_s(3.0, 0.6, 0.2, &seg) - 0.5).abs() < 1e-9);
        // A long utterance is cut after a shorter pause.
        assert!((final_lag_floor_s(9.0, 0.05, 0.2, &seg) - 0.0).abs() < 1e-9);
        assert!((final_lag_floor_s(9.0, 0.5, 0.2, &seg) - 0.4).abs() < 1e-9);
    }
}
