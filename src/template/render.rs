//! Rendering a plan: one Tera instance holds every template of the plan plus the partials.

use std::collections::BTreeSet;

use super::PARTIALS_DIR;
use super::inline::{self, template_error};
use super::plan::{Action, Plan};
use super::source::TemplateTree;
use crate::error::{Error, Result};

/// A rendered file.
#[derive(Debug, Clone)]
pub struct RenderedFile {
    pub path: String,
    pub bytes: Vec<u8>,
    pub executable: bool,
    /// Written by `stackwise new` only (`update = "once"`).
    pub update_once: bool,
}

/// Renders every file of the plan. One Tera instance holds all templates of the plan plus the
/// partials, so templates can `{% include "partials/..." %}`.
pub fn render_plan(tree: &TemplateTree, plan: &Plan) -> Result<Vec<RenderedFile>> {
    let mut tera = tera::Tera::new();
    tera.autoescape_on(Vec::<&str>::new());
    let mut sources: BTreeSet<&str> = plan
        .files
        .iter()
        .filter(|f| f.action == Action::Render)
        .map(|f| f.source.as_str())
        .collect();
    let partial_prefix = format!("{PARTIALS_DIR}/");
    sources.extend(
        tree.files
            .keys()
            .filter(|k| k.starts_with(&partial_prefix))
            .map(String::as_str),
    );
    let mut texts = Vec::with_capacity(sources.len());
    for s in &sources {
        let bytes = &tree.files[*s];
        let text = std::str::from_utf8(bytes)
            .ok()
            .filter(|t| !t.contains('\0'))
            .ok_or_else(|| Error::Template {
                file: s.to_string(),
                message: "this looks like a binary file and cannot be rendered; drop the .tera suffix or list it under `verbatim` in component.toml".into(),
            })?;
        texts.push((*s, text));
    }
    if let Err(e) = tera.add_raw_templates(texts) {
        return Err(template_error("template", &e));
    }
    let tera_contexts: Vec<tera::Context> = plan.contexts.iter().map(inline::tera_context).collect();
    let mut out = Vec::with_capacity(plan.files.len());
    for f in &plan.files {
        let bytes = match f.action {
            Action::Copy => tree.files[&f.source].clone(),
            Action::Render => tera
                .render(&f.source, &tera_contexts[f.mount])
                .map_err(|e| template_error(&f.source, &e))?
                .into_bytes(),
        };
        out.push(RenderedFile {
            path: f.path.clone(),
            bytes,
            executable: f.executable,
            update_once: f.update_once,
        });
    }
    Ok(out)
}
