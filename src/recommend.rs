//! `stackwise recommend`: from a description of the workload to one preset, with the reasons.
//!
//! The decision rules are data: each preset's `[signals]` table (in `presets/*.toml`) lists the
//! rules that speak for or against it and the conditions that exclude it. This module only
//! evaluates them; the format is documented in `docs/choosing-a-stack.md` ("For fork authors").
//!
//! Scoring: a preset's score is the sum of the weights of its rules whose `when` holds. Presets
//! whose `exclude` condition holds, and presets without a `[signals]` table, are not candidates.
//! The highest score wins; ties go to the preset with fewer moving parts, then to the smaller id.
//! When no rule fires for any candidate (nothing known about the workload), the template's default
//! preset is the answer.

use std::cmp::Ordering;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::template::manifest::Manifest;
use crate::template::preset::{Catalogue, Preset};

/// The workload inputs a rule can test, with what they hold. The names are the ones `when`
/// expressions and `{placeholders}` in texts use.
pub const INPUTS: &[(&str, &str)] = &[
    (
        "ai",
        "\"none\", \"feature\" (one feature among many), \"core\" (the product is built around it) or \"unknown\"",
    ),
    (
        "data",
        "\"none\", \"some\" (analytics, reports), \"heavy\" (ETL and pipelines are central) or \"unknown\"",
    ),
    (
        "realtime",
        "\"none\", \"some\" (notifications, live updates), \"core\" (chat, collaboration, live dashboards) or \"unknown\"",
    ),
    ("team", "\"python\", \"node\", \"mixed\" or \"unknown\""),
    ("peak_rps", "peak requests per second; 0 when not given"),
    ("connections", "concurrent connections at peak; 0 when not given"),
    ("p99_ms", "p99 latency target in milliseconds; 0 when not given"),
    (
        "shared_frontend_types",
        "true when the back end shares TypeScript types with the front end",
    ),
    ("serverless", "true when the service is deployed serverless-first"),
    ("regulated", "true in a regulated domain (health, finance)"),
];

/// Words a `when` expression may use besides the inputs.
const KEYWORDS: &[&str] = &["and", "or", "not", "in", "true", "false"];

/// Largest accepted request rate or connection count (larger is certainly a typo).
pub const MAX_COUNT: u64 = 1_000_000_000;
/// Largest accepted p99 target, in milliseconds (beyond a minute it is not a request latency).
pub const MAX_P99_MS: f64 = 60_000.0;
/// Serverless functions do not hold long-lived connections; at this many it is a contradiction.
pub const SERVERLESS_MAX_CONNECTIONS: u64 = 10_000;

macro_rules! choice_enum {
    ($(#[$doc:meta])* $name:ident, $flag:literal, { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            /// The values the command line accepts, in order.
            pub const CHOICES: &'static [&'static str] = &[$($text),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// Parses a command-line value; the error names the flag and the accepted values.
            pub fn parse(value: &str) -> Result<Self> {
                match value.trim().to_ascii_lowercase().as_str() {
                    $($text => Ok($name::$variant),)+
                    other => Err(Error::Workload(format!(
                        "{} `{other}` is not one of: {}",
                        $flag,
                        Self::CHOICES.join(", ")
                    ))),
                }
            }
        }
    };
}

choice_enum!(
    /// How central AI/ML is to the product.
    Ai, "--ai", { None = "none", Feature = "feature", Core = "core" }
);
choice_enum!(
    /// How much data engineering the product does.
    Data, "--data", { None = "none", Some = "some", Heavy = "heavy" }
);
choice_enum!(
    /// How central real-time delivery is.
    Realtime, "--realtime", { None = "none", Some = "some", Core = "core" }
);
choice_enum!(
    /// The language the team works in.
    Team, "--team", { Python = "python", Node = "node", Mixed = "mixed" }
);

