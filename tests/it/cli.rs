//! The CLI as a user runs it: every flag of `new`, and every bad input (exit code, message, and
//! that nothing was written).

use crate::common::{Fixture, assert_empty, list_files, new_cmd, stackwise, write};
use predicates::prelude::*;
use tempfile::TempDir;

/// Adds `rel` with `content` to the fixture template and expects `new` to fail with exit code
/// 1, a message containing every `needle`, and nothing written.
fn assert_template_rejected(rel: &str, content: &str, needles: &[&str]) {
    Fixture::new().with(rel, content).rejects("app", &[], 1, needles);
}

fn fixture() -> (TempDir, TempDir) {
    let Fixture { tpl, out } = Fixture::new();
    (tpl, out)
}

#[test]
fn generates_the_fixture_with_names_flags_and_conditionals() {
    let (tpl, out) = fixture();
    new_cmd(&tpl, &out, "My App")
        .assert()
        .success()
        .stderr(predicate::str::contains("created my-app"));
    let root = out.path().join("my-app");
    assert_eq!(
        list_files(&root),
        vec![
            ".github/ci.yml",
            ".stackwise.toml",
            "README.md",
            "docs/guide.md",
            "logo.bin",
            "run.sh",
            "src/my_app/__init__.py"
        ]
    );
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert_eq!(readme, "# My App\nMy App in chocolate x3\n-- my-app\n");
    // Foreign brace syntax in a file that is not a template passes through untouched.
    assert_eq!(
        std::fs::read_to_string(root.join(".github/ci.yml")).unwrap(),
        "run: echo ${{ github.sha }}\n"
    );
    // Binary files are copied byte for byte; scripts stay executable.
    assert_eq!(
        std::fs::read(root.join("logo.bin")).unwrap(),
        vec![0u8, 159, 146, 150, 0, 1]
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(root.join("run.sh")).unwrap().permissions().mode();
        assert_eq!(mode & 0o111, 0o111);
    }
    let record = std::fs::read_to_string(root.join(".stackwise.toml")).unwrap();
    assert!(record.contains("preset = \"basic\""), "{record}");
    assert!(record.contains("flavour = \"chocolate\""), "{record}");
}

#[test]
fn mounts_a_component_at_a_sub_path_with_flags() {
    let (tpl, out) = fixture();
    new_cmd(&tpl, &out, "deep_one")
        .args(["--preset", "deep", "--set", "count=7"])
        .assert()
        .success();
    let root = out.path().join("deep-one");
    let files = list_files(&root);
    assert!(files.contains(&"svc/extra.txt".to_string()), "{files:?}");
    assert!(files.contains(&"svc/extras/more.txt".to_string()), "{files:?}");
    assert!(
        !files.iter().any(|f| f.ends_with(".orig")),
        "ignored file written: {files:?}"
    );
    let readme = std::fs::read_to_string(root.join("svc/README.md")).unwrap();
    assert!(readme.contains("(nested at svc, flag count 7)"), "{readme}");
}

#[test]
fn names_the_template_reserves_are_refused() {
    // The built-in template reserves its dependencies' names (`[template] reserved_names`);
    // a fork's template reserves its own, and the fixture reserves none.
    let out = TempDir::new().unwrap();
    stackwise()
        .args(["new", "fastapi", "--yes", "--no-git", "--dry-run", "-o"])
        .arg(out.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("reserved by the template").and(predicate::str::contains("hint:")));
    assert_empty(out.path());
    // Its newest dependency too (the Python services' security headers come from `secure`).
    stackwise()
        .args(["new", "secure", "--yes", "--no-git", "--dry-run", "-o"])
        .arg(out.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("reserved by the template"));
    let (tpl, out) = fixture();
    new_cmd(&tpl, &out, "fastapi").assert().success();
}

#[test]
fn invalid_names_are_refused_and_nothing_is_written() {
    let (tpl, out) = fixture();
    let long = "a".repeat(65);
    for (name, needle) in [
        ("", "empty"),
        ("   ", "empty"),
        ("9lives", "cannot start with a digit"),
        ("class", "Python keyword"),
        ("import", "Python keyword"),
        ("../escape", "path separator"),
        ("a/b", "path separator"),
        ("node_modules", "reserved"),
        ("npm", "reserved"),
        ("platform", "standard library"),
        ("Secrets", "standard library"),
        (long.as_str(), "limit is 64"),
        ("caf\u{e9}", "cannot appear"),
    ] {
        new_cmd(&tpl, &out, name)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(needle).and(predicate::str::contains("hint:")));
        assert_empty(out.path());
    }
}

