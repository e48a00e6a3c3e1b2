//! `stackwise recommend`: the decision framework of SPEC §1 run against the binary.

mod forks;
mod project;
mod scenarios;
#[cfg(unix)]
mod terminal;

use std::path::Path;

use crate::common::stackwise;
use predicates::prelude::*;
use serde_json::Value;

/// Runs `stackwise recommend --json ARGS` and returns the document.
fn recommend_json(args: &[&str], template: Option<&Path>) -> Value {
    let mut cmd = stackwise();
    cmd.arg("recommend").arg("--json").args(args);
    if let Some(t) = template {
        cmd.arg("--template").arg(t);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "recommend {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn human_output_names_preset_reasons_runner_up_and_command() {
    stackwise()
        .args(["recommend", "--ai", "feature", "--peak-rps", "40000"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("Recommended preset: ai-product")
                .and(predicate::str::contains("Layout:   hybrid"))
                .and(predicate::str::contains("ai-over-30k"))
                .and(predicate::str::contains("Runner-up: ai-realtime"))
                .and(predicate::str::contains("stackwise new my-app --preset ai-product")),
        );
}

#[test]
fn human_output_snapshot() {
    let out = stackwise()
        .args([
            "recommend",
            "--ai",
            "core",
            "--realtime",
            "core",
            "--shared-frontend-types",
            "--team",
            "node",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    insta::assert_snapshot!("ai_saas_with_live_streaming", String::from_utf8(out.stdout).unwrap());
}

#[test]
fn off_a_terminal_without_flags_it_recommends_the_default_without_asking() {
    stackwise().arg("recommend").write_stdin("").assert().success().stdout(
        predicate::str::contains("Recommended preset: ai-product")
            .and(predicate::str::contains("No rule fired"))
            .and(predicate::str::contains("Is AI").not()),
    );
}

#[test]
fn the_examples_in_the_docs_are_the_real_output() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let mut checked = 0;
    for block in doc.split("```console\n").skip(1) {
        let block = block.split("\n```").next().unwrap();
        let (command, expected) = block.split_once('\n').unwrap();
        let args: Vec<&str> = command.trim_start_matches("$ stackwise ").split_whitespace().collect();
        let out = stackwise().args(&args).output().unwrap();
        assert!(out.status.success(), "{command}");
        assert_eq!(
            String::from_utf8(out.stdout).unwrap().trim_end(),
            expected.trim_end(),
            "docs/choosing-a-stack.md is stale for `{command}`"
        );
        checked += 1;
    }
    assert_eq!(checked, 3, "three typical products");
}
