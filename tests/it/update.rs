//! `stackwise update` end to end: a fixture template in two versions, a user's project between
//! them, real git repositories, the binary spawned. Contract: SPEC §6.1.

use std::path::{Path, PathBuf};
use std::process::Command as Process;

use crate::common::{git, list_files, stackwise, write};
use git2::Repository;
use serde_json::Value;
use tempfile::TempDir;

/// Version 1 of the fixture template.
fn template_v1(root: &Path) {
    write(
        root,
        "stackwise.toml",
        r#"
[template]
name = "fx"
version = "1.0.0"

[[variables]]
name = "greeting"
type = "string"
default = "hello"

[[variables]]
name = "old_flag"
type = "bool"
default = false

[[variables]]
name = "colour"
type = "choice"
choices = ["red", "blue"]
default = "red"

[layouts.single]
mounts = [{ component = "app", at = "." }]
"#,
    );
    write(
        root,
        "components/app/component.toml",
        "[[files]]\npaths = [\"model.py\"]\nupdate = \"once\"\n",
    );
    write(
        root,
        "components/app/README.md.tera",
        "# {{ project_title }}\n\nline a\nline b\nline c\nline d\nline e\n\n{{ greeting }} in {{ colour }}\n",
    );
    write(root, "components/app/Makefile", "test:\n\techo test\n");
    write(root, "components/app/src/main.py", main_py(""));
    write(root, "components/app/notes.txt", "note 1\nnote 2\n");
    write(root, "components/app/old.txt", "old 1\nold 2\n");
    write(root, "components/app/gone.txt", "gone\n");
    write(root, "components/app/settings.txt", "timeout = 1\n");
    write(root, "components/app/model.py", "MODEL = 1\n");
    write(
        root,
        "components/app/pyproject.toml",
        "[project]\nname = \"x\"\ndependencies = [\"a>=1\"]\n",
    );
    write(
        root,
        "presets/basic.toml",
        "id = \"basic\"\ntitle = \"Basic\"\nlayout = \"single\"\nsummary = \"s\"\nrationale = \"r\"\ndefault = true\n",
    );
    write(
        root,
        "presets/blue.toml",
        "id = \"blue\"\ntitle = \"Blue\"\nlayout = \"single\"\nsummary = \"s\"\nrationale = \"r\"\n[options]\ncolour = \"blue\"\n",
    );
}

/// A module long enough for git's rename detection to follow it.
fn main_py(tail: &str) -> String {
    let mut s = String::from("\"\"\"The service.\"\"\"\n\n");
    for i in 0..20 {
        s.push_str(&format!("def handler_{i}(x):\n    return x + {i}\n\n"));
    }
    s.push_str(tail);
    s
}

/// Version 2: every kind of change a template makes. With `conflicting`, it also changes the
/// line of settings.txt that the user changes.
fn template_v2(root: &Path, conflicting: bool) {
    template_v1(root);
    let manifest = std::fs::read_to_string(root.join("stackwise.toml")).unwrap();
    let manifest = manifest
        .replace("version = \"1.0.0\"", "version = \"2.0.0\"")
        .replace("name = \"old_flag\"", "name = \"new_flag\"")
        + "\n[[migrations]]\nversion = \"2.0.0\"\nrename = { from = \"old_flag\", to = \"new_flag\" }\n";
    write(root, "stackwise.toml", manifest);
    write(
        root,
        "components/app/README.md.tera",
        "# {{ project_title }}\n\nline a\nline b\nline c\nline d\nline e (v2)\n\n{{ greeting }} in {{ colour }}\n",
    );
    write(
        root,
        "components/app/Makefile",
        "test:\n\techo test\n\nlint:\n\techo lint\n",
    );
    std::fs::remove_file(root.join("components/app/src/main.py")).unwrap();
    write(root, "components/app/app/main.py", main_py("# v2\n"));
    write(root, "components/app/notes.txt", "note 1\nnote 2 (v2)\n");
    std::fs::remove_file(root.join("components/app/old.txt")).unwrap();
    std::fs::remove_file(root.join("components/app/gone.txt")).unwrap();
    write(root, "components/app/new.txt", "new in v2\n");
    write(root, "components/app/model.py", "MODEL = 2\n");
    write(
        root,
        "components/app/pyproject.toml",
        "[project]\nname = \"x\"\ndependencies = [\"a>=2\"]\n",
    );
    if conflicting {
        write(root, "components/app/settings.txt", "timeout = 2\n");
    }
}

