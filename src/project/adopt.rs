//! `stackwise adopt`: brings an existing repository that stackwise did not create under a template
//! (cruft's `link`). Contract: SPEC §7.1.
//!
//! The template is rendered in memory with the answers given and written as a render commit on no
//! branch; then one commit of its own on the user's branch adds `.stackwise.toml` and has that
//! render commit as its second parent. Nothing else of the project changes: no file of the user is
//! written, and the render is the base of the next `update`, which therefore merges only what the
//! template changes after the adoption. A template file the project lacks stays missing
//! (`update --restore PATH` brings it); one the project has in its own version stays the user's.

use std::path::{Path, PathBuf};

use git2::{Oid, Repository};
use serde::Serialize;

use super::git;
use super::record::{self, RECORD_FILE, TemplateInfo};
use super::update::{merge, repo};
use crate::error::{Error, Result};
use crate::interrupt;
use crate::template::answers;
use crate::template::names::ProjectName;
use crate::template::prompter::Prompter;
use crate::template::source::TemplateSource;
use crate::template::{Template, choose_preset_and_layout, parse_sets, render_project};

/// The trailer of the commit `adopt` makes (not a render commit: that is its second parent).
pub const ADOPT_TRAILER: &str = "Stackwise-Adopt";

/// Everything `stackwise adopt` was asked to do.
#[derive(Debug, Clone)]
pub struct AdoptRequest {
    pub dir: PathBuf,
    pub template: TemplateSource,
    pub preset: Option<String>,
    pub layout: Option<String>,
    /// The project's name (default: the directory's name).
    pub name: Option<String>,
    /// Raw `KEY=VALUE` arguments.
    pub sets: Vec<String>,
    pub answers_file: Option<PathBuf>,
    /// Compute and report; write nothing (not even git objects that a ref keeps).
    pub dry_run: bool,
}

