//! Hostile inputs beyond the template's paths and budget (`hostile.rs`): code a template could
//! get run at install, values that would break generated files, and template files stackwise
//! cannot read faithfully (versions, names, conditions).

use std::path::Path;

use crate::common::{Fixture, assert_empty, assert_mentions, list_files, new_cmd, stackwise, stderr_of, write};
use tempfile::TempDir;

fn fixture() -> (TempDir, TempDir) {
    let Fixture { tpl, out } = Fixture::new();
    (tpl, out)
}

/// A shell script that appends `$0` to `log` and then runs `then` (a real program) if given.
fn tattler(log: &Path, then: &str) -> String {
    format!("#!/bin/sh\necho \"$0\" >> '{}'\n{then}\n", log.display())
}

/// `new --install` runs uv and npm on the files a template wrote. None of them may make the
/// tools run the template's own code: a local build backend (uv would build the project), a
/// project `.npmrc` naming another `git` for a git dependency, a `python3` found through a
/// relative PATH entry, or a `.python-version` naming an interpreter by path.
#[cfg(unix)]
#[test]
fn install_runs_no_program_the_template_wrote() {
    let work = TempDir::new().unwrap();
    let ran = work.path().join("ran.log");
    // A git dependency for npm to fetch (offline: a local repository).
    let dep = work.path().join("dep");
    write(&dep, "package.json", "{\"name\": \"dep\", \"version\": \"1.0.0\"}\n");
    for args in [
        &["init", "-q"][..],
        &["add", "-A"],
        &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "dep"],
    ] {
        assert!(
            std::process::Command::new("git")
                .args(args)
                .current_dir(&dep)
                .status()
                .unwrap()
                .success()
        );
    }
    let f = Fixture::new()
        .with(
            "components/app/pyproject.toml",
            "[project]\nname = \"app\"\nversion = \"0.1.0\"\nrequires-python = \">=3.8\"\n\n[build-system]\nrequires = []\nbuild-backend = \"backend\"\nbackend-path = [\".\"]\n",
        )
        .with(
            "components/app/backend.py",
            format!("open({:?}, 'a').write('backend\\n')\n", ran.display().to_string()),
        )
        .with(
            "components/app/package.json",
            format!("{{\"name\": \"app\", \"version\": \"1.0.0\", \"dependencies\": {{\"dep\": \"git+file://{}\"}}}}\n", dep.display()),
        )
        .with("components/app/.npmrc", format!("git={}/evil-git\n", work.path().join("out/app").display()))
        .with("components/app/evil-git", tattler(&ran, "exec git \"$@\""))
        .with("components/app/bin/python3", tattler(&ran, "exit 1"));
    // `new --install` into work/<dir>, with a relative PATH entry first.
    let install = |f: &Fixture, dir: &str| {
        let out = work.path().join(dir);
        std::fs::create_dir_all(&out).unwrap();
        let path = format!("bin:{}", std::env::var("PATH").unwrap_or_default());
        let a = stackwise()
            .args(["new", "app", "--yes", "--no-git", "--install", "-o"])
            .arg(&out)
            .arg("--template")
            .arg(f.tpl.path())
            .env("PATH", path)
            .assert();
        (a, out)
    };
    let (a, out) = install(&f, "out");
    let stderr = stderr_of(&a);
    assert!(
        !ran.exists(),
        "the template's code ran: {}\n{stderr}",
        std::fs::read_to_string(&ran).unwrap_or_default()
    );
    assert_eq!(a.get_output().status.code(), Some(0), "{stderr}");
    assert!(
        out.join("app/uv.lock").is_file() && out.join("app/package-lock.json").is_file(),
        "{stderr}"
    );

    // An interpreter named by path is not run: the step fails and says why; the project stays.
    let f = f.with("components/app/.python-version", "./bin/python3\n");
    let (a, out) = install(&f, "out2");
    let a = a.code(1);
    assert_mentions(&stderr_of(&a), &["names an interpreter by path", "./bin/python3"]);
    assert!(!ran.exists(), "{}", std::fs::read_to_string(&ran).unwrap_or_default());
    assert!(out.join("app/README.md").is_file());
}

