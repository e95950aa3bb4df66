//! Answer tokenisation for scoring: lowercase words with byte spans into the original text,
//! spoken numbers folded into digits ("three hundred" → "300"), units in one spelling
//! ("millilitres" → "ml"), and a light stem that also folds British and American spelling.

use super::phonetic::phonetic_key;

/// One word of an answer or of a rubric phrase.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Token {
    /// Canonical surface form: lowercase, apostrophes dropped, numbers as digits, units folded.
    pub text: String,
    /// Light stem of `text`, used for equality.
    pub stem: String,
    /// Phonetic key of the stem, used for transcription-error tolerance.
    pub key: String,
    /// Byte range in the original text.
    pub span: (usize, usize),
    /// The token is a number (digits, possibly with a decimal point).
    pub number: bool,
    /// The number was written in digits, or is a spoken number of 3 or more.
    pub specific_number: bool,
    /// Written in capitals in the original (an acronym such as "ECG"), two letters or more.
    pub acronym: bool,
    /// A sentence ends after this token (`.`, `?`, `!`, `;`).
    pub sentence_end: bool,
    /// A comma (or colon, dash) follows this token.
    pub comma_after: bool,
}

impl Token {
    /// Whether the token contains a digit.
    pub fn has_digit(&self) -> bool {
        self.text.bytes().any(|b| b.is_ascii_digit())
    }
}

/// Splits text into tokens with spans, before numbers and units are folded.
fn raw_tokens(text: &str) -> Vec<Token> {
    let mut out: Vec<Token> = Vec::new();
    let mut cur = String::new();
    let mut start = 0usize;
    let mut end = 0usize;
    let mut upper = 0usize;
    let mut lower = 0usize;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let flush = |out: &mut Vec<Token>, cur: &mut String, start, end, upper, lower| {
        if cur.is_empty() {
            return;
        }
        let number = cur.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && cur.bytes().any(|b| b.is_ascii_digit());
        out.push(Token {
            text: std::mem::take(cur),
            stem: String::new(),
            key: String::new(),
            span: (start, end),
            number,
            specific_number: number,
            acronym: upper >= 2 && lower == 0,
            sentence_end: false,
            comma_after: false,
        });
    };
    for (i, &(pos, ch)) in chars.iter().enumerate() {
        let prev = if i > 0 { Some(chars[i - 1].1) } else { None };
        let next = chars.get(i + 1).map(|&(_, c)| c);
        if ch.is_alphanumeric() {
            if cur.is_empty() {
                start = pos;
                upper = 0;
                lower = 0;
            }
            if ch.is_uppercase() {
                upper += 1;
            } else if ch.is_lowercase() {
                lower += 1;
            }
            cur.extend(ch.to_lowercase());
            end = pos + ch.len_utf8();
            continue;
        }
        let between_alnum = !cur.is_empty()
            && prev.is_some_and(char::is_alphanumeric)
            && next.is_some_and(char::is_alphanumeric);
        let between_digits = !cur.is_empty()
            && prev.is_some_and(|c| c.is_ascii_digit())
            && next.is_some_and(|c| c.is_ascii_digit());
        if between_alnum && (ch == '\'' || ch == '’') {
            // "don't" → "dont", as `text::normalize` does.
            continue;
        }
        if between_digits && ch == '.' && !cur.contains('.') {
            cur.push('.');
            continue;
        }
        if between_digits && ch == ',' {
            // "1,000" → "1000"
            continue;
        }
        flush(&mut out, &mut cur, start, end, upper, lower);
        match ch {
            '.' | '?' | '!' | ';' => {
                if let Some(last) = out.last_mut() {
                    last.sentence_end = true;
                }
            }
            ',' | ':' | '—' | '–' | '(' | ')' => {
                if let Some(last) = out.last_mut() {
                    last.comma_after = true;
                }
            }
            '%' => out.push(word_token("percent", (pos, pos + 1))),
            '&' => out.push(word_token("and", (pos, pos + 1))),
            '+' => out.push(word_token("plus", (pos, pos + 1))),
            _ => {}
        }
    }
    flush(&mut out, &mut cur, start, end, upper, lower);
    out
}

fn word_token(text: &str, span: (usize, usize)) -> Token {
    Token {
        text: text.to_string(),
        stem: String::new(),
        key: String::new(),
        span,
        number: false,
        specific_number: false,
        acronym: false,
        sentence_end: false,
        comma_after: false,
    }
}

