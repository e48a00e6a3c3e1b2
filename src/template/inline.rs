//! The values every template sees, and small helpers to evaluate Tera expressions over them.

use serde_json::{Map, Value};

use super::budget::{MeteredWriter, RenderBudget, run_here, run_within};
use super::names::ProjectName;
use crate::error::{Error, Result, TemplateError};

pub use super::budget::Stop;

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

/// Why an inline string gave no value: Tera refused it, or its render was stopped.
#[derive(Debug)]
enum Failure {
    Tera(tera::Error),
    Stopped(Stop),
}

/// Renders `template` against `values` under the budget of an inline string
/// ([`RenderBudget::inline_from_env`]): on a worker watched by this thread, or here when it can
/// only substitute and compare values ([`is_bounded`]), which its output cap bounds.
fn render_raw(template: &str, values: &Map<String, Value>, label: &str) -> std::result::Result<String, Failure> {
    render_budgeted(template, values, label, is_bounded(template))
}

fn render_budgeted(
    template: &str,
    values: &Map<String, Value>,
    label: &str,
    bounded: bool,
) -> std::result::Result<String, Failure> {
    if !is_template(template) {
        return Ok(template.to_string());
    }
    let context = tera_context(values);
    let budget = RenderBudget::inline_from_env();
    let out = if bounded {
        run_here(budget, |w| render_metered(template, &context, label, w))
    } else {
        let (template, label) = (template.to_string(), label.to_string());
        run_within(budget, move |w| render_metered(&template, &context, &label, w))
    };
    out.map_err(Failure::Stopped)?.map_err(Failure::Tera)
}

/// The render itself, into the metered writer `w`.
fn render_metered(
    template: &str,
    context: &tera::Context,
    label: &str,
    w: &mut MeteredWriter<'_>,
) -> std::result::Result<String, tera::Error> {
    let first = ONE_OFF.with(|tera| tera.render_str_to(template, context, false, &mut *w));
    if let Err(e) = first {
        if w.meter.over.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(e);
        }
        // Rendered again under its own name, so that the error names it (`label`).
        w.buf.clear();
        compile(template, label)?.render_to(label, context, &mut *w)?;
    }
    Ok(String::from_utf8(std::mem::take(&mut w.buf))?)
}

/// Whether a template only substitutes and compares values: no tag, no comment, and every
/// `{{ … }}` a [bounded expression](is_bounded_expr). Its render takes time and memory in
/// proportion to its output (no loop, no filter, no function), so the output cap is enough of a
/// budget and it needs no thread of its own: `src/{{ package_name }}`, `{{ project_title }}`.
fn is_bounded(template: &str) -> bool {
    if template.contains("{%") || template.contains("{#") {
        return false;
    }
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open + 2..].find("}}") else {
            return false;
        };
        let inner = &rest[open + 2..open + 2 + close];
        let inner = inner.strip_prefix('-').unwrap_or(inner);
        if !is_bounded_expr(inner.strip_suffix('-').unwrap_or(inner)) {
            return false;
        }
        rest = &rest[open + 2 + close + 2..];
    }
    true
}

/// Whether an expression only reads names (and their attributes) and compares them with
/// literals: `layout == "python" and not flags.worker`. Outside its string literals it holds
/// nothing but letters, digits, `_`, `.`, spaces and `= ! < >`: no filter (`|`), call or
/// grouping (`(`), index (`[`), arithmetic or concatenation, which could take a long time or
/// build a large value, and no `%}` that would close the tag a `when` is wrapped in.
fn is_bounded_expr(expr: &str) -> bool {
    let mut chars = expr.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                if !chars.by_ref().any(|q| q == c) {
                    return false;
                }
            }
            c if c.is_ascii_alphanumeric() || c.is_ascii_whitespace() => {}
            '_' | '.' | '=' | '!' | '<' | '>' => {}
            _ => return false,
        }
    }
    true
}

fn when_template(expr: &str) -> String {
    format!("{IF_OPEN}{expr}{IF_CLOSE}")
}