fn read(dir: &Path, rel: &str) -> String {
    std::fs::read_to_string(dir.join(rel)).unwrap()
}

struct Fixture {
    _tmp: TempDir,
    v1: PathBuf,
    v2: PathBuf,
    project: PathBuf,
}

/// A project generated from v1, a user's commit on top (edits, a deletion, a lockfile), and v2
/// of the template in another directory.
fn fixture(conflicting: bool) -> Fixture {
    let tmp = TempDir::new().unwrap();
    let (v1, v2) = (tmp.path().join("v1"), tmp.path().join("v2"));
    template_v1(&v1);
    template_v2(&v2, conflicting);
    stackwise()
        .args(["new", "demo", "--yes", "--set", "old_flag=true", "-o"])
        .arg(tmp.path())
        .arg("--template")
        .arg(&v1)
        .assert()
        .success();
    let project = tmp.path().join("demo");
    let readme = read(&project, "README.md").replace("line a", "line a (mine)");
    write(&project, "README.md", readme);
    let main = read(&project, "src/main.py").replace("\"\"\"The service.\"\"\"", "\"\"\"My service.\"\"\"");
    write(&project, "src/main.py", main);
    std::fs::remove_file(project.join("notes.txt")).unwrap();
    write(&project, "old.txt", "old 1\nold 2 (mine)\n");
    write(&project, "settings.txt", "timeout = 3\n");
    write(&project, "model.py", "MODEL = 'mine'\n");
    write(&project, "uv.lock", "version = 1\n# the user's lockfile\n");
    write(&project, "mine.py", "print('mine')\n");
    let record = read(&project, ".stackwise.toml").replace("skip = []", "skip = []\nowner = \"me\"");
    write(&project, ".stackwise.toml", record);
    git(&project, &["add", "-A"]);
    git(&project, &["commit", "-q", "-m", "my work"]);
    Fixture {
        _tmp: tmp,
        v1,
        v2,
        project,
    }
}

fn update(f: &Fixture) -> assert_cmd::Command {
    let mut c = stackwise();
    c.arg("update").arg(&f.project).arg("--template").arg(&f.v2);
    c
}

fn json_of(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn status_of<'a>(doc: &'a Value, path: &str) -> Option<&'a str> {
    doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == path)
        .and_then(|f| f["status"].as_str())
}

fn head(dir: &Path) -> git2::Oid {
    Repository::open(dir).unwrap().head().unwrap().target().unwrap()
}

fn clean(dir: &Path) -> bool {
    String::from_utf8(git(dir, &["status", "--porcelain"]).stdout)
        .unwrap()
        .is_empty()
}

#[test]
fn new_makes_a_render_commit_and_records_version_and_revision() {
    let tmp = TempDir::new().unwrap();
    template_v1(&tmp.path().join("t"));
    stackwise()
        .args(["new", "demo", "--yes", "-o"])
        .arg(tmp.path())
        .arg("--template")
        .arg(tmp.path().join("t"))
        .assert()
        .success();
    let project = tmp.path().join("demo");
    let repo = Repository::open(&project).unwrap();
    let commit = repo.head().unwrap().peel_to_commit().unwrap();
    let msg = commit.message().unwrap();
    assert!(
        msg.contains("Stackwise-Render: template=") && msg.contains(" layout=single preset=basic"),
        "{msg}"
    );
    assert!(clean(&project));
    // The objects are one pack (written by stackwise, not by git): git reads and checks it.
    git(&project, &["fsck", "--strict", "--no-dangling"]);
    let packs: Vec<_> = std::fs::read_dir(project.join(".git/objects/pack")).unwrap().collect();
    assert_eq!(packs.len(), 2, "one .pack and its .idx");
    let record = read(&project, ".stackwise.toml");
    assert!(record.contains("template_version = \"1.0.0\""), "{record}");
    assert!(record.contains("revision = \"sha256:"), "{record}");
    assert!(
        record.contains("[update]\n") && record.contains("skip = []"),
        "{record}"
    );
    let revision = record.lines().find(|l| l.starts_with("revision")).unwrap();
    assert!(msg.contains(&revision.replace(" = ", "=").replace('"', "")), "{msg}");
}

