//! The first day of a fork author (SPEC §7.4): `fork` writes the template as this repository
//! holds it, its recipe in docs/TEMPLATES.md runs as written, `lint` says where it looked for
//! presets, and the prebuilt install path the README promises is configured.

use std::path::Path;
use std::process::Stdio;

use tempfile::TempDir;

use crate::common::{assert_mentions, fixture_template, stackwise, stderr_of};

#[test]
fn lint_refuses_a_template_without_presets_naming_where_it_looked() {
    // A fork that copied the template directory alone: its presets were a sibling tree.
    let root = TempDir::new().unwrap();
    let tpl = root.path().join("templates");
    fixture_template(&tpl);
    std::fs::remove_dir_all(tpl.join("presets")).unwrap();
    let a = stackwise().arg("lint").arg(&tpl).assert().code(1);
    let stderr = stderr_of(&a);
    assert_mentions(
        &stderr,
        &[
            "no preset found",
            &tpl.join("presets").display().to_string(),
            &root.path().join("presets").display().to_string(),
        ],
    );
    // The sibling `presets/` (this repository's layout) is found.
    fixture_template(root.path());
    stackwise().arg("lint").arg(&tpl).assert().success();
}

/// The first ```sh block under `heading` in docs/TEMPLATES.md.
fn recipe(heading: &str) -> String {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/TEMPLATES.md")).unwrap();
    let section = doc.split(heading).nth(1).expect("the section");
    let block = section.split("```sh\n").nth(1).expect("a sh block");
    block.split("\n```").next().unwrap().to_string()
}

#[cfg(unix)]
#[test]
fn the_fork_recipe_of_docs_templates_runs_as_written() {
    let script = recipe("## Fork the built-in template");
    // `stackwise test` installs packages and runs each project's own checks (minutes, network):
    // .ci/run runs it for every preset of the built-in template, which the fork is until edited.
    let lines: Vec<&str> = script.lines().filter(|l| !l.starts_with("stackwise test ")).collect();
    assert_eq!(
        lines.len() + 1,
        script.lines().count(),
        "one `stackwise test` step skipped"
    );
    let work = TempDir::new().unwrap();
    let bin = assert_cmd::cargo::cargo_bin("stackwise");
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &lines.join("\n")])
        .current_dir(work.path())
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .env("GIT_AUTHOR_NAME", "Fork Author")
        .env("GIT_AUTHOR_EMAIL", "author@acme.example")
        .env("GIT_COMMITTER_NAME", "Fork Author")
        .env("GIT_COMMITTER_EMAIL", "author@acme.example")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the recipe failed:\n{stderr}");
    let fork = work.path().join("acme-template");
    let shop = work.path().join("shop");
    // The fork: one git repository, templates/ and presets/ side by side, its README and CI.
    for f in [
        "templates/stackwise.toml",
        "presets/ml-api.toml",
        "README.md",
        ".github/workflows/template.yml",
    ] {
        assert!(fork.join(f).is_file(), "{f}");
    }
    let log = crate::common::git(&fork, &["log", "--format=%s"]);
    let subjects = String::from_utf8_lossy(&log.stdout);
    assert_eq!(subjects.lines().count(), 3, "{subjects}");
    // The project took the fork's default, then its 1.1.0 release.
    let record = std::fs::read_to_string(shop.join(".stackwise.toml")).unwrap();
    assert_mentions(
        &record,
        &["template_version = \"1.1.0\"", "Shop: an Acme python service"],
    );
    let readme = std::fs::read_to_string(shop.join("README.md")).unwrap();
    assert!(readme.contains("Runbook: https://wiki.acme.example/shop"), "{readme}");
    assert_mentions(&stderr, &["forked", "updated  README.md"]);
}