/// What is known about the workload. `None` means unknown (the flag was not given).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Workload {
    pub ai: Option<Ai>,
    pub data: Option<Data>,
    pub realtime: Option<Realtime>,
    pub peak_rps: Option<u64>,
    pub connections: Option<u64>,
    pub p99_ms: Option<f64>,
    pub team: Option<Team>,
    pub shared_frontend_types: bool,
    pub serverless: bool,
    pub regulated: bool,
}

/// Parses a count (`--peak-rps`, `--connections`): digits with optional `_` or `,` separators and
/// an optional `k` (thousand) or `m` (million) suffix, e.g. `40000`, `40_000`, `40k`, `1.5k`.
/// The error is the reason alone; [`parse_count`] names the flag.
pub fn count_from_str(text: &str) -> std::result::Result<u64, String> {
    let whole = || "expected a whole number such as 5000, 40_000 or 40k".to_string();
    let t: String = text.trim().chars().filter(|c| *c != '_' && *c != ',').collect();
    if t.starts_with('-') {
        return Err("must not be negative".into());
    }
    let (digits, factor) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1_000u64),
        Some('m' | 'M') => (&t[..t.len() - 1], 1_000_000u64),
        _ => (t.as_str(), 1u64),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(whole());
    }
    let value = if factor == 1 {
        digits.parse::<u64>().map_err(|_| whole())?
    } else {
        let v: f64 = digits.parse().map_err(|_| whole())?;
        let scaled = (v * factor as f64 * 1000.0).round() / 1000.0;
        if scaled.fract() != 0.0 || scaled > MAX_COUNT as f64 * 10.0 {
            return Err(whole());
        }
        scaled as u64
    };
    if value > MAX_COUNT {
        return Err(format!(
            "{} is out of range (at most {})",
            format_count(value),
            format_count(MAX_COUNT)
        ));
    }
    Ok(value)
}

/// [`count_from_str`] with the flag named in the error.
pub fn parse_count(flag: &str, text: &str) -> Result<u64> {
    count_from_str(text).map_err(|why| Error::Workload(format!("{flag} `{text}`: {why}")))
}

/// Parses a latency target in milliseconds (`--p99-ms`): a positive number, at most a minute.
/// The error is the reason alone; [`parse_ms`] names the flag.
pub fn ms_from_str(text: &str) -> std::result::Result<f64, String> {
    let t = text.trim().trim_end_matches("ms").trim();
    let v: f64 = t
        .parse()
        .map_err(|_| "expected a number of milliseconds such as 50 or 2.5".to_string())?;
    if !v.is_finite() {
        return Err("expected a finite number of milliseconds".into());
    }
    if v <= 0.0 {
        return Err("must be greater than 0 ms".into());
    }
    if v > MAX_P99_MS {
        return Err("is out of range (at most 60000 ms)".into());
    }
    Ok(v)
}

/// [`ms_from_str`] with the flag named in the error.
pub fn parse_ms(flag: &str, text: &str) -> Result<f64> {
    ms_from_str(text).map_err(|why| Error::Workload(format!("{flag} `{text}`: {why}")))
}

impl Workload {
    /// True when nothing at all is known (no signal given).
    pub fn is_unknown(&self) -> bool {
        *self == Workload::default()
    }

