//! Turn replay: the live server's turn detector run over one clip's recorded voice events and
//! finals, to see where it would end the answer without a server or a second run of whisper.
//!
//! A clip is replayed twice: as the answer to its own item (the detector knows the item's
//! expected answer length) and as the answer to a question without one (consent, the warm-up),
//! where only the transcript and the silences decide. A decision before the clip's last voiced
//! sample is a cut-in; otherwise the delay from that sample to the decision is what the
//! applicant waits, not counting the question's own synthesis and sending.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nextmark_engine::asr::driver::TimedEvent;
use nextmark_engine::asr::stream::TranscriptEvent;
use nextmark_engine::audio::VadEvent;
use nextmark_engine::rubric;
use nextmark_engine::turn::{TurnConfig, TurnDecision, TurnDetector};
use serde::Serialize;

use crate::fixtures::{Clip, Manifest, Paths};
use crate::output::{self, fmt_opt, markdown_table};
use crate::stats::Dist;

/// When a final reaches the turn detector in a replay of a fast (unpaced) run: its utterance's
/// end plus this decode lag (the end-of-answer final lag measured by `asr --realtime`).
pub const DEFAULT_FINAL_LAG_S: f64 = 0.35;

/// Where the detector ended one replayed answer.
#[derive(Debug, Clone, Serialize)]
pub struct TurnReplay {
    /// `item` (the clip's item, with its expected length) or `open` (no expected length).
    pub question: &'static str,
    /// The decision time on the clip's clock (`None`: no decision, which a bounded detector
    /// never gives).
    pub decided_at_s: Option<f64>,
    /// The rule that ended it.
    pub reason: Option<&'static str>,
    /// Decided before the clip's last voiced sample.
    pub cut_in: bool,
    /// The cut fell inside one of the clip's listed pauses (its kind), if it was a cut-in.
    pub cut_pause_kind: Option<String>,
    /// Last voiced sample → decision, seconds (no cut-in only).
    pub delay_s: Option<f64>,
    /// What the detector had heard when it decided.
    pub transcript: String,
}

/// What a clip's run gave the turn detector: voice events and finals, each with when it was
/// emitted (audio fed, seconds). Built from a run or read back from an `asr` result folder.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    /// Voice starts and ends.
    pub vad: Vec<(f64, VadEvent)>,
    /// Finals.
    pub finals: Vec<RecordedFinal>,
}

/// One final of a [`Recorded`] run.
#[derive(Debug, Clone)]
pub struct RecordedFinal {
    /// Its text.
    pub text: String,
    /// Utterance start, seconds.
    pub start_s: f64,
    /// Utterance end, seconds.
    pub end_s: f64,
    /// Audio fed when it was emitted, seconds.
    pub at_audio_s: f64,
}

impl Recorded {
    /// The voice events and finals of one run.
    pub fn of(vad: &[(f64, VadEvent)], events: &[TimedEvent]) -> Self {
        let finals = events
            .iter()
            .filter_map(|e| match &e.event {
                TranscriptEvent::Final {
                    text,
                    start_s,
                    end_s,
                    ..
                } => Some(RecordedFinal {
                    text: text.clone(),
                    start_s: *start_s,
                    end_s: *end_s,
                    at_audio_s: e.at_audio_s,
                }),
                TranscriptEvent::Partial { .. } => None,
            })
            .collect();
        Recorded {
            vad: vad.to_vec(),
            finals,
        }
    }
}

/// One input to the detector, at the time it reaches it.
enum Input<'a> {
    Voice(VadEvent),
    Final(&'a RecordedFinal),
}

