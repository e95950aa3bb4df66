//! The adaptive interview as a pure state machine: events in (answers, time), actions out
//! (say this, record that score, finish). Intro and consent → warm-up → adaptively chosen items
//! with up to two follow-up probes each → closing. No clock reads: time is passed in.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::irt::{self, Ability, AbilityPosterior, ItemParams, SelectionConfig};
use crate::rubric::{Dimension, ProbeWhen, Rubric};
use crate::scoring::{AnswerScore, Scorer, SpeechFeatures};
use crate::text::normalize;

/// Interview settings.
#[derive(Debug, Clone, Serialize)]
pub struct InterviewConfig {
    /// Aim to close after this long (seconds).
    pub target_s: f64,
    /// Never run past this (seconds), including the answer in progress.
    pub hard_limit_s: f64,
    /// Ask at least this many items (unless time runs out).
    pub min_items: usize,
    /// Ask at most this many items.
    pub max_items: usize,
    /// Close once the overall ability's standard error is at or below this.
    pub se_target: f64,
    /// Follow-up probes per item.
    pub max_probes_per_item: usize,
    /// Seed: the same seed and answers give the same interview.
    pub seed: u64,
    /// Exposure control and content balancing.
    #[serde(skip)]
    pub selection: SelectionConfig,
    /// Items this applicant saw in earlier attempts.
    pub exclude_items: Vec<String>,
}

impl Default for InterviewConfig {
    fn default() -> Self {
        InterviewConfig {
            target_s: 20.0 * 60.0,
            hard_limit_s: 25.0 * 60.0,
            min_items: 6,
            max_items: 12,
            se_target: 0.35,
            max_probes_per_item: 2,
            seed: 0,
            selection: SelectionConfig::default(),
            exclude_items: Vec::new(),
        }
    }
}

/// Which question is being asked.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Question {
    /// Welcome and consent to the recording.
    Intro,
    /// An unscored opener about the applicant's background.
    Warmup,
    /// A rubric item (index into the rubric's items).
    Item {
        /// Item index.
        item: usize,
    },
    /// A follow-up probe of an item.
    Probe {
        /// Item index.
        item: usize,
        /// Probe index in the item.
        probe: usize,
    },
    /// Goodbye.
    Closing,
}

/// Why the interview ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Ability measured precisely enough.
    PrecisionReached,
    /// The maximum number of items was asked.
    MaxItems,
    /// The ~20 minute target was reached.
    TimeTarget,
    /// The 25 minute hard limit was hit.
    HardLimit,
    /// No eligible item left.
    ItemsExhausted,
    /// The applicant did not consent to the recording.
    ConsentDeclined,
}

/// What the applicant meant, when it is not an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    /// Say the question again.
    Repeat,
    /// Say it differently.
    Clarify,
    /// Skip it ("I don't know").
    Skip,
}

/// Recognises a short reply that asks for repetition, clarification or a skip. Long answers
/// are answers, whatever they contain.
pub fn detect_intent(answer: &str) -> Option<Intent> {
    let text = normalize(answer);
    if text.split(' ').count() > 12 {
        return None;
    }
    const REPEAT: &[&str] = &[
        "repeat the question",
        "repeat that",
        "say that again",
        "can you repeat",
        "could you repeat",
        "pardon",
        "sorry what was the question",
        "come again",
    ];
    const CLARIFY: &[&str] = &[
        "what do you mean",
        "i dont understand",
        "i do not understand",
        "please clarify",
        "could you clarify",
        "can you clarify",
        "rephrase",
        "explain the question",
    ];
    const SKIP: &[&str] = &[
        "i dont know",
        "i do not know",
        "no idea",
        "skip",
        "pass",
        "next question",
        "not sure at all",
        "i have no experience with",
    ];
    let has = |list: &[&str]| list.iter().any(|p| text.contains(p));
    if has(REPEAT) {
        Some(Intent::Repeat)
    } else if has(CLARIFY) {
        Some(Intent::Clarify)
    } else if has(SKIP) {
        Some(Intent::Skip)
    } else {
        None
    }
}

