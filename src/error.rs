//! Typed errors of the library. Every error says what was wrong and, where it can, how to fix it.

use std::path::PathBuf;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether an error is the user's input (exit code 2) or something that failed at run time (1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Usage,
    Runtime,
}

/// Every way a command can fail. New variants may come: match with a `_` arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid project name {name:?}: {reason}")]
    InvalidName { name: String, reason: String, hint: String },

    /// `did_you_mean`: ` (did you mean `x`?)` or empty ([`crate::suggest::did_you_mean`]).
    #[error("unknown preset `{id}`{did_you_mean}; available presets: {available}")]
    UnknownPreset {
        id: String,
        did_you_mean: String,
        available: String,
    },

    #[error("unknown layout `{name}`; this template defines: {available}")]
    UnknownLayout { name: String, available: String },

    #[error("preset `{preset}` uses the {preset_layout} layout, but --layout {layout} was given")]
    LayoutConflict {
        preset: String,
        preset_layout: String,
        layout: String,
    },

    #[error("unknown variable `{key}`{source_hint}{did_you_mean}; this template's variables are: {available}")]
    UnknownVariable {
        key: String,
        source_hint: String,
        did_you_mean: String,
        available: String,
    },

    /// `--set` for a variable whose `when` is false: it would change nothing, so it is refused
    /// rather than recorded.
    #[error("`{key}` does not apply here: its condition `{when}` is false{context}")]
    InapplicableVariable { key: String, when: String, context: String },

    #[error("invalid value for `{key}`: {reason}")]
    InvalidValue { key: String, reason: String },

    #[error("malformed --set `{arg}`: expected KEY=VALUE, e.g. --set worker=true")]
    MalformedSet { arg: String },

    #[error("--set {key} is given twice, as `{first}` and as `{second}`: say it once")]
    ConflictingSet { key: String, first: String, second: String },

    /// `reason` says what is wrong; `source`, when reading or parsing failed, is that error.
    #[error("cannot read answers file {path}: {reason}")]
    AnswersFile {
        path: PathBuf,
        reason: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    #[error("target directory {path} exists and is not empty")]
    TargetNotEmpty { path: PathBuf },

    #[error("target {path} exists and is not a directory")]
    TargetNotDir { path: PathBuf },

    #[error("template manifest {path}: {reason}")]
    Manifest { path: String, reason: String },

    /// Every problem found in a template's manifest, components and presets, each at its place.
    #[error("{}", Problem::list(.0))]
    InvalidTemplate(Vec<Problem>),

    /// A template that does not compile or render (a phase error of its own, as just's
    /// `CompileError`), keeping what Tera said as its source.
    #[error(transparent)]
    Template(#[from] TemplateError),

    #[error("unsafe template path {path:?}: {reason}")]
    UnsafePath { path: String, reason: String },

    #[error("template source {source_desc}: {reason}")]
    Source {
        source_desc: String,
        reason: String,
        hint: Option<String>,
    },

    /// libgit2 failed; its error is the source.
    #[error("git error: {}", .0.message())]
    Git(#[from] git2::Error),

    /// A repository is not in the state an operation needs (no cause below it).
    #[error("git error: {0}")]
    Repository(String),

    /// A file of the project could not be written in the staging directory (shown at the path
    /// it was going to have; the staging directory is gone by the time this is read).
    #[error("cannot write {path}: {source} (nothing was written)")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// No thread to be had for work that needs one of its own (the render, watched by the clock).
    #[error(
        "cannot start a thread to {what}: {source} (the limit on processes and threads, `ulimit -u`, may be reached)"
    )]
    Thread {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("rendering {file} went over its budget: {reason}")]
    RenderBudget { file: String, reason: String },

    /// A short string of a template's manifests (a default, a flag, a `when`, a file name)
    /// rendered past the budget of one such string: `what` it is, in `file`.
    #[error("rendering {what} in {file} went over its budget: {reason}")]
    InlineBudget { file: String, what: String, reason: String },

    #[error("interrupted; nothing was written")]
    Interrupted,

    /// Ctrl-C after something was written: what became of it (exit 130 as well).
    #[error("interrupted; {0}")]
    InterruptedLeaving(String),

    /// The terminal could not be read; dialoguer's error is the source.
    #[error("cannot read the answer: {0}")]
    Prompt(#[source] dialoguer::Error),

    #[error("invalid workload: {reason}")]
    Workload { reason: String, hint: Option<String> },

    #[error("install step failed: {reason}")]
    Install { reason: String, hint: Option<String> },

    #[error("{0}")]
    NeedsConsent(String),

    #[error("{0}")]
    TestFailed(String),

    /// A report file (`stackwise test --junit`) could not be written.
    #[error("cannot write {}: {source}", path.display())]
    WriteReport {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// `stackwise update` will not start (nothing was changed): why, and what to do.
    #[error("cannot update: {reason}")]
    UpdateRefused { reason: String, hint: Option<String> },

    /// The branch moved while stackwise was writing (a commit made meanwhile): nothing was
    /// committed on it.
    #[error(
        "HEAD moved while stackwise was writing (from {was} to {now}: a commit made meanwhile, in another terminal or an editor); stackwise did not commit on top of it"
    )]
    HeadMoved { was: String, now: String },

    /// An update that failed while someone else moved HEAD: not rolled back, since putting the
    /// branch back would drop their commit; the hint says what is left and how to clear it.
    #[error("the update stopped without committing, and was not rolled back: {reason}")]
    NotRolledBack { reason: String, hint: String },

    /// `stackwise diff` or `adopt` will not start (nothing was changed): why, and what to do.
    #[error("cannot {action}: {reason}")]
    Refused {
        action: &'static str,
        reason: String,
        hint: Option<String>,
    },

    /// A `--json` document could not be serialised: an error, never an empty document.
    #[error("cannot write the JSON document: {0}")]
    Json(#[source] serde_json::Error),

    #[error("template lint found {count} problem(s):\n{report}")]
    Lint { count: usize, report: String },
}

impl Error {
    /// Usage errors exit with 2, everything else with 1.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidName { .. }
            | Error::UnknownPreset { .. }
            | Error::UnknownLayout { .. }
            | Error::LayoutConflict { .. }
            | Error::UnknownVariable { .. }
            | Error::InapplicableVariable { .. }
            | Error::InvalidValue { .. }
            | Error::MalformedSet { .. }
            | Error::ConflictingSet { .. }
            | Error::AnswersFile { .. }
            | Error::TargetNotEmpty { .. }
            | Error::TargetNotDir { .. }
            | Error::NeedsConsent(_)
            | Error::UpdateRefused { .. }
            | Error::Refused { .. }
            | Error::Workload { .. } => ErrorKind::Usage,
            _ => ErrorKind::Runtime,
        }
    }

    /// How to fix it, when the tool knows: printed on its own line after the error.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::NotRolledBack { hint, .. } => Some(hint.clone()),
            Error::InvalidName { hint, .. } => Some(hint.clone()),
            Error::UnknownPreset { .. } => Some("run `stackwise presets` to list them".into()),
            Error::UnknownLayout { name, available } => {
                let layouts = available.split(',').map(str::trim);
                let guess = crate::suggest::closest(name, layouts).map(|c| format!("did you mean `{c}`? ")).unwrap_or_default();
                Some(format!("{guess}run `stackwise presets` to see which preset uses which layout"))
            }
            Error::LayoutConflict { layout, .. } => {
                Some(format!("drop --layout, or pick a preset of the {layout} layout"))
            }
            Error::InapplicableVariable { key, .. } => {
                Some(format!("drop --set {key}=…; `stackwise presets show ID` lists which options each preset's layout uses"))
            }
            Error::MalformedSet { .. } => Some("write it as KEY=VALUE, e.g. --set worker=true".into()),
            Error::TargetNotEmpty { .. } => Some(
                "choose another name or -o DIR, or pass --force to write into it (files the template does not own are never touched)".into(),
            ),
            Error::Source { hint, .. }
            | Error::Workload { hint, .. }
            | Error::Install { hint, .. }
            | Error::UpdateRefused { hint, .. }
            | Error::Refused { hint, .. } => hint.clone(),
            Error::Git(e) if e.code() == git2::ErrorCode::Locked => Some(
                "a git lock file is held: another git process is running, or one was killed; if none is running, remove the lock file the message names".into(),
            ),
            _ => None,
        }
    }

    /// Ctrl-C stopped it (the binary exits with 130).
    pub fn is_interrupt(&self) -> bool {
        matches!(self, Error::Interrupted | Error::InterruptedLeaving(_))
    }

    /// A workload the user described wrongly, without a hint.
    pub fn workload(reason: impl Into<String>) -> Self {
        Error::Workload {
            reason: reason.into(),
            hint: None,
        }
    }

    /// An update's refusal (from the checks `diff` and `adopt` share with it) as one of `action`.
    pub fn refused_as(self, action: &'static str) -> Self {
        match self {
            Error::UpdateRefused { reason, hint } => Error::Refused { action, reason, hint },
            other => other,
        }
    }

    /// An update refused before it changed anything.
    pub fn refused(reason: impl Into<String>) -> Self {
        Error::UpdateRefused {
            reason: reason.into(),
            hint: None,
        }
    }

    /// The same refusal, with how to get past it.
    pub fn refused_with(reason: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::UpdateRefused {
            reason: reason.into(),
            hint: Some(hint.into()),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// One problem in a file of a template, at its place: `file:line:col: message` (line 0: the file
/// as a whole, `file: message`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file as a user finds it in the template (`stackwise.toml`, `presets/x.toml`).
    pub file: String,
    /// 1-based; 0 when the problem is the file as a whole.
    pub line: usize,
    /// 1-based, in characters.
    pub col: usize,
    pub message: String,
}

impl Problem {
    pub fn at(file: &str, line: usize, col: usize, message: impl Into<String>) -> Self {
        Problem {
            file: file.to_string(),
            line,
            col,
            message: message.into(),
        }
    }

    /// A problem with a file as a whole (missing, not text).
    pub fn file(file: &str, message: impl Into<String>) -> Self {
        Problem::at(file, 0, 0, message)
    }

    /// One problem on its line; several under a count, one a line.
    fn list(problems: &[Problem]) -> String {
        match problems {
            [one] => one.to_string(),
            all => {
                let lines: Vec<String> = all.iter().map(Problem::to_string).collect();
                format!("{} problems in the template:\n{}", all.len(), lines.join("\n"))
            }
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}:{}: {}", self.file, self.line, self.col, self.message)
        }
    }
}

