//! Answers: the values of a template's variables, from presets, answers files, `--set`, prompts
//! and defaults, each checked against its declared type.

use std::path::Path;

use serde_json::{Map, Value};

use super::files::MANIFEST_FILE;
use super::inline::{self, InlineError, InlineFailure};
use super::manifest::{Manifest, VarType, Variable};
use super::prompter::Prompter;
use super::source::TemplateSource;
use super::span::toml_path;
use super::value::{coerce, toml_to_json};
use crate::error::{Error, Result};

/// How often one variable is asked before a still-invalid answer is an error.
const MAX_ASK_ATTEMPTS: usize = 3;

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
    /// The template source recorded beside the answers (`template`, `template_subdir` of a
    /// `.stackwise.toml`): a re-render uses it unless `--template` says otherwise.
    pub template: Option<TemplateSource>,
}

/// The largest answers file read: answers are a few lines, and `/dev/zero`, a FIFO or a process
/// substitution that never ends must be an error, not all of memory.
pub const MAX_ANSWERS_BYTES: u64 = 1024 * 1024;

/// `path` as UTF-8 text, refused past `cap` bytes without reading further.
fn read_capped(path: &Path, cap: u64) -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!("larger than {} KiB: not an answers file", cap / 1024),
        ));
    }
    String::from_utf8(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// An answers file, in TOML or JSON. A file with an `[answers]` table (such as a generated
/// project's `.stackwise.toml`) is read from that table; `preset` and `layout` beside it too.
pub fn load_file(path: &Path) -> Result<AnswersFile> {
    let fail = |reason: String| Error::AnswersFile {
        path: path.to_path_buf(),
        reason,
        source: None,
    };
    let failed = |reason: String, e: Box<dyn std::error::Error + Send + Sync>| Error::AnswersFile {
        path: path.to_path_buf(),
        reason,
        source: Some(e),
    };
    let text = read_capped(path, MAX_ANSWERS_BYTES).map_err(|e| failed(e.to_string(), e.into()))?;
    let is_json = path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('{');
    let value: Value = if is_json {
        serde_json::from_str(&text).map_err(|e| failed(format!("invalid JSON: {e}"), e.into()))?
    } else {
        let table: toml::Table = toml::from_str(&text).map_err(|e| failed(format!("invalid TOML: {e}"), e.into()))?;
        toml_to_json(&toml::Value::Table(table))
    };
    let Value::Object(mut top) = value else {
        return Err(fail("the top level must be a table/object of KEY = VALUE".into()));
    };
    match top.remove("answers") {
        Some(Value::Object(answers)) => {
            check_record_keys(&top).map_err(fail)?;
            let text = |k: &str| match top.get(k) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(fail(format!("`{k}` must be a string, found {other}"))),
            };
            let subdir = text("template_subdir")?;
            let template = text("template")?.map(|t| TemplateSource::recorded(&t, subdir.as_deref()));
            Ok(AnswersFile {
                answers,
                preset: text("preset")?,
                layout: text("layout")?,
                template,
            })
        }
        Some(other) => Err(fail(format!("`answers` must be a table of KEY = VALUE, found {other}"))),
        None => {
            if let Some(key) = ["preset", "layout"].into_iter().find(|k| top.contains_key(*k)) {
                return Err(fail(format!(
                    "`{key}` is not a variable: `preset` and `layout` go beside an [answers] table that holds the variables, as in a project's .stackwise.toml (`{key} = \"…\"` at the top, then `[answers]` and one `KEY = VALUE` a line)"
                )));
            }
            Ok(AnswersFile {
                answers: top,
                ..AnswersFile::default()
            })
        }
    }
}

/// The keys a file may have beside its `[answers]` table: those of a project's `.stackwise.toml`
/// (src/project/record.rs), so that `--answers path/.stackwise.toml` re-renders it. Only
/// `preset`, `layout`, `template` and `template_subdir` are used.
const RECORD_KEYS: &[&str] = &[
    "preset",
    "layout",
    "template",
    "template_subdir",
    "template_version",
    "revision",
    "name",
    "stackwise_version",
    "update",
];

/// Refuses a key beside `[answers]` that is none of [`RECORD_KEYS`] (`preest = "ml-api"` was
/// silently ignored), with the closest one.
fn check_record_keys(top: &Map<String, Value>) -> std::result::Result<(), String> {
    match top.keys().find(|k| !RECORD_KEYS.contains(&k.as_str())) {
        Some(key) => Err(format!(
            "unknown key `{key}` beside the [answers] table{}; the keys there are: {} (variables go in [answers])",
            crate::suggest::did_you_mean(key, RECORD_KEYS.iter().copied()),
            RECORD_KEYS.join(", ")
        )),
        None => Ok(()),
    }
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
                did_you_mean: crate::suggest::did_you_mean(key, manifest.variables.iter().map(|v| v.name.as_str())),
                available: manifest.variable_names(),
            });
        }
    }
    Ok(())
}

/// The answers, and the context the templates render with.
#[derive(Debug, Clone, Default)]
pub struct Resolution {
    /// What is recorded in `.stackwise.toml`: every variable whose `when` holds.
    pub answers: Map<String, Value>,
    /// `base` plus every variable: the answers, and the default of each variable whose `when`
    /// is false (so a template may still name it; an answer given for it is never used).
    pub context: Map<String, Value>,
    /// Answers from the answers file that were not used, their variable's `when` being false:
    /// what to warn about (`--set` for one is refused instead).
    pub ignored: Vec<String>,
}

