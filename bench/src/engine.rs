//! The engine bench: the per-turn work of an adaptive interview once an answer's text is in
//! (score the answer, update the ability posterior and estimate, pick the next item), timed
//! turn by turn over every item of every rubric.
//!
//! One pass walks each rubric's whole item bank in the order `select_next` chooses (seeded,
//! so passes are reproducible), answering each item with a written answer: the fixture
//! reference texts for items that have recorded answers (with their speech timing), and
//! synthetic answers built from the item's concept terms and generic words for the rest.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use nextmark_engine::irt::{AbilityPosterior, ItemParams, MAX_SCORE, SelectionConfig, select_next};
use nextmark_engine::rubric::{self, Item, Rubric};
use nextmark_engine::scoring::{SpeechFeatures, score_answer};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::fixtures::{Clip, Manifest, Paths};
use crate::output::{self, JsonLines, Machine, markdown_table};
use crate::stats::Dist;

/// The per-turn budget the figures are compared with (reported, never asserted).
pub const TARGET_P99_MS: f64 = 5.0;

/// Unmeasured passes run first, so page faults and cold caches do not count.
const WARMUP_PASSES: usize = 1;

/// A written answer to an item.
#[derive(Debug, Clone)]
struct Answer {
    /// Where it came from: `fixture:<file>` or `synthetic:strong|weak`.
    label: String,
    /// The text.
    text: String,
    /// Speech timing, for answers that were spoken (fixtures).
    speech: Option<SpeechFeatures>,
}

/// Speech timing of a fixture answer from its manifest entry.
fn speech_features(clip: &Clip) -> Option<SpeechFeatures> {
    let (first, last) = (clip.first_voiced_s?, clip.last_voiced_s?);
    let duration_s = (last - first).max(0.0);
    let pauses: Vec<(f64, f64)> = clip.pauses.iter().map(|p| (p.start_s, p.end_s)).collect();
    let paused: f64 = pauses.iter().map(|(s, e)| (e - s).max(0.0)).sum();
    Some(SpeechFeatures {
        duration_s,
        speech_s: (duration_s - paused).max(0.0),
        pauses,
        words: 0,
    })
}

/// A plausible strong answer: every concept term of the item in reasoning sentences.
fn synthetic_strong(item: &Item) -> String {
    const FRAMES: [&str; 5] = [
        "I would start with {}, because it decides what happens next.",
        "Then I would look at {}, and if it is abnormal I would act on it first.",
        "I would also check {} before committing, for example by measuring it twice.",
        "If {} does not fit the picture, I would reconsider the assumption and compare.",
        "Finally {}, and I would document the reasoning so someone else can verify it.",
    ];
    let mut text = String::new();
    for (i, concept) in item.concepts.iter().enumerate() {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(&FRAMES[i % FRAMES.len()].replace("{}", &concept.term));
    }
    if text.is_empty() {
        text.push_str("I would first clarify the goal, then check the facts, because the details decide the answer.");
    }
    text
}

/// A plausible weak answer: generic words with at most one concept term.
fn synthetic_weak(item: &Item) -> String {
    let term = item
        .concepts
        .first()
        .map_or("the main issue", |c| c.term.as_str());
    format!(
        "Um, I think it really depends on the situation. I would probably look into {term} and, \
         you know, ask a colleague what they think. It is hard to say without more details, so \
         I would just see how it goes."
    )
}

/// Every item's answers, keyed by item id.
fn answers(rubrics: &[Rubric], manifest: &Manifest) -> BTreeMap<String, Vec<Answer>> {
    let mut by_item: BTreeMap<String, Vec<Answer>> = BTreeMap::new();
    for clip in manifest.answers() {
        if let Some(id) = &clip.item_id {
            by_item.entry(id.clone()).or_default().push(Answer {
                label: format!("fixture:{}", clip.file),
                text: clip.reference_text.clone(),
                speech: speech_features(clip),
            });
        }
    }
    for item in rubrics.iter().flat_map(|r| &r.items) {
        by_item.entry(item.id.clone()).or_insert_with(|| {
            vec![
                Answer {
                    label: "synthetic:strong".into(),
                    text: synthetic_strong(item),
                    speech: None,
                },
                Answer {
                    label: "synthetic:weak".into(),
                    text: synthetic_weak(item),
                    speech: None,
                },
            ]
        });
    }
    by_item
}

