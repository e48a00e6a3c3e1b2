//! More of `update` you can trust (SPEC §7.1): defects an adversarial tester found — skip
//! patterns on new files and negations, merge state left by a kill, hidden local edits,
//! submodules, a directory that becomes a file, sparse checkouts.

use super::{Project, abort, conflicted, project, refused, state, statuses, stderr};
use crate::common::{git, stackwise};

/// Sets the project's `[update] skip` to `entries` and commits it.
fn set_skip(p: &Project, entries: &[&str]) {
    let record = std::fs::read_to_string(p.dir.join(".stackwise.toml")).unwrap();
    let list: Vec<String> = entries.iter().map(|e| format!("{e:?}")).collect();
    let skip = format!("skip = [{}]", list.join(", "));
    let updated = with_skip_line(&record, &skip);
    p.write(".stackwise.toml", &updated);
    p.commit("skip");
}

/// The record with its `skip = [...]` line replaced.
fn with_skip_line(record: &str, skip: &str) -> String {
    record
        .lines()
        .map(|l| if l.starts_with("skip = ") { skip } else { l })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[test]
fn a_skip_pattern_matching_a_new_template_file_skips_it() {
    for pattern in ["docs/**", "/docs", "docs/", "docs", "*.md", "**"] {
        let p = project(
            &[("README.md", "hi\n"), ("a.txt", "a\n")],
            &[("README.md", "hi\n"), ("a.txt", "a2\n"), ("docs/new.md", "n\n")],
        );
        set_skip(&p, &[pattern]);
        let before = state(&p.dir);
        let out = p.update().args(["--dry-run", "--json"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{pattern} dry-run: {}", stderr(&out));
        assert_eq!(state(&p.dir), before);
        let check = p.update().arg("--check").output().unwrap();
        assert!(
            matches!(check.status.code(), Some(0 | 3)),
            "{pattern} --check: {}",
            stderr(&check)
        );
        let out = p.update().arg("--json").output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{pattern}: {}", stderr(&out));
        let files = statuses(&out);
        assert!(
            files.contains(&("docs/new.md".into(), "skipped".into())),
            "{pattern}: {files:?}"
        );
        assert!(
            !p.dir.join("docs").exists(),
            "{pattern}: the skipped new file was written"
        );
        assert!(super::clean(&p.dir), "{pattern}");
    }
}

#[test]
fn abort_restores_exactly_after_a_kill_left_an_empty_merge_head() {
    let (p, before) = conflicted();
    // What a kill between the creation and the write of MERGE_HEAD would leave.
    std::fs::write(p.dir.join(".git/MERGE_HEAD"), "").unwrap();
    let out = p.update().arg("--dry-run").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("update --abort"), "{}", stderr(&out));
    let out = abort(&p);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(state(&p.dir), before);
    p.update().assert().code(3);
}

#[test]
fn abort_restores_orig_head_after_a_kill_left_it_empty() {
    let (p, before) = conflicted();
    // Killed after the journal and an empty ORIG_HEAD, before anything else: the merge state
    // and the work tree as they were.
    let journal = std::fs::read(p.dir.join(".git/stackwise-update")).unwrap();
    git(&p.dir, &["merge", "--abort"]);
    std::fs::write(p.dir.join(".git/stackwise-update"), journal).unwrap();
    std::fs::write(p.dir.join(".git/ORIG_HEAD"), "").unwrap();
    let out = abort(&p);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(state(&p.dir), before);
}

#[test]
fn a_negated_skip_entry_takes_the_file_back() {
    let p = project(
        &[("docs/z.md", "z\n"), ("docs/y.md", "y\n")],
        &[("docs/z.md", "z2\n"), ("docs/y.md", "y2\n")],
    );
    set_skip(&p, &["docs/**", "!docs/z.md"]);
    let out = p.update().arg("--json").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let files = statuses(&out);
    assert!(files.contains(&("docs/y.md".into(), "skipped".into())), "{files:?}");
    assert!(files.contains(&("docs/z.md".into(), "updated".into())), "{files:?}");
    assert_eq!(std::fs::read_to_string(p.dir.join("docs/z.md")).unwrap(), "z2\n");
    assert_eq!(std::fs::read_to_string(p.dir.join("docs/y.md")).unwrap(), "y\n");
}

#[test]
fn a_hidden_local_edit_is_refused_up_front_and_kept() {
    for bit in ["--skip-worktree", "--assume-unchanged"] {
        let p = project(&[("cfg.txt", "port=1\n")], &[("cfg.txt", "port=1\n#v2\n")]);
        git(&p.dir, &["update-index", bit, "cfg.txt"]);
        p.write("cfg.txt", "port=9999 # local only\n");
        refused(&p, &[], "cfg.txt");
        let err = stderr(&p.update().output().unwrap());
        assert!(err.contains("--no-skip-worktree"), "{bit}: {err}");
        assert_eq!(
            std::fs::read_to_string(p.dir.join("cfg.txt")).unwrap(),
            "port=9999 # local only\n"
        );
        let flags = String::from_utf8_lossy(&git(&p.dir, &["ls-files", "-v", "cfg.txt"]).stdout).into_owned();
        assert!(!flags.starts_with('H'), "{bit}: the bit was cleared: {flags}");
    }
}

#[test]
fn a_sparse_checkout_is_refused_honestly_not_as_uncommitted_changes() {
    let tmp = tempfile::TempDir::new().unwrap();
    let (t1, t2) = (tmp.path().join("v1"), tmp.path().join("v2"));
    super::template(&t1, "1.0.0", &[("a.txt", "a\n")], "");
    super::template(&t2, "2.0.0", &[("a.txt", "a2\n")], "");
    let mono = tmp.path().join("mono");
    std::fs::create_dir(&mono).unwrap();
    git(&mono, &["init", "-q", "-b", "main"]);
    crate::common::write(&mono, "other/o.txt", "o\n");
    super::generate(&mono.join("svc"), "api", &t1, &["--no-git"]);
    git(&mono, &["add", "-A"]);
    git(&mono, &["commit", "-q", "-m", "monorepo"]);
    git(&mono, &["sparse-checkout", "set", "svc/api"]);
    let before = state(&mono);
    for dry in [true, false] {
        let mut c = stackwise();
        c.arg("update")
            .arg(mono.join("svc/api"))
            .arg("--template")
            .arg(&t2)
            .arg("--yes");
        if dry {
            c.arg("--dry-run");
        }
        let out = c.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains("sparse checkout"), "{}", stderr(&out));
        assert!(!stderr(&out).contains("uncommitted"), "{}", stderr(&out));
        assert_eq!(state(&mono), before);
    }
}

/// Adds a submodule at `vendor/lib` (with an ignored file in its work tree) and commits it.
fn with_submodule(p: &Project) {
    let lib = p.tmp.path().join("lib");
    std::fs::create_dir(&lib).unwrap();
    git(&lib, &["init", "-q"]);
    crate::common::write(&lib, "lib.txt", "lib\n");
    git(&lib, &["add", "-A"]);
    git(&lib, &["commit", "-q", "-m", "lib"]);
    let url = lib.display().to_string();
    let add = [
        "-c",
        "protocol.file.allow=always",
        "submodule",
        "add",
        "-q",
        &url,
        "vendor/lib",
    ];
    git(&p.dir, &add);
    p.commit("a submodule");
    p.write("vendor/lib/.env", "TOKEN=1\n");
    std::fs::write(p.dir.join(".git/modules/vendor/lib/info/exclude"), ".env\n").unwrap();
}

#[test]
fn a_template_file_at_or_below_a_submodule_is_refused_and_the_submodule_kept() {
    for path in ["vendor/lib", "vendor/lib/x.txt"] {
        let p = project(&[("a.txt", "a\n")], &[("a.txt", "a2\n"), (path, "x\n")]);
        with_submodule(&p);
        refused(&p, &[], "vendor/lib");
        for kept in [".git", "lib.txt", ".env"] {
            assert!(p.dir.join("vendor/lib").join(kept).exists(), "{path}: {kept} deleted");
        }
        // Skipped, the path is no longer the template's: the update goes through.
        set_skip(&p, &["vendor/lib"]);
        let out = p.update().output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{path}: {}", stderr(&out));
        assert!(p.dir.join("vendor/lib/.env").exists());
    }
}

#[test]
fn a_directory_the_template_turns_into_a_file_updates_cleanly() {
    let p = project(
        &[("cfg/a.txt", "a\n"), ("README.md", "hi\n")],
        &[("cfg", "now a file\n"), ("README.md", "hi\n")],
    );
    let out = p.update().arg("--dry-run").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = p.update().arg("--json").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(p.dir.join("cfg")).unwrap(), "now a file\n");
    assert!(super::clean(&p.dir));
    // With a conflict beside it, `--abort` brings the directory back exactly.
    let p = project(
        &[("cfg/a.txt", "a\n"), ("s.txt", "1\n")],
        &[("cfg", "now a file\n"), ("s.txt", "2\n")],
    );
    p.write("s.txt", "3\n");
    p.commit("mine");
    let before = state(&p.dir);
    p.update().assert().code(3);
    assert!(p.dir.join("cfg").is_file());
    let out = abort(&p);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(state(&p.dir), before);
    // An untracked file left in such a directory is in the way, and named.
    let p = project(
        &[("cfg/a.txt", "a\n"), ("README.md", "hi\n")],
        &[("cfg", "now a file\n"), ("README.md", "hi\n")],
    );
    p.write("cfg/mine.txt", "mine\n");
    refused(&p, &[], "cfg/mine.txt");
}

