//! Answer scoring: the deterministic embedded scorer that turns one transcribed (or typed)
//! answer to a rubric item into 0–4 scores on knowledge, reasoning and clarity, with the
//! evidence behind each point.
//!
//! The scorer reads words, not people: concept coverage (tolerant of transcription errors),
//! red-flag claims, reasoning connectives, specificity, relevance to the question, and
//! clarity from the transcript and the audio timing (speech rate, fillers, restarts, long
//! pauses). It infers no emotion or personality. The same input always gives the same
//! output: nothing is random and no hash-map order reaches the result.
//!
//! Build an [`ItemMatcher`] once per item (or let [`Scorer`] cache them by item id) and
//! score answers against it; [`score_answer`] does both in one call.

mod features;
mod matcher;
mod phonetic;
mod tokens;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::rubric::{Dimension, Item, Severity};
use features::{Marker, is_negator, is_specific, is_stopword};
use matcher::{Hit, Pattern, View};
use tokens::{Token, tokenize};

/// Words per second assumed for typed answers when comparing with `expected_seconds`.
pub const TYPED_WORDS_PER_SECOND: f64 = 2.5;

/// Default dimension weights (knowledge, reasoning, clarity) for [`AnswerScore::overall_raw`];
/// competencies weigh dimensions their own way with [`AnswerScore::weighted`].
pub const DEFAULT_WEIGHTS: [f64; 3] = [0.4, 0.4, 0.2];

/// A concept counts as named when its best match has at least this quality.
const FOUND_QUALITY: f64 = 0.7;
/// Credit for a concept named only with words the question itself used.
const PROMPT_ECHO_CREDIT: f64 = 0.6;
/// Coverage at which the knowledge coverage term saturates.
const FULL_COVERAGE: f64 = 0.65;
/// Answer words copied from the question in a run at least this long earn nothing.
const ECHO_RUN: usize = 5;
/// Speech rate band (words per minute) that sounds fluent.
const GOOD_WPM: (f64, f64) = (110.0, 190.0);

/// Timing features of a spoken answer, from the audio front-end and transcriber.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpeechFeatures {
    /// Length of the answer from its first to its last voiced frame, seconds; compared with
    /// the item's expected length.
    pub duration_s: f64,
    /// Voiced time, seconds (duration minus silences); the base of the speech rate.
    pub speech_s: f64,
    /// Silent gaps of at least one second, as (start, end) seconds; long or many pauses
    /// make an answer harder to follow.
    pub pauses: Vec<(f64, f64)>,
    /// Words the transcriber heard (0: count the transcript instead).
    pub words: usize,
}

/// What a piece of evidence is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceKind {
    /// A key concept the answer names.
    ConceptFound,
    /// A key concept the answer does not name.
    ConceptMissing,
    /// A wrong or dangerous claim.
    RedFlag,
    /// A reasoning move: a cause, a condition, a contrast, a step, a check.
    Reasoning,
    /// A number, unit or named standard.
    Specificity,
    /// Something that helps or hurts how easy the answer is to follow.
    Clarity,
    /// How much of the answer is about the question.
    Relevance,
    /// The answer's length against the item's expected length.
    Length,
}

/// One reason a dimension scored what it did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evidence {
    /// What kind of reason.
    pub kind: EvidenceKind,
    /// The words in the answer that earned or lost the point, the missing concept's term, or
    /// a short description of a measured feature ("172 words per minute").
    pub text: String,
    /// Approximate contribution to the dimension's raw score, in points (+ earned, − lost).
    pub effect: f64,
    /// Byte offsets of `text` in the original answer, when it is a quote.
    pub span: Option<(usize, usize)>,
}

/// The score on one dimension.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DimensionScore {
    /// Which dimension.
    pub dimension: Dimension,
    /// Rounded score, 0..=4, for the item response model.
    pub score: u8,
    /// Continuous score, 0..4, for reports and tie-breaking.
    pub raw: f64,
    /// How much to trust the score, 0..1: low for very short answers and for answers whose
    /// evidence rests on inexact (possibly mis-transcribed) matches.
    pub confidence: f64,
    /// The reasons, grouped by kind; quotes in answer order, missing concepts heaviest first.
    pub evidence: Vec<Evidence>,
}

