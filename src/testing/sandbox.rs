//! Running one step of a template's `[test]` table: a clean environment, a home of its own,
//! a timeout that kills the whole process group, and no network where the system allows it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Timeout,
    Skipped,
    /// Stopped by Ctrl-C: never in a report (the run ends with [`crate::Error::InterruptedLeaving`]),
    /// only in the progress line of the step it stopped.
    Interrupted,
}

/// What a step printed and how it ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: Status,
    pub seconds: f64,
    pub log: String,
}

/// Whether `unshare -rn` (a user and network namespace: loopback only) works here. Checked once
/// per run: containers and some kernels forbid unprivileged namespaces.
pub fn network_sandbox_available() -> bool {
    Command::new("unshare")
        .args(["-rn", "sh", "-c", "ip link set lo up"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The environment a step sees: `PATH`, `LANG`, proxy variables and TLS trust settings, the
/// package managers' cache and registry settings, and `HOME` set to `home` — nothing else. Caches that live under the
/// user's home by default are pointed there explicitly, so a step finds what install fetched.
pub fn clean_env(home: &Path) -> Vec<(String, String)> {
    let real_home = std::env::var("HOME").unwrap_or_default();
    let mut env: Vec<(String, String)> = Vec::new();
    for (k, v) in std::env::vars() {
        let lower = k.to_ascii_lowercase();
        let keep = matches!(k.as_str(), "PATH" | "LANG" | "LC_ALL" | "TERM" | "PYENV_ROOT")
            || matches!(lower.as_str(), "http_proxy" | "https_proxy" | "no_proxy" | "all_proxy")
            || k.starts_with("PIP_")
            || k.starts_with("UV_")
            || lower.starts_with("npm_config_")
            || k == "XDG_CACHE_HOME"
            // TLS trust: a machine behind an inspecting proxy or a private mirror needs its CA
            // bundle for the setup steps that fetch packages.
            || matches!(k.as_str(), "SSL_CERT_FILE" | "SSL_CERT_DIR" | "NODE_EXTRA_CA_CERTS" | "GIT_SSL_CAINFO")
            || k.ends_with("_CA_BUNDLE");
        if keep {
            env.push((k, v));
        }
    }
    let has = |env: &[(String, String)], key: &str| env.iter().any(|(k, _)| k.eq_ignore_ascii_case(key));
    if !real_home.is_empty() {
        let under = |rel: &str| format!("{real_home}/{rel}");
        let defaults = [
            ("UV_CACHE_DIR", under(".cache/uv")),
            ("PIP_CACHE_DIR", under(".cache/pip")),
            ("npm_config_cache", under(".npm")),
            ("PYENV_ROOT", under(".pyenv")),
            ("NPM_CONFIG_USERCONFIG", under(".npmrc")),
        ];
        for (k, v) in defaults {
            if !has(&env, k) && Path::new(&v).exists() {
                env.push((k.to_string(), v));
            }
        }
    }
    env.push(("HOME".into(), home.display().to_string()));
    env.push(("CI".into(), "true".into()));
    env
}

/// Runs `command` (a shell line) in `dir`. With `offline`, inside `unshare -rn` with loopback up.
/// Output (stdout and stderr together) goes to `log_path` and comes back as the outcome's log.
pub fn run_step(
    command: &str,
    dir: &Path,
    env: &[(String, String)],
    offline: bool,
    timeout: Duration,
    log_path: &Path,
) -> Outcome {
    let started = Instant::now();
    let log_file = match std::fs::File::create(log_path) {
        Ok(f) => f,
        Err(e) => {
            return Outcome {
                status: Status::Fail,
                seconds: 0.0,
                log: format!("cannot create {}: {e}", log_path.display()),
            };
        }
    };
    let mut cmd = if offline {
        let mut c = Command::new("unshare");
        c.args(["-rn", "sh", "-c", "ip link set lo up && exec sh -c \"$0\"", command]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", command]);
        c
    };
    cmd.current_dir(dir)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null());
    match log_file.try_clone() {
        Ok(clone) => {
            cmd.stdout(clone).stderr(log_file);
        }
        Err(_) => {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // Its own process group, so a timeout kills everything the step started.
        cmd.process_group(0);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Outcome {
                status: Status::Fail,
                seconds: 0.0,
                log: format!("cannot start `{command}`: {e}"),
            };
        }
    };
    let mut interrupted = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if started.elapsed() > timeout || crate::interrupt::check().is_err() => {
                interrupted = crate::interrupt::check().is_err();
                kill_group(child.id());
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => break None,
        }
    };
    // A step that exited may have left background processes in its group: end them too.
    kill_group(child.id());
    let mut log = String::new();
    if let Ok(mut f) = std::fs::File::open(log_path) {
        let mut bytes = Vec::new();
        let _ = f.read_to_end(&mut bytes);
        log = String::from_utf8_lossy(&bytes).into_owned();
    }
    let seconds = started.elapsed().as_secs_f64();
    let status = match status {
        Some(s) if s.success() => Status::Pass,
        Some(_) => Status::Fail,
        None if interrupted => {
            log.push_str("\n[stackwise test] stopped: interrupted (Ctrl-C)\n");
            Status::Interrupted
        }
        None => {
            log.push_str(&format!(
                "\n[stackwise test] killed after {} s (timeout)\n",
                timeout.as_secs()
            ));
            Status::Timeout
        }
    };
    Outcome { status, seconds, log }
}

fn kill_group(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The last `lines` lines of a log.
pub fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A fresh directory for one case: `<root>/<name>` with `home/` inside.
pub fn case_dir(root: &Path, name: &str) -> std::io::Result<(PathBuf, PathBuf)> {
    let dir = root.join(name);
    let home = dir.join("home");
    std::fs::create_dir_all(&home)?;
    Ok((dir, home))
}