#[test]
fn bad_set_values_name_the_key() {
    let (tpl, out) = fixture();
    for (set, needle) in [
        ("nope=1", "unknown variable `nope`"),
        ("extra=maybe", "invalid value for `extra`: expected a boolean"),
        ("count=many", "invalid value for `count`: expected an integer"),
        ("count=11", "out of range"),
        ("flavour=mint", "\"mint\" is not one of the choices: vanilla, chocolate"),
        ("tags=a,z", "\"z\" is not one of the choices"),
        ("tagline=no digits 1", "letters and spaces only"),
        (
            "tagline=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "the limit is 40",
        ),
        ("novalue", "expected KEY=VALUE"),
    ] {
        new_cmd(&tpl, &out, "app")
            .args(["--set", set])
            .assert()
            .code(2)
            .stderr(predicate::str::contains(needle));
        assert_empty(out.path());
    }
}

#[test]
fn answers_files_in_toml_and_json() {
    let (tpl, out) = fixture();
    let answers = TempDir::new().unwrap();
    write(
        answers.path(),
        "a.toml",
        "flavour = \"vanilla\"\nextra = true\ncount = 2\n",
    );
    write(
        answers.path(),
        "a.json",
        r#"{"flavour": "vanilla", "tags": ["b", "c"]}"#,
    );
    new_cmd(&tpl, &out, "from-toml")
        .arg("--answers")
        .arg(answers.path().join("a.toml"))
        .assert()
        .success();
    let readme = std::fs::read_to_string(out.path().join("from-toml/README.md")).unwrap();
    assert!(readme.contains("From Toml in vanilla x2"), "{readme}");
    assert!(out.path().join("from-toml/extra.txt").exists());
    new_cmd(&tpl, &out, "from-json")
        .arg("--answers")
        .arg(answers.path().join("a.json"))
        .assert()
        .success();
    let init = std::fs::read_to_string(out.path().join("from-json/src/from_json/__init__.py")).unwrap();
    assert!(init.contains("TAGS = \"bc\""), "{init}");
    // --set wins over the answers file.
    new_cmd(&tpl, &out, "both")
        .arg("--answers")
        .arg(answers.path().join("a.toml"))
        .args(["--set", "count=9"])
        .assert()
        .success();
    assert!(
        std::fs::read_to_string(out.path().join("both/README.md"))
            .unwrap()
            .contains("x9")
    );
}

#[test]
fn broken_answers_files_are_usage_errors() {
    let (tpl, out) = fixture();
    let answers = TempDir::new().unwrap();
    write(answers.path(), "bad.toml", "flavour = \n");
    write(answers.path(), "bad.json", "{\"flavour\": ");
    write(answers.path(), "unknown.toml", "colour = \"red\"\n");
    write(answers.path(), "list.json", "[1, 2]");
    write(
        answers.path(),
        "typo.toml",
        "preest = \"deep\"\n[answers]\nflavour = \"vanilla\"\n",
    );
    write(
        answers.path(),
        "flat.toml",
        "preset = \"deep\"\nflavour = \"vanilla\"\n",
    );
    write(answers.path(), "type.json", r#"{"preset": 5, "answers": {}}"#);
    for (file, needle) in [
        (
            "typo.toml",
            "unknown key `preest` beside the [answers] table (did you mean `preset`?)",
        ),
        ("flat.toml", "`preset` and `layout` go beside an [answers] table"),
        ("type.json", "`preset` must be a string, found 5"),
        ("bad.toml", "invalid TOML"),
        ("bad.json", "invalid JSON"),
        ("unknown.toml", "unknown variable `colour` (in the answers file)"),
        ("list.json", "top level must be a table"),
        ("missing.toml", "cannot read answers file"),
    ] {
        new_cmd(&tpl, &out, "app")
            .arg("--answers")
            .arg(answers.path().join(file))
            .assert()
            .code(2)
            .stderr(predicate::str::contains(needle));
        assert_empty(out.path());
    }
}

#[test]
fn non_empty_target_is_refused_and_force_touches_only_template_files() {
    let (tpl, out) = fixture();
    let target = out.path().join("app");
    write(&target, "mine.txt", "user data\n");
    write(&target, "README.md", "old readme\n");
    new_cmd(&tpl, &out, "app")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("exists and is not empty"));
    assert_eq!(list_files(&target), vec!["README.md", "mine.txt"]);
    assert_eq!(
        std::fs::read_to_string(target.join("README.md")).unwrap(),
        "old readme\n"
    );

    new_cmd(&tpl, &out, "app")
        .arg("--force")
        .assert()
        .success()
        .stderr(predicate::str::contains("overwrote README.md"));
    assert_eq!(std::fs::read_to_string(target.join("mine.txt")).unwrap(), "user data\n");
    assert!(
        std::fs::read_to_string(target.join("README.md"))
            .unwrap()
            .starts_with("# App")
    );
    // No staging directory is left beside the target.
    let siblings: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(siblings, vec![std::ffi::OsString::from("app")]);
}

