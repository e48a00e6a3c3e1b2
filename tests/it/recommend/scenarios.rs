//! The scenarios of the decision table, ties, exclusions and bad input.

use predicates::prelude::*;

use super::recommend_json;
use crate::common::stackwise;

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
        "AI assistant that streams its results, 2k req/s (a low rate must not flip it to a preset that cannot push)",
        "--ai core --realtime some --peak-rps 2000",
        "hybrid",
        "ai-realtime",
    ),
    (
        "notifications for a Python team",
        "--realtime some --team python --ai none",
        "node",
        "realtime",
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
        // A runner-up, unless every other preset is ruled out (then `excluded` says why each).
        let excluded = doc["excluded"].as_array().map_or(0, Vec::len);
        assert!(
            doc["runner_up"].is_string() || (doc["runner_up"].is_null() && excluded == 5),
            "{name}: {doc}"
        );
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
fn every_bad_input_is_a_usage_error_naming_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (&["--peak-rps", "-5"], "--peak-rps"),
        (&["--peak-rps", "abc"], "--peak-rps"),
        (&["--peak-rps", "1.5"], "--peak-rps"),
        (&["--peak-rps", "1e5"], "--peak-rps"),
        (&["--peak-rps", "99999999999"], "--peak-rps"),
        (&["--peak-rps", ""], "--peak-rps"),
        (&["--peak-rps", "2,5k"], "groups of three digits"),
        (&["--peak-rps", "40,5"], "groups of three digits"),
        (&["--connections", "1,0,0"], "--connections"),
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
    let doc = recommend_json(&["--peak-rps", "40,000", "--connections", "1,000,000"], None);
    assert_eq!(
        (&doc["workload"]["peak_rps"], &doc["workload"]["connections"]),
        (&40000.into(), &1_000_000.into())
    );
}
