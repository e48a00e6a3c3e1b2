//! `stackwise adopt`: arguments and the report. Exit 0 adopted, 2 refused (not a git repository,
//! uncommitted changes, already following a template) with nothing changed, 130 interrupted
//! (nothing changed, or the adoption finished first: the message says which).

use std::path::PathBuf;

use stackwise::Error;
use stackwise::project::adopt::{self, AdoptOutcome, AdoptRequest};
use stackwise::project::git::short_revision;
use stackwise::template::source::TemplateSource;

use super::settings::{Settings, print_json, template_flag};
use super::status::ExitStatus;
use super::{prompt, style};

#[derive(clap::Args, Debug)]
pub struct AdoptArgs {
    /// The repository to bring under the template (its root).
    dir: PathBuf,
    /// Workload preset (see `stackwise presets`).
    #[arg(long, short = 'p', required_unless_present = "layout")]
    preset: Option<String>,
    /// Layout, when no preset is given.
    #[arg(long)]
    layout: Option<String>,
    /// Template source: a local directory or a git URL (URL#REF) (default: the built-in template).
    #[arg(long, value_name = "SRC")]
    template: Option<String>,
    /// Subdirectory of the template source that holds the template.
    #[arg(long, value_name = "PATH")]
    subdir: Option<String>,
    /// The project's name as the template knows it (default: the directory's name).
    #[arg(long)]
    name: Option<String>,
    /// Answer a variable (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Read answers from a TOML or JSON file.
    #[arg(long, value_name = "FILE")]
    answers: Option<PathBuf>,
    /// Print what the template would cover; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print one JSON document on stdout.
    #[arg(long)]
    json: bool,
    /// Never ask; take defaults for everything not given.
    #[arg(long, short = 'y')]
    yes: bool,
}

pub fn run(args: AdoptArgs, settings: &Settings) -> Result<ExitStatus, Error> {
    let req = AdoptRequest {
        dir: args.dir,
        template: template_flag(args.template.as_deref(), args.subdir.as_deref())?.unwrap_or(TemplateSource::Builtin),
        preset: args.preset,
        layout: args.layout,
        name: args.name,
        sets: args.sets,
        answers_file: args.answers,
        dry_run: args.dry_run,
    };
    let mut prompter = prompt::Terminal::new(settings.interactive(args.yes));
    let outcome = adopt::adopt(&req, &mut prompter)?;
    if args.json {
        print_json(&outcome)?;
    }
    report(&outcome, &req);
    Ok(ExitStatus::Success)
}

fn list(word: &str, paths: &[String], why: &str) {
    if paths.is_empty() {
        return;
    }
    eprintln!("  {} {} file(s) {why}:", style::warn(word), paths.len());
    for p in paths.iter().take(20) {
        eprintln!("    {p}");
    }
    if paths.len() > 20 {
        eprintln!("    … and {} more (--json lists them all)", paths.len() - 20);
    }
}

fn report(o: &AdoptOutcome, req: &AdoptRequest) {
    let what = o
        .preset
        .as_deref()
        .map_or(format!("{} layout", o.layout), |p| format!("preset {p}"));
    let verb = if o.dry_run { "would adopt" } else { "adopted" };
    eprintln!(
        "{} {} as {} ({what}) from {}",
        style::ok(&format!("{verb}:")),
        req.dir.display(),
        o.name,
        o.template.template
    );
    eprintln!(
        "  {} file(s) of the template's render are already in the project as rendered",
        o.same.len()
    );
    list(
        "yours:",
        &o.differ,
        "differ from the render; they stay as they are and update merges into them",
    );
    list(
        "missing:",
        &o.missing,
        "of the render are not in the project; they stay missing (update --restore PATH brings one)",
    );
    if o.dry_run {
        eprintln!("{} nothing was changed", style::bold("dry run:"));
        return;
    }
    if let Some(c) = &o.commit {
        eprintln!(
            "  committed .stackwise.toml in {} (second parent: the render {}, the base of the next update)",
            short_revision(c),
            o.render_commit.as_deref().map_or(String::new(), short_revision)
        );
    }
    for note in &o.notes {
        eprintln!("  {} {note}", style::bold("note:"));
    }
    eprintln!(
        "\nnext: stackwise diff (your project against the render), stackwise update (the template's later changes)"
    );
}
