//! What is never read from a template, at any depth: version control, the caches and installed
//! trees of the tools a template author runs in place, and the files editors and file managers
//! leave behind. Never ordinary names such as `dist` or `target`, which can be a template's own
//! source folders. build.rs includes this file too, so the embedded template's digest is taken
//! over exactly the files a run reads.

/// Directories skipped with everything below them.
pub const SKIP_DIRS: &[&str] = &[
    ".pytest_cache",
    ".git",
    ".hg",
    ".svn",
    "node_modules",
    ".venv",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
];

/// Files no template means to ship: macOS and Windows folder metadata, editor swap, backup and
/// lock files, compiled Python (copier's default `_exclude` skips the same kinds).
pub fn is_junk_file(name: &str) -> bool {
    matches!(name, ".DS_Store" | "Thumbs.db" | "desktop.ini")
        || name.starts_with(".#")
        || name.starts_with("._")
        || name.ends_with('~')
        || [".swp", ".swo", ".pyc", ".pyo"].iter().any(|ext| name.ends_with(ext))
}

/// Whether an entry of this name and kind is left out of a template.
pub fn skipped(name: &str, is_dir: bool) -> bool {
    if is_dir {
        SKIP_DIRS.contains(&name)
    } else {
        is_junk_file(name)
    }
}