#[test]
fn template_changes_reach_an_edited_project_and_a_second_update_is_a_no_op() {
    let f = fixture(false);
    let before = head(&f.project);
    let lock = std::fs::read(f.project.join("uv.lock")).unwrap();
    let out = update(&f).args(["--json", "-y"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let doc = json_of(&out);
    assert_eq!(doc["status"], "clean");
    assert_eq!(doc["from"]["version"], "1.0.0");
    assert_eq!(doc["to"]["version"], "2.0.0");
    for (path, status) in [
        ("README.md", "merged"),
        ("Makefile", "updated"),
        ("app/main.py", "renamed"),
        ("notes.txt", "kept-deleted"),
        ("old.txt", "kept-yours"),
        ("gone.txt", "removed"),
        ("new.txt", "added"),
        ("model.py", "skipped"),
        ("pyproject.toml", "updated"),
    ] {
        assert_eq!(status_of(&doc, path), Some(status), "{path}: {doc:#}");
    }
    let renamed = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "app/main.py")
        .unwrap();
    assert_eq!(renamed["from"], "src/main.py");
    assert!(status_of(&doc, "mine.py").is_none() && status_of(&doc, "uv.lock").is_none());
    assert!(
        doc["relock"].as_array().unwrap().iter().any(|c| c == "uv lock"),
        "{doc:#}"
    );

    let p = &f.project;
    let readme = read(p, "README.md");
    assert!(
        readme.contains("line a (mine)") && readme.contains("line e (v2)"),
        "{readme}"
    );
    let main = read(p, "app/main.py");
    assert!(
        main.starts_with("\"\"\"My service.\"\"\"") && main.ends_with("# v2\n"),
        "{main}"
    );
    assert!(!p.join("src/main.py").exists() && !p.join("notes.txt").exists() && !p.join("gone.txt").exists());
    assert_eq!(read(p, "old.txt"), "old 1\nold 2 (mine)\n");
    assert_eq!(read(p, "model.py"), "MODEL = 'mine'\n");
    assert_eq!(read(p, "new.txt"), "new in v2\n");
    assert!(read(p, "Makefile").contains("lint:"));
    assert_eq!(
        std::fs::read(p.join("uv.lock")).unwrap(),
        lock,
        "the lockfile is byte-identical"
    );
    assert_eq!(read(p, "mine.py"), "print('mine')\n");
    let record = read(p, ".stackwise.toml");
    assert!(record.contains("template_version = \"2.0.0\""), "{record}");
    assert!(
        record.contains("new_flag = true") && !record.contains("old_flag"),
        "migrated: {record}"
    );
    assert!(
        record.contains("owner = \"me\""),
        "the user's [update] table is kept: {record}"
    );

    // One two-parent merge commit; the second parent is the new render commit.
    let repo = Repository::open(p).unwrap();
    let merge = repo.head().unwrap().peel_to_commit().unwrap();
    assert_eq!(doc["commit"], merge.id().to_string());
    assert_eq!(merge.parent_count(), 2);
    assert_eq!(merge.parent_id(0).unwrap(), before);
    let msg = merge.message().unwrap();
    assert!(
        msg.contains("Stackwise-Update: sha256:") && msg.contains(" -> sha256:"),
        "{msg}"
    );
    assert!(!msg.contains("Stackwise-Render"), "{msg}");
    let render = merge.parent(1).unwrap();
    assert!(render.message().unwrap().contains("Stackwise-Render: "));
    assert!(render.tree().unwrap().get_path(Path::new("model.py")).is_ok());
    assert!(repo.find_reference("refs/stackwise/pending").is_err());
    assert!(clean(p));

    // The same template again: up to date, no new commit.
    let out = update(&f).arg("--json").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json_of(&out)["status"], "up-to-date");
    assert_eq!(head(p), merge.id());
    stackwise()
        .args(["update", "--check"])
        .arg(p)
        .arg("--template")
        .arg(&f.v2)
        .assert()
        .code(0);

    // --restore brings back the file the user deleted, from the template's render.
    let out = update(&f).args(["--restore", "notes.txt", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(status_of(&json_of(&out), "notes.txt"), Some("added"));
    assert_eq!(read(p, "notes.txt"), "note 1\nnote 2 (v2)\n");
    assert!(clean(p));
}

#[test]
fn overlapping_edits_conflict_like_git_and_abort_restores_head() {
    let f = fixture(true);
    let before = head(&f.project);
    let p = &f.project;
    let out = update(&f).arg("--json").output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let doc = json_of(&out);
    assert_eq!(doc["status"], "conflicts");
    assert_eq!(status_of(&doc, "settings.txt"), Some("conflict"));
    assert_eq!(status_of(&doc, "README.md"), Some("merged"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("git commit") && stderr.contains("stackwise update --abort"),
        "{stderr}"
    );
    let settings = read(p, "settings.txt");
    for marker in [
        "<<<<<<< your project",
        "||||||| last render 1.0.0",
        "=======",
        ">>>>>>> template 2.0.0",
    ] {
        assert!(settings.contains(marker), "{marker} in {settings}");
    }
    let repo = Repository::open(p).unwrap();
    assert_eq!(repo.state(), git2::RepositoryState::Merge);
    let pending = repo.refname_to_id("refs/stackwise/pending").unwrap();
    assert_eq!(read(p, ".git/MERGE_HEAD").trim(), pending.to_string());
    let index = repo.index().unwrap();
    let stages: Vec<i32> = (1..=3)
        .filter(|s| index.get_path(Path::new("settings.txt"), *s).is_some())
        .collect();
    assert_eq!(stages, vec![1, 2, 3]);
    assert!(
        String::from_utf8(git(p, &["status", "--porcelain"]).stdout)
            .unwrap()
            .contains("UU settings.txt")
    );
    // A second update while this one is in progress is refused.
    update(&f)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("update --abort"));

    git(p, &["merge", "--abort"]);
    assert_eq!(head(p), before);
    assert!(clean(p));
    assert_eq!(read(p, "settings.txt"), "timeout = 3\n");
    assert!(!p.join("new.txt").exists());

    // Again, then resolve and commit with git: the render commit is the second parent, and the
    // next update is a no-op.
    update(&f).assert().code(3);
    write(p, "settings.txt", "timeout = 4\n");
    git(p, &["add", "settings.txt"]);
    git(p, &["commit", "-q", "--no-edit"]);
    let repo = Repository::open(p).unwrap();
    let merge = repo.head().unwrap().peel_to_commit().unwrap();
    assert_eq!(merge.parent_count(), 2);
    assert!(merge.message().unwrap().contains("Stackwise-Update: "));
    update(&f)
        .arg("--json")
        .assert()
        .code(0)
        .stdout(predicates::str::contains("\"up-to-date\""));
    assert!(
        repo.find_reference("refs/stackwise/pending").is_err(),
        "the next update removes it"
    );
}

#[test]
fn update_abort_undoes_the_merge_and_drops_the_pending_render() {
    let f = fixture(true);
    let before = head(&f.project);
    update(&f).assert().code(3);
    stackwise()
        .args(["update", "--abort"])
        .arg(&f.project)
        .assert()
        .success();
    assert_eq!(head(&f.project), before);
    assert!(clean(&f.project));
    assert!(!f.project.join("new.txt").exists());
    let repo = Repository::open(&f.project).unwrap();
    assert_eq!(repo.state(), git2::RepositoryState::Clean);
    assert!(repo.find_reference("refs/stackwise/pending").is_err());
    stackwise()
        .args(["update", "--abort"])
        .arg(&f.project)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("no update to abort"));
}

#[test]
fn no_commit_leaves_merge_head_for_git_commit() {
    let f = fixture(false);
    update(&f).arg("--no-commit").assert().code(0);
    let repo = Repository::open(&f.project).unwrap();
    assert_eq!(repo.state(), git2::RepositoryState::Merge);
    git(&f.project, &["commit", "-q", "--no-edit"]);
    let merge = repo.head().unwrap().peel_to_commit().unwrap();
    assert_eq!(merge.parent_count(), 2);
    assert!(merge.message().unwrap().contains("Stackwise-Update: "));
}

/// Every file of the work tree and `.git` except objects (which may be written), with contents.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_entry(|e| !e.path().ends_with(".git/objects"))
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| (e.path().display().to_string(), std::fs::read(e.path()).unwrap()))
        .collect();
    out.sort();
    out
}

