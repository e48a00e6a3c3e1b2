//! The plan of files: which template file lands where, rendered or copied, for a layout and its
//! answers. Rendering it is `render.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use globset::GlobMatcher;
use serde_json::{Map, Value};

use super::files::{COMPONENT_MANIFEST, COMPONENTS_DIR, MANIFEST_FILE, TEMPLATE_SUFFIX};
use super::inline::{self, InlineFailure};
use super::manifest::{self, ComponentManifest, Manifest, Mount};
use super::paths::{self, escaped};
use super::source::TemplateTree;
use super::span::{self, toml_path};
use super::value::toml_to_json;
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Render the template of this name (its path in the template tree).
    Render,
    /// Copy the bytes as they are.
    Copy,
}

/// One file of the generated project.
#[derive(Debug, Clone)]
pub struct PlannedFile {
    /// Output path relative to the project root, `/`-separated.
    pub path: String,
    /// Path of the source file in the template tree.
    pub source: String,
    pub action: Action,
    /// Index of the mount (its context) in [`Plan::contexts`].
    pub mount: usize,
    pub executable: bool,
    /// `update = "once"` in the component manifest: written by `new`, never by `update`.
    pub update_once: bool,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub files: Vec<PlannedFile>,
    /// The rendering context of each mount: answers + built-ins + `flags` + `mount_path`.
    pub contexts: Vec<Map<String, Value>>,
}

/// A path selector from a component manifest: a literal path (or directory prefix) or a glob.
struct Selector {
    literal: String,
    /// `literal/`: what the paths inside a selected directory start with.
    dir: String,
    glob: Option<GlobMatcher>,
}

impl Selector {
    fn new(pattern: &str, component: &str) -> Result<Self> {
        // Checked when the manifest loaded; a template built in code may still get it wrong.
        let glob = paths::selector_glob(pattern).map_err(|reason| Error::Manifest {
            path: format!("{COMPONENTS_DIR}/{component}/{COMPONENT_MANIFEST}"),
            reason,
        })?;
        let literal = pattern.trim_end_matches('/').to_string();
        Ok(Selector {
            dir: format!("{literal}/"),
            literal,
            glob,
        })
    }

    fn matches(&self, rel: &str) -> bool {
        rel == self.literal || rel.starts_with(&self.dir) || self.glob.as_ref().is_some_and(|g| g.is_match(rel))
    }
}

fn selectors(patterns: &[String], component: &str) -> Result<Vec<Selector>> {
    patterns.iter().map(|p| Selector::new(p, component)).collect()
}

/// Coerces a rendered flag string: `true`/`false` → bool, digits → integer.
fn flag_value(v: &toml::Value, ctx: &Map<String, Value>) -> std::result::Result<Value, InlineFailure> {
    Ok(match v {
        toml::Value::String(s) if inline::is_template(s) => {
            let out = inline::try_render(s, ctx)?;
            match out.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => out.parse::<i64>().map(Value::from).unwrap_or(Value::String(out)),
            }
        }
        other => toml_to_json(other),
    })
}

/// Builds the plan for `layout` with the resolved `values` (built-ins and answers): for each
/// mount, its context and the component's files it writes; then the refusals that need every path.
pub fn build(tree: &TemplateTree, manifest: &Manifest, layout: &str, values: &Map<String, Value>) -> Result<Plan> {
    let layout_def = manifest.layouts.get(layout).ok_or_else(|| Error::UnknownLayout {
        name: layout.to_string(),
        available: manifest.layout_names(),
    })?;
    let mut files = Vec::new();
    let mut contexts = Vec::new();
    // Output path → the template file that writes it.
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (j, mount) in layout_def.mounts.iter().enumerate() {
        let comp: ComponentManifest = manifest::load_component(tree, &mount.component)?;
        let ctx = mount_context(manifest, layout, j, mount, &comp, values)?;
        let select = MountSelectors::new(tree, mount, &comp, &ctx)?;
        let prefix = format!("{COMPONENTS_DIR}/{}/", mount.component);
        for source in tree.files.keys().filter(|k| k.starts_with(&prefix)) {
            let rel = &source[prefix.len()..];
            if rel == COMPONENT_MANIFEST || select.leaves_out(rel) {
                continue;
            }
            let file = plan_file(tree, source, rel, mount, &ctx, &select, contexts.len())?;
            if let Some(first) = seen.insert(file.path.clone(), source.clone()) {
                return Err(Error::Manifest {
                    path: MANIFEST_FILE.into(),
                    reason: format!("two template files write {}: {first} and {source}", file.path),
                });
            }
            files.push(file);
        }
        contexts.push(ctx);
    }
    refuse_collisions(&files)?;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Plan { files, contexts })
}

