//! Reading a template: the first half of the pipeline, entirely in memory.
//!
//! source → manifest → preset → answers → plan → render
//!
//! Nothing here touches a project on disk; that is [`crate::project`]. This file only declares
//! the stages; the orchestrator is [`pipeline`], the names they share are in [`files`].

pub mod answers;
mod budget;
pub mod component;
pub mod files;
pub mod inline;
pub mod lint;
pub mod manifest;
pub mod matrix;
pub mod names;
pub mod paths;
pub mod pipeline;
pub mod plan;
pub mod preset;
pub mod prompter;
pub mod python_stdlib;
pub mod render;
pub mod skip;
pub mod source;
pub mod span;
pub mod value;
pub mod variable;

pub use files::{COMPONENT_MANIFEST, COMPONENTS_DIR, MANIFEST_FILE, PARTIALS_DIR, TEMPLATE_SUFFIX};
pub use pipeline::{Rendered, Template, choose_preset_and_layout, parse_sets, render_project};
