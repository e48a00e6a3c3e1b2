//! The fleet workflow's script (`.github/template-update.sh` of every generated project, written
//! once in the built-in template's `partials/`) against a local template directory, a local
//! project and a bare repository as its remote, with `gh` replaced by a stub that records its
//! arguments: up to date → nothing; behind → a branch and a pull request; conflicts → a draft
//! with the markers committed; someone's commits on the branch → left alone.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::adopt::template;
use crate::common::{git, stackwise, write};
use tempfile::TempDir;

const PARTIALS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/templates/partials");
const BRANCH: &str = "stackwise/template-update";

/// The fixture template (version `v`) with the built-in template's fleet files: its two partials,
/// included by the component at the project root as the built-in components include them.
fn fleet_template(root: &Path, v: u32) {
    template(root, v);
    for name in ["template-update.sh.tera", "template-update.yml.tera"] {
        let text = std::fs::read(Path::new(PARTIALS).join(name)).unwrap();
        write(root, &format!("partials/{name}"), text);
    }
    write(
        root,
        "components/app/.github/template-update.sh.tera",
        "{% include \"partials/template-update.sh.tera\" %}",
    );
    write(
        root,
        "components/app/.github/workflows/template-update.yml.tera",
        "{% set fleet_python = true %}{% include \"partials/template-update.yml.tera\" %}",
    );
}

struct World {
    tpl: TempDir,
    _out: TempDir,
    project: PathBuf,
    remote: PathBuf,
    stub: TempDir,
}

impl World {
    fn new() -> Self {
        let tpl = TempDir::new().unwrap();
        fleet_template(tpl.path(), 1);
        let source = tpl.path().to_string_lossy().into_owned();
        Self::generated(tpl, &["--template", &source])
    }