/// The rendering context of the `j`-th mount of `layout`: the answers and built-ins, the
/// component's flags with the mount's own over them (rendered), and `mount_path`.
fn mount_context(
    manifest: &Manifest,
    layout: &str,
    j: usize,
    mount: &Mount,
    comp: &ComponentManifest,
    values: &Map<String, Value>,
) -> Result<Map<String, Value>> {
    let mut flags = Map::new();
    for (k, v) in &comp.flags {
        flags.insert(k.clone(), toml_to_json(v));
    }
    // Every flag a mount sets was checked against the component when the manifest loaded.
    for (k, v) in &mount.flags {
        let value = flag_value(v, values).map_err(|f| {
            let what = || format!("flag `{k}` of component `{}` (layout `{layout}`)", mount.component);
            f.into_error(MANIFEST_FILE, what, |e| {
                let flag = toml_path!["layouts", layout, "mounts", j, "flags", k];
                manifest.error_at(
                    flag,
                    e.at,
                    format!("flag `{k}` of component `{}`: {}", mount.component, e.message),
                )
            })
        })?;
        flags.insert(k.clone(), value);
    }
    let mut ctx = values.clone();
    ctx.insert("flags".into(), Value::Object(flags));
    ctx.insert("mount_path".into(), Value::String(mount.at.clone()));
    Ok(ctx)
}

/// What a component's manifest says of its files, for one mount: which are left out (`ignore`,
/// and the paths of every `[[conditional]]` whose `when` is false there), which are copied as
/// they are (`verbatim`), which `update` never writes again (`update = "once"`).
struct MountSelectors {
    ignore: Vec<Selector>,
    excluded: Vec<Selector>,
    verbatim: Vec<Selector>,
    once: Vec<Selector>,
}

impl MountSelectors {
    fn new(tree: &TemplateTree, mount: &Mount, comp: &ComponentManifest, ctx: &Map<String, Value>) -> Result<Self> {
        let ignore = selectors(&comp.ignore, &mount.component)?;
        let verbatim = selectors(&comp.verbatim, &mount.component)?;
        let once_patterns: Vec<String> = comp.files.iter().flat_map(|f| f.paths.clone()).collect();
        let once = selectors(&once_patterns, &mount.component)?;
        let mut excluded = Vec::new();
        for (i, cond) in comp.conditional.iter().enumerate() {
            let holds = inline::try_eval(&cond.when, ctx).map_err(|f| {
                let file = super::component::component_file(&mount.component);
                let what = || format!("the `when` of conditional {} (mounted at `{}`)", i + 1, mount.at);
                f.into_error(&file, what, |e| {
                    let text = String::from_utf8_lossy(&tree.files[&file]);
                    let message = format!("conditional `when` (mounted at `{}`): {}", mount.at, e.message);
                    span::error_at(&file, &text, toml_path!["conditional", i, "when"], e.at, message)
                })
            })?;
            if !holds {
                excluded.extend(selectors(&cond.paths, &mount.component)?);
            }
        }
        Ok(MountSelectors {
            ignore,
            excluded,
            verbatim,
            once,
        })
    }

    fn leaves_out(&self, rel: &str) -> bool {
        self.ignore.iter().chain(&self.excluded).any(|s| s.matches(rel))
    }
}

