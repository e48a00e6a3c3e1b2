//! A variable of a template (a question, or a value a preset sets) as the manifest declares it.
//! A leaf below `manifest` (which checks it) and `value` (which coerces answers to its type).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VarType {
    String,
    Integer,
    Bool,
    Choice,
    List,
}

impl VarType {
    pub fn as_str(self) -> &'static str {
        match self {
            VarType::String => "string",
            VarType::Integer => "integer",
            VarType::Bool => "bool",
            VarType::Choice => "choice",
            VarType::List => "list",
        }
    }
}

/// A question the template asks (or a value a preset sets).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: VarType,
    /// The question shown on a terminal.
    #[serde(default)]
    pub prompt: Option<String>,
    /// A longer explanation (shown by `presets show` and in prompts).
    #[serde(default)]
    pub help: Option<String>,
    /// Default value; a string default is a Tera template over earlier answers.
    #[serde(default)]
    pub default: Option<toml::Value>,
    /// Allowed values for `choice` (one) and `list` (any subset).
    #[serde(default)]
    pub choices: Option<Vec<String>>,
    /// A regular expression a string (or each list item) must match.
    #[serde(default)]
    pub pattern: Option<String>,
    /// The message shown when `pattern` does not match.
    #[serde(default)]
    pub pattern_message: Option<String>,
    /// The longest string accepted (in characters).
    #[serde(default)]
    pub max_length: Option<usize>,
    /// Integer bounds.
    #[serde(default)]
    pub min: Option<i64>,
    #[serde(default)]
    pub max: Option<i64>,
    /// A Tera expression over earlier answers: the question is asked only when it is true.
    /// When false the variable still exists and takes its default.
    #[serde(default)]
    pub when: Option<String>,
    /// A secret is never written to `.stackwise.toml`.
    #[serde(default)]
    pub secret: bool,
}
