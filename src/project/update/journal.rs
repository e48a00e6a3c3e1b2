//! The journal of an update being written: what the project was before (HEAD, `ORIG_HEAD`), the
//! render being merged, and every path and directory the update creates that did not exist. It
//! is written (atomically) before the work tree is touched and removed when the update is done,
//! so after any interruption — Ctrl-C, SIGTERM, SIGKILL in the middle of a checkout —
//! `update --abort` can put back exactly what was there and remove exactly what the update
//! wrote, never a file of the user's own.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use git2::{Oid, Repository};

use crate::error::{Error, Result};

/// The journal's file, inside the git directory.
const FILE: &str = "stackwise-update";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journal {
    /// HEAD before the update (before the move-only commit, if any).
    pub head: Oid,
    /// The render commit being merged.
    pub render: Oid,
    /// `ORIG_HEAD` before the update (the merge rewrites it).
    pub orig_head: Option<String>,
    /// Files the update creates (none of them existed).
    pub new_files: BTreeSet<String>,
    /// Directories the update creates (none of them existed), to remove when empty.
    pub new_dirs: BTreeSet<String>,
    /// Directories above the new files that existed (empty ones included): a roll-back's
    /// checkout removes a directory it empties, and these are put back.
    pub old_dirs: BTreeSet<String>,
    /// The branch HEAD was on (`refs/heads/main`), `None` when detached (or in a journal
    /// written before it was recorded).
    pub branch: Option<String>,
    /// The tree of the move-only commit of a growing layout, if the update makes one: a HEAD
    /// at that commit is the update's own.
    pub moves: Option<Oid>,
    /// Every path the update may write (its report's and its moves'), repository-relative: a
    /// roll-back puts back these and no other, so a file the user saved meanwhile stays. `None`
    /// in a journal written before they were recorded: the whole work tree is reset.
    pub touched: Option<BTreeSet<String>>,
}

pub fn path(repo: &Repository) -> PathBuf {
    repo.path().join(FILE)
}

fn io(p: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::io(p, e)
}

/// The temporary file [`write_atomic`] renames into `p`.
fn tmp_of(p: &Path) -> PathBuf {
    let mut name = p.file_name().unwrap_or_default().to_os_string();
    name.push(".stackwise-tmp");
    p.with_file_name(name)
}

/// Writes `text` to `p` through a temporary file renamed into place, so that `p` is whole or
/// as it was — never empty or half-written, whenever the process is killed.
pub fn write_atomic(p: &Path, text: &str) -> Result<()> {
    let tmp = tmp_of(p);
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, p).map_err(io(p))
}

/// Before a forced checkout of `target`: every submodule (gitlink) of `target` is put back in
/// the index at stage 0, alone at its path. A conflict at a gitlink's path, or a file below it,
/// makes a forced checkout take the submodule's working directory for something in the way
/// and delete it — its `.git`, its files, its ignored files. With the gitlink in the index as
/// in the target, the checkout leaves the directory alone.
fn keep_submodules(repo: &Repository, target: &git2::Tree) -> Result<()> {
    let mut gitlinks = Vec::new();
    target.walk(git2::TreeWalkMode::PreOrder, |root, entry| {
        if entry.filemode() == 0o160000
            && let Some(name) = entry.name()
        {
            gitlinks.push((format!("{root}{name}"), entry.id()));
        }
        git2::TreeWalkResult::Ok
    })?;
    if gitlinks.is_empty() {
        return Ok(());
    }
    let mut index = repo.index()?;
    for (path, id) in &gitlinks {
        let below = format!("{path}/");
        let stale: Vec<(Vec<u8>, i32)> = index
            .iter()
            .filter(|e| e.path == path.as_bytes() || e.path.starts_with(below.as_bytes()))
            .map(|e| (e.path, i32::from((e.flags >> 12) & 3)))
            .collect();
        for (p, stage) in stale {
            index.remove(Path::new(&*String::from_utf8_lossy(&p)), stage)?;
        }
        index.add(&crate::project::git::index_entry(path, *id, 0o160000, None))?;
    }
    index.write()?;
    Ok(())
}

