//! Running one step of a template's `[test]` table: a clean environment, a home of its own,
//! a timeout that kills the whole process group, a PID namespace of its own (every process the
//! step started ends with it) and no network where the system allows it, and a bounded tail of
//! its output in the report (the whole log stays on disk).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
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

/// The most of a step's output a report holds: its last 64 KiB (the whole log is on disk).
pub const LOG_TAIL_BYTES: u64 = 64 * 1024;

/// What the system lets `stackwise test` do to contain a step, settled once per process
/// ([`containment`]): containers and some kernels forbid unprivileged namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Containment {
    /// `unshare -rn` works (a user and network namespace, loopback only): the offline steps run
    /// without network.
    pub network: bool,
    /// A PID namespace of its own works for every step (`unshare --pid --fork --mount-proc` in a
    /// user namespace): when the step's first process ends, the kernel ends every process it
    /// started, those that left its process group (a new session, a double fork) too. Without
    /// it the step's process group is killed, and a process that left it may outlive the step.
    pub pids: bool,
}

/// How one step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Isolation {
    /// In a network namespace with loopback only (`unshare -rn`).
    pub offline: bool,
    /// In a PID namespace of its own.
    pub own_pids: bool,
}

/// `unshare`'s arguments for a PID namespace whose first process is the step (`--kill-child`:
/// killed with `unshare`, which takes every other process of the namespace with it).
const PID_NAMESPACE: [&str; 4] = ["--pid", "--fork", "--mount-proc", "--kill-child"];

