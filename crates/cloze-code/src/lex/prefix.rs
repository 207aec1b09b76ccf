//! Closing an unfinished source (code up to a cursor) so that it parses:
//! the endings [`endings`] proposes are tried in turn by
//! [`super::Lexer::lex_lenient`], and the lexemes of the added text are
//! dropped.

/// Where a scan of the source ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Code,
    LineComment,
    BlockComment,
    /// Inside a string or character literal opened by this quote.
    Quoted(u8),
    /// Inside a Java text block (`"""`).
    TextBlock,
}

/// The brackets left open at the end of `source` (innermost last) and the
/// state the scan ended in. Strings, characters, text blocks, template
/// strings and comments are skipped; a template string's substitutions are
/// not looked into.
fn scan(source: &[u8]) -> (Vec<u8>, State) {
    let mut open = Vec::new();
    let mut state = State::Code;
    let mut i = 0;
    while i < source.len() {
        let b = source[i];
        match state {
            State::Code => match b {
                b'/' if source.get(i + 1) == Some(&b'/') => {
                    state = State::LineComment;
                    i += 1;
                }
                b'/' if source.get(i + 1) == Some(&b'*') => {
                    state = State::BlockComment;
                    i += 1;
                }
                b'"' if source[i..].starts_with(b"\"\"\"") => {
                    state = State::TextBlock;
                    i += 2;
                }
                b'"' | b'\'' | b'`' => state = State::Quoted(b),
                b'(' | b'[' | b'{' => open.push(b),
                b')' | b']' | b'}' => {
                    open.pop();
                }
                _ => {}
            },
            State::LineComment => {
                if b == b'\n' {
                    state = State::Code;
                }
            }
            State::BlockComment => {
                if b == b'*' && source.get(i + 1) == Some(&b'/') {
                    state = State::Code;
                    i += 1;
                }
            }
            State::Quoted(q) => {
                if b == b'\\' {
                    i += 1;
                } else if b == q || (b == b'\n' && q != b'`') {
                    state = State::Code;
                }
            }
            State::TextBlock => {
                if b == b'\\' {
                    i += 1;
                } else if source[i..].starts_with(b"\"\"\"") {
                    state = State::Code;
                    i += 2;
                }
            }
        }
        i += 1;
    }
    (open, state)
}

/// Texts to append to an unfinished `source`, most likely first: whatever
/// closes an open comment or literal, then a choice of a placeholder
/// operand (`__`), `;`, and the closing brackets of everything left open.
pub(super) fn endings(source: &str) -> Vec<String> {
    let (open, state) = scan(source.as_bytes());
    let close_state = match state {
        State::Code => "",
        State::LineComment => "\n",
        State::BlockComment => "*/",
        State::Quoted(b'"') => "\"",
        State::Quoted(b'\'') => "'",
        State::Quoted(_) => "`",
        State::TextBlock => "\"\"\"",
    };
    let closer = |b: &u8| match b {
        b'(' => ')',
        b'[' => ']',
        _ => '}',
    };
    let all: String = open.iter().rev().map(closer).collect();
    // The brackets up to the innermost open brace, then the rest: a `;`
    // ends the statement between them (`f(a, b` -> `f(a, b);}`).
    let inner_len = all.find('}').unwrap_or(all.len());
    let (inner, outer) = all.split_at(inner_len);
    let mut out = Vec::new();
    for filler in ["", " __"] {
        for ending in [
            format!("{filler}{all}"),
            format!("{filler};{all}"),
            format!("{filler}{inner};{outer}"),
        ] {
            let text = format!("{close_state}{ending}");
            if !out.contains(&text) {
                out.push(text);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_brackets_and_states() {
        assert_eq!(
            scan(b"class A { void f() { g(1, \"x)\""),
            (b"{{(".to_vec(), State::Code)
        );
        assert_eq!(scan(b"a = \"unfinished").1, State::Quoted(b'"'));
        assert_eq!(scan(b"x /* note").1, State::BlockComment);
        assert_eq!(scan(b"{ // }").0, b"{".to_vec());
        let e = endings("class A { void f() { g(1");
        assert!(e.contains(&")}}".to_string()), "{e:?}");
        assert!(e.contains(&");}}".to_string()), "{e:?}");
        assert!(e.contains(&" __);}}".to_string()), "{e:?}");
    }
}