/// Replays `recorded` through a fresh detector with `config`, as the answer to a question
/// expecting `expected_answer_s` of speech. `final_lag_s`: `Some` to deliver each final at its
/// utterance end plus that lag (fast runs), `None` to deliver it when the run emitted it
/// (paced runs).
pub fn replay(
    clip: &Clip,
    recorded: &Recorded,
    expected_answer_s: Option<f64>,
    config: TurnConfig,
    final_lag_s: Option<f64>,
) -> TurnReplay {
    // A voice start counts from its onset: the session holds a silence decision while the
    // VAD confirms an onset (`Vad::onset_pending`), so a start emitted late still cancels it.
    let mut inputs: Vec<(f64, Input<'_>)> = recorded
        .vad
        .iter()
        .map(|(emitted, e)| match e {
            VadEvent::SpeechStart { at_s } => (at_s.min(*emitted), Input::Voice(*e)),
            VadEvent::SpeechEnd { .. } => (*emitted, Input::Voice(*e)),
        })
        .collect();
    for f in &recorded.finals {
        let at = final_lag_s.map_or(f.at_audio_s, |lag| f.end_s + lag);
        inputs.push((at, Input::Final(f)));
    }
    // Stable: a voice event and a final at the same time keep the run's order.
    inputs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut detector = TurnDetector::new(config);
    detector.set_expected_answer_s(expected_answer_s);
    detector.start_question(0.0);
    let mut decision = None;
    for (at, input) in inputs
        .iter()
        .map(|(at, input)| (*at, Some(input)))
        .chain(std::iter::once((f64::INFINITY, None)))
    {
        // Deadlines that fall before this input fire first, as the session's timer would.
        decision = fire_deadlines(&mut detector, at);
        if decision.is_some() {
            break;
        }
        match input {
            Some(Input::Voice(VadEvent::SpeechStart { at_s })) => detector.voice_start(*at_s),
            Some(Input::Voice(VadEvent::SpeechEnd { at_s })) => detector.voice_end(*at_s),
            Some(Input::Final(f)) => detector.final_text(&f.text, f.start_s, f.end_s),
            None => break,
        }
        decision = detector.poll(at);
        if decision.is_some() {
            break;
        }
    }
    let last_voiced = clip.last_voiced_s.unwrap_or(0.0);
    let decided_at_s = decision.map(|d| d.at_s);
    let cut_in = decided_at_s.is_some_and(|at| at < last_voiced);
    let cut_pause_kind = decided_at_s.filter(|_| cut_in).and_then(|at| {
        clip.pauses
            .iter()
            .find(|p| p.start_s <= at && at <= p.end_s)
            .map(|p| p.kind.clone().unwrap_or_else(|| "listed".into()))
    });
    TurnReplay {
        question: if expected_answer_s.is_some() {
            "item"
        } else {
            "open"
        },
        decided_at_s,
        reason: decision.map(|d| d.reason.as_str()),
        cut_in,
        cut_pause_kind,
        delay_s: decided_at_s.filter(|_| !cut_in).map(|at| at - last_voiced),
        transcript: detector.transcript().to_string(),
    }
}

/// Polls `detector` at each of its deadlines up to `until`; the decision, if one fires.
fn fire_deadlines(detector: &mut TurnDetector, until: f64) -> Option<TurnDecision> {
    while let Some(due) = detector.next_deadline() {
        if due > until {
            return None;
        }
        if let Some(d) = detector.poll(due) {
            return Some(d);
        }
    }
    None
}

/// One clip's replays.
#[derive(Debug, Clone, Serialize)]
pub struct ClipTurns {
    /// Fixture file name.
    pub file: String,
    /// The replays: as the answer to its item (when the item says how long an answer runs)
    /// and to an open question.
    pub replays: Vec<TurnReplay>,
}

/// Replays one clip as the answer to its item (`expected_answer_s`) and to an open question.
pub fn replay_clip(
    clip: &Clip,
    recorded: &Recorded,
    expected_answer_s: Option<f64>,
    config: TurnConfig,
    final_lag_s: Option<f64>,
) -> ClipTurns {
    let replays = expected_answer_s
        .map(Some)
        .into_iter()
        .chain(std::iter::once(None))
        .map(|expected| replay(clip, recorded, expected, config, final_lag_s))
        .collect();
    ClipTurns {
        file: clip.file.clone(),
        replays,
    }
}

/// The replays of one question kind over all clips.
#[derive(Debug, Clone, Serialize)]
pub struct TurnFigures {
    /// `item` or `open`.
    pub question: &'static str,
    /// Answers replayed.
    pub answers: usize,
    /// Decisions before the last voiced sample.
    pub cut_ins: usize,
    /// …of which inside a listed pause.
    pub cut_ins_in_pauses: usize,
    /// Last voiced sample → decision, seconds, over the answers not cut.
    pub delay_s: Option<Dist>,
}

/// Figures per question kind (`item`, then `open`).
pub fn figures(clips: &[ClipTurns]) -> Vec<TurnFigures> {
    ["item", "open"]
        .into_iter()
        .filter_map(|question| {
            let replays: Vec<&TurnReplay> = clips
                .iter()
                .flat_map(|c| &c.replays)
                .filter(|r| r.question == question)
                .collect();
            (!replays.is_empty()).then(|| TurnFigures {
                question,
                answers: replays.len(),
                cut_ins: replays.iter().filter(|r| r.cut_in).count(),
                cut_ins_in_pauses: replays
                    .iter()
                    .filter(|r| r.cut_pause_kind.is_some())
                    .count(),
                delay_s: Dist::of(&replays.iter().filter_map(|r| r.delay_s).collect::<Vec<_>>()),
            })
        })
        .collect()
}

/// A markdown table of `figures` and a line per cut-in.
pub fn markdown(figures: &[TurnFigures], clips: &[ClipTurns]) -> String {
    let rows: Vec<Vec<String>> = figures
        .iter()
        .map(|f| {
            vec![
                f.question.to_string(),
                f.answers.to_string(),
                format!("{} ({})", f.cut_ins, f.cut_ins_in_pauses),
                fmt_opt(f.delay_s.map(|d| d.p50), 2),
                fmt_opt(f.delay_s.map(|d| d.p95), 2),
                fmt_opt(f.delay_s.map(|d| d.max), 2),
            ]
        })
        .collect();
    let mut md = markdown_table(
        &[
            "question",
            "answers",
            "cut-ins (in a pause)",
            "delay p50 s",
            "delay p95 s",
            "delay max s",
        ],
        &rows,
    );
    for clip in clips {
        for r in clip.replays.iter().filter(|r| r.cut_in) {
            md.push_str(&format!(
                "\n- cut-in: {} ({} question) at {} s, {}: \"{}\"",
                clip.file,
                r.question,
                fmt_opt(r.decided_at_s, 2),
                r.reason.unwrap_or("?"),
                r.transcript
            ));
        }
    }
    md.push('\n');
    md
}

/// `summary.json` of a `turns` run.
#[derive(Debug, Clone, Serialize)]
struct TurnsSummary {
    /// Always `turns`.
    kind: &'static str,
    /// The `asr` result folder replayed.
    from: PathBuf,
    /// How finals were timed: `utterance end + final_lag_s` for a fast run, as emitted for a
    /// paced one.
    final_lag_s: Option<f64>,
    /// The detector's settings.
    config: TurnConfig,
    /// Per question kind.
    figures: Vec<TurnFigures>,
    /// Per clip.
    clips: Vec<ClipTurns>,
}

/// Replays the runs recorded in the `asr` result folder `from` (its `events.jsonl`,
/// `vad.jsonl` and `summary.json`) with this build's turn rules, and writes the figures to
/// `out`.
pub fn run(
    paths: &Paths,
    from: &Path,
    final_lag_s: f64,
    config: TurnConfig,
    out: &Path,
) -> Result<()> {
    let manifest = Manifest::load(&paths.fixtures)?;
    let expected = expected_lengths(paths)?;
    let summary_path = from.join("summary.json");
    let asr: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&summary_path)
            .with_context(|| format!("reading {}", summary_path.display()))?,
    )
    .with_context(|| format!("parsing {}", summary_path.display()))?;
    let lag = (asr["mode"] != "realtime").then_some(final_lag_s);
    let mut recorded: BTreeMap<String, Recorded> = BTreeMap::new();
    for_lines(&from.join("events.jsonl"), |line| {
        if line["kind"] != "final" {
            return Ok(());
        }
        let num = |key: &str| line[key].as_f64().with_context(|| format!("no {key}"));
        recorded
            .entry(string(line, "clip")?)
            .or_default()
            .finals
            .push(RecordedFinal {
                text: string(line, "text")?,
                start_s: num("start_s")?,
                end_s: num("end_s")?,
                at_audio_s: num("at_audio_s")?,
            });
        Ok(())
    })?;
    for_lines(&from.join("vad.jsonl"), |line| {
        let at_s = line["at_s"].as_f64().context("no at_s")?;
        let event = match line["voice"].as_str() {
            Some("start") => VadEvent::SpeechStart { at_s },
            Some("end") => VadEvent::SpeechEnd { at_s },
            other => bail!("voice is {other:?}, not start or end"),
        };
        let emitted = line["at_audio_s"].as_f64().context("no at_audio_s")?;
        recorded
            .entry(string(line, "clip")?)
            .or_default()
            .vad
            .push((emitted, event));
        Ok(())
    })?;
    let mut clips = Vec::new();
    for (file, rec) in &recorded {
        let clip = manifest
            .clips
            .iter()
            .find(|c| &c.file == file)
            .with_context(|| format!("{file} is not in the fixture manifest"))?;
        let expected = clip
            .item_id
            .as_ref()
            .and_then(|id| expected.get(id))
            .copied();
        clips.push(replay_clip(clip, rec, expected, config, lag));
    }
    let figures = figures(&clips);
    let md = format!(
        "# Turn replay of {}\n\n{}",
        from.display(),
        markdown(&figures, &clips)
    );
    let summary = TurnsSummary {
        kind: "turns",
        from: from.to_path_buf(),
        final_lag_s: lag,
        config,
        figures,
        clips,
    };
    output::write_summary(out, &summary, &md)?;
    eprint!("{md}");
    Ok(())
}

