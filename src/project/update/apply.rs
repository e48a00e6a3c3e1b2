//! Written last: the one writer of an update. It applies a computed [`Plan`] — the move-only
//! commit, the pending ref, the merge state, the merge commit, the install — and before it
//! reports success it checks the guarantees of SPEC §7.1: after a commit the work tree and the
//! index equal HEAD, HEAD's tree is the merged index that was reported, and every path reported
//! as written is in it; a merge left for the user holds exactly the reported index. A journal
//! ([`Journal`]) written before the first change lets any failure, Ctrl-C/SIGTERM (checked at
//! safe points) or kill be undone exactly (`update --abort`).

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use git2::build::CheckoutBuilder;
use git2::{CheckoutNotificationType, Index, Oid, Repository, StatusOptions};

use super::journal::{self, Journal};
use super::plan::{MergeWork, Plan, Work, tree_paths};
use super::report::FileStatus;
use super::{UpdateOutcome, UpdateRequest, repo};
use crate::error::{Error, Result};
use crate::interrupt;
use crate::project::git;
use crate::project::install::{self, Progress};

/// Applies `plan` to the repository it was computed from.
pub fn apply(repo: &Repository, plan: Plan, req: &UpdateRequest, progress: &mut dyn Progress) -> Result<UpdateOutcome> {
    let Plan {
        mut outcome,
        head,
        prefix,
        work,
    } = plan;
    // From here on Ctrl-C / SIGTERM stop the update at a safe point and the writer undoes what it
    // wrote; before, nothing was written and the binary's handler ends the process at once.
    interrupt::start_polling()?;
    interrupt::check()?;
    settle_finished(repo)?;
    match work {
        Work::Nothing => {}
        Work::Restore {
            tree,
            message,
            new_files,
        } => {
            let touched = touched_paths(repo, head, &outcome, &prefix, &[tree], None)?;
            let journal = Journal::new(repo, head, head, new_files).with_touched(touched);
            guarded(repo, &journal, || {
                restore(repo, head, tree, &message, req.commit, &prefix, &mut outcome)
            })?;
            Journal::remove(repo)?;
        }
        Work::Merge(mut m) => {
            git::clear_pending(repo)?;
            let moves = m.moves.as_ref().map(|(tree, _)| *tree);
            let trees: Vec<Oid> = moves.into_iter().chain(m.tree).collect();
            let touched = touched_paths(repo, head, &outcome, &prefix, &trees, Some(&m.index))?;
            let journal = Journal::new(repo, head, m.render, std::mem::take(&mut m.new_files))
                .with_moves(moves)
                .with_touched(touched);
            guarded(repo, &journal, || {
                write_merge(repo, head, &mut m, req.commit, &prefix, &mut outcome)
            })?;
            if outcome.commit.is_some() {
                Journal::remove(repo)?;
                install_after(repo, &m, req, progress, &prefix, &mut outcome)?;
            }
        }
    }
    if let Some(note) = outcome.commit.as_deref().and_then(|c| repo::detached_note(repo, c)) {
        outcome.notes.push(note);
    }
    Ok(outcome)
}

/// A journal left by an update the user finished with `git commit`, and its pending ref, go;
/// one left by an update killed before it changed a file is rolled back (its `ORIG_HEAD`).
fn settle_finished(repo: &Repository) -> Result<()> {
    if let Some(j) = Journal::read(repo)? {
        if j.finished(repo) {
            Journal::remove(repo)?;
        } else if j.abandoned(repo) {
            j.roll_back(repo)?;
        }
    }
    git::clear_pending(repo).map(drop)
}

/// Runs `write` with the journal in place; on any error (an interruption included) the project
/// is put back exactly as it was.
fn guarded(repo: &Repository, journal: &Journal, write: impl FnOnce() -> Result<()>) -> Result<()> {
    journal.write(repo)?;
    // Said only if a second Ctrl-C ends the process before this returns (the first one stops
    // the writer at a safe point, and the failure path rolls back).
    interrupt::set_end_note(Some(
        "the update was stopped in the middle of writing: `stackwise update --abort` puts the project back exactly as it was"
            .into(),
    ));
    let result = guarded_write(repo, journal, write);
    interrupt::set_end_note(None);
    result
}

