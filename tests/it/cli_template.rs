//! Template checks as a user meets them through `new` and `lint`: syntax and undefined names
//! reported at their place, paths and names no file system or git takes, bad manifests and flags.

use crate::cli::fixture;
use crate::common::{Fixture, assert_empty, new_cmd, stackwise, write};
use predicates::prelude::*;
use tempfile::TempDir;

/// Adds `rel` with `content` to the fixture template and expects `new` to fail with exit code
/// 1, a message containing every `needle`, and nothing written.
fn assert_template_rejected(rel: &str, content: &str, needles: &[&str]) {
    Fixture::new().with(rel, content).rejects("app", &[], 1, needles);
}

#[test]
fn tera_syntax_error_names_file_and_line() {
    assert_template_rejected(
        "components/app/broken.txt.tera",
        "line one\nline two {{ oops \nline three\n",
        &["components/app/broken.txt.tera:3"],
    );
}

#[test]
fn undefined_variable_names_file_and_line() {
    assert_template_rejected(
        "components/app/u.txt.tera",
        "ok\n{{ not_a_variable }}\n",
        &["not_a_variable", "u.txt.tera:2"],
    );
}

#[test]
fn rendered_paths_cannot_escape_the_target() {
    for (value, needle) in [
        ("../../evil", "would leave the project directory"),
        ("/etc", "absolute paths"),
    ] {
        let (tpl, out) = fixture();
        new_cmd(&tpl, &out, "app")
            .args(["--set", &format!("folder={value}")])
            .assert()
            .code(1)
            .stderr(predicate::str::contains("unsafe template path").and(predicate::str::contains(needle)));
        assert_empty(out.path());
    }
    // A mount outside the project.
    let (tpl3, out3) = fixture();
    let manifest = std::fs::read_to_string(tpl3.path().join("stackwise.toml"))
        .unwrap()
        .replace("at = \"svc\"", "at = \"../svc\"");
    write(tpl3.path(), "stackwise.toml", manifest);
    new_cmd(&tpl3, &out3, "app").assert().code(1).stderr(
        predicate::str::contains("stackwise.toml:49:38: layout `nested` mounts `app` at `../svc`")
            .and(predicate::str::contains("inside the project")),
    );
    assert_empty(out3.path());
    // A templated mount path: not rendered, so it was a directory named `{{ folder }}`.
    let f = Fixture::new();
    let manifest = std::fs::read_to_string(f.tpl.path().join("stackwise.toml"))
        .unwrap()
        .replace("at = \"svc\"", "at = \"{{ folder }}\"");
    write(f.tpl.path(), "stackwise.toml", manifest);
    f.rejects(
        "app",
        &["--layout", "nested"],
        1,
        &["mounts `app` at `{{ folder }}`", "is not rendered"],
    );
    let a = stackwise().arg("lint").arg(f.tpl.path()).assert().code(1);
    assert!(crate::common::stderr_of(&a).contains("is not rendered"));
}

#[cfg(unix)]
#[test]
fn a_template_containing_a_symlink_is_refused() {
    let (tpl, out) = fixture();
    std::os::unix::fs::symlink("/etc/passwd", tpl.path().join("components/app/passwd")).unwrap();
    new_cmd(&tpl, &out, "app").assert().code(1).stderr(
        predicate::str::contains("may not contain symlinks").and(predicate::str::contains("components/app/passwd")),
    );
    assert_empty(out.path());
}

#[test]
fn lint_checks_every_preset_and_boolean_combination() {
    let (tpl, _out) = fixture();
    stackwise()
        .arg("lint")
        .arg(tpl.path())
        .assert()
        .success()
        .stderr(predicate::str::contains("2 presets, 2 layouts"));
    // A syntax error only reached when `extra` is true is still found.
    write(tpl.path(), "components/app/extras/bad.txt.tera", "{% if %}\n");
    stackwise()
        .arg("lint")
        .arg(tpl.path())
        .assert()
        .code(1)
        .stderr(predicate::str::contains("extras/bad.txt.tera").and(predicate::str::contains("extra=true")));
}

#[test]
fn lint_rejects_bad_manifests() {
    let (tpl, _out) = fixture();
    write(
        tpl.path(),
        "presets/bad.toml",
        "id = \"bad\"\ntitle = \"b\"\nlayout = \"nowhere\"\nsummary = \"s\"\nrationale = \"r\"\n",
    );
    stackwise()
        .arg("lint")
        .arg(tpl.path())
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "presets/bad.toml:3:11: layout `nowhere` is not defined",
        ));
    let empty = TempDir::new().unwrap();
    stackwise()
        .arg("lint")
        .arg(empty.path())
        .assert()
        .code(1)
        .stderr(predicate::str::contains("has no stackwise.toml"));
}

