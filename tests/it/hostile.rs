//! Templates written by an attacker: each test builds the hostile template and checks the exit
//! code, a message naming the culprit, that nothing escapes the target, that no staging is left,
//! and that a user's file under `--force` is byte-identical after the failed run.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{
    Fixture, assert_empty, assert_mentions, fixture_template, list_files, new_cmd, stackwise, stderr_of, write,
};
use tempfile::TempDir;

fn fixture() -> (TempDir, TempDir) {
    let Fixture { tpl, out } = Fixture::new();
    (tpl, out)
}

/// Replaces the fixture's layouts with `layouts` (TOML text).
fn with_layouts(tpl: &Path, layouts: &str) {
    let manifest = std::fs::read_to_string(tpl.join("stackwise.toml")).unwrap();
    let head = &manifest[..manifest.find("[layouts.single]").unwrap()];
    write(tpl, "stackwise.toml", format!("{head}{layouts}"));
    std::fs::remove_file(tpl.join("presets/deep.toml")).unwrap();
    write(
        tpl,
        "presets/basic.toml",
        "id = \"basic\"\ntitle = \"Basic\"\nlayout = \"single\"\nsummary = \"s\"\nrationale = \"r\"\ndefault = true\n",
    );
}

#[test]
fn two_spellings_of_one_mount_are_one_path_and_force_keeps_the_users_file() {
    let (tpl, out) = fixture();
    with_layouts(
        tpl.path(),
        "[layouts.single]\ndescription = \"d\"\nmounts = [{ component = \"app\", at = \"sub\" }, { component = \"app\", at = \"./sub\" }]\n",
    );
    // The user's project already has sub/README.md; --force must not lose it.
    let project = out.path().join("app");
    write(&project, "sub/README.md", "the user's own readme\n");
    write(&project, "notes.txt", "mine\n");
    let a = new_cmd(tpl.path(), out.path(), "app").arg("--force").assert().code(1);
    assert_mentions(&stderr_of(&a), &["two template files write sub/"]);
    assert_eq!(
        std::fs::read(project.join("sub/README.md")).unwrap(),
        b"the user's own readme\n"
    );
    assert_eq!(list_files(&project), vec!["notes.txt", "sub/README.md"]);
    let leftovers: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("app")], "no staging left");
}

#[test]
fn a_runaway_loop_ends_at_its_time_budget_naming_the_file() {
    let (tpl, out) = fixture();
    write(
        tpl.path(),
        "components/app/slow.txt.tera",
        "{% for i in range(end=100000) %}{% for j in range(end=100000) %}{% endfor %}{% endfor %}",
    );
    let started = Instant::now();
    let a = new_cmd(tpl.path(), out.path(), "app")
        .env("STACKWISE_RENDER_SECONDS", "2")
        .timeout(Duration::from_secs(60))
        .assert()
        .code(1);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert_mentions(
        &stderr_of(&a),
        &["components/app/slow.txt.tera", "budget", "STACKWISE_RENDER_SECONDS"],
    );
    assert_empty(out.path());
    // `lint` renders the template eight times; the first render over budget ends it, where
    // each of the eight used to spend the whole budget again.
    let started = Instant::now();
    let a = stackwise()
        .arg("lint")
        .arg(tpl.path())
        .env("STACKWISE_RENDER_SECONDS", "2")
        .timeout(Duration::from_secs(60))
        .assert()
        .code(1);
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "lint took {:?}",
        started.elapsed()
    );
    assert_mentions(&stderr_of(&a), &["components/app/slow.txt.tera", "budget"]);
}

/// A string built up inside the template writes nothing until it is done, so only the memory
/// the process grows by can stop it: before, it grew until the allocator aborted (or the OOM
/// killer came), for `lint` and `new` alike.
#[cfg(target_os = "linux")]
#[test]
fn a_string_built_up_in_a_loop_ends_at_its_memory_budget() {
    let (tpl, out) = fixture();
    write(
        tpl.path(),
        "components/app/bomb.txt.tera",
        "{% set_global x = \"aaaaaaaaaaaaaaaa\" %}{% for i in range(end=40) %}{% set_global x = x ~ x %}{% endfor %}{{ x | length }}",
    );
    for lint in [false, true] {
        let mut cmd = if lint {
            let mut c = stackwise();
            c.arg("lint").arg(tpl.path());
            c
        } else {
            new_cmd(tpl.path(), out.path(), "app")
        };
        let a = cmd
            .env("STACKWISE_RENDER_MEMORY_MB", "64")
            .timeout(Duration::from_secs(60))
            .assert()
            .code(1);
        assert_mentions(
            &stderr_of(&a),
            &[
                "components/app/bomb.txt.tera",
                "MiB of memory",
                "STACKWISE_RENDER_MEMORY_MB",
            ],
        );
    }
    assert_empty(out.path());
}

