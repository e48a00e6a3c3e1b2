//! The values every template sees, and small helpers to evaluate Tera expressions over them.

use serde_json::{Map, Value};

use super::names::ProjectName;
use crate::error::{Error, Result};

/// Variables the tool defines; a manifest may not redeclare them.
pub const BUILTIN_NAMES: &[&str] = &[
    "project_name",
    "project_slug",
    "package_name",
    "class_name",
    "project_title",
    "layout",
    "preset",
    "flags",
    "mount_path",
    "stackwise_version",
];

/// The built-in part of the context: names, layout, preset, tool version.
pub fn base(name: &ProjectName, layout: &str, preset: Option<&str>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("project_name".into(), name.name.clone().into());
    m.insert("project_slug".into(), name.slug.clone().into());
    m.insert("package_name".into(), name.package.clone().into());
    m.insert("class_name".into(), name.pascal.clone().into());
    m.insert("project_title".into(), name.title.clone().into());
    m.insert("layout".into(), layout.into());
    m.insert("preset".into(), preset.unwrap_or("").into());
    m.insert("stackwise_version".into(), env!("CARGO_PKG_VERSION").into());
    m
}

pub(crate) fn tera_context(values: &Map<String, Value>) -> tera::Context {
    let mut ctx = tera::Context::new();
    for (k, v) in values {
        ctx.insert(k.clone(), v);
    }
    ctx
}

/// Renders a one-off template string (a default, a flag, a path) against `values`.
/// `label` names where the string comes from, for the error message.
pub fn render_str(template: &str, values: &Map<String, Value>, label: &str) -> Result<String> {
    if !template.contains("{{") && !template.contains("{%") {
        return Ok(template.to_string());
    }
    let mut tera = tera::Tera::new();
    tera.autoescape_on(Vec::<&str>::new());
    tera.add_raw_template(label, template)
        .map_err(|e| template_error(label, &e))?;
    tera.render(label, &tera_context(values))
        .map_err(|e| template_error(label, &e))
}

/// Evaluates a Tera expression (`layout == "python" and worker`) to a boolean.
pub fn eval_bool(expr: &str, values: &Map<String, Value>, label: &str) -> Result<bool> {
    let out = render_str(&format!("{{% if {expr} %}}1{{% endif %}}"), values, label)?;
    Ok(out == "1")
}

pub(crate) fn template_error(label: &str, e: &tera::Error) -> Error {
    let file = match e.kind() {
        tera::ErrorKind::SyntaxError(r) | tera::ErrorKind::RenderingError(r) => r.filename().to_string(),
        _ => label.to_string(),
    };
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str("\ncaused by: ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    Error::Template { file, message }
}