/// Renders a one-off template string (a rendered path) against `values`.
/// `label` names where the string comes from, for Tera's error message; `file` and `what` name
/// it for a render that was stopped ([`Stop::into_error`]).
pub fn render_str(template: &str, values: &Map<String, Value>, label: &str, file: &str, what: &str) -> Result<String> {
    render_raw(template, values, label).map_err(|f| match f {
        Failure::Tera(e) => template_error(label, e),
        Failure::Stopped(stop) => stop.into_error(file, what),
    })
}

impl Stop {
    /// The error of an inline string whose render was stopped: `what` it is (`the \`default\`
    /// of variable \`x\``) in `file` (the manifest, or the template file whose name it is).
    pub fn into_error(self, file: &str, what: impl Into<String>) -> Error {
        let what = what.into();
        match self {
            Stop::Over(reason) => Error::InlineBudget {
                file: file.to_string(),
                what,
                reason,
            },
            Stop::Interrupted => Error::Interrupted,
            Stop::Panicked => Error::Template(TemplateError {
                file: file.to_string(),
                message: format!("the template engine stopped while rendering {what} (a panic; its message is above)"),
                source: None,
            }),
            Stop::NoThread(source) => Error::Thread {
                what: "render a string of the template",
                source,
            },
        }
    }
}

/// Why an inline string (a default, a flag, a `when`) gave no value: what Tera said is wrong
/// with it, placed in it; or its render was stopped (over its budget, Ctrl-C).
#[derive(Debug)]
pub enum InlineFailure {
    Invalid(InlineError),
    Stopped(Stop),
}

impl InlineFailure {
    /// The error to report: `place` puts Tera's in its TOML file; a stop is named by its `file`
    /// and `what` ([`Stop::into_error`]).
    pub fn into_error(
        self,
        file: &str,
        what: impl FnOnce() -> String,
        place: impl FnOnce(InlineError) -> Error,
    ) -> Error {
        match self {
            InlineFailure::Invalid(e) => place(e),
            InlineFailure::Stopped(stop) => stop.into_error(file, what()),
        }
    }
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

/// Tera's delimiters: a `when` holding one would close the `{% if %}` it is pasted into and run
/// template code of its own.
const DELIMITERS: [&str; 6] = ["{%", "%}", "{{", "}}", "{#", "#}"];

/// Compiles a `when` expression without evaluating it: its syntax error, if any. A `when` is one
/// expression; Tera's delimiters in it are refused.
pub fn check_expr(expr: &str) -> std::result::Result<(), InlineError> {
    if let Some((at, d)) = DELIMITERS.iter().filter_map(|d| expr.find(d).map(|at| (at, d))).min() {
        return Err(InlineError {
            at,
            message: format!("`{d}` in a `when`: a `when` is one expression, without Tera's tag or comment delimiters"),
        });
    }
    check_syntax(&when_template(expr), "when").map_err(|e| expr_error(&e, expr))
}

/// Renders a one-off template string (a default, a flag) against `values`; Tera's error is
/// placed in the string.
pub fn try_render(template: &str, values: &Map<String, Value>) -> std::result::Result<String, InlineFailure> {
    render_raw(template, values, "inline").map_err(|f| match f {
        Failure::Tera(e) => InlineFailure::Invalid(InlineError::from_tera(&e, 0)),
        Failure::Stopped(stop) => InlineFailure::Stopped(stop),
    })
}

/// Evaluates a Tera expression (`layout == "python" and worker`) to a boolean; Tera's error is
/// placed in the expression.
pub fn try_eval(expr: &str, values: &Map<String, Value>) -> std::result::Result<bool, InlineFailure> {
    match render_budgeted(&when_template(expr), values, "when", is_bounded_expr(expr)) {
        Ok(out) => Ok(out == "1"),
        Err(Failure::Tera(e)) => Err(InlineFailure::Invalid(expr_error(&e, expr))),
        Err(Failure::Stopped(stop)) => Err(InlineFailure::Stopped(stop)),
    }
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

/// The names in the context a variable's `when` is evaluated in: the built-ins of [`base`], that
/// is [`BUILTIN_NAMES`] but `flags` and `mount_path`, which only a component's files see.
pub fn base_names() -> Vec<&'static str> {
    BUILTIN_NAMES
        .iter()
        .copied()
        .filter(|n| !matches!(*n, "flags" | "mount_path"))
        .collect()
}

/// What a `when` expression may read: `names` at the top level and, when `flags` is given, the
/// attributes of `flags` it lists.
pub struct Known<'a> {
    pub names: Vec<&'a str>,
    pub flags: Option<Vec<&'a str>>,
    /// Says which names these are, after "not ...": `a variable declared before this one`.
    pub what: &'a str,
    /// Names that exist but not yet where the expression is read (variables declared after it).
    pub later: Vec<&'a str>,
}