/// A description with every printable character the built-in template allows (all but `"` and
/// `\`) lands in pyproject.toml and package.json as valid TOML and JSON, for every preset; a
/// control character (C0, DEL, C1) is refused before anything is written.
#[test]
fn a_description_with_special_characters_stays_valid_toml_and_json_and_control_characters_are_refused() {
    let description = "it's #1: {{ x }} {% if y %} $(id) `id` ${HOME} <b>&amp;</b> %s ; | ~ ^ [a] (b) @! ?*,./=+- \
                       caf\u{e9} \u{2014} \u{2713} \u{1f600} \u{2028}";
    let presets = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("presets")).unwrap();
    for preset in presets.map(|e| e.unwrap().path().file_stem().unwrap().to_str().unwrap().to_string()) {
        let out = TempDir::new().unwrap();
        stackwise()
            .args([
                "new",
                "crx",
                "--preset",
                &preset,
                "--yes",
                "--no-git",
                "--no-install",
                "-o",
            ])
            .arg(out.path())
            .arg("--set")
            .arg(format!("description={description}"))
            .assert()
            .success();
        let project = out.path().join("crx");
        let mut parsed = 0;
        for rel in list_files(&project) {
            let text = || std::fs::read_to_string(project.join(&rel)).unwrap();
            let found = if rel.ends_with("pyproject.toml") {
                let doc: toml::Table = toml::from_str(&text()).unwrap_or_else(|e| panic!("{preset}: {rel}: {e}"));
                doc["project"]["description"].as_str().map(str::to_string)
            } else if rel.ends_with("package.json") && !rel.contains("node_modules") {
                let doc: serde_json::Value =
                    serde_json::from_str(&text()).unwrap_or_else(|e| panic!("{preset}: {rel}: {e}"));
                doc["description"].as_str().map(str::to_string)
            } else {
                continue;
            };
            assert_eq!(found.as_deref(), Some(description), "{preset}: {rel}");
            parsed += 1;
        }
        assert!(parsed > 0, "{preset}: no pyproject.toml or package.json");
    }
    let out = TempDir::new().unwrap();
    for bad in ["a\rb", "a\u{1}b", "a\u{1b}[2Kb", "a\u{7f}b", "a\tb", "a\nb", "a\u{85}b"] {
        let a = stackwise()
            .args([
                "new",
                "crx",
                "--preset",
                "ml-api",
                "--yes",
                "--no-git",
                "--no-install",
                "-o",
            ])
            .arg(out.path())
            .arg("--set")
            .arg(format!("description={bad}"))
            .assert()
            .code(2);
        assert_mentions(&stderr_of(&a), &["description", "control characters"]);
        assert_empty(out.path());
    }
}

/// A template version or migration version that is not strict SemVer 2.0 is refused at its
/// place by lint and new (a migration at such a version was silently taken as 0.0.0 and skipped).
#[test]
fn versions_that_are_not_semver_are_refused_at_their_place() {
    let (tpl, out) = fixture();
    let manifest = std::fs::read_to_string(tpl.path().join("stackwise.toml")).unwrap();
    for (template, migration, expected) in [
        (
            "1.0.0.1",
            "1.0.0",
            "stackwise.toml:4:12: [template] version \"1.0.0.1\" is not a SemVer 2.0 version",
        ),
        (
            "2.0.0",
            "01.0.0",
            "version \"01.0.0\"): `version` \"01.0.0\" is not a SemVer 2.0 version",
        ),
        (
            "2.0.0",
            "1.0.0-",
            "is not a SemVer 2.0 version such as 1.4.0 or 2.0.0-rc.1: empty identifier",
        ),
        ("99999999999999999999.0.0", "1.0.0", "exceeds u64::MAX"),
    ] {
        let text = manifest.replacen(
            "name = \"fixture\"\n",
            &format!("name = \"fixture\"\nversion = \"{template}\"\n"),
            1,
        );
        write(
            tpl.path(),
            "stackwise.toml",
            format!("{text}\n[[migrations]]\nversion = \"{migration}\"\ndrop = \"gone\"\n"),
        );
        let mut lint = stackwise();
        lint.arg("lint").arg(tpl.path());
        for mut cmd in [lint, new_cmd(tpl.path(), out.path(), "app")] {
            let a = cmd.assert().code(1);
            assert_mentions(&stderr_of(&a), &[expected]);
        }
        assert_empty(out.path());
    }
}

