//! Staging directories and the runs that did not clean theirs up: each live run holds a lock on
//! its own, and the next run beside a killed one removes what it left.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// What every staging directory's name starts with.
pub(super) const STAGING_PREFIX: &str = ".stackwise-staging-";
/// How the name of a staging directory in use ends. Its process holds a lock on the directory
/// while it lives, and the kernel lets go of a lock when its process ends, however it ends: one
/// whose lock can be taken belongs to a run that was killed before it could remove it (SIGKILL,
/// the OOM killer, a power cut).
const IN_USE: &str = ".run";
/// How the name of a staging directory ends until its lock is held (an instant).
const STARTING: &str = ".new";
/// The random letters and digits between the prefix and the suffix.
const RANDOM_LEN: usize = 6;
/// Where a `--force` run keeps the files it replaces until the project is in place.
pub(super) const REPLACED_DIR: &str = "replaced";

/// A directory this process holds a lock on (where the file system has locks), removed (still
/// locked) when dropped.
pub(super) struct LockedDir {
    pub(super) path: PathBuf,
    _lock: Option<std::fs::File>,
}

impl LockedDir {
    /// Makes a staging directory in `parent`: created under a name that marks it as starting,
    /// locked, then renamed, so no other run ever sees a staging directory in use unlocked.
    pub(super) fn create(parent: &Path) -> Result<Self> {
        Self::create_with(parent, std::fs::File::lock)
    }

    fn create_with(parent: &Path, lock: impl Fn(&std::fs::File) -> std::io::Result<()>) -> Result<Self> {
        // Held from before the directory exists until it has its name: a second Ctrl-C removes
        // it under whatever name it has (`live.rs`).
        let mut live = super::live::lock();
        let mut attempts = 0;
        loop {
            let starting = tempfile::Builder::new()
                .prefix(STAGING_PREFIX)
                .rand_bytes(RANDOM_LEN)
                .suffix(STARTING)
                .tempdir_in(parent)
                .map_err(|e| Error::io(parent, e))?
                .keep();
            super::live::add(&mut live, &starting, None);
            let locked = (|| {
                let (path, held) = match std::fs::File::open(&starting).and_then(|f| lock(&f).map(|()| f)) {
                    Ok(file) => (starting.with_extension(&IN_USE[1..]), Some(file)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(e),
                    // A file system without locks (some network and FUSE ones), or a system
                    // that does not open directories as files (Windows): named as an older
                    // release names it, which no run removes; only a kill leaves it.
                    Err(_) => (starting.with_extension(""), None),
                };
                std::fs::rename(&starting, &path)?;
                Ok::<_, std::io::Error>(LockedDir { path, _lock: held })
            })();
            match locked {
                Ok(dir) => {
                    super::live::add(&mut live, &dir.path, Some(&starting));
                    return Ok(dir);
                }
                // Another run's sweep took it for a leftover in the instant it was unlocked.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempts < 5 => {
                    live.retain(|l| !l.is(&starting));
                    attempts += 1;
                }
                Err(e) => {
                    let _ = std::fs::remove_dir(&starting);
                    live.retain(|l| !l.is(&starting));
                    return Err(Error::io(&starting, e));
                }
            }
        }
    }
}

impl Drop for LockedDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
        super::live::forget(&self.path);
    }
}

