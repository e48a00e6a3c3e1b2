//! `stackwise update`: arguments, the report, and exit codes (0 clean, 3 conflicts left or — with
//! `--check` — behind the template, 1 runtime error, 2 usage error or refusal).

use std::path::PathBuf;

use stackwise::Error;
use stackwise::project::git::short_revision;
use stackwise::project::update::{self, UpdateOutcome, UpdateRequest, UpdateStatus};

use super::settings::{Settings, print_json, template_flag};
use super::status::ExitStatus;
use super::{progress, prompt, style};

#[derive(clap::Args, Debug)]
pub struct UpdateArgs {
    /// The project directory (default: the current directory).
    dir: Option<PathBuf>,
    /// Update to this branch, tag or commit of a git template source.
    #[arg(long, value_name = "REV")]
    to: Option<String>,
    /// Another template source than the recorded one (a local copy, a fork, a git URL).
    #[arg(long, value_name = "SRC")]
    template: Option<String>,
    /// Subdirectory of the template source that holds the template.
    #[arg(long, value_name = "PATH", requires = "template")]
    subdir: Option<String>,
    /// Move to another preset of the same layout.
    #[arg(long, short = 'p', conflicts_with = "layout")]
    preset: Option<String>,
    /// The layout to render (without a preset).
    #[arg(long)]
    layout: Option<String>,
    /// Answer a variable (repeatable); overrides the recorded answer.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Read answers from a TOML or JSON file; they override the recorded ones.
    #[arg(long, value_name = "FILE")]
    answers: Option<PathBuf>,
    /// Merge in memory and print the report; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Exit with 3 when the project is behind its template (for CI); change nothing.
    #[arg(long, conflicts_with = "dry_run")]
    check: bool,
    /// Print one JSON document on stdout.
    #[arg(long)]
    json: bool,
    /// Re-lock and install when pyproject.toml or package.json changed.
    #[arg(long)]
    install: bool,
    /// Leave a clean merge uncommitted (MERGE_HEAD stays; `git commit` finishes it).
    #[arg(long)]
    no_commit: bool,
    /// Bring back a file you deleted, from the template's render (repeatable).
    #[arg(long, value_name = "PATH")]
    restore: Vec<String>,
    /// Never ask; new variables take their defaults.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Abort the update in progress (as `git merge --abort`) and drop its pending render.
    #[arg(long, conflicts_with_all = ["to", "template", "preset", "layout", "sets", "answers", "dry_run", "check", "install", "no_commit", "restore"])]
    abort: bool,
}

pub fn run(args: UpdateArgs, settings: &Settings) -> Result<ExitStatus, Error> {
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    if args.abort {
        let what = update::abort(&dir)?;
        if args.json {
            println!("{}", serde_json::json!({ "status": "aborted", "message": what }));
        }
        eprintln!("{} {what}", style::ok("ok"));
        return Ok(ExitStatus::Success);
    }
    let req = UpdateRequest {
        dir: dir.clone(),
        to: args.to,
        template: template_flag(args.template.as_deref(), args.subdir.as_deref())?,
        preset: args.preset,
        layout: args.layout,
        sets: args.sets,
        answers_file: args.answers,
        dry_run: args.dry_run,
        check: args.check,
        install: args.install,
        commit: !args.no_commit,
        restore: args.restore,
    };
    let mut prompter = prompt::Terminal::new(settings.interactive(args.yes));
    let mut bars = progress::Bars::new();
    let outcome = update::update(&req, &mut prompter, &mut bars)?;
    if args.json {
        print_json(&outcome)?;
    }
    report(&outcome, &req);
    let behind = req.check && outcome.status != UpdateStatus::UpToDate;
    // `--dry-run` exits with the code the update would (SPEC §7.4): 3 when it leaves conflicts.
    if outcome.status == UpdateStatus::Conflicts && !req.check || behind {
        return Ok(ExitStatus::Conflicts);
    }
    if let Some(failed) = outcome.install.iter().find(|r| !r.ok) {
        let commit = outcome.commit.as_deref().map(short_revision).unwrap_or_default();
        // Ctrl-C during the install is an interruption like any other (SPEC: 130).
        if stackwise::interrupt::check().is_err() {
            return Err(Error::InterruptedLeaving(format!(
                "the install was stopped; the update is committed ({commit}), its lockfiles are not re-locked"
            )));
        }
        // The lockfiles are stale until re-locked: `make install` alone runs a locked install.
        let relock: Vec<&str> = outcome
            .relock
            .iter()
            .map(String::as_str)
            .chain(["make install"])
            .collect();
        let relock = relock.join(" && ");
        return Err(Error::Install {
            reason: format!(
                "{}; the update is committed ({commit}), its lockfiles are not re-locked",
                failed.error.as_deref().unwrap_or("failed")
            ),
            hint: Some(format!("retry with: cd {} && {relock}", dir.display())),
        });
    }
    Ok(ExitStatus::Success)
}