/// A fork with mistakes in its manifest, a component and two presets: every one is reported at
/// once, each as `file:line:col: message`, by every command that reads the template.
#[test]
fn every_problem_of_a_broken_fork_is_reported_at_its_place() {
    let (tpl, out) = fixture();
    write(
        tpl.path(),
        "stackwise.toml",
        r#"[template]
name = "broken"

[[variables]]
name = "Flavour"
type = "string"

[[variables]]
name = "count"
type = "integer"
default = 50
max = 10

[[variables]]
name = "count"
type = "bool"

[layouts.single]
mounts = [{ component = "app", at = "../up", flags = { colour = true } }]
"#,
    );
    write(
        tpl.path(),
        "components/app/component.toml",
        "[flags]\nnested = false\n[[conditional]]\nwhen = \"extra and\"\npaths = [\"extras/[x\"]\n",
    );
    write(
        tpl.path(),
        "presets/basic.toml",
        "id = \"basic\"\ntitle = \"Basic\"\nlayout = \"nowhere\"\nsummary = \"s\"\nrationale = \"r\"\n[options]\nflavour = \"x\"\n",
    );
    write(tpl.path(), "presets/deep.toml", "id = \"deep\"\ntitle = \n");
    let expected = [
        "stackwise.toml:5:9: variable name `Flavour` must be a lowercase identifier",
        "stackwise.toml:11:11: variable `count`: the default is invalid: 50 is out of range",
        "stackwise.toml:15:9: variable `count` is declared twice",
        "stackwise.toml:19:38: layout `single` mounts `app` at `../up`: a mount path must be",
        "stackwise.toml:19:56: layout `single` sets flag `colour` on component `app`, which declares no such flag",
        "components/app/component.toml:4:18: conditional `when`: ",
        "components/app/component.toml:5:11: conditional `paths`: invalid glob \"extras/[x\"",
        "presets/basic.toml:3:11: layout `nowhere` is not defined by the template (it defines: single)",
        "presets/basic.toml:7:1: option `flavour` is not a variable of the template",
        "presets/deep.toml:2:9: ",
    ];
    let mut lint = stackwise();
    lint.arg("lint").arg(tpl.path());
    for mut cmd in [new_cmd(&tpl, &out, "app"), lint] {
        let assert = cmd.assert().code(1);
        let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
        assert!(stderr.starts_with("error: 10 problems in the template:\n"), "{stderr}");
        // One a line, in the order of the files and of their lines.
        let lines: Vec<&str> = stderr.lines().skip(1).collect();
        assert_eq!(lines.len(), expected.len(), "{stderr}");
        for (line, want) in lines.iter().zip(expected) {
            assert!(line.starts_with(want), "expected {want:?}, got {line:?} in:\n{stderr}");
        }
    }
    assert_empty(out.path());
}

/// A default or a flag that fails only when a project renders is reported at its place too.
#[test]
fn a_value_that_fails_at_render_time_is_reported_at_its_place() {
    let (tpl, out) = fixture();
    // `tagline` defaults to "{{ project_title }} in {{ flavour }}", letters and spaces only
    // (the default preset sets the flavour).
    new_cmd(&tpl, &out, "App 1").assert().code(1).stderr(predicate::str::contains(
        "stackwise.toml:27:12: variable `tagline`: the default renders to \"App 1 in chocolate\", which is invalid: letters and spaces only",
    ));
    let manifest = std::fs::read_to_string(tpl.path().join("stackwise.toml"))
        .unwrap()
        .replace("count = \"{{ count }}\"", "count = \"{{ cuont }}\"");
    write(tpl.path(), "stackwise.toml", manifest);
    new_cmd(&tpl, &out, "app")
        .args(["--layout", "nested"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "stackwise.toml:49:81: flag `count` of component `app`: Variable `cuont` is not defined",
        ));
    assert_empty(out.path());
}

#[test]
fn a_template_cannot_write_git_metadata() {
    assert_template_rejected(
        "components/app/{{ \".git\" }}/config.tera",
        "[core]\n\tfsmonitor = \"touch pwned\"\n",
        &["`.git` is reserved"],
    );
}

#[test]
fn a_file_name_no_file_system_takes_is_refused() {
    assert_template_rejected(
        "components/app/{{ \".\" }}.tera",
        "x\n",
        &["the project directory's own path"],
    );
    // The fixture's `{{ folder }}/guide.md`, with a 256-byte folder name.
    let long = format!("folder={}", "n".repeat(256));
    Fixture::new().rejects("app", &["--set", &long], 1, &["a path segment of 256 bytes"]);
}