    /// Rejects values out of range and combinations that contradict each other.
    pub fn validate(&self) -> Result<()> {
        if let Some(v) = self.peak_rps
            && v > MAX_COUNT
        {
            return Err(Error::Workload(format!(
                "--peak-rps {v} is out of range (at most {})",
                format_count(MAX_COUNT)
            )));
        }
        if let Some(v) = self.connections
            && v > MAX_COUNT
        {
            return Err(Error::Workload(format!(
                "--connections {v} is out of range (at most {})",
                format_count(MAX_COUNT)
            )));
        }
        if let Some(v) = self.p99_ms
            && (!v.is_finite() || v <= 0.0 || v > MAX_P99_MS)
        {
            return Err(Error::Workload(format!(
                "--p99-ms {v}: must be greater than 0 and at most 60000"
            )));
        }
        if self.serverless
            && let Some(c) = self.connections
            && c >= SERVERLESS_MAX_CONNECTIONS
        {
            return Err(Error::Workload(format!(
                "--serverless contradicts --connections {}: serverless functions do not hold long-lived \
                 connections, and {} or more open at once need a long-running service\n  hint: drop --serverless, \
                 or give the request rate with --peak-rps instead of --connections",
                format_count(c),
                format_count(SERVERLESS_MAX_CONNECTIONS)
            )));
        }
        if self.realtime == Some(Realtime::Core) && self.connections == Some(0) {
            return Err(Error::Workload(
                "--realtime core contradicts --connections 0: a real-time product holds open connections\n  \
                 hint: give the expected number of concurrent connections, or leave --connections out"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The values `when` expressions see (see [`INPUTS`]).
    pub fn context(&self) -> Map<String, Value> {
        let mut m = Map::new();
        let word = |s: Option<&'static str>| Value::from(s.unwrap_or("unknown"));
        m.insert("ai".into(), word(self.ai.map(Ai::as_str)));
        m.insert("data".into(), word(self.data.map(Data::as_str)));
        m.insert("realtime".into(), word(self.realtime.map(Realtime::as_str)));
        m.insert("team".into(), word(self.team.map(Team::as_str)));
        m.insert("peak_rps".into(), Value::from(self.peak_rps.unwrap_or(0)));
        m.insert("connections".into(), Value::from(self.connections.unwrap_or(0)));
        m.insert("p99_ms".into(), Value::from(self.p99_ms.unwrap_or(0.0)));
        m.insert("shared_frontend_types".into(), Value::from(self.shared_frontend_types));
        m.insert("serverless".into(), Value::from(self.serverless));
        m.insert("regulated".into(), Value::from(self.regulated));
        m
    }

    /// How an input reads inside a rule's text (`{peak_rps}` → `40,000`).
    fn display(&self, name: &str) -> Option<String> {
        let unknown = || "unknown".to_string();
        Some(match name {
            "ai" => self.ai.map_or_else(unknown, |v| v.as_str().into()),
            "data" => self.data.map_or_else(unknown, |v| v.as_str().into()),
            "realtime" => self.realtime.map_or_else(unknown, |v| v.as_str().into()),
            "team" => self.team.map_or_else(unknown, |v| v.as_str().into()),
            "peak_rps" => self.peak_rps.map_or_else(unknown, format_count),
            "connections" => self.connections.map_or_else(unknown, format_count),
            "p99_ms" => self.p99_ms.map_or_else(unknown, format_ms),
            "shared_frontend_types" => yes_no(self.shared_frontend_types),
            "serverless" => yes_no(self.serverless),
            "regulated" => yes_no(self.regulated),
            _ => return None,
        })
    }

    /// The flags that describe this workload, as `stackwise recommend` takes them.
    pub fn to_flags(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(x) = self.ai {
            v.push(format!("--ai {}", x.as_str()));
        }
        if let Some(x) = self.data {
            v.push(format!("--data {}", x.as_str()));
        }
        if let Some(x) = self.realtime {
            v.push(format!("--realtime {}", x.as_str()));
        }
        if let Some(x) = self.peak_rps {
            v.push(format!("--peak-rps {x}"));
        }
        if let Some(x) = self.connections {
            v.push(format!("--connections {x}"));
        }
        if let Some(x) = self.p99_ms {
            v.push(format!("--p99-ms {}", format_ms(x)));
        }
        if let Some(x) = self.team {
            v.push(format!("--team {}", x.as_str()));
        }
        if self.shared_frontend_types {
            v.push("--shared-frontend-types".into());
        }
        if self.serverless {
            v.push("--serverless".into());
        }
        if self.regulated {
            v.push("--regulated".into());
        }
        v
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

/// `40000` → `40,000`.
pub fn format_count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn format_ms(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

// ----- the [signals] table -----

/// A preset's `[signals]` table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Signals {
    /// Processes and stores the preset runs (services, workers, Redis); fewer wins a tie.
    /// Defaults to the number of components its layout mounts.
    #[serde(default)]
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
    pub id: String,
    /// A condition over the inputs (see [`INPUTS`]), e.g. `ai in ["feature", "core"] and peak_rps >= 30000`.
    pub when: String,
    /// Points added when the condition holds (negative: speaks against the preset).
    pub weight: i32,
    /// The reasoning, in words a team lead can paste into a design document; `{input}` placeholders
    /// are replaced by the values given.
    pub text: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Exclusion {
    pub id: String,
    pub when: String,
    pub text: String,
}

const MAX_WEIGHT: i32 = 100;

fn signals_error(preset: &Preset, reason: String) -> Error {
    Error::Preset {
        path: format!("{} [signals]", preset.id),
        reason,
    }
}

/// Parses and checks a preset's `[signals]` table (`None` when it has none).
pub fn signals_of(preset: &Preset) -> Result<Option<Signals>> {
    let Some(raw) = &preset.signals else {
        return Ok(None);
    };
    let signals: Signals = raw
        .clone()
        .try_into()
        .map_err(|e: toml::de::Error| signals_error(preset, e.message().to_string()))?;
    let unknown = Workload::default().context();
    let mut ids: Vec<&str> = Vec::new();
    let checks = signals
        .rules
        .iter()
        .map(|r| (&r.id, &r.when, &r.text, Some(r.weight)))
        .chain(signals.exclude.iter().map(|x| (&x.id, &x.when, &x.text, None)));
    for (id, when, text, weight) in checks {
        let err = |why: String| signals_error(preset, format!("rule `{id}`: {why}"));
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(signals_error(
                preset,
                format!("rule id `{id}` must be lowercase letters, digits and `-`"),
            ));
        }
        if ids.contains(&id.as_str()) {
            return Err(err("the id is used twice in this preset".into()));
        }
        ids.push(id);
        check_expression(when).map_err(|why| err(format!("`when`: {why}")))?;
        eval(when, &unknown, &preset.id, id)?;
        check_text(text).map_err(|why| err(format!("`text`: {why}")))?;
        if let Some(w) = weight
            && !(-MAX_WEIGHT..=MAX_WEIGHT).contains(&w)
        {
            return Err(err(format!(
                "weight {w} is out of range (-{MAX_WEIGHT} to {MAX_WEIGHT})"
            )));
        }
    }
    Ok(Some(signals))
}

/// Checks every preset's signals (for `stackwise lint` and tests).
pub fn check_catalogue(catalogue: &Catalogue) -> Result<()> {
    for p in &catalogue.presets {
        signals_of(p)?;
    }
    Ok(())
}

/// A `when` expression may use the inputs, string and number literals, `==` `!=` `<` `<=` `>`
/// `>=`, `in [..]`, `and`, `or`, `not` and parentheses — nothing else (no filters, no functions,
/// no template syntax), and every name must be an input, so a typo is an error, not a rule that
/// silently never fires.
fn check_expression(expr: &str) -> std::result::Result<(), String> {
    if expr.trim().is_empty() {
        return Err("the condition is empty".into());
    }
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' => {
                let mut closed = false;
                for d in chars.by_ref() {
                    if d == c {
                        closed = true;
                        break;
                    }
                    if matches!(d, '{' | '}' | '%' | '\\') {
                        return Err(format!("`{d}` is not allowed inside a string"));
                    }
                }
                if !closed {
                    return Err("a string is not closed".into());
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut word = String::from(c);
                while let Some(&d) = chars.peek() {
                    if d.is_ascii_alphanumeric() || d == '_' {
                        word.push(d);
                        chars.next();
                    } else {
                        break;
                    }
                }
                if !KEYWORDS.contains(&word.as_str()) && !INPUTS.iter().any(|(n, _)| *n == word) {
                    return Err(format!(
                        "unknown name `{word}`; the inputs are: {}",
                        INPUTS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                    ));
                }
            }
            c if c.is_ascii_digit() => {
                while let Some(&d) = chars.peek() {
                    if d.is_ascii_digit() || d == '.' || d == '_' {
                        chars.next();
                    } else {
                        break;
                    }
                }
            }
            c if c.is_whitespace() => {}
            '=' | '!' | '<' | '>' | '(' | ')' | '[' | ']' | ',' | '-' => {}
            other => return Err(format!("`{other}` is not allowed in a condition")),
        }
    }
    Ok(())
}

/// Checks that every `{placeholder}` in a text names an input (`{{` and `}}` are literal braces).
fn check_text(text: &str) -> std::result::Result<(), String> {
    if text.trim().is_empty() {
        return Err("the text is empty".into());
    }
    interpolate(text, &|name| INPUTS.iter().any(|(n, _)| *n == name).then(String::new)).map(|_| ())
}

/// Replaces `{name}` with `lookup(name)`; `{{` and `}}` stand for literal braces.
fn interpolate(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let mut name = String::new();
                let mut closed = false;
                for d in chars.by_ref() {
                    if d == '}' {
                        closed = true;
                        break;
                    }
                    name.push(d);
                }
                if !closed {
                    return Err("a `{` is not closed (write `{{` for a literal brace)".into());
                }
                let name = name.trim();
                match lookup(name) {
                    Some(v) => out.push_str(&v),
                    None => {
                        return Err(format!(
                            "unknown placeholder `{{{name}}}`; the inputs are: {}",
                            INPUTS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                        ));
                    }
                }
            }
            '}' => return Err("a `}` has no `{` (write `}}` for a literal brace)".into()),
            c => out.push(c),
        }
    }
    Ok(out)
}

fn eval(expr: &str, ctx: &Map<String, Value>, preset: &str, rule: &str) -> Result<bool> {
    crate::template::inline::eval_bool(expr, ctx, &format!("preset `{preset}`, [signals] rule `{rule}`"))
}

// ----- evaluation -----

/// A rule that fired.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Reason {
    pub rule: String,
    pub weight: i32,
    /// The rule's text with the inputs filled in.
    pub text: String,
}

