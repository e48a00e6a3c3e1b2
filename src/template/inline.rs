//! The values every template sees, and small helpers to evaluate Tera expressions over them.

use serde_json::{Map, Value};

use super::names::ProjectName;
use crate::error::{Error, Result, TemplateError};

/// Variables the tool defines; a manifest may not redeclare them.
pub const BUILTIN_NAMES: &[&str] = &[
    "project_name",
    "project_slug",
    "dns_label",
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
    m.insert("dns_label".into(), name.dns_label().into());
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

/// A template string and an expression wrapped into one, so `when` expressions compile as Tera.
const IF_OPEN: &str = "{% if ";
const IF_CLOSE: &str = " %}1{% endif %}";

fn compile(template: &str, label: &str) -> std::result::Result<tera::Tera, tera::Error> {
    let mut tera = tera::Tera::new();
    tera.autoescape_on(Vec::<&str>::new());
    tera.add_raw_template(label, template)?;
    Ok(tera)
}

/// Whether a string is a Tera template (rendered) rather than a plain value.
pub fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

thread_local! {
    /// One Tera for every one-off string of a thread: a new one registers every built-in filter,
    /// test and function again, which cost more than the render of a short string.
    static ONE_OFF: tera::Tera = {
        let mut tera = tera::Tera::new();
        tera.autoescape_on(Vec::<&str>::new());
        tera
    };
}

fn render_raw(template: &str, values: &Map<String, Value>, label: &str) -> std::result::Result<String, tera::Error> {
    if !is_template(template) {
        return Ok(template.to_string());
    }
    let context = tera_context(values);
    match ONE_OFF.with(|tera| tera.render_str(template, &context, false)) {
        Ok(out) => Ok(out),
        // Rendered again under its own name, so that the error names it (`label`).
        Err(_) => compile(template, label)?.render(label, &context),
    }
}

fn when_template(expr: &str) -> String {
    format!("{IF_OPEN}{expr}{IF_CLOSE}")
}

/// Renders a one-off template string (a rendered path) against `values`.
/// `label` names where the string comes from, for the error message.
pub fn render_str(template: &str, values: &Map<String, Value>, label: &str) -> Result<String> {
    render_raw(template, values, label).map_err(|e| template_error(label, e))
}

/// What Tera says is wrong with a one-off string (a default, a flag, a `when`), and the byte
/// offset in that string where it is, so the caller can point at it in its TOML file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineError {
    pub at: usize,
    pub message: String,
}

impl InlineError {
    /// `shift`: the bytes wrapped around the string before Tera saw it.
    fn from_tera(e: &tera::Error, shift: usize) -> Self {
        let (at, mut message) = match e.kind() {
            tera::ErrorKind::SyntaxError(r) | tera::ErrorKind::RenderingError(r) => {
                (r.span().range.start.saturating_sub(shift), r.message().to_string())
            }
            other => (0, other.to_string()),
        };
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        InlineError { at, message }
    }
}

/// An error in a `when` expression; one past its end (Tera saw the `%}` that closes it) reads as
/// the end of the expression.
fn expr_error(e: &tera::Error, expr: &str) -> InlineError {
    let mut err = InlineError::from_tera(e, IF_OPEN.len());
    if err.at >= expr.len() {
        err.at = expr.len();
        err.message = err.message.replace("`%}`", "the end of the expression");
    }
    err
}

/// A Tera that checks the syntax of one-off strings of one label: each check replaces the one
/// template it holds, so it never sees another.
fn checker() -> std::cell::RefCell<tera::Tera> {
    let mut tera = tera::Tera::new();
    tera.autoescape_on(Vec::<&str>::new());
    std::cell::RefCell::new(tera)
}

thread_local! {
    static CHECK_INLINE: std::cell::RefCell<tera::Tera> = checker();
    static CHECK_WHEN: std::cell::RefCell<tera::Tera> = checker();
}

/// Compiles `template` as [`compile`] does (under the same label), in a Tera kept for it rather
/// than a new one.
fn check_syntax(template: &str, label: &'static str) -> std::result::Result<(), tera::Error> {
    let key = if label == "when" { &CHECK_WHEN } else { &CHECK_INLINE };
    key.with(|tera| tera.borrow_mut().add_raw_template(label, template))
}

/// Compiles a template string without rendering it: its syntax error, if any.
pub fn check_template(template: &str) -> std::result::Result<(), InlineError> {
    if !is_template(template) {
        return Ok(());
    }
    check_syntax(template, "inline").map_err(|e| InlineError::from_tera(&e, 0))
}

/// Compiles a `when` expression without evaluating it: its syntax error, if any.
pub fn check_expr(expr: &str) -> std::result::Result<(), InlineError> {
    check_syntax(&when_template(expr), "when").map_err(|e| expr_error(&e, expr))
}

/// Renders a one-off template string (a default, a flag) against `values`; the error is placed
/// in the string.
pub fn try_render(template: &str, values: &Map<String, Value>) -> std::result::Result<String, InlineError> {
    render_raw(template, values, "inline").map_err(|e| InlineError::from_tera(&e, 0))
}

/// Evaluates a Tera expression (`layout == "python" and worker`) to a boolean; the error is
/// placed in the expression.
pub fn try_eval(expr: &str, values: &Map<String, Value>) -> std::result::Result<bool, InlineError> {
    render_raw(&when_template(expr), values, "when")
        .map(|out| out == "1")
        .map_err(|e| expr_error(&e, expr))
}

pub(crate) fn template_error(label: &str, e: tera::Error) -> Error {
    let file = match e.kind() {
        tera::ErrorKind::SyntaxError(r) | tera::ErrorKind::RenderingError(r) => r.filename().to_string(),
        _ => label.to_string(),
    };
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str("\ncaused by: ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    Error::Template(TemplateError {
        file,
        message,
        source: Some(e),
    })
}
