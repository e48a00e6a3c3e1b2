//! The template manifest (`stackwise.toml`) and component manifests (`component.toml`).
//! Format reference: docs/TEMPLATES.md.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::inline::BUILTIN_NAMES;
use super::paths::{check_relative_path, escaped, normalize};
use super::source::TemplateTree;
use super::value::compiled_pattern;
use super::{COMPONENT_MANIFEST, COMPONENTS_DIR, MANIFEST_FILE};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub template: TemplateMeta,
    #[serde(default)]
    pub variables: Vec<Variable>,
    pub layouts: BTreeMap<String, Layout>,
    /// What `stackwise test` runs in each rendered project.
    #[serde(default)]
    pub test: TestTable,
}

/// `[test]`: the commands that prove a rendered project works, per layout. `setup` runs with
/// network after stackwise's own install steps; `steps` run offline where the system allows.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestTable {
    #[serde(default)]
    pub setup: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub steps: BTreeMap<String, Vec<String>>,
    /// Seconds one command may take (default 900).
    pub timeout: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateMeta {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Project names refused because a package of that name would shadow a module the
    /// generated code imports (`redis`, `fastapi`, …).
    #[serde(default)]
    pub reserved_names: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VarType {
    String,
    Integer,
    Bool,
    Choice,
    List,
}

impl VarType {
    pub fn as_str(self) -> &'static str {
        match self {
            VarType::String => "string",
            VarType::Integer => "integer",
            VarType::Bool => "bool",
            VarType::Choice => "choice",
            VarType::List => "list",
        }
    }
}

/// A question the template asks (or a value a preset sets).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: VarType,
    /// The question shown on a terminal.
    #[serde(default)]
    pub prompt: Option<String>,
    /// A longer explanation (shown by `presets show` and in prompts).
    #[serde(default)]
    pub help: Option<String>,
    /// Default value; a string default is a Tera template over earlier answers.
    #[serde(default)]
    pub default: Option<toml::Value>,
    /// Allowed values for `choice` (one) and `list` (any subset).
    #[serde(default)]
    pub choices: Option<Vec<String>>,
    /// A regular expression a string (or each list item) must match.
    #[serde(default)]
    pub pattern: Option<String>,
    /// The message shown when `pattern` does not match.
    #[serde(default)]
    pub pattern_message: Option<String>,
    /// The longest string accepted (in characters).
    #[serde(default)]
    pub max_length: Option<usize>,
    /// Integer bounds.
    #[serde(default)]
    pub min: Option<i64>,
    #[serde(default)]
    pub max: Option<i64>,
    /// A Tera expression over earlier answers: the question is asked only when it is true.
    /// When false the variable still exists and takes its default.
    #[serde(default)]
    pub when: Option<String>,
    /// A secret is never written to `.stackwise.toml`.
    #[serde(default)]
    pub secret: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    #[serde(default)]
    pub description: String,
    pub mounts: Vec<Mount>,
}

