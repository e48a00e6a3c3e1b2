//! Acting on a project on disk: the second half of the pipeline.
//!
//! staging → (install) → git → move into place, and the record (`.stackwise.toml`) that lets a
//! project be re-rendered later.

pub mod adopt;
pub mod diff;
pub mod fork;
pub mod git;
pub mod install;
pub mod new;
pub mod record;
pub mod stage;
pub mod update;
