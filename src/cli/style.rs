//! Colour on a terminal only, and never with NO_COLOR set.

use std::io::IsTerminal;
use std::sync::OnceLock;

fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal())
}

fn paint(code: &str, s: &str) -> String {
    if enabled() {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

pub fn bold(s: &str) -> String {
    paint("1", s)
}
pub fn ok(s: &str) -> String {
    paint("1;32", s)
}
pub fn warn(s: &str) -> String {
    paint("1;33", s)
}
pub fn error(s: &str) -> String {
    paint("1;31", s)
}
