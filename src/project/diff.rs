//! `stackwise diff`: what a project changed since its last render (the user's own work), or what
//! an update would bring (the template's next render against the last one). A git diff either
//! way; nothing is written but unreferenced git objects. Contract: SPEC §7.1.
//!
//! The base is the one `update` merges against ([`update::find_base`]); the next render is made
//! the way `update` makes it (recorded answers, migrations, defaults for new variables) in
//! [`next_render`] — the one place this module leans on `update`'s internals.

use std::path::PathBuf;

use git2::{Delta, DiffFindOptions, DiffFormat, DiffOptions, Oid, Repository};
use serde::Serialize;
use serde_json::Map;

use super::git;
use super::record::{self, ProjectRecord, TemplateInfo};
use super::update::{self, answers, repo};
use crate::error::{Error, Result};
use crate::template::names::ProjectName;
use crate::template::prompter::NoPrompt;
use crate::template::source::TemplateSource;
use crate::template::{Template, render_project};

/// What `stackwise diff` was asked to show.
#[derive(Debug, Clone, Default)]
pub struct DiffRequest {
    pub dir: PathBuf,
    /// Compare the last render with HEAD rather than the work tree (your committed work only).
    pub head: bool,
    /// Show what an update would bring instead of your work (`--incoming`, implied by the two
    /// fields below).
    pub incoming: bool,
    /// `--template SRC`: the source of the next render (default: the recorded one).
    pub template: Option<TemplateSource>,
    /// `--to REV`: a branch, tag or commit of a git template source.
    pub to: Option<String>,
}

/// One path of the diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffFile {
    pub path: String,
    /// added, modified, deleted, renamed or type-changed.
    pub status: &'static str,
    /// The old path of a rename.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// The result of `stackwise diff`.
#[derive(Debug, Clone, Serialize)]
pub struct DiffOutcome {
    /// `yours` (the project against its last render) or `incoming` (the next render against it).
    pub kind: &'static str,
    /// The last render: the base `update` would merge against.
    pub base: Side,
    /// The work tree, HEAD, or the next render.
    pub against: Side,
    pub files: Vec<DiffFile>,
    pub notes: Vec<String>,
    /// The unified diff (git's format, `a/` and `b/` prefixes): `git apply` takes it.
    #[serde(skip)]
    pub patch: String,
}

/// One side of a diff.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    /// `last render`, `work tree`, `HEAD` or `next render`.
    pub what: &'static str,
    /// The commit (the last render, HEAD) or, for the next render made in memory, its tree.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl Side {
    fn of(what: &'static str, id: Oid, info: &TemplateInfo) -> Self {
        Side {
            what,
            id: Some(id.to_string()),
            template: Some(info.template.clone()),
            revision: Some(info.revision.clone()),
            version: info.version.clone(),
        }
    }
}