/// Asks for `var` on a terminal. The terminal prompter validates as the user types; an answer
/// that still fails (a scripted prompter, a race) is asked again a bounded number of times, then
/// reported like a bad `--set`.
fn ask(prompter: &mut dyn Prompter, var: &Variable, default: &Value) -> Result<Value> {
    let mut attempt = 1;
    loop {
        let answer = prompter.ask(var, default)?;
        match coerce(var, &answer) {
            Ok(v) => return Ok(v),
            Err(reason) if attempt >= MAX_ASK_ATTEMPTS => {
                return Err(Error::InvalidValue {
                    key: var.name.clone(),
                    reason,
                });
            }
            Err(_) => attempt += 1,
        }
    }
}

/// Resolves every variable of the manifest, in order. `base` holds the built-in values.
///
/// A variable whose `when` is false does not apply: `--set` for it is refused
/// ([`Error::InapplicableVariable`]); a value for it from an answers file or a preset (a
/// project that grew into another layout, a shared answers file) is ignored. It takes its
/// default in the context and is not recorded.
pub fn resolve(
    manifest: &Manifest,
    base: &Map<String, Value>,
    inputs: &Inputs,
    prompter: &mut dyn Prompter,
) -> Result<Resolution> {
    check_keys(manifest, &inputs.file, " (in the answers file)")?;
    check_keys(manifest, &inputs.sets, " (in --set)")?;
    let mut ctx = base.clone();
    let mut answers = Map::new();
    let mut ignored = Vec::new();
    for (i, var) in manifest.variables.iter().enumerate() {
        let invalid = |reason: String| Error::InvalidValue {
            key: var.name.clone(),
            reason,
        };
        // A default or a `when` that fails now (it was checked at load): at its place.
        let at = |key: &str, e: InlineError| {
            manifest.error_at(
                toml_path!["variables", i, key],
                e.at,
                format!("variable `{}`: {}", var.name, e.message),
            )
        };
        let failed = |key: &str, f: InlineFailure| {
            let what = || format!("the `{key}` of variable `{}`", var.name);
            f.into_error(MANIFEST_FILE, what, |e| {
                let message = format!("`{key}`: {}", e.message);
                at(key, InlineError { message, ..e })
            })
        };
        let applies = match &var.when {
            Some(expr) => inline::try_eval(expr, &ctx).map_err(|f| failed("when", f))?,
            None => true,
        };
        if !applies && inputs.sets.contains_key(&var.name) {
            let context = ctx
                .get("layout")
                .and_then(Value::as_str)
                .map(|l| format!(" for the {l} layout"))
                .unwrap_or_default();
            return Err(Error::InapplicableVariable {
                key: var.name.clone(),
                when: var.when.clone().unwrap_or_default(),
                context,
            });
        }
        if !applies && inputs.file.contains_key(&var.name) {
            let layout = ctx.get("layout").and_then(Value::as_str).unwrap_or_default();
            ignored.push(format!(
                "the answer for `{}` does not apply to the {layout} layout (its condition `{}` is false): ignored, not recorded",
                var.name,
                var.when.as_deref().unwrap_or_default()
            ));
        }
        let given = inputs
            .sets
            .get(&var.name)
            .or_else(|| inputs.file.get(&var.name))
            .or_else(|| inputs.preset_options.get(&var.name))
            .filter(|_| applies);
        let value = if let Some(v) = given {
            coerce(var, v).map_err(invalid)?
        } else {
            let default = match &var.default {
                None => empty_value(var.kind, var),
                Some(toml::Value::String(s)) => {
                    Value::String(inline::try_render(s, &ctx).map_err(|f| failed("default", f))?)
                }
                Some(other) => toml_to_json(other),
            };
            let default = coerce(var, &default).map_err(|why| {
                let message = format!("the default renders to {default}, which is invalid: {why}");
                at("default", InlineError { at: 0, message })
            })?;
            if applies && prompter.is_interactive() {
                ask(prompter, var, &default)?
            } else {
                default
            }
        };
        ctx.insert(var.name.clone(), value.clone());
        if applies {
            answers.insert(var.name.clone(), value);
        }
    }
    Ok(Resolution {
        answers,
        context: ctx,
        ignored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::source::{TemplateSource, TemplateTree};

    /// A prompter that always answers the same (invalid) text and counts the questions.
    struct Stubborn(usize);

    impl Prompter for Stubborn {
        fn is_interactive(&self) -> bool {
            true
        }
        fn ask(&mut self, _var: &Variable, _default: &Value) -> Result<Value> {
            self.0 += 1;
            Ok(Value::String("not-a-bool".into()))
        }
    }

    #[test]
    fn a_prompter_that_keeps_answering_wrong_gets_an_error_not_a_loop() {
        let tree = TemplateTree::load(&TemplateSource::Builtin).unwrap();
        let manifest = Manifest::load(&tree).unwrap();
        let mut base = Map::new();
        base.insert("layout".into(), Value::String("python".into()));
        base.insert("project_title".into(), Value::String("Demo".into()));
        let mut stubborn = Stubborn(0);
        let err = resolve(&manifest, &base, &Inputs::default(), &mut stubborn).unwrap_err();
        assert!(
            matches!(err, Error::InvalidValue { ref key, .. } if key == "worker"),
            "{err}"
        );
        // `description` (a string) takes the text at once; `worker` is asked MAX_ASK_ATTEMPTS times.
        assert_eq!(stubborn.0, 1 + MAX_ASK_ATTEMPTS);
    }
}