#[test]
fn a_fork_is_the_built_in_template_as_this_repository_holds_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = TempDir::new().unwrap();
    let dir = work.path().join("fork");
    let a = stackwise().arg("fork").arg(&dir).arg("--json").assert().success();
    let doc: serde_json::Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    assert_eq!(doc["presets"].as_array().unwrap().len(), 6, "{doc}");
    for top in ["templates", "presets"] {
        let ours = crate::common::list_files(&root.join(top));
        let theirs = crate::common::list_files(&dir.join(top));
        assert_eq!(ours, theirs, "{top}/");
        for f in &ours {
            assert_eq!(
                std::fs::read(root.join(top).join(f)).unwrap(),
                std::fs::read(dir.join(top).join(f)).unwrap(),
                "{top}/{f}"
            );
        }
    }
    let ci = std::fs::read_to_string(dir.join(".github/workflows/template.yml")).unwrap();
    assert_mentions(
        &ci,
        &[
            "stackwise lint templates",
            "stackwise test templates --preset",
            "--yes",
            "--name",
            "--set description=",
        ],
    );
    // One commit, nothing left out of it.
    let status = crate::common::git(&dir, &["status", "--porcelain"]);
    assert!(status.stdout.is_empty(), "{}", String::from_utf8_lossy(&status.stdout));
    // A second fork into it is refused; the first is untouched.
    let again = stackwise().arg("fork").arg(&dir).assert().code(2);
    assert_mentions(&stderr_of(&again), &["not empty", "new or empty directory"]);
    assert!(!stderr_of(&again).contains("--force"), "fork has no --force");
    // `lint` of the fork's root points at its templates/.
    let lint = stackwise().arg("lint").arg(&dir).assert().code(1);
    assert_mentions(&stderr_of(&lint), &["--subdir templates", "templates"]);
    // The fork's template works as --template directly, presets found beside it.
    let out = TempDir::new().unwrap();
    stackwise()
        .args(["new", "x", "--preset", "realtime", "--yes", "--no-git", "--template"])
        .arg(dir.join("templates"))
        .arg("-o")
        .arg(out.path())
        .assert()
        .success();
}