/// The full score of one answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnswerScore {
    /// Scores indexed by [`Dimension::index`].
    pub dimensions: [DimensionScore; 3],
    /// Indices into the item's concepts that the answer names, in concept order.
    pub concepts_found: Vec<usize>,
    /// Indices of concepts not named, heaviest first: what a follow-up probe should ask for.
    pub concepts_missing: Vec<usize>,
    /// Indices into the item's red flags the answer asserts (negated mentions excluded).
    pub red_flags: Vec<usize>,
    /// Words in the answer, hesitation sounds excluded.
    pub word_count: usize,
    /// Weighted share of the item's concepts named, 0..1.
    pub coverage: f64,
    /// Share of the answer that is about the question, 0..1 (low: off-topic).
    pub relevance: f64,
    /// Too short for the item, or general talk: few concepts and little reasoning.
    pub shallow: bool,
    /// Hard to follow (clarity below 2).
    pub unclear: bool,
    /// Weighted mean of the raw dimension scores with [`DEFAULT_WEIGHTS`].
    pub overall_raw: f64,
}

impl AnswerScore {
    /// The score of one dimension.
    pub fn dimension(&self, d: Dimension) -> &DimensionScore {
        &self.dimensions[d.index()]
    }

    /// Weighted mean of the raw dimension scores (weights need not sum to 1).
    pub fn weighted(&self, weights: [f64; 3]) -> f64 {
        let total: f64 = weights.iter().sum();
        if total <= 0.0 {
            return 0.0;
        }
        self.dimensions
            .iter()
            .zip(weights)
            .map(|(d, w)| d.raw * w)
            .sum::<f64>()
            / total
    }
}

/// A concept compiled for matching.
#[derive(Debug, Clone)]
struct ConceptMatcher {
    /// Canonical term, quoted when the concept is missing.
    term: String,
    /// Importance, for coverage.
    weight: f64,
    /// The term and each alias.
    patterns: Vec<Pattern>,
}

/// A red flag compiled for matching.
#[derive(Debug, Clone)]
struct RedFlagMatcher {
    /// Major caps knowledge at 1; minor costs a fraction of a point.
    severity: Severity,
    /// Each phrasing of the claim.
    patterns: Vec<Pattern>,
}

/// An item compiled for scoring: its concept and red-flag phrases as token patterns, its
/// vocabulary for relevance, and its prompt for echo detection. Build once per item.
#[derive(Debug, Clone)]
pub struct ItemMatcher {
    /// The item it was built from.
    item_id: String,
    /// Hash of the item's scoring-relevant text, so a cache notices an edited item.
    fingerprint: u64,
    /// In item order: indices match `Item::concepts`.
    concepts: Vec<ConceptMatcher>,
    /// In item order: indices match `Item::red_flags`.
    red_flags: Vec<RedFlagMatcher>,
    /// The question's word stems, to ignore answers that read it back.
    prompt_stems: Vec<String>,
    /// Content-word stems of everything the item says, for relevance.
    vocab: BTreeSet<String>,
    /// Expected spoken length (min, max), seconds.
    expected_seconds: (f64, f64),
}

/// FNV-1a over the parts of an item the matcher depends on, to notice a changed item.
fn fingerprint(item: &Item) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |s: &str| {
        for b in s.bytes().chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(&item.id);
    eat(&item.prompt);
    eat(&item.rephrasing);
    for l in &item.levels {
        eat(l);
    }
    for c in &item.concepts {
        eat(&c.term);
        eat(&c.weight.to_bits().to_string());
        for a in &c.aliases {
            eat(a);
        }
    }
    for f in &item.red_flags {
        eat(&f.claim);
        for p in &f.phrases {
            eat(p);
        }
    }
    eat(&item.expected_seconds.0.to_bits().to_string());
    eat(&item.expected_seconds.1.to_bits().to_string());
    h
}

/// Content-word stems of a text, for the relevance vocabulary.
fn content_stems(text: &str, into: &mut BTreeSet<String>) {
    for t in tokenize(text) {
        if is_content(&t) {
            into.insert(t.stem);
        }
    }
}

/// A word that can carry topic: not a stopword, not a number, at least 3 letters.
fn is_content(t: &Token) -> bool {
    !t.number && t.text.chars().count() >= 3 && !is_stopword(&t.text)
}