#[test]
fn a_file_where_the_target_should_be_is_an_error() {
    let (tpl, out) = fixture();
    write(out.path(), "app", "not a directory");
    new_cmd(&tpl, &out, "app")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is not a directory"));
}

#[test]
fn dry_run_lists_files_and_writes_nothing() {
    let (tpl, out) = fixture();
    new_cmd(&tpl, &out, "app")
        .arg("--dry-run")
        .assert()
        .success()
        .stderr(predicate::str::contains("would write 7 files").and(predicate::str::contains("src/app/__init__.py")));
    assert_empty(out.path());
}

#[test]
fn json_output_is_one_document_on_stdout() {
    let (tpl, out) = fixture();
    let assert = new_cmd(&tpl, &out, "app").arg("--json").assert().success();
    let doc: serde_json::Value = serde_json::from_slice(&assert.get_output().stdout).expect("stdout is JSON");
    assert_eq!(doc["layout"], "single");
    assert_eq!(doc["preset"], "basic");
    assert_eq!(doc["answers"]["flavour"], "chocolate");
    assert!(
        doc["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["path"] == "README.md")
    );
    // Human output went to stderr only.
    assert!(
        String::from_utf8_lossy(&assert.get_output().stdout)
            .trim_start()
            .starts_with('{')
    );
}

#[test]
fn git_repository_with_one_initial_commit() {
    let (tpl, out) = fixture();
    let mut c = stackwise();
    c.args(["new", "app", "--yes", "-o"])
        .arg(out.path())
        .arg("--template")
        .arg(tpl.path());
    // No user identity anywhere: the fallback identity is used.
    let home = TempDir::new().unwrap();
    c.env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path())
        .env("GIT_CONFIG_NOSYSTEM", "1");
    c.assert().success().stderr(predicate::str::contains("initial commit"));
    let repo = git2::Repository::open(out.path().join("app")).unwrap();
    let head = repo.head().unwrap();
    assert_eq!(head.shorthand(), Some("main"));
    let commit = head.peel_to_commit().unwrap();
    assert_eq!(commit.parent_count(), 0);
    assert_eq!(commit.author().name(), Some("stackwise"));
    let tree = commit.tree().unwrap();
    assert!(tree.get_path(std::path::Path::new("README.md")).is_ok());
    assert!(tree.get_path(std::path::Path::new(".stackwise.toml")).is_ok());
    assert!(
        repo.statuses(None).unwrap().is_empty(),
        "everything generated is committed"
    );
}

/// A new repository is seeded like `git init` seeds it: from the template directory the user
/// configured (`init.templateDir` or `GIT_TEMPLATE_DIR`: a team's shared hooks), and without one
/// with no sample hooks (git's dozen `*.sample` files cost a new project a file each).
#[test]
fn a_new_repository_takes_the_users_git_template_directory_only() {
    let (tpl, out) = fixture();
    let home = TempDir::new().unwrap();
    let hooks = TempDir::new().unwrap();
    std::fs::create_dir_all(hooks.path().join("hooks")).unwrap();
    std::fs::write(hooks.path().join("hooks/pre-commit"), "#!/bin/sh\nexit 0\n").unwrap();
    let new = |name: &str, config: Option<&str>, env_dir: Option<&std::path::Path>| {
        let mut c = stackwise();
        c.args(["new", name, "--yes", "-o"])
            .arg(out.path())
            .arg("--template")
            .arg(tpl.path())
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env_remove("GIT_TEMPLATE_DIR");
        match config {
            Some(text) => std::fs::write(home.path().join(".gitconfig"), text).unwrap(),
            None => {
                let _ = std::fs::remove_file(home.path().join(".gitconfig"));
            }
        }
        if let Some(dir) = env_dir {
            c.env("GIT_TEMPLATE_DIR", dir);
        }
        c.assert().success();
        let git = out.path().join(name).join(".git");
        let repo = git2::Repository::open(out.path().join(name)).unwrap();
        assert!(repo.statuses(None).unwrap().is_empty());
        git
    };
    let plain = new("plain", None, None);
    let samples: Vec<_> = std::fs::read_dir(plain.join("hooks"))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        samples.iter().all(|n| n == "README.sample"),
        "no sample hooks: {samples:?}"
    );
    let dir = hooks.path().display().to_string();
    let configured = new("configured", Some(&format!("[init]\n\ttemplateDir = {dir}\n")), None);
    assert!(configured.join("hooks/pre-commit").is_file());
    let from_env = new("from-env", None, Some(hooks.path()));
    assert!(from_env.join("hooks/pre-commit").is_file());
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
fn an_unreachable_git_url_is_a_clear_error() {
    let out = TempDir::new().unwrap();
    stackwise()
        .args([
            "new",
            "app",
            "--yes",
            "--no-git",
            "--template",
            "https://127.0.0.1:9/nowhere.git",
            "-o",
        ])
        .arg(out.path())
        .assert()
        .code(1)
        .stderr(predicate::str::contains("cannot clone").and(predicate::str::contains("nowhere.git")));
    assert_empty(out.path());
}

