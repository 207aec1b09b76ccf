//! Rule-based sentence splitting, used when converting corpora whose documents
//! are single long paragraphs (SOTU speeches, reviews) into Google BERT's
//! one-sentence-per-line format, so sentence-pair objectives have sentences.

/// Abbreviations after which a period does not end an English sentence.
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "st", "gen", "col", "capt", "lt", "gov", "sen", "rep", "hon", "jr",
    "sr", "no", "vs", "etc", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct",
    "nov", "dec", "prof", "messrs", "viz", "i.e", "e.g", "u.s", "u.s.a", "ft", "mt", "co", "inc",
    "cf", "art", "sec", "vol",
];

/// Splits English text into sentences.
///
/// A sentence ends at `.`, `?` or `!` (plus closing quotes or brackets) followed
/// by white space and an upper-case letter, a digit or an opening quote, unless
/// the word before the period is a known abbreviation or a single letter (an
/// initial). Returned sentences are trimmed and never empty.
pub fn split_english(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'.' || b == b'?' || b == b'!' {
            let mut end = i + 1;
            while end < bytes.len() && matches!(bytes[end], b'"' | b'\'' | b')' | b']') {
                end += 1;
            }
            // Closing curly quotes are three bytes in UTF-8.
            while text[end..].starts_with('\u{201d}') || text[end..].starts_with('\u{2019}') {
                end += 3;
            }
            let rest = &text[end..];
            let trimmed = rest.trim_start();
            let has_space = trimmed.len() < rest.len();
            let next_ok = trimmed.chars().next().is_some_and(|c| {
                c.is_uppercase() || c.is_ascii_digit() || "\"'\u{201c}(".contains(c)
            });
            if has_space && next_ok && !(b == b'.' && is_abbreviation(&text[start..i])) {
                let sentence = text[start..end].trim();
                if !sentence.is_empty() {
                    out.push(sentence);
                }
                start = end;
            }
            i = end;
        } else {
            i += 1;
        }
    }
    let last = text[start..].trim();
    if !last.is_empty() {
        out.push(last);
    }
    out
}

fn is_abbreviation(before: &str) -> bool {
    let word = before
        .rsplit(|c: char| c.is_whitespace() || c == '(' || c == '"')
        .next()
        .unwrap_or("");
    let lower = word.to_lowercase();
    (word.chars().count() == 1 && word.chars().all(|c| c.is_alphabetic()))
        || ABBREVIATIONS.contains(&lower.as_str())
        // "U.S." style: letters separated by periods.
        || (word.len() >= 3 && word.split('.').all(|p| p.chars().count() == 1))
}

/// Splits Chinese text after `。！？；` (and `!?` in full or half width),
/// keeping closing quotes with their sentence. Sentences are trimmed and non-empty.
pub fn split_chinese(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if matches!(c, '。' | '！' | '？' | '；' | '!' | '?') {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if matches!(
                    d,
                    '”' | '’' | '」' | '』' | '）' | ')' | '"' | '。' | '！' | '？' | '!' | '?'
                ) {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let s = text[start..end].trim();
            if !s.is_empty() {
                out.push(s);
            }
            start = end;
        }
    }
    let last = text[start..].trim();
    if !last.is_empty() {
        out.push(last);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn english_sentences_respect_abbreviations_and_initials() {
        let t = "Mr. Smith went to Washington. He met the U.S. Senate! Did J. Adams agree? \"Yes.\" Then 1790 came.";
        assert_eq!(
            split_english(t),
            vec![
                "Mr. Smith went to Washington.",
                "He met the U.S. Senate!",
                "Did J. Adams agree?",
                "\"Yes.\"",
                "Then 1790 came."
            ]
        );
    }

    #[test]
    fn english_does_not_split_lowercase_continuations() {
        assert_eq!(
            split_english("It costs 3.5 dollars. ok then"),
            vec!["It costs 3.5 dollars. ok then"]
        );
    }

    #[test]
    fn chinese_sentences_keep_closing_quotes() {
        assert_eq!(
            split_chinese("他说：“好。”我们走吧！真的？"),
            vec!["他说：“好。”", "我们走吧！", "真的？"]
        );
        assert_eq!(split_chinese("没有句号"), vec!["没有句号"]);
    }
}
