//! Phrase matching tolerant of transcription errors: rubric phrases (concept terms, aliases,
//! red-flag phrases) compiled once into token patterns and found in an answer by stem, fuzzy
//! spelling, sound-alike key, split or joined words ("e c g" ~ "ECG", "trope onin" ~
//! "troponin"), with optional function words and at most one inserted word.

use std::cell::OnceCell;

use super::features::is_filler_word;
use super::phonetic::{edit_distance, phonetic_key};
use super::tokens::{Token, stem, tokenize};

/// Quality of an exact (surface or stem) token match.
const EXACT: f64 = 1.0;
/// Quality of a match by joining spelled-out letters or split words exactly.
const JOINED: f64 = 0.95;
/// Quality of a fuzzy spelling match.
const FUZZY: f64 = 0.85;
/// Quality of a sound-alike match.
const PHONETIC: f64 = 0.75;
/// Multiplier for each answer word skipped inside a phrase.
const GAP: f64 = 0.9;

/// One word of a compiled phrase.
#[derive(Debug, Clone)]
struct PatTok {
    /// Canonical text, compared exactly.
    text: String,
    /// Stem, compared exactly and by edit distance.
    stem: String,
    /// Sound-alike key.
    key: String,
    /// Characters in the stem.
    len: usize,
    /// Short words (3 letters or fewer) and words with digits match only exactly.
    exact_only: bool,
    /// A function word the answer may leave out ("stop the drip" ~ "stop drip").
    optional: bool,
    /// Signature for the quick rejection of answer words.
    sig: Sig,
    /// The key is long enough (4 or more) for a sound-alike match.
    phonetic: bool,
}

/// First bytes of a word's text and stem and first two of its key (0 when absent): kept
/// contiguous so that most answer words are ruled out without touching their strings.
type Sig = [u8; 4];

fn signature(t: &Token) -> Sig {
    let f = |s: &str, i: usize| s.as_bytes().get(i).copied().unwrap_or(0);
    [f(&t.text, 0), f(&t.stem, 0), f(&t.key, 0), f(&t.key, 1)]
}

/// Whether an answer word can possibly match (exactly, fuzzily, by sound, joined or split)
/// a pattern word: spelling matches need equal first letters, sound-alike matches (keys of
/// four or more) equal first two key letters.
fn could_match(p: &PatTok, a: Sig) -> bool {
    a[0] == p.sig[0]
        || a[1] == p.sig[1]
        || (p.phonetic && a[2] == p.sig[2] && a[3] == p.sig[3] && a[3] != 0)
}

/// Whether the parts, concatenated, spell `whole` (without allocating).
fn concat_eq(parts: &[&Token], whole: &str) -> bool {
    let mut rest = whole;
    for t in parts {
        match rest.strip_prefix(t.text.as_str()) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    rest.is_empty()
}

/// A compiled rubric phrase.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    toks: Vec<PatTok>,
    /// `joins[i][k]`: the texts of tokens `i..i + k + 2` concatenated ("e c g" → "ecg").
    joins: Vec<Vec<String>>,
    /// Non-optional words: a phrase of two or more may skip one inserted answer word.
    content: usize,
    /// The leading optional words and the first required one: a match starts with one.
    lead: usize,
    /// The phrase also occurs in the question itself.
    pub in_prompt: bool,
}

/// Where a phrase matched: answer-view token range `[start, end)` and match quality.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Hit {
    /// First view token.
    pub start: usize,
    /// One past the last view token.
    pub end: usize,
    /// 1 for an exact match, less for joined, fuzzy, sound-alike or gapped ones.
    pub quality: f64,
}

fn optional_word(w: &str) -> bool {
    matches!(
        w,
        "the"
            | "a"
            | "an"
            | "of"
            | "per"
            | "his"
            | "her"
            | "their"
            | "its"
            | "your"
            | "our"
            | "this"
            | "that"
            | "and"
    )
}