fn report(o: &UpdateOutcome, req: &UpdateRequest) {
    eprintln!(
        "{} {}: {}",
        style::bold("stackwise update"),
        o.to.template,
        o.headline()
    );
    for note in &o.notes {
        eprintln!("  {} {note}", style::warn("note:"));
    }
    if o.status == UpdateStatus::UpToDate {
        eprintln!(
            "{} the project is up to date with its template",
            style::ok("up to date:")
        );
        return;
    }
    report_files(o);
    if !o.relock.is_empty() {
        eprintln!("dependencies changed; re-lock with:");
        for c in &o.relock {
            eprintln!("  {c}");
        }
    }
    if o.dry_run {
        let verdict = if req.check { "behind its template" } else { "dry run" };
        eprintln!("{} nothing was changed", style::bold(&format!("{verdict}:")));
        return;
    }
    report_result(o, &req.dir);
}

/// One line per path, and how to bring back the files the user deleted.
fn report_files(o: &UpdateOutcome) {
    let width = o.files.iter().map(|f| f.status.as_str().len()).max().unwrap_or(0);
    for f in &o.files {
        let word = format!("{:width$}", f.status.as_str());
        let word = match f.status {
            update::FileStatus::Conflict => style::error(&word),
            update::FileStatus::KeptDeleted | update::FileStatus::KeptYours | update::FileStatus::Skipped => {
                style::warn(&word)
            }
            _ => style::ok(&word),
        };
        let from = f.from.as_deref().map(|p| format!(" (from {p})")).unwrap_or_default();
        eprintln!("  {word}  {}{from}", f.path);
    }
    let kept: Vec<&str> = o
        .files
        .iter()
        .filter(|f| f.status == update::FileStatus::KeptDeleted)
        .map(|f| f.path.as_str())
        .collect();
    if !kept.is_empty() {
        eprintln!("  you deleted {}; bring it back with --restore PATH", kept.join(", "));
    }
}

/// The last line: committed, left for `git commit`, or conflicts and what to do.
fn report_result(o: &UpdateOutcome, dir: &std::path::Path) {
    match (o.status, &o.commit) {
        (UpdateStatus::Conflicts, _) => {
            let conflicts: Vec<&str> = o
                .files
                .iter()
                .filter(|f| f.status == update::FileStatus::Conflict)
                .map(|f| f.path.as_str())
                .collect();
            // A binary file (or one git's merge driver left as yours) has no markers to edit.
            let unmarked: Vec<&str> = conflicts
                .iter()
                .copied()
                .filter(|p| !std::fs::read(dir.join(p)).is_ok_and(|b| b.windows(8).any(|w| w == b"<<<<<<< ")))
                .collect();
            eprintln!(
                "{} {} file(s) need you: edit the <<<<<<< your project / >>>>>>> template markers, then\n  git add FILE...   and   git commit\nor abort the update:   stackwise update --abort   (or git merge --abort)",
                style::error("conflicts:"),
                conflicts.len()
            );
            if !unmarked.is_empty() {
                eprintln!(
                    "  no markers in {} (binary, or kept as yours): pick a side with `git checkout --ours FILE` (yours) or `git checkout --theirs FILE` (the template's), then git add FILE",
                    unmarked.join(", ")
                );
            }
        }
        (_, Some(c)) => eprintln!("{} committed {}", style::ok("updated:"), short_revision(c)),
        (_, None) if o.merge_in_progress => {
            eprintln!(
                "{} merged, not committed (--no-commit): review, then git commit",
                style::ok("updated:")
            )
        }
        (_, None) => eprintln!("{} restored; commit when ready", style::ok("updated:")),
    }
}
