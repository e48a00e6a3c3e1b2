//! `stackwise diff`: your work since the last render, and what an update would bring — a git diff
//! either way, exit 0, nothing changed. Contract: SPEC §7.1.

use std::path::Path;

use crate::adopt::template;
use crate::common::{git, stackwise, stderr_of, write};
use serde_json::Value;
use tempfile::TempDir;

fn paths(out: &[u8]) -> Vec<(String, String)> {
    let doc: Value = serde_json::from_slice(out).unwrap();
    doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap().into(), f["status"].as_str().unwrap().into()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

/// What the fixture template changes from version 1 to 2.
const V1_TO_V2: [(&str, &str); 5] = [
    (".stackwise.toml", "modified"),
    ("Makefile", "modified"),
    ("SECURITY.md", "added"),
    ("ci.yml", "modified"),
    ("docs/guide.md", "modified"),
];

/// `stackwise diff DIR --template TPL --json`: the document.
fn incoming(dir: &Path, tpl: &Path) -> Vec<u8> {
    let a = stackwise()
        .arg("diff")
        .arg(dir)
        .arg("--template")
        .arg(tpl)
        .arg("--json")
        .assert()
        .success();
    a.get_output().stdout.clone()
}

/// Everything git knows of a repository's state: refs, HEAD, index and work tree status.
fn state(dir: &Path) -> String {
    let run = |args: &[&str]| String::from_utf8(git(dir, args).stdout).unwrap();
    format!(
        "{}{}{}{}",
        run(&["for-each-ref"]),
        run(&["rev-parse", "HEAD"]),
        run(&["status", "--porcelain", "--untracked-files=all"]),
        run(&["ls-files", "--stage"])
    )
}

#[test]
fn diff_shows_your_work_and_what_an_update_would_bring_and_changes_nothing() {
    let (v1, v2) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    template(v1.path(), 1);
    template(v2.path(), 2);
    let out = TempDir::new().unwrap();
    stackwise()
        .args(["new", "shop", "--yes", "--preset", "basic", "-o"])
        .arg(out.path())
        .arg("--template")
        .arg(v1.path())
        .assert()
        .success();
    let p = out.path().join("shop");
    // Committed work, then uncommitted work: an edit, a deletion, an untracked file.
    write(&p, "README.md", "# Shop\n\nhello\n\nOur own line.\n");
    write(&p, "notes.txt", "our notes\n");
    git(&p, &["add", "-A"]);
    git(&p, &["commit", "-q", "-m", "our work"]);
    write(&p, "Makefile", "test:\n\techo our test\n");
    std::fs::remove_file(p.join("ci.yml")).unwrap();
    write(&p, "scratch/idea.txt", "an idea\n");
    let before = state(&p);

    // The work tree against the last render: committed and uncommitted work, untracked files too.
    let a = stackwise().arg("diff").arg(&p).arg("--json").assert().success();
    assert_eq!(
        paths(&a.get_output().stdout),
        pairs(&[
            ("Makefile", "modified"),
            ("README.md", "modified"),
            ("ci.yml", "deleted"),
            ("notes.txt", "added"),
            ("scratch/idea.txt", "added"),
        ])
    );
    // Committed work only.
    let a = stackwise()
        .arg("diff")
        .arg(&p)
        .args(["--head", "--json"])
        .assert()
        .success();
    assert_eq!(
        paths(&a.get_output().stdout),
        pairs(&[("README.md", "modified"), ("notes.txt", "added")])
    );
    // The patch is git's: it names the files and holds the user's line.
    let a = stackwise().arg("diff").arg(&p).assert().success();
    let patch = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
    assert!(patch.contains("diff --git a/README.md b/README.md"), "{patch}");
    assert!(patch.contains("\n+Our own line.\n"), "{patch}");
    assert!(stderr_of(&a).contains("modified  README.md"), "{}", stderr_of(&a));

    // What an update to v2 would bring: the template's changes only, none of the user's.
    let out = incoming(&p, v2.path());
    assert_eq!(paths(&out), pairs(&V1_TO_V2));
    let doc: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(doc["kind"], "incoming");
    assert_eq!(doc["against"]["what"], "next render");
    assert_eq!(doc["base"]["what"], "last render");
    assert_eq!(doc["against"]["version"], "2.0.0");
    assert_eq!(doc["base"]["version"], "1.0.0");
    // --incoming from the recorded source, which has not moved: nothing but the record's tool line.
    let a = stackwise()
        .arg("diff")
        .arg(&p)
        .args(["--incoming", "--json"])
        .assert()
        .success();
    assert!(
        paths(&a.get_output().stdout)
            .iter()
            .all(|(f, _)| f == ".stackwise.toml"),
        "{:?}",
        paths(&a.get_output().stdout)
    );
    assert_eq!(state(&p), before, "diff changed the repository");

    // A reader that stops early is no error.
    let bin = assert_cmd::cargo::cargo_bin("stackwise");
    let piped = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{}' diff '{}' | head -c 1 >/dev/null",
            bin.display(),
            p.display()
        ))
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&piped.stderr).contains("panicked"),
        "{}",
        String::from_utf8_lossy(&piped.stderr)
    );
}

