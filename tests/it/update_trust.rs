//! `update` you can trust (SPEC §7.1): what it reports is what it did, on projects as they are
//! in the wild. Each test drives the binary on real git repositories and a small fixture
//! template written in two versions; each guards a defect that once failed silently.

use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use crate::common::{git, stackwise, write};
use serde_json::Value;
use tempfile::TempDir;

/// A version of the fixture template: `files` are the component's files (path, text).
pub fn template(root: &Path, version: &str, files: &[(&str, &str)], manifest_tail: &str) {
    let _ = std::fs::remove_dir_all(root);
    write(
        root,
        "stackwise.toml",
        format!(
            "[template]\nname = \"tr\"\nversion = \"{version}\"\n\n[[variables]]\nname = \"greeting\"\ntype = \"string\"\ndefault = \"hello\"\n\n[layouts.single]\nmounts = [{{ component = \"app\", at = \".\" }}]\n{manifest_tail}"
        ),
    );
    write(root, "components/app/component.toml", "# the only component\n");
    for (p, text) in files {
        write(root, &format!("components/app/{p}"), text);
    }
    write(
        root,
        "presets/basic.toml",
        "id = \"basic\"\ntitle = \"Basic\"\nlayout = \"single\"\nsummary = \"s\"\nrationale = \"r\"\ndefault = true\n",
    );
    write(
        root,
        "presets/blue.toml",
        "id = \"blue\"\ntitle = \"Blue\"\nlayout = \"single\"\nsummary = \"s\"\nrationale = \"r\"\n[options]\ngreeting = \"hi\"\n",
    );
}

/// `stackwise new NAME --yes ARGS… -o OUT --template TPL`, expected to succeed; the project.
pub fn generate(out: &Path, name: &str, tpl: &Path, args: &[&str]) -> PathBuf {
    stackwise()
        .args(["new", name, "--yes"])
        .args(args)
        .arg("-o")
        .arg(out)
        .arg("--template")
        .arg(tpl)
        .assert()
        .success();
    out.join(name)
}

pub struct Project {
    pub tmp: TempDir,
    pub dir: PathBuf,
    pub v2: PathBuf,
}

/// A project generated (with git) from a template holding `v1`; `v2` written beside it.
pub fn project(v1: &[(&str, &str)], v2: &[(&str, &str)]) -> Project {
    let tmp = TempDir::new().unwrap();
    let (t1, t2) = (tmp.path().join("v1"), tmp.path().join("v2"));
    template(&t1, "1.0.0", v1, "");
    template(&t2, "2.0.0", v2, "");
    let dir = generate(tmp.path(), "demo", &t1, &[]);
    Project { tmp, dir, v2: t2 }
}

impl Project {
    pub fn update(&self) -> assert_cmd::Command {
        let mut c = stackwise();
        c.arg("update")
            .arg(&self.dir)
            .arg("--template")
            .arg(&self.v2)
            .arg("--yes");
        c
    }

    pub fn commit(&self, message: &str) {
        git(&self.dir, &["add", "-A"]);
        git(&self.dir, &["commit", "-q", "-m", message]);
    }

    pub fn write(&self, rel: &str, text: &str) {
        write(&self.dir, rel, text);
    }
}

/// Everything an update may change: every path of the work tree (kind, mode, content or link
/// target, directories included), the index stage by stage, every ref, and git's merge state.
pub fn state(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.file_name() != ".git")
        .filter_map(Result::ok)
    {
        let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
        let meta = std::fs::symlink_metadata(e.path()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let what = if meta.file_type().is_symlink() {
            format!("link -> {}", std::fs::read_link(e.path()).unwrap().display())
        } else if meta.is_dir() {
            "dir".into()
        } else {
            let bytes = std::fs::read(e.path()).unwrap();
            format!("{:o} {}", meta.permissions().mode(), String::from_utf8_lossy(&bytes))
        };
        out.push(format!("{rel}: {what}"));
    }
    let text = |args: &[&str]| String::from_utf8_lossy(&git(dir, args).stdout).into_owned();
    out.push(text(&["ls-files", "--stage"]));
    out.push(text(&["for-each-ref"]));
    out.push(text(&["symbolic-ref", "HEAD"]));
    let git_dir = dir.join(".git");
    for f in ["ORIG_HEAD", "MERGE_HEAD", "MERGE_MSG", "MERGE_MODE", "stackwise-update"] {
        out.push(format!("{f}: {:?}", std::fs::read_to_string(git_dir.join(f)).ok()));
    }
    out
}

/// A project whose update stopped with conflicts (exit 3), its journal left in `.git`, and its
/// [`state`] before the update.
pub fn conflicted() -> (Project, Vec<String>) {
    let p = project(
        &[("settings.txt", "timeout = 1\n")],
        &[("settings.txt", "timeout = 2\n"), ("deep/new.txt", "new\n")],
    );
    p.write("settings.txt", "timeout = 3\n");
    p.commit("mine");
    let before = state(&p.dir);
    p.update().assert().code(3);
    (p, before)
}

