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

// -- Names a project may not take -----------------------------------------------------------------
// A project is an npm package and a Python distribution and import package of its own name: named
// after one of its dependencies it depends on itself (uv refuses to resolve that) or shadows what
// its code imports.

fn kebab(name: &str) -> String {
    name.to_ascii_lowercase().replace(['_', '.'], "-")
}

fn reserved_names() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("templates/stackwise.toml")).unwrap();
    let manifest: toml::Table = text.parse().unwrap();
    manifest["template"]["reserved_names"]
        .as_array()
        .expect("[template] reserved_names")
        .iter()
        .map(|v| kebab(v.as_str().unwrap()))
        .collect()
}

fn template_files(suffixes: &[&str]) -> Vec<PathBuf> {
    walkdir::WalkDir::new(repo().join("templates"))
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(walkdir::DirEntry::into_path)
        .filter(|p| suffixes.iter().any(|s| p.to_string_lossy().ends_with(s)))
        .collect()
}

/// The dependencies a template file declares: npm's `dependencies`/`devDependencies` keys, the
/// quoted requirements of a pyproject (name before any extra or version).
fn declared_dependencies(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut names = Vec::new();
    if path.to_string_lossy().contains("package.json") {
        let key = Regex::new(r#"^\s*"(@?[^"]+)":\s*""#).unwrap();
        let mut inside = false;
        for line in text.lines() {
            if line.contains(r#""dependencies": {"#) || line.contains(r#""devDependencies": {"#) {
                inside = true;
            } else if line.trim_start().starts_with('}') {
                inside = false;
            } else if let Some(c) = key.captures(line).filter(|_| inside) {
                names.push(c[1].to_string());
            }
        }
    } else {
        let requirement = Regex::new(r#"^\s*"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*(>=|==|~=|<|>|!=)"#).unwrap();
        names.extend(
            text.lines()
                .filter_map(|l| requirement.captures(l))
                .map(|c| c[1].to_string()),
        );
    }
    names
}

#[test]
fn every_dependency_of_the_template_is_a_reserved_name() {
    let reserved = reserved_names();
    let mut missing = Vec::new();
    let mut seen = 0;
    for path in template_files(&["package.json.tera", "pyproject.toml.tera"]) {
        for name in declared_dependencies(&path) {
            seen += 1;
            // A scoped npm name (`@fastify/cors`) cannot be a project name: `@` and `/` are refused.
            if !name.starts_with('@') && !reserved.contains(&kebab(&name)) {
                missing.push(format!("{name} ({})", path.strip_prefix(repo()).unwrap().display()));
            }
        }
    }
    assert!(seen >= 40, "read only {seen} dependencies");
    assert!(
        missing.is_empty(),
        "add these to [template] reserved_names in templates/stackwise.toml:\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_module_the_generated_python_imports_is_reserved_or_standard() {
    use stackwise::template::python_stdlib::PYTHON_STDLIB;
    let reserved = reserved_names();
    let files = template_files(&[".py", ".py.tera"]);
    // The template's own modules and packages (scripts, test helpers, the project's package).
    let local: Vec<String> = walkdir::WalkDir::new(repo().join("templates"))
        .into_iter()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .split('.')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    let import = Regex::new(r"(?m)^\s*(?:from\s+([A-Za-z_]\w*)(?:\.\w+)*\s+import\s|import\s+([A-Za-z_]\w*))").unwrap();
    let mut missing = std::collections::BTreeSet::new();
    let mut seen = 0;
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        for c in import.captures_iter(&text) {
            let module = c.get(1).or(c.get(2)).unwrap().as_str();
            seen += 1;
            let known = module == "__future__" || PYTHON_STDLIB.contains(&module) || local.iter().any(|l| l == module);
            if !known && !reserved.contains(&kebab(module)) {
                missing.insert(module.to_string());
            }
        }
    }
    assert!(
        files.len() >= 40 && seen >= 300,
        "read {} files, {seen} imports",
        files.len()
    );
    assert!(
        missing.is_empty(),
        "add these to [template] reserved_names in templates/stackwise.toml: {missing:?}"
    );
}

#[test]
fn the_standard_library_list_holds_every_module_of_the_local_python() {
    use stackwise::template::python_stdlib::PYTHON_STDLIB;
    let script = "import sys; print('\\n'.join(sorted(sys.stdlib_module_names)))";
    let Ok(out) = std::process::Command::new("python3").args(["-c", script]).output() else {
        eprintln!("skipped: no python3 on the PATH");
        return;
    };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let names = String::from_utf8(out.stdout).unwrap();
    let missing: Vec<&str> = names
        .lines()
        .filter(|m| !m.starts_with('_') && *m == m.to_ascii_lowercase() && !PYTHON_STDLIB.contains(m))
        .collect();
    assert!(
        names.lines().count() > 100,
        "read only {} modules",
        names.lines().count()
    );
    assert!(missing.is_empty(), "add to src/template/python_stdlib.rs: {missing:?}");
}