fn guarded_write(repo: &Repository, journal: &Journal, write: impl FnOnce() -> Result<()>) -> Result<()> {
    let before = untracked(repo)?;
    let result = write().and_then(|()| {
        interrupt::check()?;
        let now = untracked(repo)?;
        match now.difference(&before).next() {
            Some(p) => Err(failed(format!("{p} was left untracked"))),
            None => Ok(()),
        }
    });
    if let Err(e) = result {
        if let Some(moved) = journal.moved_on_while_writing(repo) {
            return Err(not_rolled_back(repo, &e, &moved));
        }
        if let Err(undo) = journal.roll_back(repo) {
            return Err(roll_back_failed(&e, &undo));
        }
        return Err(e);
    }
    Ok(())
}

/// A failure whose roll-back failed too (a full disk fails both): the journal is kept, and
/// `update --abort` finishes the roll-back once the cause is gone. The merge state is removed
/// first, so `git commit` cannot conclude a merge of the template's version without its changes.
fn roll_back_failed(error: &Error, undo: &Error) -> Error {
    Error::NotRolledBack {
        reason: format!("{error}; putting the project back failed too: {undo}"),
        hint: "fix that (free disk space, permissions), then run `stackwise update --abort`: it puts the project back exactly as it was. Do not `git commit` what is left".into(),
    }
}

/// Every path the update may write, repository-relative: its report's (a rename's old path
/// too), and every path where HEAD's tree differs from one it writes (`trees`: the move-only
/// commit's, the merge's) or from the merged `index` (conflicts included).
fn touched_paths(
    repo: &Repository,
    head: Oid,
    outcome: &UpdateOutcome,
    prefix: &str,
    trees: &[Oid],
    index: Option<&Index>,
) -> Result<BTreeSet<String>> {
    let mut out: BTreeSet<String> = outcome
        .files
        .iter()
        .flat_map(|f| std::iter::once(&f.path).chain(f.from.iter()))
        .map(|p| repo::under(prefix, p))
        .collect();
    let old = repo.find_commit(head)?.tree()?;
    let mut diffs = Vec::new();
    for tree in trees {
        diffs.push(repo.diff_tree_to_tree(Some(&old), Some(&repo.find_tree(*tree)?), None)?);
    }
    if let Some(index) = index {
        diffs.push(repo.diff_tree_to_index(Some(&old), Some(index), None)?);
    }
    for diff in &diffs {
        for delta in diff.deltas() {
            for file in [delta.old_file(), delta.new_file()] {
                if let Some(p) = file.path().and_then(Path::to_str) {
                    out.insert(p.to_string());
                }
            }
        }
    }
    Ok(out)
}

/// A failure while someone else moved HEAD (a commit made in another terminal while the update
/// wrote): putting the branch back would drop that commit, and the work tree may hold its edits,
/// so nothing is rolled back and the user is told what is left.
fn not_rolled_back(repo: &Repository, error: &Error, moved: &str) -> Error {
    let reason = match error {
        Error::HeadMoved { was, now } => format!(
            "HEAD moved while it was writing (from {was} to {now}: a commit made meanwhile, in another terminal or an editor), and putting the branch back would drop that commit"
        ),
        other => format!("{other}; meanwhile {moved}, and putting the branch back would undo that"),
    };
    Error::NotRolledBack {
        reason,
        hint: format!(
            "check `git status`: `git merge --abort` ends the merge it left, `git restore`/`git clean` drop files it wrote; then discard its journal: rm {}",
            journal::path(repo).display()
        ),
    }
}