/// A component placed at a path of the generated project, with flags for its context.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    pub component: String,
    /// `.` or a relative directory.
    pub at: String,
    /// Overrides of the component's flag defaults. A string containing `{{` is rendered against
    /// the answers, and `"true"`/`"false"`/digits become booleans/integers.
    #[serde(default)]
    pub flags: toml::Table,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentManifest {
    #[serde(default)]
    pub description: String,
    /// Globs (over template paths relative to the component) never copied.
    #[serde(default)]
    pub ignore: Vec<String>,
    /// Globs of `.tera` files copied as they are (suffix kept), for files that must not be rendered.
    #[serde(default)]
    pub verbatim: Vec<String>,
    #[serde(default)]
    pub flags: toml::Table,
    #[serde(default)]
    pub conditional: Vec<Conditional>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conditional {
    /// Tera expression; the paths are written only when it is true.
    pub when: String,
    /// Globs over template paths relative to the component; a directory name covers its contents.
    pub paths: Vec<String>,
}

impl Manifest {
    /// Reads and checks the manifest of a template tree.
    pub fn load(tree: &TemplateTree) -> Result<Self> {
        let bytes = tree.files.get(MANIFEST_FILE).ok_or_else(|| Error::Manifest {
            path: MANIFEST_FILE.into(),
            reason: "missing".into(),
        })?;
        let text = std::str::from_utf8(bytes).map_err(|_| Error::Manifest {
            path: MANIFEST_FILE.into(),
            reason: "not UTF-8 text".into(),
        })?;
        let mut manifest: Manifest = toml::from_str(text).map_err(|e| Error::Manifest {
            path: MANIFEST_FILE.into(),
            reason: e.to_string(),
        })?;
        manifest.check(tree)?;
        // Mount points in one canonical form (`./sub/` → `sub`), so every later check compares
        // like with like.
        for layout in manifest.layouts.values_mut() {
            for m in &mut layout.mounts {
                m.at = normalize(m.at.trim_end_matches('/')).unwrap_or_else(|_| m.at.clone());
            }
        }
        Ok(manifest)
    }

    fn err(reason: String) -> Error {
        Error::Manifest {
            path: MANIFEST_FILE.into(),
            reason,
        }
    }

    fn check(&self, tree: &TemplateTree) -> Result<()> {
        let mut seen = std::collections::BTreeSet::new();
        for v in &self.variables {
            if !is_identifier(&v.name) {
                return Err(Self::err(format!(
                    "variable name `{}` must be a lowercase identifier",
                    v.name
                )));
            }
            if BUILTIN_NAMES.contains(&v.name.as_str()) {
                return Err(Self::err(format!("variable `{}` shadows a built-in variable", v.name)));
            }
            if !seen.insert(v.name.clone()) {
                return Err(Self::err(format!("variable `{}` is declared twice", v.name)));
            }
            match (v.kind, &v.choices) {
                (VarType::Choice | VarType::List, None) => {
                    return Err(Self::err(format!(
                        "variable `{}` of type {} needs `choices`",
                        v.name,
                        v.kind.as_str()
                    )));
                }
                (VarType::Choice | VarType::List, Some(c)) if c.is_empty() => {
                    return Err(Self::err(format!("variable `{}` has an empty `choices` list", v.name)));
                }
                (VarType::String | VarType::Integer | VarType::Bool, Some(_)) => {
                    return Err(Self::err(format!(
                        "variable `{}`: `choices` only goes with type choice or list",
                        v.name
                    )));
                }
                _ => {}
            }
            if let Some(p) = &v.pattern {
                compiled_pattern(p).map_err(|e| Self::err(format!("variable `{}`: invalid pattern: {e}", v.name)))?;
            }
        }
        for (table, per_layout) in [("setup", &self.test.setup), ("steps", &self.test.steps)] {
            for layout in per_layout.keys() {
                if !self.layouts.contains_key(layout) {
                    return Err(Self::err(format!(
                        "[test.{table}] names layout `{layout}`, which the template does not define (it defines: {})",
                        self.layout_names()
                    )));
                }
            }
        }
        if self.layouts.is_empty() {
            return Err(Self::err("declares no layouts".into()));
        }
        for (name, layout) in &self.layouts {
            if layout.mounts.is_empty() {
                return Err(Self::err(format!("layout `{name}` mounts no component")));
            }
            for m in &layout.mounts {
                let at = m.at.trim_end_matches('/');
                check_relative_path(if at.is_empty() { &m.at } else { at }).map_err(|why| {
                    Self::err(format!("layout `{name}` mounts `{}` at `{}`: a mount path must be `.` or a relative directory inside the project ({why})", m.component, escaped(&m.at)))
                })?;
                let prefix = format!("{COMPONENTS_DIR}/{}/", m.component);
                if !tree.files.keys().any(|k| k.starts_with(&prefix)) {
                    return Err(Self::err(format!(
                        "layout `{name}` mounts component `{}`, but {COMPONENTS_DIR}/{}/ does not exist or is empty",
                        m.component, m.component
                    )));
                }
            }
        }
        Ok(())
    }

    pub fn variable(&self, name: &str) -> Option<&Variable> {
        self.variables.iter().find(|v| v.name == name)
    }

    pub fn variable_names(&self) -> String {
        self.variables
            .iter()
            .map(|v| v.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn layout_names(&self) -> String {
        self.layouts.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// Reads `components/<name>/component.toml` (empty manifest when absent).
pub fn load_component(tree: &TemplateTree, name: &str) -> Result<ComponentManifest> {
    let path = format!("{COMPONENTS_DIR}/{name}/{COMPONENT_MANIFEST}");
    match tree.files.get(&path) {
        None => Ok(ComponentManifest::default()),
        Some(bytes) => {
            let text = std::str::from_utf8(bytes).map_err(|_| Error::Manifest {
                path: path.clone(),
                reason: "not UTF-8 text".into(),
            })?;
            toml::from_str(text).map_err(|e| Error::Manifest {
                path,
                reason: e.to_string(),
            })
        }
    }
}

pub(crate) fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}
