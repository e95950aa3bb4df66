//! Discipline rubrics: competencies, items with IRT parameters and key concepts, probes, case
//! studies and pass thresholds. TOML files deserialize into raw types, then [`Rubric::parse`]
//! validates them into a model whose errors name the file, line, item and field.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The three dimensions every answer is scored on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    /// Depth of knowledge.
    Knowledge,
    /// Reasoning through complex scenarios.
    Reasoning,
    /// Communication clarity.
    Clarity,
}

impl Dimension {
    /// All dimensions, in report order.
    pub const ALL: [Dimension; 3] = [
        Dimension::Knowledge,
        Dimension::Reasoning,
        Dimension::Clarity,
    ];

    /// Index into per-dimension arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Human label.
    pub fn label(self) -> &'static str {
        match self {
            Dimension::Knowledge => "Depth of knowledge",
            Dimension::Reasoning => "Reasoning through complex scenarios",
            Dimension::Clarity => "Communication clarity",
        }
    }
}

/// Difficulty band of an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Band {
    /// Entry-level knowledge every practitioner has.
    Foundation,
    /// What a competent practitioner handles daily.
    Core,
    /// Senior, complex or rare scenarios.
    Advanced,
}

impl Band {
    /// All bands, easiest first.
    pub const ALL: [Band; 3] = [Band::Foundation, Band::Core, Band::Advanced];

    /// The range the item location (mean threshold) must fall in.
    pub fn location_range(self) -> (f64, f64) {
        match self {
            Band::Foundation => (-2.5, -0.6),
            Band::Core => (-0.6, 0.6),
            Band::Advanced => (0.6, 2.5),
        }
    }
}

/// When a follow-up probe is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeWhen {
    /// A named key concept is missing from the answer.
    MissingConcept,
    /// The answer is too short or too general.
    Shallow,
    /// The answer is hard to follow.
    Unclear,
}

/// Severity of a red flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Dangerous or disqualifying.
    Major,
    /// Wrong but not dangerous.
    Minor,
}