/// Untracked (not ignored) files.
fn untracked(repo: &Repository) -> Result<BTreeSet<String>> {
    let mut opts = StatusOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false)
        .exclude_submodules(true);
    let st = repo.statuses(Some(&mut opts))?;
    Ok(st
        .iter()
        .filter(|s| s.status().is_wt_new())
        .filter_map(|s| s.path().map(str::to_string))
        .collect())
}

/// The writer found the result not to be what was computed: an error (exit 1), rolled back.
fn failed(why: String) -> Error {
    Error::Repository(format!(
        "the update did not write what it computed ({why}); the project was put back as it was"
    ))
}

fn restore(
    repo: &Repository,
    head: Oid,
    tree: Oid,
    message: &str,
    commit: bool,
    prefix: &str,
    outcome: &mut UpdateOutcome,
) -> Result<()> {
    checkout_tree(repo, tree)?;
    if commit {
        outcome.commit = Some(git::commit_on_head(repo, head, tree, &[], message)?.to_string());
        verify_committed(repo, tree, prefix, outcome)
    } else {
        verify_index(repo, tree)
    }
}

fn write_merge(
    repo: &Repository,
    mut head: Oid,
    m: &mut MergeWork,
    commit: bool,
    prefix: &str,
    outcome: &mut UpdateOutcome,
) -> Result<()> {
    if let Some((tree, message)) = &m.moves {
        let before = repo.head()?.peel_to_tree()?.id();
        checkout_tree(repo, *tree)?;
        let id = git::commit_on_head(repo, head, *tree, &[], message)?;
        head = id;
        remove_emptied_dirs(repo, before, *tree)?;
        outcome
            .notes
            .push(format!("moved the service in commit {}", repo::short(id)));
        interrupt::check()?;
    }
    git::set_pending(repo, m.render)?;
    write_merge_state(repo, m)?;
    interrupt::check()?;
    let Some(tree) = m.tree.filter(|_| commit) else {
        outcome.merge_in_progress = true;
        return verify_in_progress(repo, &m.index, outcome);
    };
    let before = repo.head()?.peel_to_tree()?.id();
    let id = git::commit_on_head(repo, head, tree, &[m.render], &m.message)?;
    repo.cleanup_state()?;
    git::clear_pending(repo)?;
    remove_emptied_dirs(repo, before, tree)?;
    outcome.commit = Some(id.to_string());
    verify_committed(repo, tree, prefix, outcome)
}

/// `MERGE_HEAD`, `MERGE_MSG`, `MERGE_MODE`, `ORIG_HEAD` — as `git merge` leaves them — and the
/// merged index checked out (diff3 markers where conflicts remain).
fn write_merge_state(repo: &Repository, m: &mut MergeWork) -> Result<()> {
    let head = repo.head()?.peel_to_commit()?.id();
    // Each whole or absent: a kill must not leave an empty `MERGE_HEAD` that neither git nor
    // `update --abort` could read.
    let write = |name: &str, text: String| journal::write_atomic(&repo.path().join(name), &text);
    write("ORIG_HEAD", format!("{head}\n"))?;
    write("MERGE_HEAD", format!("{}\n", m.render))?;
    write("MERGE_MODE", "no-ff".into())?;
    write("MERGE_MSG", m.message.clone())?;
    let mut co = CheckoutBuilder::new();
    co.allow_conflicts(true)
        .conflict_style_diff3(true)
        .ancestor_label(&m.ancestor_label)
        .our_label("your project")
        .their_label(&m.their_label);
    checkout(repo, co, |repo, co| repo.checkout_index(Some(&mut m.index), Some(co)))?;
    keep_ours(repo, &m.not_merged)
}

/// The conflicts git's merge driver did not merge ([`super::merge::Merged::not_merged`]):
/// libgit2's checkout merges a text file's sides anyway; `git merge` leaves the user's file,
/// and so does the update (the conflict stays in the index).
fn keep_ours(repo: &Repository, paths: &BTreeSet<String>) -> Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    let mut co = CheckoutBuilder::new();
    co.force()
        .allow_conflicts(true)
        .use_ours(true)
        .disable_pathspec_match(true);
    for p in paths {
        co.path(p.as_str());
    }
    repo.checkout_index(None, Some(&mut co))?;
    Ok(())
}

