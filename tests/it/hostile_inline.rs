//! Hostile inline strings: the short strings of a template's manifests that stackwise renders
//! with Tera outside the template files (a variable's `default` and `when`, a mount's flags, a
//! `[[conditional]] when`, a templated file name). Each is held to a budget of its own, so a
//! runaway loop, a flood of output or a string built up in a loop ends `lint` and `new` with an
//! error naming the manifest (or file) and the field, and `new` leaves nothing behind.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{Fixture, assert_empty, assert_mentions, new_cmd, stackwise, stderr_of, write};

/// Nested loops that write nothing: only the clock can stop them (10^10 iterations).
const SPIN: &str = "{% for i in range(end=100000) %}{% for j in range(end=100000) %}{% endfor %}{% endfor %}";

/// Nested loops that write a byte each time: 10 GB of output.
const FLOOD: &str = "{% for i in range(end=100000) %}{% for j in range(end=100000) %}x{% endfor %}{% endfor %}";

/// A string doubled 40 times: 16 TiB, built up without a write.
const DOUBLING: &str = "{% set_global x = \"aaaaaaaaaaaaaaaa\" %}{% for i in range(end=40) %}{% set_global x = x ~ x %}{% endfor %}{{ x | length }}";

/// A short deadline for inline strings, so each test is quick.
const INLINE_MS: &str = "300";

/// How long a command may take before the test calls it hung (it is then killed).
const HUNG: Duration = Duration::from_secs(30);

/// The fixture with `from` in its `stackwise.toml` replaced by `to` (once; `from` must be there).
fn with_manifest(from: &str, to: &str) -> Fixture {
    let f = Fixture::new();
    let path = f.tpl.path().join("stackwise.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from:?} not in the fixture's manifest");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    f
}

/// `stackwise lint TPL` with the short inline deadline: it fails quickly, naming `needles`.
fn lint_fails_quickly(tpl: &Path, needles: &[&str]) {
    let started = Instant::now();
    let a = stackwise()
        .arg("lint")
        .arg(tpl)
        .env("STACKWISE_INLINE_MS", INLINE_MS)
        .timeout(HUNG)
        .assert()
        .code(1);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "lint took {took:?}");
    assert_mentions(&stderr_of(&a), needles);
}

/// `stackwise new` with the short inline deadline: it fails quickly, naming `needles`, and
/// leaves nothing in the output directory.
fn new_fails_quickly(f: &Fixture, args: &[&str], needles: &[&str]) {
    let started = Instant::now();
    let a = f
        .new_cmd("app")
        .args(args)
        .env("STACKWISE_INLINE_MS", INLINE_MS)
        .timeout(HUNG)
        .assert()
        .code(1);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "new took {took:?}");
    assert_mentions(&stderr_of(&a), needles);
    assert_empty(f.out.path());
}

#[test]
fn a_runaway_default_ends_at_the_inline_budget() {
    let f = with_manifest("default = \"docs\"", &format!("default = '{SPIN}'"));
    let needles = [
        "stackwise.toml",
        "variable `folder`",
        "`default`",
        "budget",
        "STACKWISE_INLINE_MS",
    ];
    lint_fails_quickly(f.tpl.path(), &needles);
    new_fails_quickly(&f, &[], &needles);
}

/// A `when` is pasted into `{% if … %}`: one that closes the tag to open a loop is refused before
/// anything renders.
#[test]
fn a_variable_when_that_closes_its_if_is_refused() {
    let when = format!("when = 'true %}}{SPIN}{{% endif %}}{{% if true'\n");
    let f = with_manifest(
        "[[variables]]\nname = \"folder\"\n",
        &format!("[[variables]]\nname = \"folder\"\n{when}"),
    );
    let needles = ["stackwise.toml", "`folder`", "`when`", "`%}`"];
    lint_fails_quickly(f.tpl.path(), &needles);
    new_fails_quickly(&f, &[], &needles);
}

#[test]
fn a_conditional_when_that_closes_its_if_is_refused() {
    let f = Fixture::new();
    write(
        f.tpl.path(),
        "components/app/component.toml",
        format!(
            "[flags]\nnested = false\ncount = 0\n[[conditional]]\nwhen = 'true %}}{SPIN}{{% endif %}}{{% if extra'\npaths = [\"extra.txt\"]\n"
        ),
    );
    let needles = ["components/app/component.toml", "`when`", "`%}`"];
    lint_fails_quickly(f.tpl.path(), &needles);
    new_fails_quickly(&f, &[], &needles);
}

