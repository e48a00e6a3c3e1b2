//! Unit tests of [`super`] (the repository and its render commits).
use super::*;

fn file(path: &str, text: &str, executable: bool) -> RenderedFile {
    RenderedFile {
        path: path.into(),
        bytes: text.as_bytes().to_vec(),
        executable,
        update_once: false,
    }
}

/// Blobs hashed for other files are refused before anything is written: the commit must hold
/// the files written, nothing else.
#[test]
fn blobs_of_other_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let files = vec![file("a.txt", "one\n", false), file("b.txt", "two\n", false)];
    let other = vec![file("a.txt", "one\n", false), file("b.txt", "three\n", false)];
    let fewer = vec![file("a.txt", "one\n", false)];
    for blobs in [render_blobs(&other).unwrap(), render_blobs(&fewer).unwrap()] {
        assert!(init_with_render_blobs(dir.path(), &files, "m", blobs).is_err());
        assert!(!dir.path().join(".git").exists());
    }
    // Nor a repository made for another directory.
    let elsewhere = tempfile::tempdir().unwrap();
    let blobs = render_blobs_and_init(&files, elsewhere.path()).unwrap();
    assert!(init_with_render_blobs(dir.path(), &files, "m", blobs).is_err());
    assert!(!dir.path().join(".git").exists());
    // The blobs of these files are taken, on another thread as `new` hashes them.
    let blobs = std::thread::scope(|s| s.spawn(|| render_blobs(&files)).join().unwrap()).unwrap();
    init_with_render_blobs(dir.path(), &files, "m", blobs).unwrap();
    let repo = Repository::open(dir.path()).unwrap();
    assert_eq!(
        repo.head().unwrap().peel_to_commit().unwrap().tree_id(),
        write_tree(&repo, &files).unwrap()
    );
}

#[test]
fn a_new_repository_holds_one_render_commit_and_a_clean_status() {
    let dir = tempfile::tempdir().unwrap();
    let files = vec![
        file("README.md", "hi\n", false),
        file("bin/run.sh", "#!/bin/sh\n", true),
        file("src/a/b.py", "x = 1\n", false),
    ];
    for f in &files {
        let p = dir.path().join(&f.path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, &f.bytes).unwrap();
        #[cfg(unix)]
        if f.executable {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    let info = TemplateInfo {
        template: "/tmp/my template".into(),
        subdir: None,
        version: Some("1.0.0".into()),
        revision: "sha256:00".into(),
    };
    let msg = render_message(&info, "python", Some("ml-api"));
    assert!(
        msg.contains("Stackwise-Render: template=\"/tmp/my template\" revision=sha256:00 layout=python preset=ml-api")
    );
    let id = init_with_render(dir.path(), &files, &msg).unwrap();
    let repo = Repository::open(dir.path()).unwrap();
    let head = repo.head().unwrap().peel_to_commit().unwrap();
    assert_eq!(head.id().to_string(), id);
    assert_eq!(head.tree_id(), write_tree(&repo, &files).unwrap());
    assert_eq!(
        head.tree()
            .unwrap()
            .get_path(Path::new("bin/run.sh"))
            .unwrap()
            .filemode(),
        0o100755
    );
    assert!(repo.statuses(None).unwrap().is_empty());
    // The pack and the index written by hand are what git itself would accept.
    if let Ok(out) = std::process::Command::new("git")
        .args(["fsck", "--full", "--strict"])
        .current_dir(dir.path())
        .output()
    {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let packs = dir.path().join(".git/objects/pack");
        for entry in std::fs::read_dir(&packs).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "idx") {
                let out = std::process::Command::new("git")
                    .arg("verify-pack")
                    .arg(&path)
                    .current_dir(dir.path())
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            }
        }
    }
    assert_eq!(find_render_commit(&repo, head.id()).unwrap(), Some(head.id()));
    std::fs::write(dir.path().join("uv.lock"), "lock\n").unwrap();
    let second = commit_new_files(dir.path(), "lockfiles").unwrap().unwrap();
    assert!(commit_new_files(dir.path(), "again").unwrap().is_none());
    let second = repo.find_commit(Oid::from_str(&second).unwrap()).unwrap();
    assert!(!has_trailer(second.message().unwrap(), RENDER_TRAILER));
    // The render commit is still the newest one reachable.
    assert_eq!(find_render_commit(&repo, second.id()).unwrap(), Some(head.id()));
}
