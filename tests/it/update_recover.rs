//! Recovering from an update, and the report matching the files (SPEC §7.1): defects an
//! adversarial tester found — a journal left behind after the user moved on, directories that
//! existed before an aborted update, a deleted file the template renamed, a file that became a
//! symlink in `stackwise diff`, and a `merge=binary` attribute.

use serde_json::Value;
use std::path::Path;

use crate::common::{git, stackwise};
use crate::update_trust::{Project, abort, clean, json, project, state, statuses, stderr};

fn head(dir: &Path) -> String {
    String::from_utf8_lossy(&git(dir, &["rev-parse", "HEAD"]).stdout)
        .trim()
        .to_string()
}

/// A project whose update stopped with conflicts (exit 3), its journal left in `.git`.
fn conflicted() -> Project {
    super::update_trust::conflicted().0
}

/// `--abort` and a new `update` both refuse a journal whose HEAD the user has moved on from,
/// naming what moved and how to discard the journal, and change nothing.
fn assert_stale_refused(p: &Project, moved: &str) {
    let before = state(&p.dir);
    let out = abort(p);
    assert_eq!(out.status.code(), Some(2), "--abort: {}", stderr(&out));
    for needle in [moved, "stackwise-update"] {
        assert!(
            stderr(&out).contains(needle),
            "--abort: {needle:?} not in {}",
            stderr(&out)
        );
    }
    assert_eq!(state(&p.dir), before, "--abort of a stale journal changed the project");
    let out = p.update().output().unwrap();
    assert_eq!(out.status.code(), Some(2), "update: {}", stderr(&out));
    assert!(stderr(&out).contains("stackwise-update"), "update: {}", stderr(&out));
    assert!(
        !stderr(&out).contains("run `stackwise update --abort`"),
        "{}",
        stderr(&out)
    );
    assert_eq!(state(&p.dir), before, "update with a stale journal changed the project");
    // Following the advice: the journal goes, and the project updates as if it never existed.
    std::fs::remove_file(p.dir.join(".git/stackwise-update")).unwrap();
    p.update().assert().code(3);
}

#[test]
fn abort_refuses_a_journal_when_the_user_committed_since() {
    let p = conflicted();
    git(&p.dir, &["merge", "--abort"]);
    p.write("later.txt", "my later work\n");
    p.commit("later work");
    let later = head(&p.dir);
    assert_stale_refused(&p, &later[..7]);
    assert_eq!(head(&p.dir), later);
    assert!(p.dir.join("later.txt").exists());
}

#[test]
fn abort_refuses_a_journal_when_the_user_switched_branches_since() {
    let p = conflicted();
    git(&p.dir, &["merge", "--abort"]);
    git(&p.dir, &["checkout", "-q", "-b", "topic"]);
    p.write("topic.txt", "on a branch\n");
    p.commit("topic work");
    assert_stale_refused(&p, "topic");
}

#[test]
fn abort_still_undoes_an_update_whose_head_did_not_move() {
    let (p, before) = super::update_trust::conflicted();
    // The user started resolving, then changed their mind.
    p.write("settings.txt", "timeout = 4\n");
    let out = abort(&p);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(state(&p.dir), before);
}

#[test]
fn abort_undoes_the_updates_own_move_commit() {
    // A growing layout: the update commits the moves first, then leaves a conflict.
    let tmp = tempfile::TempDir::new().unwrap();
    stackwise()
        .args(["new", "shop", "--yes", "--no-install", "--preset", "ml-api", "-o"])
        .arg(tmp.path())
        .assert()
        .success();
    let dir = tmp.path().join("shop");
    crate::common::write(&dir, "README.md", "my own readme\n");
    git(&dir, &["commit", "-qam", "mine"]);
    let before = state(&dir);
    let mut update = stackwise();
    update.arg("update").arg(&dir).args(["--preset", "ai-product", "--yes"]);
    update.assert().code(3);
    assert_ne!(state(&dir), before);
    let out = stackwise().arg("update").arg(&dir).arg("--abort").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(state(&dir), before);
}

