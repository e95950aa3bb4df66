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

/// Whitespace-separated words.
pub fn words(text: &str) -> Vec<&str> {
    text.split_whitespace().collect()
}

/// Word-level edit distance between normalised reference and hypothesis, and the reference
/// length: WER = errors / reference words.
pub fn word_errors(reference: &str, hypothesis: &str) -> (usize, usize) {
    let r = normalize(reference);
    let h = normalize(hypothesis);
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
    fn counts_edits() {
        assert_eq!(word_errors("a b c d", "a x c"), (2, 4));
        assert_eq!(wer("", ""), 0.0);
        assert_eq!(wer("one two", "one two"), 0.0);
        assert!((wer("one two three four", "one three four five") - 0.5).abs() < 1e-9);
    }
}
