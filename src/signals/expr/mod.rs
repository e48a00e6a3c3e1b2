//! `when` conditions of `[signals]` rules: a small, typed expression language over the workload
//! inputs, parsed and checked when presets load and evaluated for each recommendation.
//!
//! ```text
//! condition  := and ("or" and)*
//! and        := not ("and" not)*
//! not        := "not" not | comparison
//! comparison := operand (("==" | "!=" | "<" | "<=" | ">" | ">=") operand
//!                        | "not"? "in" "[" literal ("," literal)* ","? "]")?
//!             | "(" condition ")"
//! operand    := input | "string" | 'string' | number | -number | true | false
//! ```
//!
//! Checked against the inputs' kinds: a choice compares with its own words (or `"unknown"`),
//! a number with numbers, and only a switch (or `true`/`false`) stands alone as a condition — so
//! a typo (`realtim`, `ai == "cor"`) is an error, not a rule that silently never fires.

mod lex;
mod parse;

use super::inputs::{ConditionValue, Values};

/// A checked condition, ready to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition(Node);

/// What is wrong with a condition, and where: `at` is a byte offset into its text.
#[derive(Debug, Clone, PartialEq)]
pub struct ConditionError {
    pub at: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Or(Box<Node>, Box<Node>),
    And(Box<Node>, Box<Node>),
    Not(Box<Node>),
    Compare(Op, Operand, Operand),
    In(Operand, Vec<Operand>),
    Truth(Operand),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    /// The index of an input in [`INPUTS`](super::inputs::INPUTS).
    Input(usize),
    Str(String),
    Num(f64),
    Bool(bool),
}

fn err<T>(at: usize, message: impl Into<String>) -> Result<T, ConditionError> {
    Err(ConditionError {
        at,
        message: message.into(),
    })
}

impl Condition {
    /// Parses and checks a condition.
    pub fn parse(text: &str) -> Result<Self, ConditionError> {
        parse::parse(text).map(Condition)
    }

    /// Whether the condition holds for a workload's `values`.
    pub fn holds(&self, values: &impl Values) -> bool {
        eval(&self.0, values)
    }
}

fn value<'a>(o: &'a Operand, w: &impl Values) -> ConditionValue<'a> {
    match o {
        Operand::Input(i) => w.value_at(*i),
        Operand::Str(s) => ConditionValue::Word(s),
        Operand::Num(n) => ConditionValue::Num(*n),
        Operand::Bool(b) => ConditionValue::Bool(*b),
    }
}

fn eval(node: &Node, w: &impl Values) -> bool {
    match node {
        Node::Or(a, b) => eval(a, w) || eval(b, w),
        Node::And(a, b) => eval(a, w) && eval(b, w),
        Node::Not(a) => !eval(a, w),
        Node::Truth(o) => value(o, w) == ConditionValue::Bool(true),
        Node::In(o, list) => {
            let v = value(o, w);
            list.iter().any(|x| value(x, w) == v)
        }
        Node::Compare(op, a, b) => {
            let (a, b) = (value(a, w), value(b, w));
            match (op, a, b) {
                (Op::Eq, a, b) => a == b,
                (Op::Ne, a, b) => a != b,
                (op, ConditionValue::Num(x), ConditionValue::Num(y)) => match op {
                    Op::Lt => x < y,
                    Op::Le => x <= y,
                    Op::Gt => x > y,
                    _ => x >= y,
                },
                // The checker lets `<` and friends compare numbers only.
                _ => false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> (usize, String) {
        let e = Condition::parse(text).unwrap_err();
        (e.at, e.message)
    }

    #[test]
    fn typos_and_template_syntax_are_errors_with_their_position() {
        assert!(Condition::parse(r#"ai in ["feature", "core"] and peak_rps >= 30000"#).is_ok());
        assert!(Condition::parse("not regulated or p99_ms < 10").is_ok());
        assert!(Condition::parse(r#"(ai == "core" or data != "none") and realtime not in ["some"]"#).is_ok());
        let (pos, msg) = at(r#"realtime == "core" and realtim == "core""#);
        assert_eq!(pos, 23);
        assert!(msg.starts_with("unknown name `realtim`; the inputs are: ai, "), "{msg}");
        let (pos, msg) = at(r#"ai == "cor""#);
        assert_eq!(pos, 6);
        assert!(msg.contains("\"cor\" is not a value of `ai`"), "{msg}");
        assert!(at(r#"ai in ["core", "nope"]"#).1.contains("\"nope\""));
        assert_eq!(
            at("peak_rps | length > 1"),
            (9, "`|` is not allowed in a condition".into())
        );
        assert!(at("ai %} x {% if true").1.contains("`%`"));
        assert!(at("get_env(name='HOME')").1.contains("unknown name `get_env`"));
        assert!(at(r#"ai == "core"#).1.contains("not closed"));
        assert!(at("").1.contains("empty"));
        assert!(at("ai == ").1.contains("value was expected"));
        assert!(at("peak_rps").1.contains("`peak_rps > 0`"));
        assert!(at(r#"peak_rps == "many""#).1.contains("expected a number"));
        assert!(at(r#"ai > 3"#).1.contains("compare numbers"));
        assert!(at("regulated = true").1.contains("`==`"));
        assert!(at("(regulated").1.contains("`)`"));
        assert!(at("regulated)").1.contains("no `(`"));
        assert!(at("serverless regulated").1.contains("expected `and`"));
    }
}