/// `git reset --hard to`, the user's submodules kept ([`keep_submodules`]): what every
/// roll-back and `--abort` runs.
pub fn reset_hard(repo: &Repository, to: Oid) -> Result<()> {
    keep_submodules(repo, &repo.find_object(to, None)?.peel_to_tree()?)?;
    crate::project::git::reset_hard(repo, to)
}

/// `git reset --hard to` limited to `paths` in the work tree: the branch and the index at `to`,
/// and of the work tree only `paths` put back (removed where `to` lacks them and the index has
/// them), so an edit the user saved to any other file while the update ran is kept. The
/// checkout runs first, against the update's index, so it knows which files the update added.
fn reset_paths(repo: &Repository, to: Oid, paths: &BTreeSet<String>) -> Result<()> {
    let target = repo.find_object(to, None)?;
    keep_submodules(repo, &target.peel_to_tree()?)?;
    if !paths.is_empty() {
        let mut co = git2::build::CheckoutBuilder::new();
        co.force().disable_pathspec_match(true);
        for p in paths {
            co.path(p);
        }
        repo.checkout_tree(&target, Some(&mut co))?;
    }
    repo.reset(&target, git2::ResetType::Mixed, None)?;
    Ok(())
}

/// A path on one line of the journal: backslash, newline and carriage return escaped.
fn escape(path: &str) -> String {
    path.replace('\\', "\\\\").replace('\n', "\\n").replace('\r', "\\r")
}

/// [`escape`] undone; `None` for an escape it never writes.
fn unescape(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next()? {
            '\\' => '\\',
            'n' => '\n',
            'r' => '\r',
            _ => return None,
        });
    }
    Some(out)
}

/// The branch HEAD is on (`refs/heads/main`), `None` when detached.
fn head_branch(repo: &Repository) -> Option<String> {
    let head = repo.find_reference("HEAD").ok()?;
    head.symbolic_target().map(str::to_string)
}

fn short_ref(name: &str) -> &str {
    name.strip_prefix("refs/heads/").unwrap_or(name)
}

fn short(id: Oid) -> String {
    crate::project::git::short_revision(&id.to_string())
}

/// The refusal of a journal the user has moved on from ([`Journal::moved_on`]): rolling back
/// would undo their work, and the journal is theirs to discard.
pub fn stale(repo: &Repository, moved: &str) -> Error {
    Error::refused_with(
        format!(
            "an earlier `stackwise update` was interrupted, and the project moved on since: {moved}. Putting it back as it was before that update would undo that, so nothing was changed"
        ),
        format!(
            "check with `git status` that nothing of that update is left (`git merge --abort` ends a merge it left), then discard its journal: rm {}",
            path(repo).display()
        ),
    )
}

