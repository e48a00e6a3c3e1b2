//! The `stackwise` command: argument parsing, terminal interaction and exit codes.
//! Everything else lives in the library.

mod cli;

fn main() -> std::process::ExitCode {
    stackwise::template::source::defer_tls_roots();
    cli::main()
}
