//! Workload presets: data files (`presets/*.toml`) that pick a layout and option values.

use serde::{Deserialize, Serialize};

use super::manifest::{Manifest, is_identifier};
use super::source::TemplateTree;
use super::span::{self, Document, position_in_string, toml_path};
use super::value::{coerce, toml_to_json};
use crate::error::{Error, Problem, Result};
use crate::signals::{Place, Signals};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    pub id: String,
    pub title: String,
    pub layout: String,
    /// One line for lists.
    pub summary: String,
    /// Why this preset fits its workloads (printed by `presets show`).
    pub rationale: String,
    /// The preset `stackwise new` uses when none is named.
    #[serde(default)]
    pub default: bool,
    /// Values of the template's variables that this preset sets.
    #[serde(default)]
    pub options: toml::Table,
    /// The workload signals this preset answers (their language: src/signals/; scored by
    /// `recommend`), checked when the preset loads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signals: Option<Signals>,
}

/// All presets of a template, checked against its manifest.
#[derive(Debug, Clone)]
pub struct Catalogue {
    pub presets: Vec<Preset>,
}

impl Catalogue {
    pub fn load(tree: &TemplateTree, manifest: &Manifest) -> Result<Self> {
        let mut problems = Vec::new();
        let catalogue = Self::read(tree, Some(manifest), &mut problems);
        if problems.is_empty() {
            Ok(catalogue)
        } else {
            Err(Error::InvalidTemplate(problems))
        }
    }

    /// Reads and checks every preset file, adding each problem to `problems` (file by file, each
    /// in the order of its lines). Without a manifest (one that could not be read) the layouts
    /// and options are not checked.
    pub(crate) fn read(tree: &TemplateTree, manifest: Option<&Manifest>, problems: &mut Vec<Problem>) -> Self {
        let mut read: Vec<(String, Preset)> = Vec::new();
        for (name, text) in &tree.presets {
            let file = format!("presets/{name}");
            let doc = match Document::parse(&file, text) {
                Ok(doc) => doc,
                Err(found) => {
                    problems.extend(found);
                    continue;
                }
            };
            let mut found = Vec::new();
            match doc.deserialize::<Preset>() {
                Ok(preset) => {
                    check(&doc, &preset, &read, manifest, &mut found);
                    read.push((file, preset));
                }
                Err(first) => {
                    found.push(first);
                    doc.check_part::<Signals>(toml_path!["signals"], &mut found);
                }
            }
            span::sort(&mut found);
            problems.extend(found);
        }
        Self::sorted(read.into_iter().map(|(_, p)| p).collect())
    }

    /// Reads the presets of a tree whose checks have passed already (the embedded template), as
    /// [`Manifest::read_checked`] reads its manifest: no places, no checks; should a file fail
    /// all the same, the checked read reports where.
    pub(crate) fn read_checked(tree: &TemplateTree, manifest: &Manifest) -> Result<Self> {
        let read: std::result::Result<Vec<Preset>, _> = tree
            .presets
            .iter()
            .map(|(_, text)| toml::from_str::<Preset>(text))
            .collect();
        match read {
            Ok(presets) => Ok(Self::sorted(presets)),
            Err(_) => Self::load(tree, manifest),
        }
    }

    /// Stable, documented order: the default first, then by layout and id.
    fn sorted(mut presets: Vec<Preset>) -> Self {
        presets.sort_by(|a, b| {
            b.default
                .cmp(&a.default)
                .then(a.layout.cmp(&b.layout))
                .then(a.id.cmp(&b.id))
        });
        Catalogue { presets }
    }

    pub fn get(&self, id: &str) -> Result<&Preset> {
        self.presets
            .iter()
            .find(|p| p.id == id)
            .ok_or_else(|| Error::UnknownPreset {
                id: id.to_string(),
                did_you_mean: crate::suggest::did_you_mean(id, self.presets.iter().map(|p| p.id.as_str())),
                available: self.ids(),
            })
    }

    pub fn default_preset(&self) -> Option<&Preset> {
        self.presets.iter().find(|p| p.default).or(self.presets.first())
    }

    pub fn ids(&self) -> String {
        self.presets
            .iter()
            .map(|p| p.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Checks one preset against the template and the presets read before it.
fn check(
    doc: &Document,
    preset: &Preset,
    before: &[(String, Preset)],
    manifest: Option<&Manifest>,
    out: &mut Vec<Problem>,
) {
    let id = &preset.id;
    if !is_identifier(&id.replace('-', "_")) {
        out.push(doc.at_value(
            toml_path!["id"],
            format!("id `{id}` must be lowercase letters, digits and `-`"),
        ));
    }
    if let Some((other, _)) = before.iter().find(|(_, p)| p.id == *id) {
        out.push(doc.at_value(toml_path!["id"], format!("preset id `{id}` is also the id of {other}")));
    }
    if preset.default
        && let Some((other, _)) = before.iter().find(|(_, p)| p.default)
    {
        out.push(doc.at_value(
            toml_path!["default"],
            format!("{other} is the default preset already; only one preset may say `default = true`"),
        ));
    }
    if let Some(manifest) = manifest {
        if !manifest.layouts.contains_key(&preset.layout) {
            out.push(doc.at_value(
                toml_path!["layout"],
                format!(
                    "layout `{}` is not defined by the template (it defines: {})",
                    preset.layout,
                    manifest.layout_names()
                ),
            ));
        }
        for (key, value) in &preset.options {
            match manifest.variable(key) {
                None => out.push(doc.at_key(
                    toml_path!["options", key],
                    format!(
                        "option `{key}` is not a variable of the template (variables: {})",
                        manifest.variable_names()
                    ),
                )),
                Some(var) => {
                    if let Err(e) = coerce(var, &toml_to_json(value)) {
                        out.push(doc.at_value(toml_path!["options", key], format!("option `{key}`: {e}")));
                    }
                }
            }
        }
    }
    if let Some(signals) = &preset.signals {
        check_signals(doc, signals, out);
    }
}

/// Runs the `[signals]` checks and places each finding at its line and column.
fn check_signals(doc: &Document, signals: &Signals, out: &mut Vec<Problem>) {
    for finding in signals.check() {
        let at = match finding.place {
            Place::InString { span, value, offset } => position_in_string(doc.text, span, &value, offset),
            Place::At(at) => at,
        };
        out.push(doc.problem_at(at, finding.message));
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize)]
    struct File {
        signals: Signals,
    }

    fn check(source: &str) -> String {
        let doc = Document::parse("presets/x.toml", source).unwrap();
        let f: File = doc.deserialize().unwrap();
        let mut found = Vec::new();
        check_signals(&doc, &f.signals, &mut found);
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
}
