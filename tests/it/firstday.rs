//! The first day (SPEC §7.4): what a newcomer or a fork author meets first — Ctrl-C, closed
//! pipes, mistyped names, answers that do not apply, install logs, where each file comes from.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::common::{Fixture, assert_mentions, fixture_template, list_files, stackwise, stderr_of, write};

/// `dir` holding fake `uv`, `npm` … scripts, first on PATH.
fn fake_tools(tools: &[(&str, &str)]) -> (TempDir, String) {
    let bin = TempDir::new().unwrap();
    for (name, body) in tools {
        let p = bin.path().join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap_or_default());
    (bin, path)
}

/// The fixture template with a `pyproject.toml` at the root, so `--install` runs `uv sync`.
fn python_fixture() -> Fixture {
    Fixture::new().with(
        "components/app/pyproject.toml",
        "[project]\nname = \"x\"\nversion = \"0\"\n",
    )
}

fn files_named(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .collect()
}

/// Waits for `child` to end (at most 30 s) and returns its exit code and stderr.
fn finish(mut child: Child) -> (Option<i32>, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("stackwise still running 30 s after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Waits until `marker` exists (the slow step started), then sends SIGINT to `child`.
fn interrupt_when(child: &Child, marker: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "the slow step never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let ok = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[cfg(unix)]
#[test]
fn ctrl_c_during_install_exits_130_says_interrupted_and_leaves_nothing() {
    let f = python_fixture();
    let tmp = TempDir::new().unwrap();
    let marker = tmp.path().join("uv-started");
    let (_bin, path) = fake_tools(&[("uv", &format!("touch {}\nsleep 30", marker.display()))]);
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("stackwise"))
        .args(["new", "app", "--yes", "--install", "-o"])
        .arg(f.out.path())
        .arg("--template")
        .arg(f.tpl.path())
        .env("NO_COLOR", "1")
        .env("PATH", &path)
        .env("TMPDIR", tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    interrupt_when(&child, &marker);
    let sent = Instant::now();
    let (code, stderr) = finish(child);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(sent.elapsed() < Duration::from_secs(10), "took {:?}", sent.elapsed());
    assert_mentions(&stderr, &["interrupted", "removed"]);
    assert!(!stderr.contains("install step failed"), "{stderr}");
    // All or nothing: the new directory went again, and so did the install log.
    crate::common::assert_empty(f.out.path());
    assert!(files_named(tmp.path(), "stackwise-install-").is_empty());
}

#[cfg(unix)]
#[test]
fn install_logs_are_kept_only_when_a_step_fails() {
    for (body, ok) in [("exit 0", true), ("echo resolver says no; exit 3", false)] {
        let f = python_fixture();
        let tmp = TempDir::new().unwrap();
        let (_bin, path) = fake_tools(&[("uv", body)]);
        let a = f
            .new_cmd("app")
            .arg("--install")
            .env("PATH", &path)
            .env("TMPDIR", tmp.path())
            .assert();
        let logs = files_named(tmp.path(), "stackwise-install-");
        if ok {
            a.success();
            assert!(logs.is_empty(), "{logs:?}");
        } else {
            let stderr = stderr_of(&a.code(1));
            assert_eq!(logs.len(), 1, "{stderr}");
            assert_mentions(&stderr, &[&logs[0].display().to_string()]);
            assert!(std::fs::read_to_string(&logs[0]).unwrap().contains("resolver says no"));
        }
    }
}

#[cfg(unix)]
#[test]
fn ctrl_c_during_stackwise_test_exits_130_and_removes_its_temporary_directory() {
    let tpl = TempDir::new().unwrap();
    fixture_template(tpl.path());
    let tmp = TempDir::new().unwrap();
    let marker = tmp.path().join("step-started");
    let manifest = std::fs::read_to_string(tpl.path().join("stackwise.toml")).unwrap();
    write(
        tpl.path(),
        "stackwise.toml",
        format!(
            "{manifest}\n[test.steps]\nsingle = [\"touch {} && sleep 30\"]\nnested = [\"true\"]\n",
            marker.display()
        ),
    );
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("stackwise"))
        .args(["test", "--yes"])
        .arg(tpl.path())
        .env("NO_COLOR", "1")
        .env("TMPDIR", tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    interrupt_when(&child, &marker);
    let (code, stderr) = finish(child);
    assert_eq!(code, Some(130), "{stderr}");
    assert_mentions(&stderr, &["interrupted", "removed the test directory"]);
    assert!(!stderr.contains("TIMEOUT"), "{stderr}");
    assert!(!stderr.contains("nothing was written"), "{stderr}");
    assert!(files_named(tmp.path(), "stackwise-test-").is_empty());
}

#[cfg(unix)]
#[test]
fn ctrl_c_in_a_command_that_does_not_poll_still_says_interrupted_and_exits_130() {
    // Before anything is written `new` does not poll: a FIFO as the answers file blocks its read.
    let dir = TempDir::new().unwrap();
    let fifo = dir.path().join("answers.toml");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let f = Fixture::new();
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("stackwise"))
        .args(["new", "app", "--yes", "--no-git", "--answers"])
        .arg(&fifo)
        .arg("-o")
        .arg(f.out.path())
        .arg("--template")
        .arg(f.tpl.path())
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let marker = dir.path().join("now");
    std::fs::write(&marker, "").unwrap();
    interrupt_when(&child, &marker);
    let (code, stderr) = finish(child);
    assert_eq!(code, Some(130), "{stderr}");
    assert_mentions(&stderr, &["interrupted"]);
}

#[cfg(unix)]
#[test]
fn a_closed_pipe_ends_quietly_never_with_a_panic() {
    let f = Fixture::new();
    for args in [
        vec!["new", "app", "--dry-run"],
        vec!["new", "app", "--dry-run", "--json"],
        vec!["presets"],
        vec!["completions", "bash"],
        vec!["completions", "fish"],
    ] {
        let template: Vec<&std::ffi::OsStr> = if args[0] == "completions" {
            vec![]
        } else {
            vec!["--template".as_ref(), f.tpl.path().as_os_str()]
        };
        // The reader leaves at once; stackwise must notice on its next write and end quietly.
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("stackwise"))
            .args(&args)
            .args(["--yes", "--no-git", "-o"].iter().filter(|_| args[0] == "new"))
            .args(if args[0] == "new" {
                vec![f.out.path().as_os_str()]
            } else {
                vec![]
            })
            .args(&template)
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        // stderr is closed too in `2>&1 | head -1`.
        drop(child.stderr.take());
        let status = child.wait().unwrap();
        assert_ne!(status.code(), Some(101), "{args:?} panicked");
        assert!(matches!(status.code(), Some(0 | 141)), "{args:?}: {status:?}");
    }
    // And the shell form of the issue, when a shell is there.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{}' new app --yes --no-git --dry-run -o '{}' --template '{}' 2>&1 | head -1; echo \"exit=${{PIPESTATUS:-}}\"",
            assert_cmd::cargo::cargo_bin("stackwise").display(),
            f.out.path().display(),
            f.tpl.path().display()
        ))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("dry run:"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
}