fn repo_file(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The release workflow is cargo-dist's (`dist generate` wrote it; `dist plan` and actionlint
/// checked it when it changed): every platform the README promises, checksums, both installers,
/// and `cargo binstall` metadata that names dist's archives.
#[test]
fn the_prebuilt_path_the_readme_promises_is_configured() {
    let dist = repo_file("dist-workspace.toml");
    let workflow = repo_file(".github/workflows/release.yml");
    let cargo: toml::Table = toml::from_str(&repo_file("Cargo.toml")).unwrap();
    for target in [
        "x86_64-unknown-linux-gnu",
        "aarch64-unknown-linux-gnu",
        "x86_64-apple-darwin",
        "aarch64-apple-darwin",
        "x86_64-pc-windows-msvc",
    ] {
        assert!(
            dist.contains(&format!("\"{target}\"")),
            "{target} in dist-workspace.toml"
        );
    }
    assert!(dist.contains(r#"installers = ["shell", "powershell"]"#), "{dist}");
    let version = dist
        .lines()
        .find_map(|l| l.strip_prefix("cargo-dist-version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .unwrap();
    assert!(
        workflow.contains(&format!("cargo-dist/releases/download/v{version}/")),
        "release.yml was generated by another dist version than {version}: run `dist generate`"
    );
    let binstall = &cargo["package"]["metadata"]["binstall"];
    assert_eq!(
        binstall["pkg-url"].as_str(),
        Some("{ repo }/releases/download/v{ version }/{ name }-{ target }{ archive-suffix }")
    );
    // The README's URLs are this repository's.
    let repo = cargo["package"]["repository"].as_str().unwrap();
    let readme = repo_file("README.md");
    assert_mentions(
        &readme,
        &[
            &format!("cargo install --locked --git {repo} stackwise"),
            "cargo install --locked --path .",
            &format!("{repo}/releases/latest/download/stackwise-installer.sh | sh"),
            &format!("{repo}/releases/latest/download/stackwise-installer.ps1 | iex"),
            "cargo binstall stackwise",
        ],
    );
    assert!(
        !readme.contains("cargo install --path"),
        "every cargo install is --locked"
    );
}

/// The commits of `fork` and `new` are authored by the user's git identity; without one they
/// fall back to `stackwise <stackwise@localhost>` and say so (as `update` does), never silently.
#[test]
fn the_fallback_author_is_named_only_when_there_is_no_identity() {
    let work = TempDir::new().unwrap();
    let home = TempDir::new().unwrap();
    let run = |args: &[&str]| {
        let mut c = stackwise();
        c.current_dir(work.path())
            .args(args)
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path())
            .env("GIT_CONFIG_NOSYSTEM", "1");
        for k in IDENTITY_VARS {
            c.env_remove(k);
        }
        stderr_of(&c.assert().success())
    };
    let author = |dir: &str| {
        let repo = git2::Repository::open(work.path().join(dir)).unwrap();
        let commit = repo.head().unwrap().peel_to_commit().unwrap();
        commit.author().to_string()
    };
    let told = "warning: no git identity (user.name, user.email) is configured";
    assert!(run(&["fork", "anon"]).contains(told));
    assert_eq!(author("anon"), "stackwise <stackwise@localhost>");
    std::fs::write(
        home.path().join(".gitconfig"),
        "[user]\n\tname = Ada\n\temail = ada@example.com\n",
    )
    .unwrap();
    let tpl = TempDir::new().unwrap();
    fixture_template(tpl.path());
    let said = run(&["new", "app", "--yes", "--template", tpl.path().to_str().unwrap()]);
    assert!(!said.contains("no git identity"), "{said}");
    assert_eq!(author("app"), "Ada <ada@example.com>");
    assert!(!run(&["fork", "named"]).contains("no git identity"));
    assert_eq!(author("named"), "Ada <ada@example.com>");
}

/// The variables git reads an identity from before its configuration.
const IDENTITY_VARS: [&str; 5] = [
    "GIT_AUTHOR_NAME",
    "GIT_AUTHOR_EMAIL",
    "GIT_COMMITTER_NAME",
    "GIT_COMMITTER_EMAIL",
    "EMAIL",
];

/// An identity given the way CI jobs give it, in `GIT_AUTHOR_*` / `GIT_COMMITTER_*` with no
/// configuration: git's commits follow it, and so do stackwise's (author and committer apart),
/// with no "no git identity" warning. `EMAIL` alone gives no name, so it is not an identity.
#[test]
fn an_identity_from_git_environment_variables_authors_the_commits() {
    let work = TempDir::new().unwrap();
    let home = TempDir::new().unwrap();
    let tpl = TempDir::new().unwrap();
    fixture_template(tpl.path());
    let mut c = stackwise();
    c.current_dir(work.path())
        .args(["new", "app", "--yes", "--template", tpl.path().to_str().unwrap()])
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env_remove("EMAIL")
        .env("GIT_AUTHOR_NAME", "Ada")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "CI bot")
        .env("GIT_COMMITTER_EMAIL", "ci@example.com");
    let said = stderr_of(&c.assert().success());
    assert!(!said.contains("no git identity"), "{said}");
    let repo = git2::Repository::open(work.path().join("app")).unwrap();
    let commit = repo.head().unwrap().peel_to_commit().unwrap();
    assert_eq!(commit.author().to_string(), "Ada <ada@example.com>");
    assert_eq!(commit.committer().to_string(), "CI bot <ci@example.com>");
}

/// `--template .` from inside a fork's `templates/` finds the sibling `presets/`: `.` has no
/// parent as written, so `lint` said "no preset found" twice over the same place and `new`
/// rendered the first layout with no preset.
#[test]
fn a_fork_used_from_inside_its_templates_directory_finds_its_presets() {
    let work = TempDir::new().unwrap();
    let dir = work.path().join("fork");
    stackwise().arg("fork").arg(&dir).arg("--no-git").assert().success();
    let inside = dir.join("templates");
    let json = stackwise()
        .current_dir(&inside)
        .args([
            "new",
            "app",
            "--template",
            ".",
            "--yes",
            "--no-git",
            "--dry-run",
            "--json",
        ])
        .assert()
        .success();
    let doc: serde_json::Value = serde_json::from_slice(&json.get_output().stdout).unwrap();
    assert_eq!(doc["preset"], "ai-product", "the fork's default preset");
    // Without them, `lint .` names the sibling it looked in.
    std::fs::rename(dir.join("presets"), dir.join("presets.off")).unwrap();
    let a = stackwise().current_dir(&inside).args(["lint", "."]).assert().code(1);
    let said = stderr_of(&a);
    let parent = dir.canonicalize().unwrap().join("presets");
    assert!(said.contains(&parent.display().to_string()), "{said}");
}

/// `new -o services` inside a monorepo's work tree: the project's own repository would be an
/// embedded one there, so `new` says so and names the monorepo way (`--no-git`); with
/// `--no-git`, or outside any repository, nothing is said.
#[test]
fn new_inside_another_repository_says_it_made_an_embedded_one() {
    let mono = TempDir::new().unwrap();
    git2::Repository::init(mono.path()).unwrap();
    let tpl = TempDir::new().unwrap();
    fixture_template(tpl.path());
    let run = |name: &str, extra: &[&str]| {
        let mut c = stackwise();
        c.args(["new", name, "--yes", "--template", tpl.path().to_str().unwrap(), "-o"])
            .arg(mono.path().join("services"))
            .args(extra);
        stderr_of(&c.assert().success())
    };
    let said = run("api", &[]);
    assert!(
        said.contains("is inside the git repository at") && said.contains("--no-git"),
        "{said}"
    );
    assert!(!run("web", &["--no-git"]).contains("inside the git repository"));
}