impl ItemMatcher {
    /// Compiles an item's phrases.
    pub fn new(item: &Item) -> ItemMatcher {
        let prompt_toks = tokenize(&item.prompt);
        let prompt_view = View::new(&prompt_toks);
        let compile = |phrases: &mut dyn Iterator<Item = &String>| -> Vec<Pattern> {
            let mut seen = BTreeSet::new();
            phrases
                .filter(|p| seen.insert(p.to_lowercase()))
                .filter_map(|p| Pattern::new(p))
                .map(|mut p| {
                    p.in_prompt = !p.find(&prompt_view).is_empty();
                    p
                })
                .collect()
        };
        let concepts = item
            .concepts
            .iter()
            .map(|c| ConceptMatcher {
                term: c.term.clone(),
                weight: c.weight.max(0.0),
                patterns: compile(&mut std::iter::once(&c.term).chain(&c.aliases)),
            })
            .collect();
        let red_flags = item
            .red_flags
            .iter()
            .map(|f| RedFlagMatcher {
                severity: f.severity,
                patterns: compile(&mut f.phrases.iter()),
            })
            .collect();
        let mut vocab = BTreeSet::new();
        content_stems(&item.prompt, &mut vocab);
        content_stems(&item.rephrasing, &mut vocab);
        for l in &item.levels {
            content_stems(l, &mut vocab);
        }
        for c in &item.concepts {
            content_stems(&c.term, &mut vocab);
            for a in &c.aliases {
                content_stems(a, &mut vocab);
            }
        }
        for f in &item.red_flags {
            content_stems(&f.claim, &mut vocab);
            for p in &f.phrases {
                content_stems(p, &mut vocab);
            }
        }
        for p in &item.probes {
            content_stems(&p.text, &mut vocab);
        }
        ItemMatcher {
            item_id: item.id.clone(),
            fingerprint: fingerprint(item),
            concepts,
            red_flags,
            prompt_stems: prompt_view.toks.iter().map(|t| t.stem.clone()).collect(),
            vocab,
            expected_seconds: item.expected_seconds,
        }
    }

    /// The id of the item this matcher was built from.
    pub fn item_id(&self) -> &str {
        &self.item_id
    }

    /// Scores one answer. `speech` is `None` for typed answers.
    pub fn score(&self, answer: &str, speech: Option<&SpeechFeatures>) -> AnswerScore {
        let toks = tokenize(answer);
        let view = View::new(&toks);
        Analysis::new(self, answer, &toks, &view, speech).into_score()
    }

    /// Marks answer positions inside a run of [`ECHO_RUN`] or more words copied from the
    /// question.
    fn echo_mask(&self, view: &View<'_>) -> Vec<bool> {
        let n = view.toks.len();
        let m = self.prompt_stems.len();
        let mut mask = vec![false; n];
        let mut prev = vec![0usize; m + 1];
        let mut cur = vec![0usize; m + 1];
        for i in 0..n {
            for j in 0..m {
                cur[j + 1] = if view.toks[i].stem == self.prompt_stems[j] {
                    prev[j] + 1
                } else {
                    0
                };
                let run = cur[j + 1];
                if run >= ECHO_RUN {
                    for flag in &mut mask[i + 1 - run..=i] {
                        *flag = true;
                    }
                }
            }
            std::mem::swap(&mut prev, &mut cur);
        }
        mask
    }
}

/// Scores an answer against an item, compiling the item's matcher for this call only; use
/// [`Scorer`] or [`ItemMatcher`] to score many answers to the same item.
pub fn score_answer(item: &Item, answer: &str, speech: Option<&SpeechFeatures>) -> AnswerScore {
    ItemMatcher::new(item).score(answer, speech)
}

/// Scores answers with compiled item matchers cached by item id (rebuilt if the item with
/// that id has changed).
#[derive(Debug, Default, Clone)]
pub struct Scorer {
    /// Compiled matchers by item id.
    matchers: BTreeMap<String, ItemMatcher>,
}

impl Scorer {
    /// An empty cache.
    pub fn new() -> Scorer {
        Scorer::default()
    }

    /// The compiled matcher for an item, built on first use.
    pub fn matcher(&mut self, item: &Item) -> &ItemMatcher {
        let fp = fingerprint(item);
        let stale = self
            .matchers
            .get(&item.id)
            .is_none_or(|m| m.fingerprint != fp);
        if stale {
            self.matchers
                .insert(item.id.clone(), ItemMatcher::new(item));
        }
        &self.matchers[&item.id]
    }

