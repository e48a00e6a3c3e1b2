//! Shared helpers of the integration tests: the binary, fixture templates, directory listings.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// The `stackwise` binary with a clean environment (no colour, no user git identity needed).
pub fn stackwise() -> Command {
    let mut c = Command::cargo_bin("stackwise").expect("binary built");
    c.env("NO_COLOR", "1");
    c
}

/// The fixture template (see [`fixture_template`]) and an empty output directory: the small
/// builder for "run stackwise on this fixture and expect …".
pub struct Fixture {
    pub tpl: tempfile::TempDir,
    pub out: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Self {
        let tpl = tempfile::TempDir::new().unwrap();
        fixture_template(tpl.path());
        Fixture {
            tpl,
            out: tempfile::TempDir::new().unwrap(),
        }
    }

    /// Adds (or replaces) a file of the template.
    pub fn with(self, rel: &str, content: impl AsRef<[u8]>) -> Self {
        write(self.tpl.path(), rel, content);
        self
    }

    /// `stackwise new NAME --yes --no-git -o OUT --template TPL`; add arguments before running.
    pub fn new_cmd(&self, name: &str) -> Command {
        new_cmd(self.tpl.path(), self.out.path(), name)
    }

    /// Runs `new NAME ARGS…` and expects exit `code`, every needle in stderr, and nothing
    /// written to the output directory. Returns stderr.
    pub fn rejects(&self, name: &str, args: &[&str], code: i32, needles: &[&str]) -> String {
        let a = self.new_cmd(name).args(args).assert().code(code);
        let stderr = stderr_of(&a);
        assert_mentions(&stderr, needles);
        assert_empty(self.out.path());
        stderr
    }
}

/// `stackwise new NAME --yes --no-git -o OUT --template TPL`.
pub fn new_cmd(tpl: impl AsRef<Path>, out: impl AsRef<Path>, name: &str) -> Command {
    let mut c = stackwise();
    c.args(["new", name, "--yes", "--no-git", "-o"])
        .arg(out.as_ref())
        .arg("--template")
        .arg(tpl.as_ref());
    c
}

