//! Component manifests (`components/<name>/component.toml`): flag defaults, ignored and verbatim
//! paths, conditional paths and update policies. Format reference: docs/TEMPLATES.md.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::files::{COMPONENT_MANIFEST, COMPONENTS_DIR};
use super::inline;
use super::paths::selector_glob;
use super::source::TemplateTree;
use super::span::{self, Document, toml_path};
use crate::error::{Error, Problem, Result};

/// How `stackwise update` treats a path of a component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpdatePolicy {
    /// Written by `stackwise new` only; `stackwise update` never writes it again.
    Once,
}

/// `[[files]]` of a component manifest: a policy for some of its paths.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePolicy {
    /// Globs over template paths relative to the component; a directory name covers its contents.
    pub paths: Vec<String>,
    pub update: UpdatePolicy,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentManifest {
    #[serde(default)]
    pub description: String,
    /// Globs (over template paths relative to the component) never copied.
    #[serde(default)]
    pub ignore: Vec<String>,
    /// Globs of `.tera` files copied as they are (suffix kept), for files that must not be rendered.
    #[serde(default)]
    pub verbatim: Vec<String>,
    #[serde(default)]
    pub flags: toml::Table,
    #[serde(default)]
    pub conditional: Vec<Conditional>,
    /// Update policies of some paths (`update = "once"`).
    #[serde(default)]
    pub files: Vec<FilePolicy>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conditional {
    /// Tera expression; the paths are written only when it is true.
    pub when: String,
    /// Globs over template paths relative to the component; a directory name covers its contents.
    pub paths: Vec<String>,
}

/// Reads `components/<name>/component.toml` (empty manifest when absent) for a plan. The
/// template's load checked it already (or, embedded, the tests did): it is parsed without the
/// place of every key and value, unless it fails all the same and the checked read must say where.
pub fn load_component(tree: &TemplateTree, name: &str) -> Result<ComponentManifest> {
    match tree.files.get(&component_file(name)) {
        None => return Ok(ComponentManifest::default()),
        Some(bytes) => {
            if let Ok(Ok(c)) = std::str::from_utf8(bytes).map(toml::from_str::<ComponentManifest>) {
                return Ok(c);
            }
        }
    }
    let mut problems = Vec::new();
    match read_component(tree, name, &mut problems) {
        Some(c) if problems.is_empty() => Ok(c),
        _ => Err(Error::InvalidTemplate(problems)),
    }
}

/// The components of a tree: every directory under `components/`.
pub(super) fn component_names(tree: &TemplateTree) -> BTreeSet<String> {
    let prefix = format!("{COMPONENTS_DIR}/");
    tree.files
        .keys()
        .filter_map(|k| {
            k.strip_prefix(&prefix)?
                .split_once('/')
                .map(|(name, _)| name.to_string())
        })
        .collect()
}

/// The path of a component's manifest in the template.
pub(crate) fn component_file(name: &str) -> String {
    format!("{COMPONENTS_DIR}/{name}/{COMPONENT_MANIFEST}")
}

/// Reads and checks one `component.toml`, adding every problem to `problems` in the order of its
/// lines. The component is returned whenever it could be read, so mounts can be checked against
/// it too.
pub(super) fn read_component(
    tree: &TemplateTree,
    name: &str,
    problems: &mut Vec<Problem>,
) -> Option<ComponentManifest> {
    let file = component_file(name);
    if !tree.files.contains_key(&file) {
        return Some(ComponentManifest::default());
    }
    let doc = document(tree, &file, problems)?;
    let mut found = Vec::new();
    let component = match doc.deserialize::<ComponentManifest>() {
        Ok(c) => Some(c),
        Err(first) => {
            found.push(first);
            for i in 0..doc.array_len(toml_path!["conditional"]) {
                doc.check_part::<Conditional>(toml_path!["conditional", i], &mut found);
            }
            for i in 0..doc.array_len(toml_path!["files"]) {
                doc.check_part::<FilePolicy>(toml_path!["files", i], &mut found);
            }
            None
        }
    };
    if let Some(c) = &component {
        for (key, globs) in [("ignore", &c.ignore), ("verbatim", &c.verbatim)] {
            for (i, g) in globs.iter().enumerate() {
                if let Err(why) = selector_glob(g) {
                    found.push(doc.at_value(toml_path![key, i], format!("`{key}`: {why}")));
                }
            }
        }
        for (i, cond) in c.conditional.iter().enumerate() {
            if let Err(e) = inline::check_expr(&cond.when) {
                let message = format!("conditional `when`: {}", e.message);
                found.push(doc.at_inside(toml_path!["conditional", i, "when"], e.at, message));
            }
            for (j, g) in cond.paths.iter().enumerate() {
                if let Err(why) = selector_glob(g) {
                    found.push(doc.at_value(
                        toml_path!["conditional", i, "paths", j],
                        format!("conditional `paths`: {why}"),
                    ));
                }
            }
        }
        for (i, policy) in c.files.iter().enumerate() {
            for (j, g) in policy.paths.iter().enumerate() {
                if let Err(why) = selector_glob(g) {
                    found.push(doc.at_value(toml_path!["files", i, "paths", j], format!("files `paths`: {why}")));
                }
            }
        }
    }
    span::sort(&mut found);
    problems.extend(found);
    component
}

/// Refuses a `[[conditional]] when` that reads a name its context lacks (a variable the template
/// does not declare, a flag the component does not declare): Tera would take it for false and
/// silently leave the files out.
pub(super) fn check_condition_names(
    tree: &TemplateTree,
    name: &str,
    component: &ComponentManifest,
    variables: &[&str],
    problems: &mut Vec<Problem>,
) {
    if component.conditional.is_empty() {
        return;
    }
    let Some(doc) = document(tree, &component_file(name), &mut Vec::new()) else {
        return;
    };
    let mut names = inline::base_names();
    names.extend(variables);
    names.extend(["flags", "mount_path"]);
    let known = inline::Known {
        names,
        flags: Some(component.flags.keys().map(String::as_str).collect()),
        what: "a built-in, a variable of the template, `flags` or `mount_path`",
        later: Vec::new(),
    };
    for (i, cond) in component.conditional.iter().enumerate() {
        for e in inline::check_names(&cond.when, &known) {
            let message = format!("conditional `when`: {}", e.message);
            problems.push(doc.at_inside(toml_path!["conditional", i, "when"], e.at, message));
        }
    }
}

/// A file of the tree, parsed; its problems (not text, TOML syntax) go to `problems`.
pub(super) fn document<'t>(tree: &'t TemplateTree, file: &str, problems: &mut Vec<Problem>) -> Option<Document<'t>> {
    let Ok(text) = std::str::from_utf8(tree.files.get(file)?) else {
        problems.push(Problem::file(file, "not UTF-8 text"));
        return None;
    };
    Document::parse(file, text).map_err(|found| problems.extend(found)).ok()
}