/// The value of a number word, if it is one.
fn number_word(w: &str) -> Option<u64> {
    Some(match w {
        "zero" => 0,
        "one" => 1,
        "two" => 2,
        "three" => 3,
        "four" => 4,
        "five" => 5,
        "six" => 6,
        "seven" => 7,
        "eight" => 8,
        "nine" => 9,
        "ten" => 10,
        "eleven" => 11,
        "twelve" => 12,
        "thirteen" => 13,
        "fourteen" => 14,
        "fifteen" => 15,
        "sixteen" => 16,
        "seventeen" => 17,
        "eighteen" => 18,
        "nineteen" => 19,
        "twenty" => 20,
        "thirty" => 30,
        "forty" | "fourty" => 40,
        "fifty" => 50,
        "sixty" => 60,
        "seventy" => 70,
        "eighty" => 80,
        "ninety" => 90,
        "hundred" => 100,
        "thousand" => 1000,
        _ => return None,
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Last {
    Start,
    Unit,
    Teen,
    Tens,
    Hundred,
    Thousand,
}

/// Tries to read a spoken number starting at `i`; returns (text, tokens consumed).
fn read_number(toks: &[Token], i: usize) -> Option<(String, usize)> {
    let mut total: u64 = 0;
    let mut current: u64 = 0;
    let mut last = Last::Start;
    let mut j = i;
    let mut decimals = String::new();
    while j < toks.len() {
        let w = toks[j].text.as_str();
        let stop_after = toks[j].sentence_end || toks[j].comma_after;
        if w == "and" {
            let next_is_num = toks
                .get(j + 1)
                .is_some_and(|t| number_word(&t.text).is_some_and(|v| v < 100));
            if matches!(last, Last::Hundred | Last::Thousand) && next_is_num && !stop_after {
                j += 1;
                continue;
            }
            break;
        }
        if w == "point" {
            // "one point four", "point five"
            let mut k = j + 1;
            while let Some(t) = toks.get(k) {
                match number_word(&t.text) {
                    Some(d) if d < 10 => {
                        decimals.push(char::from(b'0' + d as u8));
                        k += 1;
                        if t.sentence_end || t.comma_after {
                            break;
                        }
                    }
                    _ => break,
                }
            }
            if decimals.is_empty() || matches!(last, Last::Hundred | Last::Thousand) {
                decimals.clear();
                break;
            }
            j = k;
            break;
        }
        let Some(v) = number_word(w) else { break };
        let allowed = match v {
            0..=9 => matches!(
                last,
                Last::Start | Last::Tens | Last::Hundred | Last::Thousand
            ),
            10..=90 => matches!(last, Last::Start | Last::Hundred | Last::Thousand),
            100 => matches!(last, Last::Start | Last::Unit | Last::Teen | Last::Tens),
            _ => last != Last::Thousand,
        };
        if !allowed {
            break;
        }
        match v {
            100 => {
                current = current.max(1) * 100;
                last = Last::Hundred;
            }
            1000 => {
                total += current.max(1) * 1000;
                current = 0;
                last = Last::Thousand;
            }
            _ => {
                current += v;
                last = match v {
                    0..=9 => Last::Unit,
                    10..=19 => Last::Teen,
                    _ => Last::Tens,
                };
            }
        }
        j += 1;
        if stop_after {
            break;
        }
    }
    if last == Last::Start && decimals.is_empty() {
        return None;
    }
    if j == i {
        return None;
    }
    let value = total + current;
    let text = if decimals.is_empty() {
        value.to_string()
    } else {
        format!("{value}.{decimals}")
    };
    Some((text, j - i))
}

/// Folds spoken numbers into digit tokens.
fn fold_numbers(mut toks: Vec<Token>) -> Vec<Token> {
    let mut out = Vec::with_capacity(toks.len());
    let mut i = 0;
    while i < toks.len() {
        let first_is_number = number_word(&toks[i].text).is_some()
            || (toks[i].text == "point"
                && toks
                    .get(i + 1)
                    .is_some_and(|t| number_word(&t.text).is_some_and(|v| v < 10)));
        if first_is_number && let Some((text, n)) = read_number(&toks, i) {
            let last = &toks[i + n - 1];
            let specific = n > 1 || text.parse::<f64>().is_ok_and(|v| v >= 3.0);
            out.push(Token {
                text,
                stem: String::new(),
                key: String::new(),
                span: (toks[i].span.0, last.span.1),
                number: true,
                specific_number: specific,
                acronym: false,
                sentence_end: last.sentence_end,
                comma_after: last.comma_after,
            });
            i += n;
            continue;
        }
        out.push(std::mem::take(&mut toks[i]));
        i += 1;
    }
    out
}

/// One spelling per unit.
fn fold_unit(w: &str) -> Option<&'static str> {
    Some(match w {
        "ml" | "mls" | "mil" | "mils" | "millilitre" | "millilitres" | "milliliter"
        | "milliliters" => "ml",
        "mg" | "mgs" | "milligram" | "milligrams" | "milligramme" | "milligrammes" => "mg",
        "mcg" | "ug" | "µg" | "microgram" | "micrograms" => "mcg",
        "kg" | "kgs" | "kilo" | "kilos" | "kilogram" | "kilograms" | "kilogramme" => "kg",
        "litre" | "litres" | "liter" | "liters" => "l",
        "gram" | "grams" | "gramme" | "grammes" => "g",
        "mmol" | "mmols" | "millimole" | "millimoles" | "millimol" => "mmol",
        "cm" | "centimetre" | "centimetres" | "centimeter" | "centimeters" => "cm",
        "mm" | "millimetre" | "millimetres" | "millimeter" | "millimeters" => "mm",
        "percent" | "pct" | "percentage" => "percent",
        "kw" | "kilowatt" | "kilowatts" => "kw",
        "mw" | "megawatt" | "megawatts" => "mw",
        "hz" | "hertz" => "hz",
        "ms" | "millisecond" | "milliseconds" => "ms",
        "min" | "mins" => "minute",
        "hr" | "hrs" => "hour",
        "sec" | "secs" => "second",
        _ => return None,
    })
}

/// Whether a canonical token text is a unit.
pub(crate) fn is_unit(w: &str) -> bool {
    matches!(
        w,
        "ml" | "mg"
            | "mcg"
            | "kg"
            | "l"
            | "g"
            | "mmol"
            | "cm"
            | "mm"
            | "percent"
            | "kw"
            | "mw"
            | "hz"
            | "ms"
            | "kv"
            | "mph"
            | "bps"
    )
}

/// Tokenises text: spans, folded numbers and units, stems and phonetic keys.
pub(crate) fn tokenize(text: &str) -> Vec<Token> {
    let mut toks = fold_numbers(raw_tokens(text));
    // "per cent" → "percent"
    let mut merged: Vec<Token> = Vec::with_capacity(toks.len());
    for t in toks.drain(..) {
        if t.text == "cent"
            && let Some(prev) = merged.last_mut()
            && prev.text == "per"
            && !prev.sentence_end
            && !prev.comma_after
        {
            prev.text = "percent".into();
            prev.span.1 = t.span.1;
            prev.sentence_end = t.sentence_end;
            prev.comma_after = t.comma_after;
            continue;
        }
        merged.push(t);
    }
    for t in &mut merged {
        if let Some(u) = fold_unit(&t.text) {
            t.text = u.to_string();
        }
        t.stem = stem(&t.text);
        t.key = if t.number {
            String::new()
        } else {
            phonetic_key(&t.stem)
        };
    }
    merged
}

/// Folds British spellings into American ones, so both sides of a comparison agree:
/// "catheterisation" → "catheterization", "haemoglobin" → "hemoglobin", "litre" → "liter".
pub(crate) fn fold_spelling(w: &str) -> String {
    let mut s = w.to_string();
    if !s.is_ascii() {
        return s;
    }
    if s.len() >= 6 {
        // ae/oe ligature spellings: haemolysis, oedema, anaesthetist, oesophagus.
        if let Some(rest) = s.strip_prefix("oe") {
            s = format!("e{rest}");
        }
        while let Some(p) = s[1..].find("ae").map(|p| p + 1) {
            s.replace_range(p..p + 2, "e");
        }
        while let Some(p) = s[1..].find("oe").map(|p| p + 1) {
            let next = s[p + 2..].chars().next();
            if next.is_some_and(|c| !"aeiou".contains(c)) {
                s.replace_range(p..p + 2, "e");
            } else {
                break;
            }
        }
    }
    const SWAPS: [(&str, &str); 16] = [
        ("isations", "izations"),
        ("isation", "ization"),
        ("ising", "izing"),
        ("ised", "ized"),
        ("ises", "izes"),
        ("ise", "ize"),
        ("ysing", "yzing"),
        ("ysed", "yzed"),
        ("yse", "yze"),
        ("tres", "ters"),
        ("tre", "ter"),
        ("ours", "ors"),
        ("our", "or"),
        ("ogue", "og"),
        ("ence", "ense"),
        ("yses", "yzes"),
    ];
    for (from, to) in SWAPS {
        if s.len() > from.len() + 1 && s.ends_with(from) {
            if (from == "our" || from == "ours") && s.len() < 6 {
                continue;
            }
            if from == "ence" && !matches!(s.as_str(), "defence" | "licence" | "offence") {
                continue;
            }
            let cut = s.len() - from.len();
            s.truncate(cut);
            s.push_str(to);
            break;
        }
    }
    s
}

fn has_vowel(s: &str) -> bool {
    s.chars().any(|c| "aeiouy".contains(c))
}

/// A light Porter-style stem: plurals, -ing, -ed, -ation/-ion, -ly and a final -e, after
/// folding spelling. Numbers and words of 3 letters or fewer are left alone.
pub(crate) fn stem(w: &str) -> String {
    if w.chars().count() <= 3 || w.bytes().any(|b| b.is_ascii_digit()) {
        return w.to_string();
    }
    let mut s = fold_spelling(w);
    if !s.is_ascii() {
        return s;
    }
    // Plurals.
    if s.ends_with("sses") {
        s.truncate(s.len() - 2);
    } else if s.ends_with("ies") && s.len() > 4 {
        s.truncate(s.len() - 3);
        s.push('y');
    } else if s.ends_with('s')
        && !s.ends_with("ss")
        && !s.ends_with("us")
        && !s.ends_with("is")
        && s.len() > 3
    {
        s.truncate(s.len() - 1);
    }
    // Inflections.
    let mut removed = false;
    if s.ends_with("ing") && s.len() >= 6 && has_vowel(&s[..s.len() - 3]) {
        s.truncate(s.len() - 3);
        removed = true;
    } else if s.ends_with("ed")
        && !s.ends_with("eed")
        && s.len() >= 5
        && has_vowel(&s[..s.len() - 2])
    {
        s.truncate(s.len() - 2);
        removed = true;
    }
    if removed {
        let b = s.as_bytes();
        let n = b.len();
        if n >= 4 && b[n - 1] == b[n - 2] && !b"aeiouslz".contains(&b[n - 1]) {
            s.truncate(n - 1);
        }
    }
    // Derivations.
    // "titration" → "titrat" (as "titrate" → "titrat"), "infusion" → "infus".
    if (s.ends_with("tion") || s.ends_with("sion")) && s.len() > 6 {
        s.truncate(s.len() - 3);
    } else if s.ends_with("ly") && s.len() > 5 {
        s.truncate(s.len() - 2);
    }
    if s.ends_with('e') && s.len() > 4 {
        s.truncate(s.len() - 1);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(s: &str) -> Vec<String> {
        tokenize(s).into_iter().map(|t| t.text).collect()
    }

    #[test]
    fn spans_point_into_the_original() {
        let src = "Give IM adrenaline, 0.5 mg!";
        let toks = tokenize(src);
        let words: Vec<&str> = toks.iter().map(|t| &src[t.span.0..t.span.1]).collect();
        assert_eq!(words, ["Give", "IM", "adrenaline", "0.5", "mg"]);
        assert!(toks[1].acronym);
        assert!(!toks[0].acronym);
        assert!(toks[2].comma_after);
        assert!(toks[4].sentence_end);
    }

    #[test]
    fn folds_spoken_numbers() {
        assert_eq!(texts("three hundred milligrams"), ["300", "mg"]);
        assert_eq!(texts("one hundred and twenty"), ["120"]);
        assert_eq!(texts("thirty mils per kilo"), ["30", "ml", "per", "kg"]);
        assert_eq!(texts("30 mL/kg"), ["30", "ml", "kg"]);
        assert_eq!(texts("one point four million"), ["1.4", "million"]);
        assert_eq!(texts("point five milligrams"), ["0.5", "mg"]);
        assert_eq!(texts("twenty four hours"), ["24", "hours"]);
        assert_eq!(texts("fifteen percent, 15% or 15 per cent"), {
            ["15", "percent", "15", "percent", "or", "15", "percent"]
        });
        assert_eq!(texts("a hundred and fifty thousand hours"), {
            ["a", "150000", "hours"]
        });
        // Digits that cannot combine stay apart.
        assert_eq!(texts("two two"), ["2", "2"]);
        assert_eq!(texts("1,000 units"), ["1000", "units"]);
    }

    #[test]
    fn stems_fold_spelling_and_inflection() {
        assert_eq!(stem("troponins"), stem("troponin"));
        assert_eq!(stem("catheterisation"), stem("catheterization"));
        assert_eq!(stem("haemolysed"), stem("hemolyzed"));
        assert_eq!(stem("oedema"), stem("edema"));
        assert_eq!(stem("stabilise"), stem("stabilize"));
        assert_eq!(stem("titrating"), stem("titrate"));
        assert_eq!(stem("infusion"), stem("infuse"));
        assert_eq!(stem("parameterised"), stem("parameterized"));
        assert_eq!(stem("therapies"), stem("therapy"));
        assert_eq!(stem("centimetres"), stem("centimeter"));
        assert_ne!(stem("cores"), stem("scores"));
        assert_eq!(stem("bleeding"), "bleed");
    }
}
