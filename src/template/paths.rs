//! Relative paths inside a template or a generated project: the one checker.

use std::path::{Component, Path};

/// Checks that `p` is `.` or a relative path that stays inside the project.
pub fn check_relative_path(p: &str) -> std::result::Result<(), String> {
    if p.is_empty() {
        return Err("empty path".into());
    }
    if p.contains('\\') || p.contains('\0') {
        return Err("backslashes and NUL bytes are not allowed in paths".into());
    }
    let path = Path::new(p);
    if path.is_absolute() || p.starts_with('/') {
        return Err("absolute paths are not allowed".into());
    }
    for c in path.components() {
        match c {
            // A template must never write git metadata: a `.git/config` or hook would run code
            // in the user's first `git status` (core.fsmonitor) or commit.
            Component::Normal(n) if n.to_string_lossy().eq_ignore_ascii_case(".git") => {
                return Err("`.git` is reserved: a template may not write git metadata".into());
            }
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err("`..` would leave the project directory".into()),
            _ => return Err("absolute paths and drive prefixes are not allowed".into()),
        }
    }
    if p.split('/').any(|seg| seg.is_empty() && p != ".") && p != "." && !p.ends_with('/') {
        return Err("empty path segment (a variable in the file name rendered empty?)".into());
    }
    Ok(())
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
        assert!(check_relative_path(".git/config").is_err());
        assert!(check_relative_path("svc/.GIT/hooks/pre-commit").is_err());
        assert!(check_relative_path(".github/workflows/ci.yml").is_ok());
    }
}
