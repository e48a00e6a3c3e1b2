//! The tokens of a condition.

use super::{ConditionError, Op};

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Word(String),
    Str(String),
    Num(f64),
    Op(Op),
    Minus,
    Open,
    Close,
    OpenList,
    CloseList,
    Comma,
    End,
}

/// Splits a condition into tokens, ending with [`Tok::End`]. Where a character cannot be read,
/// the tokens stop there (with `End` at that place) and the problem is returned beside them, so
/// that a problem the parser finds earlier (an unknown name) can be reported first.
pub(super) fn lex(text: &str) -> (Vec<(usize, Tok)>, Option<ConditionError>) {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    let stop = |mut out: Vec<(usize, Tok)>, at: usize, message: String| {
        out.push((at, Tok::End));
        (out, Some(ConditionError { at, message }))
    };
    while let Some((at, c)) = chars.next() {
        let tok = match c {
            c if c.is_whitespace() => continue,
            '"' | '\'' => {
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some((_, d)) if d == c => break,
                        Some((_, d)) => s.push(d),
                        None => return stop(out, at, "a string is not closed".into()),
                    }
                }
                Tok::Str(s)
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut w = String::from(c);
                while let Some(&(_, d)) = chars.peek().filter(|(_, d)| d.is_ascii_alphanumeric() || *d == '_') {
                    w.push(d);
                    chars.next();
                }
                Tok::Word(w)
            }
            c if c.is_ascii_digit() => {
                let mut n = String::from(c);
                while let Some(&(_, d)) = chars
                    .peek()
                    .filter(|(_, d)| d.is_ascii_digit() || *d == '.' || *d == '_')
                {
                    if d != '_' {
                        n.push(d);
                    }
                    chars.next();
                }
                match n.parse() {
                    Ok(v) => Tok::Num(v),
                    Err(_) => return stop(out, at, format!("`{n}` is not a number")),
                }
            }
            '=' | '!' | '<' | '>' => {
                let eq = chars.next_if(|(_, d)| *d == '=').is_some();
                Tok::Op(match (c, eq) {
                    ('=', true) => Op::Eq,
                    ('!', true) => Op::Ne,
                    ('<', false) => Op::Lt,
                    ('<', true) => Op::Le,
                    ('>', false) => Op::Gt,
                    ('>', true) => Op::Ge,
                    _ => return stop(out, at, format!("`{c}` is not an operator; write `==` or `!=`")),
                })
            }
            '-' => Tok::Minus,
            '(' => Tok::Open,
            ')' => Tok::Close,
            '[' => Tok::OpenList,
            ']' => Tok::CloseList,
            ',' => Tok::Comma,
            other => return stop(out, at, format!("`{other}` is not allowed in a condition")),
        };
        out.push((at, tok));
    }
    out.push((text.len(), Tok::End));
    (out, None)
}
