//! Answer features that do not depend on the item: reasoning markers, fillers, restarts,
//! sentence lengths, specificity and the stopword list used for relevance.

use std::sync::LazyLock;

use super::tokens::{Token, is_unit, stem};

/// A kind of reasoning move signalled by a connective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Marker {
    /// because, therefore, so that, which means.
    Causal,
    /// if, unless, depends, otherwise.
    Conditional,
    /// but, however, versus, trade-off, on the other hand.
    Contrast,
    /// first, then, next, finally.
    Sequence,
    /// check, confirm, rule out, risk, differential.
    Evaluation,
}

impl Marker {
    /// All kinds, in a fixed order.
    pub const ALL: [Marker; 5] = [
        Marker::Causal,
        Marker::Conditional,
        Marker::Contrast,
        Marker::Sequence,
        Marker::Evaluation,
    ];
}

/// A marker found in the answer: its kind and token range `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct MarkerHit {
    /// What kind of move.
    pub kind: Marker,
    /// First token.
    pub start: usize,
    /// One past the last token.
    pub end: usize,
}

const MARKERS: &[(&str, Marker)] = &[
    ("because", Marker::Causal),
    ("since", Marker::Causal),
    ("so that", Marker::Causal),
    ("therefore", Marker::Causal),
    ("thus", Marker::Causal),
    ("hence", Marker::Causal),
    ("which means", Marker::Causal),
    ("that means", Marker::Causal),
    ("this means", Marker::Causal),
    ("means that", Marker::Causal),
    ("due to", Marker::Causal),
    ("leads to", Marker::Causal),
    ("lead to", Marker::Causal),
    ("caused by", Marker::Causal),
    ("as a result", Marker::Causal),
    ("in order to", Marker::Causal),
    ("the reason", Marker::Causal),
    ("that's why", Marker::Causal),
    ("explains", Marker::Causal),
    ("if", Marker::Conditional),
    ("unless", Marker::Conditional),
    ("otherwise", Marker::Conditional),
    ("depends", Marker::Conditional),
    ("depending on", Marker::Conditional),
    ("it turns on", Marker::Conditional),
    ("provided", Marker::Conditional),
    ("assuming", Marker::Conditional),
    ("as long as", Marker::Conditional),
    ("in case", Marker::Conditional),
    ("whether", Marker::Conditional),
    ("when", Marker::Conditional),
    ("only if", Marker::Conditional),
    ("but", Marker::Contrast),
    ("however", Marker::Contrast),
    ("although", Marker::Contrast),
    ("though", Marker::Contrast),
    ("whereas", Marker::Contrast),
    ("on the other hand", Marker::Contrast),
    ("trade off", Marker::Contrast),
    ("tradeoff", Marker::Contrast),
    ("versus", Marker::Contrast),
    ("vs", Marker::Contrast),
    ("compared to", Marker::Contrast),
    ("compared with", Marker::Contrast),
    ("instead", Marker::Contrast),
    ("alternatively", Marker::Contrast),
    ("downside", Marker::Contrast),
    ("rather than", Marker::Contrast),
    ("balance", Marker::Contrast),
    ("weigh", Marker::Contrast),
    ("separately", Marker::Contrast),
    ("first", Marker::Sequence),
    ("firstly", Marker::Sequence),
    ("second", Marker::Sequence),
    ("secondly", Marker::Sequence),
    ("third", Marker::Sequence),
    ("thirdly", Marker::Sequence),
    ("then", Marker::Sequence),
    ("next", Marker::Sequence),
    ("finally", Marker::Sequence),
    ("lastly", Marker::Sequence),
    ("after that", Marker::Sequence),
    ("afterwards", Marker::Sequence),
    ("before", Marker::Sequence),
    ("once", Marker::Sequence),
    ("meanwhile", Marker::Sequence),
    ("at the same time", Marker::Sequence),
    ("start with", Marker::Sequence),
    ("starting point", Marker::Sequence),
    ("step", Marker::Sequence),
    ("risk", Marker::Evaluation),
    ("rule out", Marker::Evaluation),
    ("ruling out", Marker::Evaluation),
    ("exclude", Marker::Evaluation),
    ("differential", Marker::Evaluation),
    ("consider", Marker::Evaluation),
    ("check", Marker::Evaluation),
    ("confirm", Marker::Evaluation),
    ("verify", Marker::Evaluation),
    ("measure", Marker::Evaluation),
    ("evidence", Marker::Evaluation),
    ("assess", Marker::Evaluation),
    ("reassess", Marker::Evaluation),
    ("monitor", Marker::Evaluation),
    ("likely", Marker::Evaluation),
    ("unlikely", Marker::Evaluation),
    ("estimate", Marker::Evaluation),
    ("sensitivity", Marker::Evaluation),
    ("validate", Marker::Evaluation),
    ("worst case", Marker::Evaluation),
    ("root cause", Marker::Evaluation),
    ("limitation", Marker::Evaluation),
    ("assumption", Marker::Evaluation),
    ("caveat", Marker::Evaluation),
    ("look for", Marker::Evaluation),
    ("think about", Marker::Evaluation),
];

