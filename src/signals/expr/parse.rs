//! The parser of conditions, which checks each operand against the inputs' kinds as it goes.

use super::lex::{Tok, lex};
use super::{ConditionError, Node, Op, Operand, err};
use crate::signals::inputs::{INPUTS, Kind, UNKNOWN, input, names};

/// Parses and checks a condition.
pub(super) fn parse(text: &str) -> Result<Node, ConditionError> {
    if text.trim().is_empty() {
        return err(0, "the condition is empty");
    }
    let (toks, unreadable) = lex(text);
    let mut p = Parser {
        toks,
        pos: 0,
        saw_end: Default::default(),
    };
    let parsed = p.condition().and_then(|node| match p.peek() {
        Tok::End => Ok(node),
        Tok::Close => err(p.at(), "this `)` has no `(`"),
        _ => err(p.at(), "expected `and`, `or` or the end of the condition"),
    });
    match (parsed, unreadable) {
        (Err(e), Some(_)) if !p.saw_end.get() => Err(e),
        (_, Some(u)) => Err(u),
        (parsed, None) => parsed,
    }
}

/// The kind of value an operand has, for the checks.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Type {
    Bool,
    Num,
    /// A word; `Some(i)` when it is the choice input `i`, whose words are the only valid values.
    Word(Option<usize>),
}

impl Type {
    fn name(self) -> &'static str {
        match self {
            Type::Bool => "true or false",
            Type::Num => "a number",
            Type::Word(_) => "a word",
        }
    }
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    /// Set once the parser has looked at the end: an error after that may be only the
    /// consequence of text the lexer could not read.
    saw_end: std::cell::Cell<bool>,
}

