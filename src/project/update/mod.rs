//! `stackwise update`: the project follows its template, by a real git merge.
//!
//! recorded answers → migrations → `--set`/`--answers` → defaults or prompts; render in memory;
//! the render commit (parent: the previous render commit, kept alive by `refs/stackwise/pending`);
//! merge into HEAD with the previous render as the base ([`merge`]); commit when clean. The base
//! is the newest render commit reachable from HEAD; without one, the recorded revision is
//! rendered again with the recorded answers. Contract: SPEC §6.1.

pub mod answers;
pub mod evolve;
pub mod merge;
pub mod repo;
pub mod report;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use git2::{Oid, Repository};
use serde::Serialize;
use serde_json::Map;

use super::git;
use super::install::{self, Progress, StepResult};
use super::record::{self, ProjectRecord, RECORD_FILE, TemplateInfo};
use crate::error::{Error, Result};
use crate::template::names::ProjectName;
use crate::template::paths::check_relative_path;
use crate::template::prompter::{NoPrompt, Prompter};
use crate::template::source::TemplateSource;
use crate::template::{Template, answers as template_answers, parse_sets, render_project};
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

/// What an update did (or, with `--dry-run`/`--check`, would do).
#[derive(Debug, Clone, Serialize)]
pub struct UpdateOutcome {
    pub status: UpdateStatus,
    pub from: Side,
    pub to: Side,
    pub files: Vec<FileReport>,
    /// The merge commit (or the commit of a `--restore` alone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Things the user should know: migrations, dropped answers, a re-rendered base.
    pub notes: Vec<String>,
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

/// Loads a template for an update; a source that cannot be read is a refusal.
fn load_template(source: &TemplateSource) -> Result<Template> {
    Template::load(source).map_err(|e| match e {
        Error::Source { .. } | Error::Io { .. } | Error::InvalidValue { .. } => Error::refused_with(
            format!("the template source {} cannot be read: {e}", source.describe()),
            "check the path or URL, or pass --template SRC to use another copy",
        ),
        other => other,
    })
}

/// The render of the recorded template revision with the recorded answers, as a render commit
/// without parent; `Err(reason)` when that revision cannot be had any more.
fn rerender_base(repo: &Repository, rec: &ProjectRecord) -> Result<std::result::Result<Oid, String>> {
    let source = match rec.info.source() {
        TemplateSource::Git { url, subdir, .. } => TemplateSource::Git {
            url,
            reference: Some(rec.info.revision.clone()),
            subdir,
        },
        other => other,
    };
    let template = match Template::load(&source) {
        Ok(t) => t,
        Err(e) => return Ok(Err(format!("{} cannot be read: {e}", source.describe()))),
    };
    let info = TemplateInfo::of(&template, &source);
    // Projects generated before revisions were digests recorded `stackwise X` for the built-in
    // template: that is this binary's template when X is this version.
    let legacy_builtin =
        source == TemplateSource::Builtin && rec.info.revision == format!("stackwise {}", env!("CARGO_PKG_VERSION"));
    if info.revision != rec.info.revision && !legacy_builtin {
        return Ok(Err(format!(
            "{} now holds revision {}, not the recorded {}",
            source.describe(),
            info.revision,
            rec.info.revision
        )));
    }
    let mut answers = rec.answers.clone();
    answers.retain(|k, _| template.manifest.variable(k).is_some());
    let preset = rec.preset.clone().filter(|p| template.catalogue.get(p).is_ok());
    let name = ProjectName::parse(&rec.name)?;
    let mut rendered = render_project(
        &template,
        name,
        preset,
        rec.layout.clone(),
        Map::new(),
        answers,
        &mut NoPrompt,
    )?;
    record::add_to(&mut rendered, &template, &rec.info, Some(&rec.update));
    let msg = git::render_message(&rec.info, &rendered.layout, rendered.preset.as_deref());
    Ok(Ok(git::write_render_commit(repo, &rendered.files, &msg, None)?))
}

/// The base of the merge: the newest render commit reachable from HEAD, unless the project's
/// record is at another revision (a squash-merged update), where the recorded revision is
/// rendered again. Returns the base commit and a note when it is not the plain case.
pub fn find_base(repo: &Repository, head: Oid, rec: &ProjectRecord) -> Result<(Oid, Option<String>)> {
    let found = git::find_render_commit(repo, head)?;
    if let Some(r) = found
        && repo::record_at(repo, r).is_some_and(|at| at.info.revision == rec.info.revision)
    {
        return Ok((r, None));
    }
    match (rerender_base(repo, rec)?, found) {
        (Ok(base), _) => Ok((
            base,
            Some(format!(
                "no render commit of revision {} in the history (a squash-merged update, or a project from before render commits): the base is that revision rendered again with the recorded answers",
                rec.info.revision
            )),
        )),
        (Err(why), Some(r)) => Ok((
            r,
            Some(format!(
                "the newest render commit ({}) is older than the record, and the recorded revision cannot be rendered again ({why}); it is the base, so changes already taken may show as conflicts",
                repo::short(r)
            )),
        )),
        (Err(why), None) => Err(Error::refused_with(
            format!(
                "no render commit in the history, and the recorded revision cannot be rendered again as the merge base: {why}"
            ),
            format!(
                "make {} hold revision {} again (check out that version of the template), then update",
                rec.info.template, rec.info.revision
            ),
        )),
    }
}

/// Whether two render trees differ in anything but the stackwise version in the record.
fn same_render(repo: &Repository, a: Oid, b: Oid) -> Result<bool> {
    if a == b {
        return Ok(true);
    }
    let (ta, tb) = (repo.find_tree(a)?, repo.find_tree(b)?);
    let diff = repo.diff_tree_to_tree(Some(&ta), Some(&tb), None)?;
    if diff
        .deltas()
        .any(|d| d.new_file().path() != Some(Path::new(RECORD_FILE)))
    {
        return Ok(false);
    }
    let text = |t: &git2::Tree| -> Result<String> {
        let blob = repo.find_blob(t.get_path(Path::new(RECORD_FILE))?.id())?;
        Ok(String::from_utf8_lossy(blob.content())
            .lines()
            .filter(|l| !l.starts_with("stackwise_version"))
            .collect::<Vec<_>>()
            .join("\n"))
    };
    Ok(text(&ta)? == text(&tb)?)
}

fn short_revision(r: &str) -> String {
    let r = r.strip_prefix("sha256:").unwrap_or(r);
    r.chars().take(12).collect()
}

fn describe(info: &TemplateInfo) -> String {
    match &info.version {
        Some(v) => format!("{v} ({})", short_revision(&info.revision)),
        None => short_revision(&info.revision),
    }
}

/// The preset and layout of the new render: flags first, then the record.
fn choose_preset(
    template: &Template,
    req: &UpdateRequest,
    rec: &ProjectRecord,
    notes: &mut Vec<String>,
) -> Result<(Option<String>, String)> {
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
        (None, None) => match &rec.preset {
            Some(id) if template.catalogue.get(id).is_ok() => (Some(id.clone()), rec.layout.clone()),
            Some(id) => {
                notes.push(format!(
                    "the template has no preset `{id}` any more; the project keeps its {} layout",
                    rec.layout
                ));
                (None, rec.layout.clone())
            }
            None => (None, rec.layout.clone()),
        },
    };
    if layout != rec.layout
        && let evolve::Change::Refused(why) = evolve::classify(&template.manifest, &rec.layout, &layout)?
    {
        return Err(refuse(why));
    }
    Ok((preset, layout))
}

