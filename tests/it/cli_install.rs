//! `new --install` and the interactive `new`: the project's own install steps (and only those),
//! a missing tool, the pseudo-terminal prompts, shell completions.

use crate::cli::fixture;
use crate::common::{stackwise, write};
use predicates::prelude::*;
use tempfile::TempDir;

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