/// A preset ruled out by one of its `exclude` conditions.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Excluded {
    pub preset: String,
    pub rule: String,
    pub text: String,
}

/// One candidate, scored.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Scored {
    pub preset: String,
    pub title: String,
    pub layout: String,
    pub score: i32,
    pub moving_parts: u32,
    pub default: bool,
    pub reasons: Vec<Reason>,
}

/// A rule whose weight differs between the winner and the runner-up.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Difference {
    pub rule: String,
    /// Its weight for the recommended preset (0 when it did not fire there).
    pub winner: i32,
    /// Its weight for the runner-up.
    pub runner_up: i32,
    pub text: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunnerUp {
    pub preset: String,
    pub layout: String,
    pub score: i32,
    /// Points behind the recommendation (0 when the tie rule decided).
    pub behind: i32,
    pub differences: Vec<Difference>,
    /// One sentence: why it lost.
    pub reason: String,
}

/// The answer of `recommend`.
#[derive(Debug, Clone, Serialize)]
pub struct Recommendation {
    pub preset: String,
    pub title: String,
    pub layout: String,
    /// The layout's description from the template manifest.
    pub layout_description: String,
    pub score: i32,
    /// The rules that fired for the recommended preset, strongest first.
    pub reasons: Vec<Reason>,
    pub runner_up: Option<RunnerUp>,
    /// Set when the tie rule (not the score) decided between the first two.
    pub tie_break: Option<String>,
    /// Set when no rule fired and the default preset was taken.
    pub fallback: Option<String>,
    pub excluded: Vec<Excluded>,
    /// Every candidate in rank order.
    pub ranking: Vec<Scored>,
    /// The command that generates the recommended project.
    pub command: String,
}