/// `stackwise update --abort` on the project.
pub fn abort(p: &Project) -> std::process::Output {
    stackwise().arg("update").arg(&p.dir).arg("--abort").output().unwrap()
}

pub fn clean(dir: &Path) -> bool {
    git(dir, &["status", "--porcelain"]).stdout.is_empty()
}

/// The status each path has in an `update --json` report.
pub fn statuses(out: &std::process::Output) -> Vec<(String, String)> {
    json(out)["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

pub fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `update` (and `--dry-run` first), expecting both to refuse with exit 2 naming `path`
/// and to change nothing.
fn refused(p: &Project, extra: &[&str], path: &str) {
    refused_with(p, extra, path, 2)
}

fn refused_with(p: &Project, extra: &[&str], path: &str, code: i32) {
    let before = state(&p.dir);
    for dry in [true, false] {
        let mut c = p.update();
        c.args(extra);
        if dry {
            c.arg("--dry-run");
        }
        let out = c.output().unwrap();
        assert_eq!(out.status.code(), Some(code), "dry={dry}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(path),
            "dry={dry}: {path} not named in {}",
            stderr(&out)
        );
        assert_eq!(state(&p.dir), before, "dry={dry}: a refusal changed the project");
    }
}

#[test]
fn a_kept_file_where_the_template_now_has_a_directory_is_refused_not_dropped() {
    let p = project(
        &[("config", "a = 1\n"), ("README.md", "hi\n")],
        &[("config/app.toml", "a = 2\n"), ("README.md", "hi\n")],
    );
    p.write("config", "a = 1\nmine = true\n");
    p.commit("my config");
    refused(&p, &[], "config");
    assert_eq!(
        std::fs::read_to_string(p.dir.join("config")).unwrap(),
        "a = 1\nmine = true\n"
    );
}

#[test]
fn a_users_directory_where_the_template_now_has_a_file_is_refused() {
    let p = project(&[("README.md", "hi\n")], &[("README.md", "hi\n"), ("extra", "new\n")]);
    p.write("extra/notes.md", "mine\n");
    p.commit("my notes");
    refused(&p, &[], "extra");
}

#[test]
fn untracked_ignored_or_symlinked_parents_of_new_template_files_are_refused() {
    let v2 = [("README.md", "hi\n"), ("docs/guide.md", "guide\n")];
    // An untracked file at the parent path.
    let p = project(&[("README.md", "hi\n")], &v2);
    p.write("docs", "my scratch file\n");
    refused(&p, &[], "docs");
    // An ignored one.
    std::fs::write(p.dir.join(".git/info/exclude"), "docs\n").unwrap();
    refused(&p, &[], "docs");
    // A symlink to a directory outside the project: nothing is written through it.
    std::fs::remove_file(p.dir.join("docs")).unwrap();
    let outside = p.tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, p.dir.join("docs")).unwrap();
    refused(&p, &[], "docs");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
}

#[test]
fn nothing_is_written_through_a_committed_symlink_restore_included() {
    let p = project(
        &[("README.md", "hi\n"), ("sub/file.txt", "one\n")],
        &[
            ("README.md", "hi\n"),
            ("sub/file.txt", "one\n"),
            ("docs/guide.md", "g\n"),
        ],
    );
    let outside = p.tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::remove_dir_all(p.dir.join("sub")).unwrap();
    std::os::unix::fs::symlink(&outside, p.dir.join("sub")).unwrap();
    std::os::unix::fs::symlink(&outside, p.dir.join("docs")).unwrap();
    p.commit("my links");
    refused(&p, &[], "docs");
    // `--restore` alone (the same template version) through the committed link `sub`.
    let mut c = stackwise();
    let v1 = p.tmp.path().join("v1");
    c.arg("update")
        .arg(&p.dir)
        .arg("--template")
        .arg(&v1)
        .args(["--restore", "sub/file.txt"]);
    let before = state(&p.dir);
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(state(&p.dir), before);
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
}

#[test]
fn after_a_clean_update_the_tree_is_head_and_every_reported_path_is_committed() {
    let p = project(
        &[("README.md", "hi\n"), ("a.txt", "a\n")],
        &[("README.md", "hi v2\n"), ("a.txt", "a\n"), ("b/c/new.txt", "new\n")],
    );
    p.write("mine.txt", "untracked and mine\n");
    let out = p.update().arg("--json").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc = json(&out);
    let head = git(&p.dir, &["ls-tree", "-r", "--name-only", "HEAD"]).stdout;
    let head = String::from_utf8_lossy(&head);
    for f in doc["files"].as_array().unwrap() {
        assert!(head.lines().any(|l| l == f["path"]), "{f} not in HEAD");
    }
    assert_eq!(
        String::from_utf8_lossy(&git(&p.dir, &["status", "--porcelain"]).stdout),
        "?? mine.txt\n"
    );
}

/// Waits for `marker` (the test hook's signal that the checkout is half-way).
fn wait_for(marker: &Path, child: &mut std::process::Child) {
    let until = Instant::now() + Duration::from_secs(120);
    while !marker.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("update ended before the pause: {status}");
        }
        assert!(Instant::now() < until, "the update never reached the checkout");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A template version with many new files, so a checkout has a half-way point.
fn many_files() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = (0..30)
        .map(|i| (format!("pkg/m{i}.py"), format!("X = {i}\n")))
        .collect();
    v.push(("README.md".into(), "hi v2\n".into()));
    v.push(("run.sh".into(), "#!/bin/sh\necho v2\n".into()));
    v
}

