//! Command-line front end. Human output goes to stderr; `--json` documents go to stdout.

mod adopt;
mod diff;
mod progress;
mod prompt;
mod recommend;
pub mod style;
mod test;
mod update;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use clap::{CommandFactory, Parser, Subcommand};
use stackwise::project::new::{self as generate, NewRequest};
use stackwise::template::source::TemplateSource;
use stackwise::{Error, ErrorKind};

#[derive(Parser, Debug)]
#[command(
    name = "stackwise",
    version,
    about = "Scaffold backend repositories whose architecture is chosen by workload: Python (FastAPI), Node (TypeScript) or hybrid.",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate a new project.
    New(NewArgs),
    /// List the workload presets, or show one.
    Presets(PresetsArgs),
    /// Recommend a preset for a workload.
    Recommend(recommend::RecommendArgs),
    /// Merge the template's changes into a generated project (a git merge; conflicts as usual).
    Update(update::UpdateArgs),
    /// Show what the project changed since its last render, or (--incoming) what an update would bring.
    Diff(diff::DiffArgs),
    /// Bring an existing repository under a template (records answers and a base render; your files stay as they are).
    Adopt(adopt::AdoptArgs),
    /// Validate a template directory (for fork authors).
    Lint {
        /// The template directory (the one holding stackwise.toml).
        dir: PathBuf,
        /// Print a JSON report on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Write the built-in template (templates/ and presets/) into DIR as a git repository to make your own.
    Fork {
        /// The new directory (must not exist, or be empty).
        dir: PathBuf,
        /// Do not create a git repository.
        #[arg(long)]
        no_git: bool,
        /// Print a JSON report on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Render every preset, install it, and run the template's [test] steps (for fork authors).
    Test(test::TestArgs),
    /// Print a shell completion script.
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
}

#[derive(clap::Args, Debug)]
struct NewArgs {
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

#[derive(clap::Args, Debug)]
struct PresetsArgs {
    #[command(subcommand)]
    action: Option<PresetsAction>,
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Template source (default: the built-in template).
    #[arg(long, value_name = "SRC", global = true)]
    template: Option<String>,
}

#[derive(Subcommand, Debug)]
enum PresetsAction {
    /// Layout, components, options and rationale of one preset.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

/// Ctrl-C (and SIGTERM) anywhere: exit 130 saying "interrupted". Once a command polls the flag
/// ([`stackwise::interrupt::POLLED`]: `new` from staging on, `test`, the questions of
/// `recommend`) it gets the chance to clean up first; a second Ctrl-C does not wait for it.
fn handle_interrupts() {
    use stackwise::interrupt::{INTERRUPTED, POLLED};
    let _ = ctrlc::set_handler(|| {
        if POLLED.load(Ordering::SeqCst) && !INTERRUPTED.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = writeln!(std::io::stderr(), "{} interrupted", style::error("error:"));
        std::process::exit(130);
    });
}

/// The exit status of a process whose output pipe closed (`stackwise … | head -1`): 128 + SIGPIPE,
/// as the shell reports a command killed by it.
const CLOSED_PIPE: u8 = 141;

/// Whether a panic is `println!`/`eprintln!` failing on a closed pipe: not a bug, the reader left.
fn is_closed_pipe(payload: &(dyn std::any::Any + Send)) -> bool {
    let text = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or_default();
    text.starts_with("failed printing to") && text.contains("Broken pipe")
}

pub fn main() -> ExitCode {
    // A closed pipe ends the command quietly: no panic message, no exit 101. Unwinding (rather
    // than exiting in the hook) still runs the destructors that clean up staging directories.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !is_closed_pipe(info.payload()) {
            default_hook(info);
        }
    }));
    match std::panic::catch_unwind(main_inner) {
        Ok(code) => code,
        Err(payload) if is_closed_pipe(payload.as_ref()) => ExitCode::from(CLOSED_PIPE),
        Err(payload) => std::panic::resume_unwind(payload),
    }
}