impl Pattern {
    /// Compiles a phrase; `None` if it has no words.
    pub fn new(phrase: &str) -> Option<Pattern> {
        let toks: Vec<PatTok> = tokenize(phrase)
            .into_iter()
            .filter(|t| !is_filler_word(&t.text))
            .map(|t| {
                let len = t.stem.len();
                let exact_only = t.text.chars().count() <= 3 || t.has_digit();
                PatTok {
                    sig: signature(&t),
                    phonetic: t.key.len() >= 4,
                    optional: optional_word(&t.text),
                    text: t.text,
                    stem: t.stem,
                    key: t.key,
                    len,
                    exact_only,
                }
            })
            .collect();
        if toks.is_empty() {
            return None;
        }
        let mut toks = toks;
        if toks.iter().all(|t| t.optional) {
            for t in &mut toks {
                t.optional = false;
            }
        }
        let joins = (0..toks.len())
            .map(|i| {
                (2..=4)
                    .take_while(|k| i + k <= toks.len())
                    .map(|k| toks[i..i + k].iter().map(|t| t.text.as_str()).collect())
                    .collect()
            })
            .collect();
        let content = toks.iter().filter(|t| !t.optional).count();
        let lead = toks
            .iter()
            .position(|t| !t.optional)
            .map_or(toks.len(), |f| f + 1);
        Some(Pattern {
            toks,
            joins,
            content,
            lead,
            in_prompt: false,
        })
    }

    /// Finds all non-overlapping matches, left to right.
    pub fn find(&self, view: &View<'_>) -> Vec<Hit> {
        let mut hits = Vec::new();
        let mut ai = 0;
        let gaps = usize::from(self.content >= 2);
        let lead = &self.toks[..self.lead];
        // Only positions whose first letters (or first key letters) fit a leading word.
        let mut starts: Vec<usize> = Vec::new();
        for p in lead {
            starts.extend_from_slice(&view.by_first[usize::from(p.sig[0])]);
            if p.sig[1] != p.sig[0] {
                starts.extend_from_slice(&view.by_first[usize::from(p.sig[1])]);
            }
            if p.phonetic {
                let key = [p.sig[2], p.sig[3]];
                let from = view.by_key.partition_point(|(k, _)| *k < key);
                let to = view.by_key.partition_point(|(k, _)| *k <= key);
                starts.extend(view.by_key[from..to].iter().map(|(_, i)| *i));
            }
        }
        starts.sort_unstable();
        starts.dedup();
        for start in starts {
            if start < ai {
                continue;
            }
            let sig = view.sigs[start];
            if !lead.iter().any(|p| could_match(p, sig)) {
                continue;
            }
            if let Some((end, quality)) = self.match_at(view, 0, start, gaps, false)
                && end > start
            {
                hits.push(Hit {
                    start,
                    end,
                    quality,
                });
                ai = end;
            }
        }
        hits
    }

    /// Matches pattern tokens `pi..` at answer position `ai`; returns the end position and
    /// the quality (the worst token's quality times the gap penalty).
    fn match_at(
        &self,
        view: &View<'_>,
        pi: usize,
        ai: usize,
        gaps: usize,
        started: bool,
    ) -> Option<(usize, f64)> {
        if pi == self.toks.len() {
            return started.then_some((ai, 1.0));
        }
        // A phrase does not run across a sentence end.
        if started && ai > 0 && ai <= view.toks.len() && view.toks[ai - 1].sentence_end {
            return self.skip_optional_tail(pi, ai);
        }
        let p = &self.toks[pi];
        let n = view.toks.len();
        // Candidate steps (quality, next pattern word, next answer word), best first.
        let mut steps = [(0.0f64, 0usize, 0usize); 6];
        let mut count = 0;
        if ai < n && could_match(p, view.sigs[ai]) {
            let a = view.toks[ai];
            // Several pattern words said as one: "pulseless v t" ~ "pulseless VT".
            for (k, joined) in self.joins[pi].iter().enumerate() {
                let q = joined_word_match(joined, a);
                if q > 0.0 {
                    steps[count] = (q, pi + k + 2, ai + 1);
                    count += 1;
                }
            }
            let q = token_match(p, a);
            if q > 0.0 {
                steps[count] = (q, pi + 1, ai + 1);
                count += 1;
            }
            // One pattern word said as several: "e c g" ~ "ecg", "trope onin" ~ "troponin".
            for m in 2..=3 {
                if ai + m > n || view.toks[ai..ai + m - 1].iter().any(|t| t.sentence_end) {
                    break;
                }
                let q = split_match(p, view, ai, m);
                if q > 0.0 {
                    steps[count] = (q, pi + 1, ai + m);
                    count += 1;
                }
            }
        }
        let steps = &mut steps[..count];
        // Stable: among equal qualities, the order above (fewest answer words) wins.
        steps.sort_by(|a, b| b.0.total_cmp(&a.0));
        for &(q, next_pi, next_ai) in steps.iter() {
            if let Some((end, rest)) = self.match_at(view, next_pi, next_ai, gaps, true) {
                return Some((end, q.min(rest)));
            }
        }
        if p.optional
            && let Some(found) = self.match_at(view, pi + 1, ai, gaps, started)
        {
            return Some(found);
        }
        if started
            && gaps > 0
            && ai < n
            && !view.toks[ai].sentence_end
            && let Some((end, rest)) = self.match_at(view, pi, ai + 1, gaps - 1, true)
        {
            return Some((end, rest * GAP));
        }
        None
    }

