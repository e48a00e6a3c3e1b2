//! `stackwise test TEMPLATE`: render every preset (or each preset × boolean option with
//! `--matrix`), install it with stackwise's own install steps, then run the steps the template
//! declares in its manifest's `[test]` table — offline where the system allows it, each with a
//! timeout, a clean environment and a home of its own.
//!
//! This runs code from the template; the binary asks first (or takes `--yes`).

pub mod report;
pub mod sandbox;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::project::install::{Progress, Step, StepResult};
use crate::project::new::{NewRequest, new_project};
use crate::template::answers::check_keys;
use crate::template::matrix::{applies, bool_matrix};
use crate::template::names::ProjectName;
use crate::template::prompter::NoPrompt;
use crate::template::source::TemplateSource;
use crate::template::value::coerce;
use crate::template::{MANIFEST_FILE, Template, parse_sets};
use sandbox::Status;

/// Default seconds a step may take when neither `--timeout` nor `[test] timeout` says.
pub const DEFAULT_TIMEOUT_SECS: u64 = 900;

/// What `stackwise test` was asked to do.
#[derive(Debug, Clone)]
pub struct TestRequest {
    pub template: TemplateSource,
    /// Presets to test; empty = all.
    pub presets: Vec<String>,
    pub matrix: bool,
    pub keep: bool,
    pub jobs: usize,
    pub timeout: Option<Duration>,
    /// Where the cases go; a temporary directory when `None`.
    pub work_dir: Option<PathBuf>,
    /// The name every case's project is rendered under (`--name`; [`DEFAULT_PROJECT_NAME`]).
    pub name: String,
    /// `--set KEY=VALUE`: answers for every case whose layout the variable applies to (a long
    /// description, say); with `--matrix` a variable set here is not combined.
    pub sets: Vec<String>,
}

/// The project name of a case unless `--name` gives another.
pub const DEFAULT_PROJECT_NAME: &str = "project";

/// One render to test: a preset and the option values set on top of it.
#[derive(Debug, Clone, Serialize)]
pub struct Case {
    pub preset: String,
    pub layout: String,
    /// The matrix's combination (`--matrix`), shown in the case's label.
    pub options: Map<String, Value>,
    /// The `--set` answers that apply to this case's layout (the same for every case).
    #[serde(skip)]
    pub sets: Map<String, Value>,
}