/// Two file names that differ only in bytes that are not UTF-8 became one (U+FFFD) and a file
/// was silently dropped: every such file or directory name is refused, named with `\xNN`.
#[test]
fn file_names_that_are_not_utf8_are_refused_and_named_escaped() {
    use std::os::unix::ffi::OsStrExt;
    let (tpl, out) = fixture();
    let app = tpl.path().join("components/app");
    for name in [&b"a\xffb.txt"[..], b"a\xfeb.txt"] {
        std::fs::write(app.join(std::ffi::OsStr::from_bytes(name)), "x\n").unwrap();
    }
    let dir = app.join(std::ffi::OsStr::from_bytes(b"d\xff\x1b"));
    write(&dir, "inside.txt", "x\n");
    let expected = [
        "components/app/a\\xfeb.txt: the file name is not UTF-8",
        "components/app/a\\xffb.txt: the file name is not UTF-8",
        "components/app/d\\xff\\u{1b}: the directory name is not UTF-8",
    ];
    let mut lint = stackwise();
    lint.arg("lint").arg(tpl.path());
    for mut cmd in [lint, new_cmd(tpl.path(), out.path(), "app")] {
        let stderr = stderr_of(&cmd.assert().code(1));
        assert_mentions(&stderr, &expected);
        assert!(
            !stderr.contains("inside.txt") && !stderr.contains('\u{fffd}'),
            "{stderr}"
        );
    }
    assert_empty(out.path());
}

/// A `when` that reads a name its context lacks was silently false (Tera's undefined in a
/// condition): a variable's `when` may read the built-ins and the variables declared before it,
/// a conditional's the variables, `mount_path` and the flags its component declares.
#[test]
fn a_when_naming_an_undefined_variable_or_flag_is_refused_at_its_place() {
    let (tpl, out) = fixture();
    let manifest = std::fs::read_to_string(tpl.path().join("stackwise.toml")).unwrap();
    let manifest = manifest
        .replacen(
            "prompt = \"Flavour?\"\n",
            "prompt = \"Flavour?\"\nwhen = \"extra\"\n",
            1,
        )
        .replacen(
            "name = \"folder\"\n",
            "name = \"folder\"\nwhen = 'layout == \"single\" and nosuch is defined'\n",
            1,
        );
    write(tpl.path(), "stackwise.toml", &manifest);
    let line = |needle: &str| manifest.lines().position(|l| l == needle).unwrap() + 1;
    write(
        tpl.path(),
        "components/app/component.toml",
        "[flags]\nnested = false\ncount = 0\n[[conditional]]\nwhen = \"extr or flags.nestd or flags.count > 1 or mount_path == 'x'\"\npaths = [\"extra.txt\"]\n",
    );
    let expected = [
        format!(
            "stackwise.toml:{}:9: variable `flavour`: `when`: `extra` is not a built-in or a variable declared before this one: it is declared after",
            line("when = \"extra\"")
        ),
        format!(
            "stackwise.toml:{}:32: variable `folder`: `when`: `nosuch` is not a built-in or a variable declared before this one",
            line("when = 'layout == \"single\" and nosuch is defined'")
        ),
        "components/app/component.toml:5:9: conditional `when`: `extr` is not a built-in, a variable of the template, `flags` or `mount_path` (did you mean `extra`?)".into(),
        "components/app/component.toml:5:23: conditional `when`: `flags.nestd`: the component declares no flag `nestd` (did you mean `nested`?)".into(),
    ];
    let mut lint = stackwise();
    lint.arg("lint").arg(tpl.path());
    for mut cmd in [lint, new_cmd(tpl.path(), out.path(), "app")] {
        let stderr = stderr_of(&cmd.assert().code(1));
        assert!(stderr.starts_with("error: 4 problems in the template:\n"), "{stderr}");
        assert_mentions(&stderr, &expected.iter().map(String::as_str).collect::<Vec<_>>());
    }
    assert_empty(out.path());
}
