//! `stackwise adopt`: a repository stackwise did not create comes under a template; its files stay
//! as they are, and the next `update` merges only what the template changes later. Contract: SPEC
//! §7.1.

use std::path::{Path, PathBuf};

use crate::common::{git, list_files, stackwise, stderr_of, write};
use serde_json::Value;
use tempfile::TempDir;

/// A small template as a real directory: version 1, or version 2 (a Makefile target, a CI step, a
/// new SECURITY.md, a changed guide the adopted project lacks; the README and the code as in 1).
pub fn template(root: &Path, version: u32) {
    write(
        root,
        "stackwise.toml",
        format!(
            r#"
[template]
name = "fx"
version = "{version}.0.0"

[[variables]]
name = "greeting"
type = "string"
default = "hello"

[layouts.single]
description = "one app"
mounts = [{{ component = "app", at = "." }}]
"#
        ),
    );
    write(
        root,
        "presets/basic.toml",
        "id = \"basic\"\ntitle = \"Basic\"\nlayout = \"single\"\nsummary = \"one app\"\nrationale = \"a fixture\"\n",
    );
    let app = |rel: &str, text: &str| write(root, &format!("components/app/{rel}"), text);
    app("README.md.tera", "# {{ project_title }}\n\n{{ greeting }}\n");
    app("src/{{ package_name }}/main.py", "print(1)\n");
    if version == 1 {
        app("Makefile", "test:\n\techo test\n");
        app("ci.yml", "steps:\n  - test\n");
        app("docs/guide.md", "guide v1\n");
    } else {
        app("Makefile", "test:\n\techo test\n\nlint:\n\techo lint\n");
        app("ci.yml", "steps:\n  - test\n  - lint\n");
        app("docs/guide.md", "guide v2\n");
        app("SECURITY.md", "Report to security@example.com\n");
    }
}

/// A repository made by hand: a README and code of its own, a Makefile and CI file equal to the
/// template's, a notes file the template does not know, and no docs/.
fn hand_made(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q", "-b", "main"]);
    write(dir, "README.md", "# Our shop\n\nWritten by us.\n");
    write(dir, "Makefile", "test:\n\techo test\n");
    write(dir, "ci.yml", "steps:\n  - test\n");
    write(dir, "src/shop/main.py", "print('ours')\n");
    write(dir, "notes.txt", "our notes\n");
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "our project"]);
}

/// The version-1 fixture template and a [`hand_made`] project `shop` in a directory of its own:
/// (template, that directory, the project).
fn shop() -> (TempDir, TempDir, PathBuf) {
    let tpl = TempDir::new().unwrap();
    template(tpl.path(), 1);
    let root = TempDir::new().unwrap();
    let p = root.path().join("shop");
    hand_made(&p);
    (tpl, root, p)
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    list_files(dir)
        .into_iter()
        .map(|f| {
            let bytes = std::fs::read(dir.join(&f)).unwrap();
            (f, bytes)
        })
        .collect()
}

fn head(dir: &Path) -> String {
    String::from_utf8(git(dir, &["rev-parse", "HEAD"]).stdout)
        .unwrap()
        .trim()
        .to_string()
}

fn status(dir: &Path) -> String {
    String::from_utf8(git(dir, &["status", "--porcelain", "--untracked-files=all"]).stdout).unwrap()
}

fn adopt(dir: &Path, tpl: &Path) -> assert_cmd::Command {
    let mut c = stackwise();
    c.arg("adopt")
        .arg(dir)
        .args(["--preset", "basic", "--yes", "--template"])
        .arg(tpl);
    c
}

/// `stackwise update DIR` of an adopted project to the fixture's version 2: a clean merge of
/// the template's change alone (the file the project lacks stays missing).
fn update_to_v2(dir: &Path) {
    let u = stackwise()
        .arg("update")
        .arg(dir)
        .args(["--yes", "--json"])
        .assert()
        .success();
    let doc: Value = serde_json::from_slice(&u.get_output().stdout).unwrap();
    let files: Vec<(String, String)> = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap().into(), f["status"].as_str().unwrap().into()))
        .collect();
    let expect = [
        (".stackwise.toml", "updated"),
        ("Makefile", "updated"),
        ("SECURITY.md", "added"),
        ("ci.yml", "updated"),
        ("docs/guide.md", "kept-deleted"),
    ];
    assert_eq!(
        files,
        expect.map(|(a, b)| (a.to_string(), b.to_string())).to_vec(),
        "{doc:#}"
    );
    assert_eq!(doc["status"], "clean");
}

