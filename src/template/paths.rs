//! Relative paths inside a template or a generated project: the one checker, the one canonical
//! form, and the one way to show a path to a user.
//!
//! Every path a template produces (a mount point, a rendered file name, a `--subdir`) goes
//! through [`normalize`] before any other check, so `sub`, `./sub` and `sub/.` are one path and
//! a duplicate check or a backup can never be fooled by spelling.

use std::fmt::Write as _;

/// The longest file name ext4, APFS, NTFS and most others take (bytes of UTF-8; NTFS and APFS
/// count characters, never fewer).
const MAX_SEGMENT_BYTES: usize = 255;

/// The canonical form of a relative path inside a project: `/`-separated, no `.` segments,
/// no empty segments, `.` for the root. Refuses anything that could leave the project,
/// write git metadata, or hide itself from a listing (control characters).
pub fn normalize(p: &str) -> Result<String, String> {
    if p.is_empty() {
        return Err("empty path".into());
    }
    if p.contains('\\') || p.contains('\0') {
        return Err("backslashes and NUL bytes are not allowed in paths".into());
    }
    if p.chars().any(char::is_control) {
        return Err("control characters (newline, escape, …) are not allowed in paths".into());
    }
    if p.starts_with('/') || has_drive_prefix(p) {
        return Err("absolute paths and drive prefixes are not allowed".into());
    }
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = p.split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "" => {
                let why = if i + 1 == segments.len() {
                    "a path may not end with `/` (a variable in the file name rendered empty?)"
                } else {
                    "empty path segment (a variable in the file name rendered empty?)"
                };
                return Err(why.into());
            }
            "." => {}
            ".." => return Err("`..` would leave the project directory".into()),
            // A template must never write git metadata: a `.git/config` or hook would run code
            // in the user's first `git status` (core.fsmonitor) or commit.
            s if s.eq_ignore_ascii_case(".git") => {
                return Err("`.git` is reserved: a template may not write git metadata".into());
            }
            s if s.len() > MAX_SEGMENT_BYTES => {
                return Err(format!(
                    "a path segment of {} bytes: file systems take at most {MAX_SEGMENT_BYTES}",
                    s.len()
                ));
            }
            s => out.push(s),
        }
    }
    Ok(if out.is_empty() { ".".to_string() } else { out.join("/") })
}

/// Checks that `p` is `.` or a relative path that stays inside the project.
pub fn check_relative_path(p: &str) -> Result<(), String> {
    normalize(p).map(|_| ())
}

/// The glob of a path selector of a component manifest (`ignore`, `verbatim`, a conditional's
/// `paths`), or `None` when it is a literal path (a file, or a directory and its contents).
///
/// Each glob is compiled (into a regex) once per thread: the checks of a template's components
/// compile every one, and the plan then needs those of the components it mounts again (`lint`,
/// those of every render).
pub fn selector_glob(pattern: &str) -> Result<Option<globset::GlobMatcher>, String> {
    if !pattern.contains(['*', '?', '[']) {
        return Ok(None);
    }
    thread_local! {
        static COMPILED: std::cell::RefCell<std::collections::HashMap<String, globset::GlobMatcher>> =
            std::cell::RefCell::default();
    }
    if let Some(m) = COMPILED.with(|c| c.borrow().get(pattern).cloned()) {
        return Ok(Some(m));
    }
    let matcher = globset::Glob::new(pattern)
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("invalid glob {pattern:?}: {}", e.kind()))?;
    COMPILED.with(|c| c.borrow_mut().insert(pattern.to_string(), matcher.clone()));
    Ok(Some(matcher))
}

/// `C:` and similar: absolute on Windows, and never a sensible file name.
fn has_drive_prefix(p: &str) -> bool {
    let b = p.as_bytes();
    b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':'
}

/// Joins a normalised mount point and a normalised relative path.
pub fn join(mount: &str, rel: &str) -> String {
    if mount == "." {
        rel.to_string()
    } else if rel == "." {
        mount.to_string()
    } else {
        format!("{mount}/{rel}")
    }
}

/// A path as it may be shown on a terminal: control characters and other invisible code points
/// are escaped (`\n`, `\u{1b}`), so a hostile name cannot rewrite the lines a user reviews.
pub fn escaped(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for c in p.chars() {
        if c.is_control() || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
            let _ = write!(out, "{}", c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert!(check_relative_path(".").is_ok());
        assert!(check_relative_path("a/b.txt").is_ok());
        assert!(check_relative_path("../x").is_err());
        assert!(check_relative_path("a/../../x").is_err());
        assert!(check_relative_path("/etc/passwd").is_err());
        assert!(check_relative_path("a//b").is_err());
        assert!(check_relative_path("a//b/").is_err());
        assert!(check_relative_path("a/b/").is_err());
        assert!(check_relative_path(".git/config").is_err());
        assert!(check_relative_path("svc/.GIT/hooks/pre-commit").is_err());
        assert!(check_relative_path(".github/workflows/ci.yml").is_ok());
        assert!(check_relative_path("C:/x").is_err());
        assert!(check_relative_path("a\nb").is_err());
        assert!(check_relative_path("a\u{1b}[2Kb").is_err());
    }

    #[test]
    fn one_canonical_form() {
        assert_eq!(normalize("sub").unwrap(), "sub");
        assert_eq!(normalize("./sub").unwrap(), "sub");
        assert_eq!(normalize("sub/.").unwrap(), "sub");
        assert_eq!(normalize("./a/./b").unwrap(), "a/b");
        assert_eq!(normalize(".").unwrap(), ".");
        assert_eq!(normalize("./.").unwrap(), ".");
        assert_eq!(join(".", "a"), "a");
        assert_eq!(join("sub", "a/b"), "sub/a/b");
    }

    #[test]
    fn escaping_shows_what_is_hidden() {
        assert_eq!(escaped("ok/name.txt"), "ok/name.txt");
        assert_eq!(escaped("a\nb"), "a\\nb");
        assert_eq!(escaped("x\u{1b}[2K"), "x\\u{1b}[2K");
        assert_eq!(escaped("evil\u{202e}txt"), "evil\\u{202e}txt");
    }
}
