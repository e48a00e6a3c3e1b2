//! `update` on repositories as git lays them out in the wild (SPEC §7.1): a work tree whose git
//! directory lives elsewhere (`--separate-git-dir`), and linked work trees that each have an
//! update of their own in progress.

use super::{Project, clean, project, state, stderr};
use crate::common::{git, stackwise};

/// A project whose README the user edited where v2 edits it too (an update conflicts) and a
/// second line only v2 changes (an update merges cleanly without the user's edit).
fn diverging() -> Project {
    project(
        &[("README.md", "line a\nline b\nline c\n")],
        &[("README.md", "line a\nline b v2\nline c v2\n")],
    )
}

#[test]
fn a_work_tree_with_a_separate_git_directory_updates_like_any_other() {
    let p = diverging();
    let sep = p.tmp.path().join("sep");
    let gitdir = p.tmp.path().join("sep.git");
    git(
        p.tmp.path(),
        &[
            "clone",
            "-q",
            "--separate-git-dir",
            gitdir.to_str().unwrap(),
            p.dir.to_str().unwrap(),
            sep.to_str().unwrap(),
        ],
    );
    assert!(sep.join(".git").is_file());
    // `diff` finds the record at the root of its own work tree, not under a prefix.
    let out = stackwise().arg("diff").arg(&sep).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = update_at(&p, &sep);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(clean(&sep));
    let readme = std::fs::read_to_string(sep.join("README.md")).unwrap();
    assert_eq!(readme, "line a\nline b v2\nline c v2\n");
    assert!(!sep.join("demo").exists());
}

/// `update` of the work tree `dir` to the project's v2.
fn update_at(p: &Project, dir: &std::path::Path) -> std::process::Output {
    stackwise()
        .args(["update", "--yes", "--template"])
        .arg(&p.v2)
        .arg(dir)
        .output()
        .unwrap()
}

/// The main work tree's [`state`], less the branch the linked work tree moves.
fn main_state(p: &Project) -> Vec<String> {
    let strip = |s: String| {
        s.lines()
            .filter(|l| !l.ends_with("refs/heads/other"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    state(&p.dir).into_iter().map(strip).collect()
}

#[test]
fn an_update_in_one_linked_work_tree_leaves_anothers_in_progress_alone() {
    let p = diverging();
    git(&p.dir, &["branch", "other"]);
    p.write("README.md", "line a\nline b\nline c USER\n");
    p.commit("mine");
    let other = p.tmp.path().join("other");
    git(&p.dir, &["worktree", "add", "-q", other.to_str().unwrap(), "other"]);
    let before = main_state(&p);
    p.update().assert().code(3);
    // The other work tree updates cleanly, and must not end the first one's update.
    let out = update_at(&p, &other);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = stackwise().arg("update").arg(&p.dir).arg("--abort").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(main_state(&p), before);
    // And the other way round: a conflict in the linked one, a clean update in the main one.
    let out = update_at(&p, &other);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn a_held_index_lock_is_refused_before_anything_is_written() {
    let p = diverging();
    let before = state(&p.dir);
    // The index, HEAD and the branch the merge commit moves: a held ref lock used to fail the
    // commit after the merge was written, and the roll-back with it, leaving a merge in
    // progress whose `git commit` would drop the template's changes.
    for lock in [".git/index.lock", ".git/HEAD.lock", ".git/refs/heads/main.lock"] {
        std::fs::write(p.dir.join(lock), "").unwrap();
        let out = p.update().output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{lock}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(lock.trim_start_matches(".git/")),
            "{}",
            stderr(&out)
        );
        std::fs::remove_file(p.dir.join(lock)).unwrap();
        assert_eq!(state(&p.dir), before, "{lock}");
    }
    p.update().assert().code(0);
}

/// The notes of a committing update, as `--json` reports them.
fn notes(out: &std::process::Output) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

#[cfg(unix)]
#[test]
fn commits_past_the_users_git_policy_say_so() {
    use std::os::unix::fs::PermissionsExt;
    let p = diverging();
    git(&p.dir, &["config", "commit.gpgsign", "true"]);
    let hook = p.dir.join(".git/hooks/pre-commit");
    std::fs::write(&hook, "#!/bin/sh\nexit 1\n").unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    // No identity anywhere: an empty home, no system configuration.
    let home = tempfile::TempDir::new().unwrap();
    let out = p
        .update()
        .arg("--json")
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env_remove("GIT_AUTHOR_NAME")
        .env_remove("GIT_COMMITTER_NAME")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = notes(&out).join("\n");
    for needle in ["commit.gpgsign", "pre-commit", "stackwise <stackwise@localhost>"] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    // What the notes say is what happened: an unsigned commit by the fallback identity.
    let log = git(&p.dir, &["log", "-1", "--format=%an <%ae> %G?"]);
    assert_eq!(
        String::from_utf8_lossy(&log.stdout).trim(),
        "stackwise <stackwise@localhost> N"
    );
    // A project already up to date commits nothing, and says nothing of it.
    let out = p.update().arg("--json").output().unwrap();
    assert!(notes(&out).iter().all(|n| !n.contains("gpgsign")), "{:?}", notes(&out));
}