/// Whether `unshare ARGS` succeeds here.
fn unshare_works(args: &[&str]) -> bool {
    Command::new("unshare")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// What this system allows (see [`Containment`]), checked once per process.
pub fn containment() -> Containment {
    static SETTLED: OnceLock<Containment> = OnceLock::new();
    *SETTLED.get_or_init(|| {
        let network = unshare_works(&["-rn", "sh", "-c", "ip link set lo up"]);
        let with_pids = |first: &[&str], check: &str| {
            let args: Vec<&str> = first
                .iter()
                .chain(PID_NAMESPACE.iter())
                .chain(["sh", "-c", check].iter())
                .copied()
                .collect();
            unshare_works(&args)
        };
        // Setup steps keep the user's identity (`-c`), offline ones run as today (`-rn`).
        let pids =
            with_pids(&["-c"], "test $$ = 1") && (!network || with_pids(&["-rn"], "ip link set lo up && test $$ = 1"));
        Containment { network, pids }
    })
}

/// Whether `unshare -rn` (a user and network namespace: loopback only) works here. Checked once
/// per process: containers and some kernels forbid unprivileged namespaces.
pub fn network_sandbox_available() -> bool {
    containment().network
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

/// The environment of an offline step (`[test.steps]`): [`clean_env`] less what only a registry
/// needs — the user's `.npmrc` (`NPM_CONFIG_USERCONFIG`, where registry tokens live) and every
/// variable whose name says it holds a credential (`…auth…`, `…token…`, `…password…`). Setup
/// steps, which fetch, keep them (a private registry); the offline steps fetch nothing.
pub fn offline_env(env: &[(String, String)]) -> Vec<(String, String)> {
    env.iter()
        .filter(|(k, _)| {
            let lower = k.to_ascii_lowercase();
            lower != "npm_config_userconfig"
                && !["auth", "token", "password", "passwd", "secret", "credential"]
                    .iter()
                    .any(|word| lower.contains(word))
        })
        .cloned()
        .collect()
}

/// The command that runs the shell line `step` as `how` says.
fn step_command(step: &str, how: Isolation) -> Command {
    let pids: &[&str] = if how.own_pids { &PID_NAMESPACE } else { &[] };
    if how.offline {
        let mut c = Command::new("unshare");
        c.arg("-rn")
            .args(pids)
            .args(["sh", "-c", "ip link set lo up && exec sh -c \"$0\"", step]);
        c
    } else if how.own_pids {
        let mut c = Command::new("unshare");
        c.arg("-c").args(pids).args(["sh", "-c", step]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", step]);
        c
    }
}

/// Runs `command` (a shell line) in `dir`, as `how` says: with `offline`, inside `unshare -rn`
/// with loopback up; with `own_pids`, in a PID namespace of its own. Output (stdout and stderr
/// together) goes to `log_path`; its last [`LOG_TAIL_BYTES`] come back as the outcome's log.
pub fn run_step(
    command: &str,
    dir: &Path,
    env: &[(String, String)],
    how: Isolation,
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
    let mut cmd = step_command(command, how);
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
    // A step that exited may have left background processes in its group: end them too (in a
    // PID namespace of its own the kernel ended them all when its first process ended).
    kill_group(child.id());
    let mut log = read_tail(log_path);
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

/// The last [`LOG_TAIL_BYTES`] of the log at `path` (what a report holds of it), after a note
/// naming the file when earlier output was left out: never more than that is read.
pub fn read_tail(path: &Path) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let omitted = len.saturating_sub(LOG_TAIL_BYTES);
    if omitted > 0 && f.seek(SeekFrom::Start(omitted)).is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    // `take`: a process that still writes cannot make it longer.
    let _ = f.take(LOG_TAIL_BYTES).read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    if omitted == 0 {
        return text.into_owned();
    }
    format!(
        "{OMITTED_NOTE} {omitted} bytes of earlier output omitted; the whole log is in {}\n{text}",
        path.display()
    )
}

/// How the note [`read_tail`] puts before a tail starts.
const OMITTED_NOTE: &str = "[stackwise test]";

/// The note [`read_tail`] put before a log's tail (what was left out, where the whole log is), if
/// it put one.
pub fn omitted_note(log: &str) -> Option<&str> {
    log.lines()
        .next()
        .filter(|l| l.starts_with(OMITTED_NOTE) && l.contains("bytes of earlier output omitted"))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The offline steps keep the caches' locations and lose the user's `.npmrc` and every
    /// variable named as a credential.
    #[test]
    fn offline_steps_get_no_registry_credentials() {
        let env: Vec<(String, String)> = [
            ("PATH", "/bin"),
            ("npm_config_cache", "/h/.npm"),
            ("NPM_CONFIG_USERCONFIG", "/h/.npmrc"),
            ("npm_config_userconfig", "/h/.npmrc"),
            ("NPM_CONFIG__AUTH", "x"),
            ("npm_config_//registry.example/:_authToken", "x"),
            ("UV_INDEX_EXAMPLE_PASSWORD", "x"),
            ("PIP_CACHE_DIR", "/h/.cache/pip"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
        let offline = offline_env(&env);
        let kept: Vec<&str> = offline.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(kept, ["PATH", "npm_config_cache", "PIP_CACHE_DIR"]);
    }

    /// A long log comes back as its last [`LOG_TAIL_BYTES`], after a note naming the file.
    #[test]
    fn a_long_log_is_read_as_its_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("step.log");
        std::fs::write(&path, "short\n").unwrap();
        assert_eq!(read_tail(&path), "short\n");
        let long = format!("{}\nthe end\n", "x".repeat(200_000));
        std::fs::write(&path, &long).unwrap();
        let tail = read_tail(&path);
        let (note, rest) = tail.split_once('\n').unwrap();
        let omitted = long.len() as u64 - LOG_TAIL_BYTES;
        assert_eq!(
            note,
            format!(
                "[stackwise test] {omitted} bytes of earlier output omitted; the whole log is in {}",
                path.display()
            )
        );
        assert_eq!(omitted_note(&tail), Some(note));
        assert_eq!(omitted_note("short\n"), None);
        assert_eq!(rest.len() as u64, LOG_TAIL_BYTES);
        assert!(rest.ends_with("x\nthe end\n"));
        assert_eq!(read_tail(&dir.path().join("missing.log")), "");
    }
}