/// Where the component file `source` (`rel` inside its component) lands for this mount, and how:
/// rendered (a `.tera` file not `verbatim`, the suffix dropped) or copied. Its path is rendered,
/// put in one canonical form and refused if unsafe or the project's record.
fn plan_file(
    tree: &TemplateTree,
    source: &str,
    rel: &str,
    mount: &Mount,
    ctx: &Map<String, Value>,
    select: &MountSelectors,
    mount_index: usize,
) -> Result<PlannedFile> {
    let is_verbatim = select.verbatim.iter().any(|s| s.matches(rel));
    let render = rel.ends_with(TEMPLATE_SUFFIX) && !is_verbatim;
    let out_rel = inline::render_str(rel, ctx, source, source, "the templated file name")?;
    let out_rel = if render {
        out_rel[..out_rel.len() - TEMPLATE_SUFFIX.len()].to_string()
    } else {
        out_rel
    };
    // One canonical form before any check, so `./a` and `a` are the same path.
    let path = paths::normalize(&paths::join(&mount.at, &out_rel)).map_err(|reason| Error::UnsafePath {
        path: format!("{} (from {source})", escaped(&paths::join(&mount.at, &out_rel))),
        reason,
    })?;
    // The record is the user's (SPEC §7.1): a template that wrote it could erase
    // `[update] skip`, redirect later updates or fake the version migrations start from.
    // Nor a directory of that name (`.stackwise.toml/x` would replace the record with it), in
    // any case (on macOS and Windows `.Stackwise.toml` is the record).
    let top = path.split('/').next().unwrap_or_default();
    if top.eq_ignore_ascii_case(super::files::RECORD_FILE) {
        return Err(Error::UnsafePath {
            path: format!("{path} (from {source})"),
            reason: "`.stackwise.toml` is reserved: stackwise writes the project's record itself".into(),
        });
    }
    if path == "." {
        return Err(Error::UnsafePath {
            path: format!("{} (from {source})", escaped(&out_rel)),
            reason: "a file may not take the project directory's own path (its name rendered to `.`)".into(),
        });
    }
    let bytes = &tree.files[source];
    let executable = path.ends_with(".sh") || bytes.starts_with(b"#!");
    Ok(PlannedFile {
        path,
        source: source.to_string(),
        action: if render { Action::Render } else { Action::Copy },
        mount: mount_index,
        executable,
        update_once: select.once.iter().any(|s| s.matches(rel)),
    })
}

/// Refuses paths that collide once on disk: two that differ only by case (one file on macOS and
/// Windows) or only by Unicode normalisation (`café` composed and decomposed: one file on
/// macOS), and a file where another file's directory is (`a` and `a/b`).
fn refuse_collisions(files: &[PlannedFile]) -> Result<()> {
    use unicode_normalization::UnicodeNormalization;
    let mut folded: BTreeMap<String, &str> = BTreeMap::new();
    for f in files {
        let key = if f.path.is_ascii() {
            f.path.to_lowercase()
        } else {
            f.path.nfc().collect::<String>().to_lowercase()
        };
        if let Some(other) = folded.insert(key, &f.path) {
            let reason = if other.to_lowercase() == f.path.to_lowercase() {
                format!("it differs from {other} only by case; the two collide on macOS and Windows")
            } else {
                format!(
                    "it differs from {other} only by Unicode normalisation (composed and decomposed characters); the two collide on macOS"
                )
            };
            return Err(Error::UnsafePath {
                path: f.path.clone(),
                reason,
            });
        }
    }
    let paths: BTreeSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
    for p in &paths {
        let mut cur = Path::new(p).parent();
        while let Some(dir) = cur {
            let d = dir.to_string_lossy();
            if !d.is_empty() && paths.contains(d.as_ref()) {
                return Err(Error::UnsafePath {
                    path: p.to_string(),
                    reason: format!("{d} is written both as a file and as a directory"),
                });
            }
            cur = dir.parent();
        }
    }
    Ok(())
}
