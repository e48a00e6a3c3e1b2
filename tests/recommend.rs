//! `stackwise recommend`: the decision framework of SPEC §1 run against the binary.

mod common;

use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

fn stackwise() -> Command {
    let mut c = Command::cargo_bin("stackwise").expect("binary built");
    c.env("NO_COLOR", "1");
    c
}

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

/// (scenario, flags, expected layout, expected preset), each from a row or a combination of rows
/// of the decision table (SPEC §1).
const SCENARIOS: &[(&str, &str, &str, &str)] = &[
    (
        "chat app with a TypeScript team",
        "--realtime core --team node --shared-frontend-types --ai none",
        "node",
        "realtime",
    ),
    (
        "healthcare analytics with ML and compliance",
        "--ai feature --data some --regulated --team python --peak-rps 2000",
        "python",
        "ml-api",
    ),
    (
        "AI-first SaaS with live streaming to clients",
        "--ai core --realtime core --shared-frontend-types",
        "hybrid",
        "ai-realtime",
    ),
    (
        "high-traffic backend-for-frontend",
        "--peak-rps 50000 --shared-frontend-types --ai none --data none",
        "node",
        "api-gateway",
    ),
    (
        "ETL with a Python team",
        "--data heavy --team python",
        "python",
        "data-pipeline",
    ),
    (
        "40k req/s with an AI feature",
        "--ai feature --peak-rps 40000",
        "hybrid",
        "ai-product",
    ),
    (
        "serverless TypeScript API",
        "--serverless --team node --shared-frontend-types --ai none",
        "node",
        "api-gateway",
    ),
    (
        "MVP by a Python team with an AI feature",
        "--team python --ai feature --peak-rps 500",
        "python",
        "ml-api",
    ),
    (
        "fraud detection in finance at 40k req/s",
        "--ai core --regulated --peak-rps 40k",
        "hybrid",
        "ai-product",
    ),
    (
        "recommendation engine, Python team, 5k req/s",
        "--ai core --peak-rps 5000 --team python",
        "python",
        "ml-api",
    ),
    (
        "LLM assistant by a TypeScript team, streaming answers",
        "--ai core --realtime some --team node --shared-frontend-types",
        "hybrid",
        "ai-realtime",
    ),
    (
        "live dashboard with 50k viewers",
        "--realtime core --connections 50000 --data some --ai none",
        "node",
        "realtime",
    ),
    (
        "IoT telemetry: heavy data at 60k req/s",
        "--data heavy --peak-rps 60000",
        "hybrid",
        "ai-product",
    ),
    (
        "ad bidding with a 2 ms p99 at 80k req/s",
        "--p99-ms 2 --peak-rps 80000 --ai none --data none",
        "node",
        "api-gateway",
    ),
    (
        "presence service with 200k connections",
        "--realtime core --connections 200000",
        "node",
        "realtime",
    ),
    (
        "internal CRUD tool by a Python team",
        "--team python --peak-rps 200",
        "python",
        "ml-api",
    ),
    (
        "document processing: AI feature over heavy data",
        "--ai feature --data heavy --team python",
        "python",
        "data-pipeline",
    ),
    (
        "regulated finance reporting",
        "--data some --regulated --ai none",
        "python",
        "data-pipeline",
    ),
    (
        "mixed team, AI core, 15k req/s",
        "--ai core --team mixed --peak-rps 15000",
        "hybrid",
        "ai-product",
    ),
    (
        "collaborative editor by a TypeScript team",
        "--realtime core --team node --connections 20000 --ai none",
        "node",
        "realtime",
    ),
    (
        "chat with AI summaries",
        "--realtime core --ai feature --team node",
        "hybrid",
        "ai-realtime",
    ),
    (
        "notifications by a TypeScript team",
        "--realtime some --team node --ai none",
        "node",
        "realtime",
    ),
    ("nothing known: the default preset", "", "hybrid", "ai-product"),
    ("an AI feature, nothing else known", "--ai feature", "python", "ml-api"),
    (
        "real-time product over heavy data, no AI",
        "--realtime core --data heavy --ai none",
        "hybrid",
        "ai-realtime",
    ),
    (
        "AI core with a 5 ms p99",
        "--ai core --p99-ms 5",
        "hybrid",
        "ai-product",
    ),
    (
        "a TypeScript team, nothing else known",
        "--team node",
        "node",
        "api-gateway",
    ),
    (
        "a regulated domain, nothing else known",
        "--regulated",
        "python",
        "ml-api",
    ),
];