/// A stream that fails otherwise (a full disk) is an error, exit 1, never a panic.
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_under_stdout_is_an_error_never_a_panic() {
    for args in [vec!["presets"], vec!["completions", "bash"]] {
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
        let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("stackwise"))
            .args(&args)
            .stdout(full)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_mentions(&stderr, &["error: cannot write to stdout", "No space left on device"]);
    }
}

#[test]
fn unknown_presets_and_set_keys_get_a_did_you_mean_and_options_get_clap_s() {
    let f = Fixture::new();
    f.rejects(
        "app",
        &["--layout", "singel"],
        2,
        &["unknown layout `singel`", "did you mean `single`?"],
    );
    f.rejects(
        "app",
        &["--preset", "baisc"],
        2,
        &["unknown preset `baisc`", "did you mean `basic`?"],
    );
    f.rejects(
        "app",
        &["--set", "flavor=vanilla"],
        2,
        &["unknown variable `flavor`", "did you mean `flavour`?"],
    );
    f.rejects(
        "app",
        &["--presett", "basic"],
        2,
        &["a similar argument exists: '--preset'"],
    );
    // Nothing close: no guess.
    let stderr = f.rejects("app", &["--preset", "kubernetes"], 2, &["unknown preset `kubernetes`"]);
    assert!(!stderr.contains("did you mean"), "{stderr}");
}

