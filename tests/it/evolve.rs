//! Growing a layout (SPEC §6.2): an `ml-api` project with the user's own code becomes
//! `ai-product`, a `realtime` one `ai-realtime`; shrinking and sideways moves are refused.

use std::path::Path;
use std::process::Output;

use crate::common::{git, stackwise, write};
use serde_json::Value;
use tempfile::TempDir;

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Generates `preset` as `shop` under a temp dir, with git.
fn generate(preset: &str) -> (TempDir, std::path::PathBuf) {
    let tmp = TempDir::new().unwrap();
    stackwise()
        .args(["new", "shop", "--yes", "--no-install", "--preset", preset, "-o"])
        .arg(tmp.path())
        .assert()
        .success();
    let dir = tmp.path().join("shop");
    (tmp, dir)
}

fn update(dir: &Path, args: &[&str]) -> assert_cmd::Command {
    let mut c = stackwise();
    c.arg("update").arg(dir).args(args).args(["--yes", "--json"]);
    c
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn an_ml_api_project_grows_into_ai_product_and_keeps_its_history() {
    let (_tmp, dir) = generate("ml-api");
    write(
        &dir,
        "src/shop/pricing.py",
        "def price(x: float) -> float:\n    return x * 1.2\n",
    );
    write(
        &dir,
        "tests/test_pricing.py",
        "from shop.pricing import price\n\n\ndef test_price() -> None:\n    assert price(10) == 12\n",
    );
    write(&dir, "NOTES.md", "team notes\n");
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-qm", "pricing module"]);
    let original = text(&git(&dir, &["rev-parse", "HEAD"])).trim().to_string();

    // The dry run shows the moves and writes nothing.
    let out = update(&dir, &["--preset", "ai-product", "--dry-run"]).output().unwrap();
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json(&out);
    let moved = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "ml-service/src/shop/pricing.py")
        .unwrap();
    assert_eq!(moved["status"], "renamed");
    assert_eq!(moved["from"], "src/shop/pricing.py");
    assert_eq!(
        text(&git(&dir, &["rev-parse", "HEAD"])).trim(),
        original,
        "the dry run committed"
    );
    assert!(dir.join("src/shop/pricing.py").is_file());

    // What `make install` and the tools left at the root: ignored, so git does not move them.
    write(&dir, ".venv/pyvenv.cfg", "home = /usr/bin\n");
    write(&dir, ".mypy_cache/CACHEDIR.TAG", "x\n");

    let out = update(&dir, &["--preset", "ai-product"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let doc = json(&out);
    assert_eq!(doc["status"], "clean");
    // The report says what became internal and what was left behind.
    let notes = doc["notes"].to_string();
    assert!(
        notes.contains("python-service moved from the project root to ml-service/")
            && notes.contains("routes are now internal, behind the gateway"),
        "{notes}"
    );
    assert!(
        notes.contains("not moved") && notes.contains(".mypy_cache, .venv"),
        "{notes}"
    );
    assert!(
        dir.join(".venv/pyvenv.cfg").is_file(),
        "update never deletes the user's files"
    );
    for f in [
        "ml-service/src/shop/pricing.py",
        "ml-service/tests/test_pricing.py",
        "gateway/package.json",
        "contracts/predict-request.schema.json",
        "compose.yaml",
        "Makefile",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    assert!(!dir.join("src").exists(), "the old service directory is gone");
    assert_eq!(
        std::fs::read_to_string(dir.join("NOTES.md")).unwrap(),
        "team notes\n",
        "root files stay"
    );
    let record = std::fs::read_to_string(dir.join(".stackwise.toml")).unwrap();
    assert!(
        record.contains("layout = \"hybrid\"") && record.contains("preset = \"ai-product\""),
        "{record}"
    );
    // History follows the move: the user's commit is in `git log --follow`.
    let log = text(&git(
        &dir,
        &[
            "log",
            "--follow",
            "--format=%H %s",
            "--",
            "ml-service/src/shop/pricing.py",
        ],
    ));
    assert!(log.contains(&original), "{log}");
    // A move-only commit, then the update merge.
    let subjects = text(&git(&dir, &["log", "--format=%s", "-3"]));
    assert!(
        subjects
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("stackwise: move the service"),
        "{subjects}"
    );
    let moved = text(&git(&dir, &["show", "--stat", "--format=", "-M", "HEAD~1"]));
    assert!(moved.contains("=> ml-service"), "{moved}");
    assert!(git(&dir, &["status", "--porcelain"]).stdout.is_empty());
}

#[test]
fn a_realtime_project_grows_into_ai_realtime_under_gateway() {
    let (_tmp, dir) = generate("realtime");
    write(
        &dir,
        "src/presence.ts",
        "export const presence = new Map<string, number>();\n",
    );
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-qm", "presence"]);
    let out = update(&dir, &["--preset", "ai-realtime"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.join("gateway/src/presence.ts").is_file());
    assert!(dir.join("ml-service/pyproject.toml").is_file());
    assert!(!dir.join("src").exists());
}

#[test]
fn shrinking_and_sideways_moves_are_refused_and_change_nothing() {
    for (preset, to, word) in [
        ("ai-product", "ml-api", "only removes"),
        ("ml-api", "realtime", "sideways"),
    ] {
        let (_tmp, dir) = generate(preset);
        let before = text(&git(&dir, &["rev-parse", "HEAD"]));
        let out = stackwise()
            .arg("update")
            .arg(&dir)
            .args(["--preset", to, "--yes"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{preset} → {to}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(word) && stderr.contains("stackwise new"), "{stderr}");
        assert_eq!(text(&git(&dir, &["rev-parse", "HEAD"])), before);
        assert!(git(&dir, &["status", "--porcelain"]).stdout.is_empty());
    }
}
