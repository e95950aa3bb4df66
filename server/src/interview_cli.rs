//! `nextmark score` and `nextmark interview`: the engine driven from the command line with
//! text answers or audio files (transcribed through the live audio path).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nextmark_engine::asr::WhisperModel;
use nextmark_engine::asr::driver::{DriveOptions, StreamRun, transcribe_stream};
use nextmark_engine::asr::pool::{PoolConfig, WorkerPool};
use nextmark_engine::audio::{DecodeLimits, decode_file};
use nextmark_engine::interview::{Action, Event, Interview, InterviewConfig};
use nextmark_engine::report::{ReportMeta, build_report, render_html};
use nextmark_engine::rubric::{Dimension, Rubric};
use nextmark_engine::scoring::{SpeechFeatures, score_answer};

use crate::models;

/// Loads `<dir>/<discipline>.toml`, naming the known disciplines when it is not there.
pub fn load_rubric(dir: &Path, discipline: &str) -> Result<Rubric> {
    let path = dir.join(format!("{discipline}.toml"));
    if !path.exists() {
        let known: Vec<String> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.path()
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
            })
            .filter(|s| s != "README")
            .collect();
        bail!(
            "unknown discipline {discipline:?}; known: {}",
            known.join(", ")
        );
    }
    Ok(Rubric::load(&path)?)
}

/// Transcribes audio answers on demand, loading the model once.
struct Ears {
    model: Option<PathBuf>,
    pool: Option<WorkerPool>,
    prompt: String,
}

impl Ears {
    fn hear(&mut self, file: &Path) -> Result<(String, SpeechFeatures)> {
        if self.pool.is_none() {
            let path = models::resolve_model(self.model.as_deref())?;
            let model = WhisperModel::load(&path)?;
            self.pool = Some(WorkerPool::start(
                &model,
                PoolConfig::for_cores(crate::cli::default_threads()),
            )?);
        }
        let pool = self.pool.as_ref().context("transcriber not started")?;
        let audio = decode_file(file, DecodeLimits::default())?;
        let mut options = DriveOptions::default();
        options.stream.partials = false;
        options.stream.prompt = Some(self.prompt.clone().into());
        let run = transcribe_stream(pool, &audio, &options)?;
        let features = speech_features(&run);
        Ok((run.text, features))
    }
}

impl Drop for Ears {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.shutdown();
        }
    }
}

/// Audio features of a transcribed answer: speech time from the segments, pauses between them.
pub fn speech_features(run: &StreamRun) -> SpeechFeatures {
    let mut pauses = Vec::new();
    let mut speech_s = 0.0;
    let mut last_end: Option<f64> = None;
    for s in &run.segments {
        speech_s += (s.end_s - s.start_s).max(0.0);
        if let Some(e) = last_end
            && s.start_s - e >= 1.0
        {
            pauses.push((e, s.start_s));
        }
        last_end = Some(s.end_s);
    }
    SpeechFeatures {
        duration_s: run.audio_s,
        speech_s,
        pauses,
        words: run.text.split_whitespace().count(),
    }
}

fn looks_like_audio(answer: &str) -> bool {
    let p = Path::new(answer);
    p.is_file()
        && p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
            ["wav", "flac", "ogg", "opus", "mp3"].contains(&e.to_lowercase().as_str())
        })
}