/// The fixture with a variable that applies to the `nested` layout only.
fn fixture_with_a_conditional_variable() -> Fixture {
    let f = Fixture::new();
    let manifest = std::fs::read_to_string(f.tpl.path().join("stackwise.toml")).unwrap();
    let manifest = manifest.replacen(
        "[layouts.single]",
        "[[variables]]\nname = \"replicas\"\ntype = \"integer\"\ndefault = 1\nwhen = 'layout == \"nested\"'\n\n[layouts.single]",
        1,
    );
    f.with("stackwise.toml", manifest)
        .with("components/app/replicas.txt.tera", "{{ replicas }}\n")
}

#[test]
fn a_set_for_a_variable_whose_when_is_false_is_refused_and_never_recorded() {
    let f = fixture_with_a_conditional_variable();
    f.rejects(
        "app",
        &["--preset", "basic", "--set", "replicas=3"],
        2,
        &[
            "`replicas` does not apply here",
            "layout == \"nested\"",
            "single layout",
        ],
    );
    // Where it applies it is taken and recorded.
    f.new_cmd("deep")
        .args(["--preset", "deep", "--set", "replicas=3"])
        .assert()
        .success();
    let record = std::fs::read_to_string(f.out.path().join("deep/.stackwise.toml")).unwrap();
    assert!(record.contains("replicas = 3"), "{record}");
    assert_eq!(
        std::fs::read_to_string(f.out.path().join("deep/svc/replicas.txt")).unwrap(),
        "3\n"
    );
    // From an answers file (a project that grew into another layout) it is ignored: the
    // template sees the default, the record does not list it.
    let answers = f.out.path().join("answers.toml");
    std::fs::write(&answers, "replicas = 5\n").unwrap();
    f.new_cmd("flat")
        .args(["--preset", "basic", "--answers"])
        .arg(&answers)
        .assert()
        .success();
    let record = std::fs::read_to_string(f.out.path().join("flat/.stackwise.toml")).unwrap();
    assert!(!record.contains("replicas"), "{record}");
    assert_eq!(
        std::fs::read_to_string(f.out.path().join("flat/replicas.txt")).unwrap(),
        "1\n"
    );
}

#[test]
fn dry_run_and_json_name_each_file_s_source() {
    let f = Fixture::new();
    let a = f.new_cmd("app").args(["--dry-run", "--json"]).assert().success();
    let doc: serde_json::Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    let files = doc["files"].as_array().unwrap();
    let source_of = |p: &str| files.iter().find(|f| f["path"] == p).map(|f| f["source"].clone());
    assert_eq!(source_of("README.md"), Some("components/app/README.md.tera".into()));
    assert_eq!(
        source_of("docs/guide.md"),
        Some("components/app/{{ folder }}/guide.md".into())
    );
    assert_eq!(
        source_of("src/app/__init__.py"),
        Some("components/app/src/{{ package_name }}/__init__.py.tera".into())
    );
    // The record is stackwise's own.
    assert_eq!(source_of(".stackwise.toml"), Some(serde_json::Value::Null));
    for f in files {
        assert!(f["path"].is_string(), "{f}");
    }
    let stderr = stderr_of(&a);
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("README.md") && l.contains("← components/app/README.md.tera")),
        "{stderr}"
    );
}