#[test]
fn diff_refuses_what_is_not_a_project() {
    let dir = TempDir::new().unwrap();
    let a = stackwise().arg("diff").arg(dir.path()).assert().code(2);
    assert!(stderr_of(&a).contains("cannot diff"), "{}", stderr_of(&a));
    git(dir.path(), &["init", "-q"]);
    write(dir.path(), "a.txt", "a\n");
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-q", "-m", "a"]);
    let a = stackwise().arg("diff").arg(dir.path()).assert().code(2);
    assert!(stderr_of(&a).contains("no .stackwise.toml"), "{}", stderr_of(&a));
    // --to needs a git template source.
    let tpl = TempDir::new().unwrap();
    template(tpl.path(), 1);
    let out = TempDir::new().unwrap();
    stackwise()
        .args(["new", "shop", "--yes", "--preset", "basic", "-o"])
        .arg(out.path())
        .arg("--template")
        .arg(tpl.path())
        .assert()
        .success();
    let a = stackwise()
        .arg("diff")
        .arg(out.path().join("shop"))
        .args(["--to", "v2"])
        .assert()
        .code(2);
    assert!(
        stderr_of(&a).contains("needs a git template source"),
        "{}",
        stderr_of(&a)
    );
}

#[test]
fn diff_in_a_subdirectory_of_a_larger_repository_shows_that_project_alone() {
    let (v1, v2) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    template(v1.path(), 1);
    template(v2.path(), 2);
    let mono = TempDir::new().unwrap();
    let m = mono.path();
    git(m, &["init", "-q", "-b", "main"]);
    write(m, "README.md", "the monorepo\n");
    write(m, "services/web/README.md", "another service\n");
    stackwise()
        .args(["new", "shop", "--yes", "--preset", "basic", "--no-git", "-o"])
        .arg(m.join("services"))
        .arg("--template")
        .arg(v1.path())
        .assert()
        .success();
    git(m, &["add", "-A"]);
    git(m, &["commit", "-q", "-m", "monorepo"]);
    let p = m.join("services/shop");
    // Work in the project, and beside it: only the project's shows, at paths relative to it.
    write(&p, "README.md", "# Shop\n\nhello\n\nOur own line.\n");
    write(&p, "notes.txt", "our notes\n");
    write(m, "README.md", "the monorepo, edited\n");
    write(m, "services/web/README.md", "edited too\n");
    write(m, "stray.txt", "untracked, outside\n");
    let before = state(m);
    let a = stackwise().arg("diff").arg(&p).arg("--json").assert().success();
    assert_eq!(
        paths(&a.get_output().stdout),
        pairs(&[("README.md", "modified"), ("notes.txt", "added")])
    );
    // The patch is git's, at the repository's paths: `git apply -R` takes back exactly the
    // project's work, from the repository's root.
    let a = stackwise().arg("diff").arg(&p).assert().success();
    let patch = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
    assert!(
        patch.contains("diff --git a/services/shop/README.md b/services/shop/README.md"),
        "{patch}"
    );
    assert!(
        !patch.contains("monorepo, edited") && !patch.contains("edited too"),
        "{patch}"
    );
    write(m, "yours.patch", &patch);
    git(m, &["apply", "--check", "-R", "yours.patch"]);
    std::fs::remove_file(m.join("yours.patch")).unwrap();
    assert_eq!(state(m), before, "diff changed the repository");
    // Committed work only, from inside the project's directory.
    git(m, &["add", "services/shop"]);
    git(m, &["commit", "-q", "-m", "our work"]);
    let before = state(m);
    let a = stackwise()
        .current_dir(&p)
        .args(["diff", "--head", "--json"])
        .assert()
        .success();
    assert_eq!(
        paths(&a.get_output().stdout),
        pairs(&[("README.md", "modified"), ("notes.txt", "added")])
    );
    // What an update would bring: the template's changes, inside the project.
    assert_eq!(paths(&incoming(&p, v2.path())), pairs(&V1_TO_V2));
    assert_eq!(state(m), before, "diff changed the repository");
}