/// One measured turn (a line of `events.jsonl`).
#[derive(Debug, Clone, Serialize)]
pub struct Turn {
    /// Measured pass, from 0.
    pub iteration: usize,
    /// Rubric id.
    pub discipline: String,
    /// Turn within the pass over this rubric, from 0.
    pub turn: usize,
    /// Item answered.
    pub item: String,
    /// Which answer (see [`Answer::label`]).
    pub answer: String,
    /// Words the scorer counted.
    pub words: usize,
    /// Score fed to the posterior (competency-weighted raw score, rounded, 0..=4).
    pub score: u8,
    /// Ability estimate after the update.
    pub theta: f64,
    /// Its standard error.
    pub se: f64,
    /// `score_answer`, milliseconds.
    pub score_ms: f64,
    /// `AbilityPosterior::update` + `estimate`, milliseconds.
    pub update_ms: f64,
    /// `select_next`, milliseconds.
    pub select_ms: f64,
    /// The three together, milliseconds.
    pub turn_ms: f64,
}

/// Distributions of each stage's time, milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Stages {
    /// Turns measured.
    pub turns: usize,
    /// Whole turn.
    pub turn_ms: Option<Dist>,
    /// Scoring.
    pub score_ms: Option<Dist>,
    /// Posterior update and estimate.
    pub update_ms: Option<Dist>,
    /// Next-item selection.
    pub select_ms: Option<Dist>,
}

impl Stages {
    fn of<'a>(turns: impl Iterator<Item = &'a Turn> + Clone) -> Stages {
        let col = |f: fn(&Turn) -> f64| Dist::of(&turns.clone().map(f).collect::<Vec<_>>());
        Stages {
            turns: turns.clone().count(),
            turn_ms: col(|t| t.turn_ms),
            score_ms: col(|t| t.score_ms),
            update_ms: col(|t| t.update_ms),
            select_ms: col(|t| t.select_ms),
        }
    }
}

/// Figures of one discipline.
#[derive(Debug, Clone, Serialize)]
pub struct DisciplineResult {
    /// Rubric id.
    pub discipline: String,
    /// Items in the bank (each answered once per pass).
    pub items: usize,
    /// Items answered with fixture reference texts.
    pub fixture_items: usize,
    /// Stage timings.
    pub stages: Stages,
}

/// `summary.json` of an `engine` run.
#[derive(Debug, Clone, Serialize)]
pub struct EngineSummary {
    /// Always `engine`.
    pub kind: &'static str,
    /// Start of the run, UTC.
    pub started_utc: String,
    /// End of the run, UTC.
    pub finished_utc: String,
    /// Measured passes.
    pub iterations: usize,
    /// Unmeasured warm-up passes before them.
    pub warmup_iterations: usize,
    /// The p99 budget per turn, milliseconds.
    pub target_p99_ms: f64,
    /// Whether the overall p99 turn time is within the budget.
    pub meets_target: bool,
    /// Where it ran.
    pub machine: Machine,
    /// All disciplines together.
    pub overall: Stages,
    /// Per discipline, by rubric id.
    pub disciplines: Vec<DisciplineResult>,
}

fn ms(from: Instant, to: Instant) -> f64 {
    to.duration_since(from).as_secs_f64() * 1e3
}

