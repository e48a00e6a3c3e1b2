//! The two helpers every question on the terminal shares: a dialoguer failure as an [`Error`]
//! (Ctrl-C while reading is an interrupt), and a yes/no question outside the variable flow.

use dialoguer::Confirm;
use dialoguer::theme::ColorfulTheme;
use stackwise::{Error, Result};

pub(super) fn prompt_err(e: dialoguer::Error) -> Error {
    match e {
        dialoguer::Error::IO(io) if io.kind() == std::io::ErrorKind::Interrupted => Error::Interrupted,
        other => Error::Prompt(other),
    }
}

/// A yes/no question outside the variable flow.
pub fn confirm(question: &str, default: bool) -> Result<bool> {
    Confirm::with_theme(&ColorfulTheme::default())
        .with_prompt(question)
        .default(default)
        .interact()
        .map_err(prompt_err)
}
