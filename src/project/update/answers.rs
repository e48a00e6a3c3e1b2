//! The answers of an update: the recorded ones, then the template's declarative `[[migrations]]`,
//! then (on a preset change) the new preset's options and defaults for answers never customised.
//! `--set` / `--answers` and defaults (or prompts) for new variables come after, in
//! [`crate::template::answers::resolve`].

use serde_json::{Map, Value};

use crate::error::Result;
use crate::template::Template;
use crate::template::inline;
use crate::template::manifest::{Manifest, compare_versions};
use crate::template::names::ProjectName;
use crate::template::value::{coerce, toml_to_json};

/// The preset and layout a project had, and the ones it gets.
pub struct PresetChange<'a> {
    pub name: &'a ProjectName,
    pub old_layout: &'a str,
    pub old_preset: Option<&'a str>,
    pub new_preset: Option<&'a str>,
}

impl PresetChange<'_> {
    fn changed(&self) -> bool {
        self.old_preset != self.new_preset
    }
}

/// Applies the migrations newer than `old_version` (all of them when the project recorded no
/// version), in version order. Returns what each did, for the report.
pub fn migrate(manifest: &Manifest, answers: &mut Map<String, Value>, old_version: Option<&str>) -> Vec<String> {
    let mut due: Vec<_> = manifest
        .migrations
        .iter()
        .filter(|m| old_version.is_none_or(|old| compare_versions(&m.version, old).is_gt()))
        .collect();
    due.sort_by(|a, b| compare_versions(&a.version, &b.version));
    let mut notes = Vec::new();
    for m in due {
        if let Some(r) = &m.rename
            && let Some(v) = answers.remove(&r.from)
        {
            notes.push(format!(
                "migration {}: answer `{}` is now `{}`",
                m.version, r.from, r.to
            ));
            answers.entry(r.to.clone()).or_insert(v);
        }
        if let Some(d) = &m.drop
            && answers.remove(d).is_some()
        {
            notes.push(format!("migration {}: answer `{d}` dropped", m.version));
        }
        if let Some(s) = &m.set {
            let value = toml_to_json(&s.value);
            if answers.get(&s.name) != Some(&value) {
                notes.push(format!("migration {}: `{}` set to {value}", m.version, s.name));
                answers.insert(s.name.clone(), value);
            }
        }
    }
    notes
}

/// What each variable would have been without the user: its default in the old context, or the
/// old preset's option. An answer equal to it was never customised.
fn uncustomised(
    template: &Template,
    change: &PresetChange,
    recorded: &Map<String, Value>,
) -> Result<Map<String, Value>> {
    let old_options = change
        .old_preset
        .and_then(|id| template.catalogue.get(id).ok())
        .map(|p| p.options.clone())
        .unwrap_or_default();
    let mut ctx = inline::base(change.name, change.old_layout, change.old_preset);
    let mut out = Map::new();
    for var in &template.manifest.variables {
        let value = match (old_options.get(&var.name), &var.default) {
            (Some(v), _) => Some(toml_to_json(v)),
            (None, Some(toml::Value::String(s))) => {
                let label = format!("default of variable `{}`", var.name);
                Some(Value::String(inline::render_str(s, &ctx, &label)?))
            }
            (None, Some(other)) => Some(toml_to_json(other)),
            (None, None) => None,
        };
        if let Some(v) = value.and_then(|v| coerce(var, &v).ok()) {
            out.insert(var.name.clone(), v);
        }
        if let Some(r) = recorded.get(&var.name) {
            ctx.insert(var.name.clone(), r.clone());
        }
    }
    Ok(out)
}

/// The recorded answers carried into the new render (they rank as an answers file: below
/// `--set`/`--answers`, above the preset's options), with a note for everything that changed.
pub fn carry_over(
    template: &Template,
    recorded: &Map<String, Value>,
    old_version: Option<&str>,
    change: &PresetChange,
) -> Result<(Map<String, Value>, Vec<String>)> {
    let mut answers = recorded.clone();
    let mut notes = migrate(&template.manifest, &mut answers, old_version);
    answers.retain(|k, _| {
        let known = template.manifest.variable(k).is_some();
        if !known {
            notes.push(format!(
                "recorded answer `{k}` dropped: the template has no such variable any more"
            ));
        }
        known
    });
    if change.changed() {
        let new_options = change
            .new_preset
            .map(|id| template.catalogue.get(id).map(|p| p.options.clone()))
            .transpose()?
            .unwrap_or_default();
        let never_changed = uncustomised(template, change, recorded)?;
        answers.retain(|k, v| !new_options.contains_key(k) && never_changed.get(k) != Some(v));
    }
    Ok((answers, notes))
}