/// A template older than the project's recorded version is refused (exit 2, nothing changed),
/// `--check` and `--dry-run` alike, rather than merged back or reported "behind".
#[test]
fn an_older_template_version_is_refused_not_merged_back() {
    for older in ["1.9.0", "2.0.0-rc.1"] {
        let p = project(&[("a.txt", "a\n")], &[("a.txt", "a2\n")]);
        p.update().assert().success();
        let v3 = p.tmp.path().join("older");
        super::template(&v3, older, &[("a.txt", "a0\n")], "");
        let before = state(&p.dir);
        for extra in [&["--check"][..], &["--dry-run"], &[]] {
            let out = stackwise()
                .arg("update")
                .arg(&p.dir)
                .arg("--template")
                .arg(&v3)
                .arg("--yes")
                .args(extra)
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(2), "{older} {extra:?}: {}", stderr(&out));
            assert!(
                stderr(&out).contains("older than the project's 2.0.0"),
                "{}",
                stderr(&out)
            );
        }
        assert_eq!(state(&p.dir), before);
    }
}

/// SIGTERM or Ctrl-C at any moment of `update --abort` never leaves a git lock behind: the
/// abort finishes, or has not started; either way a second `--abort` (or none) gives back the
/// project exactly as it was before the update. (It once ended the process inside libgit2's
/// reset, holding `index.lock` or a ref's lock: without the fix, 30 signals over the
/// roll-back of 4,000 files left `refs/heads/main.lock`; with 1,500 files and 12 signals the
/// window was missed.)
#[cfg(unix)]
#[test]
fn a_signal_during_abort_leaves_no_lock_and_the_project_recoverable() {
    // Many new files: the roll-back removes each, which gives the signal a window.
    let mut v2: Vec<(String, String)> = (0..4000).map(|i| (format!("gen/f{i}.txt"), format!("{i}\n"))).collect();
    v2.push(("settings.txt".into(), "timeout = 2\n".into()));
    let v2: Vec<(&str, &str)> = v2.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let p = project(&[("settings.txt", "timeout = 1\n")], &v2);
    p.write("settings.txt", "timeout = 3\n");
    p.commit("mine");
    let before = state(&p.dir);
    let bin = assert_cmd::cargo::cargo_bin("stackwise");
    for i in 0..30u64 {
        p.update().assert().code(3);
        let child = std::process::Command::new(&bin)
            .arg("update")
            .arg(&p.dir)
            .arg("--abort")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_micros(2_000 + i * 3_000));
        let signal = if i % 2 == 0 { "-TERM" } else { "-INT" };
        let _ = std::process::Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status();
        let out = child.wait_with_output().unwrap();
        let locks: Vec<_> = walkdir::WalkDir::new(p.dir.join(".git"))
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".lock"))
            .map(|e| e.path().display().to_string())
            .collect();
        assert!(
            locks.is_empty(),
            "run {i} ({:?}) left {locks:?}: {}",
            out.status.code(),
            stderr(&out)
        );
        if state(&p.dir) != before {
            let again = abort(&p);
            assert_eq!(again.status.code(), Some(0), "run {i}: {}", stderr(&again));
        }
        assert_eq!(state(&p.dir), before, "run {i}");
    }
}

