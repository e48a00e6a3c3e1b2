//! Evolving a layout (SPEC §6.2): a python or node project grows into the hybrid stack.
//!
//! Which files move is computed from the manifest, never from a list: every file belongs to the
//! mount of the old layout with the longest matching path; when that mount's component is
//! mounted elsewhere in the new layout, the file moves there. A user's own file moves with the
//! component whose directory it sits in; a user's file at the root of a `.` mount, outside every
//! directory the component writes, stays and is reported. Git does the rest: a move-only commit
//! (100 % renames, so `git log --follow` and blame keep the history), then the ordinary update
//! merge with the previous render relocated the same way as its base.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use git2::build::TreeUpdateBuilder;
use git2::{Oid, Repository};

use super::merge::{self, tree_files};
use super::report::{FileReport, FileStatus};
use crate::error::{Error, Result};
use crate::project::record::ProjectRecord;
use crate::project::record::RECORD_FILE;
use crate::template::manifest::{Layout, Manifest};
use crate::template::{Rendered, Template};

/// How a layout change relates the two layouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Every component of the old layout is mounted in the new one: the project can grow.
    Grow,
    /// The new layout lacks a component the project has (hybrid → python, python ↔ node).
    Refused(String),
}

/// Whether `old` → `new` keeps every component of the old layout.
pub fn classify(manifest: &Manifest, old: &str, new: &str) -> Result<Change> {
    let (Some(o), Some(n)) = (manifest.layouts.get(old), manifest.layouts.get(new)) else {
        return Err(Error::UnknownLayout {
            name: if manifest.layouts.contains_key(old) {
                new.to_string()
            } else {
                old.to_string()
            },
            available: manifest.layout_names(),
        });
    };
    let missing: Vec<&str> = o
        .mounts
        .iter()
        .filter(|m| !n.mounts.iter().any(|nm| nm.component == m.component))
        .map(|m| m.component.as_str())
        .collect();
    if missing.is_empty() {
        return Ok(Change::Grow);
    }
    let shrinks = n
        .mounts
        .iter()
        .all(|nm| o.mounts.iter().any(|m| m.component == nm.component));
    let why = if shrinks {
        format!(
            "the {new} layout has no place for {} of this {old} project: going from {old} to {new} only removes parts, and stackwise never deletes a service with your code in it",
            missing.join(", ")
        )
    } else {
        format!(
            "the {new} layout does not mount {}, the component this {old} project is built on, so there is no component to keep your code in (a sideways move is a rewrite, not an update)",
            missing.join(", ")
        )
    };
    Ok(Change::Refused(format!(
        "{why}\n  hint: keep the {old} layout and update within it, or generate a new {new} project with `stackwise new` and move your code over by hand"
    )))
}

/// The mount of `layout` a path belongs to: the longest `at` that is a prefix of it.
fn owner<'a>(layout: &'a Layout, path: &str) -> Option<(&'a str, &'a str)> {
    layout
        .mounts
        .iter()
        .filter(|m| m.at == "." || path == m.at || path.starts_with(&format!("{}/", m.at)))
        .max_by_key(|m| if m.at == "." { 0 } else { m.at.len() + 1 })
        .map(|m| (m.component.as_str(), m.at.as_str()))
}

fn relative<'p>(at: &str, path: &'p str) -> &'p str {
    if at == "." {
        path
    } else {
        path[at.len()..].trim_start_matches('/')
    }
}

fn join(at: &str, rel: &str) -> String {
    if at == "." {
        rel.to_string()
    } else {
        format!("{at}/{rel}")
    }
}

/// The moves of a layout change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Moves {
    /// old path → new path, for every file that moves.
    pub renames: BTreeMap<String, String>,
    /// The user's files that stay where they are (outside every component).
    pub stays: Vec<String>,
}

impl Moves {
    pub fn target(&self, path: &str) -> String {
        self.renames.get(path).cloned().unwrap_or_else(|| path.to_string())
    }

    /// Each move, as the report says it: `renamed` (from the old path).
    pub fn reports(&self) -> Vec<FileReport> {
        self.renames
            .iter()
            .map(|(from, to)| FileReport {
                path: to.clone(),
                status: FileStatus::Renamed,
                from: Some(from.clone()),
            })
            .collect()
    }
}

