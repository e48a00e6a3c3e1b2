//! The questions interface: the library never talks to the terminal itself; the binary
//! implements [`Prompter`] (and tests script it).

use serde_json::Value;

use super::manifest::{Manifest, Variable};
use super::preset::Catalogue;
use crate::error::Result;

/// Asks the user for values. The library never talks to the terminal itself; the binary
/// implements this trait (and tests script it).
pub trait Prompter {
    /// Whether questions can be asked at all (a terminal, and no `--yes`).
    fn is_interactive(&self) -> bool;
    /// Asks for one variable; `default` is the value pre-selected. Returns the answer.
    fn ask(&mut self, var: &Variable, default: &Value) -> Result<Value>;
    /// Offers a choice among the presets (or the workload questions of `recommend`);
    /// `None` keeps the default preset.
    fn choose_preset(&mut self, _catalogue: &Catalogue, _manifest: &Manifest) -> Result<Option<String>> {
        Ok(None)
    }
}

/// A prompter that never asks (no terminal, `--yes`, tests).
pub struct NoPrompt;

impl Prompter for NoPrompt {
    fn is_interactive(&self) -> bool {
        false
    }
    fn ask(&mut self, _var: &Variable, default: &Value) -> Result<Value> {
        Ok(default.clone())
    }
}
