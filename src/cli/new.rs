//! `stackwise new`: generate a project from a preset (or a layout) of a template.

use std::path::PathBuf;

use stackwise::Error;
use stackwise::project::git::short_revision;
use stackwise::project::new::{self as generate, NewRequest};
use stackwise::template::source::TemplateSource;

use super::settings::{Settings, print_json};
use super::status::ExitStatus;
use super::{ask, progress, prompt, style};

#[derive(clap::Args, Debug)]
pub struct NewArgs {
    /// Project name: `My App`, `my-app` or `my_app`.
    name: String,
    /// Workload preset (see `stackwise presets`).
    #[arg(long, short = 'p')]
    preset: Option<String>,
    /// Layout, when no preset is given: python, node or hybrid.
    #[arg(long)]
    layout: Option<String>,
    /// Parent directory; the project goes to DIR/<kebab-name>.
    #[arg(long, short = 'o', value_name = "DIR", default_value = ".")]
    output: PathBuf,
    /// Template source: a local directory or a git URL (URL#REF for a branch, tag or commit).
    #[arg(long, value_name = "SRC")]
    template: Option<String>,
    /// Subdirectory of the template source that holds the template.
    #[arg(long, value_name = "PATH")]
    subdir: Option<String>,
    /// Pre-answer a variable (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Read answers from a TOML or JSON file.
    #[arg(long, value_name = "FILE")]
    answers: Option<PathBuf>,
    /// Never ask; take defaults for everything not given.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Do not create a git repository.
    #[arg(long)]
    no_git: bool,
    /// Write into a non-empty target (only files the template owns are written).
    #[arg(long)]
    force: bool,
    /// Print the files that would be written; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print one JSON document on stdout.
    #[arg(long)]
    json: bool,
    /// Run the project's install steps (uv sync, npm install) so lockfiles go into the initial commit.
    #[arg(long, conflicts_with = "no_install")]
    install: bool,
    /// Do not run install steps (and do not ask).
    #[arg(long)]
    no_install: bool,
}

impl NewArgs {
    /// Whether `new` may use libgit2: to clone a template, or to make the project's repository.
    pub(super) fn uses_git(&self) -> bool {
        let clone = matches!(
            TemplateSource::parse(self.template.as_deref(), None),
            TemplateSource::Git { .. }
        );
        clone || !(self.no_git || self.dry_run)
    }
}

pub fn run(args: NewArgs, settings: &Settings) -> Result<ExitStatus, Error> {
    let interactive = settings.interactive(args.yes);
    let template = new_template(&args)?;
    let install = if args.install {
        true
    } else if args.no_install || args.dry_run {
        false
    } else {
        ask_install(interactive, template != TemplateSource::Builtin)?
    };
    let req = NewRequest {
        name: args.name,
        preset: args.preset,
        layout: args.layout,
        output_dir: args.output,
        template,
        sets: args.sets,
        answers_file: args.answers,
        force: args.force,
        dry_run: args.dry_run,
        git: !args.no_git,
        install,
    };
    generate_project(&req, interactive, args.json)
}

/// The template of `new`: `--template` (and `--subdir`), else the one recorded in an answers
/// file that is a project's `.stackwise.toml` (a project made from a fork re-renders from the
/// fork, never silently from the built-in template), else the built-in one.
fn new_template(args: &NewArgs) -> Result<TemplateSource, Error> {
    if let Some(source) = super::settings::template_flag(args.template.as_deref(), args.subdir.as_deref())? {
        return Ok(source);
    }
    let Some(file) = &args.answers else {
        return Ok(TemplateSource::Builtin);
    };
    match stackwise::template::answers::load_file(file)?.template {
        Some(recorded) => {
            if recorded != TemplateSource::Builtin {
                eprintln!(
                    "{} the template recorded in {}: {} (--template chooses another)",
                    style::bold("using"),
                    file.display(),
                    recorded.describe()
                );
            }
            Ok(recorded)
        }
        None => Ok(TemplateSource::Builtin),
    }
}

