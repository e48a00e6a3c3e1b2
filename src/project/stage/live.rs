//! The staging directories this process has in use, for the binary's last act when a second
//! Ctrl-C ends it without waiting for the command to clean up: [`remove_on_exit`] removes them
//! first. (A kill leaves one; the next run beside it removes it, `leftovers.rs`.)

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::leftovers::STAGING_PREFIX;

/// A staging directory in use.
pub(super) struct Live {
    path: PathBuf,
    /// A `--force` run is moving its files over the user's: `replaced/` holds the ones it
    /// replaced, so the directory stays (the next run names it, as it names a killed run's).
    holds_user_files: bool,
}

/// Held while a staging directory is created or renamed, while its project is renamed into
/// place, and from [`remove_on_exit`] until the process ends: the directory removed is never
/// half of a project on its way into the target.
static LIVE: Mutex<Vec<Live>> = Mutex::new(Vec::new());

pub(super) type Registry = MutexGuard<'static, Vec<Live>>;

/// The registry, held until the guard goes.
pub(super) fn lock() -> Registry {
    LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Live {
    pub(super) fn is(&self, path: &Path) -> bool {
        self.path == path
    }
}

/// `path` is a staging directory in use (or, with `from`, it is the new name of that one).
pub(super) fn add(live: &mut Registry, path: &Path, from: Option<&Path>) {
    live.retain(|l| Some(l.path.as_path()) != from && l.path != path);
    live.push(Live {
        path: path.to_path_buf(),
        holds_user_files: false,
    });
}

/// `path` is gone (removed, or never made).
pub(super) fn forget(path: &Path) {
    lock().retain(|l| l.path != path);
}

/// From here the staging directory at `path` holds files of the user's (`--force`): it stays.
pub(super) fn holds_user_files(path: &Path) {
    for l in lock().iter_mut().filter(|l| l.path == path) {
        l.holds_user_files = true;
    }
}

/// Removes this process's staging directories before it ends without its command cleaning up
/// (a second Ctrl-C): each whole, unless it holds files a `--force` run replaced. The registry
/// stays held until the process ends, so no staging directory is made, and no project moves
/// into place, after this.
pub fn remove_on_exit() {
    let live = lock();
    for l in live.iter().filter(|l| !l.holds_user_files) {
        let named_as_staging = l
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(STAGING_PREFIX));
        if !named_as_staging {
            continue;
        }
        // The command's thread may be removing it too, or finishing the file it was writing
        // when the first Ctrl-C came: again a moment later, until it stays gone.
        for _ in 0..5 {
            let _ = std::fs::remove_dir_all(&l.path);
            std::thread::sleep(Duration::from_millis(10));
            if std::fs::symlink_metadata(&l.path).is_err() {
                break;
            }
        }
    }
    std::mem::forget(live);
}
