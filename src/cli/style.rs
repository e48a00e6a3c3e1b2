//! Colour, decided for each output stream on its own: only when that stream is a terminal, and
//! never with NO_COLOR set. `stackwise recommend > out.txt` on a terminal writes plain text to the
//! file while its errors on the terminal stay coloured.
//!
//! The free functions paint for stderr (where human output goes); text printed to stdout is
//! painted with [`Paint::stdout`].

use std::io::IsTerminal;
use std::sync::OnceLock;

/// Paints text for one output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paint {
    on: bool,
}

fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

impl Paint {
    /// For text printed to stdout.
    pub fn stdout() -> Self {
        static ON: OnceLock<bool> = OnceLock::new();
        Paint {
            on: *ON.get_or_init(|| !no_color() && std::io::stdout().is_terminal()),
        }
    }

    /// For text printed to stderr.
    pub fn stderr() -> Self {
        static ON: OnceLock<bool> = OnceLock::new();
        Paint {
            on: *ON.get_or_init(|| !no_color() && std::io::stderr().is_terminal()),
        }
    }

    fn paint(self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }

    pub fn bold(self, s: &str) -> String {
        self.paint("1", s)
    }
    pub fn ok(self, s: &str) -> String {
        self.paint("1;32", s)
    }
    pub fn warn(self, s: &str) -> String {
        self.paint("1;33", s)
    }
    pub fn error(self, s: &str) -> String {
        self.paint("1;31", s)
    }
}

/// Bold, for stderr.
pub fn bold(s: &str) -> String {
    Paint::stderr().bold(s)
}
/// Green, for stderr.
pub fn ok(s: &str) -> String {
    Paint::stderr().ok(s)
}
/// Yellow, for stderr.
pub fn warn(s: &str) -> String {
    Paint::stderr().warn(s)
}
/// Red, for stderr.
pub fn error(s: &str) -> String {
    Paint::stderr().error(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn painting_is_on_or_off_per_painter() {
        let on = Paint { on: true };
        let off = Paint { on: false };
        assert_eq!(on.bold("x"), "\x1b[1mx\x1b[0m");
        assert_eq!(on.error("x"), "\x1b[1;31mx\x1b[0m");
        assert_eq!(off.ok("x"), "x");
        assert_eq!(off.warn("x"), "x");
    }
}
