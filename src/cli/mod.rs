//! Command-line front end. Human output goes to stderr; `--json` documents go to stdout.
//!
//! One file per command (`new.rs`, `update.rs`…): each takes its parsed arguments and the
//! [`Settings`] settled once before it runs (`settings.rs`), and returns an [`ExitStatus`]; only [`main`] turns it into the
//! process's exit code (no command ends the process early).

mod adopt;
mod ask;
mod diff;
mod fork;
mod lint;
mod new;
mod presets;
mod progress;
mod prompt;
mod recommend;
mod settings;
mod status;
pub mod style;
mod test;
mod update;
mod workload;

use std::io::Write;
use std::process::ExitCode;
use std::sync::mpsc;

use clap::{CommandFactory, Parser, Subcommand};
use stackwise::Error;

use settings::Settings;
use status::ExitStatus;

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
    New(new::NewArgs),
    /// List the workload presets, or show one.
    Presets(presets::PresetsArgs),
    /// Recommend a preset for a workload.
    Recommend(recommend::RecommendArgs),
    /// Merge the template's changes into a generated project (a git merge; conflicts as usual).
    Update(update::UpdateArgs),
    /// Show what the project changed since its last render, or (--incoming) what an update would bring.
    Diff(diff::DiffArgs),
    /// Bring an existing repository under a template (records answers and a base render; your files stay as they are).
    Adopt(adopt::AdoptArgs),
    /// Validate a template directory (for fork authors).
    Lint(lint::LintArgs),
    /// Write the built-in template (templates/ and presets/) into DIR as a git repository to make your own.
    Fork(fork::ForkArgs),
    /// Render every preset, install it, and run the template's [test] steps (for fork authors).
    Test(test::TestArgs),
    /// Print a shell completion script.
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
}

/// How a run ends: the command returned (or panicked), or Ctrl-C came while it was not polling.
enum End {
    Returned(std::thread::Result<ExitCode>),
    Interrupted,
}

/// The command's thread gets the stack a main thread would have (its renders recurse).
const COMMAND_STACK: usize = 8 << 20;

/// Ctrl-C (and SIGTERM) anywhere: exit 130 saying "interrupted". The handler only reports the
/// signal, to [`main`] (which waits for whichever comes first, the command's status or the
/// signal) or, once the command polls ([`stackwise::interrupt::start_polling`]: `new` from staging on,
/// `test`, the questions of `recommend`, `update`'s writer), to the command through
/// [`stackwise::interrupt::INTERRUPTED`], so it cleans up and returns `Interrupted` itself; a
/// second Ctrl-C does not wait for it (`main` removes the staging directory of `new` or `fork`
/// first: [`stackwise::project::stage::remove_on_exit`]).
///
/// A command that does not poll may be blocked where it cannot return (a terminal read, a clone),
/// which is why it runs on a thread of its own: `main` returns 130 and the process ends with it.
/// Nothing such a command did needs undoing (it writes nothing before it polls, and it cannot
/// start polling once a signal has decided that the process ends).
fn handle_interrupts(ends: mpsc::Sender<End>) {
    use stackwise::interrupt::{OnSignal, on_signal};
    let _ = ctrlc::set_handler(move || {
        if on_signal() == OnSignal::EndNow {
            let _ = ends.send(End::Interrupted);
        }
    });
}

/// What `println!`/`eprintln!` said when its stream failed (`failed printing to stdout: …`), or
/// `None` for any other panic: not a bug in stackwise, so it never ends in a panic message.
fn failed_print(payload: &(dyn std::any::Any + Send)) -> Option<&str> {
    let text = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())?;
    text.starts_with("failed printing to").then_some(text)
}

/// Whether a panic is a print failing on a closed pipe: the reader left.
fn is_closed_pipe(payload: &(dyn std::any::Any + Send)) -> bool {
    failed_print(payload).is_some_and(|t| t.contains("Broken pipe"))
}

