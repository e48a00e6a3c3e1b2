//! `stackwise diff`: the patch on stdout (as `git diff`), the list of paths on stderr; `--json`
//! prints the paths as one document instead. Exit 0 whatever the diff holds.

use std::io::Write;
use std::path::PathBuf;

use stackwise::Error;
use stackwise::project::diff::{self, DiffOutcome, DiffRequest};
use stackwise::project::git::short_revision;

use super::settings::{print_json, template_flag};
use super::status::ExitStatus;
use super::style;

#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    /// The project directory (default: the current directory).
    dir: Option<PathBuf>,
    /// Your committed work only: the last render against HEAD (default: against the work tree,
    /// uncommitted and untracked files included).
    #[arg(long, conflicts_with = "incoming")]
    head: bool,
    /// What an update would bring: the template's next render against the last one.
    #[arg(long)]
    incoming: bool,
    /// The source of the next render (implies --incoming; default: the recorded one).
    #[arg(long, value_name = "SRC", conflicts_with = "head")]
    template: Option<String>,
    /// Subdirectory of the template source that holds the template.
    #[arg(long, value_name = "PATH", requires = "template")]
    subdir: Option<String>,
    /// A branch, tag or commit of a git template source (implies --incoming).
    #[arg(long, value_name = "REV", conflicts_with = "head")]
    to: Option<String>,
    /// Print one JSON document on stdout (the paths, each with its status); no patch.
    #[arg(long)]
    json: bool,
}

pub fn run(args: DiffArgs) -> Result<ExitStatus, Error> {
    let req = DiffRequest {
        dir: args.dir.unwrap_or_else(|| PathBuf::from(".")),
        head: args.head,
        incoming: args.incoming,
        template: template_flag(args.template.as_deref(), args.subdir.as_deref())?,
        to: args.to,
    };
    let outcome = diff::diff(&req)?;
    if args.json {
        print_json(&outcome)?;
    } else {
        // A pager or `head` that stops reading is no error (nor a panic).
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(outcome.patch.as_bytes()).and_then(|()| out.flush());
    }
    report(&outcome);
    Ok(ExitStatus::Success)
}

fn report(o: &DiffOutcome) {
    let base = format!(
        "the last render ({})",
        short_revision(o.base.revision.as_deref().unwrap_or_default())
    );
    let header = if o.kind == "incoming" {
        format!(
            "what an update from {} ({}) would bring, against {base}",
            o.against.template.as_deref().unwrap_or("the template"),
            short_revision(o.against.revision.as_deref().unwrap_or_default())
        )
    } else {
        let what = if o.against.what == "work tree" {
            "work tree"
        } else {
            "commits up to HEAD"
        };
        format!("your changes in the {what} since {base}")
    };
    eprintln!("{} {header}", style::bold("stackwise diff:"));
    for note in &o.notes {
        eprintln!("  {} {note}", style::warn("note:"));
    }
    let width = o.files.iter().map(|f| f.status.len()).max().unwrap_or(0);
    for f in &o.files {
        let from = f.from.as_deref().map(|p| format!(" (from {p})")).unwrap_or_default();
        eprintln!("  {:width$}  {}{from}", f.status, f.path);
    }
    if o.files.is_empty() {
        eprintln!("  no difference");
    }
}