mod raw {
    //! The file as written; unknown keys are errors.
    use super::{Band, ProbeWhen, Severity};
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct File {
        pub schema_version: u32,
        pub id: String,
        pub name: String,
        pub language: String,
        pub warmup: String,
        pub glossary: Vec<String>,
        pub pass: Pass,
        pub competencies: Vec<Competency>,
        pub items: Vec<Item>,
        pub case_studies: Vec<CaseStudy>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Pass {
        pub overall: f64,
        pub min_dimension: f64,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Competency {
        pub id: String,
        pub name: String,
        pub weight: f64,
        pub dimensions: BTreeMap<String, f64>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Item {
        pub id: String,
        pub competency: String,
        pub band: Band,
        pub prompt: String,
        pub rephrasing: String,
        pub expected_seconds: [f64; 2],
        pub discrimination: f64,
        pub thresholds: Vec<f64>,
        pub levels: Vec<String>,
        #[serde(default)]
        pub concepts: Vec<Concept>,
        #[serde(default)]
        pub red_flags: Vec<RedFlag>,
        #[serde(default)]
        pub probes: Vec<Probe>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Concept {
        pub term: String,
        #[serde(default)]
        pub aliases: Vec<String>,
        pub weight: f64,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RedFlag {
        pub claim: String,
        pub phrases: Vec<String>,
        pub severity: Severity,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Probe {
        pub when: ProbeWhen,
        pub concept: Option<String>,
        pub text: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct CaseStudy {
        pub id: String,
        pub title: String,
        pub minutes: u32,
        pub prompt: String,
        pub criteria: Vec<Criterion>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Criterion {
        pub id: String,
        pub description: String,
        pub weight: f64,
        pub levels: Vec<String>,
    }
}

/// One problem found in a rubric file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RubricIssue {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, where known.
    pub line: Option<usize>,
    /// The item (or competency, case study) concerned, if any.
    pub item: Option<String>,
    /// The field concerned.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for RubricIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(item) = &self.item {
            write!(f, ": item {item}")?;
        }
        write!(f, ": {}: {}", self.field, self.message)
    }
}

/// All problems found in a rubric file (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RubricError {
    /// The problems, in file order where known.
    pub issues: Vec<RubricIssue>,
}

impl fmt::Display for RubricError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RubricError {}

/// A key concept a strong answer names.
#[derive(Debug, Clone, Serialize)]
pub struct Concept {
    /// Canonical term (shown in reports).
    pub term: String,
    /// Other ways to say it.
    pub aliases: Vec<String>,
    /// Importance.
    pub weight: f64,
}

/// A wrong or dangerous claim.
#[derive(Debug, Clone, Serialize)]
pub struct RedFlag {
    /// What the claim is.
    pub claim: String,
    /// Phrasings that indicate it.
    pub phrases: Vec<String>,
    /// How bad it is.
    pub severity: Severity,
}

/// A follow-up question.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    /// The trigger.
    pub when: ProbeWhen,
    /// Index into the item's concepts, for `missing_concept`.
    pub concept: Option<usize>,
    /// What to ask.
    pub text: String,
}

/// A competency.
#[derive(Debug, Clone, Serialize)]
pub struct Competency {
    /// Identifier.
    pub id: String,
    /// Name.
    pub name: String,
    /// Share of the overall score.
    pub weight: f64,
    /// How the competency loads on knowledge, reasoning, clarity (sums to 1).
    pub dimensions: [f64; 3],
}

/// An interview question with its IRT parameters and scoring key.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// Identifier, unique in the rubric.
    pub id: String,
    /// Index into the rubric's competencies.
    pub competency: usize,
    /// Difficulty band.
    pub band: Band,
    /// The question as spoken.
    pub prompt: String,
    /// The question said differently.
    pub rephrasing: String,
    /// Expected spoken length, seconds: (min, max).
    pub expected_seconds: (f64, f64),
    /// GPCM slope.
    pub discrimination: f64,
    /// GPCM step difficulties for scores 1..=4.
    pub thresholds: [f64; 4],
    /// Descriptors for scores 0..=4.
    pub levels: [String; 5],
    /// Key concepts.
    pub concepts: Vec<Concept>,
    /// Wrong claims.
    pub red_flags: Vec<RedFlag>,
    /// Follow-ups.
    pub probes: Vec<Probe>,
}

impl Item {
    /// Item location: mean step difficulty.
    pub fn location(&self) -> f64 {
        self.thresholds.iter().sum::<f64>() / 4.0
    }
}

/// A written case-study criterion.
#[derive(Debug, Clone, Serialize)]
pub struct Criterion {
    /// Identifier.
    pub id: String,
    /// What is judged.
    pub description: String,
    /// Share of the case-study score.
    pub weight: f64,
    /// Descriptors for 0..=4.
    pub levels: [String; 5],
}

/// A written case-study exercise.
#[derive(Debug, Clone, Serialize)]
pub struct CaseStudy {
    /// Identifier.
    pub id: String,
    /// Title.
    pub title: String,
    /// Expected working time.
    pub minutes: u32,
    /// The exercise.
    pub prompt: String,
    /// How it is marked.
    pub criteria: Vec<Criterion>,
}

/// Pass thresholds on the 0–4 scale.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PassRule {
    /// Minimum weighted overall score.
    pub overall: f64,
    /// Minimum on every dimension.
    pub min_dimension: f64,
}

/// A validated rubric.
#[derive(Debug, Clone, Serialize)]
pub struct Rubric {
    /// Discipline id.
    pub id: String,
    /// Discipline name.
    pub name: String,
    /// Interview language.
    pub language: String,
    /// The first, unscored question.
    pub warmup: String,
    /// Terms for the transcriber.
    pub glossary: Vec<String>,
    /// Pass rule.
    pub pass: PassRule,
    /// Competencies.
    pub competencies: Vec<Competency>,
    /// Items.
    pub items: Vec<Item>,
    /// Written case studies.
    pub case_studies: Vec<CaseStudy>,
}

/// Collects issues with line lookup in the source text.
struct Checker<'a> {
    file: &'a Path,
    source: &'a str,
    issues: Vec<RubricIssue>,
}