impl Parser {
    fn peek(&self) -> &Tok {
        let t = &self.toks[self.pos].1;
        if *t == Tok::End {
            self.saw_end.set(true);
        }
        t
    }
    fn at(&self) -> usize {
        self.toks[self.pos].0
    }
    fn next(&mut self) -> (usize, Tok) {
        self.peek();
        let t = self.toks[self.pos].clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }
    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Tok::Word(x) if x == w)
    }

    fn condition(&mut self) -> Result<Node, ConditionError> {
        let mut left = self.and()?;
        while self.is_word("or") {
            self.next();
            left = Node::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Node, ConditionError> {
        let mut left = self.not()?;
        while self.is_word("and") {
            self.next();
            left = Node::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Node, ConditionError> {
        if self.is_word("not") {
            self.next();
            return Ok(Node::Not(Box::new(self.not()?)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Node, ConditionError> {
        if *self.peek() == Tok::Open {
            self.next();
            let inner = self.condition()?;
            return match self.next() {
                (_, Tok::Close) => Ok(inner),
                (at, _) => err(at, "expected `)`"),
            };
        }
        let (left_at, left, left_type) = self.operand()?;
        match self.peek().clone() {
            Tok::Op(op) => {
                self.next();
                let (right_at, right, right_type) = self.operand()?;
                let ordered = !matches!(op, Op::Eq | Op::Ne);
                if ordered && (left_type != Type::Num || right_type != Type::Num) {
                    let (at, t) = if left_type != Type::Num {
                        (left_at, left_type)
                    } else {
                        (right_at, right_type)
                    };
                    return err(
                        at,
                        format!("`<` `<=` `>` `>=` compare numbers, and this is {}", t.name()),
                    );
                }
                check_same(left_type, (right_at, &right, right_type))?;
                check_same(right_type, (left_at, &left, left_type))?;
                Ok(Node::Compare(op, left, right))
            }
            Tok::Word(w) if w == "in" || w == "not" => {
                let negated = w == "not";
                self.next();
                if negated && !self.is_word("in") {
                    return err(self.at(), "expected `in` after `not`");
                }
                if negated {
                    self.next();
                }
                if left_type == Type::Bool {
                    return err(left_at, "`in` needs a word or a number on its left");
                }
                let list = self.list(left_type)?;
                let node = Node::In(left, list);
                Ok(if negated { Node::Not(Box::new(node)) } else { node })
            }
            _ if left_type == Type::Bool => Ok(Node::Truth(left)),
            _ => {
                let hint = match left {
                    Operand::Input(i) if left_type == Type::Num => format!(
                        "`{}` is a number: compare it, e.g. `{} > 0`",
                        INPUTS[i].name, INPUTS[i].name
                    ),
                    Operand::Input(i) => format!(
                        "`{}` is a word: compare it, e.g. `{} == \"{}\"`",
                        INPUTS[i].name,
                        INPUTS[i].name,
                        INPUTS[i].words().first().copied().unwrap_or(UNKNOWN)
                    ),
                    _ => "a value alone is not a condition: compare it with `==`".into(),
                };
                err(left_at, hint)
            }
        }
    }

    fn list(&mut self, item: Type) -> Result<Vec<Operand>, ConditionError> {
        match self.next() {
            (_, Tok::OpenList) => {}
            (at, _) => return err(at, "expected a list such as `[\"some\", \"core\"]` after `in`"),
        }
        let mut items = Vec::new();
        loop {
            if *self.peek() == Tok::CloseList {
                self.next();
                break;
            }
            let (at, value, t) = self.operand()?;
            if matches!(value, Operand::Input(_)) {
                return err(at, "a list holds literal values, not inputs");
            }
            check_same(item, (at, &value, t))?;
            items.push(value);
            match self.next() {
                (_, Tok::Comma) => {}
                (_, Tok::CloseList) => break,
                (at, _) => return err(at, "expected `,` or `]`"),
            }
        }
        if items.is_empty() {
            return err(self.at(), "the list is empty");
        }
        Ok(items)
    }

    fn operand(&mut self) -> Result<(usize, Operand, Type), ConditionError> {
        let (at, tok) = self.next();
        Ok(match tok {
            Tok::Str(s) => (at, Operand::Str(s), Type::Word(None)),
            Tok::Num(n) => (at, Operand::Num(n), Type::Num),
            Tok::Minus => match self.next() {
                (_, Tok::Num(n)) => (at, Operand::Num(-n), Type::Num),
                _ => return err(at, "`-` only negates a number"),
            },
            Tok::Word(w) if w == "true" || w == "false" => (at, Operand::Bool(w == "true"), Type::Bool),
            Tok::Word(w) if ["and", "or", "not", "in"].contains(&w.as_str()) => {
                return err(at, format!("expected a value before `{w}`"));
            }
            Tok::Word(w) => {
                let Some((i, input)) = input(&w) else {
                    return err(at, format!("unknown name `{w}`; the inputs are: {}", names()));
                };
                let t = match input.kind {
                    Kind::Choice { .. } => Type::Word(Some(i)),
                    Kind::Count | Kind::Millis => Type::Num,
                    Kind::Switch => Type::Bool,
                };
                (at, Operand::Input(i), t)
            }
            Tok::End => return err(at, "the condition ends where a value was expected"),
            _ => return err(at, "expected a value (an input, a string or a number)"),
        })
    }
}

/// Checks that `value` (of type `t`) can be compared with something of type `expected`: the same
/// kind, and a word one of the choice input's words.
fn check_same(expected: Type, (at, value, t): (usize, &Operand, Type)) -> Result<(), ConditionError> {
    let same_kind = matches!(
        (expected, t),
        (Type::Bool, Type::Bool) | (Type::Num, Type::Num) | (Type::Word(_), Type::Word(_))
    );
    if !same_kind {
        return err(at, format!("expected {}, found {}", expected.name(), t.name()));
    }
    if let (Type::Word(Some(i)), Operand::Str(s)) = (expected, value) {
        let words = INPUTS[i].words();
        if s != UNKNOWN && !words.contains(&s.as_str()) {
            return err(
                at,
                format!(
                    "\"{s}\" is not a value of `{}`; its values are: {}, {UNKNOWN}",
                    INPUTS[i].name,
                    words.join(", ")
                ),
            );
        }
    }
    Ok(())
}