/// Plans the moves from the old layout to the new one, for the files of the base render
/// (`rendered`, which the template wrote) and of the project (`project`, HEAD's files).
pub fn plan(old: &Layout, new: &Layout, rendered: &BTreeSet<String>, project: &BTreeSet<String>) -> Moves {
    let new_at = |component: &str| {
        new.mounts
            .iter()
            .find(|m| m.component == component)
            .map(|m| m.at.as_str())
    };
    // The top-level directories (relative to its mount) each component of the old layout wrote.
    let mut dirs: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for p in rendered {
        if let Some((c, at)) = owner(old, p)
            && let Some((first, _)) = relative(at, p).split_once('/')
        {
            dirs.entry(c).or_default().insert(first.to_string());
        }
    }
    let mut moves = Moves::default();
    for p in rendered.union(project) {
        if p == RECORD_FILE {
            continue;
        }
        let Some((component, at)) = owner(old, p) else { continue };
        let Some(to) = new_at(component) else { continue };
        let rel = relative(at, p);
        let inside = rendered.contains(p)
            || at != "."
            || lockfile_of_rendered_manifest(rendered, at, rel)
            || rel
                .split_once('/')
                .is_some_and(|(first, _)| dirs.get(component).is_some_and(|d| d.contains(first)));
        if !inside {
            moves.stays.push(p.clone());
            continue;
        }
        if to != at {
            moves.renames.insert(p.clone(), join(to, rel));
        }
    }
    moves
}

/// What the new layout says of each component that moves (its mount's `moved` text): that a
/// service is now behind a gateway, say.
pub fn moved_notes(old: &Layout, new: &Layout) -> Vec<String> {
    new.mounts
        .iter()
        .filter_map(|m| {
            let from = old.mounts.iter().find(|o| o.component == m.component)?;
            let note = m.moved.as_deref().filter(|_| from.at != m.at)?;
            let from = if from.at == "." {
                "the project root"
            } else {
                from.at.as_str()
            };
            Some(format!("{} moved from {from} to {}/: {note}", m.component, m.at))
        })
        .collect()
}

/// The ignored directories and files at the project's root (`.venv`, `node_modules`, caches):
/// git does not move them, so after a layout grows they are left behind, stale.
pub fn leftovers_note(repo: &Repository, root: &Path) -> Option<String> {
    let workdir = repo.workdir()?;
    let mut left: Vec<String> = std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let rel = e.path().strip_prefix(workdir).ok()?.to_path_buf();
            (name != ".git" && repo.is_path_ignored(&rel).unwrap_or(false)).then_some(name)
        })
        .collect();
    if left.is_empty() {
        return None;
    }
    left.sort();
    Some(format!(
        "left where they were (ignored by git, so not moved; stale once the update is committed): {} — remove them (rm -rf {}); `make install` makes what the new layout needs",
        left.join(", "),
        left.join(" ")
    ))
}

/// A lockfile belongs beside the manifest it locks: `uv.lock` moves with the component that
/// wrote `pyproject.toml` next to it, `package-lock.json` with `package.json`.
fn lockfile_of_rendered_manifest(rendered: &BTreeSet<String>, at: &str, rel: &str) -> bool {
    let (dir, name) = rel.rsplit_once('/').map_or(("", rel), |(d, n)| (d, n));
    let manifest = match name {
        "uv.lock" => "pyproject.toml",
        "package-lock.json" => "package.json",
        _ => return false,
    };
    let beside = if dir.is_empty() {
        manifest.to_string()
    } else {
        format!("{dir}/{manifest}")
    };
    rendered.contains(&join(at, &beside))
}

/// A copy of `tree` with every rename of `moves` applied (the blobs themselves unchanged).
pub fn relocate(repo: &Repository, tree: Oid, moves: &Moves) -> Result<Oid> {
    let t = repo.find_tree(tree)?;
    let files = tree_files(&t)?;
    let mut b = TreeUpdateBuilder::new();
    for (path, (id, mode)) in &files {
        if let Some(to) = moves.renames.get(path) {
            b.remove(path.as_str());
            let mode = match mode {
                0o100755 => git2::FileMode::BlobExecutable,
                0o120000 => git2::FileMode::Link,
                _ => git2::FileMode::Blob,
            };
            b.upsert(to.as_str(), *id, mode);
        }
    }
    Ok(b.create_updated(repo, &t)?)
}

/// The trees of a growing layout (SPEC §6.2): HEAD and the base relocated the same way, and
/// the move-only commit's tree and message.
pub(super) struct Relocation {
    pub base: Oid,
    pub ours: Oid,
    pub moved: Vec<FileReport>,
    pub commit: Option<(Oid, String)>,
}

