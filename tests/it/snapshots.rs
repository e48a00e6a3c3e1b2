//! insta snapshots of what each built-in preset generates: the file list and the key files.
//! Review changes with `cargo insta review`; a diff here is a change to every user's project.

use crate::common::{list_files, stackwise};
use predicates::prelude::PredicateBooleanExt;
use tempfile::TempDir;

const PRESETS: &[(&str, &[&str])] = &[
    ("ml-api", &["pyproject.toml", "Makefile", ".stackwise.toml"]),
    ("data-pipeline", &["pyproject.toml", "compose.yaml"]),
    ("realtime", &["package.json", "Makefile"]),
    ("api-gateway", &["package.json"]),
    (
        "ai-product",
        &[
            "Makefile",
            "compose.yaml",
            ".env.example",
            "ml-service/pyproject.toml",
            "gateway/package.json",
        ],
    ),
    ("ai-realtime", &[]),
];

/// `preset` rendered as "Shop AI" (`shop-ai/` in the returned directory), without git.
fn render_shop_ai(preset: &str) -> TempDir {
    let out = TempDir::new().unwrap();
    stackwise()
        .args(["new", "Shop AI", "--yes", "--no-git", "--preset", preset, "-o"])
        .arg(out.path())
        .assert()
        .success();
    out
}

#[test]
fn every_preset_renders_its_snapshot() {
    for (preset, key_files) in PRESETS {
        let out = render_shop_ai(preset);
        let root = out.path().join("shop-ai");
        let files = list_files(&root);
        insta::assert_snapshot!(format!("{preset}__files"), files.join("\n"));
        for f in *key_files {
            let mut text = std::fs::read_to_string(root.join(f)).unwrap_or_else(|e| panic!("{preset}: {f}: {e}"));
            // The template's digest changes with every template edit: the snapshot keeps its shape.
            if let Some(start) = text.find("revision = \"sha256:") {
                text.replace_range(start + 19..start + 83, "[digest of the template tree]");
            }
            insta::assert_snapshot!(format!("{preset}__{}", f.replace('/', "__")), text);
        }
    }
}

