//! The project's repository as `update` finds it: the refusals (each says what to do, and nothing
//! is changed), the record at HEAD, the pending render, `--abort` and `--restore`.

use std::path::Path;

use git2::{Index, Oid, Repository, RepositoryState, StatusOptions};

use super::journal::Journal;
use crate::error::{Error, Result};
use crate::project::git::{clear_pending, pending_ref};
use crate::project::record::{ProjectRecord, RECORD_FILE};

fn refuse(msg: impl Into<String>) -> Error {
    Error::refused(msg)
}

/// Opens the repository that holds the project: its own, or a larger one it sits in (a
/// monorepo). Returns the repository and the project's directory inside it (`""` at the root,
/// `services/api` in a monorepo).
pub fn open(dir: &Path) -> Result<(Repository, String)> {
    if !dir.is_dir() {
        return Err(refuse(format!("{} is not a directory", dir.display())));
    }
    // `open_ext` searches upwards like `discover`, and keeps a `.git` file's work tree (a
    // `--separate-git-dir` clone): `discover` then `open` on the git directory would take the
    // git directory's parent for the work tree.
    let repo = Repository::open_ext(dir, git2::RepositoryOpenFlags::empty(), std::iter::empty::<&std::ffi::OsStr>())
        .map_err(|_| {
        refuse(if dir.join(RECORD_FILE).exists() {
            format!(
                "{} is not a git repository: it was generated with --no-git, or git was removed; put it under git first: git init && git add -A && git commit -m \"project\"",
                dir.display()
            )
        } else {
            format!(
                "{} is not a stackwise project: it has no {RECORD_FILE} and is not a git repository",
                dir.display()
            )
        })
    })?;
    let Some(workdir) = repo.workdir() else {
        return Err(refuse(format!(
            "{} is a bare repository; stackwise works in a work tree (git worktree add, or a clone)",
            dir.display()
        )));
    };
    if repo.head().ok().and_then(|h| h.target()).is_none() {
        return Err(refuse(format!(
            "the repository at {} has no commit yet; commit the project first",
            dir.display()
        )));
    }
    let canon = |p: &Path| p.canonicalize().map_err(|e| Error::io(p, e));
    let prefix = canon(dir)?
        .strip_prefix(canon(workdir)?)
        .map(|p| p.to_string_lossy().replace('\\', "/"))
        .unwrap_or_default();
    Ok((repo, prefix))
}

/// `prefix/rel`, or `rel` at the root.
pub fn under(prefix: &str, rel: &str) -> String {
    if prefix.is_empty() {
        rel.to_string()
    } else {
        format!("{prefix}/{rel}")
    }
}

/// Refuses a repository mid-merge, mid-rebase (or any operation in progress).
pub fn check_state(repo: &Repository) -> Result<()> {
    let what = match repo.state() {
        RepositoryState::Clean => return check_journal(repo),
        RepositoryState::Merge if is_pending_merge(repo) => return Err(refuse(pending_update(repo))),
        RepositoryState::Merge => "a merge is in progress: finish it with `git commit`, or `git merge --abort`",
        RepositoryState::Rebase | RepositoryState::RebaseInteractive | RepositoryState::RebaseMerge => {
            "a rebase is in progress: finish it (`git rebase --continue`) or `git rebase --abort`"
        }
        RepositoryState::CherryPick | RepositoryState::CherryPickSequence => {
            "a cherry-pick is in progress: finish it or `git cherry-pick --abort`"
        }
        RepositoryState::Revert | RepositoryState::RevertSequence => {
            "a revert is in progress: finish it or `git revert --abort`"
        }
        _ => "a git operation (bisect, am) is in progress: finish or abort it first",
    };
    Err(refuse(what))
}

