//! The language of a preset's `[signals]` table, a leaf that imports no other folder:
//! the workload inputs it speaks about ([`inputs`]), its `when` conditions ([`expr`]), its schema
//! and its checks (this file). Two folders use it and neither uses the other for it:
//! `template/preset.rs` reads the table with a preset and runs [`Signals::check`] when presets
//! load (placing each finding at `presets/FILE.toml:LINE:COL`), so a mistake is reported before
//! any recommendation; `recommend/` scores and explains the rules.

pub mod expr;
pub mod inputs;

use std::ops::Range;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use expr::Condition;
use inputs::{input, names};

/// Largest weight a rule may carry, either way.
pub const MAX_WEIGHT: i32 = 100;

/// A preset's `[signals]` table (format: docs/choosing-a-stack.md).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Signals {
    /// Processes and stores the preset runs (services, workers, Redis); fewer wins a tie.
    /// Defaults to the number of components its layout mounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moving_parts: Option<u32>,
    /// Rules that add to (or, with a negative weight, take from) the preset's score.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Conditions under which the preset is never recommended.
    #[serde(default)]
    pub exclude: Vec<Exclusion>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Short kebab-case id; the same id in two presets means the same signal (that is how the
    /// runner-up comparison lines them up).
    pub id: Spanned<String>,
    /// A condition over the inputs (see [`expr`]), e.g. `ai in ["feature", "core"] and peak_rps >= 30000`.
    pub when: Spanned<String>,
    /// Points added when the condition holds (negative: speaks against the preset).
    pub weight: Spanned<i32>,
    /// The reasoning, in words a team lead can paste into a design document; `{input}`
    /// placeholders are replaced by the values given.
    pub text: Spanned<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Exclusion {
    pub id: Spanned<String>,
    pub when: Spanned<String>,
    pub text: Spanned<String>,
}

/// What the checks and the scoring need of a rule or an exclusion.
pub(crate) struct Clause<'a> {
    pub id: &'a Spanned<String>,
    pub when: &'a Spanned<String>,
    pub text: &'a Spanned<String>,
    pub weight: Option<&'a Spanned<i32>>,
}

impl Signals {
    /// The rules, then the exclusions.
    pub(crate) fn clauses(&self) -> impl Iterator<Item = Clause<'_>> {
        let rules = self.rules.iter().map(|r| Clause {
            id: &r.id,
            when: &r.when,
            text: &r.text,
            weight: Some(&r.weight),
        });
        let exclusions = self.exclude.iter().map(|x| Clause {
            id: &x.id,
            when: &x.when,
            text: &x.text,
            weight: None,
        });
        rules.chain(exclusions)
    }

    /// Checks every rule and exclusion: ids, conditions, texts, weights. Each finding says
    /// where it is in the file the signals were read from (they were read with their spans);
    /// the caller turns that into a line and column.
    pub fn check(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        for c in self.clauses() {
            let id = c.id.get_ref();
            let here = |field: &Spanned<String>, offset: usize, message: String| Finding {
                place: Place::InString {
                    span: field.span(),
                    value: field.get_ref().clone(),
                    offset,
                },
                message,
            };
            if id.is_empty()
                || !id
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
            {
                out.push(here(
                    c.id,
                    0,
                    format!("rule id `{id}` must be lowercase letters, digits and `-`"),
                ));
            }
            if seen.contains(&id.as_str()) {
                out.push(here(
                    c.id,
                    0,
                    format!("rule `{id}`: the id is used twice in this preset"),
                ));
            }
            seen.push(id);
            if let Err(e) = Condition::parse(c.when.get_ref()) {
                out.push(here(c.when, e.at, format!("rule `{id}`: `when`: {}", e.message)));
            }
            if let Err((at, why)) = check_text(c.text.get_ref()) {
                out.push(here(c.text, at, format!("rule `{id}`: `text`: {why}")));
            }
            if let Some(w) = c.weight
                && !(-MAX_WEIGHT..=MAX_WEIGHT).contains(w.get_ref())
            {
                out.push(Finding {
                    place: Place::At(w.span().start),
                    message: format!(
                        "rule `{id}`: weight {} is out of range (-{MAX_WEIGHT} to {MAX_WEIGHT})",
                        w.get_ref()
                    ),
                });
            }
        }
        out
    }
}

/// A problem [`Signals::check`] found, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub place: Place,
    pub message: String,
}

/// Where a [`Finding`] is in the preset file.
#[derive(Debug, Clone, PartialEq)]
pub enum Place {
    /// At byte `offset` of the (unescaped) `value` of the string written at `span` of the file.
    InString {
        span: Range<usize>,
        value: String,
        offset: usize,
    },
    /// At this byte offset of the file.
    At(usize),
}

/// Checks that every `{placeholder}` in a text names an input (`{{` and `}}` are literal
/// braces); the error carries the byte offset of the problem.
fn check_text(text: &str) -> std::result::Result<(), (usize, String)> {
    if text.trim().is_empty() {
        return Err((0, "the text is empty".into()));
    }
    interpolate(text, &|name| input(name).map(|_| String::new())).map(|_| ())
}

/// Replaces `{name}` with `lookup(name)`; `{{` and `}}` stand for literal braces. The error
/// carries the byte offset of the problem.
pub(crate) fn interpolate(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> std::result::Result<String, (usize, String)> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '{' | '}' if chars.next_if(|(_, d)| *d == c).is_some() => out.push(c),
            '{' => {
                let mut name = String::new();
                let mut closed = false;
                for (_, d) in chars.by_ref() {
                    if d == '}' {
                        closed = true;
                        break;
                    }
                    name.push(d);
                }
                if !closed {
                    return Err((at, "a `{` is not closed (write `{{` for a literal brace)".into()));
                }
                let name = name.trim();
                match lookup(name) {
                    Some(v) => out.push_str(&v),
                    None => {
                        return Err((
                            at,
                            format!("unknown placeholder `{{{name}}}`; the inputs are: {}", names()),
                        ));
                    }
                }
            }
            '}' => return Err((at, "a `}` has no `{` (write `}}` for a literal brace)".into())),
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_name_inputs_and_close_their_braces() {
        let out = interpolate("peak {peak_rps} req/s, {{x}}", &|n| {
            (n == "peak_rps").then(|| "40,000".to_string())
        });
        assert_eq!(out.unwrap(), "peak 40,000 req/s, {x}");
        assert!(check_text("{nope}").is_err());
        assert_eq!(check_text("open {peak_rps").unwrap_err().0, 5);
        assert!(check_text("a } b").is_err());
        assert!(check_text("  ").is_err());
    }
}
