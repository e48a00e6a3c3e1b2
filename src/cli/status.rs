//! How a command ended, as a value (uv's `ExitStatus`): only `main` turns it into a process exit.

use std::process::ExitCode;

use stackwise::{Error, ErrorKind};

/// The exit status of a command. Commands return it; none of them exits the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: done.
    Success,
    /// 1: something failed at run time.
    Failure,
    /// 2: the user's input was wrong (nothing was done).
    Usage,
    /// 3: an update left conflicts to resolve, or `update --check` found the project behind.
    Conflicts,
    /// 130: Ctrl-C (the conventional status of a process stopped by SIGINT).
    Interrupted,
    /// 141: stdout closed under us (`stackwise … | head -1`), as the shell reports SIGPIPE.
    ClosedPipe,
}

impl From<&Error> for ExitStatus {
    fn from(e: &Error) -> Self {
        if e.is_interrupt() {
            return ExitStatus::Interrupted;
        }
        match e.kind() {
            ErrorKind::Usage => ExitStatus::Usage,
            ErrorKind::Runtime => ExitStatus::Failure,
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> Self {
        ExitCode::from(match status {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::Usage => 2,
            ExitStatus::Conflicts => 3,
            ExitStatus::Interrupted => 130,
            ExitStatus::ClosedPipe => 141,
        })
    }
}
