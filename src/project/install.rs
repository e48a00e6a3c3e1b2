//! `stackwise new --install`: the generated project's own install steps, run by stackwise.
//!
//! The steps are stackwise's own and fixed: `uv sync` where a `pyproject.toml` is, `npm install`
//! where a `package.json` is (the project root and its direct subdirectories). Nothing a template
//! says is ever executed, and the files it wrote cannot make the tools execute it either: uv
//! builds nothing (not the project, whose build backend and hooks are the template's, nor a path
//! dependency), downloads no Python (the project's `[tool.uv]` may name where from) and is never
//! pointed at an interpreter by path (`.python-version`); npm runs no install scripts and uses
//! `git` from PATH (a project `.npmrc` may name another); and a relative entry of PATH (`.`,
//! `node_modules/.bin`), which would find the template's own files, is dropped. Each step's
//! output goes to a log file; a missing tool or a failed step leaves the written project in
//! place.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

/// One install step: a fixed command in a directory of the project.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Directory relative to the project root (`.`, `gateway`, …).
    pub dir: String,
    pub program: String,
    pub args: Vec<String>,
    /// How to get the program when it is missing.
    pub get_it: String,
    /// The lockfile this step creates.
    pub lockfile: String,
}

impl Step {
    pub fn display(&self) -> String {
        let cmd = std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        if self.dir == "." {
            cmd
        } else {
            format!("{cmd} (in {})", self.dir)
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    pub step: Step,
    pub ok: bool,
    pub seconds: f64,
    /// Why it failed, with how to fix or retry.
    pub error: Option<String>,
}

/// Reports progress to the user (the binary draws it; tests ignore it).
pub trait Progress {
    fn start(&mut self, step: &Step);
    fn finish(&mut self, result: &StepResult);
}

/// The steps for the files a template wrote (paths relative to the project root): `uv sync`
/// where it wrote a `pyproject.toml`, `npm install` where it wrote a `package.json`, at the root
/// or one directory below it; Python first. Directories the template did not write into (a
/// user's own package under `--force`) are never touched.
pub fn steps_for(written: &[String]) -> Vec<Step> {
    let mut python = Vec::new();
    let mut node = Vec::new();
    let mut paths: Vec<&String> = written.iter().collect();
    paths.sort();
    for path in paths {
        let (dir, file) = match path.rsplit_once('/') {
            Some((d, f)) if !d.contains('/') => (d.to_string(), f),
            Some(_) => continue,
            None => (".".to_string(), path.as_str()),
        };
        match file {
            "pyproject.toml" => python.push(Step {
                dir,
                program: "uv".into(),
                // Lockfile and dependencies; the project itself is installed by `make install`.
                args: ["sync", "--no-install-project", "--no-build", "--no-python-downloads"]
                    .map(String::from)
                    .to_vec(),
                get_it: "install uv with `python3 -m pip install uv` (or see https://docs.astral.sh/uv/getting-started/installation/)".into(),
                lockfile: "uv.lock".into(),
            }),
            "package.json" => node.push(Step {
                dir,
                program: "npm".into(),
                // Install scripts are the template's code: stackwise never runs them.
                args: ["install", "--ignore-scripts", "--no-audit", "--no-fund", "--git=git"]
                    .map(String::from)
                    .to_vec(),
                get_it: "install Node.js 20.19 or newer, which ships npm (https://nodejs.org/ or your package manager)".into(),
                lockfile: "package-lock.json".into(),
            }),
            _ => {}
        }
    }
    python.extend(node);
    python
}

/// Finds `program` on PATH (its absolute entries: see [`absolute_path`]).
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = absolute_path()?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// PATH without its relative entries (`.`, an empty one, `node_modules/.bin`): run in the
/// project, they would find programs the template wrote (a `python3.11` uv would query).
fn absolute_path() -> Option<std::ffi::OsString> {
    let path = std::env::var_os("PATH")?;
    std::env::join_paths(std::env::split_paths(&path).filter(|d| d.is_absolute())).ok()
}

/// A `.python-version(s)` of the project that names an interpreter by path, which uv would run
/// to query it: only version requests (`3.12`, `cpython@3.12`, `pypy3.10`) are taken.
fn python_pin_by_path(project: &Path, dir: &Path) -> Option<String> {
    [dir, project]
        .iter()
        .flat_map(|d| [d.join(".python-version"), d.join(".python-versions")])
        .filter_map(|f| std::fs::read_to_string(&f).ok().map(|text| (f, text)))
        .find_map(|(f, text)| {
            text.lines()
                .map(str::trim)
                .find(|l| {
                    !l.is_empty() && !l.starts_with('#') && (l.contains(['/', '\\']) || l.starts_with(['.', '~']))
                })
                .map(|l| format!("{} names an interpreter by path ({l:?})", f.display()))
        })
}

/// Kills the step's process group (unix), else the step.
fn kill_group(child: &mut std::process::Child) {
    #[cfg(unix)]
    {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    let _ = child.kill();
}

/// A new log file for install steps, `stackwise-install-<what>-<random>.log` in the temporary
/// directory, created exclusively (a name known in advance could be a symlink someone placed).
pub fn new_log(what: &str) -> std::io::Result<PathBuf> {
    let file = tempfile::Builder::new()
        .prefix(&format!("stackwise-install-{what}-"))
        .suffix(".log")
        .tempfile()?;
    file.into_temp_path().keep().map_err(|e| e.error)
}

fn python_module_available(module: &str) -> bool {
    Command::new("python3")
        .args(["-m", module, "--version"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs every step in order, appending all output to `log`. Stops at the first failure.
pub fn run(project: &Path, steps: &[Step], log: &Path, progress: &mut dyn Progress) -> Vec<StepResult> {
    let mut results = Vec::new();
    let mut log_file = std::fs::OpenOptions::new().create(true).append(true).open(log).ok();
    for step in steps {
        progress.start(step);
        let started = Instant::now();
        let outcome = run_one(project, step, log, log_file.as_mut());
        let result = StepResult {
            step: step.clone(),
            ok: outcome.is_ok(),
            seconds: started.elapsed().as_secs_f64(),
            error: outcome.err(),
        };
        progress.finish(&result);
        let failed = !result.ok;
        results.push(result);
        if failed || crate::interrupt::check().is_err() {
            break;
        }
    }
    results
}

fn run_one(project: &Path, step: &Step, log: &Path, log_file: Option<&mut std::fs::File>) -> Result<(), String> {
    let (program, prefix) = match find_program(&step.program) {
        Some(p) => (p, Vec::new()),
        // uv installed with `pip install uv` may not be on PATH (pyenv, --user); python3 -m uv works.
        None if step.program == "uv" && python_module_available("uv") => {
            (PathBuf::from("python3"), vec!["-m".to_string(), "uv".to_string()])
        }
        None => return Err(format!("`{}` is not installed: {}", step.program, step.get_it)),
    };
    let dir = project.join(&step.dir);
    if step.program == "uv"
        && let Some(why) = python_pin_by_path(project, &dir)
    {
        return Err(format!(
            "{why}: stackwise runs no program a template wrote; review it, then run `uv sync` yourself"
        ));
    }
    let (stdout, stderr) = match log_file {
        Some(f) => {
            let _ = writeln!(f, "\n==> {} in {}", step.display(), dir.display());
            match (f.try_clone(), f.try_clone()) {
                (Ok(a), Ok(b)) => (Stdio::from(a), Stdio::from(b)),
                _ => (Stdio::null(), Stdio::null()),
            }
        }
        None => (Stdio::null(), Stdio::null()),
    };
    let mut cmd = Command::new(program);
    cmd.args(&prefix)
        .args(&step.args)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    if let Some(path) = absolute_path() {
        cmd.env("PATH", path);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // Its own process group, so Ctrl-C ends what the tool started too (npm's children).
        cmd.process_group(0);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start `{}`: {e}", step.program))?;
    // Polled rather than waited for, so Ctrl-C stops the step even when the signal reached
    // stackwise alone (a terminal sends it to the whole foreground group; `kill` does not).
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if crate::interrupt::check().is_err() => {
                kill_group(&mut child);
                let _ = child.wait();
                return Err(format!("`{}` was interrupted", step.display()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("cannot wait for `{}`: {e}", step.program)),
        }
    };
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` exited with {}; its output is in {}",
            step.display(),
            status.code().map_or("a signal".to_string(), |c| format!("code {c}")),
            log.display()
        ))
    }
}
