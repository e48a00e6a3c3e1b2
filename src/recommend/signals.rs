//! The `[signals]` table of a preset file: its schema, and the checks that run when presets load,
//! so a mistake is reported as `presets/FILE.toml:LINE:COL: …` before any recommendation.

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::expr::Condition;
use super::inputs::{input, names};
use crate::error::Problem;
use crate::template::span::{Document, position_in_string};

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
    /// A condition over the inputs (see [`super::expr`]), e.g. `ai in ["feature", "core"] and peak_rps >= 30000`.
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

    /// Checks every rule and exclusion: ids, conditions, texts, weights. `doc` is the preset
    /// file the signals were read from (for line and column); every problem is added to `out`.
    pub fn check(&self, doc: &Document, out: &mut Vec<Problem>) {
        let mut seen: Vec<&str> = Vec::new();
        for c in self.clauses() {
            let id = c.id.get_ref();
            let here = |field: &Spanned<String>, offset: usize, message: String| {
                doc.problem_at(
                    position_in_string(doc.text, field.span(), field.get_ref(), offset),
                    message,
                )
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
                out.push(doc.problem_at(
                    w.span().start,
                    format!(
                        "rule `{id}`: weight {} is out of range (-{MAX_WEIGHT} to {MAX_WEIGHT})",
                        w.get_ref()
                    ),
                ));
            }
        }
    }
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
    use crate::recommend::Workload;
    use crate::recommend::inputs::Answer;

    #[derive(Deserialize)]
    struct File {
        signals: Signals,
    }

    fn check(source: &str) -> String {
        let doc = Document::parse("presets/x.toml", source).unwrap();
        let f: File = doc.deserialize().unwrap();
        let mut found = Vec::new();
        f.signals.check(&doc, &mut found);
        crate::Error::InvalidTemplate(found).to_string()
    }

    #[test]
    fn errors_name_the_file_line_and_column() {
        let src = "[signals]\n[[signals.rules]]\nid = \"a\"\nwhen = 'realtim == \"core\"'\nweight = 1\ntext = \"t\"\n";
        let e = check(src);
        assert!(
            e.contains("presets/x.toml:4:9: rule `a`: `when`: unknown name `realtim`"),
            "{e}"
        );
        // Every problem at once, each with its place; a multi-line text is located inside.
        let src = "[signals]\n[[signals.rules]]\nid = \"A\"\nwhen = 'ai == \"x\"'\nweight = 500\ntext = \"\"\"\nsee {nope}\"\"\"\n[[signals.exclude]]\nid = \"A\"\nwhen = 'peak_rps'\ntext = \"t\"\n";
        let e = check(src);
        assert!(e.contains("presets/x.toml:3:7: rule id `A` must be"), "{e}");
        assert!(
            e.contains("presets/x.toml:4:15: rule `A`: `when`: \"x\" is not a value of `ai`"),
            "{e}"
        );
        assert!(
            e.contains("presets/x.toml:5:10: rule `A`: weight 500 is out of range"),
            "{e}"
        );
        assert!(
            e.contains("presets/x.toml:7:5: rule `A`: `text`: unknown placeholder `{nope}`"),
            "{e}"
        );
        assert!(e.contains("presets/x.toml:9:7: rule `A`: the id is used twice"), "{e}");
        assert!(
            e.contains("presets/x.toml:10:9: rule `A`: `when`: `peak_rps` is a number"),
            "{e}"
        );
        // An escape before the problem: the position falls back to the start of the string.
        let src = "[signals]\n[[signals.rules]]\nid = \"a\"\nwhen = \"\\u0061i == 1\"\nweight = 1\ntext = \"t\"\n";
        assert!(check(src).contains("presets/x.toml:4:8:"), "{}", check(src));
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
        assert!(check_text("{nope}").is_err());
        assert_eq!(check_text("open {peak_rps").unwrap_err().0, 5);
        assert!(check_text("a } b").is_err());
    }
}