#[test]
fn a_render_that_floods_output_ends_at_its_size_budget() {
    let (tpl, out) = fixture();
    write(
        tpl.path(),
        "components/app/big.txt.tera",
        "{% for i in range(end=100000) %}{% for j in range(end=100000) %}0123456789abcdef{% endfor %}{% endfor %}",
    );
    let a = new_cmd(tpl.path(), out.path(), "app")
        .env("STACKWISE_RENDER_MB", "1")
        .timeout(Duration::from_secs(60))
        .assert()
        .code(1);
    assert_mentions(&stderr_of(&a), &["components/app/big.txt.tera", "MiB of output"]);
    assert_empty(out.path());
}

#[cfg(unix)]
#[test]
fn sigint_and_sigterm_end_a_runaway_render_at_once_with_nothing_written() {
    for signal in ["-INT", "-TERM"] {
        let (tpl, out) = fixture();
        write(
            tpl.path(),
            "components/app/slow.txt.tera",
            "{% for i in range(end=100000) %}{% for j in range(end=100000) %}{% endfor %}{% endfor %}",
        );
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("stackwise"))
            .args(["new", "app", "--yes", "--no-git", "-o"])
            .arg(out.path())
            .arg("--template")
            .arg(tpl.path())
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(700));
        let sent = Instant::now();
        let code = crate::common::exit_after_signal(&mut child, signal);
        assert_eq!(code, Some(130), "{signal}");
        assert!(
            sent.elapsed() < Duration::from_secs(3),
            "{signal} took {:?}",
            sent.elapsed()
        );
        assert_empty(out.path());
    }
}

#[test]
fn a_local_subdir_cannot_leave_the_template() {
    let (tpl, out) = fixture();
    for sub in ["../..", "/etc", "a/../../b"] {
        let a = new_cmd(tpl.path(), out.path(), "app")
            .args(["--subdir", sub])
            .assert()
            .code(2);
        assert_mentions(&stderr_of(&a), &["--subdir"]);
        assert_empty(out.path());
    }
    // A symlink on the way is refused even when it points at a real template.
    let elsewhere = TempDir::new().unwrap();
    fixture_template(elsewhere.path());
    std::os::unix::fs::symlink(elsewhere.path(), tpl.path().join("link")).unwrap();
    let a = new_cmd(tpl.path(), out.path(), "app")
        .args(["--subdir", "link"])
        .assert()
        .code(2);
    assert_mentions(&stderr_of(&a), &["symlink", "link"]);
    assert_empty(out.path());
}

#[test]
fn a_git_subdir_through_a_committed_symlink_is_refused() {
    // A repository whose `tpl` is a committed symlink to a directory outside the clone.
    let outside = TempDir::new().unwrap();
    fixture_template(outside.path());
    let repo_dir = TempDir::new().unwrap();
    let repo = git2::Repository::init(repo_dir.path()).unwrap();
    std::os::unix::fs::symlink(outside.path(), repo_dir.path().join("tpl")).unwrap();
    write(repo_dir.path(), "README", "a repository\n");
    let mut index = repo.index().unwrap();
    index
        .add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = git2::Signature::now("t", "t@example.com").unwrap();
    repo.commit(Some("HEAD"), &sig, &sig, "link", &tree, &[]).unwrap();
    let out = TempDir::new().unwrap();
    let url = format!("file://{}", repo_dir.path().display());
    let a = stackwise()
        .args([
            "new",
            "app",
            "--yes",
            "--no-git",
            "--subdir",
            "tpl",
            "--template",
            &url,
            "-o",
        ])
        .arg(out.path())
        .assert()
        .code(2);
    assert_mentions(&stderr_of(&a), &["--subdir", "symlink"]);
    assert_empty(out.path());
}

#[test]
fn rendered_names_with_empty_segments_or_control_characters_are_refused_and_shown_escaped() {
    let (tpl, out) = fixture();
    // `folder` renders into a directory name of the fixture.
    for (value, needle) in [("a//b", "empty path segment"), ("x\u{1b}[2Ky", "control characters")] {
        for dry in [false, true] {
            let mut c = new_cmd(tpl.path(), out.path(), "app");
            c.args(["--set", &format!("folder={value}")]);
            if dry {
                c.arg("--dry-run");
            }
            let a = c.assert().code(1);
            let stderr = stderr_of(&a);
            assert_mentions(&stderr, &[needle]);
            assert!(!stderr.contains('\u{1b}'), "raw escape printed: {stderr:?}");
            assert_empty(out.path());
        }
    }
    // A whole file name that renders with a trailing slash.
    write(tpl.path(), "components/app/{{ project_slug ~ \"/\" }}", "x\n");
    let a = new_cmd(tpl.path(), out.path(), "app").assert().code(1);
    assert_mentions(&stderr_of(&a), &["may not end with `/`"]);
    assert_empty(out.path());
}

#[test]
fn two_paths_that_differ_only_by_case_are_refused() {
    let (tpl, out) = fixture();
    write(tpl.path(), "components/app/readme.md", "lower\n");
    let a = new_cmd(tpl.path(), out.path(), "app").assert().code(1);
    assert_mentions(&stderr_of(&a), &["only by case", "README.md", "readme.md"]);
    assert_empty(out.path());
}