#[test]
fn dry_run_and_check_change_no_file_index_or_ref() {
    let f = fixture(true);
    let before = snapshot(&f.project);
    let out = update(&f).args(["--dry-run", "--json"]).output().unwrap();
    // The code the update would exit with (SPEC §7.4): 3, it would leave conflicts.
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let doc = json_of(&out);
    assert_eq!(doc["status"], "conflicts");
    assert_eq!(status_of(&doc, "settings.txt"), Some("conflict"));
    assert_eq!(status_of(&doc, "app/main.py"), Some("renamed"));
    update(&f)
        .arg("--check")
        .assert()
        .code(3)
        .stderr(predicates::str::contains("behind its template"));
    assert_eq!(snapshot(&f.project), before);
}

#[test]
fn without_a_render_commit_the_recorded_revision_is_rendered_again_as_the_base() {
    let f = fixture(false);
    let p = &f.project;
    // History without render commits (a squash, or a project from before them).
    std::fs::remove_dir_all(p.join(".git")).unwrap();
    git(p, &["init", "-q", "-b", "main"]);
    git(p, &["add", "-A"]);
    git(p, &["commit", "-q", "-m", "all of it"]);
    let out = update(&f).arg("--json").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let doc = json_of(&out);
    assert!(doc["notes"].to_string().contains("rendered again"), "{doc:#}");
    assert_eq!(status_of(&doc, "README.md"), Some("merged"));
    assert_eq!(status_of(&doc, "notes.txt"), Some("kept-deleted"));
    assert!(read(p, "README.md").contains("line a (mine)"));

    // The recorded template changed in place and no render commit exists: refused.
    let tmp = TempDir::new().unwrap();
    let q = tmp.path().join("demo");
    copy_dir(p, &q);
    git(&q, &["init", "-q", "-b", "main"]);
    git(&q, &["add", "-A"]);
    git(&q, &["commit", "-q", "-m", "all of it"]);
    write(&f.v2, "components/app/extra.txt", "changed in place\n");
    let before = snapshot(&q);
    stackwise()
        .arg("update")
        .arg(&q)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("cannot be rendered again"));
    assert_eq!(snapshot(&q), before);
}

