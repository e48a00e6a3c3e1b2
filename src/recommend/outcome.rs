//! What a recommendation is, as data: the candidates scored, the winner, the runner-up and the
//! presets ruled out. A leaf: `score` computes these, `explain` puts them into sentences.

use serde::Serialize;

/// A rule that fired.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Reason {
    pub rule: String,
    pub weight: i32,
    /// The rule's text with the inputs filled in.
    pub text: String,
}

/// A preset ruled out by one of its `exclude` conditions.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Excluded {
    pub preset: String,
    pub rule: String,
    pub text: String,
}

/// One candidate, scored.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Scored {
    pub preset: String,
    pub title: String,
    pub layout: String,
    pub score: i32,
    pub moving_parts: u32,
    pub default: bool,
    pub reasons: Vec<Reason>,
}

/// A rule whose weight differs between the winner and the runner-up.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Difference {
    pub rule: String,
    /// Its weight for the recommended preset (0 when it did not fire there).
    pub winner: i32,
    /// Its weight for the runner-up.
    pub runner_up: i32,
    pub text: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunnerUp {
    pub preset: String,
    pub layout: String,
    pub score: i32,
    /// Points behind the recommendation (0 when the tie rule decided).
    pub behind: i32,
    pub differences: Vec<Difference>,
    /// One sentence: why it lost.
    pub reason: String,
}

/// The answer of `recommend`.
#[derive(Debug, Clone, Serialize)]
pub struct Recommendation {
    pub preset: String,
    pub title: String,
    pub layout: String,
    /// The layout's description from the template manifest.
    pub layout_description: String,
    pub score: i32,
    /// The rules that fired for the recommended preset, strongest first.
    pub reasons: Vec<Reason>,
    pub runner_up: Option<RunnerUp>,
    /// Set when the tie rule (not the score) decided between the first two.
    pub tie_break: Option<String>,
    /// Set when no rule fired and the default preset was taken.
    pub fallback: Option<String>,
    pub excluded: Vec<Excluded>,
    /// Every candidate in rank order.
    pub ranking: Vec<Scored>,
    /// The command that generates the recommended project.
    pub command: String,
}