impl Checker<'_> {
    /// The line of `id = "<id>"` (the start of that table), if present.
    fn line_of_id(&self, id: &str) -> Option<usize> {
        let needle = format!("\"{id}\"");
        self.source
            .lines()
            .position(|l| {
                let t = l.trim_start();
                t.starts_with("id") && t.contains(&needle)
            })
            .map(|i| i + 1)
    }

    /// The line of `field` at or after the line of `id`.
    fn line_of_field(&self, id: Option<&str>, field: &str) -> Option<usize> {
        let start = id.and_then(|i| self.line_of_id(i)).unwrap_or(1);
        self.source
            .lines()
            .enumerate()
            .skip(start - 1)
            .find(|(_, l)| {
                let t = l.trim_start();
                t.starts_with(field) && t[field.len()..].trim_start().starts_with('=')
            })
            .map(|(i, _)| i + 1)
            .or(id.and_then(|i| self.line_of_id(i)))
    }

    fn push(&mut self, item: Option<&str>, field: &str, message: impl Into<String>) {
        let line = self.line_of_field(item, field.split(['.', '[']).next().unwrap_or(field));
        self.issues.push(RubricIssue {
            file: self.file.to_path_buf(),
            line,
            item: item.map(str::to_string),
            field: field.to_string(),
            message: message.into(),
        });
    }
}

/// The key named by serde's "unknown field `x`" message.
fn unknown_key(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn levels5(v: &[String]) -> Option<[String; 5]> {
    <[String; 5]>::try_from(v.to_vec()).ok()
}

impl Rubric {
    /// Reads and validates a rubric file.
    pub fn load(path: &Path) -> Result<Rubric, RubricError> {
        let source = std::fs::read_to_string(path).map_err(|e| RubricError {
            issues: vec![RubricIssue {
                file: path.to_path_buf(),
                line: None,
                item: None,
                field: "(file)".into(),
                message: e.to_string(),
            }],
        })?;
        Rubric::parse(&source, path)
    }

    /// Parses and validates rubric TOML; `file` is used in error messages.
    pub fn parse(source: &str, file: &Path) -> Result<Rubric, RubricError> {
        let raw: raw::File = toml::from_str(source).map_err(|e| {
            let mut line = e
                .span()
                .map(|s| source[..s.start.min(source.len())].lines().count().max(1));
            // For an unknown key the span is the whole table: point at the key itself.
            if let (Some(start), Some(key)) = (line, unknown_key(e.message())) {
                line = source
                    .lines()
                    .enumerate()
                    .skip(start.saturating_sub(1))
                    .find(|(_, l)| {
                        let t = l.trim_start();
                        t.starts_with(key) && t[key.len()..].trim_start().starts_with('=')
                    })
                    .map(|(i, _)| i + 1)
                    .or(line);
            }
            RubricError {
                issues: vec![RubricIssue {
                    file: file.to_path_buf(),
                    line,
                    item: None,
                    field: "(syntax)".into(),
                    message: e.message().to_string(),
                }],
            }
        })?;
        let mut c = Checker {
            file,
            source,
            issues: Vec::new(),
        };
        let rubric = validate(raw, &mut c);
        if c.issues.is_empty() {
            Ok(rubric)
        } else {
            c.issues.sort_by_key(|i| i.line.unwrap_or(usize::MAX));
            Err(RubricError { issues: c.issues })
        }
    }

    /// Looks an item up by id.
    pub fn item(&self, id: &str) -> Option<&Item> {
        self.items.iter().find(|i| i.id == id)
    }

    /// The index of an item by id.
    pub fn item_index(&self, id: &str) -> Option<usize> {
        self.items.iter().position(|i| i.id == id)
    }

    /// The glossary as a transcriber prompt.
    pub fn glossary_prompt(&self) -> String {
        self.glossary.join(", ")
    }

    /// A short transcriber prompt for answers to `item`: the glossary terms that the item's
    /// own text uses (its wording, key concepts and their aliases, level descriptors, red
    /// flags, probes), in glossary order, joined with ", " up to `max_chars` characters; `None`
    /// when the item uses none.
    ///
    /// Why not the whole glossary: whisper.cpp computes the vocabulary logits of every prompt
    /// token, so a 60-term glossary (~200 tokens) adds ~0.15 s of decoding on one core and
    /// ~80 MB of buffers per decoder to every utterance, while the terms an answer needs are the
    /// question's own.
    pub fn item_prompt(&self, item: &Item, max_chars: usize) -> Option<String> {
        let concepts = item
            .concepts
            .iter()
            .flat_map(|c| std::iter::once(&c.term).chain(&c.aliases));
        let text = [&item.prompt, &item.rephrasing]
            .into_iter()
            .chain(&item.levels)
            .chain(concepts)
            .chain(item.red_flags.iter().map(|f| &f.claim))
            .chain(item.probes.iter().map(|p| &p.text))
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" ");
        let haystack = format!(" {} ", words_only(&text));
        let used = self.glossary.iter().filter(|term| {
            let needle = words_only(term);
            !needle.is_empty() && haystack.contains(&format!(" {needle} "))
        });
        term_list(String::new(), used, max_chars)
    }

    /// A transcriber prompt of bounded cost for answers to `item` (or to a question without
    /// one: the intro, the warm-up): the item's own glossary terms ([`item_prompt`]) first, then
    /// the discipline's other glossary terms in glossary order, joined with ", " and closed by a
    /// period, up to `max_chars` characters in all; `None` only when the glossary is empty.
    ///
    /// Why not just the item's terms: with those few terms alone tiny.en ended far more of a
    /// speaker's thinking pauses with a period, and the turn rules cut into them (measured
    /// in earlier rounds, bench/README.md). Why the closing period: whisper continues the prompt's style, and after an
    /// open-ended list tiny.en left the last sentence of 9 of 16 fixture answers without its
    /// period, so the turn rules read a finished answer as an unfinished clause and waited
    /// 4.5 s; with the period it writes all 16 (bench/README.md, "A prompt that ends with a
    /// period"). Why not the whole glossary: see [`item_prompt`]; at 250 characters (~60
    /// tokens) the prompt costs a quarter of the whole glossary's buffers.
    ///
    /// [`item_prompt`]: Self::item_prompt
    pub fn item_first_prompt(&self, item: Option<&Item>, max_chars: usize) -> Option<String> {
        // One character is kept for the closing period.
        let max_chars = max_chars.checked_sub(1)?;
        let own = item
            .and_then(|item| self.item_prompt(item, max_chars))
            .unwrap_or_default();
        let taken: Vec<&str> = own.split(", ").collect();
        let others = self
            .glossary
            .iter()
            .filter(|term| !taken.contains(&term.as_str()));
        let mut prompt = term_list(own.clone(), others, max_chars)?;
        if !prompt.ends_with(['.', '?', '!']) {
            prompt.push('.');
        }
        Some(prompt)
    }
}