    /// Scores one answer to an item.
    pub fn score(
        &mut self,
        item: &Item,
        answer: &str,
        speech: Option<&SpeechFeatures>,
    ) -> AnswerScore {
        self.matcher(item).score(answer, speech)
    }

    /// Number of cached items.
    pub fn len(&self) -> usize {
        self.matchers.len()
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.matchers.is_empty()
    }
}

/// A concept's best match in the answer.
struct ConceptHit {
    /// Index into the item's concepts.
    index: usize,
    /// Where, and how exactly, it matched.
    hit: Hit,
    /// Quality, discounted when the words come from the question.
    credit: f64,
}

/// Everything measured about one answer, before it is mapped to scores.
struct Analysis<'a> {
    /// The compiled item.
    m: &'a ItemMatcher,
    /// The original text, for quotes.
    answer: &'a str,
    /// Answer words without hesitation sounds (what phrases match against).
    view: &'a View<'a>,
    /// All answer tokens (what fillers, restarts and markers are found in).
    toks: &'a [Token],
    /// Audio timing, for spoken answers.
    speech: Option<&'a SpeechFeatures>,
    /// Words, hesitation sounds excluded.
    words: usize,
    /// Best match of each concept named.
    found: Vec<ConceptHit>,
    /// Weighted share of concepts named, 0..1.
    coverage: f64,
    /// Red flags asserted: (index, first match).
    flags: Vec<(usize, Hit)>,
    /// Reasoning connectives.
    markers: Vec<features::MarkerHit>,
    /// Fillers, as token ranges.
    fillers: Vec<features::Span>,
    /// Repeated words, as token ranges.
    restarts: Vec<features::Span>,
    /// Words per sentence (empty for unpunctuated text).
    sentences: Vec<usize>,
    /// Spans of distinct numbers, units and acronyms.
    specific: Vec<(usize, usize)>,
    /// How much of the answer is about the question, 0..1.
    relevance: f64,
    /// Share of content words in the item's vocabulary.
    content_share: f64,
    /// Answer length over the expected minimum.
    length_ratio: f64,
    /// `length_ratio` capped at 1 and softened: the share of length-dependent credit kept.
    length_factor: f64,
}

fn clamp4(x: f64) -> f64 {
    if x.is_finite() {
        x.clamp(0.0, 4.0)
    } else {
        0.0
    }
}

fn ev(
    kind: EvidenceKind,
    text: impl Into<String>,
    effect: f64,
    span: Option<(usize, usize)>,
) -> Evidence {
    Evidence {
        kind,
        text: text.into(),
        effect: (effect * 1000.0).round() / 1000.0,
        span,
    }
}

impl<'a> Analysis<'a> {
    fn new(
        m: &'a ItemMatcher,
        answer: &'a str,
        toks: &'a [Token],
        view: &'a View<'a>,
        speech: Option<&'a SpeechFeatures>,
    ) -> Analysis<'a> {
        let words = view.toks.len();
        let echo = m.echo_mask(view);
        let echoed = |h: &Hit| (h.start..h.end).all(|i| echo[i]);

        let mut found = Vec::new();
        for (index, c) in m.concepts.iter().enumerate() {
            let mut best: Option<ConceptHit> = None;
            for p in &c.patterns {
                for hit in p.find(view) {
                    if echoed(&hit) || hit.quality < FOUND_QUALITY {
                        continue;
                    }
                    let credit = hit.quality * if p.in_prompt { PROMPT_ECHO_CREDIT } else { 1.0 };
                    if best.as_ref().is_none_or(|b| credit > b.credit) {
                        best = Some(ConceptHit { index, hit, credit });
                    }
                }
            }
            found.extend(best);
        }
        let total_weight: f64 = m.concepts.iter().map(|c| c.weight).sum();
        let coverage = if total_weight > 0.0 {
            found
                .iter()
                .map(|f| m.concepts[f.index].weight * f.credit)
                .fold(0.0, |a, b| a + b)
                / total_weight
        } else {
            0.0
        };