/// `stackwise update`.
pub fn update(req: &UpdateRequest, prompter: &mut dyn Prompter, progress: &mut dyn Progress) -> Result<UpdateOutcome> {
    let repo = repo::open(&req.dir)?;
    repo::check_state(&repo)?;
    repo::check_clean(&repo)?;
    let rec = repo::head_record(&repo)?;
    // Cheap checks of the user's input before any template is fetched.
    let mut sets = match &req.answers_file {
        Some(p) => template_answers::load_file(p)?.answers,
        None => Map::new(),
    };
    sets.extend(parse_sets(&req.sets)?);
    let restore: BTreeSet<String> = req
        .restore
        .iter()
        .map(|p| p.trim_end_matches('/').to_string())
        .collect();
    for p in &restore {
        check_relative_path(p).map_err(|why| refuse(format!("--restore {p}: {why}")))?;
    }
    let skip_globs = {
        let mut b = globset::GlobSetBuilder::new();
        for g in &rec.skip {
            b.add(globset::Glob::new(g).map_err(|e| refuse(format!("{RECORD_FILE}: [update] skip {g:?}: {e}")))?);
        }
        b.build()
            .map_err(|e| refuse(format!("{RECORD_FILE}: [update] skip: {e}")))?
    };
    let mut source = req.template.clone().unwrap_or_else(|| rec.info.source());
    if let Some(rev) = &req.to {
        match &mut source {
            TemplateSource::Git { reference, .. } => *reference = Some(rev.clone()),
            _ => {
                return Err(refuse(format!(
                    "--to {rev} needs a git template source; {} is not one (use --template DIR for another local copy)",
                    source.describe()
                )));
            }
        }
    }

    let template = load_template(&source)?;
    let info = TemplateInfo::of(&template, &source);
    let mut notes = Vec::new();
    let (preset, layout) = choose_preset(&template, req, &rec, &mut notes)?;
    let name = ProjectName::parse(&rec.name)?;
    let change = answers::PresetChange {
        name: &name,
        old_layout: &rec.layout,
        old_preset: rec.preset.as_deref(),
        new_preset: preset.as_deref(),
    };
    let (carried, answer_notes) = answers::carry_over(&template, &rec.answers, rec.info.version.as_deref(), &change)?;
    notes.extend(answer_notes);
    let mut rendered = render_project(&template, name, preset, layout, sets, carried, prompter)?;
    record::add_to(&mut rendered, &template, &info, Some(&rec.update));

    let head = repo.head()?.peel_to_commit()?;
    let (base, base_note) = find_base(&repo, head.id(), &rec)?;
    notes.extend(base_note);
    let render_msg = git::render_message(&info, &rendered.layout, rendered.preset.as_deref());
    let theirs = git::write_render_commit(&repo, &rendered.files, &render_msg, Some(base))?;
    let mut base_tree = repo.find_commit(base)?.tree_id();
    let theirs_tree = repo.find_commit(theirs)?.tree_id();
    let writes = !(req.dry_run || req.check);
    // A layout that grows (SPEC §6.2): the service moves first, in a commit of its own, and the
    // previous render is relocated the same way to be the merge base.
    let mut ours_tree = head.tree_id();
    let mut moved: Vec<FileReport> = Vec::new();
    let mut moves = evolve::Moves::default();
    if rendered.layout != rec.layout {
        let (old, new) = (
            &template.manifest.layouts[&rec.layout],
            &template.manifest.layouts[&rendered.layout],
        );
        let keys =
            |t: Oid| -> Result<BTreeSet<String>> { Ok(merge::tree_files(&repo.find_tree(t)?)?.into_keys().collect()) };
        moves = evolve::plan(old, new, &keys(base_tree)?, &keys(ours_tree)?);
        base_tree = evolve::relocate(&repo, base_tree, &moves)?;
        moved = moves
            .renames
            .iter()
            .map(|(from, to)| FileReport {
                path: to.clone(),
                status: FileStatus::Renamed,
                from: Some(from.clone()),
            })
            .collect();
        if !moves.stays.is_empty() {
            notes.push(format!(
                "your files outside the service stay where they are: {}",
                moves.stays.join(", ")
            ));
        }
        // The merge is computed against HEAD relocated in memory; the move-only commit, which
        // has exactly that tree, is written only when the update writes.
        ours_tree = evolve::relocate(&repo, ours_tree, &moves)?;
        if !writes {
            notes.push(format!(
                "would first move {} files in a move-only commit (e.g. {} → {})",
                moves.renames.len(),
                moves.renames.keys().next().map_or("", String::as_str),
                moves.renames.values().next().map_or("", String::as_str)
            ));
        }
    }
    if writes {
        repo::clear_pending(&repo)?;
    }
    let mut outcome = UpdateOutcome {
        status: UpdateStatus::UpToDate,
        from: Side::from(&rec.info),
        to: Side::from(&info),
        files: Vec::new(),
        commit: None,
        notes,
        relock: Vec::new(),
        install: Vec::new(),
        dry_run: !writes,
        merge_in_progress: false,
    };

    if same_render(&repo, base_tree, theirs_tree)? {
        if restore.is_empty() {
            return Ok(outcome);
        }
        // `--restore` alone: the current render's version of the deleted files.
        outcome.status = UpdateStatus::Clean;
        outcome.files = restore
            .iter()
            .map(|p| FileReport::new(p.as_str(), FileStatus::Added))
            .collect();
        if writes {
            repo::restore(&repo, theirs_tree, &restore)?;
            if req.commit {
                let list: Vec<&str> = restore.iter().map(String::as_str).collect();
                let msg = format!("stackwise: restore {} from the template\n", list.join(", "));
                outcome.commit = Some(repo::commit_index(&repo, &msg)?.to_string());
            }
        }
        return Ok(outcome);
    }

    let once: BTreeSet<&str> = rendered
        .files
        .iter()
        .filter(|f| f.update_once)
        .map(|f| f.path.as_str())
        .collect();
    let skip = |p: &str| once.contains(p) || skip_globs.is_match(p);
    let old_side = repo::record_at(&repo, base)
        .map(|r| r.info)
        .unwrap_or_else(|| rec.info.clone());
    let spec = MergeSpec {
        base: base_tree,
        theirs,
        skip: &skip,
        restore: &restore,
        their_label: format!("template {}", describe(&info)),
        ancestor_label: format!("last render {}", describe(&old_side)),
    };
    let mut merged = merge::merge_in_memory(&repo, ours_tree, &spec)?;
    restore_unchanged(&repo, &mut merged, ours_tree, theirs_tree, &restore)?;
    for m in moved {
        if !merged.files.iter().any(|f| f.path == m.path) {
            merged.files.push(m);
        }
    }
    merged.files.sort_by(|a, b| a.path.cmp(&b.path));
    outcome.files = merged.files.clone();
    let conflicts = merged.has_conflicts();
    outcome.status = if conflicts {
        UpdateStatus::Conflicts
    } else {
        UpdateStatus::Clean
    };
    let changed_manifests = changed_dependency_manifests(&repo, ours_tree, &merged)?;
    let steps = install::steps_for(&changed_manifests);
    if !writes {
        outcome.relock = steps.iter().map(relock_command).collect();
        return Ok(outcome);
    }

    let before_moves = head.id();
    if !moves.renames.is_empty() {
        let message = format!(
            "stackwise: move the service for the {} layout\n\nA move-only commit before the update to {}: every file keeps its content, so\n`git log --follow` and blame keep their history.\n",
            rendered.layout,
            rendered.preset.as_deref().unwrap_or(&rendered.layout)
        );
        let id = evolve::commit_moves(&repo, &moves, &message)?;
        outcome.notes.push(format!(
            "moved {} files in commit {}",
            moves.renames.len(),
            repo::short(id)
        ));
    }
    let in_the_way = merge::untracked_in_the_way(&repo, ours_tree, &merged.index)?;
    if !in_the_way.is_empty() {
        if !moves.renames.is_empty() {
            // Back to where the project was: the work tree was clean before the move.
            let obj = repo.find_object(before_moves, None)?;
            repo.reset(&obj, git2::ResetType::Hard, None)?;
        }
        return Err(refuse(format!(
            "untracked files are where the template's new files go ({}): move them away or commit them first",
            in_the_way.join(", ")
        )));
    }
    repo::set_pending(&repo, theirs)?;
    let message = format!(
        "stackwise update: {} {} -> {}\n\nMerges the template's new render into the project.\n\n{}: {} -> {}\n",
        info.template,
        describe(&rec.info),
        describe(&info),
        git::UPDATE_TRAILER,
        rec.info.revision,
        info.revision
    );
    merge::write_merge_state(&repo, &mut merged, &spec, &message)?;
    if conflicts || !req.commit {
        outcome.merge_in_progress = true;
        outcome.relock = steps.iter().map(relock_command).collect();
        return Ok(outcome);
    }
    outcome.commit = Some(merge::commit_merge(&repo, theirs, &message)?.to_string());
    repo::clear_pending(&repo)?;
    if req.install && !steps.is_empty() {
        let log = std::env::temp_dir().join(format!("stackwise-update-{}.log", std::process::id()));
        outcome.install = install::run(&req.dir, &steps, &log, progress);
        let lockfiles: Vec<String> = steps
            .iter()
            .map(|s| {
                if s.dir == "." {
                    s.lockfile.clone()
                } else {
                    format!("{}/{}", s.dir, s.lockfile)
                }
            })
            .collect();
        if outcome.install.iter().all(|r| r.ok)
            && let Some(c) = repo::commit_paths(&repo, &lockfiles, "stackwise: lockfiles after update\n")?
        {
            outcome.commit = Some(c.to_string());
        }
    } else {
        outcome.relock = steps.iter().map(relock_command).collect();
    }
    Ok(outcome)
}

