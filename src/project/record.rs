//! `.stackwise.toml`: what generated a project, so it can be re-rendered or updated later.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::template::manifest::Manifest;
use crate::template::render::RenderedFile;
use crate::template::{Rendered, Template};

pub const RECORD_FILE: &str = ".stackwise.toml";

#[derive(Serialize)]
struct Record<'a> {
    stackwise_version: &'a str,
    template: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    revision: Option<&'a str>,
    name: &'a str,
    layout: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    preset: Option<&'a str>,
    answers: toml::Table,
}

fn json_to_toml(v: &Value) -> Option<toml::Value> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::Number(n) => n
            .as_i64()
            .map(toml::Value::Integer)
            .or_else(|| n.as_f64().map(toml::Value::Float))?,
        Value::String(s) => toml::Value::String(s.clone()),
        Value::Array(a) => toml::Value::Array(a.iter().filter_map(json_to_toml).collect()),
        Value::Object(o) => toml::Value::Table(
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), json_to_toml(v)?)))
                .collect(),
        ),
    })
}

/// Adds `.stackwise.toml` to a render, unless the template writes that file itself.
pub fn add_to(rendered: &mut Rendered, template: &Template) {
    if rendered.files.iter().any(|f| f.path == RECORD_FILE) {
        return;
    }
    let text = to_toml(
        &template.manifest,
        &template.tree.source,
        template.tree.revision.as_deref(),
        &rendered.name.name,
        &rendered.layout,
        rendered.preset.as_deref(),
        &rendered.answers,
    );
    rendered.files.push(RenderedFile {
        path: RECORD_FILE.into(),
        bytes: text.into_bytes(),
        executable: false,
    });
    rendered.files.sort_by(|a, b| a.path.cmp(&b.path));
}

/// The text of `.stackwise.toml`. Secret variables are left out.
#[allow(clippy::too_many_arguments)]
pub fn to_toml(
    manifest: &Manifest,
    template: &str,
    revision: Option<&str>,
    name: &str,
    layout: &str,
    preset: Option<&str>,
    answers: &Map<String, Value>,
) -> String {
    let mut table = toml::Table::new();
    for (k, v) in answers {
        if manifest.variable(k).is_some_and(|var| var.secret) {
            continue;
        }
        if let Some(t) = json_to_toml(v) {
            table.insert(k.clone(), t);
        }
    }
    let record = Record {
        stackwise_version: env!("CARGO_PKG_VERSION"),
        template,
        revision,
        name,
        layout,
        preset,
        answers: table,
    };
    let body = toml::to_string(&record).unwrap_or_default();
    format!(
        "# Written by stackwise when this project was generated. It holds no secret.\n# Re-render with: stackwise new \"{name}\" --answers .stackwise.toml --force -o ..\n{body}"
    )
}
