//! What each [`Kind`] of input does with an answer: parse it, check it, and show it to a
//! condition, a text, the echoed command line and `--json`.

use serde_json::Value;

use super::numbers::{MAX_COUNT, count_from_str, format_count, format_ms, ms_from_str, ms_in_range};
use crate::signals::inputs::{Answer, ConditionValue, Input, Kind, UNKNOWN};

impl Input {
    /// `--peak-rps`.
    pub fn flag(&self) -> String {
        format!("--{}", self.flag)
    }

    /// The `--help` text of the flag.
    pub fn long_help(&self) -> String {
        match &self.kind {
            Kind::Choice { choices, .. } => {
                let words: Vec<String> = choices
                    .iter()
                    .map(|c| {
                        if c.help.is_empty() {
                            c.word.to_string()
                        } else {
                            format!("{} ({})", c.word, c.help)
                        }
                    })
                    .collect();
                format!("{}: {}", self.help, words.join(", "))
            }
            _ => self.help.to_string(),
        }
    }

    /// Parses a value as typed on the command line or in answer to a question; the error is the
    /// reason alone (the caller names the flag). A switch takes no value: `yes`/`true` turn it on.
    pub fn parse(&self, text: &str) -> Result<Answer, String> {
        match &self.kind {
            Kind::Choice { choices, .. } => {
                let t = text.trim().to_ascii_lowercase();
                choices
                    .iter()
                    .find(|c| c.word == t)
                    .map(|c| Answer::Word(c.word))
                    .ok_or_else(|| format!("`{text}` is not one of: {}", self.words().join(", ")))
            }
            Kind::Count => count_from_str(text).map(Answer::Count),
            Kind::Millis => ms_from_str(text).map(Answer::Millis),
            Kind::Switch => match text.trim() {
                "yes" | "true" => Ok(Answer::Yes),
                _ => Err(format!("takes no value (`{text}` given)")),
            },
        }
    }

    /// Checks an answer built in code: of this input's kind, and in range.
    pub fn check(&self, answer: Answer) -> Result<(), String> {
        match (&self.kind, answer) {
            (Kind::Choice { choices, .. }, Answer::Word(w)) if choices.iter().any(|c| c.word == w) => Ok(()),
            (Kind::Count, Answer::Count(n)) if n <= MAX_COUNT => Ok(()),
            (Kind::Count, Answer::Count(n)) => Err(format!(
                "{} is out of range (at most {})",
                format_count(n),
                format_count(MAX_COUNT)
            )),
            (Kind::Millis, Answer::Millis(v)) => ms_in_range(v),
            (Kind::Switch, Answer::Yes) => Ok(()),
            (_, other) => Err(format!("{other:?} is not a value of this input")),
        }
    }

    /// The value a `when` condition sees (see [`Kind`] for unknown answers).
    pub fn value(&self, answer: Option<Answer>) -> ConditionValue<'static> {
        match (&self.kind, answer) {
            (_, Some(Answer::Word(w))) => ConditionValue::Word(w),
            (_, Some(Answer::Count(n))) => ConditionValue::Num(n as f64),
            (_, Some(Answer::Millis(v))) => ConditionValue::Num(v),
            (_, Some(Answer::Yes)) => ConditionValue::Bool(true),
            (Kind::Choice { .. }, None) => ConditionValue::Word(UNKNOWN),
            (Kind::Count | Kind::Millis, None) => ConditionValue::Num(0.0),
            (Kind::Switch, None) => ConditionValue::Bool(false),
        }
    }

    /// How the answer reads in a rule's text (`{peak_rps}` → `40,000`, `{serverless}` → `no`).
    pub fn display(&self, answer: Option<Answer>) -> String {
        match (&self.kind, answer) {
            (_, Some(Answer::Word(w))) => w.to_string(),
            (_, Some(Answer::Count(n))) => format_count(n),
            (_, Some(Answer::Millis(v))) => format_ms(v),
            (_, Some(Answer::Yes)) => "yes".into(),
            (Kind::Switch, None) => "no".into(),
            (_, None) => UNKNOWN.into(),
        }
    }

    /// The answer as `stackwise recommend` takes it (`--peak-rps 40000`); `None` when not given.
    pub fn as_flag(&self, answer: Option<Answer>) -> Option<String> {
        Some(match answer? {
            Answer::Word(w) => format!("{} {w}", self.flag()),
            Answer::Count(n) => format!("{} {n}", self.flag()),
            Answer::Millis(v) => format!("{} {}", self.flag(), format_ms(v)),
            Answer::Yes => self.flag(),
        })
    }

    /// The answer in the `--json` `workload` object: the value, `null` when unknown, a switch
    /// `true` or `false`.
    pub fn to_json(&self, answer: Option<Answer>) -> Value {
        match (&self.kind, answer) {
            (_, Some(Answer::Word(w))) => Value::from(w),
            (_, Some(Answer::Count(n))) => Value::from(n),
            (_, Some(Answer::Millis(v))) => Value::from(v),
            (_, Some(Answer::Yes)) => Value::from(true),
            (Kind::Switch, None) => Value::from(false),
            (_, None) => Value::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signals::inputs::input;

    #[test]
    fn each_kind_reads_the_same_everywhere() {
        let (_, rps) = input("peak_rps").unwrap();
        let a = rps.parse("40k").unwrap();
        assert_eq!(rps.display(Some(a)), "40,000");
        assert_eq!(rps.as_flag(Some(a)).unwrap(), "--peak-rps 40000");
        assert_eq!(rps.value(None), ConditionValue::Num(0.0));
        assert_eq!(rps.display(None), "unknown");
        let (_, ai) = input("ai").unwrap();
        assert_eq!(ai.parse(" Core ").unwrap(), Answer::Word("core"));
        assert!(ai.parse("maybe").unwrap_err().contains("none, feature, core"));
        assert_eq!(ai.value(None), ConditionValue::Word("unknown"));
        assert_eq!(
            ai.long_help(),
            "AI/ML in the product: none, feature (one feature among many), core (the product is built around it)"
        );
        let (_, sl) = input("serverless").unwrap();
        assert_eq!(sl.display(None), "no");
        assert_eq!(sl.to_json(None), Value::from(false));
        assert_eq!(sl.as_flag(Some(Answer::Yes)).unwrap(), "--serverless");
        assert!(rps.check(Answer::Word("core")).is_err());
        assert!(rps.check(Answer::Count(MAX_COUNT + 1)).is_err());
        let (_, p99) = input("p99_ms").unwrap();
        assert!(p99.check(Answer::Millis(0.0)).is_err());
        assert_eq!(p99.as_flag(Some(Answer::Millis(2.5))).unwrap(), "--p99-ms 2.5");
    }
}
