//! Writing a project all-or-nothing: every file goes to a staging directory beside the target,
//! then moves into place with a rename. A failure or an interrupt removes the staging directory.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
pub use crate::interrupt::INTERRUPTED;
use crate::interrupt::check as check_interrupt;
use crate::template::render::RenderedFile;
use leftovers::{LockedDir, REPLACED_DIR, sweep_stale};
pub use live::remove_on_exit;

mod leftovers;
mod live;

/// What the target directory looks like before writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetState {
    Missing,
    Empty,
    NonEmpty,
}

pub fn target_state(target: &Path) -> Result<TargetState> {
    match std::fs::symlink_metadata(target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TargetState::Missing),
        Err(e) => Err(Error::io(target, e)),
        Ok(m) if !m.is_dir() => Err(Error::TargetNotDir {
            path: target.to_path_buf(),
        }),
        Ok(_) => {
            let mut entries = std::fs::read_dir(target).map_err(|e| Error::io(target, e))?;
            Ok(if entries.next().is_some() {
                TargetState::NonEmpty
            } else {
                TargetState::Empty
            })
        }
    }
}

/// What [`Staging::write_and_hash`] prepares for the render commit while it writes the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prepare {
    /// No repository.
    Nothing,
    /// The blobs only (the repository is made elsewhere, after the project moved).
    Blobs,
    /// The blobs and the repository, in the staging directory.
    BlobsAndRepository,
}

/// A staging directory holding the project until it is moved into place.
pub struct Staging {
    dir: LockedDir,
    /// The project inside the staging directory.
    pub root: PathBuf,
    /// Ancestors of the target that we created (removed again on failure).
    created_parents: Option<PathBuf>,
    /// Where the project goes (the paths errors name).
    target: PathBuf,
    /// Staging directories of killed runs beside this one that hold files a `--force` run had
    /// replaced (kept: the user's files are in them).
    pub kept_stale: Vec<PathBuf>,
}

impl Staging {
    /// Creates the staging directory next to `target` (same file system, so the move is a rename),
    /// and removes the ones killed runs left there.
    pub fn new(target: &Path) -> Result<Self> {
        let parent = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let created_parents = if parent.exists() {
            None
        } else {
            let mut first = parent.clone();
            while let Some(p) = first.parent() {
                if p.as_os_str().is_empty() || p.exists() {
                    break;
                }
                first = p.to_path_buf();
            }
            std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
            Some(first)
        };
        let dir = LockedDir::create(&parent)?;
        let root = dir.path.join("project");
        std::fs::create_dir(&root).map_err(|e| Error::io(&root, e))?;
        let kept_stale = if created_parents.is_none() {
            sweep_stale(&parent, &dir.path)
        } else {
            Vec::new()
        };
        Ok(Staging {
            dir,
            root,
            created_parents,
            target: target.to_path_buf(),
            kept_stale,
        })
    }

    /// Writes the rendered files into the staging directory: with more than one core and enough
    /// files, half of them (every other one) on a second thread; creating files is mostly the
    /// kernel's work, and two threads do it in less time than one on this kind of tree. The order
    /// files appear in does not matter: the project appears in one rename, or (`--force`) file by
    /// file once they are all written.
    pub fn write(&self, files: &[RenderedFile]) -> Result<()> {
        if files.len() < 32 || crate::template::render::parallelism() < 2 {
            return self.write_part(files.iter());
        }
        std::thread::scope(|scope| {
            let other =
                std::thread::Builder::new().spawn_scoped(scope, || self.write_part(files.iter().skip(1).step_by(2)));
            match other {
                Ok(other) => {
                    let mine = self.write_part(files.iter().step_by(2));
                    let other = other.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                    mine.and(other)
                }
                // No second thread to be had (a limit on threads): this one writes them all.
                Err(_) => self.write_part(files.iter()),
            }
        })
    }