/// `nextmark score`.
pub fn score(
    rubrics: &Path,
    discipline: &str,
    item_id: &str,
    text: Option<String>,
    audio: Option<PathBuf>,
    json: bool,
    model: Option<PathBuf>,
) -> Result<()> {
    let rubric = load_rubric(rubrics, discipline)?;
    let item = rubric.item(item_id).with_context(|| {
        format!(
            "no item {item_id:?} in {discipline}; see `nextmark rubric check` or the rubric file"
        )
    })?;
    let (answer, speech) = match (text, audio) {
        (Some(t), _) => (t, None),
        (None, Some(file)) => {
            let mut ears = Ears {
                model,
                pool: None,
                prompt: rubric.glossary_prompt(),
            };
            let (t, f) = ears.hear(&file)?;
            (t, Some(f))
        }
        (None, None) => bail!("give the answer with --text or --audio"),
    };
    let s = score_answer(item, &answer, speech.as_ref());
    if json {
        println!(
            "{}",
            serde_json::json!({ "item": item.id, "answer": answer, "score": s })
        );
    } else {
        println!("answer: {answer}");
        for d in Dimension::ALL {
            let ds = s.dimension(d);
            println!(
                "{:<38} {} / 4  (confidence {:.2})",
                d.label(),
                ds.score,
                ds.confidence
            );
        }
        let names = |idx: &[usize]| {
            idx.iter()
                .map(|&i| item.concepts[i].term.clone())
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!("named:   {}", names(&s.concepts_found));
        println!("missing: {}", names(&s.concepts_missing));
        for &f in &s.red_flags {
            println!("red flag: {}", item.red_flags[f].claim);
        }
    }
    Ok(())
}

/// `nextmark interview`.
#[allow(clippy::too_many_arguments)]
pub fn interview(
    rubrics: &Path,
    discipline: &str,
    seed: u64,
    answers: &[String],
    json: Option<PathBuf>,
    html: Option<PathBuf>,
    model: Option<PathBuf>,
    llm: Option<crate::grader::LlmGrader>,
) -> Result<()> {
    let rubric = load_rubric(rubrics, discipline)?;
    let mut iv = Interview::new(
        &rubric,
        InterviewConfig {
            seed,
            ..InterviewConfig::default()
        },
    );
    let mut ears = Ears {
        model,
        pool: None,
        prompt: rubric.glossary_prompt(),
    };
    let mut now = 0.0;
    let print = |actions: &[Action]| {
        for a in actions {
            match a {
                Action::Ask {
                    text, index, again, ..
                } => {
                    println!("Q{index}{}: {text}", if *again { " (again)" } else { "" });
                }
                Action::Scored { item_id, result } => {
                    let s = &result.score;
                    println!(
                        "   [{item_id}: knowledge {} reasoning {} clarity {}]",
                        s.dimensions[0].score, s.dimensions[1].score, s.dimensions[2].score
                    );
                }
                Action::Finish { reason } => println!("-- finished: {reason:?}"),
            }
        }
    };
    print(&iv.handle(Event::Start { at_s: now }));
    for answer in answers {
        if iv.is_finished() {
            eprintln!("note: the interview ended before all answers were used");
            break;
        }
        let (text, speech, seconds) = if looks_like_audio(answer) {
            let (t, f) = ears.hear(Path::new(answer))?;
            let d = f.duration_s;
            (t, Some(f), d)
        } else {
            // Typed answers: time at a speaking pace of ~2.5 words a second, plus thinking.
            let words = answer.split_whitespace().count() as f64;
            (answer.clone(), None, 5.0 + words / 2.5)
        };
        now += seconds;
        println!("A: {text}");
        print(&iv.handle(Event::Answer {
            text,
            at_s: now,
            speech,
            typed: false,
        }));
        now += 3.0;
    }
    let (grader, regraded) = match &llm {
        Some(llm) => regrade(llm, &rubric, &iv)?,
        None => (None, Vec::new()),
    };
    let report = build_report(
        &iv,
        &ReportMeta {
            interview_id: format!("cli-{discipline}-{seed}"),
            generated_at: "cli".into(),
            quality: None,
            grader,
            regraded,
        },
    );
    println!(
        "verdict: {:?} (overall {:.2}/4, θ = {:.2} ± {:.2})",
        report.verdict, report.overall_score, report.overall_theta, report.overall_se
    );
    if let Some(path) = json {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = html {
        std::fs::write(&path, render_html(&report, rubric.pass.min_dimension))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Scores from another grader, per item, and who gave them.
type Regraded = Vec<Option<(nextmark_engine::scoring::AnswerScore, String)>>;

/// Regrades every scored item with the LLM grader for the report. Each item says which grader
/// scored it; a failed LLM call falls back to the deterministic score and the report says why.
fn regrade(
    llm: &crate::grader::LlmGrader,
    rubric: &Rubric,
    iv: &Interview<'_>,
) -> Result<(Option<String>, Regraded)> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let mut regraded = Vec::new();
    let mut fallbacks = 0;
    for result in iv.results() {
        let item = &rubric.items[result.item];
        let outcome = runtime.block_on(llm.grade(item, &result.answer, &result.score));
        if !outcome.source.is_llm() {
            fallbacks += 1;
        }
        regraded.push(Some((outcome.score, outcome.source.to_string())));
    }
    let total = regraded.len();
    let label = if fallbacks == 0 {
        format!("LLM grader ({})", llm.model())
    } else {
        format!(
            "LLM grader ({}) with deterministic fallback on {fallbacks} of {total} answers",
            llm.model()
        )
    };
    Ok((Some(label), regraded))
}
