//! Raw flags and the process, settled once for every command: whether there is a terminal to ask
//! on, the checked template source of `--template`/`--subdir`, and how a `--json` document is
//! printed. A leaf: command files import it, it imports none of them.

use std::io::IsTerminal;

use stackwise::Error;
use stackwise::template::source::TemplateSource;

/// What every command needs from the process, found out once: whether there is a terminal to
/// ask on (stdin and stderr both a terminal).
pub(crate) struct Settings {
    terminal: bool,
}

impl Settings {
    pub(crate) fn detect() -> Self {
        Settings {
            terminal: std::io::stdin().is_terminal() && std::io::stderr().is_terminal(),
        }
    }

    /// Whether there is a terminal to ask on.
    pub(crate) fn terminal(&self) -> bool {
        self.terminal
    }

    /// Whether to ask questions: on a terminal, unless `--yes`.
    pub(crate) fn interactive(&self, yes: bool) -> bool {
        !yes && self.terminal
    }
}

/// The template source of `--template SRC [--subdir PATH]`, checked (a subdirectory must stay
/// inside a local template); `None` without either flag. The one way every command reads them.
pub(crate) fn template_flag(template: Option<&str>, subdir: Option<&str>) -> Result<Option<TemplateSource>, Error> {
    if template.is_none() && subdir.is_none() {
        return Ok(None);
    }
    TemplateSource::parse_checked(template, subdir).map(Some)
}

/// A `--json` document on stdout; a value that cannot be serialised is an error, never an empty
/// document.
pub(crate) fn print_json(value: &impl serde::Serialize) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value).map_err(Error::Json)?;
    println!("{text}");
    Ok(())
}