#[test]
fn an_adopted_repository_keeps_its_files_and_update_merges_only_the_template_s_later_change() {
    let (tpl, _root, p) = shop();
    let before = snapshot(&p);
    let user_head = head(&p);

    let a = adopt(&p, tpl.path()).arg("--json").assert().success();
    let doc: Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    let names = |k: &str| -> Vec<String> {
        doc[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names("same"), ["Makefile", "ci.yml"]);
    assert_eq!(names("differ"), ["README.md", "src/shop/main.py"]);
    assert_eq!(names("missing"), ["docs/guide.md"]);

    // Only .stackwise.toml was added; every other file is byte for byte what it was.
    let mut after = snapshot(&p);
    after.retain(|(f, _)| f != ".stackwise.toml");
    assert_eq!(after, before);
    assert!(p.join(".stackwise.toml").is_file());
    assert_eq!(status(&p), "", "the adoption is committed, nothing left over");
    // One commit of its own: parents = the user's commit and the render commit.
    let parents = String::from_utf8(git(&p, &["log", "-1", "--format=%P"]).stdout).unwrap();
    let parents: Vec<&str> = parents.split_whitespace().collect();
    assert_eq!(parents.len(), 2);
    assert_eq!(parents[0], user_head);
    let render = String::from_utf8(git(&p, &["log", "-1", "--format=%B", parents[1]]).stdout).unwrap();
    assert!(render.contains("Stackwise-Render: "), "{render}");
    let msg = String::from_utf8(git(&p, &["log", "-1", "--format=%B"]).stdout).unwrap();
    assert!(
        msg.contains("Stackwise-Adopt: ") && !msg.contains("Stackwise-Render"),
        "{msg}"
    );
    let changed = String::from_utf8(git(&p, &["diff", "--name-only", "HEAD^1", "HEAD"]).stdout).unwrap();
    assert_eq!(changed.trim(), ".stackwise.toml");

    // Right after adopting, the project is up to date with its template.
    stackwise().arg("update").arg(&p).arg("--check").assert().success();

    // The template moves on; the update brings exactly its change.
    template(tpl.path(), 2);
    stackwise().arg("update").arg(&p).arg("--check").assert().code(3);
    update_to_v2(&p);
    let read = |f: &str| std::fs::read_to_string(p.join(f)).unwrap();
    assert_eq!(read("README.md"), "# Our shop\n\nWritten by us.\n");
    assert_eq!(read("src/shop/main.py"), "print('ours')\n");
    assert_eq!(read("notes.txt"), "our notes\n");
    assert!(read("Makefile").contains("lint:"));
    assert!(!p.join("docs").exists());
    assert_eq!(status(&p), "");
}

#[test]
fn adopt_refuses_what_it_cannot_adopt_and_changes_nothing() {
    let tpl = TempDir::new().unwrap();
    template(tpl.path(), 1);
    let root = TempDir::new().unwrap();

    // Not a git repository.
    let plain = root.path().join("plain");
    write(&plain, "README.md", "x\n");
    let a = adopt(&plain, tpl.path()).assert().code(2);
    assert!(
        stderr_of(&a).contains("cannot adopt")
            && stderr_of(&a).contains("not a git repository")
            && stderr_of(&a).contains("git init")
            && !stderr_of(&a).contains("not a stackwise project"),
        "{}",
        stderr_of(&a)
    );
    assert_eq!(list_files(&plain), ["README.md"]);

    // Uncommitted changes.
    let dirty = root.path().join("dirty");
    hand_made(&dirty);
    write(&dirty, "README.md", "edited, not committed\n");
    let h = head(&dirty);
    let a = adopt(&dirty, tpl.path()).assert().code(2);
    assert!(stderr_of(&a).contains("uncommitted changes"), "{}", stderr_of(&a));
    assert_eq!(head(&dirty), h);
    assert!(!dirty.join(".stackwise.toml").exists());

    // Already adopted: the second adopt is refused.
    let twice = root.path().join("twice");
    hand_made(&twice);
    adopt(&twice, tpl.path()).assert().success();
    let h = head(&twice);
    let a = adopt(&twice, tpl.path()).assert().code(2);
    assert!(
        stderr_of(&a).contains("already follows a template"),
        "{}",
        stderr_of(&a)
    );
    assert_eq!(head(&twice), h);

    // A generated project whose record was deleted: its history holds a render commit.
    let out = TempDir::new().unwrap();
    stackwise()
        .args(["new", "gen", "--yes", "--preset", "basic", "-o"])
        .arg(out.path())
        .arg("--template")
        .arg(tpl.path())
        .assert()
        .success();
    let gen_dir = out.path().join("gen");
    git(&gen_dir, &["rm", "-q", ".stackwise.toml"]);
    git(&gen_dir, &["commit", "-q", "-m", "no record"]);
    let h = head(&gen_dir);
    let a = adopt(&gen_dir, tpl.path()).assert().code(2);
    assert!(stderr_of(&a).contains("render commit"), "{}", stderr_of(&a));
    assert_eq!(head(&gen_dir), h);

    // An untracked record in the way, and a name that is not a valid project name.
    let stray = root.path().join("stray");
    hand_made(&stray);
    write(&stray, ".stackwise.toml", "mine\n");
    let a = adopt(&stray, tpl.path()).assert().code(2);
    assert!(stderr_of(&a).contains("not committed"), "{}", stderr_of(&a));
    assert_eq!(
        std::fs::read_to_string(stray.join(".stackwise.toml")).unwrap(),
        "mine\n"
    );
    // … nor a symlink there: nothing is written through it.
    #[cfg(unix)]
    {
        let linked = root.path().join("linked");
        hand_made(&linked);
        let outside = root.path().join("outside.toml");
        std::fs::write(&outside, "outside\n").unwrap();
        std::os::unix::fs::symlink(&outside, linked.join(".stackwise.toml")).unwrap();
        adopt(&linked, tpl.path()).assert().code(2);
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "outside\n");
    }
    let named = root.path().join("named");
    hand_made(&named);
    adopt(&named, tpl.path()).args(["--name", "9 lives!"]).assert().code(2);
    assert_eq!(status(&named), "");
    // A directory whose name no project may take: the hint says how to give another one.
    let queue = root.path().join("queue");
    hand_made(&queue);
    let h = head(&queue);
    let a = adopt(&queue, tpl.path()).assert().code(2);
    assert!(
        stderr_of(&a).contains("standard library") && stderr_of(&a).contains("pass another with --name"),
        "{}",
        stderr_of(&a)
    );
    assert_eq!((head(&queue), status(&queue)), (h, String::new()));
    adopt(&queue, tpl.path())
        .args(["--name", "queue-service"])
        .assert()
        .success();

    // --dry-run reports and writes nothing.
    let dry = root.path().join("dry");
    hand_made(&dry);
    let h = head(&dry);
    adopt(&dry, tpl.path()).arg("--dry-run").assert().success();
    assert_eq!(head(&dry), h);
    assert_eq!(status(&dry), "");
}