/// Removes the staging directories in `parent` (other than `own`) left by runs that were killed,
/// and returns the ones it keeps because they hold files a `--force` run had replaced. Only
/// directories of this user, not links, named as this release names them (an older release's
/// carry no lock and may still be in use), holding nothing a staging directory does not hold,
/// and whose lock no process holds.
pub(super) fn sweep_stale(parent: &Path, own: &Path) -> Vec<PathBuf> {
    #[cfg(unix)]
    use std::os::unix::fs::MetadataExt;
    let (Ok(entries), Ok(mine)) = (std::fs::read_dir(parent), std::fs::symlink_metadata(own)) else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(STAGING_PREFIX)) else {
            continue;
        };
        let (random, starting) = match (rest.strip_suffix(IN_USE), rest.strip_suffix(STARTING)) {
            (Some(random), _) => (random, false),
            (None, Some(random)) => (random, true),
            _ => continue,
        };
        if random.len() != RANDOM_LEN || !random.bytes().all(|b| b.is_ascii_alphanumeric()) || path == own {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        #[cfg(unix)]
        let same_owner = meta.uid() == mine.uid();
        #[cfg(not(unix))]
        let same_owner = {
            let _ = &mine;
            true
        };
        if !meta.is_dir() || !same_owner {
            continue;
        }
        // Held while it is removed: a second run sweeping now leaves it alone.
        let Ok(lock) = std::fs::File::open(&path) else { continue };
        if lock.try_lock().is_err() {
            continue; // in use
        }
        let only_staging = std::fs::read_dir(&path).is_ok_and(|inside| {
            inside
                .flatten()
                .all(|e| e.file_name() == "project" || e.file_name() == REPLACED_DIR)
        });
        if starting {
            // Empty unless it is not ours (`remove_dir` removes nothing else).
            let _ = std::fs::remove_dir(&path);
        } else if !only_staging {
            continue;
        } else if path.join(REPLACED_DIR).exists() {
            kept.push(path);
        } else {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::super::Staging;
    use super::*;

    /// On a file system without locks the staging directory still works, named so that no run
    /// takes it for a leftover.
    #[test]
    fn a_file_system_without_locks_still_gets_its_project() {
        let out = tempfile::tempdir().unwrap();
        let unsupported = |_: &std::fs::File| Err(std::io::Error::from(std::io::ErrorKind::Unsupported));
        let dir = LockedDir::create_with(out.path(), unsupported).unwrap();
        let name = dir.path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(STAGING_PREFIX) && !name.ends_with(IN_USE) && !name.ends_with(STARTING));
        assert!(name.len() > STAGING_PREFIX.len(), "{name}");
        let other = LockedDir::create(out.path()).unwrap();
        assert!(sweep_stale(out.path(), &other.path).is_empty());
        assert!(dir.path.is_dir());
        drop((dir, other));
        assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
    }

    /// Leftovers of killed runs beside the target: the ones whose lock no process holds are
    /// removed, unless they hold files a `--force` run had replaced (kept and named). A live
    /// run's directory (its lock held), an older release's (no lock, maybe running), a link and
    /// anything not named as a staging directory are left alone.
    #[cfg(unix)]
    #[test]
    fn a_new_staging_removes_what_killed_runs_left() {
        let out = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::write(elsewhere.path().join("precious"), "x").unwrap();
        let stale = |name: &str| {
            let dir = out.path().join(name);
            std::fs::create_dir_all(dir.join("project/src")).unwrap();
            std::fs::write(dir.join("project/src/a.txt"), "a").unwrap();
            dir
        };
        let dead = stale(".stackwise-staging-dEad01.run");
        let forced = stale(".stackwise-staging-f0rced.run");
        std::fs::create_dir_all(forced.join("replaced/src")).unwrap();
        std::fs::write(forced.join("replaced/src/main.py"), "mine").unwrap();
        let live = stale(".stackwise-staging-L1ve00.run");
        let held = std::fs::File::open(&live).unwrap();
        held.lock().unwrap();
        let starting = out.path().join(".stackwise-staging-st4rt0.new");
        std::fs::create_dir(&starting).unwrap();
        let older_release = stale(".stackwise-staging-Xy12Ab");
        let other = stale("not-stackwise-staging.run");
        let users_own = stale(".stackwise-staging-mine.run");
        let odd_name = stale(".stackwise-staging-\u{e9}\u{e9}a.run");
        let with_more = stale(".stackwise-staging-m0re00.run");
        std::fs::write(with_more.join("notes.txt"), "not a staging directory's").unwrap();
        let link = out.path().join(".stackwise-staging-l1nk00.run");
        std::os::unix::fs::symlink(elsewhere.path(), &link).unwrap();

        let staging = Staging::new(&out.path().join("p")).unwrap();
        assert!(!dead.exists() && !starting.exists());
        assert_eq!(staging.kept_stale, vec![forced.clone()]);
        assert_eq!(
            std::fs::read_to_string(forced.join("replaced/src/main.py")).unwrap(),
            "mine"
        );
        for kept in [&live, &older_release, &other, &users_own, &odd_name, &with_more] {
            assert!(kept.join("project/src/a.txt").exists(), "{}", kept.display());
        }
        assert!(elsewhere.path().join("precious").exists());
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());

        // Its own directory is locked while it lives, and removed with it.
        let own = staging.root.parent().unwrap().to_path_buf();
        assert!(own.to_string_lossy().ends_with(IN_USE));
        assert!(std::fs::File::open(&own).unwrap().try_lock().is_err());
        drop(held);
        staging.abandon();
        assert!(!own.exists());
        let next = Staging::new(&out.path().join("q")).unwrap();
        assert!(!live.exists(), "its process gone, the live one is a leftover too");
        assert_eq!(next.kept_stale, vec![forced]);
        next.abandon();
    }
}