fn main_inner() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    handle_interrupts();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{} {e}", style::error("error:"));
            if let Some(hint) = e.hint() {
                eprintln!("  hint: {hint}");
            }
            if e.is_interrupt() {
                // The conventional exit status of a process stopped by SIGINT.
                return ExitCode::from(130);
            }
            ExitCode::from(match e.kind() {
                ErrorKind::Usage => 2,
                ErrorKind::Runtime => 1,
            })
        }
    }
}

fn run(cli: Cli) -> Result<(), Error> {
    if uses_git(&cli.command) {
        // Before the first git2 call, while the process has a single thread.
        stackwise::template::source::defer_tls_roots();
    }
    match cli.command {
        Command::New(args) => cmd_new(args),
        Command::Presets(args) => cmd_presets(args),
        Command::Recommend(args) => recommend::run(args),
        Command::Test(args) => test::run(args),
        Command::Update(args) => update::run(args),
        Command::Diff(args) => diff::run(args),
        Command::Adopt(args) => adopt::run(args),
        Command::Lint { dir, json } => {
            let report = stackwise::template::lint::lint(&dir)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
            } else {
                eprintln!(
                    "{} {}: {} presets, {} layouts, {} renders ({} files) without an error",
                    style::ok("ok"),
                    dir.display(),
                    report.presets,
                    report.layouts,
                    report.renders,
                    report.files_checked
                );
            }
            Ok(())
        }
        Command::Fork { dir, no_git, json } => cmd_fork(&dir, !no_git, json),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "stackwise", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// Whether a command may use libgit2 (a repository, a clone). Starting libgit2 starts OpenSSL and
/// libssh2 with it, a good part of what `new --no-git` would otherwise cost: the commands that
/// never touch git leave it alone.
fn uses_git(command: &Command) -> bool {
    match command {
        Command::New(args) => {
            let clone = matches!(
                TemplateSource::parse(args.template.as_deref(), None),
                TemplateSource::Git { .. }
            );
            clone || !(args.no_git || args.dry_run)
        }
        Command::Presets(_) | Command::Lint { .. } | Command::Completions { .. } => false,
        Command::Recommend(_)
        | Command::Test(_)
        | Command::Update(_)
        | Command::Diff(_)
        | Command::Adopt(_)
        | Command::Fork { .. } => true,
    }
}

fn cmd_fork(dir: &std::path::Path, git: bool, json: bool) -> Result<(), Error> {
    let o = stackwise::project::fork::fork(dir, git)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&o).unwrap_or_default());
    }
    let commit = o
        .commit
        .as_deref()
        .map_or(String::new(), |c| format!(", git commit {}", &c[..12.min(c.len())]));
    eprintln!(
        "{} {}: the built-in template ({} presets, {} files){commit}",
        style::ok("forked"),
        o.dir.display(),
        o.presets.len(),
        o.files
    );
    let t = o.template.display();
    eprintln!(
        "
next steps (README.md in the fork says more):
  stackwise lint {t}
  stackwise new my-app --template {t}
  stackwise test {t} --preset ml-api --yes"
    );
    Ok(())
}