/// A template version that adds the `.gitattributes` giving its new file to a configured filter
/// driver (`*.bin filter=lfs` with git-lfs installed): the attributes before the update name no
/// filter, so the check must ask the result's. Refused before anything is written; the same
/// attributes for a driver this machine does not configure are no reason, and the update runs.
#[test]
fn a_filter_the_new_template_version_adds_in_gitattributes_is_refused_too() {
    let p = project(
        &[("README.md", "hi\n")],
        &[
            ("README.md", "hi\n"),
            ("new.txt", "brand new\n"),
            ("docs/.gitattributes", "*.md filter=rot\n"),
            ("docs/guide.md", "guide\n"),
            (".gitattributes", "*.txt filter=rot\n"),
        ],
    );
    git(&p.dir, &["config", "filter.rot.clean", "tr a-zA-Z n-za-mN-ZA-M"]);
    git(&p.dir, &["config", "filter.rot.smudge", "tr a-zA-Z n-za-mN-ZA-M"]);
    let before = state(&p.dir);
    let out = p.update().output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("new.txt (filter=rot)") && err.contains("docs/guide.md (filter=rot)") && !err.contains("README"),
        "{err}"
    );
    assert_eq!(state(&p.dir), before);
    git(&p.dir, &["config", "--unset", "filter.rot.clean"]);
    git(&p.dir, &["config", "--unset", "filter.rot.smudge"]);
    let out = p.update().output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let status = git(&p.dir, &["status", "--porcelain"]).stdout;
    assert!(status.is_empty(), "{}", String::from_utf8_lossy(&status));
}