/// `café.txt` composed (NFC) and decomposed (NFD): two names on Linux, one file on macOS.
#[test]
fn two_paths_that_differ_only_by_unicode_normalisation_are_refused() {
    let (tpl, out) = fixture();
    write(tpl.path(), "components/app/caf\u{e9}.txt", "composed\n");
    write(tpl.path(), "components/app/cafe\u{301}.txt", "decomposed\n");
    let a = new_cmd(tpl.path(), out.path(), "app").assert().code(1);
    assert_mentions(&stderr_of(&a), &["only by Unicode normalisation", "macOS"]);
    assert_empty(out.path());
}

#[test]
fn a_template_root_that_is_a_symlink_is_named() {
    let (tpl, out) = fixture();
    let holder = TempDir::new().unwrap();
    let link = holder.path().join("tpl-link");
    std::os::unix::fs::symlink(tpl.path(), &link).unwrap();
    let a = new_cmd(&link, out.path(), "app").assert().code(1);
    assert_mentions(&stderr_of(&a), &["tpl-link", "symlink"]);
    assert_empty(out.path());
}

/// A machine that allows few threads (RLIMIT_NPROC) still gets its project: the render, the
/// writes and the blob hashing that use a second thread when they can do the work on one when
/// they cannot. Runs where it can: as root with `prlimit` and `setpriv` (an unused uid, so the
/// limit counts this run's threads only).
#[test]
fn a_project_is_created_with_few_threads_allowed() {
    let tools = ["prlimit", "setpriv"].iter().all(|t| {
        std::process::Command::new(t)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !(tools && root) {
        eprintln!("skipped: needs root, prlimit and setpriv");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    // A copy the unprivileged user can run (the build directory may be under a private home).
    let bin = dir.path().join("stackwise");
    std::fs::copy(assert_cmd::cargo::cargo_bin("stackwise"), &bin).unwrap();
    let run = |nproc: &str, out: &str, git: bool| {
        let mut cmd = std::process::Command::new("prlimit");
        cmd.args([
            &format!("--nproc={nproc}"),
            "setpriv",
            "--reuid=54321",
            "--regid=54321",
            "--clear-groups",
        ])
        .arg(&bin)
        .args(["new", "demo", "--yes", "--preset", "ai-product", "-o"])
        .arg(dir.path().join(out))
        .env("HOME", dir.path())
        .env_remove("GIT_TEMPLATE_DIR");
        if !git {
            cmd.arg("--no-git");
        }
        cmd.output().unwrap()
    };
    // Main, Ctrl-C handler, command and one render thread: no second thread anywhere. The
    // render in one instance starts right after the first half's thread has ended, which the
    // kernel may still count for a moment: a few runs each.
    for round in 0..3 {
        for (out, git) in [("few-git", true), ("few", false)] {
            if round > 0 {
                std::fs::remove_dir_all(dir.path().join(out)).unwrap();
            }
            let o = run("4", out, git);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
    }
    // Not even the render thread: a clear error, nothing written.
    let o = run("3", "none", false);
    assert_eq!(o.status.code(), Some(1));
    assert_mentions(
        &String::from_utf8_lossy(&o.stderr),
        &["cannot start a thread", "ulimit -u"],
    );
    assert!(!dir.path().join("none").exists());
    let o = run("64", "many", false);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let files = |out: &str| list_files(&dir.path().join(out).join("demo"));
    assert_eq!(files("few"), files("many"));
    assert_eq!(files("few-git"), files("many"));
    assert!(dir.path().join("few-git/demo/.git").is_dir());
    let status = std::process::Command::new("git")
        .args(["-c", "safe.directory=*", "status", "--porcelain"])
        .current_dir(dir.path().join("few-git/demo"))
        .output()
        .unwrap();
    assert!(
        status.status.success() && status.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
}

/// A disk that fills up half way: a clear error naming the file where it was going (not the
/// staging directory, gone by then), exit 1, and nothing left on the disk. Runs where it can: as
/// root, on a small tmpfs it mounts.
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_names_the_file_and_leaves_nothing() {
    struct Mounted(std::path::PathBuf);
    impl Drop for Mounted {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=300k", "tmpfs"])
        .arg(dir.path())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: needs to mount a tmpfs (root)");
        return;
    }
    let _guard = Mounted(dir.path().to_path_buf());
    for git in [true, false] {
        let mut cmd = stackwise();
        cmd.args(["new", "demo", "--yes", "--preset", "ai-product", "-o"])
            .arg(dir.path());
        if !git {
            cmd.arg("--no-git");
        }
        let a = cmd.assert().code(1);
        let stderr = stderr_of(&a);
        let demo = dir.path().join("demo").display().to_string();
        assert_mentions(&stderr, &["No space left", &demo, "nothing was written"]);
        assert!(!stderr.contains(".stackwise-staging"), "{stderr}");
        assert_empty(dir.path());
    }
}