pub fn main() -> ExitCode {
    // A closed pipe ends the command quietly: no panic message, no exit 101. Unwinding (rather
    // than exiting in the hook) still runs the destructors that clean up staging directories.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if failed_print(info.payload()).is_none() {
            default_hook(info);
        }
    }));
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if uses_git(&cli.command) {
        // Before the first git2 call, while the process has a single thread.
        stackwise::template::source::defer_tls_roots();
    }
    let (ends, end) = mpsc::channel();
    handle_interrupts(ends.clone());
    let command = std::thread::Builder::new()
        .name("command".into())
        .stack_size(COMMAND_STACK)
        .spawn(move || {
            let status = std::panic::catch_unwind(|| run_and_report(cli));
            let _ = ends.send(End::Returned(status));
        });
    if let Err(e) = command {
        eprintln!("{} cannot start the command: {e}", style::error("error:"));
        return ExitStatus::Failure.into();
    }
    match end.recv() {
        Ok(End::Returned(Ok(code))) => code,
        Ok(End::Returned(Err(payload))) if is_closed_pipe(payload.as_ref()) => ExitStatus::ClosedPipe.into(),
        // Any other stream failure (a full disk): said on stderr if it still works, exit 1.
        Ok(End::Returned(Err(payload))) if failed_print(payload.as_ref()).is_some() => {
            let text = failed_print(payload.as_ref()).unwrap_or_default();
            let why = text.strip_prefix("failed printing to ").unwrap_or(text);
            let _ = writeln!(std::io::stderr(), "{} cannot write to {why}", style::error("error:"));
            ExitStatus::Failure.into()
        }
        Ok(End::Returned(Err(payload))) => std::panic::resume_unwind(payload),
        // (The handler keeps a sender: `recv` cannot fail.)
        Ok(End::Interrupted) | Err(_) => {
            // A second Ctrl-C does not wait for `new` or `fork` to clean up: their staging
            // directory goes here (not one holding files a `--force` run replaced).
            stackwise::project::stage::remove_on_exit();
            let _ = writeln!(std::io::stderr(), "{} interrupted", style::error("error:"));
            if let Some(note) = stackwise::interrupt::end_note() {
                let _ = writeln!(std::io::stderr(), "  {} {note}", style::bold("hint:"));
            }
            ExitStatus::Interrupted.into()
        }
    }
}

/// Runs the command and reports its error, if any, on stderr.
fn run_and_report(cli: Cli) -> ExitCode {
    let settings = Settings::detect();
    match run(cli, &settings) {
        Ok(status) => status.into(),
        Err(e) => {
            eprintln!("{} {e}", style::error("error:"));
            if let Some(hint) = e.hint() {
                eprintln!("  hint: {hint}");
            }
            ExitStatus::from(&e).into()
        }
    }
}

fn run(cli: Cli, settings: &Settings) -> Result<ExitStatus, Error> {
    match cli.command {
        Command::New(args) => new::run(args, settings),
        Command::Presets(args) => presets::run(args),
        Command::Recommend(args) => recommend::run(args, settings),
        Command::Test(args) => test::run(args, settings),
        Command::Update(args) => update::run(args, settings),
        Command::Diff(args) => diff::run(args),
        Command::Adopt(args) => adopt::run(args, settings),
        Command::Lint(args) => lint::run(args),
        Command::Fork(args) => fork::run(args),
        Command::Completions { shell } => {
            // Written whole, then printed: clap_complete panics with its own message when a
            // write fails, where `print!` fails the way every other command's output does.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "stackwise", &mut script);
            print!("{}", String::from_utf8_lossy(&script));
            Ok(ExitStatus::Success)
        }
    }
}

/// Whether a command may use libgit2 (a repository, a clone). Starting libgit2 starts OpenSSL and
/// libssh2 with it, a good part of what `new --no-git` would otherwise cost: the commands that
/// never touch git leave it alone.
fn uses_git(command: &Command) -> bool {
    match command {
        Command::New(args) => args.uses_git(),
        Command::Presets(_) | Command::Lint(_) | Command::Completions { .. } => false,
        Command::Recommend(_)
        | Command::Test(_)
        | Command::Update(_)
        | Command::Diff(_)
        | Command::Adopt(_)
        | Command::Fork(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::settings::print_json;
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

    /// A document serde cannot write is an error (exit 1), not an empty line on stdout.
    #[test]
    fn a_json_document_that_cannot_be_serialised_is_an_error() {
        let bad: std::collections::BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into();
        let e = print_json(&bad).unwrap_err();
        assert!(matches!(e, Error::Json(_)), "{e}");
        assert_eq!(ExitStatus::from(&e), ExitStatus::Failure);
    }

    /// Every command's status maps to the documented exit codes.
    #[test]
    fn exit_statuses_map_to_their_codes() {
        for (status, code) in [
            (ExitStatus::Success, ExitCode::from(0)),
            (ExitStatus::Conflicts, ExitCode::from(3)),
            (ExitStatus::Interrupted, ExitCode::from(130)),
        ] {
            assert_eq!(ExitCode::from(status), code);
        }
        assert_eq!(ExitStatus::from(&Error::Interrupted), ExitStatus::Interrupted);
        assert_eq!(ExitStatus::from(&Error::refused("x")), ExitStatus::Usage);
    }
}