/// Input to the state machine.
#[derive(Debug, Clone)]
pub enum Event {
    /// The applicant joined.
    Start {
        /// Interview clock, seconds.
        at_s: f64,
    },
    /// A complete answer turn (the turn detector decided it ended).
    Answer {
        /// What was said (or typed).
        text: String,
        /// Interview clock when the answer ended, seconds.
        at_s: f64,
        /// Audio features of the answer, when spoken.
        speech: Option<SpeechFeatures>,
        /// Typed rather than spoken (an accommodation, marked in the report).
        typed: bool,
    },
    /// The applicant pressed "repeat the question".
    RepeatRequested {
        /// Interview clock, seconds.
        at_s: f64,
    },
    /// Time passed (checked against the hard limit).
    Tick {
        /// Interview clock, seconds.
        at_s: f64,
    },
}

/// Output of the state machine.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Ask (speak and show) a question.
    Ask {
        /// Which question.
        question: Question,
        /// The words.
        text: String,
        /// 1-based question number in the interview.
        index: usize,
        /// Whether this is a repetition or rephrasing of the current question.
        again: bool,
    },
    /// An item is finished: store its score.
    Scored {
        /// Item id.
        item_id: String,
        /// The result.
        result: Box<ItemResult>,
    },
    /// The interview is over.
    Finish {
        /// Why.
        reason: StopReason,
    },
}

/// One answered turn, for the transcript.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Turn {
    /// The question.
    pub question: Question,
    /// Its text.
    pub question_text: String,
    /// When it was asked.
    pub asked_at_s: f64,
    /// The answer.
    pub answer: String,
    /// When the answer ended.
    pub answered_at_s: f64,
    /// Typed rather than spoken.
    pub typed: bool,
    /// A recognised intent instead of an answer.
    pub intent: Option<Intent>,
}

/// The scored outcome of one item (with its probes).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemResult {
    /// Item index.
    pub item: usize,
    /// Item id.
    pub item_id: String,
    /// The main answer and probe answers, joined.
    pub answer: String,
    /// Probes asked (indices).
    pub probes: Vec<usize>,
    /// Skipped ("I don't know").
    pub skipped: bool,
    /// The score.
    pub score: AnswerScore,
    /// Overall ability after this item.
    pub ability_after: Ability,
}

#[derive(Debug, Clone)]
struct Current {
    question: Question,
    text: String,
    asked_at_s: f64,
    index: usize,
}

#[derive(Debug, Clone)]
struct OpenItem {
    answers: Vec<String>,
    probes: Vec<usize>,
    speech: Option<SpeechFeatures>,
}

/// Interview phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Not started.
    NotStarted,
    /// Waiting for consent.
    Intro,
    /// Warm-up question.
    Warmup,
    /// Scored items.
    Items,
    /// Closing said; finished.
    Finished,
}

/// The interview state machine for one applicant.
#[derive(Debug)]
pub struct Interview<'r> {
    rubric: &'r Rubric,
    config: InterviewConfig,
    rng: ChaCha8Rng,
    scorer: Scorer,
    phase: Phase,
    started_at_s: f64,
    current: Option<Current>,
    open: Option<OpenItem>,
    administered: Vec<usize>,
    excluded: Vec<bool>,
    overall: AbilityPosterior,
    dimensions: [AbilityPosterior; 3],
    questions_asked: usize,
    turns: Vec<Turn>,
    results: Vec<ItemResult>,
    stop: Option<StopReason>,
    /// Time spent scoring and selecting during the last event, for latency metrics only (never
    /// used in a decision, so the machine stays deterministic).
    timings: StepTimings,
}

/// Where the last event's compute went (instrumentation; decisions never read clocks).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepTimings {
    /// Scoring answers (including probe decisions).
    pub scoring: std::time::Duration,
    /// Choosing the next item.
    pub selection: std::time::Duration,
}

