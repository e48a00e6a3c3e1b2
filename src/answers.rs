//! Answers: the values of a template's variables, from presets, answers files, `--set`, prompts
//! and defaults, each checked against its declared type.

use std::path::Path;

use serde_json::{Map, Value};

use crate::context;
use crate::error::{Error, Result};
use crate::manifest::{Manifest, VarType, Variable};

/// Asks the user for values. The library never talks to the terminal itself; the binary
/// implements this trait (and tests script it).
pub trait Prompter {
    /// Whether questions can be asked at all (a terminal, and no `--yes`).
    fn is_interactive(&self) -> bool;
    /// Asks for one variable; `default` is the value pre-selected. Returns the answer.
    fn ask(&mut self, var: &Variable, default: &Value) -> Result<Value>;
    /// Offers a choice among the presets (or the workload questions of `recommend`);
    /// `None` keeps the default preset.
    fn choose_preset(&mut self, _catalogue: &crate::preset::Catalogue, _manifest: &Manifest) -> Result<Option<String>> {
        Ok(None)
    }
}

/// A prompter that never asks (no terminal, `--yes`, tests).
pub struct NoPrompt;

impl Prompter for NoPrompt {
    fn is_interactive(&self) -> bool {
        false
    }
    fn ask(&mut self, _var: &Variable, default: &Value) -> Result<Value> {
        Ok(default.clone())
    }
}

/// Pre-answered values, by where they came from (later sources win).
#[derive(Debug, Default, Clone)]
pub struct Inputs {
    pub preset_options: Map<String, Value>,
    pub file: Map<String, Value>,
    pub sets: Map<String, Value>,
}

/// Splits `KEY=VALUE`.
pub fn parse_set(arg: &str) -> Result<(String, String)> {
    match arg.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(Error::MalformedSet { arg: arg.to_string() }),
    }
}

/// What an answers file says.
#[derive(Debug, Default, Clone)]
pub struct AnswersFile {
    pub answers: Map<String, Value>,
    /// `preset` and `layout` beside an `[answers]` table (a generated project's `.stackwise.toml`).
    pub preset: Option<String>,
    pub layout: Option<String>,
}

/// An answers file, in TOML or JSON. A file with an `[answers]` table (such as a generated
/// project's `.stackwise.toml`) is read from that table; `preset` and `layout` beside it too.
pub fn load_file(path: &Path) -> Result<AnswersFile> {
    let fail = |reason: String| Error::AnswersFile {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let is_json = path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('{');
    let value: Value = if is_json {
        serde_json::from_str(&text).map_err(|e| fail(format!("invalid JSON: {e}")))?
    } else {
        let table: toml::Table = toml::from_str(&text).map_err(|e| fail(format!("invalid TOML: {e}")))?;
        toml_to_json(&toml::Value::Table(table))
    };
    let Value::Object(mut top) = value else {
        return Err(fail("the top level must be a table/object of KEY = VALUE".into()));
    };
    match top.remove("answers") {
        Some(Value::Object(answers)) => {
            let text = |k: &str| top.get(k).and_then(Value::as_str).map(str::to_string);
            Ok(AnswersFile {
                answers,
                preset: text("preset"),
                layout: text("layout"),
            })
        }
        Some(other) => Err(fail(format!("`answers` must be a table of KEY = VALUE, found {other}"))),
        None => Ok(AnswersFile {
            answers: top,
            ..AnswersFile::default()
        }),
    }
}

pub fn toml_to_json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => Value::from(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(t.iter().map(|(k, v)| (k.clone(), toml_to_json(v))).collect()),
    }
}

/// Converts `value` to the variable's type and checks choices, bounds and pattern.
/// Strings (from `--set` or prompts) are parsed: `true`/`false`, integers, comma-separated lists.
pub fn coerce(var: &Variable, value: &Value) -> std::result::Result<Value, String> {
    let typed = match (var.kind, value) {
        (VarType::Bool, Value::Bool(b)) => Value::Bool(*b),
        (VarType::Bool, Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "1" | "on" => Value::Bool(true),
            "false" | "no" | "n" | "0" | "off" => Value::Bool(false),
            other => return Err(format!("expected a boolean (true or false), got {other:?}")),
        },
        (VarType::Integer, Value::Number(n)) if n.is_i64() => value.clone(),
        (VarType::Integer, Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| format!("expected an integer, got {s:?}"))?,
        (VarType::String | VarType::Choice, Value::String(s)) => Value::String(s.clone()),
        (VarType::List, Value::Array(items)) => {
            let mut out = Vec::new();
            for i in items {
                match i {
                    Value::String(s) => out.push(Value::String(s.clone())),
                    other => return Err(format!("expected a list of strings, found {other}")),
                }
            }
            Value::Array(out)
        }
        (VarType::List, Value::String(s)) => Value::Array(
            s.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| Value::String(p.to_string()))
                .collect(),
        ),
        (kind, other) => {
            return Err(format!("expected a value of type {}, got {other}", kind.as_str()));
        }
    };
    if let (Some(choices), Value::String(s)) = (&var.choices, &typed)
        && !choices.contains(s)
    {
        return Err(format!("{s:?} is not one of the choices: {}", choices.join(", ")));
    }
    if let (Some(choices), Value::Array(items)) = (&var.choices, &typed) {
        for i in items {
            let s = i.as_str().unwrap_or_default();
            if !choices.iter().any(|c| c == s) {
                return Err(format!("{s:?} is not one of the choices: {}", choices.join(", ")));
            }
        }
    }
    if let Some(n) = typed.as_i64()
        && (var.min.is_some_and(|m| n < m) || var.max.is_some_and(|m| n > m))
    {
        {
            return Err(format!(
                "{n} is out of range ({}..={})",
                var.min.map_or("".into(), |m| m.to_string()),
                var.max.map_or("".into(), |m| m.to_string())
            ));
        }
    }
    if let (Some(max), Value::String(s)) = (var.max_length, &typed)
        && s.chars().count() > max
    {
        return Err(format!(
            "{} characters is too long; the limit is {max}",
            s.chars().count()
        ));
    }
    if let (Some(pattern), Value::String(s)) = (&var.pattern, &typed) {
        let re = compiled_pattern(pattern).map_err(|e| format!("the template's pattern is invalid: {e}"))?;
        if !re.is_match(s) {
            return Err(var
                .pattern_message
                .clone()
                .unwrap_or_else(|| format!("{s:?} does not match the pattern {pattern}")));
        }
    }
    Ok(typed)
}