fn copy_dir(from: &Path, to: &Path) {
    for rel in list_files(from) {
        write(to, &rel, std::fs::read(from.join(&rel)).unwrap());
    }
}

/// Runs an update that must be refused: exit 2, the message, and nothing changed.
fn refused(dir: &Path, extra: &[&str], template: &Path, message: &str) {
    let before = snapshot(dir);
    stackwise()
        .arg("update")
        .arg(dir)
        .arg("--template")
        .arg(template)
        .args(extra)
        .assert()
        .code(2)
        .stderr(predicates::str::contains(message));
    assert_eq!(snapshot(dir), before, "nothing changed");
}

#[test]
fn every_refusal_exits_2_and_changes_nothing() {
    let f = fixture(false);
    let p = &f.project;
    // Uncommitted changes, in the work tree and in the index.
    write(p, "README.md", "dirty\n");
    refused(p, &[], &f.v2, "uncommitted changes (README.md)");
    git(p, &["add", "README.md"]);
    refused(p, &[], &f.v2, "uncommitted changes");
    git(p, &["reset", "-q", "--hard"]);
    // An untracked file where the template adds one.
    write(p, "new.txt", "mine\n");
    refused(
        p,
        &[],
        &f.v2,
        "untracked files are where the template's new files go (new.txt)",
    );
    std::fs::remove_file(p.join("new.txt")).unwrap();
    // Other untracked files are no reason to refuse (checked with a dry run).
    write(p, "scratch.txt", "x\n");
    update(&f).arg("--dry-run").assert().code(0);
    std::fs::remove_file(p.join("scratch.txt")).unwrap();
    // A source that cannot be reached, and --to on a local source.
    refused(p, &[], &f.v1.join("missing"), "cannot be read");
    refused(p, &["--to", "v3"], &f.v2, "--to v3 needs a git template source");
    // A layout change is not an in-place update.
    refused(p, &["--layout", "other"], &f.v2, "unknown layout");
    // A merge in progress that is not an update.
    git(p, &["checkout", "-q", "-b", "side"]);
    write(p, "settings.txt", "timeout = 8\n");
    git(p, &["commit", "-q", "-am", "side"]);
    git(p, &["checkout", "-q", "main"]);
    write(p, "settings.txt", "timeout = 9\n");
    git(p, &["commit", "-q", "-am", "main"]);
    let _ = Process::new("git")
        .args(["merge", "side"])
        .current_dir(p)
        .output()
        .unwrap();
    refused(p, &[], &f.v2, "a merge is in progress");
    git(p, &["merge", "--abort"]);

    // Not a git repository (`new --no-git`), and no record.
    let tmp = TempDir::new().unwrap();
    stackwise()
        .args(["new", "plain", "--yes", "--no-git", "-o"])
        .arg(tmp.path())
        .arg("--template")
        .arg(&f.v1)
        .assert()
        .success();
    refused(&tmp.path().join("plain"), &[], &f.v2, "not a git repository");
    let bare = tmp.path().join("norecord");
    write(&bare, "a.txt", "a\n");
    git(&bare, &["init", "-q"]);
    git(&bare, &["add", "-A"]);
    git(&bare, &["commit", "-q", "-m", "a"]);
    refused(&bare, &[], &f.v2, "no .stackwise.toml");
}

#[test]
fn a_preset_change_takes_the_new_presets_options_and_keeps_customised_answers() {
    let f = fixture(false);
    // The user's own `[update] skip` keeps the Makefile theirs.
    let record = read(&f.project, ".stackwise.toml").replace("skip = []", "skip = [\"Make*\"]");
    write(&f.project, ".stackwise.toml", record);
    git(&f.project, &["commit", "-q", "-am", "skip the Makefile"]);
    let out = update(&f)
        .args(["--preset", "blue", "--set", "greeting=hi", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let doc = json_of(&out);
    assert_eq!(status_of(&doc, "Makefile"), Some("skipped"), "{doc:#}");
    assert!(!read(&f.project, "Makefile").contains("lint:"));
    let readme = read(&f.project, "README.md");
    assert!(readme.contains("hi in blue"), "{readme}");
    let record = read(&f.project, ".stackwise.toml");
    assert!(
        record.contains("preset = \"blue\"") && record.contains("colour = \"blue\""),
        "{record}"
    );
}