/// The texts the interviewer says that are not rubric items.
pub mod scripts {
    /// Welcome and consent.
    pub fn intro(discipline: &str) -> String {
        format!(
            "Hello, and welcome to your Nextmark screening interview for {discipline}. \
             It takes about twenty minutes. I will ask questions about your field and adapt \
             them to your answers; there are no trick questions. Take your time, pauses to \
             think are fine, and say \"that's my answer\" or press the button when you are done. \
             The interview is recorded and reviewed by a person. Do you agree to continue?"
        )
    }

    /// When consent is declined.
    pub const DECLINED: &str = "Understood. We will not record anything further. You can \
        come back to this link at any time within its validity if you change your mind. Goodbye.";

    /// Goodbye.
    pub const CLOSING: &str = "Thank you, that completes the interview. A reviewer will \
        read your answers, and you will hear from us within 48 hours of completing both the \
        interview and the written case study. You can close this page now.";

    /// Transition after a skipped question.
    pub const SKIPPED: &str = "No problem, let's move on.";
}

impl<'r> Interview<'r> {
    /// A new interview over `rubric`.
    pub fn new(rubric: &'r Rubric, config: InterviewConfig) -> Self {
        let excluded = rubric
            .items
            .iter()
            .map(|i| config.exclude_items.iter().any(|x| x == &i.id))
            .collect();
        Interview {
            rubric,
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            config,
            scorer: Scorer::new(),
            phase: Phase::NotStarted,
            started_at_s: 0.0,
            current: None,
            open: None,
            administered: Vec::new(),
            excluded,
            overall: AbilityPosterior::new(0.0, 1.0),
            dimensions: [
                AbilityPosterior::new(0.0, 1.0),
                AbilityPosterior::new(0.0, 1.0),
                AbilityPosterior::new(0.0, 1.0),
            ],
            questions_asked: 0,
            turns: Vec::new(),
            results: Vec::new(),
            stop: None,
            timings: StepTimings::default(),
        }
    }

