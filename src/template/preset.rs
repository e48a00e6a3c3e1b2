//! Workload presets: data files (`presets/*.toml`) that pick a layout and option values.

use serde::{Deserialize, Serialize};

use super::manifest::{Manifest, is_identifier};
use super::source::TemplateTree;
use super::value::{coerce, toml_to_json};
use crate::error::{Error, Result};

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
    /// The workload signals this preset answers (read by `recommend`, see src/recommend/),
    /// checked when the preset loads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signals: Option<crate::recommend::Signals>,
}

/// All presets of a template, checked against its manifest.
#[derive(Debug, Clone)]
pub struct Catalogue {
    pub presets: Vec<Preset>,
}

impl Catalogue {
    pub fn load(tree: &TemplateTree, manifest: &Manifest) -> Result<Self> {
        let mut presets: Vec<Preset> = Vec::new();
        for (path, text) in &tree.presets {
            let preset: Preset = toml::from_str(text).map_err(|e| Error::Preset {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            let err = |reason: String| Error::Preset {
                path: path.clone(),
                reason,
            };
            if !is_identifier(&preset.id.replace('-', "_")) {
                return Err(err(format!(
                    "id `{}` must be lowercase letters, digits and `-`",
                    preset.id
                )));
            }
            if presets.iter().any(|p| p.id == preset.id) {
                return Err(err(format!("preset id `{}` is defined twice", preset.id)));
            }
            if !manifest.layouts.contains_key(&preset.layout) {
                return Err(err(format!(
                    "layout `{}` is not defined by the template (it defines: {})",
                    preset.layout,
                    manifest.layout_names()
                )));
            }
            for (key, value) in &preset.options {
                let var = manifest.variable(key).ok_or_else(|| {
                    err(format!(
                        "option `{key}` is not a variable of the template (variables: {})",
                        manifest.variable_names()
                    ))
                })?;
                coerce(var, &toml_to_json(value)).map_err(|e| err(format!("option `{key}`: {e}")))?;
            }
            if let Some(signals) = &preset.signals {
                signals.check(path, text)?;
            }
            presets.push(preset);
        }
        if presets.iter().filter(|p| p.default).count() > 1 {
            return Err(Error::Preset {
                path: "presets/".into(),
                reason: "more than one preset says `default = true`".into(),
            });
        }
        // Stable, documented order: the default first, then by layout and id.
        presets.sort_by(|a, b| {
            b.default
                .cmp(&a.default)
                .then(a.layout.cmp(&b.layout))
                .then(a.id.cmp(&b.id))
        });
        Ok(Catalogue { presets })
    }

    pub fn get(&self, id: &str) -> Result<&Preset> {
        self.presets
            .iter()
            .find(|p| p.id == id)
            .ok_or_else(|| Error::UnknownPreset {
                id: id.to_string(),
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