pub fn interrupted_project() -> Project {
    let v2 = many_files();
    let v2: Vec<(&str, &str)> = v2.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let p = project(&[("README.md", "hi\n"), ("run.sh", "#!/bin/sh\necho v1\n")], &v2);
    p.write("notes/mine.txt", "untracked and mine\n");
    p
}

pub fn spawn_paused(p: &Project) -> (std::process::Child, PathBuf) {
    let marker = p.tmp.path().join("paused");
    let bin = assert_cmd::cargo::cargo_bin("stackwise");
    let mut child = Process::new(bin)
        .arg("update")
        .arg(&p.dir)
        .arg("--template")
        .arg(&p.v2)
        .arg("--yes")
        .env("STACKWISE_TEST_PAUSE", &marker)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&marker, &mut child);
    (child, marker)
}

#[test]
fn sigkill_mid_checkout_then_abort_restores_everything_and_a_new_update_runs_fresh() {
    let p = interrupted_project();
    let before = state(&p.dir);
    let (mut child, _) = spawn_paused(&p);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_ne!(state(&p.dir), before, "the kill came mid-checkout");
    let out = p.update().output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // Not "resolve the conflicts and git commit": there are none, and that commit would record
    // the version change without the template's changes.
    assert!(
        stderr(&out).contains("stopped before it finished writing"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("update --abort"), "{}", stderr(&out));
    stackwise().arg("update").arg(&p.dir).arg("--abort").assert().success();
    assert_eq!(state(&p.dir), before);
    let out = p.update().output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(clean(&p.dir) || git(&p.dir, &["status", "--porcelain"]).stdout == b"?? notes/\n");
    assert!(p.dir.join("pkg/m29.py").exists());
}

#[test]
fn ctrl_c_mid_checkout_stops_with_130_and_changes_nothing() {
    for signal in ["-INT", "-TERM"] {
        let p = interrupted_project();
        let before = state(&p.dir);
        let (child, _) = spawn_paused(&p);
        let pid = child.id().to_string();
        assert!(Process::new("kill").args([signal, &pid]).status().unwrap().success());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(130), "{signal}: {}", stderr(&out));
        assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
        assert_eq!(state(&p.dir), before, "{signal}");
    }
}

