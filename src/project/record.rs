//! `.stackwise.toml`: what generated a project, so it can be re-rendered or updated later.
//!
//! It records the tool version, the template source, its version and exact revision (a git
//! commit, or `sha256:<hex>` of the template tree for a local or the built-in template), the
//! layout, preset and answers (never a secret), and keeps the user's own `[update]` table.

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::template::manifest::Manifest;
use crate::template::render::RenderedFile;
use crate::template::source::{BUILTIN_DIGEST, TemplateSource, TemplateTree};
use crate::template::value::toml_to_json;
use crate::template::{Rendered, Template};

pub use crate::template::files::RECORD_FILE;

/// Which template, at which version and revision, a render came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TemplateInfo {
    /// `builtin`, an absolute directory, or a git URL (`URL#REF`).
    pub template: String,
    /// The subdirectory of a git source that holds the template.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subdir: Option<String>,
    /// `[template] version` of the manifest; the stackwise version for the built-in template.
    pub version: Option<String>,
    /// A git commit id, or `sha256:<hex>` of the template tree.
    pub revision: String,
}

impl TemplateInfo {
    /// Describes a loaded template. A local directory is recorded as an absolute path, so
    /// `stackwise update` finds it again from anywhere.
    pub fn of(template: &Template, source: &TemplateSource) -> Self {
        let (name, subdir) = match source {
            TemplateSource::Builtin => ("builtin".to_string(), None),
            TemplateSource::Local(dir) => (
                std::fs::canonicalize(dir)
                    .or_else(|_| std::path::absolute(dir))
                    .unwrap_or_else(|_| dir.clone())
                    .display()
                    .to_string(),
                None,
            ),
            TemplateSource::Git { url, reference, subdir } => (
                match reference {
                    Some(r) => format!("{url}#{r}"),
                    None => url.clone(),
                },
                subdir.clone(),
            ),
        };
        let version = match source {
            TemplateSource::Builtin => Some(env!("CARGO_PKG_VERSION").to_string()),
            _ => template.manifest.template.version.clone(),
        };
        let revision = match (source, &template.tree.revision) {
            (TemplateSource::Git { .. }, Some(commit)) => commit.clone(),
            // The embedded bytes never change within a binary: hashed when it was built.
            (TemplateSource::Builtin, _) => BUILTIN_DIGEST.to_string(),
            _ => tree_digest(&template.tree),
        };
        TemplateInfo {
            template: name,
            subdir,
            version,
            revision,
        }
    }

    /// The source to load this template from again.
    pub fn source(&self) -> TemplateSource {
        TemplateSource::recorded(&self.template, self.subdir.as_deref())
    }

    /// The `--template SRC [--subdir PATH]` arguments that name this source again (none for the
    /// built-in template), quoted for a POSIX shell; None when the source cannot be written on one
    /// line of a comment (a control character in it).
    pub fn template_args(&self) -> Option<String> {
        if self.template == "builtin" {
            return Some(String::new());
        }
        let mut out = format!(" --template {}", shell_quote(&self.template)?);
        if let Some(sub) = &self.subdir {
            out.push_str(&format!(" --subdir {}", shell_quote(sub)?));
        }
        Some(out)
    }
}

/// `s` as one word for a POSIX shell: bare when it is plain, else in single quotes.
fn shell_quote(s: &str) -> Option<String> {
    if s.chars().any(char::is_control) {
        return None;
    }
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:@#+=,%".contains(c));
    Some(if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    })
}

