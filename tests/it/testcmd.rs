//! `stackwise test`: a fork author's template rendered, installed and its `[test]` steps run.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::{fixture_template, stackwise, write};
use predicates::prelude::*;
use tempfile::TempDir;

/// The fixture template with a `[test]` table of `steps` for its `single` layout.
fn template_with_steps(steps: &[&str], timeout: Option<u64>) -> TempDir {
    template_with(&[], steps, timeout)
}

/// The fixture template with a `[test]` table of `setup` and `steps` for its `single` layout.
fn template_with(setup: &[&str], steps: &[&str], timeout: Option<u64>) -> TempDir {
    let tpl = TempDir::new().unwrap();
    fixture_template(tpl.path());
    let manifest = std::fs::read_to_string(tpl.path().join("stackwise.toml")).unwrap();
    let list = |l: &[&str]| l.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ");
    let timeout = timeout.map(|t| format!("timeout = {t}\n")).unwrap_or_default();
    let setup = if setup.is_empty() {
        String::new()
    } else {
        format!("[test.setup]\nsingle = [{}]\n", list(setup))
    };
    write(
        tpl.path(),
        "stackwise.toml",
        format!(
            "{manifest}\n[test]\n{timeout}{setup}[test.steps]\nsingle = [{}]\nnested = [\"test -f svc/README.md\"]\n",
            list(steps)
        ),
    );
    tpl
}

/// The `--json` document a run printed.
fn json_of(a: &assert_cmd::assert::Assert) -> serde_json::Value {
    serde_json::from_slice(&a.get_output().stdout).unwrap()
}

/// The processes still running (zombies aside) whose command line contains `token`.
#[cfg(target_os = "linux")]
fn running_with(token: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|s| s == "Z");
        if cmdline.contains(token) && !zombie {
            found.push(pid);
        }
    }
    found
}

