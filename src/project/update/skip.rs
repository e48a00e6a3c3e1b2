//! `[update] skip`: the paths `stackwise update` never writes, as the user listed them in
//! `.stackwise.toml`. Each entry is validated — a pattern that could never match is refused,
//! never silently ignored — and read the way `.gitignore` anchors paths: a leading `/` anchors at
//! the project root (as every entry is: entries are paths from the root), a trailing `/` or a
//! plain directory name covers everything below it.

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};
use crate::project::record::RECORD_FILE;

/// The compiled `[update] skip` patterns.
pub struct Patterns(GlobSet);

fn invalid(pattern: &str, why: impl std::fmt::Display) -> Error {
    Error::refused_with(
        format!("{RECORD_FILE}: [update] skip {pattern:?}: {why}"),
        format!("fix or remove the entry in {RECORD_FILE} and commit it, then update again"),
    )
}

impl Patterns {
    pub fn parse(patterns: &[String]) -> Result<Patterns> {
        let mut b = GlobSetBuilder::new();
        for raw in patterns {
            let p = raw.trim().trim_start_matches("./");
            let p = p.strip_prefix('/').unwrap_or(p);
            let p = p.trim_end_matches('/');
            if p.is_empty() {
                return Err(invalid(raw, "an empty pattern matches nothing"));
            }
            if p.starts_with('/') || p.split('/').any(|s| s == ".." || s == "." || s.is_empty()) {
                return Err(invalid(
                    raw,
                    "paths are relative to the project root, without `.`, `..` or `//`; this can never match",
                ));
            }
            for glob in [p.to_string(), format!("{p}/**")] {
                b.add(Glob::new(&glob).map_err(|e| invalid(raw, e.kind()))?);
            }
        }
        Ok(Patterns(b.build().map_err(|e| invalid("", e))?))
    }

    pub fn is_match(&self, path: &str) -> bool {
        self.0.is_match(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(p: &[&str]) -> Result<Patterns> {
        Patterns::parse(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn a_leading_slash_anchors_at_the_root_and_a_directory_covers_its_files() {
        let p = of(&["/Makefile", "docs/", "src/app/model.py", "*.lock"]).unwrap();
        assert!(p.is_match("Makefile"));
        assert!(!p.is_match("sub/Makefile"));
        assert!(p.is_match("docs/a/b.md"));
        assert!(p.is_match("src/app/model.py"));
        assert!(p.is_match("uv.lock"));
        assert!(!p.is_match("README.md"));
    }

    #[test]
    fn patterns_that_can_never_match_are_refused() {
        for bad in ["", "/", "../x", "a//b", "a/./b", "[oops"] {
            assert!(of(&[bad]).is_err(), "{bad:?} must be refused");
        }
    }
}
