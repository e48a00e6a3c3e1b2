//! `stackwise diff`: what a project changed since its last render (the user's own work), or what
//! an update would bring (the template's next render against the last one). A git diff either
//! way; nothing is written but unreferenced git objects. Contract: SPEC §7.1.
//!
//! The base is the one `update` merges against ([`find_base`]); the next render is the one
//! `update`'s plan makes ([`plan::next_render`]), so the two cannot drift apart. A project in a
//! subdirectory of a larger repository (a monorepo) is diffed in its directory alone: the paths
//! listed are relative to it, the patch's are the repository's (as `git diff` prints them, and
//! as `git apply` takes them anywhere in the repository).

use std::path::PathBuf;

use git2::{Delta, Diff, DiffFindOptions, DiffFormat, DiffOptions, Oid, Repository};
use serde::Serialize;
use serde_json::Map;

use super::git;
use super::record::{ProjectRecord, TemplateInfo};
use super::update::base::find_base;
use super::update::{UpdateRequest, plan, repo};
use crate::error::{Error, Result};
use crate::template::prompter::NoPrompt;
use crate::template::source::TemplateSource;

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
    repo::check_no_pending_update(&repo).map_err(refused)?;
    let rec = repo::head_record(&repo, &prefix).map_err(refused)?;
    let head = repo.head()?.peel_to_commit()?;
    let (base, base_note) = find_base(&repo, head.id(), &rec).map_err(refused)?;
    let base_info = repo::record_at(&repo, base).map_or_else(|| rec.info.clone(), |r| r.info);
    // The project's trees (a render holds the project alone) sit where the project is in the
    // repository, among HEAD's other files; the diff is limited to the project's directory.
    let lift = |project: Oid| repo::lift_tree(&repo, head.tree_id(), &prefix, project);
    let base_tree = repo.find_tree(lift(repo.find_commit(base)?.tree_id())?)?;
    let mut notes: Vec<String> = base_note.into_iter().collect();
    let incoming = req.incoming || req.template.is_some() || req.to.is_some();
    let (kind, against, to) = if incoming {
        let (tree, info) = next_render(&repo, &rec, req, &mut notes).map_err(refused)?;
        let to = To::Tree(repo.find_tree(lift(tree)?)?);
        ("incoming", Side::of("next render", tree, &info), to)
    } else if req.head {
        ("yours", Side::of("HEAD", head.id(), &rec.info), To::Tree(head.tree()?))
    } else {
        let side = Side {
            what: "work tree",
            id: None,
            template: None,
            revision: None,
            version: None,
        };
        ("yours", side, To::WorkTree)
    };
    // The listing names a type change once; the patch is git's, a deletion and an addition
    // (a patch that changes a file's type in place is one `git apply` rejects).
    let diff = diff_to(&repo, &base_tree, &to, &prefix, true)?;
    let files = diff
        .deltas()
        .filter_map(|d| {
            let path = |f: git2::DiffFile| f.path().map(|p| relative(&prefix, &p.to_string_lossy()));
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
    diff_to(&repo, &base_tree, &to, &prefix, false)?.print(DiffFormat::Patch, |_, _, line| {
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

/// What the last render is compared with.
enum To<'r> {
    Tree(git2::Tree<'r>),
    /// The work tree through the index, untracked files included.
    WorkTree,
}

/// The diff from `base` to `to` in the project's directory, renames found; a type change as
/// one entry (`typechange`) or as a deletion and an addition.
fn diff_to<'r>(repo: &'r Repository, base: &git2::Tree, to: &To, prefix: &str, typechange: bool) -> Result<Diff<'r>> {
    let mut opts = options(prefix, typechange);
    let mut diff = match to {
        To::Tree(t) => repo.diff_tree_to_tree(Some(base), Some(t), Some(&mut opts))?,
        To::WorkTree => {
            opts.include_untracked(true)
                .recurse_untracked_dirs(true)
                .show_untracked_content(true);
            repo.diff_tree_to_workdir_with_index(Some(base), Some(&mut opts))?
        }
    };
    let mut find = DiffFindOptions::new();
    find.renames(true).for_untracked(true);
    diff.find_similar(Some(&mut find))?;
    Ok(diff)
}

/// Git's diff options: no submodules, and only the project's directory.
fn options(prefix: &str, typechange: bool) -> DiffOptions {
    let mut o = DiffOptions::new();
    o.include_typechange(typechange).ignore_submodules(true);
    if !prefix.is_empty() {
        o.pathspec(format!("{prefix}/")).disable_pathspec_match(true);
    }
    o
}

/// A repository path relative to the project's directory.
fn relative(prefix: &str, path: &str) -> String {
    let path = path.replace('\\', "/");
    match path.strip_prefix(prefix).and_then(|p| p.strip_prefix('/')) {
        Some(rel) if !prefix.is_empty() => rel.to_string(),
        _ => path,
    }
}

/// The template's next render, exactly as `update` makes it ([`plan::next_render`]: the same
/// source, preset and layout, recorded answers through the migrations, defaults for new
/// variables), written as a tree: its id and the template it came from.
fn next_render(
    repo: &Repository,
    rec: &ProjectRecord,
    req: &DiffRequest,
    notes: &mut Vec<String>,
) -> Result<(Oid, TemplateInfo)> {
    let update = UpdateRequest {
        dir: req.dir.clone(),
        template: req.template.clone(),
        to: req.to.clone(),
        dry_run: true,
        ..UpdateRequest::default()
    };
    let source = plan::template_source(&update, rec)?;
    let next = plan::next_render(&source, &update, rec, Map::new(), &mut NoPrompt, notes)?;
    Ok((git::write_tree(repo, &next.rendered.files)?, next.info))
}