/// What is left of an update whose merge is in progress, and what finishes it: conflicts to
/// resolve, a `--no-commit` merge to commit — or a merge state over an index still at HEAD, which
/// an update stopped before its checkout finished leaves, where `git commit` would record the
/// template's version change without its changes.
fn pending_update(repo: &Repository) -> &'static str {
    let index = repo.index().ok();
    if index.as_ref().is_some_and(Index::has_conflicts) {
        return "an update is in progress: resolve the conflicts and `git commit`, or abort it with `stackwise update --abort`";
    }
    let head_tree = repo.head().ok().and_then(|h| h.peel_to_tree().ok()).map(|t| t.id());
    let index_tree = index.and_then(|mut i| i.write_tree().ok());
    if index_tree.is_some() && index_tree != head_tree {
        "an update's merge is staged but not committed (`--no-commit`, or conflicts you resolved): `git commit` finishes it, `stackwise update --abort` undoes it"
    } else {
        "an update was stopped before it finished writing (its merge is started, nothing of it is staged): run `stackwise update --abort`, which puts the project back exactly as it was, then update again; do not `git commit` it"
    }
}

/// Refuses a project whose update is still in progress (its merge started, not committed or
/// aborted): `diff` would compare a half-merged work tree and report the template's changes as
/// the user's.
pub fn check_no_pending_update(repo: &Repository) -> Result<()> {
    if repo.state() == RepositoryState::Merge && is_pending_merge(repo) {
        return Err(refuse(pending_update(repo)));
    }
    Ok(())
}

/// Refuses a project where an update was interrupted (killed, or stopped by a failure that
/// could not be undone): `update --abort` puts it back first.
fn check_journal(repo: &Repository) -> Result<()> {
    match Journal::read(repo)? {
        Some(j)
            if !j.settled(repo)
                && let Some(moved) = j.moved_on(repo) =>
        {
            Err(super::journal::stale(repo, &moved))
        }
        Some(j) if !j.settled(repo) => Err(Error::refused_with(
            "an earlier `stackwise update` was interrupted before it finished; the project may hold part of it",
            "run `stackwise update --abort` to put the project back exactly as it was, then update again",
        )),
        _ => Ok(()),
    }
}

/// `assume-unchanged` (in an index entry's flags) and `skip-worktree` (in its extended flags).
const ASSUME_UNCHANGED: u16 = 0x8000;
const SKIP_WORKTREE: u16 = 0x4000;

