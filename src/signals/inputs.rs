//! The workload inputs: one row of [`INPUTS`] per thing `recommend` can be told about the
//! workload. Everything else derives from the row: the command-line flag and its `--help`, the
//! interactive question, the parser and its range check, the value a `when` condition sees, how
//! a `{placeholder}` reads in a text, the flag echoed back, and the `--json` field.

/// One workload input.
#[derive(Debug)]
pub struct Input {
    /// The name `when` conditions, `{placeholders}` and the `--json` `workload` object use.
    pub name: &'static str,
    /// The command-line flag without its dashes: `name` with `-` for `_` (a test checks it).
    pub flag: &'static str,
    pub kind: Kind,
    /// The `--help` text (no final period, like clap's derived help); a choice's words and their
    /// meanings are appended to it.
    pub help: &'static str,
    /// The question asked on a terminal when no signal is given.
    pub question: &'static str,
}

#[derive(Debug)]
pub enum Kind {
    /// One of a few words; unknown reads `"unknown"` in conditions.
    Choice {
        /// The placeholder in `--help` (`--ai <LEVEL>`).
        value_name: &'static str,
        choices: &'static [Choice],
    },
    /// A whole number such as a request rate (`40000`, `40_000`, `40k`); unknown reads `0`.
    Count,
    /// A duration in milliseconds, greater than 0 and at most `MAX_P99_MS` (`recommend/numbers.rs`); unknown reads `0`.
    Millis,
    /// A flag without a value; off unless given.
    Switch,
}

#[derive(Debug)]
pub struct Choice {
    pub word: &'static str,
    /// What the word means, in `--help` (empty when the word says it all).
    pub help: &'static str,
    /// The item of the interactive list that gives this word.
    pub answer: &'static str,
}

const fn choice(word: &'static str, help: &'static str, answer: &'static str) -> Choice {
    Choice { word, help, answer }
}

/// Every workload input, in the order of `--help`, the questions and the echoed flags.
pub const INPUTS: &[Input] = &[
    Input {
        name: "ai",
        flag: "ai",
        kind: Kind::Choice {
            value_name: "LEVEL",
            choices: &[
                choice("none", "", "no"),
                choice("feature", "one feature among many", "yes, one feature among many"),
                choice(
                    "core",
                    "the product is built around it",
                    "yes, the product is built around it",
                ),
            ],
        },
        help: "AI/ML in the product",
        question: "Is AI / ML part of the product?",
    },
    Input {
        name: "data",
        flag: "data",
        kind: Kind::Choice {
            value_name: "LEVEL",
            choices: &[
                choice("none", "", "none"),
                choice(
                    "some",
                    "analytics, reports",
                    "some: analytics or reports beside the API",
                ),
                choice(
                    "heavy",
                    "ETL and pipelines are central",
                    "heavy: pipelines and ETL are central",
                ),
            ],
        },
        help: "Data engineering",
        question: "Data engineering (ETL, analytics, reports)?",
    },
    Input {
        name: "realtime",
        flag: "realtime",
        kind: Kind::Choice {
            value_name: "LEVEL",
            choices: &[
                choice("none", "", "none"),
                choice(
                    "some",
                    "notifications, live updates",
                    "some: notifications or live updates",
                ),
                choice(
                    "core",
                    "chat, collaboration, live dashboards",
                    "core: chat, collaboration, live dashboards",
                ),
            ],
        },
        help: "Real-time delivery",
        question: "Real-time delivery (WebSocket, live updates, streaming)?",
    },
    Input {
        name: "peak_rps",
        flag: "peak-rps",
        kind: Kind::Count,
        help: "Peak requests per second (e.g. 5000, 40_000, 40k)",
        question: "Peak requests per second (e.g. 5000 or 40k; empty if not sure)",
    },
    Input {
        name: "connections",
        flag: "connections",
        kind: Kind::Count,
        help: "Concurrent connections at peak (WebSocket, SSE, long polling)",
        question: "Concurrent connections at peak (empty if not sure)",
    },
    Input {
        name: "p99_ms",
        flag: "p99-ms",
        kind: Kind::Millis,
        help: "p99 latency target in milliseconds",
        question: "p99 latency target in ms (empty if none)",
    },
    Input {
        name: "team",
        flag: "team",
        kind: Kind::Choice {
            value_name: "TEAM",
            choices: &[
                choice("python", "", "Python"),
                choice("node", "", "TypeScript / Node"),
                choice("mixed", "", "both (mixed team)"),
            ],
        },
        help: "The language the team works in",
        question: "What does the team write?",
    },
    Input {
        name: "shared_frontend_types",
        flag: "shared-frontend-types",
        kind: Kind::Switch,
        help: "The back end shares TypeScript types and validation with the front end",
        question: "Share TypeScript types with the front end?",
    },
    Input {
        name: "serverless",
        flag: "serverless",
        kind: Kind::Switch,
        help: "Deployed serverless-first (per-invocation cost and memory matter)",
        question: "Serverless-first deployment?",
    },
    Input {
        name: "regulated",
        flag: "regulated",
        kind: Kind::Switch,
        help: "Regulated domain with compliance requirements (health, finance)",
        question: "Regulated domain (health, finance)?",
    },
];

/// The value `when` conditions see for an unknown choice.
pub const UNKNOWN: &str = "unknown";

/// One answer about the workload; an input without an answer is unknown (a switch: off).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Answer {
    /// One of a [`Kind::Choice`]'s words.
    Word(&'static str),
    /// A [`Kind::Count`].
    Count(u64),
    /// A [`Kind::Millis`].
    Millis(f64),
    /// A [`Kind::Switch`] that is on.
    Yes,
}

/// The value a `when` condition sees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ConditionValue<'a> {
    Bool(bool),
    Num(f64),
    Word(&'a str),
}

/// What a condition reads: the value of each input, by its position in [`INPUTS`] (the
/// recommender's workload).
pub trait Values {
    fn value_at(&self, i: usize) -> ConditionValue<'static>;
}

impl Input {
    /// The words of a choice (empty for other kinds).
    pub fn words(&self) -> Vec<&'static str> {
        match &self.kind {
            Kind::Choice { choices, .. } => choices.iter().map(|c| c.word).collect(),
            _ => Vec::new(),
        }
    }
}

/// The input called `name`, with its position in [`INPUTS`].
pub fn input(name: &str) -> Option<(usize, &'static Input)> {
    INPUTS.iter().enumerate().find(|(_, i)| i.name == name)
}

/// The input names, for error messages.
pub fn names() -> String {
    INPUTS.iter().map(|i| i.name).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_names_agree() {
        for i in INPUTS {
            assert_eq!(i.flag, i.name.replace('_', "-"), "{}", i.name);
            assert!(
                i.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                i.name
            );
            assert!(!i.help.is_empty() && !i.question.is_empty(), "{}", i.name);
            assert_eq!(INPUTS.iter().filter(|j| j.name == i.name).count(), 1, "{}", i.name);
        }
    }

    /// The fork authors' reference lists every input (docs/choosing-a-stack.md).
    #[test]
    fn the_reference_lists_every_input() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/choosing-a-stack.md")).unwrap();
        for i in INPUTS {
            assert!(
                doc.contains(&format!("`{}`", i.name)),
                "docs/choosing-a-stack.md: no `{}`",
                i.name
            );
        }
    }
}