/// A template that Tera refused, at its file: the phase error of compiling and rendering,
/// turned into an [`Error`] with `?`.
#[derive(Debug, thiserror::Error)]
#[error("template error in {file}:\n{message}")]
pub struct TemplateError {
    /// The template file (or what a one-off string came from: `when`, a default, a path).
    pub file: String,
    /// What is wrong, with Tera's chain of causes, one `caused by:` line each.
    pub message: String,
    /// Tera's own error, when Tera found the problem.
    #[source]
    pub source: Option<tera::Error>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    /// A git or template failure keeps the library's own error beneath the message.
    #[test]
    fn errors_keep_their_cause() {
        let git: Error = git2::Error::from_str("boom").into();
        assert_eq!(git.to_string(), "git error: boom");
        assert!(git.source().is_some_and(|s| s.is::<git2::Error>()));

        let tpl = crate::template::inline::render_str("{{ x", &Default::default(), "a path", "a path", "its name")
            .unwrap_err();
        assert!(tpl.to_string().starts_with("template error in a path:\n"), "{tpl}");
        assert!(tpl.source().is_some_and(|s| s.is::<tera::Error>()));

        let missing =
            crate::template::answers::load_file(std::path::Path::new("/nonexistent/answers.toml")).unwrap_err();
        assert!(
            missing
                .to_string()
                .starts_with("cannot read answers file /nonexistent/answers.toml: "),
            "{missing}"
        );
        assert!(missing.source().is_some_and(|s| s.is::<std::io::Error>()));
    }
}
