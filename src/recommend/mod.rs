//! `stackwise recommend`: from a description of the workload to one preset, with the reasons.
//!
//! The decision rules are data: each preset's `[signals]` table (in `presets/*.toml`) lists the
//! rules that speak for or against it and the conditions that exclude it. Their language (the
//! table of workload inputs, [`INPUTS`]; the `when` conditions; the schema, checked when presets
//! load) is the leaf [`crate::signals`], which `template/` reads presets with; this module
//! evaluates the rules. The format is documented in `docs/choosing-a-stack.md` ("For fork
//! authors").
//!
//! - [`kinds`]: what each kind of input does with an answer (parse, check, show).
//! - [`numbers`]: counts and milliseconds as people write them, and as they are printed.
//! - [`workload`]: what is known about a workload ([`Workload`]), and its contradictions.
//! - [`score`]: the ranking, the winner and the runner-up ([`recommend`]).
//! - [`explain`]: the sentences and commands of a recommendation.
//! - [`project`]: `--project DIR`, the recommendation against a project's recorded preset.
//!
//! **Adding a workload input is one edit**: a row of [`INPUTS`]. The command-line flags are
//! built from the table (`cli/recommend.rs` implements clap's `Args` by walking it, so there is
//! no derive struct to keep in step), and so are the interactive questions, the parsing and range
//! checks, the values `when` conditions and `{placeholders}` see, the echoed flags and the
//! `--json` `workload` object. A new kind of value (beyond choice, count, milliseconds and
//! switch) is a new [`Kind`] variant, which the compiler then asks for wherever kinds are matched.
//! The rows are listed in `docs/choosing-a-stack.md` for fork authors (a test checks it).

pub mod explain;
pub mod kinds;
pub mod numbers;
pub mod outcome;
pub mod project;
pub mod score;
pub mod workload;

pub use crate::signals::Signals;
pub use crate::signals::inputs::{Answer, INPUTS, Input, Kind};
pub use explain::{TIE_RULE, describe_signals, new_command, signed};
pub use outcome::{Difference, Excluded, Reason, Recommendation, RunnerUp, Scored};
pub use project::{Change, ProjectFit, Recorded};
pub use score::recommend;
pub use workload::Workload;