/// Plans the relocation of a growing layout (nothing when the layout stays); notes for the report.
pub(super) fn relocation(
    repo: &Repository,
    (template, rec, rendered): (&Template, &ProjectRecord, &Rendered),
    (base, ours): (Oid, Oid),
    root: &Path,
    notes: &mut Vec<String>,
) -> Result<Relocation> {
    let none = Relocation {
        base,
        ours,
        moved: Vec::new(),
        commit: None,
    };
    let layouts = &template.manifest.layouts;
    // The same layout, or one the new version renamed or dropped: nothing to compare it with.
    if rendered.layout == rec.layout || !layouts.contains_key(&rec.layout) {
        return Ok(none);
    }
    let keys =
        |t: Oid| -> Result<BTreeSet<String>> { Ok(merge::tree_files(&repo.find_tree(t)?)?.into_keys().collect()) };
    let moves = plan(
        &layouts[&rec.layout],
        &layouts[&rendered.layout],
        &keys(base)?,
        &keys(ours)?,
    );
    if !moves.stays.is_empty() {
        notes.push(format!(
            "your files outside the service stay where they are: {}",
            moves.stays.join(", ")
        ));
    }
    if moves.renames.is_empty() {
        return Ok(none);
    }
    notes.push(format!(
        "first a move-only commit of {} files (e.g. {} → {})",
        moves.renames.len(),
        moves.renames.keys().next().map_or("", String::as_str),
        moves.renames.values().next().map_or("", String::as_str)
    ));
    notes.extend(moved_notes(&layouts[&rec.layout], &layouts[&rendered.layout]));
    notes.extend(leftovers_note(repo, root));
    let ours = relocate(repo, ours, &moves)?;
    Ok(Relocation {
        base: relocate(repo, base, &moves)?,
        ours,
        moved: moves.reports(),
        commit: Some((ours, move_message(rendered))),
    })
}

fn move_message(rendered: &Rendered) -> String {
    format!(
        "stackwise: move the service for the {} layout\n\nA move-only commit before the update to {}: every file keeps its content, so\n`git log --follow` and blame keep their history.\n",
        rendered.layout,
        rendered.preset.as_deref().unwrap_or(&rendered.layout)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::manifest::Mount;

    fn layout(mounts: &[(&str, &str)]) -> Layout {
        Layout {
            description: String::new(),
            mounts: mounts
                .iter()
                .map(|(c, at)| Mount {
                    component: c.to_string(),
                    at: at.to_string(),
                    flags: toml::Table::new(),
                    moved: None,
                })
                .collect(),
        }
    }

    fn set(paths: &[&str]) -> BTreeSet<String> {
        paths.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn the_service_moves_with_the_users_files_inside_it_and_root_files_stay() {
        let python = layout(&[("python-service", "."), ("k8s", "deploy/k8s")]);
        let hybrid = layout(&[
            ("hybrid-root", "."),
            ("python-service", "ml-service"),
            ("node-service", "gateway"),
            ("k8s", "deploy/k8s"),
        ]);
        let rendered = set(&[
            ".stackwise.toml",
            "README.md",
            "Makefile",
            "pyproject.toml",
            ".github/workflows/ci.yml",
            "src/shop/app.py",
            "tests/test_api.py",
            "deploy/k8s/base/kustomization.yaml",
        ]);
        let project = set(&[
            ".stackwise.toml",
            "README.md",
            "Makefile",
            "pyproject.toml",
            "uv.lock",
            ".github/workflows/ci.yml",
            "src/shop/app.py",
            "src/shop/pricing.py",
            "tests/test_api.py",
            "tests/test_pricing.py",
            "deploy/k8s/base/kustomization.yaml",
            "NOTES.md",
            "scripts/seed.sh",
        ]);
        let m = plan(&python, &hybrid, &rendered, &project);
        assert_eq!(m.target("src/shop/pricing.py"), "ml-service/src/shop/pricing.py");
        assert_eq!(m.target("tests/test_pricing.py"), "ml-service/tests/test_pricing.py");
        assert_eq!(m.target("README.md"), "ml-service/README.md");
        assert_eq!(
            m.target(".github/workflows/ci.yml"),
            "ml-service/.github/workflows/ci.yml"
        );
        assert_eq!(
            m.target("deploy/k8s/base/kustomization.yaml"),
            "deploy/k8s/base/kustomization.yaml"
        );
        assert_eq!(m.target(".stackwise.toml"), ".stackwise.toml");
        assert_eq!(
            m.target("uv.lock"),
            "ml-service/uv.lock",
            "the lockfile goes with its pyproject.toml"
        );
        assert_eq!(m.stays, vec!["NOTES.md".to_string(), "scripts/seed.sh".to_string()]);
    }

    #[test]
    fn shrinking_and_sideways_are_refused_growing_is_not() {
        let tree = crate::template::source::TemplateTree::builtin();
        let manifest = Manifest::load(&tree).unwrap();
        assert_eq!(classify(&manifest, "python", "hybrid").unwrap(), Change::Grow);
        assert_eq!(classify(&manifest, "node", "hybrid").unwrap(), Change::Grow);
        for (old, new, word) in [
            ("hybrid", "python", "only removes"),
            ("python", "node", "sideways"),
            ("node", "python", "sideways"),
        ] {
            match classify(&manifest, old, new).unwrap() {
                Change::Refused(why) => assert!(why.contains(word), "{old} → {new}: {why}"),
                Change::Grow => panic!("{old} → {new} must be refused"),
            }
        }
    }
}
