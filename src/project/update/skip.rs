//! `[update] skip`: the paths `stackwise update` never writes, as the user listed them in
//! `.stackwise.toml`. Each entry is validated — a pattern that could never match is refused,
//! never silently ignored — and read the way `.gitignore` reads its lines: a leading `/` anchors
//! at the project root (as every entry is: entries are paths from the root), a trailing `/` or a
//! plain directory name covers everything below it, a leading `!` takes back what an earlier
//! entry skipped (`\!` is a literal `!`), and the last entry that matches a path decides. Unlike
//! git, a `!` entry takes a file back even below a skipped directory (`docs/` then
//! `!docs/z.md`): git's rule exists to spare it a directory walk, and ignoring the entry would
//! be exactly the silent surprise these checks refuse.

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};
use crate::project::record::RECORD_FILE;

/// The compiled `[update] skip` patterns, in order: each matcher, and whether it is a `!`
/// entry that takes paths back.
pub struct Patterns(Vec<(GlobSet, bool)>);

fn invalid(pattern: &str, why: impl std::fmt::Display) -> Error {
    Error::refused_with(
        format!("{RECORD_FILE}: [update] skip {pattern:?}: {why}"),
        format!("fix or remove the entry in {RECORD_FILE} and commit it, then update again"),
    )
}

/// One entry: the path or directory it covers (`p` and `p/**`).
fn entry(raw: &str, p: &str) -> Result<GlobSet> {
    let p = p.trim_start_matches("./");
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
    let mut b = GlobSetBuilder::new();
    for glob in [p.to_string(), format!("{p}/**")] {
        b.add(Glob::new(&glob).map_err(|e| invalid(raw, e.kind()))?);
    }
    b.build().map_err(|e| invalid(raw, e))
}

impl Patterns {
    pub fn parse(patterns: &[String]) -> Result<Patterns> {
        let mut rules = Vec::new();
        for raw in patterns {
            let p = raw.trim();
            let (negated, p) = match p.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, p.strip_prefix('\\').filter(|r| r.starts_with('!')).unwrap_or(p)),
            };
            rules.push((entry(raw, p)?, negated));
        }
        Ok(Patterns(rules))
    }

    /// Whether `path` is skipped: the last entry that matches it is not a `!` entry.
    pub fn is_match(&self, path: &str) -> bool {
        self.0
            .iter()
            .rev()
            .find(|(set, _)| set.is_match(path))
            .is_some_and(|(_, negated)| !negated)
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
    fn a_negation_takes_back_what_an_earlier_entry_skipped_and_the_last_match_decides() {
        let p = of(&["docs/**", "!docs/z.md"]).unwrap();
        assert!(p.is_match("docs/y.md"));
        assert!(!p.is_match("docs/z.md"));
        let p = of(&["docs/", "!docs/keep/", "docs/keep/secret.md"]).unwrap();
        assert!(p.is_match("docs/a.md"));
        assert!(!p.is_match("docs/keep/b.md"));
        assert!(p.is_match("docs/keep/secret.md"));
        assert!(!of(&["!docs/z.md"]).unwrap().is_match("docs/z.md"));
        let p = of(&["\\!important.md"]).unwrap();
        assert!(p.is_match("!important.md"));
        assert!(!p.is_match("important.md"));
    }

    #[test]
    fn patterns_that_can_never_match_are_refused() {
        for bad in ["", "/", "../x", "a//b", "a/./b", "[oops", "!", "!/", "!../x"] {
            assert!(of(&[bad]).is_err(), "{bad:?} must be refused");
        }
    }
}