/// The default turn settings with `FIELD=VALUE` overrides (values in JSON: numbers, `true`).
pub fn config_with(settings: &[String]) -> Result<TurnConfig> {
    let mut value = serde_json::to_value(TurnConfig::default())?;
    for setting in settings {
        let (field, raw) = setting
            .split_once('=')
            .with_context(|| format!("--set {setting}: expected FIELD=VALUE"))?;
        if value.get(field).is_none() {
            bail!("--set {setting}: the turn detector has no setting {field:?}");
        }
        value[field] = serde_json::from_str(raw)
            .with_context(|| format!("--set {setting}: {raw:?} is not a number or boolean"))?;
    }
    let config: TurnConfig =
        serde_json::from_value(value).context("the turn settings after --set")?;
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("the turn settings after --set: {e}"))?;
    Ok(config)
}

/// Expected answer length (the low end of its range, as the live server uses) per item id.
pub fn expected_lengths(paths: &Paths) -> Result<BTreeMap<String, f64>> {
    let rubrics = rubric::load_dir(&paths.rubrics)
        .with_context(|| format!("loading rubrics from {}", paths.rubrics.display()))?;
    Ok(rubrics
        .iter()
        .flat_map(|r| &r.items)
        .map(|item| (item.id.clone(), item.expected_seconds.0))
        .collect())
}