#[test]
fn the_built_in_template_s_dry_run_shows_a_gateway_file_s_component() {
    let out = TempDir::new().unwrap();
    let a = stackwise()
        .args(["new", "shop", "--preset", "ai-product", "--dry-run", "--json", "-o"])
        .arg(out.path())
        .assert()
        .success();
    let doc: serde_json::Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    let app = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "gateway/src/app.ts")
        .cloned()
        .unwrap();
    assert_eq!(app["source"], "components/node-service/src/app.ts.tera");
}

/// `stackwise update` on a directory that is neither a stackwise project nor a repository says
/// so, rather than presuming a project generated with `--no-git`; a project without git keeps
/// that hint.
#[test]
fn update_on_a_directory_that_is_not_a_stackwise_project_says_so() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), "notes.txt", "mine\n");
    let a = stackwise().arg("update").arg(dir.path()).assert().code(2);
    let err = stderr_of(&a);
    assert_mentions(&err, &["is not a stackwise project", ".stackwise.toml"]);
    assert!(!err.contains("--no-git"), "{err}");

    write(dir.path(), ".stackwise.toml", "[template]\n");
    let a = stackwise().arg("update").arg(dir.path()).assert().code(2);
    assert_mentions(&stderr_of(&a), &["not a git repository", "--no-git"]);
}

/// Ctrl-C at any moment of a `new`: either the project is complete (the signal came after the
/// last step that looks at it) or nothing is left, no staging directory either. The race this
/// guards: a signal just before `new` starts polling ended the process while the command thread
/// went on to create its staging directory. Sixty runs, the signal spread over the render and
/// the writes.
/// `stackwise new NAME --preset ai-product -o OUT` started (with `--no-git` unless `git`), its
/// stderr to `stderr`.
fn spawn_ai_product(name: &str, out: &Path, git: bool, stderr: Stdio) -> Child {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("stackwise"));
    cmd.args(["new", name, "--yes", "--preset", "ai-product", "-o"])
        .arg(out)
        .stdout(Stdio::null())
        .stderr(stderr);
    if !git {
        cmd.arg("--no-git");
    }
    cmd.spawn().unwrap()
}

/// Sends SIGINT to `child` `times` times, waits for it to end, and names what it left in `out`:
/// its exit code, its stderr and the names in `out`.
#[cfg(unix)]
fn interrupt_and_list(child: Child, times: usize, out: &Path) -> (Option<i32>, String, Vec<String>) {
    for _ in 0..times {
        let _ = std::process::Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
    }
    let (code, stderr) = finish(child);
    let left = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    (code, stderr, left)
}

#[cfg(unix)]
#[test]
fn ctrl_c_at_any_moment_of_new_leaves_a_whole_project_or_nothing() {
    let tmp = TempDir::new().unwrap();
    for i in 0..60u64 {
        let out = tmp.path().join(format!("run{i}"));
        std::fs::create_dir(&out).unwrap();
        let child = spawn_ai_product("demo", &out, i % 2 == 0, Stdio::piped());
        // 2–31 ms: a release build renders in about ten, a debug build takes longer.
        std::thread::sleep(Duration::from_micros(2_000 + (i * 7_919) % 29_000));
        let (code, stderr, left) = interrupt_and_list(child, 1, &out);
        match code {
            Some(0) => assert_eq!(left, ["demo"], "run {i}: {stderr}"),
            // 130 from stackwise, or killed by the signal before its handler was installed.
            _ => assert!(left.is_empty(), "run {i} ({code:?}) left {left:?}: {stderr}"),
        }
    }
}

