//! On a terminal: the questions, Ctrl-C, and colour decided for each output stream.

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
fn accepting_the_offer_generates_the_project_as_new_does() {
    let tmp = tempfile::tempdir().unwrap();
    let mut p = spawn(tmp.path());
    // Every question left at its default: nothing known, so the default preset.
    for q in [
        "Is AI / ML part of the product?",
        "Data engineering",
        "Real-time delivery",
    ] {
        select(&mut p, q, 0);
    }
    for q in [
        "Peak requests per second",
        "Concurrent connections",
        "p99 latency target",
    ] {
        text(&mut p, q, "");
    }
    select(&mut p, "What does the team write?", 0);
    for q in ["Share TypeScript types", "Serverless-first", "Regulated domain"] {
        confirm(&mut p, q, "n");
    }
    p.exp_string("Recommended preset: ai-product").unwrap();
    confirm(&mut p, "Generate a project with the ai-product preset now?", "y");
    text(&mut p, "Project name", "Offer App");
    p.exp_string("running: stackwise new 'Offer App' --preset ai-product")
        .unwrap();
    // The questions of `stackwise new` itself: install, then the template's own.
    confirm(&mut p, "Install dependencies now", "n");
    text(&mut p, "One-line description", "");
    p.exp_string("created offer-app (hybrid layout, preset ai-product)")
        .unwrap();
    p.exp_eof().unwrap();
    assert!(matches!(p.process().wait().unwrap(), WaitStatus::Exited(_, 0)));
    let record = std::fs::read_to_string(tmp.path().join("offer-app/.stackwise.toml")).unwrap();
    assert!(record.contains("preset = \"ai-product\""), "{record}");
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

/// Runs `stackwise ARGS` on a pseudo-terminal with colour allowed unless `no_color`, stdout
/// redirected to `stdout` when given, and returns everything the terminal showed, escapes included.
fn on_terminal(args: &[&str], stdout: Option<&std::path::Path>, no_color: bool) -> String {
    use rexpect::session::{Options, spawn_with_options};
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("stackwise"));
    cmd.args(args).env_remove("NO_COLOR").env("TERM", "xterm");
    if no_color {
        cmd.env("NO_COLOR", "1");
    }
    if let Some(path) = stdout {
        cmd.stdout(std::fs::File::create(path).unwrap());
    }
    let mut p = spawn_with_options(
        cmd,
        Options::new().timeout_ms(Some(20_000)).strip_ansi_escape_codes(false),
    )
    .unwrap();
    let screen = p.exp_eof().unwrap();
    p.process().wait().unwrap();
    screen
}

#[test]
fn colour_is_decided_for_each_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("out.txt");
    // On the terminal, the recommendation is painted…
    let screen = on_terminal(&["recommend", "--ai", "core"], None, false);
    assert!(screen.contains("\x1b[1mRecommended preset:\x1b[0m"), "{screen:?}");
    // …but redirected to a file it is plain text, though stderr is still the terminal.
    let screen = on_terminal(&["recommend", "--ai", "core"], Some(&file), false);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("Recommended preset: "), "{text:?}");
    assert!(text.contains("Generate it:") && !text.contains('\x1b'), "{text:?}");
    assert!(
        !screen.contains("Recommended preset"),
        "stdout went to the file: {screen:?}"
    );
    // The same for `presets show`.
    let screen = on_terminal(&["presets", "show", "realtime"], None, false);
    assert!(screen.contains("\x1b[1mrealtime\x1b[0m"), "{screen:?}");
    on_terminal(&["presets", "show", "realtime"], Some(&file), false);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("realtime — ") && !text.contains('\x1b'), "{text:?}");
    // stderr decides for itself: an error on the terminal is painted while stdout is a file.
    let nowhere = tmp.path().join("nowhere");
    let screen = on_terminal(
        &["recommend", "--project", nowhere.to_str().unwrap()],
        Some(&file),
        false,
    );
    assert!(screen.contains("\x1b[1;31merror:\x1b[0m"), "{screen:?}");
    // NO_COLOR turns it off on the terminal too.
    let screen = on_terminal(&["recommend", "--ai", "core"], None, true);
    assert!(
        screen.contains("Recommended preset:") && !screen.contains('\x1b'),
        "{screen:?}"
    );
}