fn checkout_tree(repo: &Repository, tree: Oid) -> Result<()> {
    let tree = repo.find_tree(tree)?;
    checkout(repo, CheckoutBuilder::new(), |repo, co| {
        repo.checkout_tree(tree.as_object(), Some(co))
    })
}

/// A safe checkout that fails — never skips — when a file is in the way.
fn checkout(
    repo: &Repository,
    mut co: CheckoutBuilder,
    run: impl FnOnce(&Repository, &mut CheckoutBuilder) -> std::result::Result<(), git2::Error>,
) -> Result<()> {
    let blocked: Rc<RefCell<Vec<PathBuf>>> = Rc::default();
    let seen = Rc::clone(&blocked);
    let mut pause = test_pause();
    co.safe()
        .notify_on(CheckoutNotificationType::CONFLICT)
        .notify(move |_, path, _, _, _| {
            seen.borrow_mut().extend(path.map(Path::to_path_buf));
            false
        })
        .progress(move |_, done, total| pause(done, total));
    let result = run(repo, &mut co);
    drop(co);
    let blocked = blocked.borrow().clone();
    match (result, blocked) {
        (Err(_), paths) if !paths.is_empty() => {
            let list: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            Err(Error::refused(format!(
                "files are in the way of the update ({}): move them away or commit them first",
                list.join(", ")
            )))
        }
        (r, _) => r.map_err(Error::from),
    }
}