        let mut flags = Vec::new();
        for (index, f) in m.red_flags.iter().enumerate() {
            let hit = f
                .patterns
                .iter()
                .flat_map(|p| p.find(view))
                .filter(|h| {
                    h.quality >= FOUND_QUALITY
                        && !echoed(h)
                        && !negated(view, h.start)
                        && !refuted_after(view, h.end)
                })
                .min_by_key(|h| h.start);
            if let Some(hit) = hit {
                flags.push((index, hit));
            }
        }

        let markers = features::reasoning_markers(toks);
        let fillers = features::fillers(toks);
        let restarts = features::restarts(toks);
        let sentences = features::sentence_lengths(toks);
        let mut seen = BTreeSet::new();
        let specific = view
            .toks
            .iter()
            .filter(|t| is_specific(t) && seen.insert(t.text.clone()))
            .map(|t| t.span)
            .collect();

        let content: Vec<&&Token> = view.toks.iter().filter(|t| is_content(t)).collect();
        let on_topic = content.iter().filter(|t| m.vocab.contains(&t.stem)).count();
        let content_share = if content.is_empty() {
            0.0
        } else {
            on_topic as f64 / content.len() as f64
        };
        let relevance = if content.is_empty() {
            0.0
        } else {
            ((content_share - 0.08) / 0.20)
                .clamp(0.0, 1.0)
                .max((coverage * 3.0).min(1.0))
        };

        let typed_seconds = words as f64 / TYPED_WORDS_PER_SECOND;
        let seconds = speech
            .map(|s| s.duration_s)
            .filter(|d| *d > 0.0)
            .unwrap_or(typed_seconds);
        let length_ratio = if m.expected_seconds.0 > 0.0 {
            seconds / m.expected_seconds.0
        } else {
            1.0
        };
        let length_factor = length_ratio.clamp(0.0, 1.0).powf(0.6);

