//! `stackwise test [TEMPLATE_DIR]`: arguments, consent, progress and the report. The work is
//! `stackwise::testing`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stackwise::template::source::TemplateSource;
use stackwise::testing::sandbox::Status;
use stackwise::testing::{self, Case, StepReport, TestProgress, TestRequest};
use stackwise::{Error, Result};

use super::settings::{Settings, print_json};
use super::status::ExitStatus;
use super::{ask, style};

#[derive(clap::Args, Debug)]
pub struct TestArgs {
    /// The template directory (the one holding stackwise.toml); the built-in template if omitted.
    dir: Option<PathBuf>,
    /// Test only this preset (repeatable).
    #[arg(long = "preset", short = 'p', value_name = "ID")]
    presets: Vec<String>,
    /// Also every combination of the boolean options that apply to each preset's layout.
    #[arg(long)]
    matrix: bool,
    /// Keep every rendered project (failed ones are always kept).
    #[arg(long)]
    keep: bool,
    /// Cases run at once.
    #[arg(long, default_value_t = 1, value_name = "N")]
    jobs: usize,
    /// Print one JSON document on stdout.
    #[arg(long)]
    json: bool,
    /// Write a JUnit XML report (one testcase per preset × step).
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Seconds one step may take (default: the template's [test] timeout, else 900).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    timeout: Option<u64>,
    /// Render every case under this project name (say, a long one: the name ends up in
    /// imports, commands and manifests, where a line or a label may grow past a limit).
    #[arg(long, value_name = "NAME", default_value = testing::DEFAULT_PROJECT_NAME)]
    name: String,
    /// Answer a variable in every case it applies to (repeatable), say a long description:
    /// `--set description="$(printf 'd%.0s' {1..200})"`. With --matrix it is not combined.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Run without asking (the steps run code from the template).
    #[arg(long, short = 'y')]
    yes: bool,
}

/// Progress lines on stderr: one per step as it ends.
struct Lines;

impl TestProgress for Lines {
    fn case_started(&mut self, case: &Case) {
        eprintln!("{} {}", style::bold("==>"), case.label());
    }
    fn step_started(&mut self, _case: &Case, _step: &str) {}
    fn step_finished(&mut self, case: &Case, step: &StepReport) {
        let word = match step.status {
            Status::Pass => style::ok("pass"),
            Status::Skipped => "skipped".to_string(),
            Status::Fail => style::error("FAIL"),
            Status::Timeout => style::error("TIMEOUT"),
            Status::Interrupted => style::warn("interrupted"),
        };
        eprintln!("    {:<28} {word} ({:.1}s)  [{}]", step.name, step.seconds, case.preset);
    }
}

pub fn run(args: TestArgs, settings: &Settings) -> Result<ExitStatus> {
    let template = match &args.dir {
        Some(d) => TemplateSource::Local(d.clone()),
        None => TemplateSource::Builtin,
    };
    let req = TestRequest {
        template,
        presets: args.presets,
        matrix: args.matrix,
        keep: args.keep,
        jobs: args.jobs,
        timeout: args.timeout.map(Duration::from_secs),
        work_dir: None,
        name: args.name,
        sets: args.sets,
    };
    // Bad input (name, --set, preset, the template itself) is refused before anything is asked
    // or run.
    let prepared = testing::prepare(&req)?;
    let slug = stackwise::template::names::ProjectName::parse(&req.name)?.slug;
    if !args.yes {
        ask_consent(args.dir.as_deref(), settings)?;
    }
    stackwise::interrupt::start_polling()?;
    // The report's file is created before the run, so a path it cannot be written to is said
    // now, not after every case has run.
    if let Some(path) = &args.junit {
        std::fs::File::create(path).map_err(|source| Error::WriteReport {
            path: path.clone(),
            source,
        })?;
    }
    note_containment();
    let progress: Arc<Mutex<dyn TestProgress>> = Arc::new(Mutex::new(Lines));
    let report = testing::run_prepared(&req, prepared, progress)?;
    if args.json {
        print_json(&report)?;
    }
    eprintln!("\n{}", testing::report::table(&report));
    for r in report.results.iter().filter(|r| r.dir.is_some()) {
        if let Some(d) = &r.dir {
            eprintln!("kept {}: {}", r.label, d.display());
        }
    }
    let cases = report.results.len();
    let failed: Vec<_> = report.results.iter().filter(|r| !r.passed()).collect();
    // The plain closing line CI systems read.
    eprintln!("{} passed, {} failed", cases - failed.len(), failed.len());
    if let Some(path) = &args.junit {
        std::fs::write(path, testing::report::junit(&report)).map_err(|source| Error::WriteReport {
            path: path.clone(),
            source,
        })?;
    }
    if let Some(first) = failed.first()
        && let Some(step) = first.first_failure()
    {
        return Err(Error::TestFailed(format!(
            "preset {} failed at step `{}` ({}); the last lines of its log:\n{}\n  the rendered project is kept in {}",
            first.label,
            step.name,
            if step.status == Status::Timeout {
                "timeout"
            } else {
                "failed"
            },
            last_lines(&step.log),
            first
                .dir
                .as_ref()
                .map_or("(not kept)".to_string(), |d| d.join(&slug).display().to_string()),
        )));
    }
    Ok(ExitStatus::Success)
}

/// Asks before running a template's code, on a terminal; without one, refuses (`--yes` skips it).
fn ask_consent(dir: Option<&std::path::Path>, settings: &Settings) -> Result<()> {
    if !settings.terminal() {
        return Err(Error::NeedsConsent(
            "stackwise test runs the commands of the template's [test] table and the generated projects' own code; pass --yes to allow it (no terminal to ask on)".into(),
        ));
    }
    let what = dir.map_or("the built-in template".to_string(), |d| d.display().to_string());
    if !ask::confirm(
        &format!("Run the install steps and the [test] commands of {what}? They execute code from the template."),
        false,
    )? {
        return Err(Error::NeedsConsent("not running anything: consent declined".into()));
    }
    Ok(())
}

/// Says what the steps' containment lacks here (network, PID namespace), once before the run.
fn note_containment() {
    let contain = stackwise::testing::sandbox::containment();
    if !contain.network {
        eprintln!(
            "{} `unshare -rn` is not available here: the steps run with network access",
            style::warn("note:")
        );
    }
    if !contain.pids {
        eprintln!(
            "{} `unshare --pid --mount-proc` is not available here: a step's background processes are killed with its process group, and one that left the group (a new session) may outlive the step",
            style::warn("note:")
        );
    }
}

/// The last lines of a step's log, after the note naming the whole log when the report holds only
/// its tail.
fn last_lines(log: &str) -> String {
    let tail = testing::sandbox::tail(log, 30);
    match testing::sandbox::omitted_note(log) {
        Some(note) if !tail.starts_with(note) => format!("{note}\n{tail}"),
        _ => tail,
    }
}