/// A hook for the tests of interruptions: with `STACKWISE_TEST_PAUSE=FILE`, a checkout stops
/// half-way, creates FILE and waits (up to a minute, until Ctrl-C/SIGTERM, or until the test
/// removes FILE) — the moment a test kills the process or changes the repository under it.
fn test_pause() -> impl FnMut(usize, usize) {
    let mut marker = std::env::var_os("STACKWISE_TEST_PAUSE").map(PathBuf::from);
    move |done, total| {
        if total < 2 || done * 2 < total {
            return;
        }
        if let Some(m) = marker.take() {
            let _ = std::fs::write(&m, format!("{done}/{total}\n"));
            let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while std::time::Instant::now() < until && interrupt::check().is_ok() && m.exists() {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}

/// Directories emptied by going from tree `before` to `after` (git tracks no directory).
fn remove_emptied_dirs(repo: &Repository, before: Oid, after: Oid) -> Result<()> {
    let Some(workdir) = repo.workdir() else { return Ok(()) };
    let now = tree_paths(repo, after)?;
    for gone in tree_paths(repo, before)?.keys().filter(|p| !now.contains_key(*p)) {
        let mut dir = Path::new(gone).parent();
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
            if std::fs::remove_dir(workdir.join(d)).is_err() {
                break;
            }
            dir = d.parent();
        }
    }
    Ok(())
}

/// After a commit: HEAD's tree is the computed one, the index and work tree equal it, and
/// every path reported as written is in it.
fn verify_committed(repo: &Repository, tree: Oid, prefix: &str, outcome: &UpdateOutcome) -> Result<()> {
    if repo.head()?.peel_to_tree()?.id() != tree {
        return Err(failed("HEAD is not the computed merge".into()));
    }
    verify_index(repo, tree)?;
    let mut opts = StatusOptions::new();
    opts.include_untracked(false).exclude_submodules(true);
    if let Some(s) = repo.statuses(Some(&mut opts))?.iter().next() {
        return Err(failed(format!("{} differs from HEAD", s.path().unwrap_or("?"))));
    }
    let committed = tree_paths(repo, tree)?;
    let written = [
        FileStatus::Added,
        FileStatus::Updated,
        FileStatus::Merged,
        FileStatus::Renamed,
        FileStatus::KeptYours,
    ];
    match outcome
        .files
        .iter()
        .find(|f| written.contains(&f.status) && !committed.contains_key(&repo::under(prefix, &f.path)))
    {
        Some(f) => Err(failed(format!(
            "{} was reported {} but is not in the commit",
            f.path,
            f.status.as_str()
        ))),
        None => Ok(()),
    }
}

fn verify_index(repo: &Repository, tree: Oid) -> Result<()> {
    if repo.index()?.write_tree()? != tree {
        return Err(failed("the index is not the computed merge".into()));
    }
    Ok(())
}

/// A merge left for the user: the repository's index is the reported one, stage for stage,
/// and only conflicted paths differ in the work tree.
fn verify_in_progress(repo: &Repository, merged: &Index, outcome: &UpdateOutcome) -> Result<()> {
    let entries = |i: &Index| -> BTreeSet<(Vec<u8>, u16, Oid, u32)> {
        i.iter()
            .map(|e| (e.path.clone(), e.flags & 0x3000, e.id, e.mode))
            .collect()
    };
    if entries(&repo.index()?) != entries(merged) {
        return Err(failed("the index is not the computed merge".into()));
    }
    let conflicts: BTreeSet<&str> = outcome
        .files
        .iter()
        .filter(|f| f.status == FileStatus::Conflict)
        .map(|f| f.path.as_str())
        .collect();
    let mut opts = StatusOptions::new();
    opts.include_untracked(false).exclude_submodules(true);
    for s in repo.statuses(Some(&mut opts))?.iter() {
        let p = s.path().unwrap_or("");
        let wt = s
            .status()
            .intersects(git2::Status::WT_MODIFIED | git2::Status::WT_DELETED | git2::Status::WT_TYPECHANGE);
        if wt && !s.status().is_conflicted() && !conflicts.contains(p) {
            return Err(failed(format!("{p} in the work tree is not the merged file")));
        }
    }
    Ok(())
}

/// `--install` after a committed update: install, then commit the lockfiles it wrote.
fn install_after(
    repo: &Repository,
    m: &MergeWork,
    req: &UpdateRequest,
    progress: &mut dyn Progress,
    prefix: &str,
    outcome: &mut UpdateOutcome,
) -> Result<()> {
    if !req.install || m.steps.is_empty() {
        return Ok(());
    }
    let log = install::new_log("update").map_err(|e| Error::io(std::env::temp_dir(), e))?;
    outcome.install = install::run(&req.dir, &m.steps, &log, progress);
    // A failed install leaves the lockfiles stale: its re-lock commands stay in the report.
    if outcome.install.iter().any(|r| !r.ok) {
        return Ok(());
    }
    outcome.relock.clear();
    // The log is kept only when a step failed (its path is in that step's error).
    let _ = std::fs::remove_file(&log);
    let lockfiles: Vec<String> = m
        .steps
        .iter()
        .map(|s| {
            let rel = if s.dir == "." {
                s.lockfile.clone()
            } else {
                format!("{}/{}", s.dir, s.lockfile)
            };
            repo::under(prefix, &rel)
        })
        .collect();
    // On the update's own commit: a commit made during the install is not built upon.
    let merged = Oid::from_str(outcome.commit.as_deref().unwrap_or_default())?;
    if let Some(c) = commit_paths(repo, merged, &lockfiles, "stackwise: lockfiles after update\n")? {
        outcome.commit = Some(c.to_string());
    }
    Ok(())
}

/// Commits the given paths (those that exist) on top of HEAD when they change anything.
fn commit_paths(repo: &Repository, head: Oid, paths: &[String], message: &str) -> Result<Option<Oid>> {
    let workdir = repo
        .workdir()
        .ok_or_else(|| Error::Repository("the repository has no work tree".into()))?;
    let mut index = repo.index()?;
    for p in paths.iter().filter(|p| workdir.join(p).is_file()) {
        index.add_path(Path::new(p))?;
    }
    index.write()?;
    let tree = index.write_tree()?;
    if tree == repo.find_commit(head)?.tree_id() {
        return Ok(None);
    }
    git::commit_on_head(repo, head, tree, &[], message).map(Some)
}
