//! What is known about a workload: one optional [`Answer`] per row of [`INPUTS`].

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::numbers::format_count;
use crate::error::{Error, Result};
use crate::signals::inputs::{Answer, ConditionValue, INPUTS, Input, Values, input};

/// Serverless functions do not hold long-lived connections; at this many it is a contradiction.
pub const SERVERLESS_MAX_CONNECTIONS: u64 = 10_000;

/// What is known about the workload. Every input starts unknown (a switch: off).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Workload {
    answers: [Option<Answer>; INPUTS.len()],
}

impl Workload {
    /// Records the answer for the input called `name`; the error names the flag.
    pub fn set(&mut self, name: &str, answer: Answer) -> Result<()> {
        let (i, input) = input(name).ok_or_else(|| Error::workload(format!("no workload input is called `{name}`")))?;
        input
            .check(answer)
            .map_err(|why| Error::workload(format!("{}: {why}", input.flag())))?;
        self.answers[i] = Some(answer);
        Ok(())
    }

    /// [`Workload::set`], chained.
    pub fn with(mut self, name: &str, answer: Answer) -> Result<Self> {
        self.set(name, answer)?;
        Ok(self)
    }

    /// The answer for `name` (`None`: unknown, or an input of that name does not exist).
    pub fn get(&self, name: &str) -> Option<Answer> {
        input(name).and_then(|(i, _)| self.answers[i])
    }

    /// Every input with its answer, in table order.
    pub fn entries(&self) -> impl Iterator<Item = (&'static Input, Option<Answer>)> + '_ {
        INPUTS.iter().zip(self.answers.iter().copied())
    }

    /// True when nothing at all is known (no signal given).
    pub fn is_unknown(&self) -> bool {
        self.answers.iter().all(Option::is_none)
    }

    /// How the input called `name` reads in a rule's text; `None` for a name that is no input.
    pub fn display(&self, name: &str) -> Option<String> {
        input(name).map(|(i, input)| input.display(self.answers[i]))
    }

    /// The flags that describe this workload, as `stackwise recommend` takes them.
    pub fn to_flags(&self) -> Vec<String> {
        self.entries().filter_map(|(input, a)| input.as_flag(a)).collect()
    }

    /// Rejects combinations of answers that contradict each other.
    pub fn validate(&self) -> Result<()> {
        let connections = match self.get("connections") {
            Some(Answer::Count(c)) => Some(c),
            _ => None,
        };
        if self.get("serverless") == Some(Answer::Yes)
            && let Some(c) = connections
            && c >= SERVERLESS_MAX_CONNECTIONS
        {
            return Err(Error::Workload {
                reason: format!(
                    "--serverless contradicts --connections {}: serverless functions do not hold long-lived \
                     connections, and {} or more open at once need a long-running service",
                    format_count(c),
                    format_count(SERVERLESS_MAX_CONNECTIONS)
                ),
                hint: Some(
                    "drop --serverless, or give the request rate with --peak-rps instead of --connections".into(),
                ),
            });
        }
        if self.get("realtime") == Some(Answer::Word("core")) && connections == Some(0) {
            return Err(Error::Workload {
                reason: "--realtime core contradicts --connections 0: a real-time product holds open connections"
                    .into(),
                hint: Some("give the expected number of concurrent connections, or leave --connections out".into()),
            });
        }
        Ok(())
    }
}

/// The `--json` `workload` object: every input by name, in table order.
impl Values for Workload {
    /// The value the `i`-th input has in a `when` condition.
    fn value_at(&self, i: usize) -> ConditionValue<'static> {
        INPUTS[i].value(self.answers[i])
    }
}

impl Serialize for Workload {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(INPUTS.len()))?;
        for (input, answer) in self.entries() {
            map.serialize_entry(input.name, &input.to_json(answer))?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signals::expr::Condition;
    use crate::signals::interpolate;

    #[test]
    fn answers_are_checked_against_their_input() {
        let w = Workload::default().with("peak_rps", Answer::Count(40_000)).unwrap();
        assert_eq!(w.get("peak_rps"), Some(Answer::Count(40_000)));
        assert_eq!(w.display("peak_rps").unwrap(), "40,000");
        assert_eq!(w.to_flags(), ["--peak-rps 40000"]);
        assert!(!w.is_unknown() && Workload::default().is_unknown());
        let e = Workload::default()
            .with("ai", Answer::Word("maybe"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--ai"), "{e}");
        assert!(Workload::default().with("nope", Answer::Yes).is_err());
        assert!(w.display("nope").is_none());
        let json = serde_json::to_value(&w).unwrap();
        assert_eq!(json["peak_rps"], 40_000);
        assert_eq!(json["ai"], serde_json::Value::Null);
        assert_eq!(json["serverless"], false);
    }

    #[test]
    fn contradictions_are_rejected() {
        let w = Workload::default()
            .with("serverless", Answer::Yes)
            .unwrap()
            .with("connections", Answer::Count(200_000))
            .unwrap();
        let e = w.validate().unwrap_err();
        assert!(e.to_string().contains("--serverless"), "{e}");
        // The way out is the hint, printed on a line of its own, not part of the message.
        assert!(!e.to_string().contains("hint"), "{e}");
        assert!(e.hint().is_some_and(|h| h.starts_with("drop --serverless")), "{e:?}");
        let w = Workload::default()
            .with("realtime", Answer::Word("core"))
            .unwrap()
            .with("connections", Answer::Count(0))
            .unwrap();
        let e = w.validate().unwrap_err();
        assert!(
            e.to_string().contains("--connections 0") && !e.to_string().contains('\n'),
            "{e}"
        );
        assert!(e.hint().is_some(), "{e:?}");
        let w = Workload::default().with("connections", Answer::Count(0)).unwrap();
        assert!(w.validate().is_ok());
    }

    #[test]
    fn conditions_evaluate_over_the_workload() {
        let w = Workload::default()
            .with("ai", Answer::Word("feature"))
            .unwrap()
            .with("peak_rps", Answer::Count(40_000))
            .unwrap()
            .with("p99_ms", Answer::Millis(2.5))
            .unwrap();
        let holds = |c: &str| Condition::parse(c).unwrap().holds(&w);
        assert!(holds(r#"ai in ["feature", "core"] and peak_rps >= 30000"#));
        assert!(holds(r#"data == "unknown" and team != "node""#));
        assert!(holds("p99_ms > 0 and p99_ms < 10 and connections == 0"));
        assert!(holds("not regulated and not (serverless or shared_frontend_types)"));
        assert!(holds(r#"ai not in ["none", "core"]"#));
        assert!(holds("peak_rps > -1 and true"));
        assert!(!holds(r#"ai == "core" or peak_rps < 30000"#));
        assert!(!holds("regulated"));
        // `and` binds tighter than `or`.
        assert!(holds(r#"ai == "feature" or ai == "core" and peak_rps < 10"#));
    }

    #[test]
    fn texts_interpolate_inputs() {
        let w = Workload::default()
            .with("peak_rps", Answer::Count(40_000))
            .unwrap()
            .with("p99_ms", Answer::Millis(2.5))
            .unwrap();
        let out = interpolate("peak {peak_rps} req/s, p99 {p99_ms} ms, ai {ai}, {{x}}", &|n| {
            w.display(n)
        })
        .unwrap();
        assert_eq!(out, "peak 40,000 req/s, p99 2.5 ms, ai unknown, {x}");
    }
}