/// One request delivered twice (`timeout` signals the command and its process group; a
/// terminal signals the group): still the first signal's safe stop, everything put back. A
/// second Ctrl-C later is the user insisting: the process ends at once, and says how to undo.
#[test]
fn a_signal_delivered_twice_still_rolls_back_and_a_later_second_one_says_how_to_undo() {
    let p = interrupted_project();
    let before = state(&p.dir);
    let (child, marker) = spawn_paused(&p);
    let pid = child.id().to_string();
    for _ in 0..2 {
        assert!(Process::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert_eq!(state(&p.dir), before);
    std::fs::remove_file(&marker).unwrap();

    let (child, _) = spawn_paused(&p);
    let pid = child.id().to_string();
    assert!(Process::new("kill").args(["-INT", &pid]).status().unwrap().success());
    // Past the same-request window (the first signal's roll-back may be over by then: a
    // second signal then finds nothing to end).
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert!(Process::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.code(),
        Some(130),
        "{:?} {}",
        out.status.signal(),
        stderr(&out)
    );
    let err = stderr(&out);
    if state(&p.dir) != before {
        assert!(err.contains("stackwise update --abort"), "{err}");
        stackwise().arg("update").arg(&p.dir).arg("--abort").assert().success();
    }
    assert_eq!(state(&p.dir), before);
}

/// `update --install` whose install fails after the update was committed: the message says the
/// update is committed, and the retry re-locks first (`make install` alone runs a locked
/// install against the stale lock); stopped by Ctrl-C, it is an interruption (130).
#[cfg(unix)]
#[test]
fn a_failed_or_stopped_install_after_an_update_says_what_is_committed_and_how_to_relock() {
    use std::os::unix::fs::PermissionsExt;
    let pkg = |v: &str| format!("{{\"name\": \"demo\", \"version\": \"{v}\", \"private\": true}}\n");
    let (v1, v2) = (pkg("1.0.0"), pkg("2.0.0"));
    let p = project(&[("package.json", &v1)], &[("package.json", &v2)]);
    let bin = p.tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let fake = |body: &str| {
        std::fs::write(bin.join("npm"), format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(bin.join("npm"), std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    fake("echo 'npm ERR! network' >&2; exit 1");
    let head = git(&p.dir, &["rev-parse", "HEAD"]).stdout;
    let out = p.update().arg("--install").env("PATH", &path).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("the update is committed"), "{err}");
    assert!(
        err.contains("npm install --package-lock-only --ignore-scripts && make install"),
        "{err}"
    );
    assert_ne!(git(&p.dir, &["rev-parse", "HEAD"]).stdout, head);

    let p = project(&[("package.json", &v1)], &[("package.json", &v2)]);
    fake("sleep 30");
    let child = Process::new(assert_cmd::cargo::cargo_bin("stackwise"))
        .arg("update")
        .arg(&p.dir)
        .arg("--template")
        .arg(&p.v2)
        .args(["--yes", "--install"])
        .env("PATH", &path)
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let pid = child.id().to_string();
    assert!(Process::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        err.contains("interrupted") && err.contains("the update is committed"),
        "{err}"
    );
}

/// A project made from a SemVer tag (`URL#v1.0.0`, as docs/TEMPLATES.md advises) is up to date
/// with that tag forever; `update --check` says that newer tags exist and how to move.
#[test]
fn a_project_pinned_to_a_tag_is_told_of_the_newer_tags() {
    let tmp = TempDir::new().unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    for (version, readme) in [("1.0.0", "hi\n"), ("1.1.0-rc.1", "rc\n"), ("2.0.0", "hi v2\n")] {
        template(&repo.join("tpl"), version, &[("README.md", readme)], "");
        git(&repo, &["add", "-A"]);
        git(
            &repo,
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "commit",
                "-q",
                "-m",
                version,
            ],
        );
        git(&repo, &["tag", &format!("v{version}")]);
    }
    let url = format!("file://{}#v1.0.0", repo.display());
    let dir = generate(tmp.path(), "demo", Path::new(&url), &["--subdir", "tpl"]);
    let out = stackwise().arg("update").arg(&dir).arg("--check").output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("pinned to tag v1.0.0") && err.contains("(v2.0.0)"),
        "{err}"
    );
    assert!(err.contains("stackwise update --to v2.0.0"), "{err}");
}

/// Variables new in a template version get an answer the user never gave: the update names
/// each with its value and where it came from (a secret by name only), never silently.
#[test]
fn an_update_names_the_values_it_took_for_new_variables() {
    let tmp = TempDir::new().unwrap();
    let (t1, t2) = (tmp.path().join("v1"), tmp.path().join("v2"));
    template(&t1, "1.0.0", &[("README.md", "hi\n")], "");
    let tail = "\n[[variables]]\nname = \"replicas\"\ntype = \"integer\"\nmin = 1\n\n[[variables]]\nname = \"region\"\ntype = \"string\"\ndefault = \"eu\"\n\n[[variables]]\nname = \"token\"\ntype = \"string\"\nsecret = true\ndefault = \"s3cr3t\"\n";
    template(&t2, "2.0.0", &[("README.md", "hi\n")], tail);
    let dir = generate(tmp.path(), "demo", &t1, &[]);
    let out = stackwise()
        .arg("update")
        .arg(&dir)
        .arg("--template")
        .arg(&t2)
        .args(["--yes", "--json", "--set", "region=us"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let notes = doc["notes"].to_string();
    assert!(
        notes.contains("new variable `replicas` = 1 (the template gives it no default"),
        "{notes}"
    );
    assert!(
        notes.contains("new variable `token` = (secret) (its default)"),
        "{notes}"
    );
    assert!(
        !notes.contains("s3cr3t") && !notes.contains("`region`") && !notes.contains("`greeting`"),
        "{notes}"
    );
}

/// A new template file inside an untracked git repository of its own (a tool cloned into the
/// project): refused before anything is written, naming the repository, not one of its files.
#[test]
fn a_new_file_inside_a_nested_repository_is_refused_up_front() {
    let p = project(
        &[("README.md", "hi\n")],
        &[("README.md", "hi\n"), ("tools/README.md", "tpl\n")],
    );
    let tools = p.dir.join("tools");
    std::fs::create_dir(&tools).unwrap();
    git(&tools, &["init", "-q"]);
    p.write("tools/own.txt", "own\n");
    git(&tools, &["add", "-A"]);
    git(
        &tools,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "-m",
            "nested",
        ],
    );
    let before = state(&p.dir);
    let out = p.update().output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("tools/ is a git repository of its own") && !err.contains("own.txt"),
        "{err}"
    );
    assert_eq!(state(&p.dir), before);
}

/// A recorded answer this template version refuses (here carried by a rename into a variable
/// whose choices changed): the error says it is the recorded answer and which `--set` fixes it.
#[test]
fn a_recorded_answer_the_new_version_refuses_is_named_with_its_fix() {
    let tmp = TempDir::new().unwrap();
    let (t1, t2) = (tmp.path().join("v1"), tmp.path().join("v2"));
    let v1 = "\n[[variables]]\nname = \"db\"\ntype = \"choice\"\nchoices = [\"pg\", \"sqlite\"]\ndefault = \"pg\"\n";
    let v2 = "\n[[variables]]\nname = \"database\"\ntype = \"choice\"\nchoices = [\"postgres\", \"sqlite\"]\ndefault = \"postgres\"\n\n[[migrations]]\nversion = \"2.0.0\"\nrename = { from = \"db\", to = \"database\" }\n";
    template(&t1, "1.0.0", &[("README.md", "hi\n")], v1);
    template(&t2, "2.0.0", &[("README.md", "hi\n")], v2);
    let dir = generate(tmp.path(), "demo", &t1, &[]);
    let update = |extra: &[&str]| {
        stackwise()
            .arg("update")
            .arg(&dir)
            .arg("--template")
            .arg(&t2)
            .arg("--yes")
            .args(extra)
            .output()
            .unwrap()
    };
    let out = update(&[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("recorded answer, \"pg\"") && err.contains("--set database=VALUE"),
        "{err}"
    );
    let out = update(&["--set", "database=postgres"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// A conflict in a binary file has no markers to edit: the report says how to pick a side.
#[test]
fn a_binary_conflict_is_told_to_pick_a_side_not_to_edit_markers() {
    let p = project(&[("logo.bin", "\0v1\x01")], &[("logo.bin", "\0v2\x02")]);
    p.write("logo.bin", "\0ours\x03");
    git(&p.dir, &["commit", "-q", "-am", "our logo"]);
    let out = p.update().output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("no markers in logo.bin") && err.contains("git checkout --theirs"),
        "{err}"
    );
}

/// `update` or `diff` run inside a project (its `src/`, a service's folder) names the project's
/// directory, rather than calling the project "not generated by stackwise".
#[test]
fn update_and_diff_inside_a_project_name_its_directory() {
    let p = project(&[("README.md", "hi\n")], &[("README.md", "hi v2\n")]);
    p.write("docs/deep/a.md", "a\n");
    for cmd in ["update", "diff"] {
        let out = stackwise().arg(cmd).arg(p.dir.join("docs/deep")).output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("inside the project at") && !err.contains("not generated"),
            "{err}"
        );
        assert!(
            err.contains(&p.dir.file_name().unwrap().to_string_lossy().into_owned()),
            "{err}"
        );
    }
}

/// A shallow clone may lack the render commit: the message says so and how to fetch it, rather
/// than that the history has none.
#[test]
fn a_shallow_clone_without_its_render_commit_is_told_to_unshallow() {
    let p = project(&[("README.md", "hi\n")], &[("README.md", "hi v2\n")]);
    p.write("mine.txt", "mine\n");
    git(&p.dir, &["add", "mine.txt"]);
    git(&p.dir, &["commit", "-q", "-m", "mine"]);
    let shallow = p.tmp.path().join("shallow");
    let url = format!("file://{}", p.dir.display());
    let out = Process::new("git")
        .args(["clone", "-q", "--depth", "1", &url])
        .arg(&shallow)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::remove_dir_all(p.tmp.path().join("v1")).unwrap(); // the base cannot be rendered again
    let out = stackwise()
        .arg("update")
        .arg(&shallow)
        .arg("--template")
        .arg(&p.v2)
        .arg("--yes")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("shallow clone") && err.contains("git fetch --unshallow"),
        "{err}"
    );
}

/// `diff` while an update's merge is in progress would compare a half-merged work tree (the
/// template's changes shown as "yours"): it says what is pending instead.
#[test]
fn diff_refuses_while_an_update_is_in_progress() {
    let p = project(&[("README.md", "hi\n")], &[("README.md", "hi v2\n")]);
    let out = p.update().arg("--no-commit").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = stackwise().arg("diff").arg(&p.dir).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("staged but not committed") && err.contains("git commit"),
        "{err}"
    );
    git(&p.dir, &["commit", "-q", "--no-edit"]);
    stackwise().arg("diff").arg(&p.dir).assert().success();
}

/// A file a git filter driver owns (git-lfs, git-crypt): libgit2 runs no external filter, so the
/// update would commit it raw and leave the work tree differing from HEAD after exit 0. Refused
/// before anything is written; a path no driver owns, or a driver not configured, is no reason.
#[test]
fn files_a_configured_git_filter_owns_are_refused_before_anything_is_written() {
    let p = project(
        &[("README.md", "hi\n")],
        &[("README.md", "hi\n"), ("new.txt", "brand new\n")],
    );
    git(&p.dir, &["config", "filter.rot.clean", "tr a-zA-Z n-za-mN-ZA-M"]);
    git(&p.dir, &["config", "filter.rot.smudge", "tr a-zA-Z n-za-mN-ZA-M"]);
    p.write(".gitattributes", "*.txt filter=rot\n*.md filter=unconfigured\n");
    git(&p.dir, &["add", ".gitattributes"]);
    git(&p.dir, &["commit", "-q", "-m", "attributes"]);
    let before = state(&p.dir);
    let out = p.update().output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("new.txt (filter=rot)") && !err.contains("README"), "{err}");
    assert_eq!(state(&p.dir), before);
    // Without the driver the attribute does nothing, and the update runs.
    git(&p.dir, &["config", "--unset", "filter.rot.clean"]);
    git(&p.dir, &["config", "--unset", "filter.rot.smudge"]);
    let out = p.update().output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        String::from_utf8(git(&p.dir, &["status", "--porcelain"]).stdout)
            .unwrap()
            .is_empty()
    );
}