/// Refuses index entries git hides from `git status` — `skip-worktree`, `assume-unchanged`, a
/// sparse checkout — before anything is written: a local edit under such a bit is invisible to
/// the clean check, and the writer's checkout (or the roll-back of a failure) would overwrite it
/// and clear the bit; a file left out of a sparse checkout looks deleted.
pub fn check_hidden(repo: &Repository) -> Result<()> {
    let index = repo.index()?;
    let hidden: Vec<(String, bool)> = index
        .iter()
        .filter(|e| e.flags & ASSUME_UNCHANGED != 0 || e.flags_extended & SKIP_WORKTREE != 0)
        .map(|e| {
            (
                String::from_utf8_lossy(&e.path).into_owned(),
                e.flags_extended & SKIP_WORKTREE != 0,
            )
        })
        .collect();
    if hidden.is_empty() {
        return Ok(());
    }
    let list = hidden
        .iter()
        .take(5)
        .map(|(p, _)| p.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let more = match hidden.len().saturating_sub(5) {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    let sparse = repo
        .config()
        .and_then(|c| c.get_bool("core.sparseCheckout"))
        .unwrap_or(false);
    if sparse && hidden.iter().any(|(_, skip)| *skip) {
        return Err(Error::refused_with(
            format!(
                "the repository uses a sparse checkout: files outside it are not in the work tree ({list}{more}), and update cannot yet merge and undo its work around them"
            ),
            "run `git sparse-checkout disable`, update, then `git sparse-checkout set` your directories again",
        ));
    }
    Err(Error::refused_with(
        format!(
            "files are marked skip-worktree or assume-unchanged ({list}{more}): git hides their local edits, and the update could overwrite them"
        ),
        "clear the bit (`git update-index --no-skip-worktree --no-assume-unchanged PATH…`), then commit or stash any edit, and update again",
    ))
}

/// Refuses uncommitted changes in the work tree or the index (untracked files are fine).
pub fn check_clean(repo: &Repository) -> Result<()> {
    let mut opts = StatusOptions::new();
    opts.include_untracked(false)
        .include_ignored(false)
        .exclude_submodules(true);
    let statuses = repo.statuses(Some(&mut opts))?;
    if statuses.is_empty() {
        return Ok(());
    }
    let paths: Vec<String> = statuses
        .iter()
        .filter_map(|s| s.path().map(str::to_string))
        .take(5)
        .collect();
    let more = statuses.len().saturating_sub(paths.len());
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    Err(refuse(format!(
        "the work tree or the index has uncommitted changes ({}{more}): commit them or `git stash` them first, so the update can be merged (and undone) cleanly",
        paths.join(", ")
    )))
}

/// The record at HEAD.
pub fn head_record(repo: &Repository, prefix: &str) -> Result<ProjectRecord> {
    let tree = repo.head()?.peel_to_tree()?;
    let entry = tree.get_path(Path::new(&under(prefix, RECORD_FILE))).map_err(|_| {
        // Run from inside a project (`src/`, a service's folder): its directory is further up.
        let above = Path::new(prefix)
            .ancestors()
            .skip(1)
            .map(|a| a.to_string_lossy().into_owned())
            .find(|a| tree.get_path(Path::new(&under(a, RECORD_FILE))).is_ok());
        match above {
            Some(dir) => {
                let root = repo.workdir().unwrap_or(repo.path()).join(&dir);
                Error::refused_with(
                    format!(
                        "no {RECORD_FILE} here: this directory is inside the project at {}",
                        root.display()
                    ),
                    format!("run the command on that directory, which holds its {RECORD_FILE}"),
                )
            }
            None => refuse(format!(
                "no {RECORD_FILE} in the last commit: this project was not generated by stackwise (or the record was deleted: bring it back from history with `git log -- {RECORD_FILE}`)"
            )),
        }
    })?;
    let blob = repo.find_blob(entry.id())?;
    let text = std::str::from_utf8(blob.content()).map_err(|_| refuse(format!("{RECORD_FILE} is not UTF-8 text")))?;
    ProjectRecord::parse(text)
}

/// The tree of the project's directory inside `tree` (itself at the root).
pub fn subtree(repo: &Repository, tree: Oid, prefix: &str) -> Result<Oid> {
    if prefix.is_empty() {
        return Ok(tree);
    }
    let entry = repo.find_tree(tree)?.get_path(Path::new(prefix))?;
    Ok(entry.id())
}

/// The repository's index for a project index: `full`'s entries outside the project, and the
/// project's entries (conflict stages included) moved under `prefix`.
pub fn lift_index(repo: &Repository, full: Oid, prefix: &str, project: &git2::Index) -> Result<git2::Index> {
    let mut out = git2::Index::new()?;
    out.read_tree(&repo.find_tree(full)?)?;
    out.remove_dir(Path::new(prefix), 0)?;
    for mut e in project.iter() {
        e.path = under(prefix, &String::from_utf8_lossy(&e.path)).into_bytes();
        e.flags = (e.flags & 0x3000) | (e.path.len().min(0xfff) as u16);
        out.add(&e)?;
    }
    Ok(out)
}

/// [`lift_index`] for a tree.
pub fn lift_tree(repo: &Repository, full: Oid, prefix: &str, project: Oid) -> Result<Oid> {
    if prefix.is_empty() {
        return Ok(project);
    }
    let mut index = git2::Index::new()?;
    index.read_tree(&repo.find_tree(project)?)?;
    Ok(lift_index(repo, full, prefix, &index)?.write_tree_to(repo)?)
}

/// The record inside a commit's tree, if any.
pub fn record_at(repo: &Repository, commit: Oid) -> Option<ProjectRecord> {
    let tree = repo.find_commit(commit).ok()?.tree().ok()?;
    let entry = tree.get_path(Path::new(RECORD_FILE)).ok()?;
    let blob = repo.find_blob(entry.id()).ok()?;
    ProjectRecord::parse(std::str::from_utf8(blob.content()).ok()?).ok()
}

fn merge_head(repo: &Repository) -> Option<Oid> {
    let text = std::fs::read_to_string(repo.path().join("MERGE_HEAD")).ok()?;
    Oid::from_str(text.lines().next()?.trim()).ok()
}

/// Whether the merge in progress is the one an update started: `MERGE_HEAD` is the pending
/// render — or it cannot be read (empty or garbled by a kill) while the update's journal says
/// it was merging that render.
fn is_pending_merge(repo: &Repository) -> bool {
    let Ok(pending) = repo.refname_to_id(&pending_ref(repo)) else {
        return false;
    };
    match merge_head(repo) {
        Some(head) => head == pending,
        None => Journal::read(repo).ok().flatten().is_some_and(|j| j.render == pending),
    }
}

/// `stackwise update --abort`: undoes the merge an update left (as `git merge --abort`) and
/// removes the pending render. Returns what was done.
pub fn abort(dir: &Path) -> Result<String> {
    let (repo, _) = open(dir)?;
    super::policy::check_index_lock(&repo)?;
    // From here a Ctrl-C or SIGTERM no longer ends the process inside libgit2 (holding
    // `index.lock` or a ref's lock): the roll-back finishes, then the interruption is reported.
    crate::interrupt::start_polling()?;
    let done = abort_open(&repo);
    match done {
        Ok(what) if crate::interrupt::check().is_err() => {
            Err(Error::InterruptedLeaving(format!("the abort finished first: {what}")))
        }
        other => other,
    }
}

/// [`abort`] in the opened repository.
fn abort_open(repo: &Repository) -> Result<String> {
    if let Some(j) = Journal::read(repo)? {
        return abort_journal(repo, &j);
    }
    match repo.state() {
        RepositoryState::Merge if is_pending_merge(repo) => {
            let head = repo.head()?.peel_to_commit()?;
            super::journal::reset_hard(repo, head.id())?;
            repo.cleanup_state()?;
            clear_pending(repo)?;
            Ok(format!(
                "aborted the update; the project is back at {}",
                short(head.id())
            ))
        }
        RepositoryState::Merge => Err(refuse(
            "the merge in progress was not started by `stackwise update`; use `git merge --abort`",
        )),
        _ if clear_pending(repo)? => Ok("no merge in progress; removed the pending render of an earlier update".into()),
        _ => Err(refuse("there is no update to abort")),
    }
}

/// `--abort` of an update that left its journal: mid-merge, or interrupted at any point.
fn abort_journal(repo: &Repository, j: &Journal) -> Result<String> {
    if j.finished(repo) {
        Journal::remove(repo)?;
        clear_pending(repo)?;
        return Err(refuse("there is no update to abort: the last one was committed"));
    }
    if let Some(moved) = j.moved_on(repo) {
        return Err(super::journal::stale(repo, &moved));
    }
    if repo.state() == RepositoryState::Merge && !is_pending_merge(repo) {
        return Err(refuse(
            "the merge in progress was not started by `stackwise update`; use `git merge --abort`",
        ));
    }
    check_no_edits_since(repo, j)?;
    j.roll_back(repo)?;
    Ok(format!("aborted the update; the project is back at {}", short(j.head)))
}

/// Refuses an `--abort` that would overwrite edits made since the update stopped with its merge
/// for the user (conflicts, exit 3, or `--no-commit`): a file it wrote that the user changed
/// afterwards, as `git merge --abort` refuses a file "not uptodate". A conflicted file's
/// resolution in progress is the update's to reset, as with git. After an update stopped
/// mid-checkout (the index still at HEAD) the work tree holds its half-written files, not edits.
fn check_no_edits_since(repo: &Repository, j: &Journal) -> Result<()> {
    let mut index = repo.index()?;
    let head_tree = repo.head()?.peel_to_tree()?.id();
    if !index.has_conflicts() && index.write_tree()? == head_tree {
        return Ok(());
    }
    let mut opts = StatusOptions::new();
    opts.include_untracked(false).exclude_submodules(true);
    let changed = git2::Status::WT_MODIFIED | git2::Status::WT_DELETED | git2::Status::WT_TYPECHANGE;
    let edited: Vec<String> = repo
        .statuses(Some(&mut opts))?
        .iter()
        .filter(|s| !s.status().is_conflicted() && s.status().intersects(changed))
        .filter_map(|s| s.path().map(str::to_string))
        .filter(|p| j.touched.as_ref().is_none_or(|t| t.contains(p)))
        .collect();
    if edited.is_empty() {
        return Ok(());
    }
    let list = edited.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ");
    Err(Error::refused_with(
        format!(
            "{list} changed since the update wrote it; aborting would put back the version from before the update and lose that"
        ),
        format!(
            "keep your changes elsewhere (`git diff -- {0} > my-changes.patch`) or drop them (`git restore -- {0}`), then run `stackwise update --abort` again",
            edited.join(" ")
        ),
    ))
}

/// The render's entry for `--restore PATH`: a file of the render that the project lacks.
pub fn restorable<'t>(ours: &git2::Tree, render: &'t git2::Tree, p: &str) -> Result<git2::TreeEntry<'t>> {
    let entry = render
        .get_path(Path::new(p))
        .map_err(|_| refuse(format!("--restore {p}: the template's render has no such file")))?;
    if ours.get_path(Path::new(p)).is_ok() {
        return Err(refuse(format!(
            "--restore {p}: your project has this file; --restore only brings back files you deleted"
        )));
    }
    // Nothing is written through a committed symlink (or below a file).
    let parents = p.match_indices('/').map(|(i, _)| &p[..i]);
    for d in parents {
        if ours
            .get_path(Path::new(d))
            .is_ok_and(|e| e.kind() != Some(git2::ObjectType::Tree))
        {
            return Err(refuse(format!(
                "--restore {p}: `{d}` is a file or symlink in your project; nothing is written through it"
            )));
        }
    }
    Ok(entry)
}

