//! Whisper's known failure modes on silence and noise: stock phrases learnt from video
//! subtitles, and loops of one phrase. Segments that look like these are dropped.

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

/// Collapses a phrase repeated three or more times in a row ("I think I think I think ...")
/// to a single occurrence: Whisper's decoding loop, never real speech at that length.
pub fn collapse_repeats(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
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
}