    /// The rubric.
    pub fn rubric(&self) -> &'r Rubric {
        self.rubric
    }

    /// Where the last [`Interview::handle`] spent its compute (for metrics).
    pub fn last_timings(&self) -> StepTimings {
        self.timings
    }

    /// Current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether the interview is over.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    /// Why it ended.
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.stop
    }

    /// The transcript so far.
    pub fn turns(&self) -> &[Turn] {
        &self.turns
    }

    /// Scored items so far.
    pub fn results(&self) -> &[ItemResult] {
        &self.results
    }

    /// Items asked, in order.
    pub fn administered(&self) -> &[usize] {
        &self.administered
    }

    /// Overall ability estimate.
    pub fn ability(&self) -> Ability {
        self.overall.estimate()
    }

    /// Ability per dimension (knowledge, reasoning, clarity).
    pub fn dimension_abilities(&self) -> [Ability; 3] {
        [
            self.dimensions[0].estimate(),
            self.dimensions[1].estimate(),
            self.dimensions[2].estimate(),
        ]
    }

    /// The question waiting for an answer, if any.
    pub fn current_question(&self) -> Option<(&Question, &str)> {
        self.current
            .as_ref()
            .map(|c| (&c.question, c.text.as_str()))
    }

    /// Seconds since the start.
    fn elapsed(&self, at_s: f64) -> f64 {
        at_s - self.started_at_s
    }

    /// Handles one event; returns what to do.
    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        self.timings = StepTimings::default();
        let mut actions = Vec::new();
        if self.phase == Phase::Finished {
            return actions;
        }
        match event {
            Event::Start { at_s } => {
                if self.phase == Phase::NotStarted {
                    self.started_at_s = at_s;
                    self.phase = Phase::Intro;
                    let text = scripts::intro(&self.rubric.name);
                    self.ask(Question::Intro, text, at_s, false, &mut actions);
                }
            }
            Event::Tick { at_s } => {
                if self.elapsed(at_s) >= self.config.hard_limit_s {
                    self.finish_items(at_s, StopReason::HardLimit, &mut actions);
                }
            }
            Event::RepeatRequested { at_s } => self.repeat(at_s, false, &mut actions),
            Event::Answer {
                text,
                at_s,
                speech,
                typed,
            } => self.answer(text, at_s, speech, typed, &mut actions),
        }
        actions
    }

    fn ask(
        &mut self,
        question: Question,
        text: String,
        at_s: f64,
        again: bool,
        actions: &mut Vec<Action>,
    ) {
        if !again {
            self.questions_asked += 1;
        }
        let index = self.questions_asked;
        self.current = Some(Current {
            question: question.clone(),
            text: text.clone(),
            asked_at_s: at_s,
            index,
        });
        actions.push(Action::Ask {
            question,
            text,
            index,
            again,
        });
    }

    fn repeat(&mut self, at_s: f64, rephrase: bool, actions: &mut Vec<Action>) {
        let Some(current) = self.current.clone() else {
            return;
        };
        let text = match (&current.question, rephrase) {
            (Question::Item { item }, true) => self.rubric.items[*item].rephrasing.clone(),
            _ => current.text.clone(),
        };
        self.current = Some(Current {
            asked_at_s: at_s,
            ..current.clone()
        });
        actions.push(Action::Ask {
            question: current.question,
            text,
            index: current.index,
            again: true,
        });
    }

    fn record_turn(&mut self, answer: &str, at_s: f64, typed: bool, intent: Option<Intent>) {
        if let Some(c) = &self.current {
            self.turns.push(Turn {
                question: c.question.clone(),
                question_text: c.text.clone(),
                asked_at_s: c.asked_at_s,
                answer: answer.to_string(),
                answered_at_s: at_s,
                typed,
                intent,
            });
        }
    }

    fn answer(
        &mut self,
        text: String,
        at_s: f64,
        speech: Option<SpeechFeatures>,
        typed: bool,
        actions: &mut Vec<Action>,
    ) {
        let Some(current) = self.current.clone() else {
            return;
        };
        let over_limit = self.elapsed(at_s) >= self.config.hard_limit_s;
        let intent = if over_limit {
            None
        } else {
            detect_intent(&text)
        };
        self.record_turn(&text, at_s, typed, intent);
        match current.question {
            Question::Intro => {
                let t = normalize(&text);
                let declined = [
                    "no",
                    "i do not agree",
                    "i dont agree",
                    "i do not consent",
                    "i dont consent",
                    "decline",
                ]
                .iter()
                .any(|p| t == *p || t.starts_with(&format!("{p} ")));
                if declined {
                    self.say_and_finish(
                        scripts::DECLINED.into(),
                        at_s,
                        StopReason::ConsentDeclined,
                        actions,
                    );
                } else if matches!(intent, Some(Intent::Repeat | Intent::Clarify)) {
                    self.repeat(at_s, false, actions);
                } else {
                    self.phase = Phase::Warmup;
                    let warmup = self.rubric.warmup.clone();
                    self.ask(Question::Warmup, warmup, at_s, false, actions);
                }
            }
            Question::Warmup => {
                if matches!(intent, Some(Intent::Repeat | Intent::Clarify)) {
                    self.repeat(at_s, false, actions);
                } else {
                    self.phase = Phase::Items;
                    self.next_item(at_s, actions);
                }
            }
            Question::Item { item } | Question::Probe { item, .. } => {
                if over_limit {
                    self.add_answer(item, &text, speech);
                    self.finish_items(at_s, StopReason::HardLimit, actions);
                    return;
                }
                match intent {
                    Some(Intent::Repeat) => self.repeat(at_s, false, actions),
                    Some(Intent::Clarify) => self.repeat(at_s, true, actions),
                    Some(Intent::Skip) => {
                        let skipped = self.open.as_ref().is_none_or(|o| o.answers.is_empty());
                        self.close_item(skipped, at_s, actions);
                        self.next_item(at_s, actions);
                    }
                    None => {
                        self.add_answer(item, &text, speech);
                        if !self.maybe_probe(item, at_s, actions) {
                            self.close_item(false, at_s, actions);
                            self.next_item(at_s, actions);
                        }
                    }
                }
            }
            Question::Closing => {}
        }
    }

    fn add_answer(&mut self, item: usize, text: &str, speech: Option<SpeechFeatures>) {
        let _ = item;
        let open = self.open.get_or_insert_with(|| OpenItem {
            answers: Vec::new(),
            probes: Vec::new(),
            speech: None,
        });
        open.answers.push(text.to_string());
        open.speech = match (open.speech.take(), speech) {
            (Some(mut a), Some(b)) => {
                a.duration_s += b.duration_s;
                a.speech_s += b.speech_s;
                a.words += b.words;
                a.pauses.extend(b.pauses);
                Some(a)
            }
            (a, b) => a.or(b),
        };
    }

    /// Asks a follow-up when the answer so far misses a key concept, is shallow or unclear.
    fn maybe_probe(&mut self, item: usize, at_s: f64, actions: &mut Vec<Action>) -> bool {
        let Some(open) = &self.open else { return false };
        if open.probes.len() >= self.config.max_probes_per_item {
            return false;
        }
        // No probe when the remaining time cannot hold another answer.
        let it = &self.rubric.items[item];
        if self.elapsed(at_s) + it.expected_seconds.0 >= self.config.hard_limit_s {
            return false;
        }
        let combined = open.answers.join(" ");
        let speech = open.speech.clone();
        let used = open.probes.clone();
        let timer = std::time::Instant::now();
        let score = self.scorer.score(it, &combined, speech.as_ref());
        self.timings.scoring += timer.elapsed();
        let unused = |when: ProbeWhen, concept: Option<usize>| {
            it.probes.iter().enumerate().position(|(i, p)| {
                p.when == when && !used.contains(&i) && (concept.is_none() || p.concept == concept)
            })
        };
        let mut choice = None;
        for &missing in &score.concepts_missing {
            if let Some(p) = unused(ProbeWhen::MissingConcept, Some(missing)) {
                // Probe only for important concepts, not every minor omission.
                if it.concepts[missing].weight >= 1.5 || score.coverage < 0.5 {
                    choice = Some(p);
                    break;
                }
            }
        }
        if choice.is_none() && score.shallow {
            choice = unused(ProbeWhen::Shallow, None);
        }
        if choice.is_none() && score.unclear {
            choice = unused(ProbeWhen::Unclear, None);
        }
        let Some(probe) = choice else { return false };
        if let Some(open) = self.open.as_mut() {
            open.probes.push(probe);
        }
        let text = it.probes[probe].text.clone();
        self.ask(Question::Probe { item, probe }, text, at_s, false, actions);
        true
    }

    /// Scores the open item as a whole and updates the ability estimates once.
    fn close_item(&mut self, skipped: bool, _at_s: f64, actions: &mut Vec<Action>) {
        let Some(current) = &self.current else { return };
        let item = match current.question {
            Question::Item { item } | Question::Probe { item, .. } => item,
            _ => return,
        };
        let open = self.open.take().unwrap_or(OpenItem {
            answers: Vec::new(),
            probes: Vec::new(),
            speech: None,
        });
        let it = &self.rubric.items[item];
        let answer = open.answers.join(" ");
        let timer = std::time::Instant::now();
        let score = self.scorer.score(it, &answer, open.speech.as_ref());
        self.timings.scoring += timer.elapsed();
        let params = ItemParams::from(it);
        let comp = &self.rubric.competencies[it.competency];
        for d in Dimension::ALL {
            let s = if skipped { 0 } else { score.dimension(d).score };
            self.dimensions[d.index()].update(&params, s);
        }
        let overall_score = if skipped {
            0
        } else {
            score.weighted(comp.dimensions).round().clamp(0.0, 4.0) as u8
        };
        self.overall.update(&params, overall_score);
        let result = ItemResult {
            item,
            item_id: it.id.clone(),
            answer,
            probes: open.probes,
            skipped,
            score,
            ability_after: self.overall.estimate(),
        };
        self.results.push(result.clone());
        actions.push(Action::Scored {
            item_id: it.id.clone(),
            result: Box::new(result),
        });
    }

    fn next_item(&mut self, at_s: f64, actions: &mut Vec<Action>) {
        let elapsed = self.elapsed(at_s);
        let ability = self.overall.estimate();
        let n = self.administered.len();
        let reason = if n >= self.config.max_items {
            Some(StopReason::MaxItems)
        } else if elapsed >= self.config.target_s {
            Some(StopReason::TimeTarget)
        } else if n >= self.config.min_items && ability.se <= self.config.se_target {
            Some(StopReason::PrecisionReached)
        } else {
            None
        };
        if let Some(reason) = reason {
            self.say_and_finish(scripts::CLOSING.into(), at_s, reason, actions);
            return;
        }
        let excluded = self.excluded.clone();
        let limit = self.config.hard_limit_s - elapsed;
        let items = &self.rubric.items;
        // Items whose typical answer would not fit before the hard limit are not started.
        let ineligible = |i: usize| excluded[i] || items[i].expected_seconds.0 > limit;
        let timer = std::time::Instant::now();
        let next = irt::select_next(
            self.rubric,
            ability.theta,
            &self.administered,
            &ineligible,
            &self.config.selection,
            &mut self.rng,
        );
        self.timings.selection += timer.elapsed();
        match next {
            Some(item) => {
                self.administered.push(item);
                let text = items[item].prompt.clone();
                self.ask(Question::Item { item }, text, at_s, false, actions);
            }
            None => self.say_and_finish(
                scripts::CLOSING.into(),
                at_s,
                StopReason::ItemsExhausted,
                actions,
            ),
        }
    }

    fn finish_items(&mut self, at_s: f64, reason: StopReason, actions: &mut Vec<Action>) {
        if self.open.is_some() {
            self.close_item(false, at_s, actions);
        }
        self.say_and_finish(scripts::CLOSING.into(), at_s, reason, actions);
    }

    fn say_and_finish(
        &mut self,
        text: String,
        at_s: f64,
        reason: StopReason,
        actions: &mut Vec<Action>,
    ) {
        self.ask(Question::Closing, text, at_s, false, actions);
        self.current = None;
        self.phase = Phase::Finished;
        self.stop = Some(reason);
        actions.push(Action::Finish { reason });
    }
}