/// `new` from a template whose `.gitattributes` gives a file to a filter this machine configures
/// (git-lfs in the global configuration): the render commit would hold it unfiltered, so it is
/// refused before anything is written, and `--no-git` (the user's own first commit runs the
/// filter) is the way through.
#[test]
fn new_refuses_a_first_commit_a_configured_filter_would_have_filtered() {
    let tmp = tempfile::TempDir::new().unwrap();
    let tpl = tmp.path().join("tpl");
    super::template(
        &tpl,
        "1.0.0",
        &[(".gitattributes", "*.dat filter=rot\n"), ("model.dat", "secret data\n")],
        "",
    );
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(
        home.join(".gitconfig"),
        "[filter \"rot\"]\n\tclean = tr a-zA-Z n-za-mN-ZA-M\n\tsmudge = tr a-zA-Z n-za-mN-ZA-M\n",
    )
    .unwrap();
    let new = |extra: &[&str]| {
        stackwise()
            .args(["new", "demo", "--yes", "-o"])
            .arg(tmp.path().join("out"))
            .arg("--template")
            .arg(&tpl)
            .args(extra)
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", &home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .unwrap()
    };
    let out = new(&[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("model.dat (filter=rot)") && err.contains("--no-git"),
        "{err}"
    );
    assert!(!tmp.path().join("out/demo").exists());
    let out = new(&["--no-git"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// A template version that renames the project's layout (`single` → `main`): with the
/// project's preset now naming the new layout, the project follows it, said in a note; with no
/// such preset the update is refused, naming the recorded layout and `--layout`, which then
/// moves it. Before, every project was stuck ("unknown layout `single`") even with `--layout`.
#[test]
fn a_layout_the_new_version_renamed_is_followed_through_the_preset_or_chosen_with_layout() {
    let record = |p: &Project| std::fs::read_to_string(p.dir.join(".stackwise.toml")).unwrap();
    let rename = |p: &Project| {
        for file in ["stackwise.toml", "presets/basic.toml", "presets/blue.toml"] {
            let path = p.v2.join(file);
            let text = std::fs::read_to_string(&path).unwrap();
            let text = text.replace("[layouts.single]", "[layouts.main]");
            std::fs::write(&path, text.replace("layout = \"single\"", "layout = \"main\"")).unwrap();
        }
    };

    let p = project(&[("README.md", "hi\n")], &[("README.md", "hi v2\n")]);
    assert!(record(&p).contains("preset = \"basic\""), "{}", record(&p));
    rename(&p);
    let out = p.update().output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("its preset `basic` now uses `main`"), "{err}");
    assert!(record(&p).contains("layout = \"main\""), "{}", record(&p));
    assert_eq!(std::fs::read_to_string(p.dir.join("README.md")).unwrap(), "hi v2\n");

    // No preset of the project's says where the layout went: the user does.
    let p = project(&[("README.md", "hi\n")], &[("README.md", "hi v2\n")]);
    rename(&p);
    std::fs::remove_dir_all(p.v2.join("presets")).unwrap();
    let before = state(&p.dir);
    let out = p.update().output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("layout `single`") && err.contains("--layout"), "{err}");
    assert_eq!(state(&p.dir), before);
    let out = p.update().args(["--layout", "main"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(record(&p).contains("layout = \"main\""), "{}", record(&p));
}