/// `prompt` followed by `terms`, joined with ", ", up to the first term that would take it past
/// `max_chars` characters (terms are never cut); `None` when nothing is in it.
fn term_list<'a>(
    mut prompt: String,
    terms: impl Iterator<Item = &'a String>,
    max_chars: usize,
) -> Option<String> {
    for term in terms {
        let extra = if prompt.is_empty() { 0 } else { 2 } + term.chars().count();
        if prompt.chars().count() + extra > max_chars {
            break;
        }
        if !prompt.is_empty() {
            prompt.push_str(", ");
        }
        prompt.push_str(term);
    }
    (!prompt.is_empty()).then_some(prompt)
}

/// Lower-case words separated by single spaces (punctuation and hyphens become spaces), for
/// matching glossary terms on word boundaries.
fn words_only(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_alphanumeric() {
                c.to_lowercase().next().unwrap_or(c)
            } else {
                ' '
            }
        })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn validate(raw: raw::File, c: &mut Checker<'_>) -> Rubric {
    if raw.schema_version != 1 {
        c.push(
            None,
            "schema_version",
            format!("is {}, this build reads 1", raw.schema_version),
        );
    }
    if !valid_id(&raw.id) {
        c.push(None, "id", "must be lowercase letters, digits and '-'");
    }
    if let Some(stem) = c.file.file_stem().and_then(|s| s.to_str())
        && stem != raw.id
        && c.file.extension().is_some_and(|e| e == "toml")
    {
        c.push(
            None,
            "id",
            format!("{:?} differs from the file name {stem:?}", raw.id),
        );
    }
    if raw.glossary.is_empty() {
        c.push(None, "glossary", "is empty");
    }
    for (field, v) in [
        ("pass.overall", raw.pass.overall),
        ("pass.min_dimension", raw.pass.min_dimension),
    ] {
        if !(0.0..=4.0).contains(&v) {
            c.push(None, field, format!("{v} is outside 0..4"));
        }
    }

    let mut competencies = Vec::new();
    let mut competency_index = HashMap::new();
    let mut total_weight = 0.0;
    for comp in &raw.competencies {
        let id = comp.id.as_str();
        if !valid_id(id) {
            c.push(Some(id), "id", "must be lowercase letters, digits and '-'");
        }
        if competency_index
            .insert(comp.id.clone(), competencies.len())
            .is_some()
        {
            c.push(Some(id), "id", "duplicate competency id");
        }
        if !(comp.weight > 0.0 && comp.weight <= 1.0) {
            c.push(
                Some(id),
                "weight",
                format!("{} is outside (0, 1]", comp.weight),
            );
        }
        total_weight += comp.weight;
        let mut dims = [0.0; 3];
        for (key, value) in &comp.dimensions {
            let slot = match key.as_str() {
                "knowledge" => 0,
                "reasoning" => 1,
                "clarity" => 2,
                other => {
                    c.push(
                        Some(id),
                        "dimensions",
                        format!("unknown dimension {other:?} (knowledge, reasoning, clarity)"),
                    );
                    continue;
                }
            };
            if *value < 0.0 {
                c.push(Some(id), "dimensions", format!("{key} is negative"));
            }
            dims[slot] = *value;
        }
        if (dims.iter().sum::<f64>() - 1.0).abs() > 0.011 {
            c.push(
                Some(id),
                "dimensions",
                format!("weights sum to {:.3}, not 1", dims.iter().sum::<f64>()),
            );
        }
        competencies.push(Competency {
            id: comp.id.clone(),
            name: comp.name.clone(),
            weight: comp.weight,
            dimensions: dims,
        });
    }
    if competencies.len() < 4 {
        c.push(
            None,
            "competencies",
            format!(
                "{} competencies; at least 4 are required",
                competencies.len()
            ),
        );
    }
    if !competencies.is_empty() && (total_weight - 1.0).abs() > 0.011 {
        c.push(
            None,
            "competencies",
            format!("weights sum to {total_weight:.3}, not 1"),
        );
    }

    let mut items = Vec::new();
    let mut item_ids = HashSet::new();
    let mut coverage: HashMap<(usize, Band), usize> = HashMap::new();
    for it in raw.items {
        let id = it.id.clone();
        let idr = Some(id.as_str());
        if !valid_id(&id) {
            c.push(idr, "id", "must be lowercase letters, digits and '-'");
        }
        if !item_ids.insert(id.clone()) {
            c.push(idr, "id", "duplicate item id");
        }
        let competency = match competency_index.get(&it.competency) {
            Some(&i) => i,
            None => {
                c.push(
                    idr,
                    "competency",
                    format!("{:?} is not a competency of this rubric", it.competency),
                );
                0
            }
        };
        *coverage.entry((competency, it.band)).or_default() += 1;
        if it.prompt.trim().is_empty() {
            c.push(idr, "prompt", "is empty");
        }
        if it.rephrasing.trim().is_empty() {
            c.push(idr, "rephrasing", "is empty");
        }
        let [lo, hi] = it.expected_seconds;
        if !(lo > 0.0 && hi > lo && hi <= 600.0) {
            c.push(
                idr,
                "expected_seconds",
                format!("[{lo}, {hi}] must be 0 < min < max <= 600"),
            );
        }
        if !(0.2..=4.0).contains(&it.discrimination) {
            c.push(
                idr,
                "discrimination",
                format!("{} is outside 0.2..4", it.discrimination),
            );
        }
        let thresholds = match <[f64; 4]>::try_from(it.thresholds.clone()) {
            Ok(t) => {
                if t.windows(2).any(|w| w[1] <= w[0]) {
                    c.push(
                        idr,
                        "thresholds",
                        format!("{t:?} must be strictly increasing"),
                    );
                }
                let loc = t.iter().sum::<f64>() / 4.0;
                let (min, max) = it.band.location_range();
                if !(min..=max).contains(&loc) {
                    c.push(
                        idr,
                        "thresholds",
                        format!(
                            "mean {loc:.2} does not fit band {:?} ({min}..{max})",
                            it.band
                        ),
                    );
                }
                t
            }
            Err(_) => {
                c.push(
                    idr,
                    "thresholds",
                    format!(
                        "{} values; exactly 4 (scores 1..4) are required",
                        it.thresholds.len()
                    ),
                );
                [0.0; 4]
            }
        };
        let levels = levels5(&it.levels).unwrap_or_else(|| {
            c.push(
                idr,
                "levels",
                format!(
                    "{} descriptors; exactly 5 (scores 0..4) are required",
                    it.levels.len()
                ),
            );
            Default::default()
        });
        if it.concepts.is_empty() {
            c.push(idr, "concepts", "no key concepts");
        }
        let mut concepts = Vec::new();
        let mut terms = HashMap::new();
        for concept in it.concepts {
            if concept.term.trim().is_empty() {
                c.push(idr, "concepts.term", "is empty");
            }
            if !(0.1..=5.0).contains(&concept.weight) {
                c.push(
                    idr,
                    "concepts.weight",
                    format!("{} ({}) is outside 0.1..5", concept.weight, concept.term),
                );
            }
            if terms.insert(concept.term.clone(), concepts.len()).is_some() {
                c.push(
                    idr,
                    "concepts.term",
                    format!("duplicate concept {:?}", concept.term),
                );
            }
            concepts.push(Concept {
                term: concept.term,
                aliases: concept.aliases,
                weight: concept.weight,
            });
        }
        let red_flags = it
            .red_flags
            .into_iter()
            .map(|f| {
                if f.phrases.is_empty() {
                    c.push(
                        idr,
                        "red_flags.phrases",
                        format!("red flag {:?} has no phrases", f.claim),
                    );
                }
                RedFlag {
                    claim: f.claim,
                    phrases: f.phrases,
                    severity: f.severity,
                }
            })
            .collect();
        let mut probes = Vec::new();
        let mut kinds = HashSet::new();
        for p in it.probes {
            kinds.insert(p.when);
            let concept = match (p.when, &p.concept) {
                (ProbeWhen::MissingConcept, Some(name)) => match terms.get(name) {
                    Some(&i) => Some(i),
                    None => {
                        c.push(
                            idr,
                            "probes.concept",
                            format!("{name:?} is not a concept term of this item"),
                        );
                        None
                    }
                },
                (ProbeWhen::MissingConcept, None) => {
                    c.push(
                        idr,
                        "probes.concept",
                        "a missing_concept probe must name a concept",
                    );
                    None
                }
                (_, Some(_)) => {
                    c.push(
                        idr,
                        "probes.concept",
                        "only missing_concept probes name a concept",
                    );
                    None
                }
                (_, None) => None,
            };
            if p.text.trim().is_empty() {
                c.push(idr, "probes.text", "is empty");
            }
            probes.push(Probe {
                when: p.when,
                concept,
                text: p.text,
            });
        }
        for kind in [
            ProbeWhen::MissingConcept,
            ProbeWhen::Shallow,
            ProbeWhen::Unclear,
        ] {
            if !kinds.contains(&kind) {
                c.push(idr, "probes", format!("no {kind:?} probe"));
            }
        }
        items.push(Item {
            id,
            competency,
            band: it.band,
            prompt: it.prompt,
            rephrasing: it.rephrasing,
            expected_seconds: (lo, hi),
            discrimination: it.discrimination,
            thresholds,
            levels,
            concepts,
            red_flags,
            probes,
        });
    }
    if items.len() < 24 {
        c.push(
            None,
            "items",
            format!("{} items; at least 24 are required", items.len()),
        );
    }
    for (ci, comp) in competencies.iter().enumerate() {
        for band in Band::ALL {
            let n = coverage.get(&(ci, band)).copied().unwrap_or(0);
            if n < 2 {
                let id = comp.id.clone();
                c.push(
                    Some(&id),
                    "items",
                    format!("competency has {n} {band:?} items; at least 2 are required"),
                );
            }
        }
    }

    let mut case_studies = Vec::new();
    for cs in raw.case_studies {
        let idr = Some(cs.id.as_str());
        if !item_ids.insert(cs.id.clone()) {
            c.push(idr, "id", "duplicate id");
        }
        if !(15..=90).contains(&cs.minutes) {
            c.push(idr, "minutes", format!("{} is outside 15..90", cs.minutes));
        }
        let total: f64 = cs.criteria.iter().map(|k| k.weight).sum();
        if cs.criteria.is_empty() || (total - 1.0).abs() > 0.011 {
            c.push(idr, "criteria", format!("weights sum to {total:.3}, not 1"));
        }
        let criteria = cs
            .criteria
            .into_iter()
            .map(|k| {
                let levels = levels5(&k.levels).unwrap_or_else(|| {
                    c.push(Some(&k.id), "levels", "exactly 5 descriptors are required");
                    Default::default()
                });
                Criterion {
                    id: k.id,
                    description: k.description,
                    weight: k.weight,
                    levels,
                }
            })
            .collect();
        case_studies.push(CaseStudy {
            id: cs.id,
            title: cs.title,
            minutes: cs.minutes,
            prompt: cs.prompt,
            criteria,
        });
    }
    if case_studies.is_empty() {
        c.push(None, "case_studies", "at least one case study is required");
    }

    Rubric {
        id: raw.id,
        name: raw.name,
        language: raw.language,
        warmup: raw.warmup,
        glossary: raw.glossary,
        pass: PassRule {
            overall: raw.pass.overall,
            min_dimension: raw.pass.min_dimension,
        },
        competencies,
        items,
        case_studies,
    }
}

