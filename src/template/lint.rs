//! `stackwise lint DIR`: checks a template the way a fork author needs: the manifest and presets
//! parse, and every preset × every combination of boolean options renders without an error and
//! without a path outside the target.

use std::path::Path;

use serde_json::Map;

use super::matrix::bool_matrix;
use super::names::ProjectName;
use super::pipeline::{Template, render_project};
use super::prompter::NoPrompt;
use super::source::{TemplateSource, TemplateTree};
use crate::error::{Error, Result};

#[derive(Debug, Clone, serde::Serialize)]
pub struct LintReport {
    pub renders: usize,
    pub presets: usize,
    pub layouts: usize,
    pub files_checked: usize,
}

/// A fork that copied `templates/` alone lost its presets (they are a sibling tree here): `new
/// --preset` would find none, and "ok: 0 presets" would hide it.
fn no_presets(dir: &Path) -> Error {
    let own = dir.join("presets");
    let sibling = super::source::sibling_presets(dir);
    let looked = std::iter::once(own)
        .chain(sibling)
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" and ");
    Error::Lint {
        count: 1,
        report: format!(
            "- no preset found: looked in {looked} for presets/*.toml; copy the presets beside the template (`stackwise fork DIR` writes both) or write one (docs/TEMPLATES.md, \"Presets\")"
        ),
    }
}

pub fn lint(dir: &Path) -> Result<LintReport> {
    let source = TemplateSource::Local(dir.to_path_buf());
    let tree = TemplateTree::from_dir(dir, source.describe(), None, true)?;
    let loaded = Template::from_tree(tree)?;
    if loaded.catalogue.presets.is_empty() {
        return Err(no_presets(dir));
    }
    let name = ProjectName::parse("Lint Check").expect("valid name");
    let mut targets: Vec<(Option<String>, String)> = loaded
        .catalogue
        .presets
        .iter()
        .map(|p| (Some(p.id.clone()), p.layout.clone()))
        .collect();
    for layout in loaded.manifest.layouts.keys() {
        targets.push((None, layout.clone()));
    }
    let mut problems = Vec::new();
    let mut renders = 0;
    let mut files_checked = 0;
    'renders: for (preset, layout) in &targets {
        let what = preset
            .as_ref()
            .map_or_else(|| format!("layout {layout}"), |p| format!("preset {p}"));
        let combinations = match bool_matrix(&loaded.manifest, layout, &serde_json::Map::new()) {
            Ok(c) => c,
            Err(e) => {
                problems.push((what, e.to_string()));
                break 'renders;
            }
        };
        for sets in combinations {
            let options = sets
                .iter()
                .map(|(b, v)| format!("{b}={v}"))
                .collect::<Vec<_>>()
                .join(" ");
            let label = if options.is_empty() {
                what.clone()
            } else {
                format!("{what} with {options}")
            };
            renders += 1;
            match render_project(
                &loaded,
                name.clone(),
                preset.clone(),
                layout.clone(),
                // As an answers file: a combination that sets a variable its layout does not use
                // is ignored there, where `--set` would refuse it.
                Map::new(),
                sets,
                &mut NoPrompt,
            ) {
                Ok(r) => files_checked += r.files.len(),
                Err(e) => {
                    // A render over its budget would be over it again in every later render,
                    // each costing the whole budget (a loop that writes nothing is stopped only
                    // by the clock): one is enough to report.
                    let over = matches!(e, Error::RenderBudget { .. } | Error::InlineBudget { .. });
                    let msg = e.to_string();
                    if !problems.iter().any(|(_, m): &(String, String)| *m == msg) {
                        problems.push((label, msg));
                    }
                    if over {
                        break 'renders;
                    }
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(LintReport {
            renders,
            presets: loaded.catalogue.presets.len(),
            layouts: loaded.manifest.layouts.len(),
            files_checked,
        })
    } else {
        let report = problems
            .iter()
            .map(|(label, msg)| format!("- {label}:\n  {}", msg.replace('\n', "\n  ")))
            .collect::<Vec<_>>()
            .join("\n");
        Err(Error::Lint {
            count: problems.len(),
            report,
        })
    }
}