#[test]
fn abort_keeps_empty_directories_that_existed_before_the_update() {
    let p = project(
        &[("settings.txt", "timeout = 1\n")],
        &[
            ("settings.txt", "timeout = 2\n"),
            ("docs/new.md", "new\n"),
            ("a/b/c/deep.md", "deep\n"),
        ],
    );
    p.write("settings.txt", "timeout = 3\n");
    p.commit("mine");
    std::fs::create_dir_all(p.dir.join("docs")).unwrap();
    std::fs::create_dir_all(p.dir.join("a/b")).unwrap();
    let before = state(&p.dir);
    p.update().assert().code(3);
    assert!(p.dir.join("docs/new.md").exists() && p.dir.join("a/b/c/deep.md").exists());
    let out = abort(&p);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(state(&p.dir), before);
    assert!(p.dir.join("docs").is_dir() && p.dir.join("a/b").is_dir());
    assert!(!p.dir.join("a/b/c").exists());
}

#[test]
fn a_deleted_file_the_template_renamed_stays_deleted() {
    let body = "line one\nline two\nline three\nline four\n";
    let p = project(
        &[("README.md", "hi\n"), ("old_name.txt", body)],
        &[("README.md", "hi\n"), ("new_name.txt", body)],
    );
    git(&p.dir, &["rm", "-q", "old_name.txt"]);
    p.commit("I do not want this file");
    let out = p.update().arg("--json").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let files = statuses(&out);
    assert!(
        files.contains(&("new_name.txt".into(), "kept-deleted".into())),
        "{files:?}"
    );
    assert!(!files.iter().any(|(_, s)| s == "conflict"), "{files:?}");
    assert!(!p.dir.join("new_name.txt").exists() && !p.dir.join("old_name.txt").exists());
    assert!(clean(&p.dir));
    // Brought back on request, under its new name.
    let out = p.update().args(["--restore", "new_name.txt"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(p.dir.join("new_name.txt")).unwrap(), body);
}

#[test]
fn a_deleted_file_the_template_renamed_and_changed_stays_deleted() {
    let p = project(
        &[("README.md", "hi\n"), ("old_name.txt", "1\n2\n3\n4\n5\n6\n7\n8\n")],
        &[("README.md", "hi\n"), ("new_name.txt", "1\n2\n3\n4\n5\n6\n7\neight\n")],
    );
    git(&p.dir, &["rm", "-q", "old_name.txt"]);
    p.commit("I do not want this file");
    let out = p.update().arg("--json").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let files = statuses(&out);
    assert!(
        files.contains(&("new_name.txt".into(), "kept-deleted".into())),
        "{files:?}"
    );
    assert!(!p.dir.join("new_name.txt").exists());
    assert!(clean(&p.dir));
}

#[test]
fn diff_of_a_file_that_became_a_symlink_applies_with_git_apply() {
    let p = project(&[("README.md", "hi\n"), ("config.txt", "a = 1\n")], &[]);
    std::fs::remove_file(p.dir.join("config.txt")).unwrap();
    std::os::unix::fs::symlink("README.md", p.dir.join("config.txt")).unwrap();
    let out = stackwise().arg("diff").arg(&p.dir).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let patch = p.tmp.path().join("work.patch");
    std::fs::write(&patch, &out.stdout).unwrap();
    // The patch takes the last render (here: HEAD) to the work tree.
    git(&p.dir, &["reset", "-q", "--hard"]);
    let applied = std::process::Command::new("git")
        .arg("apply")
        .arg(&patch)
        .current_dir(&p.dir)
        .output()
        .unwrap();
    assert!(
        applied.status.success(),
        "git apply: {}\n{}",
        stderr(&applied),
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        std::fs::read_link(p.dir.join("config.txt")).unwrap(),
        Path::new("README.md")
    );
    // The listing still names the change once, as a type change.
    let out = stackwise().arg("diff").arg(&p.dir).arg("--json").output().unwrap();
    let doc = json(&out);
    let files: Vec<&Value> = doc["files"].as_array().unwrap().iter().collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0]["status"], "type-changed");
}

