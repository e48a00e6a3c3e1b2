//! stackwise: scaffold backend repositories whose architecture is chosen by workload.
//!
//! The library holds the whole pipeline (see docs/ARCHITECTURE.md); `main.rs` only parses
//! arguments, talks to the terminal and maps [`Error`] to exit codes.
//!
//! - [`template`]: reading a template, in memory (source → manifest → preset → answers → plan → render);
//! - [`project`]: acting on a project on disk (staging, install, git, the record);
//! - [`recommend`]: workload signals → preset;
//! - [`signals`]: the language of a preset's `[signals]` (a leaf both `template` and `recommend` use).

pub mod error;
pub mod interrupt;
pub mod project;
pub mod recommend;
pub mod signals;
pub mod suggest;
pub mod template;
pub mod testing;

pub use error::{Error, ErrorKind, Result, TemplateError};