/// A commit id in its short form ([`crate::project::git::short_revision`]).
pub fn short(id: Oid) -> String {
    crate::project::git::short_revision(&id.to_string())
}

/// What to tell the user after committing `commit` on a detached HEAD: it is on no branch, and
/// the next `git switch` or `git checkout` leaves it to the reflog. `None` on a branch.
pub fn detached_note(repo: &Repository, commit: &str) -> Option<String> {
    repo.head_detached().ok()?.then(|| {
        format!(
            "HEAD is detached: commit {} is on no branch; keep it with `git switch -c <branch>` (or `git branch <branch> {}`) before you switch away",
            crate::project::git::short_revision(commit),
            crate::project::git::short_revision(commit)
        )
    })
}

/// Refuses a record that is in the index or the work tree but not in HEAD, the trace of an adopt
/// killed before its commit (`adopt` writes the record, stages it, commits last). Named as such,
/// for `adopt` (which would otherwise refuse it as uncommitted) and `update` (which would call the
/// project "not generated by stackwise").
pub fn check_no_stray_record(repo: &Repository, prefix: &str, project: &Path) -> Result<()> {
    let path = under(prefix, RECORD_FILE);
    let head = repo.head()?.peel_to_tree()?;
    if head.get_path(Path::new(&path)).is_ok() {
        return Ok(());
    }
    let (where_, remove) = if repo.index()?.get_path(Path::new(&path), 0).is_some() {
        (
            "is staged in the index but not committed",
            format!("remove it with `git rm -f {path}` (move it away first if it is yours)"),
        )
    } else if std::fs::symlink_metadata(project.join(RECORD_FILE)).is_ok() {
        (
            "exists in the work tree but is not committed",
            "move it away (or delete it)".to_string(),
        )
    } else {
        return Ok(());
    };
    Err(Error::UpdateRefused {
        reason: format!("{RECORD_FILE} {where_}"),
        hint: Some(format!(
            "an adopt that was killed can leave it: {remove} and run `stackwise adopt` again, which writes a fresh {RECORD_FILE}"
        )),
    })
}
