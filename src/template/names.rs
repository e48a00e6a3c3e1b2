//! Project names: validation and the case variants templates need.

use heck::{ToKebabCase, ToSnakeCase, ToTitleCase, ToUpperCamelCase};
use serde::Serialize;

use super::python_stdlib::PYTHON_STDLIB;
use crate::error::{Error, Result};

/// The longest name accepted (npm allows 214, but directory and package names this long are a mistake).
pub const MAX_NAME_LEN: usize = 64;

/// The longest [`ProjectName::dns_label`]: a DNS label (63) less a 4-character suffix (`-dev`).
pub const DNS_LABEL_LEN: usize = 59;

const PYTHON_KEYWORDS: &[&str] = &[
    "false", "none", "true", "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del",
    "elif", "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is", "lambda", "nonlocal",
    "not", "or", "pass", "raise", "return", "try", "while", "with", "yield", "match", "case", "type",
];

/// Names npm or Python refuse whatever the template. Names that would shadow what a template's
/// generated code imports belong to that template: `[template] reserved_names` in its manifest.
const RESERVED: &[&str] = &[
    "node_modules",
    "favicon.ico",
    "node",
    "npm",
    "site",
    "test",
    "tests",
    "src",
];

/// The case variants of a project name.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ProjectName {
    /// As typed (trimmed).
    pub name: String,
    /// kebab-case: directory, npm and distribution name.
    pub slug: String,
    /// snake_case: Python import package.
    pub package: String,
    /// PascalCase: class-like identifiers.
    pub pascal: String,
    /// Title Case: headings.
    pub title: String,
}

fn invalid(name: &str, reason: impl Into<String>, hint: impl Into<String>) -> Error {
    Error::InvalidName {
        name: name.to_string(),
        reason: reason.into(),
        hint: hint.into(),
    }
}

impl ProjectName {
    /// Validates `raw` and derives its variants. `My App`, `my-app` and `my_app` are the same name.
    pub fn parse(raw: &str) -> Result<Self> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(invalid(raw, "the name is empty", "give a name such as `shop-ai`"));
        }
        if name.contains('/') || name.contains('\\') || name.contains("..") {
            return Err(invalid(
                raw,
                "a project name cannot contain a path separator or `..`",
                "pass the name alone and the parent directory with -o DIR, e.g. `stackwise new shop-ai -o ~/src`",
            ));
        }
        if name.chars().count() > MAX_NAME_LEN {
            return Err(invalid(
                raw,
                format!(
                    "the name is {} characters long; the limit is {MAX_NAME_LEN}",
                    name.chars().count()
                ),
                "use a shorter name",
            ));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_' || *c == ' '))
        {
            let suggestion = sanitize(name);
            return Err(invalid(
                raw,
                format!("the character {bad:?} cannot appear in a Python package or npm name"),
                if suggestion.is_empty() {
                    "use ASCII letters, digits, `-`, `_` or spaces".to_string()
                } else {
                    format!("use ASCII letters, digits, `-`, `_` or spaces, e.g. `{suggestion}`")
                },
            ));
        }
        let first = name.chars().next().unwrap_or(' ');
        if !first.is_ascii_alphabetic() {
            let stripped = name.trim_start_matches(|c: char| !c.is_ascii_alphabetic());
            let hint = if stripped.is_empty() {
                "start the name with a letter".to_string()
            } else {
                format!(
                    "start with a letter, e.g. `{}` or `app-{}`",
                    stripped.to_kebab_case(),
                    name.to_kebab_case()
                )
            };
            return Err(invalid(
                raw,
                "a Python package name cannot start with a digit or symbol",
                hint,
            ));
        }
        let slug = name.to_kebab_case();
        let package = name.to_snake_case();
        if slug.is_empty() || package.is_empty() {
            return Err(invalid(
                raw,
                "the name has no letters or digits",
                "give a name such as `shop-ai`",
            ));
        }
        // `aBaB…` becomes `a-b-a-b…`: the limit holds for the names the project is made of.
        for (form, derived) in [("kebab-case name", &slug), ("Python package name", &package)] {
            let len = derived.chars().count();
            if len > MAX_NAME_LEN {
                return Err(invalid(
                    raw,
                    format!("its {form} `{derived}` is {len} characters long; the limit is {MAX_NAME_LEN}"),
                    "use a shorter name (each capital letter inside a word starts a new word, joined by `-` or `_`)",
                ));
            }
        }
        if PYTHON_KEYWORDS.contains(&package.as_str()) {
            return Err(invalid(
                raw,
                format!("`{package}` is a Python keyword and cannot be a package name"),
                format!("add a word, e.g. `{slug}-service`"),
            ));
        }
        if RESERVED.contains(&package.as_str()) || RESERVED.contains(&slug.as_str()) {
            return Err(invalid(
                raw,
                format!("`{slug}` is reserved: it would shadow a module or package the generated project depends on"),
                format!("add a word, e.g. `{slug}-service` or `my-{slug}`"),
            ));
        }
        Ok(ProjectName {
            name: name.to_string(),
            pascal: name.to_upper_camel_case(),
            title: name.to_title_case(),
            slug,
            package,
        })
    }
}