/// Every name a `when` expression reads that is not in `known`, placed in the expression. Tera
/// takes an undefined name in a condition for false, so a typo (`worekr`, `flags.wrker`) would
/// silently switch a variable or a file off. The top-level names are the ones Tera compiles as
/// variables; `flags.X` is found in the text.
pub fn check_names(expr: &str, known: &Known) -> Vec<InlineError> {
    let Ok(read) = CHECK_WHEN.with(|tera| {
        let mut tera = tera.borrow_mut();
        tera.add_raw_template("when", &when_template(expr))?;
        let vars = tera.get_template_variables("when")?;
        Ok::<_, tera::Error>(vars.into_iter().map(str::to_string).collect::<Vec<_>>())
    }) else {
        return Vec::new(); // a syntax error: check_expr reports it
    };
    let mut out = Vec::new();
    let mut seen = Vec::new();
    for (at, name, attr) in identifiers(expr) {
        if !read.contains(&name) || seen.contains(&(name.clone(), attr.clone().map(|a| a.1))) {
            continue; // a filter, a test, a function, an argument name; or said already
        }
        seen.push((name.clone(), attr.clone().map(|a| a.1)));
        if !known.names.contains(&name.as_str()) {
            out.push(InlineError {
                at,
                message: if known.later.contains(&name.as_str()) {
                    format!(
                        "`{name}` is not {}: it is declared after, so it is undefined here and the condition would be silently false; declare `{name}` first",
                        known.what
                    )
                } else {
                    format!(
                        "`{name}` is not {}{}; an undefined name would make the condition silently false (known: {})",
                        known.what,
                        crate::suggest::did_you_mean(&name, known.names.iter().copied()),
                        known.names.join(", ")
                    )
                },
            });
        } else if let (Some(flags), "flags", Some((attr_at, attr))) = (&known.flags, name.as_str(), attr)
            && !flags.contains(&attr.as_str())
        {
            out.push(InlineError {
                at: attr_at,
                message: format!(
                    "`flags.{attr}`: the component declares no flag `{attr}`{}; an undefined flag would make the condition silently false (its flags: {})",
                    crate::suggest::did_you_mean(&attr, flags.iter().copied()),
                    flags.join(", ")
                ),
            });
        }
    }
    out
}

/// A name and its byte offset in an expression.
type Placed = (usize, String);