/// Loads every `*.toml` rubric in a directory, sorted by id.
pub fn load_dir(dir: &Path) -> Result<Vec<Rubric>, RubricError> {
    let entries = std::fs::read_dir(dir).map_err(|e| RubricError {
        issues: vec![RubricIssue {
            file: dir.to_path_buf(),
            line: None,
            item: None,
            field: "(directory)".into(),
            message: e.to_string(),
        }],
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    let mut rubrics = Vec::new();
    let mut issues = Vec::new();
    for p in paths {
        match Rubric::load(&p) {
            Ok(r) => rubrics.push(r),
            Err(e) => issues.extend(e.issues),
        }
    }
    if issues.is_empty() {
        Ok(rubrics)
    } else {
        Err(RubricError { issues })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rubrics_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../rubrics")
    }

    #[test]
    fn shipped_rubrics_are_valid_and_cover_seven_disciplines() {
        let rubrics = load_dir(&rubrics_dir()).unwrap_or_else(|e| panic!("{e}"));
        let ids: Vec<&str> = rubrics.iter().map(|r| r.id.as_str()).collect();
        for want in [
            "medicine",
            "law",
            "software-engineering",
            "engineering",
            "research-science",
            "finance",
            "translation-linguistics",
        ] {
            assert!(ids.contains(&want), "missing {want}");
        }
        for r in &rubrics {
            assert!(r.items.len() >= 24 && r.competencies.len() >= 4, "{}", r.id);
        }
    }

    #[test]
    fn an_item_prompt_holds_the_glossary_terms_of_that_item_only() {
        let medicine = Rubric::load(&rubrics_dir().join("medicine.toml")).unwrap();
        let arrest = medicine.item("med-cardiac-arrest").unwrap();
        let prompt = medicine.item_prompt(arrest, 100).unwrap();
        assert!(prompt.contains("amiodarone"), "{prompt}");
        assert!(!prompt.contains("troponin"), "{prompt}");
        assert!(prompt.chars().count() <= 100);
        // Every shipped item gets a bounded prompt of its own glossary terms, or none.
        for rubric in load_dir(&rubrics_dir()).unwrap() {
            for item in &rubric.items {
                if let Some(p) = rubric.item_prompt(item, 100) {
                    assert!(p.chars().count() <= 100, "{}: {p}", item.id);
                    for term in p.split(", ") {
                        assert!(rubric.glossary.iter().any(|g| g == term), "{term}");
                    }
                }
            }
        }
        // A tight budget keeps whole terms: the first that fits, nothing cut in half.
        let tight = medicine.item_prompt(arrest, 12);
        assert!(
            tight
                .as_deref()
                .is_none_or(|t| medicine.glossary.iter().any(|g| g == t)),
            "{tight:?}"
        );
    }

    #[test]
    fn an_item_first_prompt_leads_with_the_item_terms_and_fills_up_from_the_glossary() {
        let medicine = Rubric::load(&rubrics_dir().join("medicine.toml")).unwrap();
        let arrest = medicine.item("med-cardiac-arrest").unwrap();
        let own = medicine.item_prompt(arrest, 100).unwrap();
        let prompt = medicine.item_first_prompt(Some(arrest), 250).unwrap();
        assert!(prompt.starts_with(&own), "{prompt}");
        assert!(prompt.chars().count() <= 250 && prompt.chars().count() > own.len() + 50);
        // Closed by a period, so that whisper writes the one that ends an answer.
        let list = prompt.strip_suffix('.').expect("a closing period");
        let terms: Vec<&str> = list.split(", ").collect();
        for (i, term) in terms.iter().enumerate() {
            assert!(medicine.glossary.iter().any(|g| g == term), "{term}");
            assert!(!terms[..i].contains(term), "{term} twice in {prompt}");
        }
        // After the item's own terms, the rest follow the glossary's order.
        let rest: Vec<&str> = terms[own.split(", ").count()..].to_vec();
        let order: Vec<usize> = rest
            .iter()
            .map(|t| medicine.glossary.iter().position(|g| g == t).unwrap())
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{rest:?}");
        // Without an item (the intro, the warm-up): the head of the glossary.
        let intro = medicine.item_first_prompt(None, 250).unwrap();
        assert!(intro.starts_with(&medicine.glossary[0]), "{intro}");
        assert!(intro.chars().count() <= 250);
        // Every shipped item gets one within budget.
        for rubric in load_dir(&rubrics_dir()).unwrap() {
            for item in &rubric.items {
                let p = rubric.item_first_prompt(Some(item), 250).unwrap();
                assert!(p.chars().count() <= 250, "{}: {p}", item.id);
            }
        }
    }

    /// A valid rubric, mutated by each test to break exactly one rule.
    fn base() -> String {
        std::fs::read_to_string(rubrics_dir().join("law.toml")).unwrap()
    }

    fn errors(source: &str) -> Vec<RubricIssue> {
        Rubric::parse(source, Path::new("rubrics/law.toml"))
            .unwrap_err()
            .issues
    }

    #[test]
    fn unknown_key_names_the_line() {
        let src = base().replacen("discrimination =", "discriminaton =", 1);
        let e = errors(&src);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].message.contains("discriminaton"), "{}", e[0]);
        let line = e[0].line.unwrap();
        assert!(
            src.lines().nth(line - 1).unwrap().contains("discriminaton"),
            "{}",
            e[0]
        );
    }

    #[test]
    fn broken_rules_name_file_line_item_and_field() {
        let src = base();
        let first = src.find("thresholds = [").unwrap();
        let end = first + src[first..].find(']').unwrap();
        let broken = format!(
            "{}thresholds = [0.5, 0.2, 0.9, 1.0{}",
            &src[..first],
            &src[end..]
        );
        let e = errors(&broken);
        let issue = e
            .iter()
            .find(|i| i.field == "thresholds")
            .expect("thresholds issue");
        assert!(issue.message.contains("strictly increasing"), "{issue}");
        let item = issue.item.clone().unwrap();
        let shown = issue.to_string();
        assert!(
            shown.starts_with("rubrics/law.toml:") && shown.contains(&item),
            "{shown}"
        );
        assert!(
            broken
                .lines()
                .nth(issue.line.unwrap() - 1)
                .unwrap()
                .contains("thresholds")
        );

        let dup = src.replacen(
            "id = \"law-privilege-waiver\"",
            "id = \"law-email-acceptance\"",
            1,
        );
        assert!(
            errors(&dup)
                .iter()
                .any(|i| i.message.contains("duplicate item id"))
        );

        let comp = src.replacen("competency = \"", "competency = \"nowhere-", 1);
        assert!(
            errors(&comp)
                .iter()
                .any(|i| i.field == "competency" && i.message.contains("nowhere-"))
        );

        let probe = src.replacen("concept = \"", "concept = \"Not A Concept ", 1);
        assert!(errors(&probe).iter().any(|i| i.field == "probes.concept"));
    }

    #[test]
    fn coverage_rule_reports_the_competency_and_band() {
        let mut src = base();
        // Move every advanced item to core: each competency then lacks advanced items.
        src = src.replace("band = \"advanced\"", "band = \"core\"");
        let e = errors(&src);
        assert!(
            e.iter()
                .any(|i| i.field == "items" && i.message.contains("Advanced")),
            "{e:?}"
        );
    }
}