/// `sha256:<hex>` over every file of the template and its presets (path, length, bytes).
pub fn tree_digest(tree: &TemplateTree) -> String {
    let mut h = Sha256::new();
    let mut feed = |path: &str, bytes: &[u8]| {
        h.update(path.as_bytes());
        h.update([0]);
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    for (path, bytes) in &tree.files {
        feed(path, bytes);
    }
    for (name, text) in &tree.presets {
        feed(&format!("presets/{name}"), text.as_bytes());
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

#[derive(Serialize)]
struct RecordOut<'a> {
    stackwise_version: &'a str,
    template: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    template_subdir: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    template_version: Option<&'a str>,
    revision: &'a str,
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

/// Adds `.stackwise.toml` to a render (a template may not write it: the plan refuses that).
/// `update` is the user's `[update]` table to carry over (None: a fresh one).
pub fn add_to(rendered: &mut Rendered, template: &Template, info: &TemplateInfo, update: Option<&toml::Table>) {
    rendered.files.retain(|f| f.path != RECORD_FILE);
    let text = to_toml(&template.manifest, info, rendered, update);
    rendered.files.push(RenderedFile {
        path: RECORD_FILE.into(),
        bytes: text.into_bytes(),
        executable: false,
        update_once: false,
    });
    rendered.files.sort_by(|a, b| a.path.cmp(&b.path));
}

/// The text of `.stackwise.toml`. Secret variables are left out.
pub fn to_toml(manifest: &Manifest, info: &TemplateInfo, rendered: &Rendered, update: Option<&toml::Table>) -> String {
    let mut table = toml::Table::new();
    for (k, v) in &rendered.answers {
        if manifest.variable(k).is_some_and(|var| var.secret) {
            continue;
        }
        if let Some(t) = json_to_toml(v) {
            table.insert(k.clone(), t);
        }
    }
    let name = &rendered.name.name;
    let record = RecordOut {
        stackwise_version: env!("CARGO_PKG_VERSION"),
        template: &info.template,
        template_subdir: info.subdir.as_deref(),
        template_version: info.version.as_deref(),
        revision: &info.revision,
        name,
        layout: &rendered.layout,
        preset: rendered.preset.as_deref(),
        answers: table,
    };
    let body = toml::to_string(&record).unwrap_or_default();
    let mut update_table = update.cloned().unwrap_or_default();
    update_table
        .entry("skip")
        .or_insert_with(|| toml::Value::Array(Vec::new()));
    let update_text = toml::to_string(&update_table).unwrap_or_default();
    let rerender = match info.template_args() {
        Some(args) => format!("stackwise new \"{name}\"{args} --answers .stackwise.toml --force -o .."),
        None => format!("stackwise new \"{name}\" --answers .stackwise.toml --force -o .. (from the template below)"),
    };
    format!(
        "# Written by stackwise; `stackwise update` rewrites it (your [update] table is kept). It holds no secret.\n\
         # Re-render with: {rerender}\n\
         {body}\n\
         [update]\n\
         # Paths (globs) that `stackwise update` never writes, e.g. skip = [\"docs/**\", \"src/app/model.py\"]\n\
         {update_text}"
    )
}

/// A project's `.stackwise.toml`, read back.
#[derive(Debug, Clone)]
pub struct ProjectRecord {
    pub stackwise_version: Option<String>,
    pub info: TemplateInfo,
    pub name: String,
    pub layout: String,
    pub preset: Option<String>,
    pub answers: Map<String, Value>,
    /// The user's `[update]` table, as written.
    pub update: toml::Table,
    /// `[update] skip`: globs of paths `update` never writes.
    pub skip: Vec<String>,
}

impl ProjectRecord {
    /// Parses the text of `.stackwise.toml`. A record written before `update` existed has no
    /// `template_version`, and a revision that is not a commit or a digest; it still parses.
    pub fn parse(text: &str) -> Result<Self> {
        let fail = |reason: String| Error::refused(format!("{RECORD_FILE}: {reason}"));
        let mut top: toml::Table = toml::from_str(text).map_err(|e| fail(format!("invalid TOML: {e}")))?;
        let mut text_of = |key: &str| match top.remove(key) {
            Some(toml::Value::String(s)) => Ok(Some(s)),
            None => Ok(None),
            Some(other) => Err(fail(format!("`{key}` must be a string, found {other}"))),
        };
        let stackwise_version = text_of("stackwise_version")?;
        let template = text_of("template")?.ok_or_else(|| fail("no `template` key".into()))?;
        let subdir = text_of("template_subdir")?;
        let version = text_of("template_version")?;
        let revision = text_of("revision")?.unwrap_or_default();
        let name = text_of("name")?.ok_or_else(|| fail("no `name` key".into()))?;
        let layout = text_of("layout")?.ok_or_else(|| fail("no `layout` key".into()))?;
        let preset = text_of("preset")?;
        let answers = match top.remove("answers") {
            Some(toml::Value::Table(t)) => t.iter().map(|(k, v)| (k.clone(), toml_to_json(v))).collect(),
            None => Map::new(),
            Some(_) => return Err(fail("`answers` must be a table".into())),
        };
        let update = match top.remove("update") {
            Some(toml::Value::Table(t)) => t,
            None => toml::Table::new(),
            Some(_) => return Err(fail("`update` must be a table".into())),
        };
        let skip = match update.get("skip") {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| fail("`[update] skip` must be a list of globs (strings)".into()))
                })
                .collect::<Result<_>>()?,
            Some(_) => return Err(fail("`[update] skip` must be a list of globs".into())),
        };
        Ok(ProjectRecord {
            stackwise_version,
            info: TemplateInfo {
                template,
                subdir,
                version,
                revision,
            },
            name,
            layout,
            preset,
            answers,
            update,
            skip,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::names::ProjectName;

    #[test]
    fn a_record_reads_back_what_it_wrote_and_keeps_the_users_update_table() {
        let source = TemplateSource::Builtin;
        let template = Template::load(&source).unwrap();
        let info = TemplateInfo::of(&template, &source);
        assert!(info.revision.starts_with("sha256:") && info.revision.len() == 7 + 64);
        assert_eq!(info.version.as_deref(), Some(env!("CARGO_PKG_VERSION")));
        let mut answers = Map::new();
        answers.insert("worker".into(), Value::Bool(true));
        let rendered = Rendered {
            sources: Default::default(),
            name: ProjectName::parse("Shop AI").unwrap(),
            layout: "python".into(),
            preset: Some("data-pipeline".into()),
            answers,
            files: Vec::new(),
            ignored: Vec::new(),
        };
        let mut mine = toml::Table::new();
        mine.insert("skip".into(), toml::Value::Array(vec!["docs/**".into()]));
        mine.insert("note".into(), "kept".into());
        let text = to_toml(&template.manifest, &info, &rendered, Some(&mine));
        let back = ProjectRecord::parse(&text).unwrap();
        assert_eq!(back.info, info);
        assert_eq!(back.name, "Shop AI");
        assert_eq!(back.preset.as_deref(), Some("data-pipeline"));
        assert_eq!(back.answers["worker"], Value::Bool(true));
        assert_eq!(back.skip, vec!["docs/**".to_string()]);
        assert_eq!(back.update, mine);
        assert_eq!(back.info.source(), source);
    }

    #[test]
    fn the_digest_of_the_builtin_template_computed_by_build_rs_is_its_digest() {
        assert_eq!(BUILTIN_DIGEST, tree_digest(&TemplateTree::builtin()));
        let info = TemplateInfo::of(
            &Template::load(&TemplateSource::Builtin).unwrap(),
            &TemplateSource::Builtin,
        );
        assert_eq!(info.revision, BUILTIN_DIGEST);
    }

    #[test]
    fn the_template_arguments_name_the_source_as_one_shell_word_each() {
        let info = |template: &str, subdir: Option<&str>| TemplateInfo {
            template: template.into(),
            subdir: subdir.map(str::to_string),
            version: None,
            revision: "sha256:00".into(),
        };
        assert_eq!(info("builtin", None).template_args().unwrap(), "");
        assert_eq!(
            info("https://git.example.com/acme/tpl.git#v2", Some("templates"))
                .template_args()
                .unwrap(),
            " --template https://git.example.com/acme/tpl.git#v2 --subdir templates"
        );
        assert_eq!(
            info("/srv/it's $HOME", None).template_args().unwrap(),
            " --template '/srv/it'\\''s $HOME'"
        );
        // A line break would end the comment and break the TOML: no command then.
        assert_eq!(info("/srv/a\nb", None).template_args(), None);
    }

    #[test]
    fn the_digest_follows_every_byte_and_path() {
        let mut tree = TemplateTree::builtin();
        let a = tree_digest(&tree);
        assert_eq!(a, tree_digest(&tree));
        let first = tree.files.keys().next().unwrap().clone();
        tree.files.get_mut(&first).unwrap().to_mut().push(b'\n');
        assert_ne!(a, tree_digest(&tree));
    }
}
