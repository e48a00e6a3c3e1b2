//! The "Re-render with" hint of `.stackwise.toml` and `new --answers .stackwise.toml` keep the
//! recorded template source: a project made from a fork re-renders from the fork, never silently
//! from the built-in template. Contract: SPEC §7.1.

use crate::common::{Fixture, list_files, stackwise};

fn hint(record: &str) -> String {
    record
        .lines()
        .find_map(|l| l.strip_prefix("# Re-render with: "))
        .expect("a Re-render hint")
        .to_string()
}

#[test]
fn the_hint_and_new_answers_re_render_from_the_recorded_fork() {
    // A fork in a directory whose name needs quoting in a shell.
    let fx = Fixture::new();
    let fork = fx.tpl.path().join("my 'fork' $HOME");
    std::fs::create_dir(&fork).unwrap();
    for entry in std::fs::read_dir(fx.tpl.path()).unwrap() {
        let entry = entry.unwrap();
        if entry.path() != fork {
            std::fs::rename(entry.path(), fork.join(entry.file_name())).unwrap();
        }
    }
    stackwise()
        .args(["new", "Forked App", "--yes", "--no-git", "--set", "count=7", "-o"])
        .arg(fx.out.path())
        .arg("--template")
        .arg(&fork)
        .assert()
        .success();
    let project = fx.out.path().join("forked-app");
    let record = std::fs::read_to_string(project.join(".stackwise.toml")).unwrap();
    let line = hint(&record);
    assert!(line.contains("--template '"), "{line}");
    let files_before = list_files(&project);

    // The hint, run verbatim by a shell from the project: the fork renders again, answers kept.
    std::fs::remove_file(project.join("README.md")).unwrap();
    let bin = assert_cmd::cargo::cargo_bin("stackwise");
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{line} --yes --no-git"))
        .current_dir(&project)
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{line}: {}", String::from_utf8_lossy(&out.stderr));
    let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
    assert!(
        readme.contains("x7"),
        "re-rendered from the fork with the answers: {readme}"
    );
    assert_eq!(list_files(&project), files_before);
    assert_eq!(
        std::fs::read_to_string(project.join(".stackwise.toml")).unwrap(),
        record
    );

    // `new --answers .stackwise.toml` without --template takes the recorded fork, and says so.
    let other = tempfile::TempDir::new().unwrap();
    let a = stackwise()
        .args(["new", "Forked App", "--yes", "--no-git", "-o"])
        .arg(other.path())
        .arg("--answers")
        .arg(project.join(".stackwise.toml"))
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(stderr.contains("the template recorded in"), "{stderr}");
    let again = other.path().join("forked-app");
    assert_eq!(list_files(&again), files_before);
    assert_eq!(std::fs::read_to_string(again.join(".stackwise.toml")).unwrap(), record);

    // --template still wins over the record.
    let third = tempfile::TempDir::new().unwrap();
    stackwise()
        .args(["new", "Forked App", "--yes", "--no-git", "--no-install", "--template"])
        .arg(fx.tpl.path().join("missing"))
        .arg("-o")
        .arg(third.path())
        .arg("--answers")
        .arg(project.join(".stackwise.toml"))
        .assert()
        .code(2);
}

#[test]
fn a_built_in_project_s_hint_names_no_template() {
    let out = tempfile::TempDir::new().unwrap();
    stackwise()
        .args([
            "new",
            "plain",
            "--yes",
            "--no-git",
            "--no-install",
            "--preset",
            "ml-api",
            "-o",
        ])
        .arg(out.path())
        .assert()
        .success();
    let record = std::fs::read_to_string(out.path().join("plain/.stackwise.toml")).unwrap();
    assert_eq!(
        hint(&record),
        "stackwise new \"plain\" --answers .stackwise.toml --force -o .."
    );
}

/// An answers file's value for a variable whose `when` is false is not used and not recorded,
/// and it is said (SPEC §7.4: "refused or warned"), where `--set` for it is refused.
#[test]
fn an_answer_that_does_not_apply_is_warned_about_and_not_recorded() {
    let dir = tempfile::TempDir::new().unwrap();
    let answers = dir.path().join("answers.toml");
    std::fs::write(&answers, "worker = true\n").unwrap();
    let out = stackwise()
        .args([
            "new",
            "shop",
            "--preset",
            "realtime",
            "--yes",
            "--dry-run",
            "--json",
            "--answers",
        ])
        .arg(&answers)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: the answer for `worker` does not apply to the node layout"),
        "{stderr}"
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["answers"].get("worker").is_none(), "{doc}");
    assert_eq!(doc["warnings"].as_array().map(Vec::len), Some(1), "{doc}");
}
