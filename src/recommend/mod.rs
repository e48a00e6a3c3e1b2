//! `stackwise recommend`: from a description of the workload to one preset, with the reasons.
//!
//! The decision rules are data: each preset's `[signals]` table (in `presets/*.toml`) lists the
//! rules that speak for or against it and the conditions that exclude it. This module only
//! checks and evaluates them; the format is documented in `docs/choosing-a-stack.md` ("For fork
//! authors").
//!
//! - [`inputs`]: the table of workload inputs ([`INPUTS`]).
//! - [`kinds`]: what each kind of input does with an answer (parse, check, show).
//! - [`numbers`]: counts and milliseconds as people write them, and as they are printed.
//! - [`workload`]: what is known about a workload ([`Workload`]), and its contradictions.
//! - [`expr`]: the `when` conditions, parsed and type-checked against the inputs.
//! - [`signals`]: the `[signals]` schema, checked when presets load (errors at `file:line:col`).
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
pub mod expr;
pub mod inputs;
pub mod kinds;
pub mod numbers;
pub mod outcome;
pub mod project;
pub mod score;
pub mod signals;
pub mod workload;

pub use explain::{TIE_RULE, describe_signals, new_command, signed};
pub use inputs::{Answer, INPUTS, Input, Kind};
pub use outcome::{Difference, Excluded, Reason, Recommendation, RunnerUp, Scored};
pub use project::{Change, ProjectFit, Recorded};
pub use score::recommend;
pub use signals::Signals;
pub use workload::Workload;