/// Compiles a validation pattern once per process (patterns are checked at load and at every value).
pub fn compiled_pattern(pattern: &str) -> std::result::Result<regex::Regex, regex::Error> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<String, regex::Regex>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(re) = cache.lock().ok().and_then(|c| c.get(pattern).cloned()) {
        return Ok(re);
    }
    let re = regex::Regex::new(pattern)?;
    if let Ok(mut c) = cache.lock() {
        c.insert(pattern.to_string(), re.clone());
    }
    Ok(re)
}

fn empty_value(kind: VarType, var: &Variable) -> Value {
    match kind {
        VarType::String => Value::String(String::new()),
        VarType::Integer => Value::from(var.min.unwrap_or(0)),
        VarType::Bool => Value::Bool(false),
        VarType::Choice => Value::String(
            var.choices
                .as_ref()
                .and_then(|c| c.first())
                .cloned()
                .unwrap_or_default(),
        ),
        VarType::List => Value::Array(vec![]),
    }
}

/// Checks that every pre-answered key is a variable of the template.
pub fn check_keys(manifest: &Manifest, inputs: &Map<String, Value>, source_hint: &str) -> Result<()> {
    for key in inputs.keys() {
        if manifest.variable(key).is_none() {
            return Err(Error::UnknownVariable {
                key: key.clone(),
                source_hint: source_hint.to_string(),
                available: manifest.variable_names(),
            });
        }
    }
    Ok(())
}

/// Resolves every variable of the manifest, in order. `base` holds the built-in values.
pub fn resolve(
    manifest: &Manifest,
    base: &Map<String, Value>,
    inputs: &Inputs,
    prompter: &mut dyn Prompter,
) -> Result<Map<String, Value>> {
    check_keys(manifest, &inputs.file, " (in the answers file)")?;
    check_keys(manifest, &inputs.sets, " (in --set)")?;
    let mut ctx = base.clone();
    let mut answers = Map::new();
    for var in &manifest.variables {
        let invalid = |reason: String| Error::InvalidValue {
            key: var.name.clone(),
            reason,
        };
        let given = inputs.sets.get(&var.name).or_else(|| inputs.file.get(&var.name));
        let value = if let Some(v) = given {
            coerce(var, v).map_err(invalid)?
        } else if let Some(v) = inputs.preset_options.get(&var.name) {
            coerce(var, v).map_err(invalid)?
        } else {
            let default = match &var.default {
                None => empty_value(var.kind, var),
                Some(toml::Value::String(s)) => {
                    let label = format!("default of variable `{}`", var.name);
                    Value::String(context::render_str(s, &ctx, &label)?)
                }
                Some(other) => toml_to_json(other),
            };
            let default = coerce(var, &default).map_err(|e| Error::Manifest {
                path: crate::source::MANIFEST_FILE.into(),
                reason: format!("the default of `{}` is invalid: {e}", var.name),
            })?;
            let asked = match &var.when {
                Some(expr) => context::eval_bool(expr, &ctx, &format!("`when` of variable `{}`", var.name))?,
                None => true,
            };
            if asked && prompter.is_interactive() {
                loop {
                    let answer = prompter.ask(var, &default)?;
                    match coerce(var, &answer) {
                        Ok(v) => break v,
                        Err(e) if prompter.is_interactive() => {
                            // The prompter shows validation errors itself when it can; as a fallback,
                            // re-ask with the error in the variable's help.
                            let _ = e;
                            continue;
                        }
                        Err(e) => return Err(invalid(e)),
                    }
                }
            } else {
                default
            }
        };
        ctx.insert(var.name.clone(), value.clone());
        answers.insert(var.name.clone(), value);
    }
    Ok(answers)
}