impl ProjectName {
    /// The slug as a DNS label with room for a suffix: cut to [`DNS_LABEL_LEN`] characters, no
    /// trailing `-`. Kubernetes namespaces, label values and host names hold 63 characters at
    /// most, and a name may be 64 long: `<dns_label>-dev` always fits. The same as the slug for a
    /// name of up to 59 characters.
    pub fn dns_label(&self) -> String {
        let cut: String = self.slug.chars().take(DNS_LABEL_LEN).collect();
        cut.trim_end_matches('-').to_string()
    }

    /// Refuses, for a new project, a name the template reserves (`[template] reserved_names`: a
    /// package of that name would shadow a module its generated code imports, or depend on
    /// itself) and the name of a module of Python's standard library (a package of that name is
    /// never imported). Checked when a project is created, not by [`ProjectName::parse`]: a
    /// project that already has such a name still updates.
    pub fn check_reserved(&self, reserved: &[String]) -> Result<()> {
        if is_windows_device(&self.slug) {
            let slug = &self.slug;
            return Err(invalid(
                &self.name,
                format!(
                    "`{slug}` is a device name on Windows: no file or directory can take it there, so the project could not be checked out"
                ),
                format!("add a word, e.g. `{slug}-service` or `my-{slug}`"),
            ));
        }
        if PYTHON_STDLIB.contains(&self.package.as_str()) {
            let (package, slug) = (&self.package, &self.slug);
            return Err(invalid(
                &self.name,
                format!(
                    "`{package}` is a module of Python's standard library: a package of that name is never imported (Python finds the standard module first)"
                ),
                format!("add a word, e.g. `{slug}-service` or `my-{slug}`"),
            ));
        }
        if reserved.iter().any(|r| *r == self.package || *r == self.slug) {
            let slug = &self.slug;
            return Err(invalid(
                &self.name,
                format!(
                    "`{slug}` is reserved by the template: it would shadow a module or package the generated project depends on"
                ),
                format!("add a word, e.g. `{slug}-service` or `my-{slug}`"),
            ));
        }
        Ok(())
    }
}

/// The names Windows keeps for devices (`CON`, `NUL`, `COM1`, …), whatever the case.
fn is_windows_device(slug: &str) -> bool {
    let lower = slug.to_ascii_lowercase();
    matches!(lower.as_str(), "con" | "prn" | "aux" | "nul")
        || ["com", "lpt"].iter().any(|p| {
            lower
                .strip_prefix(p)
                .is_some_and(|n| n.len() == 1 && n.as_bytes()[0].is_ascii_digit())
        })
}