/// Marker phrases as stem sequences, longest first so "on the other hand" wins over "on".
static MARKER_STEMS: LazyLock<Vec<(Vec<String>, Marker)>> = LazyLock::new(|| {
    let mut v: Vec<(Vec<String>, Marker)> = MARKERS
        .iter()
        .map(|(p, m)| {
            let words = p
                .split_whitespace()
                .map(|w| stem(&w.replace('\'', "")))
                .collect();
            (words, *m)
        })
        .collect();
    v.sort_by_key(|(words, _)| std::cmp::Reverse(words.len()));
    v
});

/// Whether the token starts a sentence.
fn starts_sentence(toks: &[Token], i: usize) -> bool {
    i == 0 || toks[i - 1].sentence_end
}

/// Finds reasoning markers, non-overlapping, left to right. Fillers are skipped.
pub(crate) fn reasoning_markers(toks: &[Token]) -> Vec<MarkerHit> {
    let mut hits = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if is_filler_word(&toks[i].text) {
            i += 1;
            continue;
        }
        // "so" is causal mid-sentence ("..., so the plan shows"), not as an opener or a filler.
        if toks[i].text == "so" {
            let opener = starts_sentence(toks, i) || toks[i].comma_after;
            if !opener {
                hits.push(MarkerHit {
                    kind: Marker::Causal,
                    start: i,
                    end: i + 1,
                });
            }
            i += 1;
            continue;
        }
        let mut matched = false;
        for (words, kind) in MARKER_STEMS.iter() {
            let n = words.len();
            if i + n <= toks.len()
                && words.iter().zip(&toks[i..i + n]).all(|(w, t)| *w == t.stem)
                && toks[i..i + n - 1].iter().all(|t| !t.sentence_end)
            {
                hits.push(MarkerHit {
                    kind: *kind,
                    start: i,
                    end: i + n,
                });
                i += n;
                matched = true;
                break;
            }
        }
        if !matched {
            i += 1;
        }
    }
    hits
}

/// Hesitation sounds that carry no words.
pub(crate) fn is_filler_word(w: &str) -> bool {
    matches!(
        w,
        "um" | "umm" | "uh" | "uhh" | "uhm" | "er" | "erm" | "ah" | "hmm" | "mm" | "eh"
    )
}

/// A filler or restart found in the answer: token range `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Span {
    /// First token.
    pub start: usize,
    /// One past the last token.
    pub end: usize,
}