/// One pass over a rubric's bank; returns its turns.
fn pass(
    rubric: &Rubric,
    answers: &BTreeMap<String, Vec<Answer>>,
    iteration: usize,
    seed: u64,
) -> Result<Vec<Turn>> {
    let cfg = SelectionConfig::default();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut posterior = AbilityPosterior::new(0.0, 1.0);
    let mut administered: Vec<usize> = Vec::with_capacity(rubric.items.len());
    let none_excluded = |_: usize| false;
    let mut next = select_next(rubric, 0.0, &administered, &none_excluded, &cfg, &mut rng);
    let mut turns = Vec::with_capacity(rubric.items.len());
    while let Some(index) = next {
        let item = &rubric.items[index];
        let choices = answers
            .get(&item.id)
            .filter(|a| !a.is_empty())
            .with_context(|| format!("no answer for item {}", item.id))?;
        let answer = &choices[iteration % choices.len()];
        let weights = rubric
            .competencies
            .get(item.competency)
            .map_or([1.0; 3], |c| c.dimensions);

        let t0 = Instant::now();
        let scored = score_answer(item, &answer.text, answer.speech.as_ref());
        let score = scored
            .weighted(weights)
            .round()
            .clamp(0.0, f64::from(MAX_SCORE)) as u8;
        let t1 = Instant::now();
        posterior.update(&ItemParams::from(item), score);
        let estimate = posterior.estimate();
        let t2 = Instant::now();
        administered.push(index);
        next = select_next(
            rubric,
            estimate.theta,
            &administered,
            &none_excluded,
            &cfg,
            &mut rng,
        );
        let t3 = Instant::now();

        turns.push(Turn {
            iteration,
            discipline: rubric.id.clone(),
            turn: turns.len(),
            item: item.id.clone(),
            answer: answer.label.clone(),
            words: scored.word_count,
            score,
            theta: estimate.theta,
            se: estimate.se,
            score_ms: ms(t0, t1),
            update_ms: ms(t1, t2),
            select_ms: ms(t2, t3),
            turn_ms: ms(t0, t3),
        });
    }
    Ok(turns)
}

/// Runs `iterations` measured passes (after one warm-up) and writes the files into `out`.
pub fn run(paths: &Paths, iterations: usize, out: &Path) -> Result<()> {
    if iterations == 0 {
        bail!("--iterations must be at least 1");
    }
    let started_utc = output::utc_now_rfc3339();
    let rubrics = rubric::load_dir(&paths.rubrics)
        .with_context(|| format!("loading rubrics from {}", paths.rubrics.display()))?;
    if rubrics.is_empty() {
        bail!("no rubric in {}", paths.rubrics.display());
    }
    let manifest = Manifest::load(&paths.fixtures)?;
    let answers = answers(&rubrics, &manifest);

    let mut events = JsonLines::create(out.join("events.jsonl"))?;
    let mut turns: Vec<Turn> = Vec::new();
    let total = WARMUP_PASSES + iterations;
    for round in 0..total {
        let measured = round.checked_sub(WARMUP_PASSES);
        eprintln!(
            "[engine] pass {}/{}{}",
            round + 1,
            total,
            if measured.is_none() { " (warm-up)" } else { "" }
        );
        for (r, rubric) in rubrics.iter().enumerate() {
            let seed = (round as u64) * 1_000 + r as u64;
            let pass_turns = pass(rubric, &answers, measured.unwrap_or(round), seed)?;
            if measured.is_some() {
                for t in &pass_turns {
                    events.write(t)?;
                }
                turns.extend(pass_turns);
            }
        }
    }
    events.finish()?;

    let disciplines: Vec<DisciplineResult> = rubrics
        .iter()
        .map(|r| DisciplineResult {
            discipline: r.id.clone(),
            items: r.items.len(),
            fixture_items: r
                .items
                .iter()
                .filter(|i| {
                    answers
                        .get(&i.id)
                        .is_some_and(|a| a.iter().any(|a| a.label.starts_with("fixture:")))
                })
                .count(),
            stages: Stages::of(turns.iter().filter(|t| t.discipline == r.id)),
        })
        .collect();
    let overall = Stages::of(turns.iter());
    let summary = EngineSummary {
        kind: "engine",
        started_utc,
        finished_utc: output::utc_now_rfc3339(),
        iterations,
        warmup_iterations: WARMUP_PASSES,
        target_p99_ms: TARGET_P99_MS,
        meets_target: overall.turn_ms.is_some_and(|d| d.p99 <= TARGET_P99_MS),
        machine: Machine::detect(),
        overall,
        disciplines,
    };
    let md = markdown(&summary);
    output::write_summary(out, &summary, &md)?;
    eprint!("{md}");
    Ok(())
}

