//! Text normalisation and word error rate, shared by tests, the bench and scoring.

/// Lowercases, maps punctuation to spaces (keeping intra-word apostrophes and hyphens as word
/// breaks), and collapses whitespace: "Country, can do." → "country can do".
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        if ch.is_alphanumeric() {
            out.extend(ch.to_lowercase());
        } else if ch == '\'' || ch == '’' {
            // "don't" → "dont": transcripts disagree on apostrophes, not on words.
        } else {
            out.push(' ');
        }
    }
    words(&out).join(" ")
}

/// Hesitation sounds that transcribers drop and references keep.
const HESITATIONS: &[&str] = &["um", "uh", "er", "erm", "ah", "hmm", "mm", "uhm"];

/// Normalisation for word error rate: [`normalize`], then hesitations removed and spelled-out
/// numbers turned into digits ("thirty nine" → "39", "one hundred and twenty" → "120"), since
/// Whisper writes numbers as digits and drops "um".
pub fn normalize_for_wer(text: &str) -> String {
    let base = normalize(&text.replace('%', " percent "));
    let tokens: Vec<&str> = words(&base)
        .into_iter()
        .filter(|w| !HESITATIONS.contains(w))
        .collect();
    let mut out: Vec<String> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        match parse_number(&tokens[i..]) {
            Some((value, used)) => {
                out.push(value.to_string());
                i += used;
            }
            None => {
                out.push(tokens[i].to_string());
                i += 1;
            }
        }
    }
    out.join(" ")
}

fn small_number(word: &str) -> Option<u64> {
    const UNITS: [&str; 20] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ];
    const TENS: [&str; 8] = [
        "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
    ];
    if let Some(i) = UNITS.iter().position(|u| *u == word) {
        return Some(i as u64);
    }
    TENS.iter()
        .position(|t| *t == word)
        .map(|i| 20 + 10 * i as u64)
}

/// Parses a run of number words at the start of `tokens`; returns the value and the number of
/// tokens used. "and" is taken only between number words ("one hundred and twenty").
fn parse_number(tokens: &[&str]) -> Option<(u64, usize)> {
    let mut total = 0u64;
    let mut current = 0u64;
    let mut used = 0;
    let mut any = false;
    let mut last_was_tens = false;
    while used < tokens.len() {
        let w = tokens[used];
        if let Some(n) = small_number(w) {
            // "twenty five" continues; "five five" is two numbers.
            if any && !current.is_multiple_of(10) && !last_was_tens {
                break;
            }
            if any && !current.is_multiple_of(100) && n >= 20 {
                break;
            }
            current += n;
            last_was_tens = n >= 20 && n % 10 == 0;
            any = true;
        } else if w == "hundred" && any {
            current = current.max(1) * 100;
            last_was_tens = false;
        } else if (w == "thousand" || w == "million") && any {
            let scale = if w == "thousand" { 1_000 } else { 1_000_000 };
            total += current.max(1) * scale;
            current = 0;
            last_was_tens = false;
        } else if w == "and"
            && any
            && tokens
                .get(used + 1)
                .is_some_and(|n| small_number(n).is_some())
        {
            // part of the number
        } else {
            break;
        }
        used += 1;
    }
    any.then_some((total + current, used))
}

/// Whitespace-separated words.
pub fn words(text: &str) -> Vec<&str> {
    text.split_whitespace().collect()
}

/// Word-level edit distance between normalised reference and hypothesis, and the reference
/// length: WER = errors / reference words.
pub fn word_errors(reference: &str, hypothesis: &str) -> (usize, usize) {
    let r = normalize_for_wer(reference);
    let h = normalize_for_wer(hypothesis);
    let r: Vec<&str> = words(&r);
    let h: Vec<&str> = words(&h);
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    let mut cur = vec![0; h.len() + 1];
    for (i, rw) in r.iter().enumerate() {
        cur[0] = i + 1;
        for (j, hw) in h.iter().enumerate() {
            let sub = prev[j] + usize::from(rw != hw);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    (prev[h.len()], r.len())
}

/// Word error rate of one hypothesis (0 when both are empty, 1 per inserted word when the
/// reference is empty).
pub fn wer(reference: &str, hypothesis: &str) -> f64 {
    let (errors, n) = word_errors(reference, hypothesis);
    if n == 0 {
        errors as f64
    } else {
        errors as f64 / n as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_case_and_punctuation() {
        assert_eq!(
            normalize("And so, my fellow Americans: ask not!"),
            "and so my fellow americans ask not"
        );
        assert_eq!(normalize("don't  stop"), "dont stop");
    }

    #[test]
    fn numbers_and_hesitations_are_normalised_for_wer() {
        assert_eq!(normalize_for_wer("Um, thirty nine degrees"), "39 degrees");
        assert_eq!(normalize_for_wer("one hundred and twenty"), "120");
        assert_eq!(normalize_for_wer("eighty five over fifty"), "85 over 50");
        assert_eq!(normalize_for_wer("five five"), "5 5");
        assert_eq!(normalize_for_wer("two thousand and twenty six"), "2026");
        assert_eq!(normalize_for_wer("10% and rising"), "10 percent and rising");
        assert_eq!(
            wer(
                "a heart rate of one hundred and twenty",
                "A heart rate of 120."
            ),
            0.0
        );
    }

    #[test]
    fn counts_edits() {
        assert_eq!(word_errors("a b c d", "a x c"), (2, 4));
        assert_eq!(wer("", ""), 0.0);
        assert_eq!(wer("one two", "one two"), 0.0);
        assert!((wer("one two three four", "one three four five") - 0.5).abs() < 1e-9);
    }
}