/// What `adopt` did (or would do).
#[derive(Debug, Clone, Serialize)]
pub struct AdoptOutcome {
    pub name: String,
    pub template: TemplateInfo,
    pub layout: String,
    pub preset: Option<String>,
    /// Files of the render the project has with the same content.
    pub same: Vec<String>,
    /// Files of the render the project has in a version of its own (they stay yours).
    pub differ: Vec<String>,
    /// Files of the render the project lacks (they stay missing; `update --restore PATH`).
    pub missing: Vec<String>,
    /// The render commit: the base of the next update.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub render_commit: Option<String>,
    /// The commit that adds `.stackwise.toml` (parents: the previous HEAD and the render commit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    pub dry_run: bool,
    /// Things the user should know (a commit made on a detached HEAD).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

fn refuse(reason: impl Into<String>, hint: impl Into<String>) -> Error {
    Error::Refused {
        action: "adopt",
        reason: reason.into(),
        hint: Some(hint.into()),
    }
}

/// Refuses a record that is in the work tree or the index but not in HEAD: the user's own, or
/// what an adopt killed outright (SIGKILL, a second Ctrl-C) before it moved the branch left.
/// Checked before [`repo::check_clean`], whose advice (commit it) would commit the record
/// without the render commit that is the base of the next update.
fn check_no_stray_record(repo: &Repository, prefix: &str, project: &Path) -> Result<()> {
    let path = repo::under(prefix, RECORD_FILE);
    let head = repo.head()?.peel_to_tree()?;
    if head.get_path(Path::new(&path)).is_ok() {
        return Ok(());
    }
    let staged = repo.index()?.get_path(Path::new(&path), 0).is_some();
    if staged {
        return Err(refuse(
            format!("{RECORD_FILE} is staged in the index but not committed"),
            format!(
                "an adopt that was killed can leave it: remove it with `git rm -f {path}` (move it away first if it is yours) and run adopt again; adopt writes a fresh {RECORD_FILE}"
            ),
        ));
    }
    if std::fs::symlink_metadata(project.join(RECORD_FILE)).is_ok() {
        return Err(refuse(
            format!("{RECORD_FILE} exists in the work tree but is not committed"),
            format!("move it away (or delete it) and run adopt again; adopt writes a fresh {RECORD_FILE}"),
        ));
    }
    Ok(())
}

/// Refuses a project that already follows a template: a record in HEAD, or a render commit of
/// it in its history (in a monorepo, one of a project of the same name).
fn check_not_adopted(repo: &Repository, prefix: &str, project: &Path, name: &ProjectName) -> Result<()> {
    let head = repo.head()?.peel_to_commit()?;
    if head
        .tree()?
        .get_path(Path::new(&repo::under(prefix, RECORD_FILE)))
        .is_ok()
    {
        return Err(refuse(
            format!(
                "{} already follows a template ({RECORD_FILE} is committed)",
                project.display()
            ),
            "use `stackwise update` to bring the template's changes, or `stackwise diff` to see your own",
        ));
    }
    let render = git::find_render_commit(repo, head.id())?
        .filter(|r| prefix.is_empty() || repo::record_at(repo, *r).is_some_and(|at| at.name == name.name));
    if let Some(r) = render {
        return Err(refuse(
            format!(
                "the history holds a render commit ({}): the project was generated by stackwise, and its {RECORD_FILE} was deleted",
                repo::short(r)
            ),
            format!("bring the record back from history (`git log -- {RECORD_FILE}`), then use `stackwise update`"),
        ));
    }
    Ok(())
}

/// The project's name: `--name`, else the directory's name.
fn project_name(req: &AdoptRequest, project: &Path) -> Result<ProjectName> {
    let raw = match &req.name {
        Some(n) => n.clone(),
        None => project
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    ProjectName::parse(&raw).map_err(|e| from_directory(req, e))
}

/// A refused name taken from the directory: the way out is `--name`, not renaming the directory.
fn from_directory(req: &AdoptRequest, e: Error) -> Error {
    match e {
        Error::InvalidName { name, reason, hint } if req.name.is_none() => Error::InvalidName {
            hint: format!("the name comes from the directory: pass another with --name; {hint}"),
            name,
            reason,
        },
        e => e,
    }
}

/// A directory that is in no git repository: adopt needs one (update's refusal would call it
/// "not a stackwise project", which is why it is adopted).
fn refuse_outside_git(dir: &Path) -> Result<()> {
    let flags = git2::RepositoryOpenFlags::empty();
    if !dir.is_dir() || git2::Repository::open_ext(dir, flags, std::iter::empty::<&std::ffi::OsStr>()).is_ok() {
        return Ok(());
    }
    Err(Error::Refused {
        action: "adopt",
        reason: format!(
            "{} is not a git repository, and adopt records the template in one",
            dir.display()
        ),
        hint: Some("put it under git first: git init && git add -A && git commit -m \"project\"".into()),
    })
}

/// `stackwise adopt`.
pub fn adopt(req: &AdoptRequest, prompter: &mut dyn Prompter) -> Result<AdoptOutcome> {
    // Cheap checks of the user's input and of the repository first, before any template is read.
    let sets = parse_sets(&req.sets)?;
    let file = match &req.answers_file {
        Some(p) => answers::load_file(p)?,
        None => answers::AnswersFile::default(),
    };
    refuse_outside_git(&req.dir)?;
    let (repo, prefix) = repo::open(&req.dir).map_err(|e| e.refused_as("adopt"))?;
    repo::check_state(&repo).map_err(|e| e.refused_as("adopt"))?;
    // The project's directory: the repository's root, or a subdirectory of it (a monorepo).
    let project = repo
        .workdir()
        .ok_or_else(|| Error::Repository("the repository has no work tree".into()))?
        .join(&prefix);
    check_no_stray_record(&repo, &prefix, &project)?;
    repo::check_clean(&repo).map_err(|e| e.refused_as("adopt"))?;
    let name = project_name(req, &std::fs::canonicalize(&project).unwrap_or(project.clone()))?;
    check_not_adopted(&repo, &prefix, &project, &name)?;
    let head = repo.head()?.peel_to_commit()?;
    let ours = match repo::subtree(&repo, head.tree_id(), &prefix) {
        Ok(tree) => merge::tree_files(&repo.find_tree(tree)?)?,
        Err(_) => {
            return Err(refuse(
                format!("nothing of {} is committed", project.display()),
                "commit the project first, then adopt it",
            ));
        }
    };

    let template = Template::load(&req.template)?;
    name.check_reserved(&template.manifest.template.reserved_names)
        .map_err(|e| from_directory(req, e))?;
    let (preset, layout) = choose_preset_and_layout(
        &template,
        req.preset.as_deref(),
        req.layout.as_deref(),
        file.preset.as_deref(),
        prompter,
    )?;
    let mut rendered = render_project(&template, name, preset, layout, sets, file.answers, prompter)?;
    let info = TemplateInfo::of(&template, &req.template);
    record::add_to(&mut rendered, &template, &info, None);

    let mut outcome = AdoptOutcome {
        name: rendered.name.name.clone(),
        template: info.clone(),
        layout: rendered.layout.clone(),
        preset: rendered.preset.clone(),
        same: Vec::new(),
        differ: Vec::new(),
        missing: Vec::new(),
        render_commit: None,
        commit: None,
        dry_run: req.dry_run,
        notes: Vec::new(),
    };
    for f in rendered.files.iter().filter(|f| f.path != RECORD_FILE) {
        let list = match ours.get(&f.path) {
            Some((id, _)) if *id == Oid::hash_object(git2::ObjectType::Blob, &f.bytes)? => &mut outcome.same,
            Some(_) => &mut outcome.differ,
            None => &mut outcome.missing,
        };
        list.push(f.path.clone());
    }
    if req.dry_run {
        return Ok(outcome);
    }
    let record = rendered
        .files
        .iter()
        .find(|f| f.path == RECORD_FILE)
        .map(|f| f.bytes.clone())
        .unwrap_or_default();
    // From here on Ctrl-C / SIGTERM no longer end the process where it is (in the middle of the
    // writes): the adoption is checked for an interruption before it writes, and once it writes
    // it finishes. Before, nothing was written and the binary's handler ends the process.
    interrupt::start_polling()?;
    let message = git::render_message(&info, &rendered.layout, rendered.preset.as_deref());
    // Only objects no ref keeps: the project is unchanged.
    let render = git::write_render_commit(&repo, &rendered.files, &message, None)?;
    interrupt::check().map_err(|_| nothing_changed())?;
    outcome.render_commit = Some(render.to_string());
    let commit = commit_adoption(
        &repo,
        &prefix,
        render,
        &record,
        &adoption_message(&info, &rendered.layout),
    )?;
    outcome.commit = Some(commit.to_string());
    outcome.notes.extend(repo::detached_note(&repo, &commit.to_string()));
    if interrupt::check().is_err() {
        return Err(Error::InterruptedLeaving(format!(
            "the adoption finished first: {RECORD_FILE} is committed in {} and {} follows the template",
            repo::short(commit),
            outcome.name
        )));
    }
    Ok(outcome)
}

/// An interruption before the adoption wrote anything the project shows.
fn nothing_changed() -> Error {
    Error::InterruptedLeaving("nothing was changed".into())
}

/// The message of the adoption commit.
fn adoption_message(info: &TemplateInfo, layout: &str) -> String {
    format!(
        "stackwise: adopt {}\n\nThis project now follows the template: {RECORD_FILE} records its answers, and\nthe second parent is the template's render, the base of the next `stackwise update`.\nNo other file changed.\n\n{ADOPT_TRAILER}: template={} revision={} layout={layout}\n",
        info.template, info.template, info.revision
    )
}

/// Adds `.stackwise.toml` to the project in the order a kill at any moment leaves recoverable:
/// the record written into the project's directory (a new file, never through anything in the
/// way), then staged in the index, and last the commit (HEAD's tree plus the record, a tree
/// computed in memory, never the index read back; parents HEAD and the render commit) that
/// [`git::commit_on_head`] makes and moves the branch to. Killed before the commit, the
/// project's HEAD is unchanged and the new record is untracked or staged: `git status` names
/// it and adopt refuses until it is removed ([`check_no_stray_record`]); never a moved branch
/// whose record the index deletes. An error on the way removes what was written.
fn commit_adoption(repo: &Repository, prefix: &str, render: Oid, record: &[u8], message: &str) -> Result<Oid> {
    let path = repo::under(prefix, RECORD_FILE);
    let head = repo.head()?.peel_to_commit()?;
    let blob = repo.blob(record)?;
    let mut tree = git2::Index::new()?;
    tree.read_tree(&head.tree()?)?;
    tree.add(&git::index_entry(&path, blob, 0o100644, None))?;
    let tree = tree.write_tree_to(repo)?;
    let dest = repo.workdir().unwrap_or(repo.path()).join(&path);
    write_new(&dest, record)?;
    stage_and_commit(repo, &path, tree, render, message).inspect_err(|_| unstage(repo, &path, &dest))
}

/// The record staged, then the commit of `tree` that moves the branch: the last write.
fn stage_and_commit(repo: &Repository, path: &str, tree: Oid, render: Oid, message: &str) -> Result<Oid> {
    let mut index = repo.index()?;
    index.add_path(Path::new(path))?;
    index.write()?;
    git::commit_on_head(repo, tree, &[render], message)
}

/// Writes `bytes` into a file `dest` that must not exist (nor a symlink there); on a failed
/// write (a full disk) the file goes again.
fn write_new(dest: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(|e| Error::io(dest, e))?;
    f.write_all(bytes).map_err(|e| {
        let _ = std::fs::remove_file(dest);
        Error::io(dest, e)
    })
}

/// After a failed adoption: the record out of the index and the work tree again (best effort; the
/// branch was not moved).
fn unstage(repo: &Repository, path: &str, dest: &Path) {
    if let Ok(mut index) = repo.index()
        && index.remove_path(Path::new(path)).is_ok()
    {
        let _ = index.write();
    }
    let _ = std::fs::remove_file(dest);
}
