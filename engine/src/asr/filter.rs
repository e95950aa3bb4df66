//! Whisper's known failure modes on silence and noise: stock phrases learnt from video
//! subtitles, and loops of one phrase or of a few letters. Segments that look like the first
//! are dropped; loops are collapsed to one copy.

use super::Segment;
use crate::text::normalize;

/// Phrases Whisper produces from silence or noise (normalised form). A segment consisting of
/// only one of these is dropped; real answers never consist of them alone.
const STOCK_PHRASES: &[&str] = &[
    "thanks for watching",
    "thank you for watching",
    "thanks for watching and see you next time",
    "see you in the next video",
    "see you next time",
    "please subscribe",
    "like and subscribe",
    "subtitles by the amara org community",
    "thank you",
    "thank you so much",
    "you",
    "bye",
    "music",
    "applause",
    "silence",
    "blank audio",
    "inaudible",
    "the end",
];

/// Above this no-speech probability a segment is considered noise.
const NO_SPEECH_DROP: f32 = 0.6;

/// Whether a segment is a hallucination that must not reach the transcript.
pub fn is_hallucination(segment: &Segment) -> bool {
    let text = normalize(&segment.text);
    if text.is_empty() {
        return true;
    }
    // Bracketed non-speech annotations: "[BLANK_AUDIO]", "(music)".
    let trimmed = segment.text.trim();
    if (trimmed.starts_with('[') && trimmed.ends_with(']'))
        || (trimmed.starts_with('(') && trimmed.ends_with(')'))
        || trimmed.starts_with('♪')
    {
        return true;
    }
    if STOCK_PHRASES.contains(&text.as_str()) {
        return true;
    }
    segment.no_speech_prob > NO_SPEECH_DROP && text.split(' ').count() <= 3
}

/// Fewest back-to-back copies of a few letters inside one word that make a loop: a stutter
/// ("t-t-the", "ha-ha-ha") has two or three; whisper's loops ("make-t-t-t-t-…") run to dozens.
const MIN_IN_WORD_REPEATS: usize = 5;

/// Longest repeated unit inside a word, in characters.
const MAX_IN_WORD_UNIT: usize = 8;

/// Collapses a run of [`MIN_IN_WORD_REPEATS`] or more copies of a unit of 2 to
/// [`MAX_IN_WORD_UNIT`] characters inside a word ("make-t-t-t-t-t-t" → "make-t") to one copy.
/// Units without a letter are left alone, so long numbers ("100000000") keep their digits.
fn collapse_in_word(word: &str) -> String {
    let chars: Vec<char> = word.chars().collect();
    let mut out = String::with_capacity(word.len());
    let mut i = 0;
    'outer: while i < chars.len() {
        for n in 2..=MAX_IN_WORD_UNIT {
            if i + n * MIN_IN_WORD_REPEATS > chars.len() {
                break;
            }
            let unit = &chars[i..i + n];
            if !unit.iter().any(|c| c.is_alphabetic()) {
                continue;
            }
            let mut reps = 1;
            while chars
                .get(i + reps * n..i + (reps + 1) * n)
                .is_some_and(|next| next == unit)
            {
                reps += 1;
            }
            if reps >= MIN_IN_WORD_REPEATS {
                out.extend(unit);
                i += reps * n;
                continue 'outer;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// Collapses a phrase repeated three or more times in a row ("I think I think I think ...")
/// to a single occurrence, and a few letters repeated five or more times inside a word
/// ("make-t-t-t-t-t-t the") to one copy: Whisper's decoding loops, never real speech at
/// that length.
pub fn collapse_repeats(text: &str) -> String {
    let owned: Vec<String> = text.split_whitespace().map(collapse_in_word).collect();
    let words: Vec<&str> = owned.iter().map(String::as_str).collect();
    let mut out: Vec<&str> = Vec::with_capacity(words.len());
    let mut i = 0;
    'outer: while i < words.len() {
        for n in 1..=8usize {
            if i + 3 * n > words.len() {
                break;
            }
            let unit = &words[i..i + n];
            let key = |w: &[&str]| normalize(&w.join(" "));
            let unit_key = key(unit);
            if unit_key.is_empty() {
                continue;
            }
            let mut reps = 1;
            while i + (reps + 1) * n <= words.len()
                && key(&words[i + reps * n..i + (reps + 1) * n]) == unit_key
            {
                reps += 1;
            }
            // One word repeated twice is normal speech ("very very"); loops are longer.
            if reps >= 3 && (n > 1 || reps >= 4) {
                out.extend_from_slice(unit);
                i += reps * n;
                continue 'outer;
            }
        }
        out.push(words[i]);
        i += 1;
    }
    out.join(" ")
}

/// Filters one decoder output: hallucinated segments removed, loops collapsed.
pub fn clean_segments(segments: Vec<Segment>) -> Vec<Segment> {
    segments
        .into_iter()
        .filter(|s| !is_hallucination(s))
        .map(|mut s| {
            s.text = collapse_repeats(&s.text);
            s
        })
        .filter(|s| !s.text.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(text: &str, p: f32) -> Segment {
        Segment {
            start_s: 0.0,
            end_s: 1.0,
            text: text.into(),
            no_speech_prob: p,
        }
    }

    #[test]
    fn stock_phrases_and_annotations_are_dropped() {
        for t in [
            "Thanks for watching!",
            " [BLANK_AUDIO]",
            "(music)",
            "See you in the next video.",
            "you",
        ] {
            assert!(is_hallucination(&seg(t, 0.1)), "{t}");
        }
        assert!(!is_hallucination(&seg(
            "Thank you for the question, I would start with an ECG.",
            0.1
        )));
        assert!(is_hallucination(&seg("Okay.", 0.9)));
        assert!(!is_hallucination(&seg("Okay.", 0.1)));
    }

    #[test]
    fn loops_collapse_but_normal_repeats_stay() {
        assert_eq!(
            collapse_repeats("I think I think I think I think that"),
            "I think that"
        );
        assert_eq!(collapse_repeats("very very good"), "very very good");
        assert_eq!(collapse_repeats("no no no no no"), "no");
        assert_eq!(collapse_repeats("the the cat"), "the the cat");
    }

    #[test]
    fn loops_inside_a_word_collapse_but_stutters_and_numbers_stay() {
        // Seen in a live run under load: a final of "or you know, make the time out longer".
        let looped = format!("or you know, make{} the time out longer", "-t".repeat(96));
        assert_eq!(
            collapse_repeats(&looped),
            "or you know, make-t the time out longer"
        );
        for kept in [
            "t-t-the patient",
            "ha-ha-ha, no",
            "about 100000000 dollars",
            "Mmmmmm, let me think",
            "bookkeeper",
        ] {
            assert_eq!(collapse_repeats(kept), kept);
        }
    }
}
