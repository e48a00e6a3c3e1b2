//! The orchestrator of `template/`: load a template (tree, manifest, presets), choose a preset and
//! layout, and render a project from answers. It imports the stages; none of them imports it
//! except `lint`, which renders every preset through it.

use serde_json::{Map, Value};

use super::answers::{self, Inputs};
use super::files::MANIFEST_FILE;
use super::manifest::Manifest;
use super::names::ProjectName;
use super::preset::Catalogue;
use super::prompter::Prompter;
use super::render::RenderedFile;
use super::source::{TemplateSource, TemplateTree};
use super::{inline, plan, render, value};
use crate::error::{Error, Result};

/// The template, its manifest and its presets, loaded and checked.
pub struct Template {
    pub tree: TemplateTree,
    pub manifest: Manifest,
    pub catalogue: Catalogue,
}

impl Template {
    pub fn load(source: &TemplateSource) -> Result<Self> {
        let tree = TemplateTree::load(source)?;
        if *source == TemplateSource::Builtin {
            return Self::from_checked_tree(tree);
        }
        Self::from_tree(tree)
    }

    /// The embedded template: its bytes are fixed when the binary is built, and the test
    /// `the_builtin_template_passes_every_check` runs every check [`Template::from_tree`] runs
    /// on them, so a run only reads them (no check, no place of every TOML key kept).
    fn from_checked_tree(tree: TemplateTree) -> Result<Self> {
        let manifest = Manifest::read_checked(&tree)?;
        let catalogue = Catalogue::read_checked(&tree, &manifest)?;
        Ok(Template {
            tree,
            manifest,
            catalogue,
        })
    }

    /// Checks the manifest, every component and every preset of `tree`, and reports all their
    /// problems at once.
    pub fn from_tree(tree: TemplateTree) -> Result<Self> {
        let mut problems = Vec::new();
        let manifest = Manifest::read(&tree, &mut problems);
        let catalogue = Catalogue::read(&tree, manifest.as_ref(), &mut problems);
        match manifest {
            Some(manifest) if problems.is_empty() => Ok(Template {
                tree,
                manifest,
                catalogue,
            }),
            _ => Err(Error::InvalidTemplate(problems)),
        }
    }
}

/// Resolves name, preset, layout and answers, and renders every file in memory.
pub struct Rendered {
    pub name: ProjectName,
    pub layout: String,
    pub preset: Option<String>,
    pub answers: Map<String, Value>,
    pub files: Vec<RenderedFile>,
    /// Each rendered file's source in the template tree (`components/…/app.ts.tera`), by output
    /// path: what `new --dry-run` shows a fork author.
    pub sources: std::collections::BTreeMap<String, String>,
    /// Answers-file values for variables that do not apply (see [`answers::Resolution`]).
    pub ignored: Vec<String>,
}

/// Picks the preset and layout from the flags, the answers file and (on a terminal) the user.
pub fn choose_preset_and_layout(
    template: &Template,
    preset: Option<&str>,
    layout: Option<&str>,
    file_preset: Option<&str>,
    prompter: &mut dyn Prompter,
) -> Result<(Option<String>, String)> {
    if let Some(l) = layout
        && !template.manifest.layouts.contains_key(l)
    {
        return Err(Error::UnknownLayout {
            name: l.to_string(),
            available: template.manifest.layout_names(),
        });
    }
    let preset_id = match (preset, layout) {
        (Some(p), _) => Some(p.to_string()),
        (None, Some(_)) => None,
        (None, None) => match file_preset {
            Some(p) => Some(p.to_string()),
            None => {
                let default = template.catalogue.default_preset().map(|p| p.id.clone());
                if prompter.is_interactive() && !template.catalogue.presets.is_empty() {
                    prompter
                        .choose_preset(&template.catalogue, &template.manifest)?
                        .or(default)
                } else {
                    default
                }
            }
        },
    };
    match preset_id {
        Some(id) => {
            let p = template.catalogue.get(&id)?;
            if let Some(l) = layout
                && l != p.layout
            {
                return Err(Error::LayoutConflict {
                    preset: p.id.clone(),
                    preset_layout: p.layout.clone(),
                    layout: l.to_string(),
                });
            }
            Ok((Some(p.id.clone()), p.layout.clone()))
        }
        None => {
            let l = layout
                .map(str::to_string)
                .or_else(|| template.manifest.layouts.keys().next().cloned())
                .ok_or_else(|| Error::Manifest {
                    path: MANIFEST_FILE.into(),
                    reason: "declares no layouts".into(),
                })?;
            Ok((None, l))
        }
    }
}

/// Parses `--set` arguments into pre-answers.
/// A key given twice with two values is refused rather than letting the last one win
/// silently (a script's `--set` and a shell alias's would otherwise fight unseen); the same
/// value twice is accepted.
pub fn parse_sets(sets: &[String]) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    for s in sets {
        let (k, v) = answers::parse_set(s)?;
        match out.get(&k) {
            Some(Value::String(first)) if *first != v => {
                return Err(Error::ConflictingSet {
                    key: k,
                    first: first.clone(),
                    second: v,
                });
            }
            _ => {
                out.insert(k, Value::String(v));
            }
        }
    }
    Ok(out)
}

/// Resolves answers and renders the project in memory (nothing touches the disk). The record
/// (`.stackwise.toml`) is added by the project side ([`crate::project::record`]).
#[allow(clippy::too_many_arguments)]
pub fn render_project(
    template: &Template,
    name: ProjectName,
    preset: Option<String>,
    layout: String,
    sets: Map<String, Value>,
    file_answers: Map<String, Value>,
    prompter: &mut dyn Prompter,
) -> Result<Rendered> {
    let mut inputs = Inputs {
        sets,
        file: file_answers,
        ..Inputs::default()
    };
    if let Some(id) = &preset {
        for (k, v) in &template.catalogue.get(id)?.options {
            inputs.preset_options.insert(k.clone(), value::toml_to_json(v));
        }
    }
    let base = inline::base(&name, &layout, preset.as_deref());
    let answers::Resolution {
        answers,
        context,
        ignored,
    } = answers::resolve(&template.manifest, &base, &inputs, prompter)?;
    let plan = plan::build(&template.tree, &template.manifest, &layout, &context)?;
    let files = render::render_plan(&template.tree, &plan)?;
    let sources = plan.files.into_iter().map(|f| (f.path, f.source)).collect();
    Ok(Rendered {
        name,
        layout,
        preset,
        answers,
        files,
        sources,
        ignored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What lets a run of the embedded template skip the checks: they all pass, and reading
    /// without them gives the same manifest and presets.
    #[test]
    fn the_builtin_template_passes_every_check() {
        let checked = Template::from_tree(TemplateTree::builtin()).expect("the embedded template is valid");
        let read = Template::load(&TemplateSource::Builtin).unwrap();
        assert_eq!(format!("{:?}", checked.manifest), format!("{:?}", read.manifest));
        assert_eq!(format!("{:?}", checked.catalogue), format!("{:?}", read.catalogue));
    }

    #[test]
    fn a_key_set_twice_with_two_values_is_refused() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let err = parse_sets(&args(&["worker=true", "worker=false"])).unwrap_err();
        assert!(
            matches!(err, Error::ConflictingSet { ref key, .. } if key == "worker"),
            "{err}"
        );
        assert_eq!(err.kind(), crate::error::ErrorKind::Usage);
        let same = parse_sets(&args(&["worker=true", "x=1", "worker=true"])).unwrap();
        assert_eq!(same.len(), 2);
    }
}