/// A commit made in another terminal while the update writes: the update must neither build on
/// it with a tree computed before it (its changes silently dropped, exit 0) nor roll the branch
/// back past it. It fails (exit 1), leaves the commit where it is, and says what is left.
#[test]
fn a_commit_made_while_the_update_writes_is_kept_and_the_update_says_it_did_not_commit() {
    let p = interrupted_project();
    let (child, marker) = spawn_paused(&p);
    // The user's commit: user.txt on top of HEAD, made without the index (the checkout has it).
    let run = |args: &[&str]| String::from_utf8(git(&p.dir, args).stdout).unwrap().trim().to_string();
    let blob = {
        std::fs::write(p.tmp.path().join("user.txt"), "mine\n").unwrap();
        run(&["hash-object", "-w", p.tmp.path().join("user.txt").to_str().unwrap()])
    };
    let tree_text = format!("{}100644 blob {blob}\tuser.txt\n", run(&["ls-tree", "HEAD"]) + "\n");
    let tree = {
        let mut mk = Process::new("git")
            .args(["mktree"])
            .current_dir(&p.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        mk.stdin.take().unwrap().write_all(tree_text.as_bytes()).unwrap();
        String::from_utf8(mk.wait_with_output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string()
    };
    let mine = run(&["commit-tree", &tree, "-p", "HEAD", "-m", "mine"]);
    run(&["update-ref", "HEAD", &mine]);
    std::fs::remove_file(&marker).unwrap(); // the update goes on
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("HEAD moved") && err.contains("not rolled back"), "{err}");
    assert_eq!(
        run(&["rev-parse", "HEAD"]),
        mine,
        "the user's commit is where they made it"
    );
    assert_eq!(run(&["show", "HEAD:user.txt"]), "mine");
    // The next update names what was left, and runs once it is cleared as the message said.
    let again = p.update().output().unwrap();
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    git(&p.dir, &["merge", "--abort"]);
    std::fs::remove_file(p.dir.join(".git/stackwise-update")).unwrap();
    git(&p.dir, &["reset", "-q", "--hard"]);
    git(&p.dir, &["clean", "-qfd", "pkg"]);
    let after = p.update().output().unwrap();
    assert_eq!(after.status.code(), Some(0), "{}", stderr(&after));
    assert_eq!(run(&["show", "HEAD:user.txt"]), "mine");
    assert!(p.dir.join("pkg/m29.py").exists());
}

/// A file of the user's saved while the update writes: whatever the update then does (here its
/// check of the work tree fails and it rolls back), that edit is not undone — a roll-back puts
/// back only the paths the update writes.
#[test]
fn an_edit_saved_while_the_update_writes_survives_its_roll_back() {
    let p = interrupted_project();
    p.write("USER.md", "ours\n");
    git(&p.dir, &["add", "USER.md"]);
    git(&p.dir, &["commit", "-q", "-m", "ours"]);
    let head = git(&p.dir, &["rev-parse", "HEAD"]).stdout;
    let (child, marker) = spawn_paused(&p);
    p.write("USER.md", "ours, edited while the update ran\n");
    std::fs::remove_file(&marker).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("USER.md"), "{}", stderr(&out));
    let read = |f: &str| std::fs::read_to_string(p.dir.join(f)).unwrap();
    assert_eq!(read("USER.md"), "ours, edited while the update ran\n");
    assert_eq!(git(&p.dir, &["rev-parse", "HEAD"]).stdout, head);
    assert!(!p.dir.join("pkg").exists(), "the update's own files are gone");
    assert_eq!(read("README.md"), "hi\n");
    let status = String::from_utf8(git(&p.dir, &["status", "--porcelain"]).stdout).unwrap();
    assert_eq!(status, " M USER.md\n?? notes/\n");
}

