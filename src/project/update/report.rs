//! The words of an update report: what happened to each path the template touched.

use serde::Serialize;

/// What an update did to one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileStatus {
    /// The template's and the user's changes combined cleanly.
    Merged,
    /// Only the template changed it.
    Updated,
    /// New in the template (or brought back by `--restore`).
    Added,
    /// The template removed it, and the user had not changed it.
    Removed,
    /// The template renamed it; the user's edits followed.
    Renamed,
    /// Both changed the same lines: left for the user, with diff3 markers.
    Conflict,
    /// The user deleted it and the template changed it: it stays deleted (`--restore PATH`).
    KeptDeleted,
    /// The template removed it, but the user had edited it: the user's file stays.
    KeptYours,
    /// The template changed it, but `[update] skip` or `update = "once"` keeps it as it is.
    Skipped,
}

impl FileStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FileStatus::Merged => "merged",
            FileStatus::Updated => "updated",
            FileStatus::Added => "added",
            FileStatus::Removed => "removed",
            FileStatus::Renamed => "renamed",
            FileStatus::Conflict => "conflict",
            FileStatus::KeptDeleted => "kept-deleted",
            FileStatus::KeptYours => "kept-yours",
            FileStatus::Skipped => "skipped",
        }
    }

    /// One line of explanation for the human report.
    pub fn explain(self) -> &'static str {
        match self {
            FileStatus::Merged => "your changes and the template's combined",
            FileStatus::Updated => "the template's change",
            FileStatus::Added => "new from the template",
            FileStatus::Removed => "the template removed it",
            FileStatus::Renamed => "the template moved it; your edits came along",
            FileStatus::Conflict => "both changed the same lines: resolve the markers",
            FileStatus::KeptDeleted => {
                "you deleted it and the template changed it: it stays deleted (--restore PATH brings it back)"
            }
            FileStatus::KeptYours => "the template removed it, but you had edited it: yours is kept",
            FileStatus::Skipped => "the template changed it; [update] skip or update = \"once\" keeps yours",
        }
    }
}

/// One path of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileReport {
    pub path: String,
    pub status: FileStatus,
    /// The old path of a rename.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

impl FileReport {
    pub fn new(path: impl Into<String>, status: FileStatus) -> Self {
        FileReport {
            path: path.into(),
            status,
            from: None,
        }
    }
}
