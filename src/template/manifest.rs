//! The template manifest (`stackwise.toml`) and component manifests (`component.toml`).
//! Format reference: docs/TEMPLATES.md.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::files::{COMPONENT_MANIFEST, COMPONENTS_DIR, MANIFEST_FILE};
use super::inline::{self, BUILTIN_NAMES};
use super::paths::{check_relative_path, escaped, normalize};
use super::source::TemplateTree;
use super::span::{self, Document, Step, toml_path};
use super::value::{coerce, compiled_pattern, toml_to_json};
pub use super::variable::{VarType, Variable};
use crate::error::{Error, Problem, Result};

pub use super::component::{ComponentManifest, Conditional, FilePolicy, UpdatePolicy, load_component};
use super::component::{check_condition_names, component_names, document, read_component};

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
    /// The manifest as written, to point at a value that fails only when a project renders.
    #[serde(skip)]
    text: String,
    /// Declarative changes of recorded answers, applied by `stackwise update` (see [`Migration`]).
    #[serde(default)]
    pub migrations: Vec<Migration>,
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
    /// What `update` tells the user when a project grows into this layout and the component
    /// moves here (e.g. that its routes are now internal, behind a gateway).
    #[serde(default)]
    pub moved: Option<String>,
}

impl Manifest {
    /// Reads and checks the manifest of a template tree and every `component.toml` in it.
    pub fn load(tree: &TemplateTree) -> Result<Self> {
        let mut problems = Vec::new();
        match Self::read(tree, &mut problems) {
            Some(manifest) if problems.is_empty() => Ok(manifest),
            _ => Err(Error::InvalidTemplate(problems)),
        }
    }

    /// Reads and checks the manifest and every `component.toml`, adding each problem to
    /// `problems` (the manifest's first, each file's in the order of its lines). The manifest is
    /// returned whenever it could be read, so the presets can be checked against it too.
    pub(crate) fn read(tree: &TemplateTree, problems: &mut Vec<Problem>) -> Option<Self> {
        let mut components = BTreeMap::new();
        let mut component_problems = BTreeMap::new();
        for name in component_names(tree) {
            let mut found = Vec::new();
            if let Some(c) = read_component(tree, &name, &mut found) {
                components.insert(name.clone(), c);
            }
            component_problems.insert(name, found);
        }
        let manifest = Self::read_own(tree, &components, problems);
        for (name, mut found) in component_problems {
            // A conditional's `when` reads the variables, which only the manifest knows.
            if let (Some(m), Some(c)) = (&manifest, components.get(&name)) {
                let variables: Vec<&str> = m.variables.iter().map(|v| v.name.as_str()).collect();
                check_condition_names(tree, &name, c, &variables, &mut found);
                span::sort(&mut found);
            }
            problems.extend(found);
        }
        manifest
    }

    fn read_own(
        tree: &TemplateTree,
        components: &BTreeMap<String, ComponentManifest>,
        problems: &mut Vec<Problem>,
    ) -> Option<Self> {
        if !tree.files.contains_key(MANIFEST_FILE) {
            problems.push(Problem::file(MANIFEST_FILE, "the template has no manifest"));
            return None;
        }
        let doc = document(tree, MANIFEST_FILE, problems)?;
        let mut manifest: Manifest = match doc.deserialize() {
            Ok(m) => m,
            Err(first) => {
                // Serde stops at the first mismatch: each part alone finds the others.
                let mut found = vec![first];
                doc.check_part::<TemplateMeta>(toml_path!["template"], &mut found);
                for i in 0..doc.array_len(toml_path!["variables"]) {
                    doc.check_part::<Variable>(toml_path!["variables", i], &mut found);
                }
                for name in doc.keys(toml_path!["layouts"]) {
                    doc.check_part::<Layout>(toml_path!["layouts", &name], &mut found);
                }
                doc.check_part::<TestTable>(toml_path!["test"], &mut found);
                for i in 0..doc.array_len(toml_path!["migrations"]) {
                    doc.check_part::<Migration>(toml_path!["migrations", i], &mut found);
                }
                span::sort(&mut found);
                problems.extend(found);
                return None;
            }
        };
        let mut found = Vec::new();
        manifest.check(&doc, tree, components, &mut found);
        span::sort(&mut found);
        problems.extend(found);
        manifest.finish(doc.text);
        Some(manifest)
    }