    /// At a sentence end the phrase may still finish if only optional words remain.
    fn skip_optional_tail(&self, pi: usize, ai: usize) -> Option<(usize, f64)> {
        self.toks[pi..]
            .iter()
            .all(|t| t.optional)
            .then_some((ai, 1.0))
    }
}

/// Compares one pattern word with one answer word.
fn token_match(p: &PatTok, a: &Token) -> f64 {
    if p.text == a.text || p.stem == a.stem {
        return EXACT;
    }
    if p.exact_only || a.number || a.has_digit() {
        return 0.0;
    }
    fuzzy_match(p, &a.stem, &a.key)
}

/// Fuzzy comparison of a pattern word with an answer word (or joined words): spelling
/// within one edit per five characters for words of 7 characters or more, 5–6 character
/// words only when they also sound alike, and sound-alike keys of 4 or more consonants.
fn fuzzy_match(p: &PatTok, stem: &str, key: &str) -> f64 {
    let n = p.len;
    let m = stem.len();
    if n < 5 || m < 4 {
        return 0.0;
    }
    let first_eq = p.stem.as_bytes().first() == stem.as_bytes().first();
    if n >= 7 && first_eq && n.abs_diff(m) <= n / 5 {
        let allowed = n / 5;
        if edit_distance(&p.stem, stem, allowed) <= allowed {
            return FUZZY;
        }
    }
    if n < 7
        && first_eq
        && n.abs_diff(m) <= 1
        && p.key == key
        && key.len() >= 3
        && edit_distance(&p.stem, stem, 1) <= 1
    {
        return FUZZY;
    }
    if p.key.len() >= 4 && p.key == key && n.abs_diff(m) <= 3 {
        let allowed = n / 3;
        if edit_distance(&p.stem, stem, allowed) <= allowed {
            return PHONETIC;
        }
    }
    0.0
}

/// One pattern word against answer words `ai..ai + m` said apart.
fn split_match(p: &PatTok, view: &View<'_>, ai: usize, m: usize) -> f64 {
    let parts = &view.toks[ai..ai + m];
    if concat_eq(parts, &p.text) || concat_eq(parts, &p.stem) {
        let letters = parts.iter().all(|t| t.text.chars().nth(1).is_none());
        if !p.exact_only || letters || p.text.bytes().any(|b| b.is_ascii_digit()) {
            return JOINED;
        }
        return 0.0;
    }
    if p.exact_only || p.len < 6 || parts.iter().any(|t| t.has_digit()) {
        return 0.0;
    }
    let total: usize = parts.iter().map(|t| t.text.len()).sum();
    if total.abs_diff(p.len) > p.len / 3 + 1 {
        return 0.0;
    }
    let Some(joined) = view.joined(ai, m) else {
        return 0.0;
    };
    let q = fuzzy_match(p, &joined.stem, &joined.key);
    if q > 0.0 { q.min(FUZZY) - 0.05 } else { 0.0 }
}

/// Several pattern words (joined) against one answer word.
fn joined_word_match(joined: &str, a: &Token) -> f64 {
    if a.text == joined {
        return JOINED;
    }
    let n = joined.len();
    if n >= 7
        && n.abs_diff(a.text.len()) <= n / 5
        && !a.has_digit()
        && a.text.as_bytes().first() == joined.as_bytes().first()
    {
        let allowed = n / 5;
        if edit_distance(joined, &a.text, allowed) <= allowed {
            return FUZZY - 0.05;
        }
    }
    0.0
}

/// Neighbouring answer words run together ("trope onin" → "tropeonin").
#[derive(Debug)]
struct Joined {
    /// Stem of the run-together text.
    stem: String,
    /// Its sound-alike key.
    key: String,
}

/// The answer as seen by the matcher: tokens without hesitation sounds, with joined
/// neighbours computed on first use.
#[derive(Debug)]
pub(crate) struct View<'a> {
    /// Answer tokens without fillers.
    pub toks: Vec<&'a Token>,
    /// Their signatures, for quick rejection.
    sigs: Vec<Sig>,
    /// Positions by first byte of text or stem.
    by_first: Vec<Vec<usize>>,
    /// (first two key bytes, position), sorted.
    by_key: Vec<([u8; 2], usize)>,
    /// For each position: it joined with the next one, then with the next two.
    joined: Vec<[OnceCell<Option<Joined>>; 2]>,
}