/// Whether to run the project's install steps when neither --install nor --no-install was
/// given: asked on a terminal, never for a template from elsewhere (it is untrusted: its install
/// steps, a build backend say, run only when asked for explicitly with --install).
pub(super) fn ask_install(interactive: bool, foreign_template: bool) -> Result<bool, Error> {
    if !interactive || foreign_template {
        return Ok(false);
    }
    ask::confirm(
        "Install dependencies now (uv sync / npm install) so the lockfiles go into the initial commit?",
        true,
    )
}

/// Generates the project `req` describes and reports it: the one path of `stackwise new`, also
/// taken when a recommendation on a terminal offers to generate its preset.
pub(super) fn generate_project(req: &NewRequest, interactive: bool, json: bool) -> Result<ExitStatus, Error> {
    let mut prompter = prompt::Terminal::new(interactive);
    let mut progress = progress::Bars::new();
    let outcome = generate::new_project(req, &mut prompter, &mut progress)?;
    if json {
        print_json(&outcome)?;
    }
    report_new(&outcome);
    if let Some(failed) = outcome.install.iter().find(|r| !r.ok) {
        return Err(Error::Install {
            reason: format!(
                "{}; the project is in place at {}",
                failed.error.as_deref().unwrap_or("failed"),
                outcome.target.display()
            ),
            hint: Some(format!("retry with: cd {} && make install", outcome.target.display())),
        });
    }
    Ok(ExitStatus::Success)
}

fn report_new(o: &generate::Outcome) {
    for w in &o.warnings {
        eprintln!("{} {w}", style::warn("warning:"));
    }
    let preset = o.preset.as_deref().unwrap_or("none");
    if o.dry_run {
        eprintln!(
            "{} would write {} files to {} ({} layout, preset {preset}):",
            style::bold("dry run:"),
            o.files.len(),
            o.target.display(),
            o.layout
        );
        let width = o.files.iter().map(|f| f.path.chars().count()).max().unwrap_or(0);
        for f in &o.files {
            let mark = if o.overwritten.contains(&f.path) {
                "  (overwrites)"
            } else {
                ""
            };
            match &f.source {
                Some(source) => eprintln!("  {:width$} ← {source}{mark}", f.path),
                None => eprintln!("  {:width$}   (written by stackwise){mark}", f.path),
            }
        }
        eprintln!("nothing was written");
        return;
    }
    eprintln!(
        "{} {} ({} layout, preset {preset}): {} files in {}",
        style::ok("created"),
        o.name.slug,
        o.layout,
        o.files.len(),
        o.target.display()
    );
    for f in &o.overwritten {
        eprintln!("  {} {f}", style::warn("overwrote"));
    }
    note_interrupted_runs(&o.interrupted_runs);
    match (&o.git_commit, &o.git_skipped) {
        (Some(c), _) => eprintln!("  git repository on branch main, initial commit {}", short_revision(c)),
        (None, Some(why)) => eprintln!("  no git repository: {why}"),
        _ => {}
    }
    let has = |path: &str| o.files.iter().any(|f| f.path == path);
    // The Makefile targets every built-in project has (SPEC §4); a fork's project may have none.
    let steps = if has("Makefile") {
        let installed = !o.install.is_empty() && o.install.iter().all(|r| r.ok);
        let install_line = if installed { "" } else { "\n  make install" };
        format!("{install_line}\n  make test\n  make run")
    } else if has("README.md") {
        "\n  read README.md".to_string()
    } else {
        String::new()
    };
    eprintln!("\nnext steps:\n  cd {}{steps}", o.target.display());
}

/// Names the staging directories of killed `new --force` runs that a run found and kept.
pub(super) fn note_interrupted_runs(dirs: &[std::path::PathBuf]) {
    for dir in dirs {
        eprintln!(
            "  {} {} is left by a `new --force` that was killed while moving files into place: the files it had replaced are in its replaced/ directory (move back what you need, then delete it)",
            style::warn("note:"),
            dir.display()
        );
    }
}