#[test]
fn a_git_template_with_ref_and_subdir() {
    let (tpl, out) = fixture();
    // A repository holding the template in a subdirectory, with a tag on the first commit.
    let repo_dir = TempDir::new().unwrap();
    let repo = git2::Repository::init(repo_dir.path()).unwrap();
    let copy = |from: &std::path::Path, to: &std::path::Path| {
        for f in list_files(from) {
            write(to, &f, std::fs::read(from.join(&f)).unwrap());
        }
    };
    copy(tpl.path(), &repo_dir.path().join("tpl"));
    let sig = git2::Signature::now("t", "t@example.com").unwrap();
    let commit = |repo: &git2::Repository, msg: &str| {
        let mut index = repo.index().unwrap();
        index
            .add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)
            .unwrap();
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let parents: Vec<git2::Commit> = repo
            .head()
            .ok()
            .map(|h| h.peel_to_commit().unwrap())
            .into_iter()
            .collect();
        let refs: Vec<&git2::Commit> = parents.iter().collect();
        repo.commit(Some("HEAD"), &sig, &sig, msg, &tree, &refs).unwrap()
    };
    let first = commit(&repo, "v1");
    repo.tag_lightweight("v1", &repo.find_object(first, None).unwrap(), false)
        .unwrap();
    write(
        &repo_dir.path().join("tpl"),
        "components/app/later.txt",
        "added after v1\n",
    );
    commit(&repo, "v2");
    let url = format!("file://{}#v1", repo_dir.path().display());
    stackwise()
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
        .success();
    let files = list_files(&out.path().join("app"));
    assert!(files.contains(&"README.md".to_string()));
    assert!(
        !files.contains(&"later.txt".to_string()),
        "ref v1 was not checked out: {files:?}"
    );
    let record = std::fs::read_to_string(out.path().join("app/.stackwise.toml")).unwrap();
    assert!(record.contains(&first.to_string()), "revision recorded: {record}");
}