impl Journal {
    /// The journal of an update from `head` merging `render` that creates `new_files`.
    pub fn new(repo: &Repository, head: Oid, render: Oid, new_files: BTreeSet<String>) -> Journal {
        let workdir = repo.workdir().unwrap_or(repo.path());
        let (mut new_dirs, mut old_dirs) = (BTreeSet::new(), BTreeSet::new());
        for f in &new_files {
            let mut dir = Path::new(f).parent();
            while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
                let name = d.to_string_lossy().into_owned();
                match std::fs::symlink_metadata(workdir.join(d)) {
                    Err(_) => drop(new_dirs.insert(name)),
                    Ok(m) if m.is_dir() => drop(old_dirs.insert(name)),
                    Ok(_) => {}
                }
                dir = d.parent();
            }
        }
        let orig_head = std::fs::read_to_string(repo.path().join("ORIG_HEAD")).ok();
        Journal {
            head,
            render,
            orig_head,
            new_files,
            new_dirs,
            old_dirs,
            branch: head_branch(repo),
            moves: None,
            touched: None,
        }
    }

    /// The journal of an update that writes `touched` and nothing else.
    pub fn with_touched(mut self, touched: BTreeSet<String>) -> Journal {
        self.touched = Some(touched);
        self
    }

    /// The journal of an update that first makes the move-only commit of tree `moves`.
    pub fn with_moves(mut self, moves: Option<Oid>) -> Journal {
        self.moves = moves;
        self
    }

    /// Writes the journal: a temporary file renamed into place, so it is whole or absent.
    pub fn write(&self, repo: &Repository) -> Result<()> {
        // Paths are escaped (`format 2`): a name can hold a newline, which would split its line.
        let mut text = format!("format 2\nhead {}\nrender {}\n", self.head, self.render);
        if let Some(o) = &self.orig_head {
            text.push_str(&format!("orig_head {}\n", o.trim()));
        }
        if let Some(b) = &self.branch {
            text.push_str(&format!("branch {b}\n"));
        }
        if let Some(t) = &self.moves {
            text.push_str(&format!("moves {t}\n"));
        }
        for d in &self.old_dirs {
            text.push_str(&format!("old_dir {}\n", escape(d)));
        }
        for f in &self.new_files {
            text.push_str(&format!("file {}\n", escape(f)));
        }
        for d in &self.new_dirs {
            text.push_str(&format!("dir {}\n", escape(d)));
        }
        if let Some(touched) = &self.touched {
            text.push_str("scope touched\n");
            for t in touched {
                text.push_str(&format!("touched {}\n", escape(t)));
            }
        }
        write_atomic(&path(repo), &text)
    }

    /// The journal of an update that did not finish, if any.
    pub fn read(repo: &Repository) -> Result<Option<Journal>> {
        let p = path(repo);
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&p, e)),
        };
        let bad = || Error::Repository(format!("{} is damaged; remove it and run `git status`", p.display()));
        let mut j = Journal {
            head: Oid::zero(),
            render: Oid::zero(),
            orig_head: None,
            new_files: BTreeSet::new(),
            new_dirs: BTreeSet::new(),
            old_dirs: BTreeSet::new(),
            branch: None,
            moves: None,
            touched: None,
        };
        let mut escaped = false;
        for line in text.lines() {
            let (key, raw) = line.split_once(' ').ok_or_else(bad)?;
            let unescaped = if escaped {
                unescape(raw).ok_or_else(bad)?
            } else {
                raw.to_string()
            };
            let value = unescaped.as_str();
            match key {
                "format" if raw == "2" && j.head.is_zero() => escaped = true,
                "head" => j.head = Oid::from_str(value).map_err(|_| bad())?,
                "render" => j.render = Oid::from_str(value).map_err(|_| bad())?,
                "orig_head" => j.orig_head = Some(format!("{value}\n")),
                "file" => drop(j.new_files.insert(value.to_string())),
                "dir" => drop(j.new_dirs.insert(value.to_string())),
                "old_dir" => drop(j.old_dirs.insert(value.to_string())),
                "branch" => j.branch = Some(value.to_string()),
                "moves" => j.moves = Some(Oid::from_str(value).map_err(|_| bad())?),
                "scope" if value == "touched" => drop(j.touched.get_or_insert_with(BTreeSet::new)),
                "touched" => drop(j.touched.get_or_insert_with(BTreeSet::new).insert(value.to_string())),
                _ => return Err(bad()),
            }
        }
        if j.head.is_zero() {
            return Err(bad());
        }
        Ok(Some(j))
    }

    /// Whether the update this journal describes was finished by the user (`git commit` of the
    /// merge it left): HEAD descends from the render.
    pub fn finished(&self, repo: &Repository) -> bool {
        let Ok(head) = repo.head().and_then(|h| h.peel_to_commit()) else {
            return false;
        };
        head.parent_ids().any(|p| p == self.render) || repo.graph_descendant_of(head.id(), self.render).unwrap_or(false)
    }

    /// Whether the update was undone without stackwise (`git merge --abort`, or killed before it
    /// touched anything): HEAD where it was, nothing in progress, a clean index and work tree,
    /// and none of the update's new files there.
    pub fn abandoned(&self, repo: &Repository) -> bool {
        let head = repo.head().ok().and_then(|h| h.target());
        let workdir = repo.workdir().unwrap_or(repo.path());
        let mut opts = git2::StatusOptions::new();
        opts.include_untracked(false).exclude_submodules(true);
        head == Some(self.head)
            && repo.state() == git2::RepositoryState::Clean
            && repo.statuses(Some(&mut opts)).is_ok_and(|s| s.is_empty())
            && !self
                .new_files
                .iter()
                .any(|f| std::fs::symlink_metadata(workdir.join(f)).is_ok())
    }

    /// What the user changed since the update was interrupted that a roll-back would undo: HEAD
    /// on another branch, or at a commit that is neither where the update started nor its own
    /// move-only commit (a commit of the user's, a reset, a checkout). `None`: HEAD is where
    /// the update left it.
    pub fn moved_on(&self, repo: &Repository) -> Option<String> {
        let branch = head_branch(repo);
        if let Some(was) = &self.branch
            && branch.as_ref() != Some(was)
        {
            let now = match &branch {
                Some(b) => format!("is on `{}`", short_ref(b)),
                None => "is detached".to_string(),
            };
            return Some(format!("HEAD {now}; the update started on `{}`", short_ref(was)));
        }
        let now = repo.head().ok().and_then(|h| h.target());
        match now {
            Some(id) if id == self.head || self.is_move_commit(repo, id) => None,
            Some(id) => Some(format!(
                "HEAD moved from {} (where the update started) to {}",
                short(self.head),
                short(id)
            )),
            None => Some("HEAD points at no commit".to_string()),
        }
    }

    /// [`Journal::moved_on`] as the writer sees it after a failure: HEAD at the update's own merge
    /// commit (on the old HEAD or the move-only commit, with the render as second parent) is the
    /// update's, which a roll-back may undo; any other move is someone else's.
    pub fn moved_on_while_writing(&self, repo: &Repository) -> Option<String> {
        let own_merge = repo.head().ok().and_then(|h| h.peel_to_commit().ok()).is_some_and(|c| {
            let mut parents = c.parent_ids();
            let first = parents.next();
            let second = parents.next();
            // The merge commit (the render as second parent), or a `--restore` alone's commit
            // (one parent; its journal's render is HEAD itself).
            let shape = match second {
                Some(r) => r == self.render && parents.next().is_none(),
                None => self.render == self.head && c.summary().is_some_and(|m| m.starts_with("stackwise: restore ")),
            };
            shape && first.is_some_and(|p| p == self.head || self.is_move_commit(repo, p))
        });
        if own_merge && head_branch(repo) == self.branch {
            return None;
        }
        self.moved_on(repo)
    }

    /// Whether `id` is the update's move-only commit: its tree on the old HEAD alone.
    fn is_move_commit(&self, repo: &Repository, id: Oid) -> bool {
        let Some(tree) = self.moves else { return false };
        repo.find_commit(id)
            .is_ok_and(|c| c.tree_id() == tree && c.parent_ids().eq([self.head]))
    }

    /// The update is over one way or the other (committed, or abandoned): nothing to undo.
    pub fn settled(&self, repo: &Repository) -> bool {
        self.finished(repo) || self.abandoned(repo)
    }

    /// Puts the project back as it was before the update: branch, index and work tree at the
    /// old HEAD, the update's new files and directories gone, `ORIG_HEAD` and the merge state
    /// as before, the journal removed.
    ///
    /// Every step runs even when an earlier one failed, and the journal stays unless all of them
    /// succeeded, so `update --abort` can finish the job once the cause is fixed. The new files go
    /// first (on a full disk, they are what frees the space the index needs), then the merge
    /// state (a `git commit` must never conclude a merge this left half undone).
    pub fn roll_back(&self, repo: &Repository) -> Result<()> {
        let mut first = None;
        let mut step = |result: Result<()>| {
            if let Err(e) = result {
                first.get_or_insert(e);
            }
        };
        step(self.remove_new_files(repo));
        step(repo.cleanup_state().map_err(Error::from));
        step(match &self.touched {
            Some(paths) => reset_paths(repo, self.head, paths),
            None => reset_hard(repo, self.head),
        });
        step(self.remove_new_files(repo));
        let workdir = repo.workdir().unwrap_or(repo.path()).to_path_buf();
        // Deepest first, and only when empty: a user's file put there since stays.
        for d in self.new_dirs.iter().rev() {
            let _ = std::fs::remove_dir(workdir.join(d));
        }
        // Outermost first: the directories that were there, empty ones included, are again.
        for d in &self.old_dirs {
            let p = workdir.join(d);
            if std::fs::symlink_metadata(&p).is_err() {
                step(std::fs::create_dir(&p).map_err(io(&p)));
            }
        }
        let orig = repo.path().join("ORIG_HEAD");
        step(match &self.orig_head {
            Some(text) => write_atomic(&orig, text),
            None => {
                drop(std::fs::remove_file(&orig));
                Ok(())
            }
        });
        for name in ["ORIG_HEAD", "MERGE_HEAD", "MERGE_MODE", "MERGE_MSG"] {
            let _ = std::fs::remove_file(tmp_of(&repo.path().join(name)));
        }
        step(crate::project::git::clear_pending(repo).map(drop));
        match first {
            Some(e) => Err(e),
            None => Journal::remove(repo),
        }
    }

    /// The files the update created that the old HEAD does not track (a user's file of the same
    /// name could not be there: the update refuses to write over untracked files).
    fn remove_new_files(&self, repo: &Repository) -> Result<()> {
        let workdir = repo.workdir().unwrap_or(repo.path());
        let tracked = repo.find_commit(self.head)?.tree()?;
        for f in &self.new_files {
            let p = workdir.join(f);
            let is_file = std::fs::symlink_metadata(&p).is_ok_and(|m| !m.is_dir());
            if is_file && tracked.get_path(Path::new(f)).is_err() {
                std::fs::remove_file(&p).map_err(io(&p))?;
            }
        }
        Ok(())
    }

    pub fn remove(repo: &Repository) -> Result<()> {
        let p = path(repo);
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&p, e)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A path with a newline, a carriage return or a backslash comes back as it was written;
    /// before `format 2` such a name split its line and the journal read as damaged, so
    /// `update --abort` could not put the project back.
    #[test]
    fn paths_with_newlines_and_backslashes_survive_the_journal() {
        let dir = tempfile::TempDir::new().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let odd = ["svc\nnew/Makefile", "a\\nb", "c\rd\\", "plain.txt"];
        let files: BTreeSet<String> = odd.iter().map(|s| s.to_string()).collect();
        let j = Journal::new(
            &repo,
            Oid::from_str("1111111111111111111111111111111111111111").unwrap(),
            Oid::zero(),
            files.clone(),
        )
        .with_touched(files.clone());
        j.write(&repo).unwrap();
        let back = Journal::read(&repo).unwrap().unwrap();
        assert_eq!(back.new_files, files);
        assert_eq!(back.touched, Some(files));
        assert_eq!(back.new_dirs, j.new_dirs);
        assert!(back.new_dirs.contains("svc\nnew"));
    }

    #[test]
    fn a_journal_without_format_2_is_read_as_written_and_a_bad_escape_is_damage() {
        let dir = tempfile::TempDir::new().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let head = "1111111111111111111111111111111111111111";
        let render = "2222222222222222222222222222222222222222";
        std::fs::write(path(&repo), format!("head {head}\nrender {render}\nfile a\\nb\n")).unwrap();
        let old = Journal::read(&repo).unwrap().unwrap();
        assert!(old.new_files.contains("a\\nb"));
        std::fs::write(
            path(&repo),
            format!("format 2\nhead {head}\nrender {render}\nfile a\\qb\n"),
        )
        .unwrap();
        assert!(Journal::read(&repo).is_err());
    }
}
