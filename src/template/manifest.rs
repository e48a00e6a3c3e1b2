//! The template manifest (`stackwise.toml`) and component manifests (`component.toml`).
//! Format reference: docs/TEMPLATES.md.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::inline::BUILTIN_NAMES;
use super::paths::check_relative_path;
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
    /// Declarative changes of recorded answers, applied by `stackwise update` (see [`Migration`]).
    #[serde(default)]
    pub migrations: Vec<Migration>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateMeta {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The template's version (`1.4.0`), recorded in generated projects; orders `[[migrations]]`.
    #[serde(default)]
    pub version: Option<String>,
}

/// One declarative change of the answers a project recorded, for projects made with a template
/// version older than `version`. Exactly one of `rename`, `drop` and `set`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Migration {
    /// The template version this migration applies from.
    pub version: String,
    /// A variable was renamed: its recorded answer moves to the new name.
    #[serde(default)]
    pub rename: Option<RenameVariable>,
    /// A variable was removed: its recorded answer is dropped.
    #[serde(default)]
    pub drop: Option<String>,
    /// A recorded answer takes a new value.
    #[serde(default)]
    pub set: Option<SetVariable>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameVariable {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetVariable {
    pub name: String,
    pub value: toml::Value,
}

/// How `stackwise update` treats a path of a component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpdatePolicy {
    /// Written by `stackwise new` only; `stackwise update` never writes it again.
    Once,
}

/// `[[files]]` of a component manifest: a policy for some of its paths.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePolicy {
    /// Globs over template paths relative to the component; a directory name covers its contents.
    pub paths: Vec<String>,
    pub update: UpdatePolicy,
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
    /// Update policies of some paths (`update = "once"`).
    #[serde(default)]
    pub files: Vec<FilePolicy>,
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
        let manifest: Manifest = toml::from_str(text).map_err(|e| Error::Manifest {
            path: MANIFEST_FILE.into(),
            reason: e.to_string(),
        })?;
        manifest.check(tree)?;
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
        if self.layouts.is_empty() {
            return Err(Self::err("declares no layouts".into()));
        }
        for (name, layout) in &self.layouts {
            if layout.mounts.is_empty() {
                return Err(Self::err(format!("layout `{name}` mounts no component")));
            }
            for m in &layout.mounts {
                check_relative_path(&m.at).map_err(|_| {
                    Self::err(format!("layout `{name}` mounts `{}` at `{}`: a mount path must be `.` or a relative directory inside the project", m.component, m.at))
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
        self.check_migrations()
    }

    /// The template version and its `[[migrations]]`: each well formed, no newer than the
    /// template, naming variables that exist (the new name of a rename, the variable of a set)
    /// or no longer exist (the old name of a rename, a drop).
    fn check_migrations(&self) -> Result<()> {
        if let Some(v) = &self.template.version
            && !is_version(v)
        {
            return Err(Self::err(format!(
                "[template] version {v:?} is not a version such as 1.4.0"
            )));
        }
        if self.migrations.is_empty() {
            return Ok(());
        }
        let Some(current) = &self.template.version else {
            return Err(Self::err(
                "[[migrations]] need a [template] version (the version of this template, e.g. version = \"2.0.0\")"
                    .into(),
            ));
        };
        for (i, m) in self.migrations.iter().enumerate() {
            let at = format!("migration {} (version {:?})", i + 1, m.version);
            if !is_version(&m.version) {
                return Err(Self::err(format!("{at}: `version` must be a version such as 1.4.0")));
            }
            if compare_versions(&m.version, current) == std::cmp::Ordering::Greater {
                return Err(Self::err(format!("{at} is newer than the template itself ({current})")));
            }
            let gone = |name: &str, what: &str| -> Result<()> {
                if self.variable(name).is_some() {
                    return Err(Self::err(format!(
                        "{at}: {what} `{name}`, but `{name}` is still a variable of the template"
                    )));
                }
                Ok(())
            };
            let known = |name: &str, what: &str| -> Result<&Variable> {
                self.variable(name).ok_or_else(|| {
                    Self::err(format!(
                        "{at}: {what} `{name}`, which is not a variable of the template (variables: {})",
                        self.variable_names()
                    ))
                })
            };
            match (&m.rename, &m.drop, &m.set) {
                (Some(r), None, None) => {
                    gone(&r.from, "renames")?;
                    known(&r.to, "renames to")?;
                }
                (None, Some(d), None) => gone(d, "drops")?,
                (None, None, Some(s)) => {
                    let var = known(&s.name, "sets")?;
                    super::value::coerce(var, &super::value::toml_to_json(&s.value))
                        .map_err(|e| Self::err(format!("{at}: the value for `{}` is invalid: {e}", s.name)))?;
                }
                _ => {
                    return Err(Self::err(format!(
                        "{at} must have exactly one of `rename`, `drop` and `set`"
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

/// A version: dot-separated numbers, optionally followed by `-pre-release` and `+build`.
pub fn is_version(v: &str) -> bool {
    let core = v.split(['-', '+']).next().unwrap_or("");
    !core.is_empty()
        && core
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Orders two versions: numbers first (`1.10` > `1.9`, `1.0` == `1.0.0`), then a pre-release
/// before its release (`2.0.0-rc.1` < `2.0.0`). Build metadata (`+...`) is ignored.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    fn split(v: &str) -> (Vec<u64>, Option<&str>) {
        let v = v.split('+').next().unwrap_or("");
        let (core, pre) = match v.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (v, None),
        };
        (core.split('.').map(|p| p.parse().unwrap_or(0)).collect(), pre)
    }
    let ((mut ca, pa), (mut cb, pb)) = (split(a), split(b));
    let len = ca.len().max(cb.len());
    ca.resize(len, 0);
    cb.resize(len, 0);
    ca.cmp(&cb).then_with(|| match (pa, pb) {
        (None, None) => std::cmp::Ordering::Equal,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (Some(_), None) => std::cmp::Ordering::Less,
        (Some(x), Some(y)) => x.cmp(y),
    })
}

pub(crate) fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}