/// The tie rule, as printed.
pub const TIE_RULE: &str = "equal scores go to the preset with fewer moving parts (processes and stores to run), then to the alphabetically first id";

/// Scores every preset of `catalogue` for `workload`. `template` is the `--template` argument to
/// repeat in the generated command.
pub fn recommend(
    catalogue: &Catalogue,
    manifest: &Manifest,
    workload: &Workload,
    template: Option<&str>,
) -> Result<Recommendation> {
    workload.validate()?;
    let ctx = workload.context();
    let fill = |text: &str| -> String {
        interpolate(text, &|name| workload.display(name)).unwrap_or_else(|_| text.to_string())
    };
    let mut candidates: Vec<Scored> = Vec::new();
    let mut excluded: Vec<Excluded> = Vec::new();
    for preset in &catalogue.presets {
        let Some(signals) = signals_of(preset)? else {
            continue;
        };
        let mut out = None;
        for x in &signals.exclude {
            if eval(&x.when, &ctx, &preset.id, &x.id)? {
                out = Some(Excluded {
                    preset: preset.id.clone(),
                    rule: x.id.clone(),
                    text: fill(&x.text),
                });
                break;
            }
        }
        if let Some(x) = out {
            excluded.push(x);
            continue;
        }
        let mut reasons = Vec::new();
        for r in &signals.rules {
            if eval(&r.when, &ctx, &preset.id, &r.id)? {
                reasons.push(Reason {
                    rule: r.id.clone(),
                    weight: r.weight,
                    text: fill(&r.text),
                });
            }
        }
        // Strongest first; the file's order among equal weights.
        reasons.sort_by_key(|r| std::cmp::Reverse(r.weight));
        let moving_parts = signals.moving_parts.unwrap_or_else(|| {
            manifest
                .layouts
                .get(&preset.layout)
                .map_or(1, |l| l.mounts.len() as u32)
        });
        candidates.push(Scored {
            preset: preset.id.clone(),
            title: preset.title.clone(),
            layout: preset.layout.clone(),
            score: reasons.iter().map(|r| r.weight).sum(),
            moving_parts,
            default: preset.default,
            reasons,
        });
    }
    if candidates.is_empty() {
        let why = if excluded.is_empty() {
            "no preset of this template has a [signals] table, so none can be recommended".to_string()
        } else {
            format!(
                "every preset is excluded for this workload: {}",
                excluded
                    .iter()
                    .map(|x| format!("{} ({})", x.preset, x.rule))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        return Err(Error::Workload(why));
    }
    candidates.sort_by(rank);
    let mut fallback = None;
    if candidates.iter().all(|c| c.reasons.is_empty())
        && let Some(i) = candidates.iter().position(|c| c.default)
    {
        let d = candidates.remove(i);
        fallback = Some(format!(
            "No rule fired{}, so this is the template's default preset. Describe the workload \
             (--ai, --data, --realtime, --peak-rps, --team, ...) for a reasoned answer.",
            if workload.is_unknown() {
                " (no workload signal was given)"
            } else {
                " for the signals given"
            }
        ));
        candidates.insert(0, d);
    }
    let winner = &candidates[0];
    let runner = candidates.get(1);
    let tie_break = match runner {
        Some(r) if fallback.is_none() && r.score == winner.score => Some(tie_text(winner, r)),
        _ => None,
    };
    let runner_up = runner.map(|r| runner_up(winner, r, fallback.is_some()));
    let layout_description = manifest
        .layouts
        .get(&winner.layout)
        .map(|l| l.description.clone())
        .unwrap_or_default();
    Ok(Recommendation {
        preset: winner.preset.clone(),
        title: winner.title.clone(),
        layout: winner.layout.clone(),
        layout_description,
        score: winner.score,
        reasons: winner.reasons.clone(),
        runner_up,
        tie_break,
        fallback,
        excluded,
        command: new_command(&winner.preset, template),
        ranking: candidates,
    })
}

/// Rank order: higher score, then fewer moving parts, then id.
fn rank(a: &Scored, b: &Scored) -> Ordering {
    b.score
        .cmp(&a.score)
        .then(a.moving_parts.cmp(&b.moving_parts))
        .then(a.preset.cmp(&b.preset))
}

fn tie_text(w: &Scored, r: &Scored) -> String {
    let how = if w.moving_parts != r.moving_parts {
        format!(
            "{} has fewer moving parts ({} against {})",
            w.preset, w.moving_parts, r.moving_parts
        )
    } else {
        format!(
            "both have {} moving parts, and `{}` comes first alphabetically",
            w.moving_parts, w.preset
        )
    };
    format!(
        "{} and {} both scored {}; the tie rule decided: {how}.",
        w.preset, r.preset, w.score
    )
}

fn runner_up(w: &Scored, r: &Scored, fallback: bool) -> RunnerUp {
    let mut ids: Vec<&str> = Vec::new();
    for reason in w.reasons.iter().chain(&r.reasons) {
        if !ids.contains(&reason.rule.as_str()) {
            ids.push(&reason.rule);
        }
    }
    fn weight_of<'a>(s: &'a Scored, id: &str) -> Option<&'a Reason> {
        s.reasons.iter().find(|x| x.rule == id)
    }
    let mut differences: Vec<Difference> = ids
        .into_iter()
        .filter_map(|id| {
            let a = weight_of(w, id);
            let b = weight_of(r, id);
            let (wa, wb) = (a.map_or(0, |x| x.weight), b.map_or(0, |x| x.weight));
            (wa != wb).then(|| Difference {
                rule: id.to_string(),
                winner: wa,
                runner_up: wb,
                text: a.or(b).map(|x| x.text.clone()).unwrap_or_default(),
            })
        })
        .collect();
    differences.sort_by(|a, b| {
        (b.winner - b.runner_up)
            .cmp(&(a.winner - a.runner_up))
            .then(a.rule.cmp(&b.rule))
    });
    let behind = w.score - r.score;
    let reason = if fallback {
        format!(
            "{} scored {} too; with no rule firing, the default preset is taken",
            r.preset, r.score
        )
    } else if behind == 0 {
        format!(
            "{} scored the same ({}); it lost on the tie rule: {}",
            r.preset,
            r.score,
            if w.moving_parts != r.moving_parts {
                format!(
                    "it has more moving parts ({} against {})",
                    r.moving_parts, w.moving_parts
                )
            } else {
                format!("same moving parts, and `{}` sorts first", w.preset)
            }
        )
    } else {
        let mut s = format!(
            "{} scored {} against {} ({} point{} behind)",
            r.preset,
            r.score,
            w.score,
            behind,
            if behind == 1 { "" } else { "s" }
        );
        let decisive: Vec<String> = differences
            .iter()
            .filter(|d| d.winner > d.runner_up)
            .take(3)
            .map(|d| {
                format!(
                    "{} ({} for {}, {} for {})",
                    d.rule,
                    signed(d.winner),
                    w.preset,
                    signed(d.runner_up),
                    r.preset
                )
            })
            .collect();
        if !decisive.is_empty() {
            let _ = write!(s, "; what separated them: {}", decisive.join(", "));
        }
        s
    };
    RunnerUp {
        preset: r.preset.clone(),
        layout: r.layout.clone(),
        score: r.score,
        behind,
        differences,
        reason,
    }
}

