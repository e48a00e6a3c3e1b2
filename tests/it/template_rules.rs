//! House rules of the built-in template that no render can check: a component file (or a partial
//! it includes) tests facts (its flags, `mount_path`, the `stack` an includer passes), never the
//! layout, a role or a preset name. A layout or preset is a
//! choice made once, in `templates/stackwise.toml` (the mounts' flags) and `presets/`; a component
//! that asks for it by name breaks the moment a layout is added, renamed or mounts it elsewhere.

use std::path::{Path, PathBuf};

use regex::Regex;

/// Names a component may not test: the layout, a mount's role, the preset.
const REFUSED: &[&str] = &["layout", "role", "preset"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn preset_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo().join("presets"))
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            (p.extension()? == "toml").then(|| p.file_stem()?.to_str().map(str::to_string))?
        })
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no presets found");
    names
}

/// The expressions a file evaluates: every `{% … %}` tag, and every `{{ … }}` that tests
/// something (an inline `if`, a comparison). A plain `{{ layout }}` prints a value; it tests nothing.
fn expressions(text: &str) -> Vec<(usize, String)> {
    let tag = Regex::new(r"(?s)\{%-?(.*?)-?%\}|\{\{-?(.*?)-?\}\}").unwrap();
    let raw = Regex::new(r"(?s)\{%-?\s*raw\s*-?%\}.*?\{%-?\s*endraw\s*-?%\}").unwrap();
    // Blank raw blocks (GitHub Actions `${{ … }}`) but keep their newlines, so lines stay true.
    let text = raw.replace_all(text, |c: &regex::Captures| c[0].replace(|ch| ch != '\n', " "));
    tag.captures_iter(&text)
        .filter_map(|c| {
            let line = text[..c.get(0).unwrap().start()].matches('\n').count() + 1;
            match (c.get(1), c.get(2)) {
                (Some(block), _) => Some((line, block.as_str().to_string())),
                (None, Some(print)) => {
                    let e = print.as_str();
                    let tests = e.contains("==") || e.contains("!=") || Regex::new(r"\bif\b").unwrap().is_match(e);
                    tests.then(|| (line, e.to_string()))
                }
                _ => None,
            }
        })
        .collect()
}

/// What is wrong with one expression: a refused name used as a variable or attribute, or a
/// preset's name as a string literal.
fn offences(expr: &str, presets: &[String]) -> Vec<String> {
    let string = Regex::new(r#""[^"]*"|'[^']*'|`[^`]*`"#).unwrap();
    let mut found = Vec::new();
    for lit in string.find_iter(expr) {
        let value = &lit.as_str()[1..lit.as_str().len() - 1];
        if presets.iter().any(|p| p == value) {
            found.push(format!("preset name {value:?}"));
        }
    }
    let code = string.replace_all(expr, "\"\"");
    let ident = Regex::new(r"[A-Za-z_][A-Za-z0-9_]*").unwrap();
    for id in ident.find_iter(&code) {
        if REFUSED.contains(&id.as_str()) {
            found.push(format!("`{}`", id.as_str()));
        }
    }
    found
}

/// Every offence in one component file: `.tera` files by their tags, `component.toml` by its
/// `when` conditions.
fn file_offences(path: &Path, presets: &[String]) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new(); // binary
    };
    let exprs: Vec<(usize, String)> = if path.file_name().is_some_and(|n| n == "component.toml") {
        let doc: toml::Table = toml::from_str(&text).unwrap();
        doc.get("conditional")
            .and_then(|c| c.as_array())
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("when")?.as_str().map(|w| (0, w.to_string())))
            .collect()
    } else if path.extension().is_some_and(|e| e == "tera") {
        expressions(&text)
    } else {
        Vec::new()
    };
    exprs
        .iter()
        .flat_map(|(line, e)| {
            offences(e, presets).into_iter().map(move |o| {
                format!(
                    "{}:{line}: tests {o} in `{}`",
                    path.strip_prefix(repo()).unwrap_or(path).display(),
                    e.trim()
                )
            })
        })
        .collect()
}

#[test]
fn components_test_flags_never_layout_role_or_preset_names() {
    let presets = preset_names();
    let mut problems = Vec::new();
    // The components, and the partials they include (an include tests on the includer's behalf).
    for (dir, at_least) in [("templates/components", 100), ("templates/partials", 20)] {
        let root = repo().join(dir);
        let mut files = 0;
        for entry in walkdir::WalkDir::new(&root) {
            let entry = entry.unwrap();
            if entry.file_type().is_file() {
                files += 1;
                problems.extend(file_offences(entry.path(), &presets));
            }
        }
        assert!(files >= at_least, "walked only {files} files under {}", root.display());
    }
    assert!(
        problems.is_empty(),
        "component files must test flags or mount_path (set by the mounts in templates/stackwise.toml), never these:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_rule_catches_every_disguise() {
    let presets = preset_names();
    let bad = [
        r#"{% if layout == "hybrid" %}x{% endif %}"#,
        r#"{%- if flags.role != "standalone" -%}"#,
        r#"{%- elif preset == 'x' %}"#,
        r#"{{ "a" if layout == "python" else "b" }}"#,
        r#"{% set hybrid = layout=="hybrid" %}"#,
        r#"{% if flags.worker and "ai-product" in flags.tags %}"#,
        "{%\n  if flags.worker\n  and flags.role == \"ml\"\n%}",
    ];
    for text in bad {
        let hits: Vec<String> = expressions(text)
            .iter()
            .flat_map(|(_, e)| offences(e, &presets))
            .collect();
        assert!(!hits.is_empty(), "not caught: {text}");
    }
    let good = [
        r#"{% if flags.worker and mount_path == "." %}x{% endif %}"#,
        "{{ layout }} backend", // printed, not tested
        r#"{% if flags.layout_hint %}{% endif %}"#,
        r#"{% raw %}${{ matrix.layout == 'x' }}{% endraw %}"#,
        r#"{{ "the layout" if flags.contracts else "" }}"#,
    ];
    for text in good {
        let hits: Vec<String> = expressions(text)
            .iter()
            .flat_map(|(_, e)| offences(e, &presets))
            .collect();
        assert!(hits.is_empty(), "wrongly refused {text}: {hits:?}");
    }
}

#[test]
fn component_toml_when_conditions_are_checked() {
    let dir = tempfile::TempDir::new().unwrap();
    let p = dir.path().join("component.toml");
    std::fs::write(&p, "[[conditional]]\nwhen = 'layout == \"hybrid\"'\npaths = [\"x\"]\n").unwrap();
    let problems = file_offences(&p, &preset_names());
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("`layout`"), "{problems:?}");
}