        Analysis {
            m,
            answer,
            view,
            toks,
            speech,
            words,
            found,
            coverage,
            flags,
            markers,
            fillers,
            restarts,
            sentences,
            specific,
            relevance,
            content_share,
            length_ratio,
            length_factor,
        }
    }

    fn quote(&self, span: (usize, usize)) -> String {
        self.answer
            .get(span.0..span.1)
            .unwrap_or_default()
            .to_string()
    }

    fn hit_evidence(&self, kind: EvidenceKind, hit: &Hit, effect: f64) -> Evidence {
        let span = self.view.span(hit.start, hit.end);
        ev(kind, self.quote(span), effect, Some(span))
    }

    fn token_span(&self, start: usize, end: usize) -> (usize, usize) {
        (self.toks[start].span.0, self.toks[end - 1].span.1)
    }

    fn coverage_curve(&self) -> f64 {
        (self.coverage / FULL_COVERAGE).min(1.0).powf(0.9)
    }

    fn specificity(&self) -> f64 {
        (self.specific.len() as f64 / 6.0).min(1.0)
    }

    fn knowledge(&self) -> (f64, Vec<Evidence>) {
        let mut evidence = Vec::new();
        let total: f64 = self
            .m
            .concepts
            .iter()
            .map(|c| c.weight)
            .sum::<f64>()
            .max(1e-9);
        let per_weight = 4.0 * 0.85 / (total * FULL_COVERAGE);
        for f in &self.found {
            let w = self.m.concepts[f.index].weight;
            evidence.push(self.hit_evidence(
                EvidenceKind::ConceptFound,
                &f.hit,
                w * f.credit * per_weight,
            ));
        }
        for i in self.missing() {
            let c = &self.m.concepts[i];
            evidence.push(ev(
                EvidenceKind::ConceptMissing,
                c.term.clone(),
                -c.weight * per_weight,
                None,
            ));
        }
        let spec = self.specificity();
        let spec_points = 4.0 * 0.15 * spec;
        let shown = self.specific.len().min(6);
        for &span in self.specific.iter().take(shown) {
            evidence.push(ev(
                EvidenceKind::Specificity,
                self.quote(span),
                spec_points / shown as f64,
                Some(span),
            ));
        }
        let mut k = 4.0 * (0.85 * self.coverage_curve() + 0.15 * spec);
        let length_mult = 0.7 + 0.3 * self.length_factor;
        if length_mult < 0.999 {
            evidence.push(ev(
                EvidenceKind::Length,
                self.length_text(),
                k * (length_mult - 1.0),
                None,
            ));
        }
        k *= length_mult;
        if self.relevance < 0.999 {
            evidence.push(ev(
                EvidenceKind::Relevance,
                self.relevance_text(),
                k * (self.relevance - 1.0),
                None,
            ));
        }
        k *= self.relevance;
        for (i, hit) in &self.flags {
            let before = k;
            match self.m.red_flags[*i].severity {
                Severity::Major => k = k.min(1.0),
                Severity::Minor => k = (k - 0.6).max(0.0),
            }
            evidence.push(self.hit_evidence(EvidenceKind::RedFlag, hit, k - before));
        }
        (clamp4(k), evidence)
    }

    fn missing(&self) -> Vec<usize> {
        let mut missing: Vec<usize> = (0..self.m.concepts.len())
            .filter(|i| !self.found.iter().any(|f| f.index == *i))
            .collect();
        missing.sort_by(|a, b| {
            self.m.concepts[*b]
                .weight
                .total_cmp(&self.m.concepts[*a].weight)
                .then(a.cmp(b))
        });
        missing
    }

    fn marker_norm(&self) -> f64 {
        Marker::ALL
            .iter()
            .map(|k| {
                let n = self.markers.iter().filter(|h| h.kind == *k).count();
                n.min(2) as f64 / 2.0
            })
            .sum::<f64>()
            / Marker::ALL.len() as f64
    }

    fn marker_kinds(&self) -> usize {
        Marker::ALL
            .iter()
            .filter(|k| self.markers.iter().any(|h| h.kind == **k))
            .count()
    }

    fn reasoning(&self) -> (f64, Vec<Evidence>) {
        let mut evidence = Vec::new();
        let norm = self.marker_norm();
        let marker_points = 4.0 * 0.4 * norm;
        // One piece of evidence per marker kind and count, up to two of each (what scores).
        let mut shown: Vec<&features::MarkerHit> = Vec::new();
        for k in Marker::ALL {
            shown.extend(self.markers.iter().filter(|h| h.kind == k).take(2));
        }
        shown.sort_by_key(|h| h.start);
        for h in &shown {
            let span = self.token_span(h.start, h.end);
            evidence.push(ev(
                EvidenceKind::Reasoning,
                self.quote(span),
                marker_points / shown.len() as f64,
                Some(span),
            ));
        }
        let cov_points = 4.0 * 0.35 * self.coverage_curve();
        evidence.push(ev(
            EvidenceKind::ConceptFound,
            format!(
                "names {} of {} key concepts",
                self.found.len(),
                self.m.concepts.len()
            ),
            cov_points,
            None,
        ));
        let len_points = 4.0 * 0.25 * self.length_factor;
        if self.length_factor < 0.999 {
            evidence.push(ev(
                EvidenceKind::Length,
                self.length_text(),
                len_points - 1.0,
                None,
            ));
        }
        let mut r = marker_points + cov_points + len_points;
        if self.relevance < 0.999 {
            evidence.push(ev(
                EvidenceKind::Relevance,
                self.relevance_text(),
                r * (self.relevance - 1.0),
                None,
            ));
        }
        r *= self.relevance;
        for (i, hit) in &self.flags {
            let before = r;
            match self.m.red_flags[*i].severity {
                Severity::Major => r = (r - 0.5).clamp(0.0, 2.0),
                Severity::Minor => r = (r - 0.4).max(0.0),
            }
            evidence.push(self.hit_evidence(EvidenceKind::RedFlag, hit, r - before));
        }
        (clamp4(r), evidence)
    }

    fn speech_words(&self) -> usize {
        self.speech
            .map(|s| s.words)
            .filter(|w| *w > 0)
            .unwrap_or(self.words)
    }

    fn clarity(&self) -> (f64, Vec<Evidence>) {
        let mut evidence = Vec::new();
        if self.words == 0 {
            evidence.push(ev(EvidenceKind::Length, self.length_text(), 0.0, None));
            return (0.0, evidence);
        }
        let mut c: f64 = 3.2;
        let words = self.words.max(1) as f64;

        let filler_rate = self.fillers.len() as f64 * 100.0 / words;
        let filler_pen = ((filler_rate - 2.0).max(0.0) * 0.12).min(1.5);
        if filler_pen > 0.0 {
            let n = self.fillers.len().min(6);
            for s in self.fillers.iter().take(n) {
                let span = self.token_span(s.start, s.end);
                evidence.push(ev(
                    EvidenceKind::Clarity,
                    self.quote(span),
                    -filler_pen / n as f64,
                    Some(span),
                ));
            }
        }
        c -= filler_pen;

        let restart_rate = self.restarts.len() as f64 * 100.0 / words;
        let restart_pen = ((restart_rate - 0.5).max(0.0) * 0.3).min(1.0);
        if restart_pen > 0.0 {
            let n = self.restarts.len().min(6);
            for s in self.restarts.iter().take(n) {
                let span = self.token_span(s.start, s.end);
                evidence.push(ev(
                    EvidenceKind::Clarity,
                    self.quote(span),
                    -restart_pen / n as f64,
                    Some(span),
                ));
            }
        }
        c -= restart_pen;

        if !self.sentences.is_empty() {
            let avg = self.sentences.iter().sum::<usize>() as f64 / self.sentences.len() as f64;
            let longest = self.sentences.iter().copied().max().unwrap_or(0);
            let mut pen = ((avg - 28.0).max(0.0) * 0.05).min(1.0);
            if longest > 60 {
                pen += 0.3;
            }
            if avg < 5.0 && self.sentences.len() >= 3 {
                pen += 0.3;
            }
            if pen > 0.0 {
                evidence.push(ev(
                    EvidenceKind::Clarity,
                    format!("sentences average {avg:.0} words, longest {longest}"),
                    -pen,
                    None,
                ));
            }
            c -= pen;
        }

        if let Some(s) = self.speech {
            let base = if s.speech_s > 0.0 {
                s.speech_s
            } else {
                s.duration_s
            };
            if base > 0.0 {
                let wpm = self.speech_words() as f64 * 60.0 / base;
                let dist = if wpm < GOOD_WPM.0 {
                    GOOD_WPM.0 - wpm
                } else if wpm > GOOD_WPM.1 {
                    wpm - GOOD_WPM.1
                } else {
                    0.0
                };
                let pen = (dist / 40.0).min(1.5);
                evidence.push(ev(
                    EvidenceKind::Clarity,
                    format!("{wpm:.0} words per minute"),
                    -pen,
                    None,
                ));
                c -= pen;
            }
            if s.duration_s > 0.0 {
                let paused: f64 = s.pauses.iter().map(|(a, b)| (b - a).max(0.0)).sum();
                let share = paused / s.duration_s;
                let long = s.pauses.iter().filter(|(a, b)| b - a >= 4.0).count();
                let pen = ((share - 0.2).max(0.0) * 4.0).min(1.0) + (long as f64 * 0.15).min(0.6);
                if pen > 0.0 {
                    evidence.push(ev(
                        EvidenceKind::Clarity,
                        format!(
                            "pauses fill {:.0}% of the answer, {long} of 4 s or more",
                            share * 100.0
                        ),
                        -pen,
                        None,
                    ));
                }
                c -= pen;
            }
        }

        let steps = self
            .markers
            .iter()
            .filter(|h| h.kind == Marker::Sequence)
            .count();
        let links = self
            .markers
            .iter()
            .any(|h| matches!(h.kind, Marker::Causal | Marker::Contrast));
        let mut bonus = 0.0;
        if steps >= 2 {
            bonus += 0.4;
        }
        if links {
            bonus += 0.2;
        }
        if bonus > 0.0 {
            evidence.push(ev(
                EvidenceKind::Clarity,
                "structured: ordered steps and linked ideas",
                bonus,
                None,
            ));
        }
        c = clamp4(c + bonus);

        let cap = 1.5 + 2.5 * self.length_factor;
        if c > cap {
            evidence.push(ev(EvidenceKind::Length, self.length_text(), cap - c, None));
            c = cap;
        }
        let mult = 0.25 + 0.75 * self.relevance;
        if mult < 0.999 {
            evidence.push(ev(
                EvidenceKind::Relevance,
                self.relevance_text(),
                c * (mult - 1.0),
                None,
            ));
        }
        c *= mult;
        (clamp4(c), evidence)
    }

    fn length_text(&self) -> String {
        format!(
            "{} words, {:.0}% of the expected minimum length",
            self.words,
            self.length_ratio * 100.0
        )
    }

    fn relevance_text(&self) -> String {
        format!(
            "{:.0}% of content words relate to the question",
            self.content_share * 100.0
        )
    }

    fn confidences(&self) -> [f64; 3] {
        let len_conf = (self.words as f64 / 80.0).min(1.0).sqrt();
        let quality = if self.found.is_empty() {
            0.8
        } else {
            self.found.iter().map(|f| f.hit.quality).sum::<f64>() / self.found.len() as f64
        };
        let k = 0.15 + 0.55 * len_conf + 0.3 * quality;
        let r = 0.3 + 0.6 * len_conf + if self.markers.is_empty() { 0.0 } else { 0.1 };
        let c = 0.3 + 0.45 * len_conf + if self.speech.is_some() { 0.25 } else { 0.1 };
        [k, r, c].map(|x| (x.clamp(0.0, 1.0) * 1000.0).round() / 1000.0)
    }

    fn into_score(self) -> AnswerScore {
        let (k, ke) = self.knowledge();
        let (r, re) = self.reasoning();
        let (c, ce) = self.clarity();
        let conf = self.confidences();
        let raws = [k, r, c];
        let evidences = [ke, re, ce];
        let mut evidences = evidences.into_iter();
        let dimensions = Dimension::ALL.map(|d| {
            let raw = (raws[d.index()] * 1000.0).round() / 1000.0;
            DimensionScore {
                dimension: d,
                score: raw.round().clamp(0.0, 4.0) as u8,
                raw,
                confidence: conf[d.index()],
                evidence: evidences.next().unwrap_or_default(),
            }
        });
        let overall_raw = (raws
            .iter()
            .zip(DEFAULT_WEIGHTS)
            .map(|(r, w)| r * w)
            .sum::<f64>()
            * 1000.0)
            .round()
            / 1000.0;
        let shallow = self.words < 15
            || self.length_ratio < 0.5
            || (self.coverage < 0.25 && self.marker_kinds() < 2);
        let mut concepts_found: Vec<usize> = self.found.iter().map(|f| f.index).collect();
        concepts_found.sort_unstable();
        AnswerScore {
            concepts_found,
            concepts_missing: self.missing(),
            red_flags: self.flags.iter().map(|(i, _)| *i).collect(),
            word_count: self.words,
            coverage: (self.coverage * 1000.0).round() / 1000.0,
            relevance: (self.relevance * 1000.0).round() / 1000.0,
            shallow,
            unclear: c < 2.0,
            overall_raw,
            dimensions,
        }
    }
}