    /// Reads the manifest of a tree whose checks have passed already (the embedded template:
    /// `the_builtin_template_passes_every_check`): parsed without the place of every key and
    /// value, no check run, no `component.toml` read (the plan reads those it mounts). Should it
    /// fail all the same, the checked read reports where.
    pub(crate) fn read_checked(tree: &TemplateTree) -> Result<Self> {
        let text = tree.files.get(MANIFEST_FILE).and_then(|b| std::str::from_utf8(b).ok());
        match text.map(toml::from_str::<Manifest>) {
            Some(Ok(mut manifest)) => {
                manifest.finish(text.unwrap_or_default());
                Ok(manifest)
            }
            _ => Self::load(tree),
        }
    }

    /// Keeps the text (to point into it later) and puts the mount points in one canonical form
    /// (`./sub/` → `sub`), so every later check compares like with like.
    fn finish(&mut self, text: &str) {
        self.text = text.to_string();
        for layout in self.layouts.values_mut() {
            for m in &mut layout.mounts {
                m.at = normalize(m.at.trim_end_matches('/')).unwrap_or_else(|_| m.at.clone());
            }
        }
    }

    fn check(
        &self,
        doc: &Document,
        tree: &TemplateTree,
        components: &BTreeMap<String, ComponentManifest>,
        out: &mut Vec<Problem>,
    ) {
        let mut seen = BTreeSet::new();
        for (i, v) in self.variables.iter().enumerate() {
            if is_identifier(&v.name) && !BUILTIN_NAMES.contains(&v.name.as_str()) && !seen.insert(v.name.as_str()) {
                let message = format!("variable `{}` is declared twice", v.name);
                out.push(doc.at_value(toml_path!["variables", i, "name"], message));
            }
            check_variable(doc, i, v, out);
            if let Some(when) = &v.when {
                let mut names = inline::base_names();
                names.extend(self.variables[..i].iter().map(|v| v.name.as_str()));
                let known = inline::Known {
                    names,
                    flags: None,
                    what: "a built-in or a variable declared before this one",
                    later: self.variables[i..].iter().map(|v| v.name.as_str()).collect(),
                };
                for e in inline::check_names(when, &known) {
                    let message = format!("variable `{}`: `when`: {}", v.name, e.message);
                    out.push(doc.at_inside(toml_path!["variables", i, "when"], e.at, message));
                }
            }
        }
        for (table, per_layout) in [("setup", &self.test.setup), ("steps", &self.test.steps)] {
            for layout in per_layout.keys().filter(|l| !self.layouts.contains_key(*l)) {
                out.push(doc.at_key(
                    toml_path!["test", table, layout],
                    format!(
                        "[test.{table}] names layout `{layout}`, which the template does not define (it defines: {})",
                        self.layout_names()
                    ),
                ));
            }
        }
        if self.layouts.is_empty() {
            out.push(doc.at_key(toml_path!["layouts"], "declares no layouts"));
        }
        for (name, layout) in &self.layouts {
            if layout.mounts.is_empty() {
                let message = format!("layout `{name}` mounts no component");
                out.push(doc.at_value(toml_path!["layouts", name, "mounts"], message));
            }
            for (j, m) in layout.mounts.iter().enumerate() {
                check_mount(doc, tree, components, name, j, m, out);
            }
        }
        self.check_migrations(doc, out);
    }