/// The same for `--restore` alone (its commit has one parent): the roll-back after its check
/// fails is the update's own to make, and keeps the edit.
#[test]
fn a_restore_whose_check_fails_is_rolled_back_and_keeps_an_edit_saved_meanwhile() {
    let files: Vec<(String, String)> = (0..6).map(|i| (format!("docs/d{i}.md"), format!("d{i}\n"))).collect();
    let files: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let p = project(&files, &files);
    p.write("USER.md", "ours\n");
    git(&p.dir, &["add", "USER.md"]);
    git(&p.dir, &["rm", "-q", "-r", "docs"]);
    git(&p.dir, &["commit", "-q", "-m", "ours, without docs"]);
    let head = git(&p.dir, &["rev-parse", "HEAD"]).stdout;
    let marker = p.tmp.path().join("paused");
    let mut cmd = Process::new(assert_cmd::cargo::cargo_bin("stackwise"));
    cmd.arg("update").arg(&p.dir).args(["--yes"]);
    for (f, _) in &files {
        cmd.args(["--restore", f]);
    }
    let mut child = cmd
        .env("STACKWISE_TEST_PAUSE", &marker)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&marker, &mut child);
    p.write("USER.md", "ours, edited meanwhile\n");
    std::fs::remove_file(&marker).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("not rolled back"), "{err}");
    assert_eq!(git(&p.dir, &["rev-parse", "HEAD"]).stdout, head);
    assert_eq!(
        std::fs::read_to_string(p.dir.join("USER.md")).unwrap(),
        "ours, edited meanwhile\n"
    );
    assert!(!p.dir.join("docs").exists());
}

