//! `.stackwise.toml`: what generated a project, so it can be re-rendered or updated later.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::manifest::Manifest;

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

/// The text of `.stackwise.toml`. Secret variables are left out.
#[allow(clippy::too_many_arguments)]
pub fn render(
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