#[test]
fn a_project_in_a_subdirectory_of_a_larger_repository_is_adopted_there() {
    let tpl = TempDir::new().unwrap();
    template(tpl.path(), 1);
    let root = TempDir::new().unwrap();
    let mono = root.path().join("mono");
    hand_made(&mono.join("services/shop"));
    std::fs::remove_dir_all(mono.join("services/shop/.git")).unwrap();
    git(&mono, &["init", "-q", "-b", "main"]);
    write(&mono, "README.md", "the monorepo\n");
    write(&mono, "services/web/Makefile", "web:\n\techo web\n");
    git(&mono, &["add", "-A"]);
    git(&mono, &["commit", "-q", "-m", "monorepo"]);
    let p = mono.join("services/shop");
    let before = snapshot(&mono);
    let user_head = head(&mono);

    let a = adopt(&p, tpl.path()).arg("--json").assert().success();
    let doc: Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    assert_eq!(doc["name"], "shop");
    assert_eq!(doc["same"], serde_json::json!(["Makefile", "ci.yml"]));
    assert_eq!(doc["missing"], serde_json::json!(["docs/guide.md"]));
    // The record lands in the project's directory, and nothing else of the repository changes.
    let mut after = snapshot(&mono);
    after.retain(|(f, _)| f != "services/shop/.stackwise.toml");
    assert_eq!(after, before);
    assert!(!mono.join(".stackwise.toml").exists());
    assert_eq!(status(&mono), "");
    let changed = String::from_utf8(git(&mono, &["diff", "--name-only", "HEAD^1", "HEAD"]).stdout).unwrap();
    assert_eq!(changed.trim(), "services/shop/.stackwise.toml");
    let parents = String::from_utf8(git(&mono, &["log", "-1", "--format=%P"]).stdout).unwrap();
    assert_eq!(parents.split_whitespace().next(), Some(user_head.as_str()));
    // A second adopt is refused.
    adopt(&p, tpl.path()).assert().code(2);

    // The template moves on: the update, in the project's directory, brings its change alone.
    stackwise().arg("update").arg(&p).arg("--check").assert().success();
    template(tpl.path(), 2);
    update_to_v2(&p);
    let read = |f: &str| std::fs::read_to_string(mono.join(f)).unwrap();
    assert!(read("services/shop/Makefile").contains("lint:"));
    assert_eq!(read("services/shop/README.md"), "# Our shop\n\nWritten by us.\n");
    assert_eq!(read("services/web/Makefile"), "web:\n\techo web\n");
    assert_eq!(read("README.md"), "the monorepo\n");
    assert!(mono.join("services/shop/SECURITY.md").is_file());
    assert!(!mono.join("SECURITY.md").exists());
    assert_eq!(status(&mono), "");
}