impl Case {
    /// `ml-api` or `ml-api[worker=true,websocket=false]`.
    pub fn label(&self) -> String {
        if self.options.is_empty() {
            return self.preset.clone();
        }
        let opts: Vec<String> = self.options.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{}[{}]", self.preset, opts.join(","))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub name: String,
    pub status: Status,
    pub seconds: f64,
    pub log: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseReport {
    pub preset: String,
    pub options: Map<String, Value>,
    #[serde(skip)]
    pub label: String,
    pub steps: Vec<StepReport>,
    /// Where the case was rendered (kept on failure or with `--keep`).
    pub dir: Option<PathBuf>,
}

impl CaseReport {
    pub fn passed(&self) -> bool {
        self.steps
            .iter()
            .all(|s| matches!(s.status, Status::Pass | Status::Skipped))
    }

    pub fn first_failure(&self) -> Option<&StepReport> {
        self.steps
            .iter()
            .find(|s| matches!(s.status, Status::Fail | Status::Timeout))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TestReport {
    pub template: String,
    /// The `--set` answers, as given (strings).
    pub sets: Map<String, Value>,
    pub sandbox: bool,
    pub results: Vec<CaseReport>,
    pub passed: bool,
}

/// Told what happens as it happens (the binary draws a progress display).
pub trait TestProgress: Send {
    fn case_started(&mut self, case: &Case);
    fn step_started(&mut self, case: &Case, step: &str);
    fn step_finished(&mut self, case: &Case, step: &StepReport);
}

/// The cases of a request: each preset, and with `matrix` each combination of the boolean
/// variables that apply to its layout (less those `sets` fixes). Each case takes the `sets` that
/// apply to its layout; one that applies to no case is refused, as `new` refuses it.
pub fn cases(template: &Template, req: &TestRequest, sets: &Map<String, Value>) -> Result<Vec<Case>> {
    let mut out = Vec::new();
    for id in &req.presets {
        template.catalogue.get(id)?;
    }
    for p in &template.catalogue.presets {
        if !req.presets.is_empty() && !req.presets.contains(&p.id) {
            continue;
        }
        let mut applied = Map::new();
        for (k, v) in sets {
            if let Some(var) = template.manifest.variable(k)
                && applies(var, &p.layout)?
            {
                applied.insert(k.clone(), v.clone());
            }
        }
        let combinations = if req.matrix {
            bool_matrix(&template.manifest, &p.layout, &applied)?
        } else {
            vec![Map::new()]
        };
        for options in combinations {
            out.push(Case {
                preset: p.id.clone(),
                layout: p.layout.clone(),
                options,
                sets: applied.clone(),
            });
        }
    }
    if let Some(key) = sets.keys().find(|k| !out.iter().any(|c| c.sets.contains_key(*k))) {
        return Err(Error::InapplicableVariable {
            key: key.clone(),
            when: template
                .manifest
                .variable(key)
                .and_then(|v| v.when.clone())
                .unwrap_or_default(),
            context: " for every preset tested".into(),
        });
    }
    Ok(out)
}

/// A request checked against its template before anything runs: the name, the `--set` answers
/// (known variables, valid values) and the cases.
pub struct Prepared {
    template: Template,
    name: ProjectName,
    sets: Map<String, Value>,
    cases: Vec<Case>,
}

/// Reads the template and checks every input of `req`: whatever is wrong with them is an error
/// here, before a case renders or a step runs (the binary calls it before it asks for consent).
pub fn prepare(req: &TestRequest) -> Result<Prepared> {
    // A name no case could render under is refused before the template is even read.
    let name = ProjectName::parse(&req.name)?;
    let given = parse_sets(&req.sets)?;
    let template = Template::load(&req.template)?;
    name.check_reserved(&template.manifest.template.reserved_names)?;
    if template.manifest.test.steps.is_empty() {
        return Err(Error::Manifest {
            path: MANIFEST_FILE.into(),
            reason: "declares no [test] steps, so there is nothing to run (see docs/TEMPLATES.md, `[test]`)".into(),
        });
    }
    check_keys(&template.manifest, &given, " (in --set)")?;
    // Each value is checked here and passed on as given, as `new --set` takes it.
    for (key, value) in &given {
        if let Some(var) = template.manifest.variable(key) {
            coerce(var, value).map_err(|reason| Error::InvalidValue {
                key: key.clone(),
                reason,
            })?;
        }
    }
    let cases = cases(&template, req, &given)?;
    let sets = given;
    Ok(Prepared {
        template,
        name,
        sets,
        cases,
    })
}

/// Install progress is folded into the case's steps; nothing to draw here.
struct Quiet;

impl Progress for Quiet {
    fn start(&mut self, _: &Step) {}
    fn finish(&mut self, _: &StepResult) {}
}

/// Runs every case; `progress` hears about each step.
pub fn run(req: &TestRequest, progress: Arc<Mutex<dyn TestProgress>>) -> Result<TestReport> {
    run_prepared(req, prepare(req)?, progress)
}

/// Runs the cases of a request [`prepare`] checked.
pub fn run_prepared(
    req: &TestRequest,
    prepared: Prepared,
    progress: Arc<Mutex<dyn TestProgress>>,
) -> Result<TestReport> {
    let Prepared {
        template,
        name,
        sets,
        cases: all,
    } = prepared;
    let declared = &template.manifest.test;
    let timeout = req
        .timeout
        .or(declared.timeout.map(Duration::from_secs))
        .unwrap_or(Duration::from_secs(DEFAULT_TIMEOUT_SECS));
    let contain = sandbox::containment();
    let (tmp, root) = work_root(req)?;
    let mut results = run_in_parallel(all, req.jobs, |i, case| {
        run_case(
            i,
            case,
            &req.template,
            &name,
            declared,
            &root,
            contain,
            timeout,
            &progress,
        )
    });
    if crate::interrupt::check().is_err() {
        return Err(interrupted(tmp, &root));
    }
    let passed = results.iter().all(CaseReport::passed);
    keep_what_failed(&mut results, tmp, passed, req.keep);
    Ok(TestReport {
        template: template.tree.source.clone(),
        sets,
        sandbox: contain.network,
        results,
        passed,
    })
}

/// Where the cases are rendered: `--work-dir` (created if need be), else a temporary directory
/// (returned too: it goes when dropped, unless kept).
fn work_root(req: &TestRequest) -> Result<(Option<tempfile::TempDir>, PathBuf)> {
    match &req.work_dir {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
            Ok((None, d.clone()))
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("stackwise-test-")
                .tempdir()
                .map_err(|e| Error::io(std::env::temp_dir(), e))?;
            let root = t.path().to_path_buf();
            Ok((Some(t), root))
        }
    }
}

/// Runs `run_one` over the cases on `jobs` threads (at least one), taking them in order until
/// none is left or Ctrl-C; the reports come back in the order of the cases.
fn run_in_parallel(
    all: Vec<Case>,
    jobs: usize,
    run_one: impl Fn(usize, &Case) -> CaseReport + Sync,
) -> Vec<CaseReport> {
    let queue = Mutex::new(all.into_iter().enumerate().collect::<Vec<_>>());
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| {
                loop {
                    let next = queue
                        .lock()
                        .ok()
                        .and_then(|mut q| if q.is_empty() { None } else { Some(q.remove(0)) });
                    let Some((i, case)) = next else { break };
                    if crate::interrupt::check().is_err() {
                        break;
                    }
                    let report = run_one(i, &case);
                    if let Ok(mut r) = results.lock() {
                        r.push((i, report));
                    }
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_default();
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// The error of a stopped run: nothing of it is worth keeping, so the temporary directory goes
/// (a `--work-dir` is the caller's to remove); the error says which.
fn interrupted(tmp: Option<tempfile::TempDir>, root: &Path) -> Error {
    let what = match tmp {
        Some(t) => {
            let path = t.path().display().to_string();
            match t.close() {
                Ok(()) => format!("removed the test directory {path}"),
                Err(e) => format!("could not remove the test directory {path} ({e}); delete it by hand"),
            }
        }
        None => format!("the rendered projects are in {}", root.display()),
    };
    Error::InterruptedLeaving(what)
}

/// Keeps what failed (and everything with `--keep`); the rest goes. The kept cases stay on disk
/// for inspection; their paths are in the report.
fn keep_what_failed(results: &mut [CaseReport], tmp: Option<tempfile::TempDir>, passed: bool, keep: bool) {
    for r in results.iter_mut() {
        if let Some(d) = &r.dir
            && r.passed()
            && !keep
        {
            let _ = std::fs::remove_dir_all(d);
            r.dir = None;
        }
    }
    if let Some(t) = tmp
        && (!passed || keep)
    {
        let _ = t.keep();
    }
}

#[allow(clippy::too_many_arguments)]
fn run_case(
    index: usize,
    case: &Case,
    template: &TemplateSource,
    name: &ProjectName,
    declared: &crate::template::manifest::TestTable,
    root: &Path,
    contain: sandbox::Containment,
    timeout: Duration,
    progress: &Arc<Mutex<dyn TestProgress>>,
) -> CaseReport {
    let label = case.label();
    let mut report = CaseReport {
        preset: case.preset.clone(),
        options: case.options.clone(),
        label: label.clone(),
        steps: Vec::new(),
        dir: None,
    };
    if let Ok(mut p) = progress.lock() {
        p.case_started(case);
    }
    let case_name = format!("case-{index:02}-{}", case.preset);
    let Ok((dir, home)) = sandbox::case_dir(root, &case_name) else {
        report.steps.push(StepReport {
            name: "render".into(),
            status: Status::Fail,
            seconds: 0.0,
            log: format!("cannot create a directory under {}", root.display()),
        });
        return report;
    };
    report.dir = Some(dir.clone());
    let step = |steps: &mut Vec<StepReport>, name: &str, f: &mut dyn FnMut() -> (Status, f64, String)| -> bool {
        if let Ok(mut p) = progress.lock() {
            p.step_started(case, name);
        }
        let (status, seconds, log) = f();
        let s = StepReport {
            name: name.to_string(),
            status,
            seconds,
            log,
        };
        if let Ok(mut p) = progress.lock() {
            p.step_finished(case, &s);
        }
        let ok = s.status == Status::Pass;
        steps.push(s);
        ok
    };
    // Render + stackwise's own install steps (with network).
    let project = dir.join(&name.slug);
    let ok = step(&mut report.steps, "render + install", &mut || {
        render_and_install(case, template, &name.name, &dir, &project)
    });
    // Setup steps fetch (with the user's registry settings); the offline steps get none of its
    // credentials, sandbox or not.
    let setup_env = sandbox::clean_env(&home);
    let offline_env = sandbox::offline_env(&setup_env);
    let setup = declared.setup.get(&case.layout).cloned().unwrap_or_default();
    let steps = declared.steps.get(&case.layout).cloned().unwrap_or_default();
    let online = sandbox::Isolation {
        offline: false,
        own_pids: contain.pids,
    };
    let offline = sandbox::Isolation {
        offline: contain.network,
        own_pids: contain.pids,
    };
    let mut go = ok;
    let mut n = 0;
    for (command, how, env) in setup
        .iter()
        .map(|c| (c, online, &setup_env))
        .chain(steps.iter().map(|c| (c, offline, &offline_env)))
    {
        n += 1;
        if !go {
            report.steps.push(StepReport {
                name: command.clone(),
                status: Status::Skipped,
                seconds: 0.0,
                log: String::new(),
            });
            continue;
        }
        if crate::interrupt::check().is_err() {
            break;
        }
        let log_path = dir.join(format!("step-{n:02}.log"));
        go = step(&mut report.steps, command, &mut || {
            let o = sandbox::run_step(command, &project, env, how, timeout, &log_path);
            (o.status, o.seconds, o.log)
        });
    }
    report
}

/// The first step of a case: the project rendered with stackwise's own install steps (with
/// network), as `stackwise new --install` makes it; the log holds each install step's result.
fn render_and_install(
    case: &Case,
    template: &TemplateSource,
    name: &str,
    dir: &Path,
    project: &Path,
) -> (Status, f64, String) {
    let started = std::time::Instant::now();
    let req = NewRequest {
        name: name.to_string(),
        preset: Some(case.preset.clone()),
        layout: None,
        output_dir: dir.to_path_buf(),
        template: template.clone(),
        sets: case
            .sets
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .chain(case.options.iter().map(|(k, v)| format!("{k}={v}")))
            .collect(),
        answers_file: None,
        force: false,
        dry_run: false,
        git: true,
        install: true,
    };
    match new_project(&req, &mut NoPrompt, &mut Quiet) {
        Ok(o) => {
            let mut log = format!("rendered {} files into {}\n", o.files.len(), project.display());
            let mut all_ok = true;
            for r in &o.install {
                log.push_str(&format!(
                    "{}: {}\n",
                    r.step.display(),
                    if r.ok { "ok" } else { "FAILED" }
                ));
                if let Some(e) = &r.error {
                    log.push_str(e);
                    log.push('\n');
                    all_ok = false;
                }
            }
            if let Some(p) = &o.install_log {
                // Kept with the case (its tail in the report), not beside it in the temporary
                // directory.
                let kept = dir.join("install.log");
                if std::fs::rename(p, &kept).is_ok() || std::fs::copy(p, &kept).is_ok() {
                    log.push_str(&sandbox::read_tail(&kept));
                } else {
                    log.push_str(&sandbox::read_tail(p));
                }
                let _ = std::fs::remove_file(p);
            }
            let status = if all_ok { Status::Pass } else { Status::Fail };
            (status, started.elapsed().as_secs_f64(), log)
        }
        Err(e) if e.is_interrupt() => (Status::Interrupted, started.elapsed().as_secs_f64(), e.to_string()),
        Err(e) => (Status::Fail, started.elapsed().as_secs_f64(), e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(presets: &[&str], sets: &[&str], matrix: bool) -> TestRequest {
        TestRequest {
            template: TemplateSource::Builtin,
            presets: presets.iter().map(|p| (*p).to_string()).collect(),
            matrix,
            keep: false,
            jobs: 1,
            timeout: None,
            work_dir: None,
            name: DEFAULT_PROJECT_NAME.into(),
            sets: sets.iter().map(|s| (*s).to_string()).collect(),
        }
    }

    /// A `--set` reaches the cases whose layout it applies to, fixes its place in the matrix, and
    /// is refused when it applies to none of the presets tested.
    #[test]
    fn a_set_applies_where_its_condition_holds() {
        let p = prepare(&request(&[], &["proxy=false", "description=Long"], true)).unwrap();
        assert!(!p.cases.is_empty());
        for c in &p.cases {
            let node = c.layout == "node";
            assert_eq!(c.sets.contains_key("proxy"), node, "{}", c.label());
            assert!(c.sets.contains_key("description"), "{}", c.label());
            assert!(!c.options.contains_key("proxy"), "{}", c.label());
        }
        let Err(e) = prepare(&request(&["ml-api"], &["proxy=true"], false)) else {
            panic!("proxy applies to no python preset");
        };
        assert!(
            matches!(e, Error::InapplicableVariable { ref key, .. } if key == "proxy"),
            "{e}"
        );
        assert!(e.to_string().contains("for every preset tested"), "{e}");
    }
}