    /// A project generated from `tpl` with the template flags `template`.
    fn generated(tpl: TempDir, template: &[&str]) -> Self {
        let out = TempDir::new().unwrap();
        stackwise()
            .args(["new", "shop", "--yes", "--preset", "basic", "-o"])
            .arg(out.path())
            .args(template)
            .assert()
            .success();
        let project = out.path().join("shop");
        assert!(project.join(".github/template-update.sh").is_file());
        assert!(project.join(".github/workflows/template-update.yml").is_file());
        let remote = out.path().join("remote.git");
        git(out.path(), &["init", "-q", "--bare", "-b", "main", "remote.git"]);
        git(&project, &["remote", "add", "origin", remote.to_str().unwrap()]);
        git(&project, &["push", "-q", "origin", "main"]);
        let stub = TempDir::new().unwrap();
        write(
            stub.path(),
            "gh",
            r#"#!/bin/sh
# A stand-in for the GitHub CLI: records each call, keeps the body, answers `pr list`.
printf '%s\n' "$*" >>"$GH_LOG"
prev=""
for a in "$@"; do
  if [ "$prev" = "--body-file" ]; then cp "$a" "$GH_LOG.body"; fi
  prev=$a
done
if [ "$1 $2" = "pr list" ] && [ -f "$GH_LOG.open" ]; then cat "$GH_LOG.open"; fi
exit 0
"#,
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(stub.path().join("gh"), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        World {
            tpl,
            _out: out,
            project,
            remote,
            stub,
        }
    }

    fn log(&self) -> PathBuf {
        self.stub.path().join("calls")
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.log())
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Runs the project's own script as the workflow does (from the project root).
    fn run(&self) -> Output {
        let _ = std::fs::remove_file(self.log());
        let path = format!(
            "{}:{}",
            self.stub.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = std::process::Command::new("bash")
            .arg(".github/template-update.sh")
            .current_dir(&self.project)
            .env("PATH", path)
            .env("STACKWISE", assert_cmd::cargo::cargo_bin("stackwise"))
            .env("GH_LOG", self.log())
            .env("NO_COLOR", "1")
            .env("GIT_AUTHOR_NAME", "bot")
            .env("GIT_AUTHOR_EMAIL", "bot@example.com")
            .env("GIT_COMMITTER_NAME", "bot")
            .env("GIT_COMMITTER_EMAIL", "bot@example.com")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the script failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn remote_git(&self, args: &[&str]) -> String {
        String::from_utf8(git(&self.remote, args).stdout).unwrap()
    }

    fn remote_tip(&self) -> Option<String> {
        let out = std::process::Command::new("git")
            .args(["rev-parse", "--verify", "--quiet", &format!("refs/heads/{BRANCH}")])
            .current_dir(&self.remote)
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn local(&self, args: &[&str]) -> String {
        String::from_utf8(git(&self.project, args).stdout).unwrap()
    }
}

#[test]
fn the_fleet_script_proposes_each_template_update_as_a_pull_request() {
    let w = World::new();
    let main_before = w.local(&["rev-parse", "HEAD"]).trim().to_string();

    // Up to date: nothing pushed, gh never called.
    let out = w.run();
    assert!(String::from_utf8_lossy(&out.stdout).contains("up to date"));
    assert!(w.calls().is_empty(), "{:?}", w.calls());
    assert_eq!(w.remote_tip(), None);

    // The template moves on: a branch with the update, a pull request (not a draft).
    fleet_template(w.tpl.path(), 2);
    w.run();
    let calls = w.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(
        calls[0].starts_with(&format!("pr list --head {BRANCH} --base main --state open")),
        "{calls:?}"
    );
    assert!(
        calls[1].starts_with(&format!(
            "pr create --base main --head {BRANCH} --title stackwise update: "
        )),
        "{calls:?}"
    );
    assert!(!calls[1].contains("--draft"), "{calls:?}");
    let tip = w.remote_tip().expect("the branch was pushed");
    let parents = w.remote_git(&["log", "-1", "--format=%P", &tip]);
    assert_eq!(parents.split_whitespace().count(), 2);
    assert!(
        w.remote_git(&["log", "-1", "--format=%B", &tip])
            .contains("Stackwise-Update: ")
    );
    assert!(w.remote_git(&["show", &format!("{tip}:Makefile")]).contains("lint:"));
    assert_eq!(
        w.remote_git(&["rev-parse", "main"]).trim(),
        main_before,
        "main is untouched"
    );
    // The local clone is back on its branch, clean.
    assert_eq!(w.local(&["symbolic-ref", "--short", "HEAD"]).trim(), "main");
    assert_eq!(w.local(&["rev-parse", "HEAD"]).trim(), main_before);
    assert_eq!(w.local(&["status", "--porcelain"]), "");

    // Run again with the pull request open: the same update is already proposed.
    write(w.stub.path(), "calls.open", "7\n");
    let out = w.run();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("already proposes"),
        "{out:?}"
    );
    assert_eq!(w.remote_tip().as_deref(), Some(tip.as_str()));

    // Your change and the template's overlap: the draft carries the conflict markers.
    write(&w.project, "Makefile", "test:\n\techo our own test\n");
    git(&w.project, &["commit", "-q", "-am", "our test target"]);
    git(&w.project, &["push", "-q", "origin", "main"]);
    let tpl_makefile = w.tpl.path().join("components/app/Makefile");
    std::fs::write(&tpl_makefile, "test:\n\techo test v3\n\nlint:\n\techo lint\n").unwrap();
    w.run();
    let calls = w.calls();
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("pr edit 7 --title stackwise update: ")),
        "{calls:?}"
    );
    assert!(calls.iter().any(|c| c == "pr ready 7 --undo"), "{calls:?}");
    let tip = w.remote_tip().unwrap();
    let makefile = w.remote_git(&["show", &format!("{tip}:Makefile")]);
    assert!(
        makefile.contains("<<<<<<< your project") && makefile.contains(">>>>>>> template"),
        "{makefile}"
    );
    assert_eq!(
        w.remote_git(&["log", "-1", "--format=%P", &tip])
            .split_whitespace()
            .count(),
        2
    );
    let body = std::fs::read_to_string(w.log().with_extension("body")).unwrap();
    assert!(
        body.contains("**Conflicts**") && body.contains("- `Makefile`"),
        "{body}"
    );
    assert_eq!(w.local(&["status", "--porcelain"]), "");
    assert_eq!(w.local(&["symbolic-ref", "--short", "HEAD"]).trim(), "main");

    // Someone resolved the conflicts on the branch: the next run leaves their work alone.
    let clone = TempDir::new().unwrap();
    git(
        clone.path(),
        &["clone", "-q", "-b", BRANCH, w.remote.to_str().unwrap(), "c"],
    );
    let c = clone.path().join("c");
    write(&c, "Makefile", "test:\n\techo resolved\n\nlint:\n\techo lint\n");
    git(&c, &["commit", "-q", "-am", "resolve the conflicts"]);
    git(&c, &["push", "-q", "origin", BRANCH]);
    let theirs = w.remote_tip().unwrap();
    write(w.tpl.path(), "components/app/CHANGES.md", "new in v4\n");
    let out = w.run();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("leaving it alone"),
        "{out:?}"
    );
    assert_eq!(w.remote_tip(), Some(theirs));
    assert!(
        !w.calls()
            .iter()
            .any(|c| c.starts_with("pr create") || c.starts_with("pr edit"))
    );
}

/// A project pinned to a template tag (`URL#v1.0.0`, as docs/TEMPLATES.md advises) is up to date
/// with that tag; once the template releases a later one, the script proposes the update to the
/// newest release (`--to`), and the proposed record pins that tag.
#[test]
fn the_fleet_script_moves_a_tag_pinned_project_to_the_newest_release() {
    let tpl = TempDir::new().unwrap();
    git(tpl.path(), &["init", "-q", "-b", "main"]);
    release_in(tpl.path(), 1);
    let url = format!("file://{}#v1.0.0", tpl.path().display());
    let w = World::generated(tpl, &["--template", &url, "--subdir", "tpl"]);
    let out = w.run();
    assert!(String::from_utf8_lossy(&out.stdout).contains("up to date"));
    assert_eq!(w.remote_tip(), None);

    release_in(w.tpl.path(), 2);
    let out = w.run();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("proposing v2.0.0"),
        "{out:?}"
    );
    let calls = w.calls();
    assert!(calls.iter().any(|c| c.starts_with("pr create")), "{calls:?}");
    let tip = w.remote_tip().expect("the branch was pushed");
    let record = w.remote_git(&["show", &format!("{tip}:.stackwise.toml")]);
    assert!(
        record.contains("#v2.0.0") && record.contains("template_version = \"2.0.0\""),
        "{record}"
    );
    assert!(w.remote_git(&["show", &format!("{tip}:Makefile")]).contains("lint:"));
}

/// Commits the fleet template of version `v` under `repo/tpl` and tags it `v<v>.0.0`.
fn release_in(repo: &Path, v: u32) {
    fleet_template(&repo.join("tpl"), v);
    git(repo, &["add", "-A"]);
    git(
        repo,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "-m",
            "release",
        ],
    );
    git(repo, &["tag", &format!("v{v}.0.0")]);
}
