//! The user's git policy, which stackwise's commits go around: libgit2 runs no hooks, signs
//! nothing and falls back to its own identity. Nothing here is silent: an update that would
//! commit past a policy says so in its notes, and a held index lock is refused before anything
//! is written.

use std::path::PathBuf;

use git2::Repository;

use crate::error::{Error, Result};

/// Hooks git runs around a commit or merge, which a libgit2 commit does not.
const COMMIT_HOOKS: [&str; 5] = [
    "pre-commit",
    "prepare-commit-msg",
    "commit-msg",
    "post-commit",
    "post-merge",
];

/// Refuses a repository whose index is locked (`index.lock`: another git process, an editor's
/// background `git status`, or one that was killed): the update could write its merge state
/// and then fail at the checkout.
///
/// The same for the refs the update moves (`HEAD.lock`, the branch's `.lock`): a held one made
/// the commit fail after the merge was written, and the roll-back fail with it, leaving a merge
/// in progress that `git commit` would have concluded without the template's changes.
pub fn check_index_lock(repo: &Repository) -> Result<()> {
    let mut locks = vec![repo.path().join("index.lock"), repo.path().join("HEAD.lock")];
    if let Ok(head) = repo.find_reference("HEAD")
        && let Some(branch) = head.symbolic_target()
    {
        locks.push(repo.commondir().join(format!("{branch}.lock")));
    }
    if let Some(lock) = locks.iter().find(|l| l.exists()) {
        let what = if lock.ends_with("index.lock") {
            "the index is locked"
        } else {
            "a ref the update moves is locked"
        };
        return Err(Error::refused_with(
            format!("{what}: {} exists", lock.display()),
            "another git process is using the repository; wait for it to finish, or remove the file if none is running",
        ));
    }
    Ok(())
}

/// Notes for an update that commits: the policies of the user's git configuration that its
/// commits do not follow.
pub fn commit_notes(repo: &Repository) -> Vec<String> {
    let mut notes = Vec::new();
    let config = repo.config().ok();
    let flag = |key: &str| config.as_ref().and_then(|c| c.get_bool(key).ok()).unwrap_or(false);
    if flag("commit.gpgsign") {
        notes.push(
            "commit.gpgsign is set, but stackwise does not sign its commits: sign the update with `git commit --amend -S --no-edit`"
                .to_string(),
        );
    }
    let hooks = hooks_dir(repo, config.as_ref());
    let present: Vec<&str> = COMMIT_HOOKS
        .into_iter()
        .filter(|h| is_executable(&hooks.join(h)))
        .collect();
    if !present.is_empty() {
        notes.push(format!(
            "your git hooks ({}) do not run on stackwise's commits; `git commit --amend --no-edit` runs the commit hooks on the update",
            present.join(", ")
        ));
    }
    if crate::project::git::identity(repo).2 {
        notes.push(crate::project::git::DEFAULT_AUTHOR_NOTE.to_string());
    }
    notes
}

/// Where git looks for hooks: `core.hooksPath` (relative to the work tree), else the common git
/// directory's `hooks/`.
fn hooks_dir(repo: &Repository, config: Option<&git2::Config>) -> PathBuf {
    match config.and_then(|c| c.get_path("core.hooksPath").ok()) {
        Some(p) if p.is_absolute() => p,
        Some(p) => repo.workdir().unwrap_or(repo.path()).join(p),
        None => repo.commondir().join("hooks"),
    }
}

#[cfg(unix)]
fn is_executable(p: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(p: &std::path::Path) -> bool {
    p.is_file()
}

/// Refuses an update that would write a file a git filter driver owns (`filter=<driver>` in the
/// project's attributes with `filter.<driver>.clean`, `.smudge` or `.process` configured: git-lfs,
/// git-crypt, …). Its commits go through libgit2, which runs no external filter: the blob would
/// be committed raw (a binary in git instead of an LFS pointer, a secret in clear) and the work
/// tree would differ from HEAD right after an exit 0.
///
/// `after`: the attributes once the update is written, when it writes a `.gitattributes` (a
/// template version that adds `*.bin filter=lfs`); the drivers are the project's either way.
pub fn check_filters(repo: &Repository, paths: &[String], after: Option<&Repository>) -> Result<()> {
    let found = filtered(repo, after.unwrap_or(repo), paths)?;
    if found.is_empty() {
        return Ok(());
    }
    Err(Error::refused_with(
        format!(
            "the update would write files a git filter owns: {}; stackwise writes and commits them without the filter, so the commit would hold them unfiltered",
            found
        ),
        "update without the filter for them (e.g. `git lfs untrack` the pattern, or give those paths `-filter` in .git/info/attributes), or add them with `[update] skip`",
    ))
}

/// The paths of `paths` whose `filter` attribute (as `attributes` answers) names a driver
/// `config_of`'s configuration defines, as "path (filter=driver)", the first five and how many
/// more; empty when there is none.
pub fn filtered(config_of: &Repository, attributes: &Repository, paths: &[String]) -> Result<String> {
    let config = config_of.config()?.snapshot()?;
    let driven = |driver: &str| {
        ["clean", "smudge", "process"]
            .iter()
            .any(|k| config.get_string(&format!("filter.{driver}.{k}")).is_ok())
    };
    let mut found = Vec::new();
    for p in paths {
        let attr = attributes.get_attr(std::path::Path::new(p), "filter", git2::AttrCheckFlags::FILE_THEN_INDEX)?;
        if let git2::AttrValue::String(driver) = git2::AttrValue::from_string(attr)
            && driven(driver)
        {
            found.push(format!("{p} (filter={driver})"));
        }
    }
    let more = match found.len().saturating_sub(5) {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    found.truncate(5);
    Ok(if found.is_empty() {
        String::new()
    } else {
        found.join(", ") + &more
    })
}