    /// The template version and its `[[migrations]]`: each well formed, no newer than the
    /// template, naming variables that exist (the new name of a rename, the variable of a set)
    /// or no longer exist (the old name of a rename, a drop).
    fn check_migrations(&self, doc: &Document, out: &mut Vec<Problem>) {
        if let Some(Err(why)) = self.template.version.as_deref().map(parse_version) {
            out.push(doc.at_value(toml_path!["template", "version"], format!("[template] version {why}")));
        }
        if self.migrations.is_empty() {
            return;
        }
        let Some(current) = &self.template.version else {
            out.push(doc.at_key(
                toml_path!["migrations"],
                "[[migrations]] need a [template] version (the version of this template, e.g. version = \"2.0.0\")",
            ));
            return;
        };
        for (i, m) in self.migrations.iter().enumerate() {
            let at = |key: &[&str], message: String| {
                let mut path = vec![Step::Key("migrations"), Step::Index(i)];
                path.extend(key.iter().map(|k| Step::Key(k)));
                doc.at_value(
                    &path,
                    format!("migration {} (version {:?}): {message}", i + 1, m.version),
                )
            };
            match (parse_version(&m.version), parse_version(current)) {
                (Err(why), _) => out.push(at(&["version"], format!("`version` {why}"))),
                (Ok(version), Ok(template)) if version.cmp_precedence(&template).is_gt() => {
                    out.push(at(&["version"], format!("newer than the template itself ({current})")));
                }
                _ => {}
            }
            let still =
                |name: &str, what: &str| format!("{what} `{name}`, but `{name}` is still a variable of the template");
            let unknown = |name: &str, what: &str| {
                format!(
                    "{what} `{name}`, which is not a variable of the template (variables: {})",
                    self.variable_names()
                )
            };
            match (&m.rename, &m.drop, &m.set) {
                (Some(r), None, None) => {
                    if self.variable(&r.from).is_some() {
                        out.push(at(&["rename", "from"], still(&r.from, "renames")));
                    }
                    if self.variable(&r.to).is_none() {
                        out.push(at(&["rename", "to"], unknown(&r.to, "renames to")));
                    }
                }
                (None, Some(d), None) if self.variable(d).is_some() => out.push(at(&["drop"], still(d, "drops"))),
                (None, Some(_), None) => {}
                (None, None, Some(set)) => match self.variable(&set.name) {
                    None => out.push(at(&["set", "name"], unknown(&set.name, "sets"))),
                    Some(var) => {
                        if let Err(e) = coerce(var, &toml_to_json(&set.value)) {
                            out.push(at(
                                &["set", "value"],
                                format!("the value for `{}` is invalid: {e}", set.name),
                            ));
                        }
                    }
                },
                _ => out.push(at(&[], "must have exactly one of `rename`, `drop` and `set`".into())),
            }
        }
    }