#[test]
fn abort_after_conflicts_restores_files_modes_index_and_refs_and_removes_new_files() {
    let p = project(
        &[("settings.txt", "timeout = 1\n"), ("run.sh", "#!/bin/sh\necho 1\n")],
        &[
            ("settings.txt", "timeout = 2\n"),
            ("run.sh", "#!/bin/sh\necho 2\n"),
            ("deep/new/file.txt", "new\n"),
        ],
    );
    p.write("settings.txt", "timeout = 3\n");
    p.commit("mine");
    let before = state(&p.dir);
    p.update().assert().code(3);
    assert!(p.dir.join("deep/new/file.txt").exists());
    stackwise().arg("update").arg(&p.dir).arg("--abort").assert().success();
    assert_eq!(state(&p.dir), before);
    assert!(!p.dir.join("deep").exists());
}

#[test]
fn a_template_cannot_write_the_projects_record() {
    // The record itself, a directory in its place (the update would replace the record with it
    // and every later update would fail), and another case of it (the record on macOS/Windows).
    for path in [".stackwise.toml", ".stackwise.toml/x", ".Stackwise.TOML"] {
        let p = project(
            &[("README.md", "hi\n")],
            &[("README.md", "hi\n"), (path, "[update]\nskip = []\n")],
        );
        // Exit 1 like a template that writes `.git`: the template is broken, not the user's input.
        refused_with(&p, &[], path, 1);
        let out = stackwise()
            .args(["new", "other", "--yes", "--no-git", "-o"])
            .arg(p.tmp.path())
            .arg("--template")
            .arg(&p.v2)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{path}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("`.stackwise.toml` is reserved"),
            "{path}: {}",
            stderr(&out)
        );
        assert!(!p.tmp.path().join("other").exists());
        let out = stackwise().arg("lint").arg(&p.v2).output().unwrap();
        assert_ne!(out.status.code(), Some(0), "lint must refuse {path}");
        let all = format!("{}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
        assert!(all.contains("`.stackwise.toml` is reserved"), "{path}: {all}");
    }
}

#[test]
fn skip_patterns_anchor_like_gitignore_or_are_refused() {
    let p = project(
        &[("Makefile", "test:\n"), ("sub/Makefile", "x:\n")],
        &[("Makefile", "test:\n\tv2\n"), ("sub/Makefile", "x:\n\tv2\n")],
    );
    let record = std::fs::read_to_string(p.dir.join(".stackwise.toml")).unwrap();
    p.write(
        ".stackwise.toml",
        &record.replace("skip = []", "skip = [\"/Makefile\"]"),
    );
    p.commit("skip the root Makefile");
    let out = p.update().arg("--json").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(p.dir.join("Makefile")).unwrap(), "test:\n");
    assert_eq!(
        std::fs::read_to_string(p.dir.join("sub/Makefile")).unwrap(),
        "x:\n\tv2\n"
    );
    let doc = json(&out);
    let skipped = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["path"] == "Makefile" && f["status"] == "skipped");
    assert!(skipped, "{doc}");
    let record = std::fs::read_to_string(p.dir.join(".stackwise.toml")).unwrap();
    p.write(
        ".stackwise.toml",
        &record.replace("skip = [\"/Makefile\"]", "skip = [\"../Makefile\"]"),
    );
    p.commit("a pattern that can never match");
    refused(&p, &[], "../Makefile");
}

#[test]
fn a_project_with_a_submodule_updates() {
    let p = project(
        &[("README.md", "hi\n")],
        &[("README.md", "hi v2\n"), ("new.txt", "n\n")],
    );
    let lib = p.tmp.path().join("lib");
    std::fs::create_dir(&lib).unwrap();
    git(&lib, &["init", "-q"]);
    write(&lib, "lib.txt", "lib\n");
    git(&lib, &["add", "-A"]);
    git(&lib, &["commit", "-q", "-m", "lib"]);
    let url = lib.display().to_string();
    git(
        &p.dir,
        &[
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "add",
            "-q",
            &url,
            "vendor/lib",
        ],
    );
    p.commit("a submodule");
    let out = p.update().arg("--json").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let tree = String::from_utf8_lossy(&git(&p.dir, &["ls-tree", "-r", "HEAD"]).stdout).into_owned();
    assert!(tree.contains("160000 commit"), "the gitlink stays: {tree}");
    assert!(p.dir.join("vendor/lib/lib.txt").exists());
    assert!(
        clean(&p.dir),
        "{}",
        String::from_utf8_lossy(&git(&p.dir, &["status"]).stdout)
    );
}