/// A second Ctrl-C ends `new` without waiting for it to clean up (`timeout -s INT` sends two, to
/// the process and its group): the staging directory goes all the same, and the target holds a
/// whole project or nothing.
#[cfg(unix)]
#[test]
fn a_second_ctrl_c_during_new_still_removes_the_staging_directory() {
    let tmp = TempDir::new().unwrap();
    let run = |out: &Path, git: bool| spawn_ai_product("demo", out, git, Stdio::piped());
    // The signals are spread over an undisturbed run, however long it takes in this build.
    let reference = tmp.path().join("reference");
    std::fs::create_dir(&reference).unwrap();
    let started = Instant::now();
    let (code, stderr) = finish(run(&reference, true));
    assert_eq!(code, Some(0), "{stderr}");
    let took = started.elapsed();
    let whole = list_files(&reference.join("demo"));
    let runs = 60u32;
    for i in 0..runs {
        let out = tmp.path().join(format!("run{i}"));
        std::fs::create_dir(&out).unwrap();
        let child = run(&out, i % 2 == 0);
        std::thread::sleep(took * (i + 1) / runs);
        let (code, stderr, left) = interrupt_and_list(child, 2, &out);
        assert!(
            left.is_empty() || (left == ["demo"] && list_files(&out.join("demo")) == whole),
            "run {i} ({code:?}) left {left:?}: {stderr}"
        );
    }
}

/// A run killed outright (SIGKILL, the OOM killer) cannot clean up after itself: its project is
/// whole or absent (it appears in one rename), and the staging directory it leaves is removed by
/// the next run beside it, while a run still going keeps its own.
#[cfg(unix)]
#[test]
fn what_a_killed_new_leaves_is_cleaned_by_the_next_run() {
    let tmp = TempDir::new().unwrap();
    let run = |name: &str, git: bool| spawn_ai_product(name, tmp.path(), git, Stdio::null());
    let staging_dirs = || {
        std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".stackwise-staging-"))
            .count()
    };
    let mut killed_mid_write = 0;
    for i in 0..30u64 {
        let mut child = run(&format!("k{i}"), i % 2 == 0);
        // 1–120 ms: over the render, the writes and the move of a debug build (~110 ms).
        std::thread::sleep(Duration::from_micros(1_000 + (i * 7_919) % 119_000));
        child.kill().unwrap();
        child.wait().unwrap();
        if staging_dirs() > 0 {
            killed_mid_write += 1;
        }
    }
    let whole = run("whole", true).wait().unwrap();
    assert!(whole.success());
    assert_eq!(
        staging_dirs(),
        0,
        "the run after the kills removes their staging directories"
    );
    let expected = list_files(&tmp.path().join("whole"));
    for i in 0..30 {
        let dir = tmp.path().join(format!("k{i}"));
        if dir.exists() {
            assert_eq!(list_files(&dir).len(), expected.len(), "k{i} is whole or absent");
            assert_eq!(dir.join(".git").is_dir(), i % 2 == 0, "k{i} has its repository");
        }
    }
    eprintln!("{killed_mid_write} of 30 runs killed while writing");
}

/// A `--force` run killed while moving files into place leaves the user's replaced files in its
/// staging directory: the next run (`new` or `fork`) keeps it and says where they are (`--json`
/// too).
#[cfg(unix)]
#[test]
fn the_files_a_killed_force_run_replaced_are_kept_and_named() {
    let tmp = TempDir::new().unwrap();
    let left = tmp.path().join(".stackwise-staging-k1ll3d.run");
    write(&left, "replaced/src/app.py", "the user's own\n");
    let a = stackwise()
        .args(["new", "demo", "--yes", "--preset", "ml-api", "-o"])
        .arg(tmp.path())
        .assert()
        .success();
    assert_mentions(
        &stderr_of(&a),
        &[".stackwise-staging-k1ll3d.run", "replaced/", "--force"],
    );
    assert_eq!(
        std::fs::read_to_string(left.join("replaced/src/app.py")).unwrap(),
        "the user's own\n"
    );
    let out = stackwise()
        .args([
            "new", "again", "--yes", "--preset", "ml-api", "--no-git", "--json", "-o",
        ])
        .arg(tmp.path())
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["interrupted_runs"][0].as_str().unwrap(), left.to_str().unwrap());
    let a = stackwise()
        .args(["fork", "--no-git"])
        .arg(tmp.path().join("forked"))
        .assert()
        .success();
    assert_mentions(&stderr_of(&a), &[".stackwise-staging-k1ll3d.run", "replaced/"]);
    assert!(left.join("replaced/src/app.py").exists());
}