#[test]
fn unknown_preset_and_layout_conflicts() {
    let (tpl, out) = fixture();
    new_cmd(&tpl, &out, "app")
        .args(["--preset", "nope"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "unknown preset `nope`; available presets: basic, deep",
        ));
    new_cmd(&tpl, &out, "app")
        .args(["--preset", "basic", "--layout", "nested"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("uses the single layout"));
    new_cmd(&tpl, &out, "app")
        .args(["--layout", "triple"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown layout `triple`"));
    assert_empty(out.path());
    new_cmd(&tpl, &out, "app")
        .args(["--layout", "nested"])
        .assert()
        .success();
    assert!(out.path().join("app/svc/README.md").exists());
}

#[test]
fn usage_errors_exit_2() {
    stackwise().arg("new").assert().code(2);
    stackwise().args(["new", "x", "--bogus"]).assert().code(2);
    stackwise().arg("frobnicate").assert().code(2);
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
fn completions_are_printed() {
    stackwise()
        .args(["completions", "bash"])
        .assert()
        .success()
        .stdout(predicate::str::contains("stackwise").and(predicate::str::contains("--preset")));
}

#[test]
fn install_runs_the_projects_own_steps_and_commits_the_lockfile() {
    let (tpl, out) = fixture();
    write(
        tpl.path(),
        "components/app/package.json.tera",
        "{\"name\": \"{{ project_slug }}\", \"version\": \"1.0.0\", \"private\": true}\n",
    );
    let mut c = stackwise();
    c.args(["new", "app", "--yes", "--install", "-o"])
        .arg(out.path())
        .arg("--template")
        .arg(tpl.path());
    c.assert()
        .success()
        .stderr(predicate::str::contains("npm install").and(predicate::str::contains("wrote package-lock.json")));
    let root = out.path().join("app");
    assert!(root.join("package-lock.json").is_file());
    let repo = git2::Repository::open(&root).unwrap();
    let tree = repo.head().unwrap().peel_to_tree().unwrap();
    assert!(
        tree.get_path(std::path::Path::new("package-lock.json")).is_ok(),
        "lockfile is in the initial commit"
    );
}

#[test]
fn install_with_a_missing_tool_names_it_and_keeps_the_project() {
    let (tpl, out) = fixture();
    write(
        tpl.path(),
        "components/app/package.json",
        "{\"name\": \"x\", \"version\": \"1.0.0\"}\n",
    );
    let empty_path = TempDir::new().unwrap();
    let mut c = stackwise();
    c.args(["new", "app", "--yes", "--no-git", "--install", "-o"])
        .arg(out.path())
        .arg("--template")
        .arg(tpl.path())
        .env("PATH", empty_path.path());
    c.assert().code(1).stderr(
        predicate::str::contains("`npm` is not installed")
            .and(predicate::str::contains("nodejs.org"))
            .and(predicate::str::contains("retry with: cd")),
    );
    assert!(
        out.path().join("app/README.md").is_file(),
        "the written project stays in place"
    );
}

/// The interactive `new` on a pseudo-terminal: the install question, the preset list (or the
/// workload questions), then the template's questions.
#[cfg(unix)]
mod pty {
    use crate::common::pty::{WaitStatus, key, select, spawn};

    #[test]
    fn picks_a_preset_from_the_list_and_asks_the_templates_questions() {
        let tmp = tempfile::tempdir().unwrap();
        let mut p = spawn(tmp.path(), &["new", "Pty App", "--no-git"]);
        key(&mut p, "Install dependencies now", "n");
        // ai-product, ai-realtime, api-gateway, realtime, data-pipeline, ml-api, not sure
        select(&mut p, "Which preset?", 5);
        p.exp_string("One-line description").unwrap();
        p.send("Iris as a service\r").unwrap();
        p.flush().unwrap();
        p.exp_string("created pty-app (python layout, preset ml-api)").unwrap();
        p.exp_eof().unwrap();
        assert!(matches!(p.process().wait().unwrap(), WaitStatus::Exited(_, 0)));
        let record = std::fs::read_to_string(tmp.path().join("pty-app/.stackwise.toml")).unwrap();
        assert!(record.contains("description = \"Iris as a service\""), "{record}");
    }

    /// Ctrl-C at a question of `new` (a list, a line being typed: blocked reads that do not
    /// poll): "interrupted", exit 130, and nothing on disk, no project and no staging directory.
    #[test]
    fn ctrl_c_at_a_question_exits_130_and_leaves_nothing() {
        for at_the_description in [false, true] {
            let tmp = tempfile::tempdir().unwrap();
            let mut p = spawn(tmp.path(), &["new", "Pty App", "--no-git"]);
            key(&mut p, "Install dependencies now", "n");
            if at_the_description {
                select(&mut p, "Which preset?", 5);
                p.exp_string("One-line description").unwrap();
                p.send("half an answ").unwrap();
                p.flush().unwrap();
            } else {
                p.exp_string("Which preset?").unwrap();
            }
            p.send_control('c').unwrap();
            let rest = p.exp_eof().unwrap();
            assert!(rest.contains("interrupted"), "{rest}");
            assert!(!rest.contains("panicked"), "{rest}");
            match p.process().wait().unwrap() {
                WaitStatus::Exited(_, code) => assert_eq!(code, 130, "{rest}"),
                other => panic!("not a clean exit: {other:?}"),
            }
            let left: Vec<_> = std::fs::read_dir(tmp.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert!(left.is_empty(), "left behind: {left:?}");
        }
    }

    #[test]
    fn not_sure_runs_the_workload_questions() {
        let tmp = tempfile::tempdir().unwrap();
        let mut p = spawn(tmp.path(), &["new", "Pty App", "--no-git"]);
        key(&mut p, "Install dependencies now", "n");
        select(&mut p, "Which preset?", 6);
        select(&mut p, "Is AI / ML part of the product?", 1); // no
        select(&mut p, "Data engineering", 1); // none
        select(&mut p, "Real-time delivery", 3); // core
        for q in [
            "Peak requests per second",
            "Concurrent connections",
            "p99 latency target",
        ] {
            p.exp_string(q).unwrap();
            p.send("\r").unwrap();
            p.flush().unwrap();
        }
        select(&mut p, "What does the team write?", 2); // TypeScript
        key(&mut p, "Share TypeScript types", "y");
        key(&mut p, "Serverless-first", "n");
        key(&mut p, "Regulated domain", "n");
        p.exp_string("Recommended preset: realtime").unwrap();
        p.exp_string("One-line description").unwrap();
        p.send("\r").unwrap();
        p.flush().unwrap();
        p.exp_string("created pty-app (node layout, preset realtime)").unwrap();
        p.exp_eof().unwrap();
        assert!(matches!(p.process().wait().unwrap(), WaitStatus::Exited(_, 0)));
    }
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
fn re_rendering_from_the_record_keeps_the_layout() {
    let (tpl, out) = fixture();
    new_cmd(&tpl, &out, "app")
        .args(["--layout", "nested"])
        .assert()
        .success();
    let record = out.path().join("app/.stackwise.toml");
    new_cmd(&tpl, &out, "app")
        .arg("--answers")
        .arg(&record)
        .args(["--force", "--dry-run"])
        .assert()
        .success()
        .stderr(predicate::str::contains("(nested layout, preset none)"));
}

#[test]
fn dry_run_refuses_a_non_empty_target_like_the_real_run() {
    let (tpl, out) = fixture();
    write(&out.path().join("app"), "mine.txt", "x");
    new_cmd(&tpl, &out, "app")
        .arg("--dry-run")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not empty"));
    new_cmd(&tpl, &out, "app")
        .args(["--dry-run", "--force"])
        .assert()
        .success()
        .stderr(predicate::str::contains("would write"));
    assert_eq!(list_files(&out.path().join("app")), vec!["mine.txt"]);
}

#[test]
fn install_never_runs_template_scripts_nor_touches_the_users_packages() {
    let (tpl, out) = fixture();
    write(
        tpl.path(),
        "components/app/package.json",
        "{\"name\": \"x\", \"version\": \"1.0.0\", \"scripts\": {\"postinstall\": \"touch template-script-ran\"}}\n",
    );
    // A package of the user's own in the target (written with --force): not the template's.
    let target = out.path().join("app");
    write(
        &target,
        "mine/package.json",
        "{\"name\": \"mine\", \"version\": \"1.0.0\"}\n",
    );
    let mut c = stackwise();
    c.args(["new", "app", "--yes", "--no-git", "--install", "--force", "-o"])
        .arg(out.path())
        .arg("--template")
        .arg(tpl.path());
    c.assert().success();
    assert!(target.join("package-lock.json").is_file());
    assert!(
        !target.join("template-script-ran").exists(),
        "a template's install script ran"
    );
    assert!(
        !target.join("mine/package-lock.json").exists(),
        "the user's own package was installed"
    );
}

/// `--force` over a directory where one move fails half way: every file of the user's that was
/// already replaced is put back. An immutable directory (chattr +i) makes the move fail even for
/// root; where chattr is not available the test says so and checks nothing else.
#[cfg(target_os = "linux")]
#[test]
fn force_rolls_back_when_a_move_fails_half_way() {
    let (tpl, out) = fixture();
    let target = out.path().join("app");
    write(&target, "README.md", "the user's readme\n");
    write(&target, "src/app/__init__.py", "the user's package\n");
    let locked = target.join("src/app");
    let chattr = |flag: &str| {
        std::process::Command::new("chattr")
            .arg(flag)
            .arg(&locked)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !chattr("+i") {
        eprintln!("chattr +i is not available here: rollback not exercised");
        return;
    }
    let result = new_cmd(&tpl, &out, "app").arg("--force").assert();
    chattr("-i");
    result.code(1).stderr(predicate::str::contains("src/app/__init__.py"));
    assert_eq!(
        std::fs::read_to_string(target.join("README.md")).unwrap(),
        "the user's readme\n"
    );
    assert_eq!(
        std::fs::read_to_string(target.join("src/app/__init__.py")).unwrap(),
        "the user's package\n"
    );
    let left: Vec<String> = list_files(&target);
    assert_eq!(
        left,
        vec!["README.md", "src/app/__init__.py"],
        "generated files were removed again"
    );
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