pub fn stderr_of(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

pub fn assert_mentions(text: &str, needles: &[&str]) {
    for n in needles {
        assert!(text.contains(n), "expected {n:?} in: {text}");
    }
}

/// Runs `git ARGS…` in `dir` with a fixed identity; fails the test when git does.
pub fn git(dir: &Path, args: &[&str]) -> std::process::Output {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=Tester", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every file below `dir`, relative and sorted (ignoring `.git`).
pub fn list_files(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_entry(|e| e.file_name() != ".git")
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().strip_prefix(dir).unwrap().to_string_lossy().replace('\\', "/"))
        .collect();
    out.sort();
    out
}

/// Asserts that `dir` holds nothing at all (no project, no staging leftovers).
pub fn assert_empty(dir: &Path) {
    let left: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(
        left.is_empty(),
        "expected nothing written in {}, found {left:?}",
        dir.display()
    );
}

pub fn write(root: &Path, rel: &str, content: impl AsRef<[u8]>) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

/// A small template exercising every manifest feature.
pub fn fixture_template(root: &Path) {
    write(
        root,
        "stackwise.toml",
        r#"
[template]
name = "fixture"

[[variables]]
name = "flavour"
type = "choice"
choices = ["vanilla", "chocolate"]
default = "vanilla"
prompt = "Flavour?"

[[variables]]
name = "extra"
type = "bool"
default = false

[[variables]]
name = "count"
type = "integer"
default = 3
min = 1
max = 10

[[variables]]
name = "tagline"
type = "string"
default = "{{ project_title }} in {{ flavour }}"
pattern = "^[A-Za-z ]+$"
pattern_message = "letters and spaces only"
max_length = 40

[[variables]]
name = "folder"
type = "string"
default = "docs"

[[variables]]
name = "tags"
type = "list"
choices = ["a", "b", "c"]
default = ["a"]

[layouts.single]
description = "one component at the root"
mounts = [{ component = "app", at = "." }]

[layouts.nested]
description = "the same component in a subdirectory"
mounts = [{ component = "app", at = "svc", flags = { nested = true, count = "{{ count }}" } }]
"#,
    );
    write(
        root,
        "components/app/component.toml",
        r#"
ignore = ["**/*.orig"]
[flags]
nested = false
count = 0
[[conditional]]
when = "extra"
paths = ["extra.txt", "extras"]
"#,
    );
    write(
        root,
        "components/app/README.md.tera",
        "# {{ project_title }}\n{{ tagline }} x{{ count }}{% if flags.nested %} (nested at {{ mount_path }}, flag count {{ flags.count }}){% endif %}\n{% include \"partials/footer.tera\" %}",
    );
    write(root, "partials/footer.tera", "-- {{ project_slug }}\n");
    write(root, "components/app/extra.txt", "extra\n");
    write(root, "components/app/{{ folder }}/guide.md", "guide\n");
    write(root, "components/app/extras/more.txt", "more\n");
    write(root, "components/app/skip.orig", "ignored\n");
    write(
        root,
        "components/app/src/{{ package_name }}/__init__.py.tera",
        "NAME = \"{{ project_slug }}\"\nTAGS = \"{% for t in tags %}{{ t }}{% endfor %}\"\n",
    );
    write(root, "components/app/.github/ci.yml", "run: echo ${{ github.sha }}\n");
    write(root, "components/app/logo.bin", [0u8, 159, 146, 150, 0, 1]);
    write(root, "components/app/run.sh", "#!/bin/sh\necho hi\n");
    write(
        root,
        "presets/basic.toml",
        r#"id = "basic"
title = "Basic"
layout = "single"
summary = "the fixture at the root"
rationale = "for tests"
default = true
[options]
flavour = "chocolate"
"#,
    );
    write(
        root,
        "presets/deep.toml",
        r#"id = "deep"
title = "Deep"
layout = "nested"
summary = "the fixture in svc/"
rationale = "for tests"
[options]
extra = true
"#,
    );
}

/// Driving the binary on a pseudo-terminal (interactive flows).
#[cfg(unix)]
pub mod pty {
    #[allow(unused_imports)]
    pub use rexpect::process::WaitStatus;
    use rexpect::session::{Options, PtySession, spawn_with_options};

    pub const DOWN: &str = "\x1b[B";

    /// Spawns `stackwise ARGS...` in `dir` on a pseudo-terminal.
    pub fn spawn(dir: &std::path::Path, args: &[&str]) -> PtySession {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("stackwise"));
        cmd.args(args)
            .current_dir(dir)
            .env("NO_COLOR", "1")
            .env("TERM", "xterm");
        spawn_with_options(
            cmd,
            Options::new().timeout_ms(Some(20_000)).strip_ansi_escape_codes(true),
        )
        .unwrap()
    }

    /// Waits for `question`, moves down `downs` items and presses Enter.
    pub fn select(p: &mut PtySession, question: &str, downs: usize) {
        p.exp_string(question).unwrap();
        p.send(&DOWN.repeat(downs)).unwrap();
        p.send("\r").unwrap();
        p.flush().unwrap();
    }

    /// Waits for `question`, types `answer` and presses Enter.
    pub fn text(p: &mut PtySession, question: &str, answer: &str) {
        p.exp_string(question).unwrap();
        p.send(answer).unwrap();
        p.send("\r").unwrap();
        p.flush().unwrap();
    }

    /// Waits for `question` and sends one key (a confirmation: `y` or `n`).
    pub fn key(p: &mut PtySession, question: &str, k: &str) {
        p.exp_string(question).unwrap();
        p.send(k).unwrap();
        p.flush().unwrap();
    }
}

/// Sends `signal` (`-INT`, `-TERM`) to `child` and waits up to 10 s for it to exit; its exit code.
#[cfg(unix)]
pub fn exit_after_signal(child: &mut std::process::Child, signal: &str) -> Option<i32> {
    use std::time::{Duration, Instant};
    let status = std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("stackwise still running 10 s after {signal}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
