//! Forks: presets added or changed change the answer; broken signals are reported where they are.

use std::path::Path;

use predicates::prelude::*;

use super::recommend_json;
use crate::common::stackwise;

/// Copies the built-in template and presets into `dir` (a fork's template directory).
fn fork_template(dir: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    copy_dir(&root.join("templates"), dir);
    copy_dir(&root.join("presets"), &dir.join("presets"));
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(from).unwrap();
        let target = to.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn a_fork_with_an_extra_preset_changes_the_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let tpl = tmp.path().join("my-template");
    fork_template(&tpl);
    let args = [
        "--peak-rps",
        "250000",
        "--ai",
        "none",
        "--data",
        "none",
        "--p99-ms",
        "3",
    ];
    let before = recommend_json(&args, Some(&tpl));
    assert_eq!(before["preset"], "api-gateway");

    std::fs::write(
        tpl.join("presets/edge-cache.toml"),
        r#"id = "edge-cache"
title = "Edge cache"
layout = "node"
summary = "TypeScript edge service tuned for very high read traffic"
rationale = "Read-mostly traffic far above 100k req/s is served from a cache at the edge."

[options]
proxy = true

[signals]
moving_parts = 2

[[signals.rules]]
id = "traffic-over-100k"
when = 'peak_rps >= 100000 and ai in ["none", "unknown"]'
weight = 10
text = "Peak {peak_rps} req/s of read traffic: serve it from a cache at the edge."
"#,
    )
    .unwrap();
    let after = recommend_json(&args, Some(&tpl));
    assert_eq!(after["preset"], "edge-cache", "{after}");
    assert_eq!(after["layout"], "node");
    assert_eq!(after["runner_up"], "api-gateway");
    assert_eq!(
        after["reasons"][0]["text"],
        "Peak 250,000 req/s of read traffic: serve it from a cache at the edge."
    );
    let command = after["command"].as_str().unwrap();
    assert!(
        command.starts_with("stackwise new my-app --preset edge-cache --template "),
        "{command}"
    );
    // The built-in template is unchanged.
    assert_eq!(recommend_json(&args, None)["preset"], "api-gateway");
    // `presets show` lists the signals that lead to it.
    stackwise()
        .args(["presets", "show", "edge-cache", "--template"])
        .arg(&tpl)
        .assert()
        .success()
        .stdout(predicate::str::contains("+10").and(predicate::str::contains("traffic-over-100k")));
}

#[test]
fn a_fork_can_change_the_rules_of_a_builtin_preset() {
    let tmp = tempfile::tempdir().unwrap();
    let tpl = tmp.path().join("t");
    fork_template(&tpl);
    // This fork thinks regulated domains should always get the data-pipeline preset.
    let path = tpl.join("presets/data-pipeline.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replacen(
            "id = \"regulated\"\nwhen = 'regulated'\nweight = 2",
            "id = \"regulated\"\nwhen = 'regulated'\nweight = 9",
            1,
        ),
    )
    .unwrap();
    assert_eq!(recommend_json(&["--regulated"], None)["preset"], "ml-api");
    assert_eq!(recommend_json(&["--regulated"], Some(&tpl))["preset"], "data-pipeline");
}

#[test]
fn broken_signals_in_a_fork_are_reported_with_the_rule() {
    let tmp = tempfile::tempdir().unwrap();
    let tpl = tmp.path().join("t");
    fork_template(&tpl);
    // (the `when` line, what the error says, where it points: line 10, the column of the culprit)
    let cases = [
        ("when = 'realtim == \"core\"'", "unknown name `realtim`", "10:9"),
        ("when = 'peak_rps | length > 0'", "`|` is not allowed", "10:18"),
        ("when = 'ai == '", "typo-rule", "10:15"),
        ("when = 'ai == \"cor\"'", "\"cor\" is not a value of `ai`", "10:15"),
    ];
    for (when, message, at) in cases {
        std::fs::write(
            tpl.join("presets/zz-broken.toml"),
            format!(
                "id = \"zz-broken\"\ntitle = \"B\"\nlayout = \"node\"\nsummary = \"s\"\nrationale = \"r\"\n\n[signals]\n[[signals.rules]]\nid = \"typo-rule\"\n{when}\nweight = 1\ntext = \"some text\"\n"
            ),
        )
        .unwrap();
        stackwise()
            .args(["recommend", "--ai", "core", "--template"])
            .arg(&tpl)
            .assert()
            .failure()
            .stderr(
                predicate::str::contains("zz-broken")
                    .and(predicate::str::contains(message))
                    .and(predicate::str::contains(format!(
                        "presets/zz-broken.toml:{at}: rule `typo-rule`: `when`: "
                    ))),
            );
        // Checked when the presets load, whatever the command.
        let mut list = stackwise();
        list.args(["presets", "--template"]).arg(&tpl);
        let mut lint = stackwise();
        lint.arg("lint").arg(&tpl);
        for mut cmd in [list, lint] {
            cmd.assert()
                .failure()
                .stderr(predicate::str::contains(format!("presets/zz-broken.toml:{at}:")));
        }
    }
    std::fs::write(
        tpl.join("presets/zz-broken.toml"),
        "id = \"zz-broken\"\ntitle = \"B\"\nlayout = \"node\"\nsummary = \"s\"\nrationale = \"r\"\n\n[signals]\n[[signals.rules]]\nid = \"r\"\nwhen = 'ai == \"core\"'\nweight = 1\ntext = \"needs {nope}\"\n",
    )
    .unwrap();
    stackwise()
        .args(["recommend", "--template"])
        .arg(&tpl)
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "presets/zz-broken.toml:12:15: rule `r`: `text`: unknown placeholder `{nope}`",
        ));
}

#[test]
fn presets_show_prints_the_signals_that_lead_to_it() {
    stackwise()
        .args(["presets", "show", "realtime"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("signals that lead here")
                .and(predicate::str::contains("realtime == \"core\""))
                .and(predicate::str::contains("never when ai == \"core\"")),
        );
}
