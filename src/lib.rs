//! stackwise: scaffold backend repositories whose architecture is chosen by workload.
//!
//! The library holds the whole pipeline (see docs/ARCHITECTURE.md); `main.rs` only parses
//! arguments, talks to the terminal and maps [`Error`] to exit codes.

pub mod answers;
pub mod context;
pub mod error;
pub mod generate;
pub mod git;
pub mod install;
pub mod lint;
pub mod manifest;
pub mod names;
pub mod plan;
pub mod preset;
pub mod recommend;
pub mod record;
pub mod source;
pub mod stage;

pub use error::{Error, ErrorKind, Result};