/// What a run may have changed: HEAD (and the branch it is on), every ref, the index's entries,
/// and what `git status` sees of the work tree (untracked files included).
#[cfg(unix)]
fn repo_state(dir: &Path) -> [String; 5] {
    let out = |args: &[&str]| String::from_utf8(git(dir, args).stdout).unwrap();
    [
        head(dir),
        out(&["symbolic-ref", "HEAD"]),
        out(&["for-each-ref"]),
        out(&["ls-files", "--stage"]),
        status(dir),
    ]
}

/// Ctrl-C or SIGTERM at any moment of `adopt` (SPEC §7.4): exit 0 with the adoption whole, or
/// exit 130 with either the repository exactly as it was or the adoption whole and the message
/// saying it finished first — never a moved branch whose index deletes the record. A project of
/// a few thousand files makes the writes (the index) wide enough for the signals, spread over
/// the time one whole adopt takes, to land in them; between runs the project is put back.
#[cfg(unix)]
#[test]
fn ctrl_c_at_any_moment_of_adopt_leaves_the_adoption_whole_or_nothing() {
    use std::process::Stdio;
    use std::time::Instant;

    let (tpl, _root, p) = shop();
    for i in 0..FILES {
        write(&p, &format!("data/d{}/f{i}.txt", i % 40), format!("{i}\n"));
    }
    git(&p, &["add", "-A"]);
    git(&p, &["commit", "-q", "-m", "data"]);
    let before = repo_state(&p);
    assert_eq!(before[4], "");
    let put_back = || {
        git(&p, &["reset", "-q", "--hard", &before[0]]);
        let _ = std::fs::remove_file(p.join(".stackwise.toml"));
        assert!(repo_state(&p) == before, "the project is put back between runs");
    };
    // A whole adopt's time, for the spread of the signals.
    let started = Instant::now();
    adopt(&p, tpl.path()).assert().success();
    let took = started.elapsed();
    put_back();

    let adopted = |i: u32, stderr: &str| {
        assert_eq!(status(&p), "", "run {i}: work tree and index equal HEAD: {stderr}");
        let log = String::from_utf8(git(&p, &["log", "-1", "--format=%s%n%P"]).stdout).unwrap();
        assert!(log.starts_with("stackwise: adopt"), "run {i}: {log}");
        assert_eq!(log.lines().nth(1).unwrap().split(' ').next(), Some(before[0].as_str()));
        let changed = git(&p, &["diff", "--name-only", &before[0], "HEAD"]).stdout;
        assert_eq!(String::from_utf8(changed).unwrap(), ".stackwise.toml\n", "run {i}");
    };
    let (mut done, mut nothing, mut finished_first) = (0, 0, 0);
    for i in 0..RUNS {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("stackwise"));
        child
            .arg("adopt")
            .arg(&p)
            .args(["--preset", "basic", "--yes", "--template"])
            .arg(tpl.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = child.spawn().unwrap();
        // Spread over 0–120 % of a whole run, in an order that mixes short and long delays.
        std::thread::sleep(took.mul_f64(f64::from((i * 7) % RUNS) * 1.2 / f64::from(RUNS)));
        let signal = if i % 3 == 2 { "-TERM" } else { "-INT" };
        let code = crate::common::exit_after_signal(&mut child, signal);
        let stderr = String::from_utf8_lossy(&child.wait_with_output().unwrap().stderr).into_owned();
        match code {
            Some(0) => {
                adopted(i, &stderr);
                done += 1;
            }
            Some(130) if repo_state(&p) == before => {
                assert!(stderr.contains("interrupted"), "run {i}: {stderr}");
                assert!(!stderr.contains("finished first"), "run {i}: {stderr}");
                nothing += 1;
            }
            Some(130) => {
                adopted(i, &stderr);
                assert!(stderr.contains("the adoption finished first"), "run {i}: {stderr}");
                finished_first += 1;
            }
            // Ended by the signal before stackwise's handler was installed.
            None => assert!(repo_state(&p) == before, "run {i} ({signal}) changed the repository"),
            Some(c) => panic!("run {i}: exit {c}: {stderr}"),
        }
        put_back();
    }
    eprintln!("adopt under signals: {done} adopted, {nothing} unchanged, {finished_first} finished first");
}