fn sanitize(name: &str) -> String {
    let kept: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { ' ' })
        .collect();
    kept.trim_start_matches(|c: char| !c.is_ascii_alphabetic())
        .to_kebab_case()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Windows device names cannot be a directory there; any case, digits 0-9 for COM/LPT.
    #[test]
    fn windows_device_names_are_reserved() {
        for name in ["con", "NUL", "Aux", "prn", "com1", "LPT9", "com0"] {
            let n = ProjectName::parse(name).unwrap();
            let e = n.check_reserved(&[]).unwrap_err().to_string();
            assert!(e.contains("device name on Windows"), "{name}: {e}");
        }
        for name in ["console", "com10", "null", "auxiliary", "lpt"] {
            ProjectName::parse(name).unwrap().check_reserved(&[]).unwrap();
        }
    }

    #[test]
    fn variants_are_derived_from_any_spelling() {
        for raw in ["My App", "my-app", "my_app", "MyApp"] {
            let n = ProjectName::parse(raw).unwrap();
            assert_eq!(n.slug, "my-app", "{raw}");
            assert_eq!(n.package, "my_app", "{raw}");
            assert_eq!(n.pascal, "MyApp", "{raw}");
        }
    }

    #[test]
    fn rejects_bad_names_with_a_reason() {
        for (raw, needle) in [
            ("", "empty"),
            ("1app", "digit"),
            ("class", "keyword"),
            ("a/b", "separator"),
            ("..", "separator"),
            ("node_modules", "reserved"),
            ("caf\u{e9}", "character"),
        ] {
            let err = ProjectName::parse(raw).unwrap_err().to_string();
            assert!(err.contains(needle), "{raw}: {err}");
        }
        let redis = ProjectName::parse("redis").unwrap();
        assert!(
            redis
                .check_reserved(&["redis".into()])
                .unwrap_err()
                .to_string()
                .contains("reserved")
        );
        assert!(redis.check_reserved(&[]).is_ok());
        for raw in ["platform", "Calendar", "QUEUE", "zoneinfo"] {
            let name = ProjectName::parse(raw).expect("parses: an existing project keeps updating");
            let err = name.check_reserved(&[]).unwrap_err().to_string();
            assert!(err.contains("standard library"), "{raw}: {err}");
        }
        assert!(ProjectName::parse("platform-api").unwrap().check_reserved(&[]).is_ok());
        let longest = ProjectName::parse(&format!("{}-b", "a".repeat(MAX_NAME_LEN - 2))).unwrap();
        assert_eq!(longest.slug.len(), MAX_NAME_LEN);
        assert_eq!(longest.dns_label(), "a".repeat(DNS_LABEL_LEN));
        let cut_at_dash = ProjectName::parse(&format!("{}-bcd", "a".repeat(DNS_LABEL_LEN - 1))).unwrap();
        assert_eq!(
            cut_at_dash.dns_label(),
            "a".repeat(DNS_LABEL_LEN - 1),
            "no trailing dash"
        );
        assert_eq!(ProjectName::parse("Shop AI").unwrap().dns_label(), "shop-ai");
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert!(ProjectName::parse(&long).unwrap_err().to_string().contains("limit"));
    }

    #[test]
    fn the_limit_holds_for_every_derived_name() {
        for raw in [
            "CustomerLifetimeValuePredictionAndChurnRiskScoringService".to_string(),
            "aB".repeat(32),
        ] {
            assert!(raw.len() <= MAX_NAME_LEN, "{raw}");
            let err = ProjectName::parse(&raw).unwrap_err().to_string();
            assert!(
                err.contains("kebab-case name `") && err.contains("the limit is 64"),
                "{raw}: {err}"
            );
        }
        let longest = ProjectName::parse(&format!("{}B", "a".repeat(MAX_NAME_LEN - 2))).unwrap();
        assert_eq!(
            (longest.slug.len(), longest.package.len()),
            (MAX_NAME_LEN, MAX_NAME_LEN)
        );
    }
}