#[test]
fn a_runaway_flag_ends_at_the_inline_budget() {
    let f = with_manifest("count = \"{{ count }}\"", &format!("count = '{SPIN}'"));
    let needles = ["stackwise.toml", "flag `count`", "budget"];
    lint_fails_quickly(f.tpl.path(), &needles);
    new_fails_quickly(&f, &["--layout", "nested"], &needles);
}

#[test]
fn a_runaway_file_name_ends_at_the_inline_budget() {
    let f = Fixture::new().with(&format!("components/app/{SPIN}.txt"), "x\n");
    let needles = ["components/app/{% for i in range(end=100000)", "file name", "budget"];
    lint_fails_quickly(f.tpl.path(), &needles);
    new_fails_quickly(&f, &[], &needles);
}

/// A flood of output ends at the output cap, long before the deadline.
#[test]
fn a_default_that_floods_output_ends_at_the_inline_output_cap() {
    let f = with_manifest("default = \"docs\"", &format!("default = '{FLOOD}'"));
    let started = Instant::now();
    let a = f.new_cmd("app").timeout(HUNG).assert().code(1);
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert_mentions(&stderr_of(&a), &["variable `folder`", "`default`", "KiB of output"]);
    assert_empty(f.out.path());
}

/// A string built up in a loop writes nothing: only the memory the process grows by stops it.
#[cfg(target_os = "linux")]
#[test]
fn a_default_built_up_in_a_loop_ends_at_the_inline_memory_cap() {
    let f = with_manifest("default = \"docs\"", &format!("default = '{DOUBLING}'"));
    let a = f.new_cmd("app").timeout(HUNG).assert().code(1);
    assert_mentions(&stderr_of(&a), &["variable `folder`", "`default`", "MiB of memory"]);
    assert_empty(f.out.path());
}

/// Ctrl-C while an inline string runs away still ends `new` with 130 and nothing written.
#[cfg(unix)]
#[test]
fn sigint_ends_a_runaway_inline_render_with_130() {
    let f = with_manifest("default = \"docs\"", &format!("default = '{SPIN}'"));
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("stackwise"))
        .args(["new", "app", "--yes", "--no-git", "-o"])
        .arg(f.out.path())
        .arg("--template")
        .arg(f.tpl.path())
        .env("NO_COLOR", "1")
        .env("STACKWISE_INLINE_MS", "60000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let code = crate::common::exit_after_signal(&mut child, "-INT");
    assert_eq!(code, Some(130));
    assert_empty(f.out.path());
}

/// An inline string that renders within its budget is not affected: the fixture renders, and a
/// default with a short loop still gives its value.
#[test]
fn a_short_loop_in_a_default_still_renders() {
    let f = with_manifest(
        "default = \"docs\"",
        "default = '{% for i in range(end=3) %}d{{ i }}{% endfor %}'",
    );
    new_cmd(f.tpl.path(), f.out.path(), "app")
        .env("STACKWISE_INLINE_MS", INLINE_MS)
        .timeout(HUNG)
        .assert()
        .success();
    assert!(f.out.path().join("app/d0d1d2/guide.md").is_file());
}

/// `update` renders the same strings: a runaway one ends it at the budget, the project untouched.
#[test]
fn a_runaway_file_name_ends_update_with_the_project_untouched() {
    let f = Fixture::new();
    stackwise()
        .args(["new", "app", "--yes", "-o"])
        .arg(f.out.path())
        .arg("--template")
        .arg(f.tpl.path())
        .assert()
        .success();
    let project = f.out.path().join("app");
    let status = |dir: &Path| crate::common::git(dir, &["status", "--porcelain"]).stdout;
    let head = |dir: &Path| crate::common::git(dir, &["rev-parse", "HEAD"]).stdout;
    let before = (head(&project), status(&project));
    write(f.tpl.path(), &format!("components/app/{SPIN}.txt"), "x\n");
    let started = Instant::now();
    let a = stackwise()
        .arg("update")
        .arg(&project)
        .arg("--template")
        .arg(f.tpl.path())
        .env("STACKWISE_INLINE_MS", INLINE_MS)
        .timeout(HUNG)
        .assert()
        .code(1);
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert_mentions(&stderr_of(&a), &["file name", "budget"]);
    assert_eq!((head(&project), status(&project)), before);
}