/// `+3`, `-2`, `0`.
pub fn signed(n: i32) -> String {
    if n > 0 { format!("+{n}") } else { n.to_string() }
}

/// The `stackwise new` command for a preset (`my-app` stands for the project's name).
pub fn new_command(preset: &str, template: Option<&str>) -> String {
    let mut cmd = format!("stackwise new my-app --preset {preset}");
    if let Some(t) = template {
        cmd.push_str(" --template ");
        cmd.push_str(&shell_quote(t));
    }
    cmd
}

fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "_-./:@#=+,".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// For `stackwise presets show`: the signals that lead to (or rule out) a preset, one per line.
pub fn describe_signals(preset: &Preset) -> Result<Vec<String>> {
    let Some(signals) = signals_of(preset)? else {
        return Ok(vec![
            "(no [signals] table: `stackwise recommend` never picks this preset)".into(),
        ]);
    };
    let mut lines = Vec::new();
    let mut rules: Vec<&Rule> = signals.rules.iter().collect();
    rules.sort_by_key(|r| std::cmp::Reverse(r.weight));
    for r in rules {
        lines.push(format!("{:>4}  {}  ({})", signed(r.weight), r.when.trim(), r.id));
    }
    for x in &signals.exclude {
        lines.push(format!("never when {}  ({})", x.when.trim(), x.id));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_parse_with_separators_and_suffixes() {
        assert_eq!(parse_count("--peak-rps", "40000").unwrap(), 40_000);
        assert_eq!(parse_count("--peak-rps", "40_000").unwrap(), 40_000);
        assert_eq!(parse_count("--peak-rps", "40,000").unwrap(), 40_000);
        assert_eq!(parse_count("--peak-rps", "40k").unwrap(), 40_000);
        assert_eq!(parse_count("--peak-rps", "1.5k").unwrap(), 1_500);
        assert_eq!(parse_count("--peak-rps", "2M").unwrap(), 2_000_000);
        for bad in ["-5", "abc", "", "1.5", "k", "1e5", "99999999999"] {
            let e = parse_count("--peak-rps", bad).unwrap_err().to_string();
            assert!(e.contains("--peak-rps"), "{bad}: {e}");
        }
    }

    #[test]
    fn latency_must_be_positive() {
        assert_eq!(parse_ms("--p99-ms", "2.5").unwrap(), 2.5);
        assert_eq!(parse_ms("--p99-ms", "50ms").unwrap(), 50.0);
        for bad in ["0", "-1", "NaN", "inf", "x", "70000"] {
            assert!(parse_ms("--p99-ms", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn expressions_reject_unknown_names_and_template_syntax() {
        assert!(check_expression(r#"ai in ["feature", "core"] and peak_rps >= 30000"#).is_ok());
        assert!(check_expression("not regulated or p99_ms < 10").is_ok());
        assert!(check_expression(r#"realtim == "core""#).is_err());
        assert!(check_expression("peak_rps | length > 1").is_err());
        assert!(check_expression("ai %} x {% if true").is_err());
        assert!(check_expression("get_env(name='HOME')").is_err());
        assert!(check_expression(r#"ai == "core"#).is_err());
        assert!(check_expression("").is_err());
    }

    #[test]
    fn texts_interpolate_inputs() {
        let w = Workload {
            peak_rps: Some(40_000),
            p99_ms: Some(2.5),
            ..Default::default()
        };
        let out = interpolate("peak {peak_rps} req/s, p99 {p99_ms} ms, ai {ai}, {{x}}", &|n| {
            w.display(n)
        })
        .unwrap();
        assert_eq!(out, "peak 40,000 req/s, p99 2.5 ms, ai unknown, {x}");
        assert!(check_text("{nope}").is_err());
        assert!(check_text("open {peak_rps").is_err());
        assert!(check_text("a } b").is_err());
    }

    #[test]
    fn contradictions_are_rejected() {
        let w = Workload {
            serverless: true,
            connections: Some(200_000),
            ..Default::default()
        };
        assert!(w.validate().unwrap_err().to_string().contains("--serverless"));
        let w = Workload {
            realtime: Some(Realtime::Core),
            connections: Some(0),
            ..Default::default()
        };
        assert!(w.validate().unwrap_err().to_string().contains("--connections 0"));
    }

    #[test]
    fn builtin_signals_are_valid() {
        let loaded = crate::template::Template::load(&crate::template::source::TemplateSource::Builtin).unwrap();
        check_catalogue(&loaded.catalogue).unwrap();
        assert!(loaded.catalogue.presets.iter().all(|p| p.signals.is_some()));
        let r = recommend(&loaded.catalogue, &loaded.manifest, &Workload::default(), None).unwrap();
        assert!(r.fallback.is_some());
        assert_eq!(
            Some(r.preset.as_str()),
            loaded.catalogue.default_preset().map(|p| p.id.as_str())
        );
    }
}
