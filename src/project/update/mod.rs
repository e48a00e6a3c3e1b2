//! `stackwise update`: the project follows its template, by a real git merge. Computed first,
//! written last (SPEC §6.1, §7.1):
//!
//! - [`plan`] computes everything in memory and writes no file, index or ref: recorded answers →
//!   migrations → `--set`/`--answers` → defaults or prompts; the render commit object (parent:
//!   the previous render commit); the base ([`base`]); the relocation of a growing layout
//!   ([`evolve`]); the merged index and its report ([`merge`]); the re-lock commands. It
//!   refuses what cannot be written as computed (file ↔ directory, files in the way).
//!   `--dry-run` and `--check` print it.
//! - [`apply`] is the one writer: move-only commit, `refs/stackwise/pending`, merge state,
//!   merge commit, install — with a [`journal`] written first so that any failure or
//!   interruption is undone exactly — and it checks the §7.1 invariants before reporting
//!   success. Every commit and ref goes through [`crate::project::git`].

pub mod answers;
pub mod apply;
pub(crate) mod attributes;
pub mod base;
pub mod evolve;
pub mod journal;
pub mod merge;
mod notes;
pub mod plan;
pub mod policy;
pub mod repo;
pub mod report;
pub mod skip;
mod writable;

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::install::{Progress, StepResult};
use super::record::{ProjectRecord, TemplateInfo};
use crate::error::{Error, Result};
use crate::template::Template;
use crate::template::prompter::Prompter;
use crate::template::source::TemplateSource;
pub use merge::{MergeSpec, Merged};
pub use report::{FileReport, FileStatus};

/// Everything `stackwise update` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct UpdateRequest {
    pub dir: PathBuf,
    /// `--to REV`: a branch, tag or commit of a git template source.
    pub to: Option<String>,
    /// `--template SRC`: another source than the recorded one.
    pub template: Option<TemplateSource>,
    pub preset: Option<String>,
    pub layout: Option<String>,
    /// Raw `KEY=VALUE` arguments.
    pub sets: Vec<String>,
    pub answers_file: Option<PathBuf>,
    /// Merge in memory, write nothing.
    pub dry_run: bool,
    /// Like `dry_run`; the caller exits 3 when the project is behind.
    pub check: bool,
    /// Re-lock and install when a dependency manifest changed.
    pub install: bool,
    /// Commit a clean merge (false: `--no-commit`, leaving `MERGE_HEAD`).
    pub commit: bool,
    /// `--restore PATH`: bring back files the user deleted.
    pub restore: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateStatus {
    Clean,
    Conflicts,
    UpToDate,
}

/// One side of an update: which template, at which revision and version.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub template: String,
    pub revision: String,
    pub version: Option<String>,
}

impl From<&TemplateInfo> for Side {
    fn from(i: &TemplateInfo) -> Self {
        Side {
            template: i.template.clone(),
            revision: i.revision.clone(),
            version: i.version.clone(),
        }
    }
}

/// A preset or layout change: `{"from": "ml-api", "to": "ai-product"}` (`none`: no preset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub from: String,
    pub to: String,
}

impl Change {
    pub fn new(from: &str, to: &str) -> Self {
        Change {
            from: from.to_string(),
            to: to.to_string(),
        }
    }
}

/// What an update did (or, with `--dry-run`/`--check`, would do).
#[derive(Debug, Clone, Serialize)]
pub struct UpdateOutcome {
    pub status: UpdateStatus,
    pub from: Side,
    pub to: Side,
    /// The preset change, when the update moves the project to another preset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<Change>,
    /// The layout change of a project that grows (SPEC §6.2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layout: Option<Change>,
    pub files: Vec<FileReport>,
    /// The merge commit (or the commit of a `--restore` alone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Things the user should know: migrations, dropped answers, a re-rendered base.
    pub notes: Vec<String>,
    /// For a template pinned to a SemVer tag: the later release tags, newest first (`--to`
    /// moves to one; the template-update workflow moves to the first).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub newer_tags: Vec<String>,
    /// Commands that re-lock dependencies whose manifests changed (when `--install` did not).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub relock: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub install: Vec<StepResult>,
    pub dry_run: bool,
    /// A merge was left in progress (conflicts, or `--no-commit`).
    pub merge_in_progress: bool,
}

/// `stackwise update --abort`.
pub fn abort(dir: &Path) -> Result<String> {
    repo::abort(dir)
}

fn refuse(msg: impl Into<String>) -> Error {
    Error::refused(msg)
}

/// The preset and layout of the new render: flags first, then the record.
pub(crate) fn choose_preset(
    template: &Template,
    req: &UpdateRequest,
    rec: &ProjectRecord,
    notes: &mut Vec<String>,
) -> Result<(Option<String>, String)> {
    // A template version may rename or drop the project's layout: then its preset (if it still
    // has one) says where the project goes, else the user does; and the two layouts cannot be
    // compared, so nothing is relocated.
    let known = template.manifest.layouts.contains_key(&rec.layout);
    let (preset, layout) = match (&req.preset, &req.layout) {
        (Some(id), _) => {
            let p = template.catalogue.get(id)?;
            (Some(p.id.clone()), p.layout.clone())
        }
        (None, Some(l)) => {
            if !template.manifest.layouts.contains_key(l) {
                return Err(Error::UnknownLayout {
                    name: l.clone(),
                    available: template.manifest.layout_names(),
                });
            }
            (None, l.clone())
        }
        (None, None) => match rec.preset.as_ref().map(|id| (id, template.catalogue.get(id))) {
            Some((id, Ok(_))) if known => (Some(id.clone()), rec.layout.clone()),
            Some((id, Ok(p))) => {
                notes.push(format!(
                    "this template version has no layout `{}` (the project's); its preset `{id}` now uses `{}`, and so does the project",
                    rec.layout, p.layout
                ));
                (Some(id.clone()), p.layout.clone())
            }
            _ if !known => return Err(lost_layout(template, rec)),
            Some((id, Err(_))) => {
                notes.push(format!(
                    "the template has no preset `{id}` any more; the project keeps its {} layout",
                    rec.layout
                ));
                (None, rec.layout.clone())
            }
            None => (None, rec.layout.clone()),
        },
    };
    if known
        && layout != rec.layout
        && let evolve::Change::Refused(why) = evolve::classify(&template.manifest, &rec.layout, &layout)?
    {
        return Err(refuse(why));
    }
    Ok((preset, layout))
}

/// The project's recorded layout is not in the new template version (renamed or dropped), and no
/// preset of the project's says where it went.
fn lost_layout(template: &Template, rec: &ProjectRecord) -> Error {
    Error::refused_with(
        format!(
            "the project's layout `{}` (recorded in {}) is not in this template version, which defines: {}",
            rec.layout,
            crate::project::record::RECORD_FILE,
            template.manifest.layout_names()
        ),
        "say which layout the project moves to: `stackwise update --layout NAME` (or `--preset ID`); `stackwise presets --template …` lists them",
    )
}

/// `stackwise update`: the plan, computed in memory ([`plan::compute`]); then, unless
/// `--dry-run` or `--check`, the one writer that applies it ([`apply::apply`]).
pub fn update(req: &UpdateRequest, prompter: &mut dyn Prompter, progress: &mut dyn Progress) -> Result<UpdateOutcome> {
    let (repo, plan) = plan::compute(req, prompter)?;
    if req.dry_run || req.check {
        return Ok(plan.outcome);
    }
    apply::apply(&repo, plan, req, progress)
}