fn interactive(yes: bool) -> bool {
    !yes && std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

fn cmd_new(args: NewArgs) -> Result<(), Error> {
    let interactive = interactive(args.yes);
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
    if args.template.is_some() || args.subdir.is_some() {
        return TemplateSource::parse_checked(args.template.as_deref(), args.subdir.as_deref());
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
fn ask_install(interactive: bool, foreign_template: bool) -> Result<bool, Error> {
    if !interactive || foreign_template {
        return Ok(false);
    }
    prompt::confirm(
        "Install dependencies now (uv sync / npm install) so the lockfiles go into the initial commit?",
        true,
    )
}

/// Generates the project `req` describes and reports it: the one path of `stackwise new`, also
/// taken when a recommendation on a terminal offers to generate its preset.
fn generate_project(req: &NewRequest, interactive: bool, json: bool) -> Result<(), Error> {
    let mut prompter = prompt::Terminal::new(interactive);
    let mut progress = progress::Bars::new();
    let outcome = generate::new_project(req, &mut prompter, &mut progress)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&outcome).unwrap_or_default());
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
    Ok(())
}

fn report_new(o: &generate::Outcome) {
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
    match (&o.git_commit, &o.git_skipped) {
        (Some(c), _) => eprintln!(
            "  git repository on branch main, initial commit {}",
            &c[..12.min(c.len())]
        ),
        (None, Some(why)) => eprintln!("  no git repository: {why}"),
        _ => {}
    }
    let installed = !o.install.is_empty() && o.install.iter().all(|r| r.ok);
    let install_line = if installed { "" } else { "\n  make install" };
    eprintln!(
        "\nnext steps:\n  cd {}{install_line}\n  make test\n  make run",
        o.target.display()
    );
}

fn cmd_presets(args: PresetsArgs) -> Result<(), Error> {
    let source = TemplateSource::parse(args.template.as_deref(), None);
    let loaded = stackwise::template::Template::load(&source)?;
    match args.action {
        None => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&loaded.catalogue.presets).unwrap_or_default()
                );
                return Ok(());
            }
            let width = loaded.catalogue.presets.iter().map(|p| p.id.len()).max().unwrap_or(0);
            for p in &loaded.catalogue.presets {
                let default = if p.default { " (default)" } else { "" };
                println!("{:width$}  {:7}  {}{default}", p.id, p.layout, p.summary, width = width);
            }
            eprintln!("\nstackwise presets show ID    details of one preset");
            Ok(())
        }
        Some(PresetsAction::Show { id, json }) => {
            let p = loaded.catalogue.get(&id)?;
            let layout = &loaded.manifest.layouts[&p.layout];
            if json || args.json {
                let doc = serde_json::json!({
                    "preset": p,
                    "components": layout.mounts.iter().map(|m| serde_json::json!({"component": m.component, "at": m.at})).collect::<Vec<_>>(),
                });
                println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
                return Ok(());
            }
            let mut out = String::new();
            out.push_str(&format!("{} — {}\n", style::Paint::stdout().bold(&p.id), p.title));
            out.push_str(&format!("layout:     {} ({})\n", p.layout, layout.description));
            out.push_str("components:\n");
            for m in &layout.mounts {
                out.push_str(&format!("  {:<16} at {}\n", m.component, m.at));
            }
            out.push_str("options:\n");
            for v in &loaded.manifest.variables {
                let value = p
                    .options
                    .get(&v.name)
                    .map(|x| x.to_string())
                    .unwrap_or_else(|| "(template default)".to_string());
                out.push_str(&format!("  {:<16} {value}\n", v.name));
            }
            out.push_str(&format!("\n{}\n", p.rationale.trim()));
            out.push_str("\nsignals that lead here (stackwise recommend; weight, condition, rule):\n");
            for line in stackwise::recommend::describe_signals(p) {
                out.push_str(&format!("  {line}\n"));
            }
            out.push_str(&format!("\ngenerate it: stackwise new NAME --preset {}\n", p.id));
            print!("{out}");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("stackwise").chain(args.iter().copied()))
            .unwrap()
            .command
    }

    /// libgit2 (and OpenSSL with it) starts only for a command that may use a repository.
    #[test]
    fn only_commands_that_use_git_start_libgit2() {
        assert!(!uses_git(&command(&["new", "x", "--no-git"])));
        assert!(!uses_git(&command(&["new", "x", "--dry-run"])));
        assert!(!uses_git(&command(&["presets"])));
        assert!(uses_git(&command(&["new", "x"])));
        assert!(uses_git(&command(&[
            "new",
            "x",
            "--no-git",
            "--template",
            "https://example.com/t.git"
        ])));
        assert!(uses_git(&command(&["update"])));
    }
}