/// `--restore` of a file the user deleted and the template did not change (so no conflict
/// brought it up): the render's version goes into the merged index.
fn restore_unchanged(
    repo: &Repository,
    merged: &mut Merged,
    ours: Oid,
    theirs: Oid,
    restore: &BTreeSet<String>,
) -> Result<()> {
    let (ours, theirs) = (repo.find_tree(ours)?, repo.find_tree(theirs)?);
    for p in restore {
        if merged.files.iter().any(|f| &f.path == p) {
            continue;
        }
        let entry = repo::restorable(&ours, &theirs, p)?;
        merge::add_to_index(&mut merged.index, p, entry.id(), entry.filemode())?;
        merged.files.push(FileReport::new(p.as_str(), FileStatus::Added));
    }
    merged.files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(())
}

/// `pyproject.toml` / `package.json` (at the root or one level down) that the merge changes.
fn changed_dependency_manifests(repo: &Repository, ours: Oid, merged: &Merged) -> Result<Vec<String>> {
    let ours = merge::tree_files(&repo.find_tree(ours)?)?;
    Ok(merged
        .index
        .iter()
        .filter(|e| e.flags & 0x3000 == 0)
        .map(|e| (String::from_utf8_lossy(&e.path).into_owned(), e.id))
        .filter(|(p, _)| p.ends_with("pyproject.toml") || p.ends_with("package.json"))
        .filter(|(p, id)| ours.get(p).map(|(o, _)| o) != Some(id))
        .map(|(p, _)| p)
        .collect())
}

fn relock_command(step: &install::Step) -> String {
    let cmd = match step.program.as_str() {
        "uv" => "uv lock",
        _ => "npm install --package-lock-only --ignore-scripts",
    };
    if step.dir == "." {
        cmd.to_string()
    } else {
        format!("(cd {} && {cmd})", step.dir)
    }
}