/// Fillers: hesitation sounds, and "you know", "I mean", "sort of", "kind of", "like" where
/// they are used as fillers rather than as words.
pub(crate) fn fillers(toks: &[Token]) -> Vec<Span> {
    let mut out = Vec::new();
    let mut i = 0;
    let text = |k: usize| toks.get(k).map_or("", |t| t.text.as_str());
    while i < toks.len() {
        let t = &toks[i];
        let prev_pause = i == 0 || toks[i - 1].comma_after || toks[i - 1].sentence_end;
        if is_filler_word(&t.text) {
            out.push(Span {
                start: i,
                end: i + 1,
            });
            i += 1;
            continue;
        }
        let two = (t.text.as_str(), text(i + 1));
        let pause_after_two = toks
            .get(i + 1)
            .is_some_and(|n| n.comma_after || n.sentence_end);
        let filler_pair = match two {
            ("you", "know") | ("i", "mean") => pause_after_two || prev_pause,
            ("sort", "of") | ("kind", "of") => !matches!(
                text(i.wrapping_sub(1)),
                "what" | "a" | "the" | "this" | "that" | "any" | "some" | "which" | "one" | "every"
            ),
            _ => false,
        };
        if filler_pair {
            out.push(Span {
                start: i,
                end: i + 2,
            });
            i += 2;
            continue;
        }
        if t.text == "like" {
            let next_filler = toks.get(i + 1).is_some_and(|n| is_filler_word(&n.text));
            let prev_filler = i > 0 && is_filler_word(&toks[i - 1].text);
            if t.comma_after || next_filler || prev_filler {
                out.push(Span {
                    start: i,
                    end: i + 1,
                });
            }
        }
        i += 1;
    }
    out
}

/// Restarts: a word said twice in a row ("the the", "I I"), or a two-word repeat
/// ("we need we need").
pub(crate) fn restarts(toks: &[Token]) -> Vec<Span> {
    let mut out = Vec::new();
    let words: Vec<usize> = (0..toks.len())
        .filter(|&i| !is_filler_word(&toks[i].text))
        .collect();
    let mut k = 0;
    while k + 1 < words.len() {
        let a = &toks[words[k]];
        let b = &toks[words[k + 1]];
        if a.text == b.text && !a.number && !matches!(a.text.as_str(), "had" | "that" | "very") {
            out.push(Span {
                start: words[k],
                end: words[k + 1] + 1,
            });
            k += 2;
            continue;
        }
        if k + 3 < words.len() {
            let c = &toks[words[k + 2]];
            let d = &toks[words[k + 3]];
            if a.text == c.text && b.text == d.text && a.text != b.text && !a.number {
                out.push(Span {
                    start: words[k],
                    end: words[k + 3] + 1,
                });
                k += 4;
                continue;
            }
        }
        k += 1;
    }
    out
}