#[test]
fn a_preset_change_is_named_in_the_report_json_and_merge_message() {
    let p = project(
        &[("README.md", "{{ greeting }}\n")],
        &[("README.md", "{{ greeting }}\n")],
    );
    let v1 = p.tmp.path().join("v1");
    let out = stackwise()
        .arg("update")
        .arg(&p.dir)
        .arg("--template")
        .arg(&v1)
        .args(["--preset", "blue", "--json", "--yes"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc = json(&out);
    assert_eq!(doc["preset"], serde_json::json!({"from": "basic", "to": "blue"}));
    assert!(stderr(&out).contains("preset basic -> blue"), "{}", stderr(&out));
    let msg = String::from_utf8_lossy(&git(&p.dir, &["log", "-1", "--format=%B"]).stdout).into_owned();
    assert!(msg.contains("preset basic -> blue"), "{msg}");
}

#[test]
fn pre_release_migrations_order_by_semver() {
    let tmp = TempDir::new().unwrap();
    let (t1, t2) = (tmp.path().join("v1"), tmp.path().join("v2"));
    let var = "\n[[variables]]\nname = \"old_name\"\ntype = \"string\"\ndefault = \"x\"\n";
    template(&t1, "2.0.0-rc.2", &[("a.txt.tera", "{{ old_name }}\n")], var);
    let migration = "\n[[variables]]\nname = \"new_name\"\ntype = \"string\"\ndefault = \"x\"\n\n[[migrations]]\nversion = \"2.0.0-rc.10\"\nrename = { from = \"old_name\", to = \"new_name\" }\n";
    template(&t2, "2.0.0-rc.10", &[("a.txt.tera", "{{ new_name }}\n")], migration);
    let dir = generate(tmp.path(), "demo", &t1, &["--set", "old_name=mine"]);
    stackwise()
        .arg("update")
        .arg(&dir)
        .arg("--template")
        .arg(&t2)
        .arg("--yes")
        .assert()
        .success();
    assert_eq!(std::fs::read_to_string(dir.join("a.txt")).unwrap(), "mine\n");
}

#[test]
fn a_project_in_a_subdirectory_of_a_larger_repository_updates_there() {
    let tmp = TempDir::new().unwrap();
    let (t1, t2) = (tmp.path().join("v1"), tmp.path().join("v2"));
    template(&t1, "1.0.0", &[("README.md", "hi\n"), ("settings.txt", "a = 1\n")], "");
    template(
        &t2,
        "2.0.0",
        &[
            ("README.md", "hi v2\n"),
            ("settings.txt", "a = 2\n"),
            ("lib/new.txt", "new\n"),
        ],
        "",
    );
    let mono = tmp.path().join("mono");
    std::fs::create_dir(&mono).unwrap();
    git(&mono, &["init", "-q", "-b", "main"]);
    write(&mono, "README.md", "the monorepo\n");
    write(&mono, "services/web/index.js", "// another service\n");
    generate(&mono.join("services"), "api", &t1, &["--no-git"]);
    git(&mono, &["add", "-A"]);
    git(&mono, &["commit", "-q", "-m", "monorepo"]);
    let api = mono.join("services/api");
    let update = || {
        let mut c = stackwise();
        c.arg("update").arg(&api).arg("--template").arg(&t2).arg("--yes");
        c
    };
    // A conflict first, aborted exactly.
    write(&api, "settings.txt", "a = 3\n");
    git(&mono, &["commit", "-q", "-am", "mine"]);
    let before = state(&mono);
    update().assert().code(3);
    assert!(mono.join("services/api/lib/new.txt").exists());
    stackwise().arg("update").arg(&api).arg("--abort").assert().success();
    assert_eq!(state(&mono), before);
    // Then a clean update, inside the project's directory only.
    write(&api, "settings.txt", "a = 1\n");
    git(&mono, &["commit", "-q", "-am", "back"]);
    let out = update().arg("--json").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let tree = String::from_utf8_lossy(&git(&mono, &["ls-tree", "-r", "--name-only", "HEAD"]).stdout).into_owned();
    for p in [
        "README.md",
        "services/web/index.js",
        "services/api/lib/new.txt",
        "services/api/README.md",
    ] {
        assert!(tree.lines().any(|l| l == p), "{p} not in {tree}");
    }
    assert!(!tree.lines().any(|l| l == "lib/new.txt"), "{tree}");
    assert_eq!(
        std::fs::read_to_string(mono.join("README.md")).unwrap(),
        "the monorepo\n"
    );
    assert_eq!(std::fs::read_to_string(api.join("settings.txt")).unwrap(), "a = 2\n");
    assert!(clean(&mono));
    // And the next update from the same version is a no-op.
    let out = update().arg("--json").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json(&out)["status"], "up-to-date");
}

#[path = "update_trust_more.rs"]
mod more;

#[path = "update_repos.rs"]
mod repos;

#[path = "update_report.rs"]
mod report;