/// `stackwise diff`.
pub fn diff(req: &DiffRequest) -> Result<DiffOutcome> {
    let refused = |e: Error| e.refused_as("diff");
    let (repo, prefix) = repo::open(&req.dir).map_err(refused)?;
    let rec = repo::head_record(&repo, &prefix).map_err(refused)?;
    let head = repo.head()?.peel_to_commit()?;
    let (base, base_note) = update::base::find_base(&repo, head.id(), &rec).map_err(refused)?;
    let base_info = repo::record_at(&repo, base).map_or_else(|| rec.info.clone(), |r| r.info);
    let base_tree = repo.find_commit(base)?.tree()?;
    let mut notes: Vec<String> = base_note.into_iter().collect();
    let incoming = req.incoming || req.template.is_some() || req.to.is_some();
    let (kind, against, mut diff) = if incoming {
        let (tree, info, render_notes) = next_render(&repo, &rec, req).map_err(refused)?;
        notes.extend(render_notes);
        let new_tree = repo.find_tree(tree)?;
        let d = repo.diff_tree_to_tree(Some(&base_tree), Some(&new_tree), Some(&mut options()))?;
        ("incoming", Side::of("next render", tree, &info), d)
    } else if req.head {
        let d = repo.diff_tree_to_tree(Some(&base_tree), Some(&head.tree()?), Some(&mut options()))?;
        ("yours", Side::of("HEAD", head.id(), &rec.info), d)
    } else {
        let mut opts = options();
        opts.include_untracked(true)
            .recurse_untracked_dirs(true)
            .show_untracked_content(true);
        let d = repo.diff_tree_to_workdir_with_index(Some(&base_tree), Some(&mut opts))?;
        let side = Side {
            what: "work tree",
            id: None,
            template: None,
            revision: None,
            version: None,
        };
        ("yours", side, d)
    };
    let mut find = DiffFindOptions::new();
    find.renames(true).for_untracked(true);
    diff.find_similar(Some(&mut find))?;
    let files = diff
        .deltas()
        .filter_map(|d| {
            let path = |f: git2::DiffFile| f.path().map(|p| p.to_string_lossy().replace('\\', "/"));
            let (status, from) = match d.status() {
                Delta::Added | Delta::Untracked => ("added", None),
                Delta::Deleted => ("deleted", None),
                Delta::Modified => ("modified", None),
                Delta::Renamed => ("renamed", path(d.old_file())),
                Delta::Typechange => ("type-changed", None),
                _ => return None,
            };
            let p = if status == "deleted" {
                path(d.old_file())
            } else {
                path(d.new_file())
            };
            Some(DiffFile { path: p?, status, from })
        })
        .collect();
    let mut patch = Vec::new();
    diff.print(DiffFormat::Patch, |_, _, line| {
        if matches!(line.origin(), '+' | '-' | ' ') {
            patch.push(line.origin() as u8);
        }
        patch.extend_from_slice(line.content());
        true
    })?;
    Ok(DiffOutcome {
        kind,
        base: Side::of("last render", base, &base_info),
        against,
        files,
        notes,
        patch: String::from_utf8_lossy(&patch).into_owned(),
    })
}

fn options() -> DiffOptions {
    let mut o = DiffOptions::new();
    o.include_typechange(true).ignore_submodules(true);
    o
}

/// The template's next render, as `update` would make it (recorded preset and layout, recorded
/// answers through the template's migrations, defaults for new variables), written as a tree:
/// its id, the template it came from, and notes on the answers.
fn next_render(repo: &Repository, rec: &ProjectRecord, req: &DiffRequest) -> Result<(Oid, TemplateInfo, Vec<String>)> {
    let mut source = req.template.clone().unwrap_or_else(|| rec.info.source());
    if let Some(rev) = &req.to {
        match &mut source {
            TemplateSource::Git { reference, .. } => *reference = Some(rev.clone()),
            _ => {
                return Err(Error::refused(format!(
                    "--to {rev} needs a git template source; {} is not one",
                    source.describe()
                )));
            }
        }
    }
    let template = Template::load(&source)
        .map_err(|e| Error::refused(format!("the template source {} cannot be read: {e}", source.describe())))?;
    let info = TemplateInfo::of(&template, &source);
    let preset = rec.preset.clone().filter(|p| template.catalogue.get(p).is_ok());
    let name = ProjectName::parse(&rec.name)?;
    let change = answers::PresetChange {
        name: &name,
        old_layout: &rec.layout,
        old_preset: rec.preset.as_deref(),
        new_preset: preset.as_deref(),
    };
    let (carried, notes) = answers::carry_over(&template, &rec.answers, rec.info.version.as_deref(), &change)?;
    let mut rendered = render_project(
        &template,
        name,
        preset,
        rec.layout.clone(),
        Map::new(),
        carried,
        &mut NoPrompt,
    )?;
    record::add_to(&mut rendered, &template, &info, Some(&rec.update));
    Ok((git::write_tree(repo, &rendered.files)?, info, notes))
}