/// Whether a negating word ("never", "don't", "no need to") comes within three words before
/// position `start`, in the same clause.
fn negated(view: &View<'_>, start: usize) -> bool {
    let mut k = start;
    for _ in 0..3 {
        if k == 0 {
            return false;
        }
        k -= 1;
        let t = view.toks[k];
        if t.sentence_end || t.comma_after {
            return false;
        }
        if is_negator(&t.text) {
            return true;
        }
    }
    false
}

/// Whether the claim ending before `end` is dismissed right after it: in the same clause
/// ("escaping the quotes isn't enough", "volatile doesn't help", "that is not safe"), or
/// called illegal or prohibited later in the sentence.
fn refuted_after(view: &View<'_>, end: usize) -> bool {
    if end == 0 || end > view.toks.len() {
        return false;
    }
    let last = view.toks[end - 1];
    if last.sentence_end || last.comma_after {
        return false;
    }
    for k in end..(end + 3).min(view.toks.len()) {
        let t = view.toks[k];
        let w = t.text.as_str();
        let copula_not = w == "not"
            && matches!(
                view.toks[k - 1].text.as_str(),
                "is" | "are" | "was" | "were" | "does" | "do" | "will"
            );
        if copula_not
            || matches!(
                w,
                "isnt" | "arent" | "doesnt" | "wont" | "insufficient" | "wrong" | "myth" | "unsafe"
            )
        {
            return true;
        }
        if t.sentence_end || t.comma_after {
            break;
        }
    }
    // "selling before the announcement would be illegal"
    for t in view.toks[end..].iter().take(8) {
        if matches!(
            t.text.as_str(),
            "illegal" | "unlawful" | "prohibited" | "forbidden" | "banned" | "unethical"
        ) {
            return true;
        }
        if t.sentence_end {
            break;
        }
    }
    false
}

#[cfg(test)]
mod tests;