/// Whether a step can run in a PID namespace of its own here (`unshare --pid --mount-proc` in a
/// user namespace).
#[cfg(target_os = "linux")]
fn pid_namespaces_work() -> bool {
    std::process::Command::new("unshare")
        .args(["-rn", "--pid", "--fork", "--mount-proc", "sh", "-c", "test $$ = 1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `stackwise test TPL`; its directories (a failed case's is kept) under cargo's scratch
/// directory for tests, not the system's /tmp.
fn test_cmd(tpl: &Path) -> assert_cmd::Command {
    let mut c = stackwise();
    c.arg("test")
        .arg(tpl)
        .env("TMPDIR", env!("CARGO_TARGET_TMPDIR"))
        .timeout(Duration::from_secs(120));
    c
}

#[test]
fn a_passing_template_reports_every_preset_and_step() {
    let tpl = template_with_steps(&["test -f README.md", "grep -q 'My\\|project' README.md"], None);
    let junit = TempDir::new().unwrap();
    let junit_file = junit.path().join("report.xml");
    let out = test_cmd(tpl.path())
        .args(["--yes", "--json", "--junit"])
        .arg(&junit_file)
        .assert()
        .success()
        .stderr(predicate::str::contains("2 passed, 0 failed"))
        .get_output()
        .stdout
        .clone();
    let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(doc["passed"], true);
    assert!(doc["sandbox"].is_boolean());
    let results = doc["results"].as_array().unwrap();
    let presets: Vec<&str> = results.iter().map(|r| r["preset"].as_str().unwrap()).collect();
    assert_eq!(presets, vec!["basic", "deep"]);
    let basic_steps: Vec<&str> = results[0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        basic_steps,
        vec![
            "render + install",
            "test -f README.md",
            "grep -q 'My\\|project' README.md"
        ]
    );
    for s in results[0]["steps"].as_array().unwrap() {
        assert_eq!(s["status"], "pass", "{s}");
        assert!(s["seconds"].is_number() && s["log"].is_string());
    }
    let xml = std::fs::read_to_string(&junit_file).unwrap();
    assert!(
        xml.contains("<testsuite name=\"basic\" tests=\"3\" failures=\"0\""),
        "{xml}"
    );
    assert_eq!(xml.matches("<testcase ").count(), 5, "{xml}");
}

#[test]
fn a_fork_whose_generated_test_fails_names_the_preset_and_step() {
    let tpl = template_with_steps(
        &[
            "test -f README.md",
            "echo 'assertion failed: 2 + 2 == 5' >&2; exit 3",
            "true",
        ],
        None,
    );
    let a = test_cmd(tpl.path())
        .args(["--yes", "--preset", "basic"])
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(
        stderr.contains("preset basic failed at step `echo 'assertion failed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("assertion failed: 2 + 2 == 5"),
        "tail of the log: {stderr}"
    );
    assert!(stderr.contains("0 passed, 1 failed"), "{stderr}");
    // The failed project is kept for inspection, and its path is printed.
    let kept = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("the rendered project is kept in "))
        .unwrap();
    assert!(Path::new(kept).join("README.md").is_file(), "{kept}");
    let _ = std::fs::remove_dir_all(Path::new(kept).parent().unwrap().parent().unwrap());
}

#[test]
fn name_renders_every_case_under_the_given_name() {
    // The step runs in the project's directory, named by the name's slug; a failing step keeps it.
    let tpl = template_with_steps(&["test \"$(basename \"$PWD\")\" = my-long-service-name", "false"], None);
    let a = test_cmd(tpl.path())
        .args(["--yes", "--preset", "basic", "--json", "--name", "My Long Service Name"])
        .assert()
        .code(1);
    let doc = json_of(&a);
    let steps = &doc["results"][0]["steps"];
    assert_eq!(steps[1]["status"], "pass", "{steps}");
    assert_eq!(steps[2]["status"], "fail", "{steps}");
    let stderr = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    let kept = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("the rendered project is kept in "))
        .unwrap();
    assert!(kept.ends_with("/my-long-service-name"), "{kept}");
    assert!(Path::new(kept).join("README.md").is_file(), "{kept}");
    let _ = std::fs::remove_dir_all(Path::new(kept).parent().unwrap().parent().unwrap());
    // A name no project could take is refused before anything runs.
    for bad in ["class", "platform", &"a".repeat(65)] {
        test_cmd(tpl.path())
            .args(["--yes", "--name", bad])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("invalid project name"));
    }
}

#[test]
fn set_answers_every_case_and_a_bad_one_is_refused_before_anything_runs() {
    let tpl = template_with_steps(&["grep -q ' x7$' README.md", "test -f extra.txt"], None);
    let out = test_cmd(tpl.path())
        .args(["--yes", "--json", "--matrix", "--set", "count=7", "--set", "extra=true"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(doc["sets"], serde_json::json!({"count": "7", "extra": "true"}));
    // `extra` is fixed, so the matrix combines nothing: one case per preset.
    let results = doc["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{doc}");
    for r in results {
        assert_eq!(r["options"], serde_json::json!({}), "{r}");
    }
    // Without --yes and without a terminal it would ask; a bad --set is refused first.
    for (set, says) in [
        ("cont=3", "did you mean `count`"),
        ("count=99", "invalid value for `count`"),
        ("count", "malformed --set `count`"),
    ] {
        test_cmd(tpl.path())
            .args(["--set", set])
            .assert()
            .code(2)
            .stderr(predicate::str::contains(says))
            .stderr(predicate::str::contains("pass --yes").not());
    }
}

#[test]
fn a_report_path_it_cannot_write_or_a_zero_timeout_is_refused_before_any_case_runs() {
    let tpl = template_with_steps(&["true"], None);
    let nowhere = TempDir::new().unwrap();
    let a = test_cmd(tpl.path())
        .args(["--yes", "--junit"])
        .arg(nowhere.path().join("missing/report.xml"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("cannot write"));
    let stderr = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(!stderr.contains("==>"), "no case may run first: {stderr}");
    test_cmd(tpl.path())
        .args(["--yes", "--timeout", "0"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--timeout"));
}

#[test]
fn without_yes_and_without_a_terminal_it_refuses() {
    let tpl = template_with_steps(&["touch /tmp/stackwise-test-must-not-run"], None);
    test_cmd(tpl.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--yes"));
}

#[test]
fn a_step_that_hangs_is_killed_with_its_process_group_at_the_timeout() {
    let marker = TempDir::new().unwrap();
    let pidfile = marker.path().join("bg.pid");
    // A duration no other process on the machine sleeps (the check below scans every process).
    let sleep = format!("sleep 300.{}", std::process::id());
    let step = format!("{sleep} & echo $! > {}; {sleep}", pidfile.display());
    let tpl = template_with_steps(&[&step], Some(2));
    let started = Instant::now();
    let a = test_cmd(tpl.path())
        .args(["--yes", "--preset", "basic", "--json"])
        .assert()
        .code(1);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    let doc = json_of(&a);
    assert_eq!(doc["results"][0]["steps"][1]["status"], "timeout");
    assert!(pidfile.is_file(), "the step started its background sleep");
    // The background `sleep` the step started is gone too (its pid is the one it has in the
    // step's PID namespace, where there is one: it is found by its command line instead).
    std::thread::sleep(Duration::from_millis(300));
    #[cfg(target_os = "linux")]
    assert_eq!(running_with(&sleep), Vec::<u32>::new(), "outlived its step");
}

/// A step's processes end with it, even those that left its process group (a new session, a
/// double fork): with PID namespaces, the kernel ends them all when the step's first process
/// ends. Setup steps (with network) too.
#[cfg(target_os = "linux")]
#[test]
fn background_processes_that_leave_the_process_group_end_with_their_step() {
    if !pid_namespaces_work() {
        eprintln!("skipped: `unshare --pid --mount-proc` is not available here");
        return;
    }
    let tokens = ["sleep 32131", "sleep 32132", "sleep 32133"];
    let tpl = template_with(
        &["setsid sleep 32131 >/dev/null 2>&1 </dev/null &"],
        &[
            "setsid sleep 32132 >/dev/null 2>&1 </dev/null &",
            "(setsid sh -c 'sleep 32133' >/dev/null 2>&1 </dev/null &)",
        ],
        None,
    );
    let doc = json_of(
        &test_cmd(tpl.path())
            .args(["--yes", "--preset", "basic", "--json"])
            .assert(),
    );
    assert_eq!(doc["passed"], true, "{doc}");
    std::thread::sleep(Duration::from_millis(300));
    let left: Vec<(&str, Vec<u32>)> = tokens
        .iter()
        .map(|t| (*t, running_with(t)))
        .filter(|(_, pids)| !pids.is_empty())
        .collect();
    for (_, pids) in &left {
        for pid in pids {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
    assert!(left.is_empty(), "outlived their steps: {left:?}");
}

/// A step that prints without end costs a bounded tail in memory and in the report; the whole
/// log stays on disk, where the note says.
#[test]
fn a_step_s_output_is_kept_to_a_bounded_tail() {
    let tpl = template_with_steps(
        &["head -c 3000000 /dev/zero | tr '\\0' x; echo; echo the-last-line; exit 1"],
        None,
    );
    let a = test_cmd(tpl.path())
        .args(["--yes", "--preset", "basic", "--json"])
        .assert()
        .code(1);
    let doc = json_of(&a);
    let log = doc["results"][0]["steps"][1]["log"].as_str().unwrap();
    assert!(log.len() < 70 * 1024, "{} bytes of log in the report", log.len());
    assert!(log.contains("the-last-line"), "the tail is kept");
    assert!(log.contains("bytes of earlier output omitted"), "{}", &log[..200]);
    let stderr = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(stderr.len() < 70 * 1024, "{} bytes on stderr", stderr.len());
    assert!(
        stderr.contains("the whole log is in "),
        "stderr names the whole log too"
    );
    // The whole log is on disk, in the kept case directory the note names.
    let whole = log
        .lines()
        .find_map(|l| l.split("the whole log is in ").nth(1))
        .expect("the note names the whole log");
    let whole = Path::new(whole.trim());
    assert!(
        std::fs::metadata(whole).unwrap().len() > 3_000_000,
        "{}",
        whole.display()
    );
    let kept = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("the rendered project is kept in "))
        .unwrap();
    let case_dir = Path::new(kept).parent().unwrap();
    assert!(
        whole.starts_with(case_dir),
        "{} under {}",
        whole.display(),
        case_dir.display()
    );
    let _ = std::fs::remove_dir_all(case_dir.parent().unwrap());
}

/// The offline steps get no registry credentials: not the user's `.npmrc` (where tokens live),
/// not a variable holding a token. Setup steps (with network) get the user's `.npmrc` for a
/// private registry; both keep the caches' locations.
#[test]
fn offline_steps_do_not_see_the_user_s_npmrc_or_tokens() {
    let home = TempDir::new().unwrap();
    write(home.path(), ".npmrc", "//registry.example/:_authToken=s3cret\n");
    std::fs::create_dir(home.path().join(".npm")).unwrap();
    let npmrc = home.path().join(".npmrc");
    let setup = format!("test \"$NPM_CONFIG_USERCONFIG\" = {}", npmrc.display());
    let tpl = template_with(
        &[&setup],
        &["env | grep -i -e userconfig -e s3cret -e npmrc && exit 1; test -n \"$npm_config_cache\""],
        None,
    );
    let doc = json_of(
        &test_cmd(tpl.path())
            .args(["--yes", "--preset", "basic", "--json"])
            .env("HOME", home.path())
            .env("NPM_CONFIG__AUTH", "s3cret-too")
            .assert(),
    );
    let steps = &doc["results"][0]["steps"];
    assert_eq!(steps[1]["status"], "pass", "setup sees the user's npmrc: {steps}");
    assert_eq!(
        steps[2]["status"], "pass",
        "the offline step sees no credentials: {steps}"
    );
}

#[test]
fn steps_run_without_network_where_unshare_works() {
    let sandbox = std::process::Command::new("unshare")
        .args(["-rn", "sh", "-c", "ip link set lo up"])
        .status()
        .is_ok_and(|s| s.success());
    if !sandbox {
        eprintln!("skipped: `unshare -rn` is not available here");
        return;
    }
    // A server on this machine's loopback, in the test's own network namespace: a step that
    // can reach it has the host's network; a sandboxed one cannot.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let step = format!("python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), 2)\"");
    let tpl = template_with_steps(&[&step], None);
    let a = test_cmd(tpl.path())
        .args(["--yes", "--preset", "basic", "--json"])
        .assert()
        .code(1);
    let doc = json_of(&a);
    assert_eq!(doc["sandbox"], true);
    assert_eq!(doc["results"][0]["steps"][1]["status"], "fail");
    assert!(
        doc["results"][0]["steps"][1]["log"]
            .as_str()
            .unwrap()
            .contains("refused")
    );
    drop(listener);
}