    fn write_part<'f>(&self, files: impl Iterator<Item = &'f RenderedFile>) -> Result<()> {
        // Each directory made once: asking for an existing one again costs a failed mkdir and a
        // stat, two system calls per file of a deep tree.
        let mut made = std::collections::HashSet::new();
        for f in files {
            check_interrupt()?;
            let dest = self.root.join(&f.path);
            if let Some(p) = dest.parent()
                && !made.contains(p)
            {
                std::fs::create_dir_all(p).map_err(|e| self.write_error(p, e))?;
                made.insert(p.to_path_buf());
            }
            std::fs::write(&dest, &f.bytes).map_err(|e| self.write_error(&dest, e))?;
            #[cfg(unix)]
            if f.executable {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| self.write_error(&dest, e))?;
            }
        }
        Ok(())
    }

    /// A failed write, named by the path it was going to have in the target: the staging
    /// directory is removed before the user reads it.
    fn write_error(&self, staged: &Path, source: std::io::Error) -> Error {
        Error::Write {
            path: self.target.join(staged.strip_prefix(&self.root).unwrap_or(staged)),
            source,
        }
    }

    /// [`Staging::write`], and meanwhile on another thread what `prepare` asks for the render
    /// commit (memory only, or the repository inside the staging directory too). Either failing
    /// fails both.
    pub fn write_and_hash(&self, files: &[RenderedFile], prepare: Prepare) -> Result<Option<super::git::RenderBlobs>> {
        let work = || match prepare {
            Prepare::Nothing => Ok(None),
            Prepare::Blobs => super::git::render_blobs(files).map(Some),
            Prepare::BlobsAndRepository => super::git::render_blobs_and_init(files, &self.root).map(Some),
        };
        let (written, blobs) = std::thread::scope(|scope| {
            let preparing =
                (prepare != Prepare::Nothing).then(|| std::thread::Builder::new().spawn_scoped(scope, work));
            let written = self.write(files);
            let blobs = match preparing {
                None => Ok(None),
                Some(Ok(h)) => h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                // No second thread to be had: done here, after the write.
                Some(Err(_)) => work(),
            };
            (written, blobs)
        });
        written?;
        blobs
    }

    /// Moves the project into `target`. With a missing or empty target this is one rename.
    /// With `force` and a non-empty target, each file is moved over its counterpart; the paths that
    /// existed before are returned. Files of the target that the template does not write are untouched.
    pub fn commit(self, target: &Path, files: &[RenderedFile], force: bool) -> Result<Vec<String>> {
        match self.move_into_place(target, files, force) {
            Ok(overwritten) => Ok(overwritten),
            Err(e) => {
                self.abandon();
                Err(e)
            }
        }
    }

    fn move_into_place(&self, target: &Path, files: &[RenderedFile], force: bool) -> Result<Vec<String>> {
        check_interrupt()?;
        let state = target_state(target)?;
        match state {
            TargetState::Missing => {
                // Held while the project moves: a second Ctrl-C removes the staging directory
                // before or after, never half way (`live.rs`).
                let _moving = live::lock();
                std::fs::rename(&self.root, target).map_err(|e| Error::io(target, e))?;
                Ok(Vec::new())
            }
            TargetState::Empty => {
                let _moving = live::lock();
                std::fs::remove_dir(target).map_err(|e| Error::io(target, e))?;
                if let Err(e) = std::fs::rename(&self.root, target) {
                    let _ = std::fs::create_dir(target); // the user's empty directory stays
                    return Err(Error::io(target, e));
                }
                Ok(Vec::new())
            }
            TargetState::NonEmpty if !force => Err(Error::TargetNotEmpty {
                path: target.to_path_buf(),
            }),
            TargetState::NonEmpty => {
                // Check every conflict before moving anything.
                let overwritten = check_overwrite(target, files)?;
                // From the first move the user's replaced files are in the staging directory:
                // a second Ctrl-C leaves it (the next run names it).
                live::holds_user_files(&self.dir.path);
                self.move_each(target, files)?;
                Ok(overwritten)
            }
        }
    }

    /// Moves every file over its counterpart in `target`. Each replaced file is first moved into
    /// the staging directory, so a failure half way (permissions, another device, Ctrl-C) puts
    /// every user file back.
    fn move_each(&self, target: &Path, files: &[RenderedFile]) -> Result<()> {
        let backup_root = self.dir.path.join(REPLACED_DIR);
        let mut moved: Vec<(PathBuf, Option<PathBuf>)> = Vec::new();
        // The directories made in the user's tree, in the order they were made.
        let mut made: Vec<PathBuf> = Vec::new();
        for f in files {
            let dest = target.join(&f.path);
            // Under its own path (a plan holds each path once, `check_overwrite` made sure): a
            // run killed half way leaves the user's files where they can be told apart.
            match self.move_one(&f.path, &dest, &backup_root.join(&f.path), &mut made) {
                Ok(backup) => moved.push((dest, backup)),
                Err(e) => {
                    put_back(moved);
                    // Newest first, and only while empty: the tree is as the user left it.
                    for d in made.iter().rev() {
                        let _ = std::fs::remove_dir(d);
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Moves the staged file `path` to `dest`, the file there first to `backup` (returned), making
    /// the directories `dest` needs (added to `made`); on failure the file at `dest` is as it was.
    fn move_one(&self, path: &str, dest: &Path, backup: &Path, made: &mut Vec<PathBuf>) -> Result<Option<PathBuf>> {
        check_interrupt()?;
        if let Some(p) = dest.parent() {
            let missing: Vec<PathBuf> = p
                .ancestors()
                .take_while(|a| !a.exists())
                .map(Path::to_path_buf)
                .collect();
            for d in missing.into_iter().rev() {
                std::fs::create_dir(&d).map_err(|e| Error::io(&d, e))?;
                made.push(d);
            }
        }
        let backup = if dest.exists() {
            let backup_dir = backup.parent().unwrap_or(backup);
            std::fs::create_dir_all(backup_dir).map_err(|e| Error::io(backup_dir, e))?;
            std::fs::rename(dest, backup).map_err(|e| Error::io(dest, e))?;
            Some(backup.to_path_buf())
        } else {
            None
        };
        if let Err(e) = std::fs::rename(self.root.join(path), dest) {
            if let Some(b) = &backup {
                let _ = std::fs::rename(b, dest);
            }
            return Err(Error::io(dest, e));
        }
        Ok(backup)
    }

    /// Removes the staging directory and any parent directory created for it.
    pub fn abandon(self) {
        let Staging {
            dir, created_parents, ..
        } = self;
        drop(dir);
        if let Some(p) = created_parents {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

/// Checks that every file can replace its counterpart in `target`: no path twice, no file where
/// the target has a directory, a symlink, or a file in place of one of its directories. Returns
/// the paths that exist (and will be overwritten).
fn check_overwrite(target: &Path, files: &[RenderedFile]) -> Result<Vec<String>> {
    let mut overwritten = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for f in files {
        // Plans never hold one path twice; if one did, the second move would replace the first
        // file's backup.
        if !seen.insert(f.path.as_str()) {
            return Err(Error::UnsafePath {
                path: f.path.clone(),
                reason: "written twice by one render".into(),
            });
        }
        let dest = target.join(&f.path);
        refuse_non_directory_parent(target, &dest, &f.path)?;
        match std::fs::symlink_metadata(&dest) {
            Ok(m) if m.is_dir() => {
                return Err(Error::UnsafePath {
                    path: f.path.clone(),
                    reason: "a directory of that name exists in the target; move it away first".into(),
                });
            }
            Ok(m) if m.file_type().is_symlink() => {
                return Err(Error::UnsafePath {
                    path: f.path.clone(),
                    reason: "the target holds a symlink there; stackwise does not write through links".into(),
                });
            }
            Ok(_) => overwritten.push(f.path.clone()),
            Err(_) => {}
        }
    }
    Ok(overwritten)
}

/// Refuses `dest` when one of its directories under `target` exists and is not a directory.
fn refuse_non_directory_parent(target: &Path, dest: &Path, path: &str) -> Result<()> {
    let mut cur = dest.parent();
    while let Some(dir) = cur {
        if dir == target {
            break;
        }
        if let Ok(m) = std::fs::symlink_metadata(dir)
            && !m.is_dir()
        {
            return Err(Error::UnsafePath {
                path: path.to_string(),
                reason: format!(
                    "{} exists in the target and is not a directory; move it away first",
                    dir.display()
                ),
            });
        }
        cur = dir.parent();
    }
    Ok(())
}

/// Undoes the moves made so far, newest first: each moved file removed, its backup put back.
fn put_back(moved: Vec<(PathBuf, Option<PathBuf>)>) {
    for (dest, backup) in moved.into_iter().rev() {
        let _ = std::fs::remove_file(&dest);
        if let Some(b) = backup {
            let _ = std::fs::rename(&b, &dest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, text: &str) -> RenderedFile {
        RenderedFile {
            path: path.into(),
            bytes: text.as_bytes().to_vec(),
            executable: path.ends_with(".sh"),
            update_once: false,
        }
    }

    /// Enough files for two writing threads: every file lands with its bytes and mode, in
    /// directories shared by both threads.
    #[test]
    fn many_files_are_written_whole() {
        let out = tempfile::tempdir().unwrap();
        let files: Vec<RenderedFile> = (0..200)
            .map(|i| match i % 3 {
                0 => file(&format!("d{}/f{i}.txt", i % 7), &format!("{i}\n")),
                1 => file(&format!("d{}/e/f{i}.sh", i % 5), "#!/bin/sh\n"),
                _ => file(&format!("f{i}.txt"), &"x".repeat(i)),
            })
            .collect();
        let staging = Staging::new(&out.path().join("p")).unwrap();
        staging.write(&files).unwrap();
        for f in &files {
            let p = staging.root.join(&f.path);
            assert_eq!(std::fs::read(&p).unwrap(), f.bytes, "{}", f.path);
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let exec = std::fs::metadata(&p).unwrap().permissions().mode() & 0o111 != 0;
                assert_eq!(exec, f.executable, "{}", f.path);
            }
        }
    }

    /// A file that cannot be written fails the write (whichever thread writes it), and the
    /// abandoned staging directory leaves nothing behind.
    #[test]
    fn a_failed_write_fails_and_is_abandoned() {
        let out = tempfile::tempdir().unwrap();
        for bad in [0, 1, 99] {
            let mut files: Vec<RenderedFile> = (0..100).map(|i| file(&format!("f{i}.txt"), "x")).collect();
            // A file where another one needs a directory.
            files[bad] = file("blocker", "x");
            files.push(file("blocker/inside.txt", "y"));
            let staging = Staging::new(&out.path().join("p")).unwrap();
            let Err(Error::Write { path, .. }) = staging.write(&files) else {
                panic!("writing under a file must fail");
            };
            // Named where it was going, not in the staging directory that is about to go.
            assert!(
                path.starts_with(out.path().join("p").join("blocker")),
                "{}",
                path.display()
            );
            staging.abandon();
            assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
        }
    }

    /// A `--force` move that fails half way puts the user's files back and removes the
    /// directories it made, so the target is exactly as it was.
    #[test]
    fn a_failed_forced_move_leaves_the_target_as_it_was() {
        let out = tempfile::tempdir().unwrap();
        let target = out.path().join("p");
        std::fs::create_dir_all(target.join("keep")).unwrap();
        std::fs::write(target.join("keep/mine.txt"), "mine").unwrap();
        std::fs::write(target.join("README.md"), "user's").unwrap();
        let files = vec![
            file("README.md", "template's"),
            file("deep/er/new.txt", "new"),
            file("keep/sub/new.txt", "new"),
            file("z/last.txt", "last"),
        ];
        let staging = Staging::new(&target).unwrap();
        staging.write(&files).unwrap();
        // The last file cannot be moved: its staged copy is gone.
        std::fs::remove_file(staging.root.join("z/last.txt")).unwrap();
        assert!(staging.commit(&target, &files, true).is_err());
        assert_eq!(tree(&target), vec!["README.md", "keep", "keep/mine.txt"]);
        assert_eq!(std::fs::read_to_string(target.join("README.md")).unwrap(), "user's");
    }

    /// Every path under `root`, sorted (directories too).
    fn tree(root: &Path) -> Vec<String> {
        let mut all: Vec<String> = walkdir::WalkDir::new(root)
            .min_depth(1)
            .into_iter()
            .map(|e| {
                e.unwrap()
                    .path()
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/")
            })
            .collect();
        all.sort();
        all
    }
}
