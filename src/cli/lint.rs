//! `stackwise lint DIR`: validate a template directory (for fork authors).

use std::path::PathBuf;

use stackwise::Error;

use super::settings::print_json;
use super::status::ExitStatus;
use super::style;

#[derive(clap::Args, Debug)]
pub struct LintArgs {
    /// The template directory (the one holding stackwise.toml).
    dir: PathBuf,
    /// Print a JSON report on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(args: LintArgs) -> Result<ExitStatus, Error> {
    let report = stackwise::template::lint::lint(&args.dir)?;
    if args.json {
        print_json(&report)?;
    } else {
        eprintln!(
            "{} {}: {} presets, {} layouts, {} renders ({} files) without an error",
            style::ok("ok"),
            args.dir.display(),
            report.presets,
            report.layouts,
            report.renders,
            report.files_checked
        );
    }
    Ok(ExitStatus::Success)
}