fn dist_cells(d: Option<Dist>) -> [String; 4] {
    match d {
        Some(d) => [
            format!("{:.3}", d.p50),
            format!("{:.3}", d.p95),
            format!("{:.3}", d.p99),
            format!("{:.3}", d.max),
        ],
        None => std::array::from_fn(|_| "–".to_string()),
    }
}

/// `summary.md`: turn time per discipline and per stage.
pub fn markdown(s: &EngineSummary) -> String {
    let mut md = format!(
        "# nextmark-bench engine\n\n\
         Started {}, {} measured pass(es) after {} warm-up, {} turns. A turn = `score_answer` + \
         `AbilityPosterior::update` + `estimate` + `select_next`. Target p99 ≤ {:.1} ms: {}.\n{}\n\n",
        s.started_utc,
        s.iterations,
        s.warmup_iterations,
        s.overall.turns,
        s.target_p99_ms,
        if s.meets_target { "met" } else { "NOT met" },
        s.machine.markdown(),
    );
    let headers = [
        "discipline",
        "items",
        "turns",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
    ];
    let mut rows: Vec<Vec<String>> = s
        .disciplines
        .iter()
        .map(|d| {
            let mut row = vec![
                d.discipline.clone(),
                d.items.to_string(),
                d.stages.turns.to_string(),
            ];
            row.extend(dist_cells(d.stages.turn_ms));
            row
        })
        .collect();
    let mut all = vec![
        "**all**".to_string(),
        s.disciplines
            .iter()
            .map(|d| d.items)
            .sum::<usize>()
            .to_string(),
        s.overall.turns.to_string(),
    ];
    all.extend(dist_cells(s.overall.turn_ms));
    rows.push(all);
    md.push_str(&markdown_table(&headers, &rows));
    md.push_str("\nPer stage, all disciplines:\n\n");
    let stage_rows: Vec<Vec<String>> = [
        ("score_answer", s.overall.score_ms),
        ("update + estimate", s.overall.update_ms),
        ("select_next", s.overall.select_ms),
        ("turn", s.overall.turn_ms),
    ]
    .into_iter()
    .map(|(name, d)| {
        let mut row = vec![name.to_string()];
        row.extend(dist_cells(d));
        row
    })
    .collect();
    md.push_str(&markdown_table(
        &["stage", "p50 ms", "p95 ms", "p99 ms", "max ms"],
        &stage_rows,
    ));
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    #[test]
    fn every_item_gets_an_answer_and_fixtures_are_used() {
        let rubrics = rubric::load_dir(&root().join("rubrics")).unwrap();
        let manifest = Manifest::load(&root().join("audio-fixtures")).unwrap();
        let answers = answers(&rubrics, &manifest);
        for item in rubrics.iter().flat_map(|r| &r.items) {
            let a = &answers[&item.id];
            assert!(!a.is_empty() && a.iter().all(|a| !a.text.trim().is_empty()));
        }
        let chest = &answers["med-chest-pain-ed"];
        assert_eq!(chest.len(), 2);
        assert!(
            chest
                .iter()
                .all(|a| a.label.starts_with("fixture:") && a.speech.is_some())
        );
    }

    #[test]
    fn a_pass_answers_every_item_once() {
        let rubrics = rubric::load_dir(&root().join("rubrics")).unwrap();
        let manifest = Manifest::load(&root().join("audio-fixtures")).unwrap();
        let answers = answers(&rubrics, &manifest);
        let r = &rubrics[0];
        let turns = pass(r, &answers, 0, 7).unwrap();
        assert_eq!(turns.len(), r.items.len());
        let mut items: Vec<&str> = turns.iter().map(|t| t.item.as_str()).collect();
        items.sort_unstable();
        items.dedup();
        assert_eq!(items.len(), r.items.len());
        assert!(
            turns
                .iter()
                .all(|t| t.score <= MAX_SCORE && t.turn_ms >= 0.0)
        );
    }
}