impl<'a> View<'a> {
    /// Builds the view of tokenised text.
    pub fn new(all: &'a [Token]) -> View<'a> {
        let toks: Vec<&Token> = all.iter().filter(|t| !is_filler_word(&t.text)).collect();
        let joined = toks
            .iter()
            .map(|_| [OnceCell::new(), OnceCell::new()])
            .collect();
        let sigs: Vec<Sig> = toks.iter().map(|t| signature(t)).collect();
        let mut by_first = vec![Vec::new(); 256];
        let mut by_key = Vec::with_capacity(sigs.len());
        for (i, s) in sigs.iter().enumerate() {
            by_first[usize::from(s[0])].push(i);
            if s[1] != s[0] {
                by_first[usize::from(s[1])].push(i);
            }
            if s[3] != 0 {
                by_key.push(([s[2], s[3]], i));
            }
        }
        by_key.sort_unstable();
        View {
            toks,
            sigs,
            by_first,
            by_key,
            joined,
        }
    }

    /// The `m` (2 or 3) tokens from `i` joined, unless a sentence ends inside them.
    fn joined(&self, i: usize, m: usize) -> Option<&Joined> {
        let cell = self.joined.get(i)?.get(m.checked_sub(2)?)?;
        cell.get_or_init(|| {
            if i + m > self.toks.len() || self.toks[i..i + m - 1].iter().any(|t| t.sentence_end) {
                return None;
            }
            let text: String = self.toks[i..i + m]
                .iter()
                .map(|t| t.text.as_str())
                .collect();
            let stem = stem(&text);
            let key = phonetic_key(&stem);
            Some(Joined { stem, key })
        })
        .as_ref()
    }

    /// Byte span in the original text of view tokens `[start, end)`.
    pub fn span(&self, start: usize, end: usize) -> (usize, usize) {
        (self.toks[start].span.0, self.toks[end - 1].span.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(phrase: &str, answer: &str) -> Option<f64> {
        let p = Pattern::new(phrase)?;
        let toks = tokenize(answer);
        let view = View::new(&toks);
        p.find(&view).first().map(|h| h.quality)
    }

    #[test]
    fn exact_and_stemmed() {
        assert_eq!(q("troponin", "send a Troponin"), Some(1.0));
        assert_eq!(q("troponin", "serial troponins"), Some(1.0));
        assert_eq!(q("catheterization", "urgent catheterisation"), Some(1.0));
        assert_eq!(q("stop the antibiotic", "stop antibiotics now"), Some(1.0));
        assert_eq!(
            q("30 ml per kg", "thirty millilitres per kilogram"),
            Some(1.0)
        );
    }

    #[test]
    fn fuzzy_and_phonetic() {
        assert!(q("troponin", "a tropanin level").is_some_and(|x| x >= 0.75));
        assert!(q("troponin", "a trope onin level").is_some_and(|x| x >= 0.7));
        assert!(q("amiodarone", "give amiodarown").is_some());
        assert!(q("anaphylaxis", "this is anafilaxis").is_some());
        assert_eq!(q("lactate", "locate the source"), None);
        assert_eq!(q("cores", "scores"), None);
    }

    #[test]
    fn spaced_and_joined_acronyms() {
        assert_eq!(q("ecg", "a twelve lead e c g"), Some(JOINED));
        assert_eq!(q("e c g", "an ECG now"), Some(JOINED));
        assert_eq!(q("pulseless v t", "pulseless VT"), Some(JOINED));
        assert_eq!(q("sglt2", "an SGLT two inhibitor"), Some(JOINED));
    }

    #[test]
    fn short_words_match_only_exactly() {
        assert_eq!(q("pe", "a pea"), None);
        assert_eq!(q("icu", "I see you"), None);
        assert_eq!(q("asa", "as a rule"), None);
        assert_eq!(q("aki", "aka"), None);
        assert_eq!(q("pe", "exclude a PE"), Some(1.0));
    }

    #[test]
    fn one_inserted_word_is_allowed() {
        assert_eq!(
            q("stop the infusion", "stop the antibiotic infusion"),
            Some(GAP)
        );
        assert_eq!(
            q("stop the infusion", "stop the slow antibiotic infusion"),
            None
        );
        assert_eq!(q("stop the infusion", "stop. The infusion"), None);
        assert_eq!(q("call for help", "call, um, for help"), Some(1.0));
    }
}