#[test]
fn the_builtin_template_passes_its_own_lint() {
    stackwise()
        .args(["lint", "templates"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .assert()
        .success();
}

#[test]
fn presets_list_and_show() {
    let out = stackwise().arg("presets").assert().success();
    let listing = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    for (id, _) in PRESETS {
        assert!(listing.contains(id), "{listing}");
    }
    assert!(
        listing.lines().next().unwrap().starts_with("ai-product"),
        "default first: {listing}"
    );
    let json = stackwise().args(["presets", "--json"]).assert().success();
    let doc: serde_json::Value = serde_json::from_slice(&json.get_output().stdout).unwrap();
    assert_eq!(doc.as_array().unwrap().len(), PRESETS.len());
    stackwise()
        .args(["presets", "show", "data-pipeline"])
        .assert()
        .success()
        .stdout(
            predicates::str::contains("layout:     python").and(predicates::str::contains("worker           true")),
        );
    stackwise()
        .args(["presets", "show", "nope"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("unknown preset `nope`"));
}

/// A `.gitignore` inside `templates/` would make git ignore template files (such as
/// `.env.example.tera`) in this repository itself; generated `.gitignore` files are written
/// from `.gitignore.tera`.
#[test]
fn no_gitignore_file_inside_templates() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    let found: Vec<_> = walkdir::WalkDir::new(&root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_name() == ".gitignore")
        .map(|e| e.path().display().to_string())
        .collect();
    assert!(found.is_empty(), "rename to .gitignore.tera: {found:?}");
}

/// The longest name accepted (64 characters) on every preset: each Kubernetes namespace, label
/// value and host name in `deploy/k8s` is still a DNS label (63 characters at most, `<name>-dev`
/// included). The rendered text is read; no cluster or kubectl needed.
#[test]
fn the_longest_name_makes_valid_kubernetes_names() {
    let name = format!("{}-x", "a".repeat(stackwise::template::names::MAX_NAME_LEN - 2));
    let label = regex::Regex::new(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$").unwrap();
    let field =
        regex::Regex::new(r"(?m)^\s*(?:namespace|app\.kubernetes\.io/part-of):\s*(\S+)\s*$|(\S+)\.example\.com")
            .unwrap();
    for (preset, _) in PRESETS {
        let out = TempDir::new().unwrap();
        stackwise()
            .args(["new", &name, "--yes", "--no-git", "--preset", preset, "-o"])
            .arg(out.path())
            .assert()
            .success();
        let k8s = out.path().join(&name).join("deploy/k8s");
        let mut checked = 0;
        for file in list_files(&k8s).iter().filter(|f| f.ends_with(".yaml")) {
            let text = std::fs::read_to_string(k8s.join(file)).unwrap();
            for c in field.captures_iter(&text) {
                let value = c.get(1).or(c.get(2)).unwrap().as_str();
                let value = value.rsplit(['[', ' ', '/']).next().unwrap();
                if value.contains("{{") || value == "str" || value == "default" {
                    continue;
                }
                checked += 1;
                assert!(label.is_match(value), "{preset}: {file}: `{value}` is not a DNS label");
            }
        }
        assert!(checked >= 3, "{preset}: only {checked} names checked");
    }
}

/// The line length a Python file of a generated project is held to: `line-length` of the nearest
/// `ruff.toml`, or of `[tool.ruff]` in the nearest `pyproject.toml`, up to the project's root.
fn ruff_line_length(root: &std::path::Path, file: &std::path::Path) -> usize {
    let mut dir = file.parent();
    while let Some(d) = dir.filter(|d| d.starts_with(root)) {
        for (name, table) in [("ruff.toml", None), ("pyproject.toml", Some("tool"))] {
            let Ok(text) = std::fs::read_to_string(d.join(name)) else {
                continue;
            };
            let doc: toml::Table = text.parse().unwrap();
            let ruff = match table {
                Some(t) => doc.get(t).and_then(|t| t.get("ruff")),
                None => Some(&toml::Value::Table(doc.clone())),
            };
            if let Some(n) = ruff
                .and_then(|r| r.get("line-length"))
                .and_then(toml::Value::as_integer)
            {
                return n as usize;
            }
        }
        dir = d.parent();
    }
    88 // ruff's default
}

/// The longest name and description accepted: every line of the generated Python code still fits
/// its linter's line length, so `make lint` passes whatever the user named the project. (The
/// names end up in imports, commands and docstrings; the description is read from the installed
/// distribution's metadata, not written into the code.)
#[test]
fn the_longest_name_and_description_keep_python_within_its_line_length() {
    let name = format!("{}-x", "a".repeat(stackwise::template::names::MAX_NAME_LEN - 2));
    let description = "Predicts churn from usage events ".repeat(7)[..200].trim().to_string();
    for (preset, _) in PRESETS {
        let out = TempDir::new().unwrap();
        stackwise()
            .args(["new", &name, "--yes", "--no-git", "--preset", preset, "-o"])
            .arg(out.path())
            .args(["--set", &format!("description={description}")])
            .assert()
            .success();
        let root = out.path().join(&name);
        let mut long = Vec::new();
        let mut files = 0;
        for file in list_files(&root).iter().filter(|f| f.ends_with(".py")) {
            files += 1;
            let path = root.join(file);
            let limit = ruff_line_length(&root, &path);
            for (n, line) in std::fs::read_to_string(&path).unwrap().lines().enumerate() {
                // ruff does not count a trailing pragma (`# noqa: …`).
                let code = line.split("  # noqa").next().unwrap();
                if code.chars().count() > limit {
                    long.push(format!("{file}:{}: {} > {limit}", n + 1, code.chars().count()));
                }
            }
        }
        assert!(
            long.is_empty(),
            "{preset}: lines past the line length:\n{}",
            long.join("\n")
        );
        if !["realtime", "api-gateway"].contains(preset) {
            assert!(files >= 10, "{preset}: only {files} Python files");
        }
    }
}

/// The directories `.github/dependabot.yml` names for an ecosystem (`directory:` or
/// `directories: [...]` under its `- package-ecosystem:` entry).
fn dependabot_directories(text: &str, ecosystem: &str) -> Vec<String> {
    let mut dirs = Vec::new();
    for entry in text.split("- package-ecosystem:").skip(1) {
        let mut lines = entry.lines();
        if lines.next().map(str::trim) != Some(ecosystem) {
            continue;
        }
        for line in lines.map(str::trim) {
            if let Some(one) = line.strip_prefix("directory:") {
                dirs.push(one.trim().to_string());
            } else if let Some(list) = line.strip_prefix("directories:") {
                let list = list.trim().trim_start_matches('[').trim_end_matches(']');
                dirs.extend(list.split(',').map(|d| d.trim().to_string()));
            }
        }
    }
    dirs
}

/// Every image a generated project pulls from a registry (a Dockerfile's `FROM`, an `image:` of
/// compose or of a Kubernetes manifest) is in a directory Dependabot updates for that ecosystem:
/// an image pinned once and never bumped is a vulnerability waiting.
#[test]
fn dependabot_updates_every_image_the_project_pulls() {
    let image = regex::Regex::new(r"(?m)^\s*(?:-\s*)?image:\s*(\S+)|^FROM\s+(?:--\S+\s+)*(\S+)").unwrap();
    for (preset, _) in PRESETS {
        let out = render_shop_ai(preset);
        let root = out.path().join("shop-ai");
        let dependabot = std::fs::read_to_string(root.join(".github/dependabot.yml")).unwrap();
        let mut checked = 0;
        for file in list_files(&root) {
            let name = file.rsplit('/').next().unwrap();
            let ecosystem =
                if name.starts_with("Dockerfile") || file.starts_with("deploy/k8s/") && name.ends_with(".yaml") {
                    "docker"
                } else if name == "compose.yaml" {
                    "docker-compose"
                } else {
                    continue;
                };
            let text = std::fs::read_to_string(root.join(&file)).unwrap();
            // The project's own images (`shop-ai/...:local`, build stages, kustomize names).
            let pulled: Vec<&str> = image
                .captures_iter(&text)
                .map(|c| c.get(1).or(c.get(2)).unwrap().as_str())
                .filter(|i| i.contains(':') && !i.starts_with("shop-ai") && !i.contains("{{"))
                .collect();
            if pulled.is_empty() {
                continue;
            }
            let dir = match file.rfind('/') {
                Some(i) => format!("/{}", &file[..i]),
                None => "/".to_string(),
            };
            let dirs = dependabot_directories(&dependabot, ecosystem);
            assert!(
                dirs.contains(&dir),
                "{preset}: {file} pulls {pulled:?}, but Dependabot's {ecosystem} entry covers only {dirs:?}"
            );
            checked += pulled.len();
        }
        assert!(checked >= 1, "{preset}: no image found to check");
    }
}