#[test]
fn scenarios_of_the_decision_framework() {
    assert!(SCENARIOS.len() >= 20);
    let mut failures = Vec::new();
    for (name, flags, layout, preset) in SCENARIOS {
        let args: Vec<&str> = flags.split_whitespace().collect();
        let doc = recommend_json(&args, None);
        let got = (doc["layout"].as_str().unwrap(), doc["preset"].as_str().unwrap());
        if got != (*layout, *preset) {
            failures.push(format!(
                "{name} ({flags}): expected {layout}/{preset}, got {}/{} (score {}, runner-up {})",
                got.0, got.1, doc["score"], doc["runner_up"]
            ));
            continue;
        }
        // The contract of SPEC §3.
        for key in ["preset", "layout", "reasons", "runner_up", "command"] {
            assert!(doc.get(key).is_some(), "{name}: no `{key}` in {doc}");
        }
        assert_eq!(
            doc["command"],
            format!("stackwise new my-app --preset {preset}"),
            "{name}"
        );
        let reasons = doc["reasons"].as_array().unwrap();
        if flags.is_empty() {
            assert!(reasons.is_empty(), "{name}: {doc}");
            assert!(doc["fallback"].as_str().unwrap().contains("default preset"), "{name}");
        } else {
            assert!(!reasons.is_empty(), "{name}: no reason given");
        }
        for r in reasons {
            assert!(r["rule"].as_str().is_some_and(|s| !s.is_empty()), "{name}: {r}");
            let text = r["text"].as_str().unwrap();
            assert!(text.len() > 30 && !text.contains('{'), "{name}: {text}");
        }
        assert!(doc["runner_up"].is_string(), "{name}: {doc}");
        assert_ne!(doc["runner_up"], doc["preset"], "{name}");
    }
    assert!(
        failures.is_empty(),
        "{} scenario(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn reasons_carry_the_figures_and_their_source() {
    let doc = recommend_json(&["--ai", "feature", "--peak-rps", "40000"], None);
    let texts: Vec<&str> = doc["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["text"].as_str().unwrap())
        .collect();
    let all = texts.join("\n");
    assert!(all.contains("Peak 40,000 req/s"), "{all}");
    assert!(all.contains("~30k per service"), "{all}");
    assert!(all.contains("docs/benchmarks.md"), "{all}");
    assert_eq!(doc["reasons"][0]["rule"], "ai-over-30k");
    // The runner-up says why it lost.
    assert_eq!(doc["runner_up"], "ai-realtime");
    let why = doc["runner_up_reason"].as_str().unwrap();
    assert!(why.contains("1 point behind"), "{why}");
}

#[test]
fn ties_are_broken_by_the_stated_rule_not_by_file_order() {
    // ml-api and data-pipeline both score 3: fewer moving parts wins.
    let doc = recommend_json(&["--team", "python", "--peak-rps", "200"], None);
    assert_eq!(doc["preset"], "ml-api");
    assert_eq!(doc["runner_up"], "data-pipeline");
    let tie = doc["tie_break"].as_str().unwrap();
    assert!(tie.contains("fewer moving parts"), "{tie}");
    // The human output states it too.
    stackwise()
        .args(["recommend", "--team", "node"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Tie:").and(predicate::str::contains("fewer moving parts")));
    // A clear winner has no tie-break.
    let doc = recommend_json(&["--ai", "core", "--realtime", "core"], None);
    assert!(doc["tie_break"].is_null(), "{doc}");
}

#[test]
fn exclusions_are_hard() {
    // AI core never lands on a node-only preset, however Node-leaning the rest.
    let doc = recommend_json(
        &[
            "--ai",
            "core",
            "--team",
            "node",
            "--serverless",
            "--p99-ms",
            "3",
            "--shared-frontend-types",
        ],
        None,
    );
    assert_ne!(doc["layout"], "node", "{doc}");
    let excluded: Vec<&str> = doc["excluded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["preset"].as_str().unwrap())
        .collect();
    assert!(
        excluded.contains(&"realtime") && excluded.contains(&"api-gateway"),
        "{excluded:?}"
    );
    // Real-time core without AI never lands on a python-only preset, however Python-leaning the rest.
    let doc = recommend_json(
        &["--realtime", "core", "--ai", "none", "--team", "python", "--regulated"],
        None,
    );
    assert_ne!(doc["layout"], "python", "{doc}");
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
fn every_bad_input_is_a_usage_error_naming_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (&["--peak-rps", "-5"], "--peak-rps"),
        (&["--peak-rps", "abc"], "--peak-rps"),
        (&["--peak-rps", "1.5"], "--peak-rps"),
        (&["--peak-rps", "1e5"], "--peak-rps"),
        (&["--peak-rps", "99999999999"], "--peak-rps"),
        (&["--peak-rps", ""], "--peak-rps"),
        (&["--connections", "-1"], "--connections"),
        (&["--connections", "lots"], "--connections"),
        (&["--p99-ms", "0"], "--p99-ms"),
        (&["--p99-ms", "-3"], "--p99-ms"),
        (&["--p99-ms", "fast"], "--p99-ms"),
        (&["--p99-ms", "NaN"], "--p99-ms"),
        (&["--p99-ms", "90000"], "--p99-ms"),
        (&["--ai", "maybe"], "--ai"),
        (&["--data", "lots"], "--data"),
        (&["--realtime", "always"], "--realtime"),
        (&["--team", "rust"], "--team"),
        (&["--serverless", "--connections", "200000"], "--serverless"),
        (&["--serverless", "--connections", "200000"], "--connections"),
        (&["--realtime", "core", "--connections", "0"], "--realtime core"),
        (&["--regulated=yes"], "--regulated"),
        (&["--frobnicate"], "--frobnicate"),
    ];
    for (args, flag) in cases {
        for json in [false, true] {
            let mut cmd = stackwise();
            cmd.arg("recommend").args(*args);
            if json {
                cmd.arg("--json");
            }
            let out = cmd.output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
            assert!(
                stderr.contains(flag),
                "{args:?}: the error does not name {flag}: {stderr}"
            );
            assert!(stderr.starts_with("error:"), "{args:?}: {stderr}");
            assert!(out.stdout.is_empty(), "{args:?}: printed on stdout");
            assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        }
    }
    // Accepted spellings of counts.
    let doc = recommend_json(&["--peak-rps", "40_000"], None);
    assert_eq!(doc["workload"]["peak_rps"], 40000);
}

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
    let cases = [
        ("when = 'realtim == \"core\"'", "unknown name `realtim`"),
        ("when = 'peak_rps | length > 0'", "`|` is not allowed"),
        ("when = 'ai == '", "typo-rule"),
    ];
    for (when, message) in cases {
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
            .stderr(predicate::str::contains("zz-broken").and(predicate::str::contains(message)));
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
        .stderr(predicate::str::contains("unknown placeholder `{nope}`"));
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

#[cfg(unix)]
mod pty {
    use crate::common::pty::{WaitStatus, key as confirm, select, spawn as spawn_in, text};
    use rexpect::session::PtySession;

    fn spawn(dir: &std::path::Path) -> PtySession {
        spawn_in(dir, &["recommend"])
    }

    #[test]
    fn interactive_questions_lead_to_a_recommendation_and_an_offer() {
        let tmp = tempfile::tempdir().unwrap();
        let mut p = spawn(tmp.path());
        select(&mut p, "Is AI / ML part of the product?", 3); // the product is built around it
        select(&mut p, "Data engineering", 0); // not sure (the default)
        select(&mut p, "Real-time delivery", 3); // core
        text(&mut p, "Peak requests per second", "");
        text(&mut p, "Concurrent connections", "20k");
        text(&mut p, "p99 latency target", "");
        select(&mut p, "What does the team write?", 2); // TypeScript
        confirm(&mut p, "Share TypeScript types", "y");
        confirm(&mut p, "Serverless-first", "n");
        confirm(&mut p, "Regulated domain", "n");
        p.exp_string("Recommended preset: ai-realtime").unwrap();
        p.exp_string("ai-realtime-core").unwrap();
        p.exp_string("20,000 concurrent connections").unwrap();
        p.exp_string("stackwise new my-app --preset ai-realtime").unwrap();
        confirm(&mut p, "Generate a project with the ai-realtime preset now?", "n");
        p.exp_string("Not generating").unwrap();
        p.exp_eof().unwrap();
        assert!(matches!(p.process().wait().unwrap(), WaitStatus::Exited(_, 0)));
        assert_eq!(
            std::fs::read_dir(tmp.path()).unwrap().count(),
            0,
            "nothing is generated"
        );
    }

    #[test]
    fn ctrl_c_exits_cleanly() {
        let tmp = tempfile::tempdir().unwrap();
        let mut p = spawn(tmp.path());
        select(&mut p, "Is AI / ML part of the product?", 1);
        p.exp_string("Data engineering").unwrap();
        p.send_control('c').unwrap();
        let rest = p.exp_eof().unwrap();
        assert!(rest.contains("interrupted"), "{rest}");
        assert!(!rest.contains("panicked"), "{rest}");
        match p.process().wait().unwrap() {
            WaitStatus::Exited(_, code) => assert!(code == 130 || code == 1, "exit {code}"),
            other => panic!("not a clean exit: {other:?}"),
        }
    }
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