/// Words per sentence, fillers excluded; empty when the text has no sentence punctuation
/// (an unpunctuated transcript says nothing about sentence length).
pub(crate) fn sentence_lengths(toks: &[Token]) -> Vec<usize> {
    if !toks.iter().any(|t| t.sentence_end) {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut n = 0;
    for t in toks {
        if !is_filler_word(&t.text) {
            n += 1;
        }
        if t.sentence_end {
            if n > 0 {
                out.push(n);
            }
            n = 0;
        }
    }
    if n > 0 {
        out.push(n);
    }
    out
}

/// Whether a token is specific: a number, a unit or an acronym written in capitals.
pub(crate) fn is_specific(t: &Token) -> bool {
    (t.number && t.specific_number)
        || is_unit(&t.text)
        || (t.acronym && !matches!(t.text.as_str(), "ok" | "okay" | "id" | "im"))
}

/// Common words that say nothing about the topic.
pub(crate) fn is_stopword(w: &str) -> bool {
    matches!(
        w,
        "a" | "about"
            | "above"
            | "actually"
            | "after"
            | "again"
            | "against"
            | "all"
            | "also"
            | "am"
            | "an"
            | "and"
            | "any"
            | "are"
            | "as"
            | "at"
            | "basically"
            | "be"
            | "because"
            | "been"
            | "before"
            | "being"
            | "below"
            | "between"
            | "bit"
            | "both"
            | "but"
            | "by"
            | "can"
            | "cant"
            | "could"
            | "did"
            | "didnt"
            | "do"
            | "does"
            | "doesnt"
            | "doing"
            | "dont"
            | "down"
            | "during"
            | "each"
            | "even"
            | "every"
            | "few"
            | "first"
            | "for"
            | "from"
            | "further"
            | "get"
            | "gets"
            | "getting"
            | "go"
            | "going"
            | "good"
            | "got"
            | "guess"
            | "had"
            | "has"
            | "have"
            | "he"
            | "her"
            | "here"
            | "him"
            | "his"
            | "how"
            | "i"
            | "id"
            | "if"
            | "ill"
            | "im"
            | "in"
            | "into"
            | "is"
            | "isnt"
            | "it"
            | "its"
            | "ive"
            | "just"
            | "kind"
            | "know"
            | "let"
            | "like"
            | "lot"
            | "make"
            | "many"
            | "may"
            | "maybe"
            | "me"
            | "mean"
            | "might"
            | "more"
            | "most"
            | "much"
            | "must"
            | "my"
            | "need"
            | "no"
            | "not"
            | "now"
            | "of"
            | "off"
            | "ok"
            | "okay"
            | "on"
            | "once"
            | "only"
            | "or"
            | "other"
            | "our"
            | "out"
            | "over"
            | "own"
            | "pretty"
            | "probably"
            | "quite"
            | "really"
            | "right"
            | "same"
            | "say"
            | "see"
            | "she"
            | "should"
            | "so"
            | "some"
            | "something"
            | "sort"
            | "still"
            | "such"
            | "sure"
            | "take"
            | "than"
            | "that"
            | "thats"
            | "the"
            | "their"
            | "them"
            | "then"
            | "there"
            | "theres"
            | "these"
            | "they"
            | "theyre"
            | "thing"
            | "things"
            | "think"
            | "this"
            | "those"
            | "through"
            | "to"
            | "too"
            | "under"
            | "until"
            | "up"
            | "us"
            | "very"
            | "want"
            | "was"
            | "way"
            | "we"
            | "well"
            | "were"
            | "what"
            | "when"
            | "where"
            | "whether"
            | "which"
            | "while"
            | "who"
            | "why"
            | "will"
            | "with"
            | "without"
            | "wont"
            | "would"
            | "wouldnt"
            | "yeah"
            | "yes"
            | "you"
            | "your"
            | "youre"
    )
}

/// Words that negate a following claim ("I would never shock asystole").
pub(crate) fn is_negator(w: &str) -> bool {
    matches!(
        w,
        "not"
            | "never"
            | "no"
            | "dont"
            | "doesnt"
            | "didnt"
            | "wouldnt"
            | "shouldnt"
            | "wont"
            | "cant"
            | "cannot"
            | "mustnt"
            | "isnt"
            | "arent"
            | "avoid"
            | "without"
            | "instead"
            | "rather"
            | "nor"
            | "neither"
            | "myth"
            | "wrong"
            | "mistake"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scoring::tokens::tokenize;

    fn kinds(s: &str) -> Vec<Marker> {
        reasoning_markers(&tokenize(s))
            .into_iter()
            .map(|h| h.kind)
            .collect()
    }

    #[test]
    fn finds_reasoning_markers() {
        assert_eq!(
            kinds("First I check the ECG, because it decides the pathway."),
            [Marker::Sequence, Marker::Evaluation, Marker::Causal]
        );
        assert_eq!(
            kinds("It depends. On the other hand, if it fails we stop."),
            [Marker::Conditional, Marker::Contrast, Marker::Conditional]
        );
        assert_eq!(
            kinds("So, um, I would rule out a dissection."),
            [Marker::Evaluation]
        );
        assert_eq!(
            kinds("It's a trade-off, so that we stay safe"),
            [Marker::Contrast, Marker::Causal]
        );
    }

    #[test]
    fn finds_fillers_but_not_words() {
        let toks = tokenize("Um, I would, you know, give it. Like, uh, a lot.");
        let f = fillers(&toks);
        let words: Vec<&str> = f.iter().map(|s| toks[s.start].text.as_str()).collect();
        assert_eq!(words, ["um", "you", "like", "uh"]);
        let toks = tokenize("What kind of reaction was it? It looks like a rash.");
        assert!(fillers(&toks).is_empty());
    }

    #[test]
    fn finds_restarts() {
        let toks = tokenize("I I would give the the adrenaline, we need we need help");
        assert_eq!(restarts(&toks).len(), 3);
        assert!(restarts(&tokenize("I had had enough")).is_empty());
    }

    #[test]
    fn measures_sentences() {
        assert_eq!(
            sentence_lengths(&tokenize("One two three. Um four five!")),
            [3, 2]
        );
        assert!(sentence_lengths(&tokenize("no punctuation at all here")).is_empty());
    }
}