#[cfg(unix)]
const FILES: u32 = 3000;
#[cfg(unix)]
const RUNS: u32 = 40;

/// A killed adopt (SIGKILL, a second Ctrl-C) can leave its record staged with the branch where it
/// was: adopt names it (rather than advising a commit, which would commit a record without its
/// render commit), and once it is removed as the hint says, adopt runs again.
#[test]
fn a_staged_record_left_by_a_killed_adopt_is_named_and_adopt_runs_again_once_it_is_removed() {
    let (tpl, _root, p) = shop();
    let h = head(&p);
    write(&p, ".stackwise.toml", "# half an adoption\n");
    git(&p, &["add", ".stackwise.toml"]);
    let a = adopt(&p, tpl.path()).assert().code(2);
    let err = stderr_of(&a);
    assert!(
        err.contains("staged in the index but not committed") && err.contains("git rm -f .stackwise.toml"),
        "{err}"
    );
    assert!(!err.contains("commit them"), "{err}");
    assert_eq!(head(&p), h);
    // `update` names it the same way, not as "not generated by stackwise" or "commit them".
    let u = stackwise().arg("update").arg(&p).arg("--yes").assert().code(2);
    let err = stderr_of(&u);
    assert!(
        err.contains("staged in the index but not committed") && err.contains("stackwise adopt"),
        "{err}"
    );
    git(&p, &["reset", "-q", "--", ".stackwise.toml"]);
    let u = stackwise().arg("update").arg(&p).arg("--yes").assert().code(2);
    let err = stderr_of(&u);
    assert!(err.contains("exists in the work tree but is not committed"), "{err}");
    assert!(!err.contains("not generated by stackwise"), "{err}");
    git(&p, &["add", ".stackwise.toml"]);
    git(&p, &["rm", "-q", "-f", ".stackwise.toml"]);
    adopt(&p, tpl.path()).assert().success();
    assert_eq!(status(&p), "");
}

/// On a detached HEAD the adoption's and the update's commits are on no branch: the next
/// `git switch` would leave them to the reflog, so both say so (and nothing is said on a branch).
#[test]
fn commits_made_on_a_detached_head_are_named_as_on_no_branch() {
    let (tpl, _root, p) = shop();
    git(&p, &["checkout", "-q", "--detach"]);
    let a = adopt(&p, tpl.path()).arg("--json").assert().success();
    let doc: Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    let commit = doc["commit"].as_str().unwrap();
    let notes = doc["notes"].to_string();
    assert!(
        notes.contains("HEAD is detached") && notes.contains(&commit[..7]),
        "{doc:#}"
    );
    assert_eq!(head(&p), commit);
    template(tpl.path(), 2);
    let u = stackwise().arg("update").arg(&p).arg("--yes").assert().success();
    let err = String::from_utf8_lossy(&u.get_output().stderr).into_owned();
    assert!(
        err.contains("HEAD is detached") && err.contains(&head(&p)[..7]),
        "{err}"
    );

    let (tpl, _root, p) = shop();
    let a = adopt(&p, tpl.path()).arg("--json").assert().success();
    let doc: Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    assert!(doc.get("notes").is_none(), "{doc:#}");
}
