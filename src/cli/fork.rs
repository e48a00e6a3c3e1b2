//! `stackwise fork DIR`: the built-in template written out as a repository to make one's own.

use std::path::PathBuf;

use stackwise::Error;
use stackwise::project::git::short_revision;

use super::settings::print_json;
use super::status::ExitStatus;
use super::style;

#[derive(clap::Args, Debug)]
pub struct ForkArgs {
    /// The new directory (must not exist, or be empty).
    dir: PathBuf,
    /// Do not create a git repository.
    #[arg(long)]
    no_git: bool,
    /// Print a JSON report on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(args: ForkArgs) -> Result<ExitStatus, Error> {
    let o = stackwise::project::fork::fork(&args.dir, !args.no_git)?;
    if args.json {
        print_json(&o)?;
    }
    let commit = o
        .commit
        .as_deref()
        .map_or(String::new(), |c| format!(", git commit {}", short_revision(c)));
    eprintln!(
        "{} {}: the built-in template ({} presets, {} files){commit}",
        style::ok("forked"),
        o.dir.display(),
        o.presets.len(),
        o.files
    );
    super::new::note_interrupted_runs(&o.interrupted_runs);
    for w in &o.warnings {
        eprintln!("{} {w}", style::warn("warning:"));
    }
    let t = o.template.display();
    eprintln!(
        "
next steps (README.md in the fork says more):
  stackwise lint {t}
  stackwise new my-app --template {t}
  stackwise test {t} --preset ml-api --yes"
    );
    Ok(ExitStatus::Success)
}
