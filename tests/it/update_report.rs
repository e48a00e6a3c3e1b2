//! What `update` reports is what it committed (SPEC §7.1), where the two once disagreed: a move
//! the user had already made, and file modes (a file is its content and its mode).

use std::os::unix::fs::PermissionsExt;

use super::{Project, clean, project, statuses, stderr};
use crate::common::git;

/// The report of a clean `update --json`: (path, status) pairs.
fn report(p: &Project) -> Vec<(String, String)> {
    let out = p.update().arg("--json").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(clean(&p.dir));
    statuses(&out)
        .into_iter()
        .filter(|(path, _)| path != ".stackwise.toml")
        .collect()
}

/// `git ls-tree HEAD PATH`: the mode of `rel` in the commit.
fn mode_at_head(p: &Project, rel: &str) -> String {
    let out = git(&p.dir, &["ls-tree", "HEAD", rel]);
    String::from_utf8_lossy(&out.stdout)
        .split(' ')
        .next()
        .unwrap_or_default()
        .to_string()
}

fn chmod(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_move_the_user_already_made_is_not_reported() {
    let p = project(
        &[("guide.md", "the guide\n"), ("other.txt", "1\n")],
        &[("handbook.md", "the guide\n"), ("other.txt", "2\n")],
    );
    git(&p.dir, &["mv", "guide.md", "handbook.md"]);
    p.commit("my move");
    assert_eq!(report(&p), [("other.txt".to_string(), "updated".to_string())]);
    let changed = git(&p.dir, &["diff", "--name-only", "HEAD^1", "HEAD"]);
    assert!(!String::from_utf8_lossy(&changed.stdout).contains("handbook.md"));
}

#[test]
fn a_mode_the_user_changed_makes_a_template_change_merged_not_updated() {
    let p = project(&[("config.txt", "a = 1\n")], &[("config.txt", "a = 2\n")]);
    chmod(&p.dir.join("config.txt"), 0o755);
    p.commit("executable");
    assert_eq!(report(&p), [("config.txt".to_string(), "merged".to_string())]);
    assert_eq!(mode_at_head(&p, "config.txt"), "100755");
    assert_eq!(std::fs::read_to_string(p.dir.join("config.txt")).unwrap(), "a = 2\n");
}

/// The template decides a file's mode by its name and shebang (`.sh`, `#!`); a user who took
/// the executable bit off keeps it off, and the template's edit is merged into the file.
#[test]
fn a_script_the_user_made_plain_keeps_its_mode_and_is_reported_merged() {
    let p = project(&[("run.sh", "echo 1\n")], &[("run.sh", "echo 2\n")]);
    assert_eq!(mode_at_head(&p, "run.sh"), "100755");
    chmod(&p.dir.join("run.sh"), 0o644);
    p.commit("not a script");
    assert_eq!(report(&p), [("run.sh".to_string(), "merged".to_string())]);
    assert_eq!(mode_at_head(&p, "run.sh"), "100644");
}
