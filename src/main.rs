//! The `stackwise` command: argument parsing, terminal interaction and exit codes.
//! Everything else lives in the library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