    pub(crate) fn error_at(&self, path: &[Step], at: usize, message: impl Into<String>) -> Error {
        span::error_at(MANIFEST_FILE, &self.text, path, at, message)
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

/// The checks of one variable that need no other (a name declared twice is the manifest's).
fn check_variable(doc: &Document, i: usize, v: &Variable, out: &mut Vec<Problem>) {
    let at = |key: &str, message: String| doc.at_value(toml_path!["variables", i, key], message);
    let name = &v.name;
    if !is_identifier(name) {
        out.push(at(
            "name",
            format!("variable name `{name}` must be a lowercase identifier"),
        ));
    } else if BUILTIN_NAMES.contains(&name.as_str()) {
        out.push(at("name", format!("variable `{name}` shadows a built-in variable")));
    }
    match (v.kind, &v.choices) {
        (VarType::Choice | VarType::List, None) => out.push(at(
            "type",
            format!("variable `{name}` of type {} needs `choices`", v.kind.as_str()),
        )),
        (VarType::Choice | VarType::List, Some(c)) if c.is_empty() => {
            out.push(at("choices", format!("variable `{name}` has an empty `choices` list")));
        }
        (VarType::String | VarType::Integer | VarType::Bool, Some(_)) => out.push(at(
            "choices",
            format!("variable `{name}`: `choices` only goes with type choice or list"),
        )),
        _ => {}
    }
    let pattern = v.pattern.as_deref().map(compiled_pattern);
    if let Some(Err(e)) = &pattern {
        out.push(at(
            "pattern",
            format!("variable `{name}`: invalid pattern: {}", regex_reason(e)),
        ));
    }
    if let (Some(min), Some(max)) = (v.min, v.max)
        && min > max
    {
        out.push(at(
            "min",
            format!("variable `{name}`: `min` {min} is greater than `max` {max}"),
        ));
    }
    // A default that is a template renders over earlier answers: only its syntax is known now.
    // Any other default must be a valid value (checked once the pattern is).
    match &v.default {
        Some(toml::Value::String(s)) if inline::is_template(s) => {
            if let Err(e) = inline::check_template(s) {
                let message = format!("variable `{name}`: `default`: {}", e.message);
                out.push(doc.at_inside(toml_path!["variables", i, "default"], e.at, message));
            }
        }
        Some(default) if !matches!(pattern, Some(Err(_))) => {
            if let Err(e) = coerce(v, &toml_to_json(default)) {
                out.push(at("default", format!("variable `{name}`: the default is invalid: {e}")));
            }
        }
        _ => {}
    }
    if let Some(when) = &v.when
        && let Err(e) = inline::check_expr(when)
    {
        let message = format!("variable `{name}`: `when`: {}", e.message);
        out.push(doc.at_inside(toml_path!["variables", i, "when"], e.at, message));
    }
}

/// The checks of the `j`-th mount of layout `name`: its path, its component, the flags it sets.
fn check_mount(
    doc: &Document,
    tree: &TemplateTree,
    components: &BTreeMap<String, ComponentManifest>,
    name: &str,
    j: usize,
    m: &Mount,
    out: &mut Vec<Problem>,
) {
    let at = |key: &str, message: String| doc.at_value(toml_path!["layouts", name, "mounts", j, key], message);
    let trimmed = m.at.trim_end_matches('/');
    if let Err(why) = check_relative_path(if trimmed.is_empty() { &m.at } else { trimmed }) {
        out.push(at(
            "at",
            format!(
                "layout `{name}` mounts `{}` at `{}`: a mount path must be `.` or a relative directory inside the project ({why})",
                m.component,
                escaped(&m.at)
            ),
        ));
    }
    if ["{{", "{%", "{#"].iter().any(|d| m.at.contains(d)) {
        out.push(at(
            "at",
            format!(
                "layout `{name}` mounts `{}` at `{}`: a mount path is not rendered (it would be a directory named as written); give a fixed path, and use a templated directory name inside the component instead",
                m.component,
                escaped(&m.at)
            ),
        ));
    }
    let prefix = format!("{COMPONENTS_DIR}/{}/", m.component);
    if !tree.files.keys().any(|k| k.starts_with(&prefix)) {
        out.push(at(
            "component",
            format!(
                "layout `{name}` mounts component `{}`, but {prefix} does not exist or is empty",
                m.component
            ),
        ));
    }
    for (k, v) in &m.flags {
        let flag = toml_path!["layouts", name, "mounts", j, "flags", k];
        if let Some(c) = components.get(&m.component)
            && !c.flags.contains_key(k)
        {
            out.push(doc.at_key(flag, format!("layout `{name}` sets flag `{k}` on component `{}`, which declares no such flag (declare a default under [flags] in its {COMPONENT_MANIFEST})", m.component)));
        }
        if let toml::Value::String(s) = v
            && let Err(e) = inline::check_template(s)
        {
            out.push(doc.at_inside(flag, e.at, format!("flag `{k}`: {}", e.message)));
        }
    }
}

/// The last line of a regex error (the others draw the pattern), without its `error: `.
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text.lines().last().unwrap_or_default().trim();
    last.strip_prefix("error: ").unwrap_or(last).to_string()
}

/// A template or migration version: SemVer 2.0, strictly (the `semver` crate): three numbers
/// without leading zeros that fit in 64 bits, an optional `-pre-release` and `+build`. `1.0`,
/// `v1.0.0`, `1.0.0.1`, `01.0.0` and `1.0.0-` are refused, with why.
pub fn parse_version(v: &str) -> std::result::Result<semver::Version, String> {
    semver::Version::parse(v).map_err(|e| format!("{v:?} is not a SemVer 2.0 version such as 1.4.0 or 2.0.0-rc.1: {e}"))
}

/// Orders two versions by SemVer 2.0 precedence: `1.10.0` > `1.9.9`, a pre-release before its
/// release, pre-release fields compared numerically (`2.0.0-rc.10` > `2.0.0-rc.2`), build
/// metadata (`+...`) ignored. An error (from [`parse_version`]) when either is not a version:
/// never a guess.
pub fn compare_versions(a: &str, b: &str) -> std::result::Result<std::cmp::Ordering, String> {
    Ok(parse_version(a)?.cmp_precedence(&parse_version(b)?))
}

pub(crate) fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}