/// Every fixed text the interviewer can say in an interview over `rubric`, each once, in the
/// order an interview meets them: the intro, the warm-up, each item's prompt, rephrasing and
/// probes, then the closing, consent-declined and skip phrases. Repetitions say one of these
/// again, so this is everything a speech cache has to render before anyone joins.
pub fn spoken_texts(rubric: &Rubric) -> Vec<String> {
    let mut texts = vec![scripts::intro(&rubric.name), rubric.warmup.clone()];
    for item in &rubric.items {
        texts.push(item.prompt.clone());
        texts.push(item.rephrasing.clone());
        texts.extend(item.probes.iter().map(|p| p.text.clone()));
    }
    texts.extend([scripts::CLOSING, scripts::DECLINED, scripts::SKIPPED].map(String::from));
    let mut seen = std::collections::HashSet::new();
    texts.retain(|t| seen.insert(t.clone()));
    texts
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn rubric() -> Rubric {
        Rubric::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../rubrics/medicine.toml"))
            .unwrap()
    }

    fn asked(actions: &[Action]) -> Option<(Question, String)> {
        actions.iter().find_map(|a| match a {
            Action::Ask { question, text, .. } => Some((question.clone(), text.clone())),
            _ => None,
        })
    }

    #[test]
    fn intents_are_recognised_only_in_short_replies() {
        assert_eq!(
            detect_intent("Sorry, could you repeat the question?"),
            Some(Intent::Repeat)
        );
        assert_eq!(
            detect_intent("What do you mean by that?"),
            Some(Intent::Clarify)
        );
        assert_eq!(detect_intent("Honestly, I don't know."), Some(Intent::Skip));
        assert_eq!(
            detect_intent(
                "I would order an ECG, and if I don't know the troponin yet I would repeat it in three hours"
            ),
            None
        );
    }

    #[test]
    fn walks_intro_warmup_items_probes_and_closing() {
        let r = rubric();
        let mut iv = Interview::new(
            &r,
            InterviewConfig {
                seed: 7,
                ..InterviewConfig::default()
            },
        );
        let a = iv.handle(Event::Start { at_s: 0.0 });
        assert!(matches!(asked(&a), Some((Question::Intro, _))));
        let a = iv.handle(Event::Answer {
            text: "Yes, I agree.".into(),
            at_s: 10.0,
            speech: None,
            typed: false,
        });
        assert!(matches!(asked(&a), Some((Question::Warmup, _))));
        let a = iv.handle(Event::Answer {
            text: "I am an internist.".into(),
            at_s: 30.0,
            speech: None,
            typed: false,
        });
        let Some((Question::Item { item }, _)) = asked(&a) else {
            panic!("{a:?}")
        };
        // Repeat and clarify do not count as answers.
        let a = iv.handle(Event::Answer {
            text: "Could you repeat that?".into(),
            at_s: 35.0,
            speech: None,
            typed: false,
        });
        assert!(matches!(&a[..], [Action::Ask { again: true, .. }]));
        let a = iv.handle(Event::Answer {
            text: "What do you mean?".into(),
            at_s: 40.0,
            speech: None,
            typed: false,
        });
        assert!(
            matches!(&a[..], [Action::Ask { again: true, text, .. }] if *text == r.items[item].rephrasing)
        );
        // A vague answer gets a probe; after at most two probes the item is scored.
        let mut t = 60.0;
        let mut probes = 0;
        loop {
            let a = iv.handle(Event::Answer {
                text: "It depends on the situation really.".into(),
                at_s: t,
                speech: None,
                typed: false,
            });
            t += 30.0;
            if a.iter().any(|x| matches!(x, Action::Scored { .. })) {
                break;
            }
            assert!(
                matches!(asked(&a), Some((Question::Probe { .. }, _))),
                "{a:?}"
            );
            probes += 1;
        }
        assert!((1..=2).contains(&probes));
        assert_eq!(iv.results().len(), 1);
    }

    fn run_to_end(seed: u64, answer: &str, exclude: Vec<String>) -> (Vec<usize>, StopReason, f64) {
        let r = rubric();
        let mut iv = Interview::new(
            &r,
            InterviewConfig {
                seed,
                exclude_items: exclude,
                ..InterviewConfig::default()
            },
        );
        iv.handle(Event::Start { at_s: 0.0 });
        let mut t = 0.0;
        for _ in 0..200 {
            if iv.is_finished() {
                break;
            }
            t += 90.0;
            iv.handle(Event::Answer {
                text: answer.into(),
                at_s: t,
                speech: None,
                typed: false,
            });
        }
        (iv.administered().to_vec(), iv.stop_reason().unwrap(), t)
    }

    #[test]
    fn same_seed_same_interview_and_excluded_items_never_asked() {
        let answer = "I would take a history, examine, order an ECG and troponin, give aspirin, and consider dissection and pulmonary embolism because the management differs.";
        let (a, _, _) = run_to_end(3, answer, vec![]);
        let (b, _, _) = run_to_end(3, answer, vec![]);
        assert_eq!(a, b);
        let excluded: Vec<String> = a.iter().map(|&i| rubric().items[i].id.clone()).collect();
        let (c, _, _) = run_to_end(3, answer, excluded.clone());
        assert!(
            c.iter().all(|i| !excluded.contains(&rubric().items[*i].id)),
            "{c:?}"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        #[test]
        fn always_ends_never_repeats_never_passes_the_hard_limit(seed in 0u64..1000, step in 20.0f64..400.0, words in 0usize..60) {
            let r = rubric();
            let cfg = InterviewConfig { seed, ..InterviewConfig::default() };
            let hard = cfg.hard_limit_s;
            let mut iv = Interview::new(&r, cfg);
            iv.handle(Event::Start { at_s: 0.0 });
            let answer = ["troponin ECG aspirin because", "well", "dissection"].iter().cycle().take(words).copied().collect::<Vec<_>>().join(" ");
            let mut t = 0.0;
            let mut n = 0;
            while !iv.is_finished() {
                t += step;
                n += 1;
                proptest::prop_assert!(n < 500, "did not end");
                let ev = if t >= hard { Event::Tick { at_s: t } } else { Event::Answer { text: answer.clone(), at_s: t, speech: None, typed: false } };
                for a in iv.handle(ev) {
                    if let Action::Ask { question: Question::Item { .. }, .. } = a {
                        proptest::prop_assert!(t < hard, "item started after the hard limit");
                    }
                }
            }
            let mut seen = iv.administered().to_vec();
            seen.sort_unstable();
            seen.dedup();
            proptest::prop_assert_eq!(seen.len(), iv.administered().len());
        }
    }

    #[test]
    fn every_asked_text_is_in_spoken_texts() {
        use rand::Rng;
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rubrics");
        let rubrics = crate::rubric::load_dir(&dir).unwrap();
        assert!(!rubrics.is_empty());
        for r in &rubrics {
            let spoken = spoken_texts(r);
            let set: std::collections::HashSet<&str> = spoken.iter().map(String::as_str).collect();
            assert_eq!(set.len(), spoken.len(), "{}: duplicates", r.id);
            // Answers of every kind: key concepts, level descriptors, vague, off-topic, intents.
            let mut pool: Vec<String> = vec![
                "Yes, I agree.".into(),
                "well".into(),
                "It depends on the situation really.".into(),
                "Could you repeat that?".into(),
                "What do you mean?".into(),
                "Honestly, I don't know.".into(),
                "skip".into(),
                "Bananas are yellow and the weather is nice today in the city.".into(),
                String::new(),
            ];
            for it in &r.items {
                pool.push(
                    it.concepts
                        .iter()
                        .map(|c| c.term.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                );
                pool.push(it.levels[4].clone());
                pool.push(it.levels[1].clone());
            }
            let mut asked = std::collections::HashSet::new();
            for seed in 0..30u64 {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let mut iv = Interview::new(
                    r,
                    InterviewConfig {
                        seed,
                        ..InterviewConfig::default()
                    },
                );
                let mut t = 0.0;
                let mut actions = iv.handle(Event::Start { at_s: t });
                for _ in 0..400 {
                    for a in &actions {
                        if let Action::Ask { text, .. } = a {
                            asked.insert(text.clone());
                            assert!(
                                set.contains(text.as_str()),
                                "{} seed {seed}: not in spoken_texts: {text:?}",
                                r.id
                            );
                        }
                    }
                    if iv.is_finished() {
                        break;
                    }
                    t += rng.random_range(5.0..150.0);
                    let roll = rng.random_range(0..100);
                    // Every tenth applicant declines the recording.
                    let event = if roll < 5 {
                        Event::RepeatRequested { at_s: t }
                    } else if roll < 8 {
                        Event::Tick { at_s: t }
                    } else if seed % 10 == 9 && iv.phase() == Phase::Intro {
                        Event::Answer {
                            text: "No".into(),
                            at_s: t,
                            speech: None,
                            typed: false,
                        }
                    } else {
                        let text = pool[rng.random_range(0..pool.len())].clone();
                        Event::Answer {
                            text,
                            at_s: t,
                            speech: None,
                            typed: rng.random_bool(0.1),
                        }
                    };
                    actions = iv.handle(event);
                }
                assert!(iv.is_finished(), "{} seed {seed}: did not end", r.id);
            }
            // The simulation reaches every kind of text, so the check above means something.
            let probes = r
                .items
                .iter()
                .flat_map(|i| &i.probes)
                .filter(|p| asked.contains(&p.text));
            assert!(probes.count() > 0, "{}: no probe asked", r.id);
            assert!(
                r.items.iter().any(|i| asked.contains(&i.rephrasing)),
                "{}: no rephrasing",
                r.id
            );
            assert!(
                asked.contains(scripts::DECLINED) && asked.contains(scripts::CLOSING),
                "{}",
                r.id
            );
        }
    }
}
