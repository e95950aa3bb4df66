//! Sound-alike keys and edit distance, so that transcription errors ("tropanin", "trope onin")
//! still match the rubric's terms ("troponin").

/// A Metaphone-like consonant skeleton: the first letter's class, then consonant classes
/// with voiced and unvoiced pairs merged (b/p, d/t, g/k, v/f, z/s) and repeats collapsed.
/// "troponin", "tropanin" and "tropeonin" all give "TRPN".
pub(crate) fn phonetic_key(word: &str) -> String {
    let mut buf = [0u8; 64];
    let mut len = 0;
    for b in word.bytes().filter(u8::is_ascii_alphabetic) {
        if len == buf.len() {
            break;
        }
        buf[len] = b.to_ascii_lowercase();
        len += 1;
    }
    let w = &buf[..len];
    let mut out = String::with_capacity(w.len());
    let mut i = 0;
    // Silent initial letters.
    if w.len() > 2 {
        match (w[0], w[1]) {
            (b'k' | b'g' | b'p', b'n') | (b'w', b'r') | (b'p', b's') => i = 1,
            _ => {}
        }
    }
    let at = |k: usize| w.get(k).copied().unwrap_or(0);
    let front = |c: u8| matches!(c, b'e' | b'i' | b'y');
    let start = i;
    while i < w.len() {
        let c = w[i];
        let next = at(i + 1);
        let code: Option<char> = match c {
            b'a' | b'e' | b'i' | b'o' | b'u' | b'y' => (i == start).then_some('A'),
            b'b' | b'p' => {
                if c == b'p' && next == b'h' {
                    i += 1;
                    Some('F')
                } else if c == b'b' && i + 1 == w.len() && i > 0 && w[i - 1] == b'm' {
                    None
                } else {
                    Some('P')
                }
            }
            b'c' => {
                if next == b'h' {
                    i += 1;
                    Some('X')
                } else if front(next) {
                    Some('S')
                } else {
                    Some('K')
                }
            }
            b'd' => {
                if next == b'g' && front(at(i + 2)) {
                    i += 1;
                    Some('J')
                } else {
                    Some('T')
                }
            }
            b'g' => {
                if next == b'h' {
                    i += 1;
                    None
                } else if front(next) {
                    Some('J')
                } else {
                    Some('K')
                }
            }
            b'h' | b'w' => None,
            b'j' => Some('J'),
            b'k' | b'q' => Some('K'),
            b'l' => Some('L'),
            b'm' => Some('M'),
            b'n' => Some('N'),
            b'r' => Some('R'),
            b's' => {
                if next == b'h' {
                    i += 1;
                    Some('X')
                } else if next == b'i' && matches!(at(i + 2), b'o' | b'a') {
                    Some('X')
                } else {
                    Some('S')
                }
            }
            b't' => {
                if next == b'h' {
                    i += 1;
                    Some('0')
                } else if next == b'i' && matches!(at(i + 2), b'o' | b'a') {
                    Some('X')
                } else {
                    Some('T')
                }
            }
            b'f' | b'v' => Some('F'),
            b'x' => {
                if i == start {
                    Some('S')
                } else {
                    out.push('K');
                    Some('S')
                }
            }
            b'z' => Some('S'),
            _ => None,
        };
        if let Some(code) = code
            && !out.ends_with(code)
        {
            out.push(code);
        }
        i += 1;
    }
    out
}

/// Optimal-string-alignment (restricted Damerau–Levenshtein) distance between two words,
/// by characters, giving up (returning `limit + 1`) once it must exceed `limit`.
pub(crate) fn edit_distance(a: &str, b: &str, limit: usize) -> usize {
    if a.is_ascii() && b.is_ascii() {
        osa(a.as_bytes(), b.as_bytes(), limit)
    } else {
        let a: Vec<char> = a.chars().collect();
        let b: Vec<char> = b.chars().collect();
        osa(&a, &b, limit)
    }
}

/// Rows longer than this fall back to the heap.
const STACK_ROW: usize = 48;

fn osa<T: PartialEq>(a: &[T], b: &[T], limit: usize) -> usize {
    if a.len().abs_diff(b.len()) > limit {
        return limit + 1;
    }
    let n = b.len();
    if n < STACK_ROW {
        let mut rows = [[0u8; STACK_ROW]; 3];
        osa_rows(a, b, limit, &mut rows)
    } else {
        let mut rows = vec![vec![0u16; n + 1]; 3];
        let [r0, r1, r2] = &mut rows[..] else {
            return limit + 1;
        };
        osa_rows_slices(a, b, limit, r0, r1, r2)
    }
}

fn osa_rows<T: PartialEq>(
    a: &[T],
    b: &[T],
    limit: usize,
    rows: &mut [[u8; STACK_ROW]; 3],
) -> usize {
    let [r0, r1, r2] = rows;
    osa_rows_slices(a, b, limit, r0, r1, r2)
}

/// The distance table's rows, three at a time; cells saturate, which is harmless because
/// anything above `limit` is reported as `limit + 1`.
fn osa_rows_slices<T: PartialEq, C: Copy + Into<usize> + TryFrom<usize>>(
    a: &[T],
    b: &[T],
    limit: usize,
    prev2: &mut [C],
    prev: &mut [C],
    cur: &mut [C],
) -> usize {
    let n = b.len();
    let cell = |v: usize| C::try_from(v.min(limit + 1)).ok();
    let (mut prev2, mut prev, mut cur) = (prev2, prev, cur);
    for (j, v) in prev.iter_mut().enumerate().take(n + 1) {
        let Some(c) = cell(j) else { return limit + 1 };
        *v = c;
    }
    for i in 1..=a.len() {
        let Some(c) = cell(i) else { return limit + 1 };
        cur[0] = c;
        let mut row_min = i;
        for j in 1..=n {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (prev[j].into() + 1)
                .min(cur[j - 1].into() + 1)
                .min(prev[j - 1].into() + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(prev2[j - 2].into() + 1);
            }
            let Some(c) = cell(v) else { return limit + 1 };
            cur[j] = c;
            row_min = row_min.min(v);
        }
        if row_min > limit {
            return limit + 1;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[n].into().min(limit + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sound_alikes_share_a_key() {
        assert_eq!(phonetic_key("troponin"), "TRPN");
        assert_eq!(phonetic_key("tropanin"), "TRPN");
        assert_eq!(phonetic_key("tropeonin"), "TRPN");
        assert_eq!(phonetic_key("anaphylaxis"), phonetic_key("anafilaxis"));
        assert_eq!(phonetic_key("bisoprolol"), phonetic_key("bisoprolal"));
        assert_ne!(phonetic_key("lactate"), phonetic_key("locator"));
        assert_eq!(phonetic_key("knee"), "N");
    }

    #[test]
    fn distance_counts_transpositions_once() {
        assert_eq!(edit_distance("troponin", "tropnoin", 3), 1);
        assert_eq!(edit_distance("troponin", "tropanin", 3), 1);
        assert_eq!(edit_distance("kitten", "sitting", 5), 3);
        assert_eq!(edit_distance("abc", "abc", 0), 0);
        assert_eq!(edit_distance("abcdef", "uvwxyz", 2), 3);
        assert_eq!(edit_distance("", "abc", 5), 3);
    }
}