/// A voice event as a line of `vad.jsonl`.
#[derive(Debug, Serialize)]
pub struct VadLine<'a> {
    /// Fixture file name.
    pub clip: &'a str,
    /// `start` or `end`.
    pub voice: &'static str,
    /// When the voice started or ended, seconds.
    pub at_s: f64,
    /// Audio fed when the front-end emitted it, seconds.
    pub at_audio_s: f64,
}

impl<'a> VadLine<'a> {
    /// The line for `event`, emitted after `at_audio_s` of `clip`.
    pub fn new(clip: &'a str, at_audio_s: f64, event: VadEvent) -> Self {
        let (voice, at_s) = match event {
            VadEvent::SpeechStart { at_s } => ("start", at_s),
            VadEvent::SpeechEnd { at_s } => ("end", at_s),
        };
        VadLine {
            clip,
            voice,
            at_s,
            at_audio_s,
        }
    }
}

fn string(line: &serde_json::Value, key: &str) -> Result<String> {
    line[key]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("no {key}"))
}

/// Calls `each` on every JSON line of `path`; errors name the file and line.
fn for_lines(path: &Path, mut each: impl FnMut(&serde_json::Value) -> Result<()>) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let value: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not JSON", path.display(), n + 1))?;
        each(&value).with_context(|| format!("{}:{}", path.display(), n + 1))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::Pause;

    /// A 20 s answer: voiced 1–8 s, a 3 s pause, voiced 11–20 s.
    fn clip() -> Clip {
        Clip {
            file: "answer.wav".into(),
            item_id: Some("item".into()),
            discipline: None,
            quality: "strong".into(),
            reference_text: String::new(),
            first_voiced_s: Some(1.0),
            last_voiced_s: Some(20.0),
            pauses: vec![Pause {
                start_s: 8.0,
                end_s: 11.0,
                kind: Some("mid_sentence".into()),
            }],
        }
    }

    /// Voice events (emitted 0.2 s late, as the VAD's hangover does) and one final per stretch.
    fn recorded(first: &str, second: &str) -> Recorded {
        let voice = |start: f64, end: f64| {
            [
                (start + 0.06, VadEvent::SpeechStart { at_s: start }),
                (end + 0.2, VadEvent::SpeechEnd { at_s: end }),
            ]
        };
        let final_of = |text: &str, start_s: f64, end_s: f64| RecordedFinal {
            text: text.into(),
            start_s,
            end_s,
            at_audio_s: end_s + 0.35,
        };
        Recorded {
            vad: voice(1.0, 8.0)
                .into_iter()
                .chain(voice(11.0, 20.0))
                .collect(),
            finals: vec![final_of(first, 0.75, 8.3), final_of(second, 10.75, 20.3)],
        }
    }

    #[test]
    fn an_unfinished_sentence_before_the_pause_waits_and_the_end_is_timed() {
        let rec = recorded(
            "We moved the whole pipeline to Rust and the first thing we did was",
            "rewrite the parser, which took about four months in the end.",
        );
        let config = TurnConfig::default();
        let turn = replay(&clip(), &rec, Some(15.0), config, Some(0.35));
        assert!(!turn.cut_in, "{turn:?}");
        assert_eq!(turn.reason, Some("silence"));
        // The later of the final (0.65 s after the voice end) and the finished silence.
        let delay = turn.delay_s.expect("a delay");
        let due = config.finished_silence_s.max(0.65);
        assert!((delay - due).abs() < 1e-6, "{delay}");
        assert!(turn.transcript.ends_with("in the end."));
    }

    #[test]
    fn a_finished_sentence_before_the_pause_is_a_cut_in_inside_the_pause() {
        let rec = recorded(
            "We moved the whole pipeline to Rust and it took about four months.",
            "Then we measured it again.",
        );
        // A question whose expected length this answer already passed: the short silence.
        let turn = replay(&clip(), &rec, Some(5.0), TurnConfig::default(), Some(0.35));
        assert!(turn.cut_in, "{turn:?}");
        assert_eq!(turn.cut_pause_kind.as_deref(), Some("mid_sentence"));
        assert_eq!(turn.delay_s, None);
        let at = turn.decided_at_s.expect("decided");
        assert!((8.0..11.0).contains(&at), "{at}");
        // Both question kinds are replayed, and the figures count the cut.
        let clips = vec![replay_clip(
            &clip(),
            &rec,
            Some(5.0),
            TurnConfig::default(),
            Some(0.35),
        )];
        let figures = figures(&clips);
        assert_eq!(figures.len(), 2);
        assert_eq!(figures[0].question, "item");
        assert_eq!((figures[0].cut_ins, figures[0].cut_ins_in_pauses), (1, 1));
        assert!(markdown(&figures, &clips).contains("cut-in: answer.wav (item question)"));
    }

    #[test]
    fn settings_are_overridden_by_name_and_checked() {
        let config = config_with(&["finished_silence_s=0.8".into()]).expect("valid");
        assert_eq!(config.finished_silence_s, 0.8);
        let unknown = config_with(&["finished_silence=0.8".into()]).expect_err("unknown field");
        assert!(unknown.to_string().contains("no setting"), "{unknown}");
        let out_of_order = config_with(&["finished_silence_s=9".into()]).expect_err("order");
        assert!(
            format!("{out_of_order:#}").contains("finished_silence_s"),
            "{out_of_order:#}"
        );
        assert!(config_with(&["finished_silence_s".into()]).is_err());
    }
}