#[test]
fn bad_template_flags_are_usage_errors() {
    let out = TempDir::new().unwrap();
    stackwise()
        .args(["new", "app", "--yes", "--template", "/nonexistent/template", "-o"])
        .arg(out.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--template").and(predicate::str::contains("is not a directory")));
    // Checked before any network access.
    stackwise()
        .args([
            "new",
            "app",
            "--yes",
            "--template",
            "https://127.0.0.1:9/x.git",
            "--subdir",
            "../up",
            "-o",
        ])
        .arg(out.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--subdir"));
    assert_empty(out.path());
}

/// Only version control and tool caches are left out of a template; `dist/` and `target/` are
/// ordinary folder names (a web component's `dist/`, a Python package's `target/` module) and
/// were silently dropped.
#[test]
fn build_output_names_are_template_files_and_caches_are_not() {
    let f = Fixture::new()
        .with("components/app/dist/index.html", "<html>\n")
        .with("components/app/src/target/__init__.py", "X = 1\n")
        .with("components/app/__pycache__/m.cpython-311.pyc", "cache")
        .with("components/app/node_modules/x/index.js", "cache");
    f.new_cmd("app").assert().success();
    let files = crate::common::list_files(f.out.path());
    for kept in ["/dist/index.html", "/src/target/__init__.py"] {
        assert!(files.iter().any(|p| p.ends_with(kept)), "{kept} missing from {files:?}");
    }
    assert!(
        !files
            .iter()
            .any(|p| p.contains("__pycache__") || p.contains("node_modules")),
        "{files:?}"
    );
}

/// What editors and file managers leave in a template folder (`.DS_Store`, swap and backup files,
/// compiled Python) is not copied into projects; names that merely look alike are.
#[test]
fn editor_and_file_manager_leftovers_are_not_template_files() {
    let f = Fixture::new()
        .with("components/app/.DS_Store", "\0\0\0\x01Bud1")
        .with("components/app/src/.main.py.swp", "b0VIM")
        .with("components/app/src/main.py~", "old")
        .with("components/app/src/.#main.py", "user@host")
        .with("components/app/src/Thumbs.db", "x")
        .with("components/app/src/m.pyc", "x")
        .with("components/app/.svn/entries", "12")
        .with("components/app/src/swp.md", "kept\n")
        .with("components/app/src/DS_Store.txt", "kept\n");
    f.new_cmd("app").assert().success();
    let files = crate::common::list_files(f.out.path());
    for kept in ["/src/swp.md", "/src/DS_Store.txt"] {
        assert!(files.iter().any(|p| p.ends_with(kept)), "{kept} missing from {files:?}");
    }
    for junk in [".DS_Store", ".swp", "~", ".#", "Thumbs.db", ".pyc", ".svn"] {
        assert!(
            !files
                .iter()
                .any(|p| p.ends_with(junk) || p.contains(&format!("/{junk}"))),
            "{junk} in {files:?}"
        );
    }
}

/// Copied files count against the render budget too, and are not read past it: a template with a
/// huge (or sparse) file is refused before it fills the memory or the project.
#[test]
fn a_template_file_past_the_budget_is_refused_before_it_is_read() {
    let f = Fixture::new();
    let big = std::fs::File::create(f.tpl.path().join("components/app/blob.bin")).unwrap();
    big.set_len(3 << 20).unwrap(); // sparse: 3 MiB that take no disk
    let a = f.new_cmd("app").env("STACKWISE_RENDER_MB", "2").assert().code(1);
    crate::common::assert_mentions(
        &crate::common::stderr_of(&a),
        &["components/app/blob.bin", "more than 2 MiB", "STACKWISE_RENDER_MB"],
    );
    assert_empty(f.out.path());
    f.new_cmd("app").env("STACKWISE_RENDER_MB", "4").assert().success();
}

/// The answer of a `secret` variable is never shown: not in `.stackwise.toml` (as before) and not
/// in `new --json` or `--dry-run --json`, whose output often lands in CI logs.
#[test]
fn a_secret_answer_is_masked_in_json_output() {
    let f = Fixture::new();
    let manifest = std::fs::read_to_string(f.tpl.path().join("stackwise.toml"))
        .unwrap()
        .replace(
            "[layouts.single]",
            "[[variables]]\nname = \"token\"\ntype = \"string\"\nsecret = true\ndefault = \"\"\n\n[layouts.single]",
        );
    write(f.tpl.path(), "stackwise.toml", manifest);
    for dry in [true, false] {
        let mut c = f.new_cmd(if dry { "dry" } else { "app" });
        c.args(["--set", "token=HUNTER2SECRET", "--json"]);
        if dry {
            c.arg("--dry-run");
        }
        let a = c.assert().success();
        let out = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
        assert!(!out.contains("HUNTER2SECRET"), "{out}");
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(doc["answers"]["token"], "********");
        assert!(doc["answers"]["flavour"].is_string(), "other answers shown as they are");
    }
    let record = std::fs::read_to_string(f.out.path().join("app/.stackwise.toml")).unwrap();
    assert!(
        !record.contains("HUNTER2SECRET") && !record.contains("token"),
        "{record}"
    );
}

/// "next steps" names `make` targets only for a project that has a Makefile: a fork's template
/// may have none.
#[test]
fn next_steps_name_make_targets_only_where_there_is_a_makefile() {
    let f = Fixture::new();
    let said = crate::common::stderr_of(&f.new_cmd("app").assert().success());
    assert!(said.contains("read README.md") && !said.contains("make test"), "{said}");
    let out = TempDir::new().unwrap();
    let a = stackwise()
        .args(["new", "app", "--preset", "ml-api", "--yes", "--no-git", "-o"])
        .arg(out.path())
        .assert()
        .success();
    let said = crate::common::stderr_of(&a);
    assert!(said.contains("make install\n  make test\n  make run"), "{said}");
}
