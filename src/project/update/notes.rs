//! What `update` tells the user about its answers and its source, beside the plan: the answers
//! it took for new variables, a recorded answer the new version refuses, newer release tags of a
//! pinned template.

use std::collections::BTreeSet;

use serde_json::Map;

use crate::error::Error;
use crate::template::source::TemplateSource;
use crate::template::{Rendered, Template};

/// A recorded answer (carried from `.stackwise.toml`, through the template's migrations) that
/// this template version refuses: said to be the recorded one, with the `--set` that replaces it.
pub(super) fn recorded_answer_refused(error: Error, recorded: &Map<String, serde_json::Value>) -> Error {
    match error {
        Error::InvalidValue { key, reason } if recorded.contains_key(&key) => Error::InvalidValue {
            reason: format!(
                "{reason} — it is the project's recorded answer, {} (from .stackwise.toml, through the template's migrations if any); pass --set {key}=VALUE to choose one this version accepts",
                recorded[&key]
            ),
            key,
        },
        other => other,
    }
}

/// A note for each answer the update took for a variable the project had no answer for (a
/// variable new in this version, or newly applicable): its value, and where it came from, so
/// a value nobody chose is never recorded unseen. Secrets are named, never shown.
pub(super) fn new_answers(
    template: &Template,
    preset: Option<&str>,
    given: &BTreeSet<String>,
    rendered: &Rendered,
) -> Vec<String> {
    let preset_options = preset
        .and_then(|id| template.catalogue.get(id).ok())
        .map(|p| p.options.keys().cloned().collect::<BTreeSet<_>>())
        .unwrap_or_default();
    template
        .manifest
        .variables
        .iter()
        .filter(|v| !given.contains(&v.name) && !preset_options.contains(&v.name))
        .filter_map(|v| {
            let value = rendered.answers.get(&v.name)?;
            let shown = if v.secret {
                "(secret)".to_string()
            } else {
                value.to_string()
            };
            let from = if v.default.is_some() {
                "its default"
            } else {
                "the template gives it no default: stackwise's fallback for its type"
            };
            Some(format!(
                "new variable `{}` = {shown} ({from}); choose another with --set {}=VALUE",
                v.name, v.name
            ))
        })
        .collect()
}

/// A source pinned to a SemVer tag never moves by itself ("up to date" while the template has
/// released since): the later tags, and how to move to the newest.
pub(super) fn pinned_note(source: &TemplateSource, newer: &[String]) -> Option<String> {
    let (
        TemplateSource::Git {
            reference: Some(pinned),
            ..
        },
        Some(newest),
    ) = (source, newer.first())
    else {
        return None;
    };
    let shown: Vec<&str> = newer.iter().take(5).map(String::as_str).collect();
    let more = if newer.len() > shown.len() { ", …" } else { "" };
    Some(format!(
        "the template is pinned to tag {pinned}, and it has newer tags ({}{more}): `stackwise update --to {newest}` moves the project to the newest",
        shown.join(", ")
    ))
}