/// The identifiers of an expression outside its string literals and not after a `.`: each with
/// its byte offset, and the attribute read from it (`flags.worker`), placed too.
fn identifiers(expr: &str) -> Vec<(usize, String, Option<Placed>)> {
    let bytes = expr.as_bytes();
    let ident = |i: usize| {
        let end = (i..bytes.len())
            .find(|&j| !(bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_'))
            .unwrap_or(bytes.len());
        (end, expr[i..end].to_string())
    };
    let skip_space = |mut i: usize| {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    let mut out = Vec::new();
    let mut i = 0;
    let mut after_dot = false;
    while i < bytes.len() {
        let b = bytes[i];
        if matches!(b, b'"' | b'\'' | b'`') {
            i = expr[i + 1..].find(b as char).map_or(bytes.len(), |end| i + end + 2);
            after_dot = false;
        } else if b.is_ascii_alphabetic() || b == b'_' {
            let (end, name) = ident(i);
            let next = skip_space(end);
            let attr = (bytes.get(next) == Some(&b'.'))
                .then(|| skip_space(next + 1))
                .filter(|&a| bytes.get(a).is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_'))
                .map(|a| (a, ident(a).1));
            if !after_dot {
                out.push((i, name, attr));
            }
            i = end;
            after_dot = false;
        } else if b.is_ascii_digit() {
            i = ident(i).0;
        } else {
            after_dot = b == b'.' || (after_dot && b.is_ascii_whitespace());
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `when` may read exactly what [`base`] puts in its context.
    #[test]
    fn base_names_are_the_keys_of_base() {
        let ctx = base(&ProjectName::parse("x").unwrap(), "python", None);
        let mut keys: Vec<&str> = ctx.keys().map(String::as_str).collect();
        let mut names = base_names();
        keys.sort_unstable();
        names.sort_unstable();
        assert_eq!(keys, names);
    }

    /// Only strings that substitute names and compare them render without a worker.
    #[test]
    fn bounded_strings_substitute_and_compare_only() {
        for bounded in [
            "src/{{ package_name }}/x.py",
            "{{project_title}}: a {{- layout -}} backend",
            "plain",
            "{{ flags.worker }}",
        ] {
            assert!(is_bounded(bounded), "{bounded}");
        }
        for expr in [
            "layout == \"python\" and not flags.worker",
            "mount_path != '.'",
            "a >= 1 or b in `x|y`",
        ] {
            assert!(is_bounded_expr(expr), "{expr}");
        }
        for unbounded in [
            "{% for i in range(end=3) %}x{% endfor %}",
            "{{ x | replace(from=\"a\", to=\"aa\") }}",
            "{{ x ~ x }}",
            "{{ x }",
            "{{ \"}}\" }}",
            "{# c #}",
        ] {
            assert!(!is_bounded(unbounded), "{unbounded}");
        }
        for expr in [
            "true %}{% for i in x %}{% endfor %}{% if true",
            "x | length > 1",
            "range(end=2)",
            "'open",
        ] {
            assert!(!is_bounded_expr(expr), "{expr}");
        }
    }

    /// A default that doubles an earlier one renders on this thread, yet cannot double it without
    /// end: its output is capped like any other inline string's.
    #[test]
    fn bounded_strings_are_held_to_the_output_cap() {
        let mut values = Map::new();
        values.insert("a".into(), Value::String("x".repeat(40 << 10)));
        assert_eq!(try_render("{{ a }}", &values).unwrap().len(), 40 << 10);
        let Err(InlineFailure::Stopped(Stop::Over(why))) = try_render("{{ a }}{{ a }}", &values) else {
            panic!("two copies of 40 KiB are over the cap");
        };
        assert!(why.contains("KiB of output"), "{why}");
        let err = render_str(
            "{{ a }}{{ a }}",
            &values,
            "components/x/{{ a }}",
            "components/x/{{ a }}",
            "the file name",
        )
        .unwrap_err();
        assert!(matches!(err, Error::InlineBudget { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("rendering the file name in components/x/{{ a }} went over its budget"),
            "{err}"
        );
    }

    #[test]
    fn a_when_cannot_close_its_if_and_run_template_code() {
        let e = check_expr("true %}{% for i in range(end=9) %}x{% endfor %}{% if true").unwrap_err();
        assert_eq!(e.at, 5);
        assert!(e.message.contains("`%}`"), "{}", e.message);
        assert!(check_expr("x {# comment #}").is_err());
        assert!(check_expr("flags.worker and layout == \"python\"").is_ok());
    }

    #[test]
    fn check_names_reads_variables_not_strings_filters_tests_or_arguments() {
        let known = Known {
            names: vec!["flags", "items", "layout"],
            flags: Some(vec!["worker"]),
            what: "known",
            later: Vec::new(),
        };
        let fine = "layout == 'nosuch' and \"flags.x\" != `y` and items | length > 1 and flags . worker \
                    and layout is defined and items is not none and range(end=2) | length > 0";
        assert_eq!(check_names(fine, &known), Vec::new());
        let found = check_names("nosuch or flags.wrker or nosuch", &known);
        let at: Vec<usize> = found.iter().map(|e| e.at).collect();
        assert_eq!(at, vec![0, 16], "{found:?}");
        assert!(found[1].message.contains("did you mean `worker`"), "{found:?}");
    }
}