#[test]
fn a_merge_binary_attribute_is_honoured_and_reported_as_done() {
    let v1 = "a = 1\nb = 1\nc = 1\nd = 1\ne = 1\n";
    let p = project(
        &[("settings.txt", v1), ("README.md", "hi\n")],
        &[
            ("settings.txt", "a = 2\nb = 1\nc = 1\nd = 1\ne = 1\n"),
            ("README.md", "hi\n"),
        ],
    );
    p.write(".gitattributes", "settings.txt merge=binary\n");
    let mine = "a = 1\nb = 1\nc = 1\nd = 1\ne = 9\n";
    p.write("settings.txt", mine);
    p.commit("mine, not to be merged");
    let before = state(&p.dir);
    let out = p.update().arg("--json").output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        statuses(&out).contains(&("settings.txt".into(), "conflict".into())),
        "{:?}",
        statuses(&out)
    );
    // What git leaves for a file it does not merge: yours in the work tree, the conflict in
    // the index.
    assert_eq!(std::fs::read_to_string(p.dir.join("settings.txt")).unwrap(), mine);
    let unmerged = git(&p.dir, &["ls-files", "--unmerged", "settings.txt"]).stdout;
    assert!(!unmerged.is_empty());
    let notes = json(&out)["notes"].to_string();
    assert!(notes.contains("merge=binary"), "{notes}");
    let out = abort(&p);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(state(&p.dir), before);
}

/// A write that fails in a way its roll-back fails too (a full disk; here the index lock taken
/// from under the update mid-checkout, which both need): the roll-back does every step it can —
/// the update's new files go, and so does the merge state, so `git commit` cannot conclude a
/// merge of the new version without its changes — keeps the journal, and says to run
/// `update --abort`, which puts the project back exactly once the cause is gone.
#[test]
fn a_roll_back_that_fails_too_removes_the_merge_state_and_leaves_the_abort_to_finish() {
    let p = super::update_trust::interrupted_project();
    let before = state(&p.dir);
    let (child, marker) = super::update_trust::spawn_paused(&p);
    let lock = p.dir.join(".git/index.lock");
    std::fs::write(&lock, "").unwrap();
    std::fs::remove_file(&marker).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("putting the project back failed too") && err.contains("update --abort"),
        "{err}"
    );
    assert!(!p.dir.join(".git/MERGE_HEAD").exists(), "{err}");
    assert!(!p.dir.join("pkg/m0.py").exists(), "{err}");
    assert!(p.dir.join(".git/stackwise-update").exists(), "{err}");
    std::fs::remove_file(&lock).unwrap();
    stackwise().arg("update").arg(&p.dir).arg("--abort").assert().success();
    assert_eq!(state(&p.dir), before);
    let out = p.update().output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// `--abort` after the update left its merge to the user (conflicts, or `--no-commit`) and the
/// user then changed a file it wrote cleanly: putting back the version from before the update
/// would lose that change, so it is refused, naming the file, as `git merge --abort` refuses a
/// file "not uptodate". A conflicted file's resolution in progress is reset, as with git; once
/// the change is dropped the abort puts everything back.
#[test]
fn abort_refuses_to_overwrite_a_change_made_after_the_update_stopped() {
    let (p, before) = super::update_trust::conflicted();
    p.write("deep/new.txt", "new, and mine\n");
    p.write("settings.txt", "timeout = 4\n");
    let out = abort(&p);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("`deep/new.txt` changed since the update wrote it"),
        "{err}"
    );
    assert!(!err.contains("settings.txt"), "{err}");
    assert_eq!(
        std::fs::read_to_string(p.dir.join("deep/new.txt")).unwrap(),
        "new, and mine\n"
    );
    git(&p.dir, &["restore", "--", "deep/new.txt"]);
    assert_eq!(abort(&p).status.code(), Some(0));
    assert_eq!(state(&p.dir), before);

    // The same after `--no-commit`: everything staged, then one file adapted by hand.
    let p = project(&[("a.txt", "a\n")], &[("a.txt", "a2\n"), ("b.txt", "b\n")]);
    let before = state(&p.dir);
    p.update().arg("--no-commit").assert().code(0);
    p.write("a.txt", "a2, adapted\n");
    let out = abort(&p);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(p.dir.join("a.txt")).unwrap(), "a2, adapted\n");
    git(&p.dir, &["restore", "--", "a.txt"]);
    assert_eq!(abort(&p).status.code(), Some(0));
    assert_eq!(state(&p.dir), before);
}
