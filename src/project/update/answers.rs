//! The answers of an update: the recorded ones, then the template's declarative `[[migrations]]`,
//! then (on a preset change) the new preset's options and defaults for answers never customised.
//! `--set` / `--answers` and defaults (or prompts) for new variables come after, in
//! [`crate::template::answers::resolve`].

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::template::Template;
use crate::template::files::{MANIFEST_FILE, RECORD_FILE};
use crate::template::inline;
use crate::template::manifest::{Manifest, parse_version};
use crate::template::names::ProjectName;
use crate::template::value::{coerce, toml_to_json};

/// The preset and layout a project had, and the ones it gets.
pub struct PresetChange<'a> {
    pub name: &'a ProjectName,
    pub old_layout: &'a str,
    pub old_preset: Option<&'a str>,
    pub new_preset: Option<&'a str>,
}

impl PresetChange<'_> {
    fn changed(&self) -> bool {
        self.old_preset != self.new_preset
    }
}

/// An update never goes back to an older version of the template (copier refuses downgrades
/// too): its migrations only run forward, so answers migrated for the project's version would
/// meet templates that predate them. A version that is not SemVer is left to [`migrate`] (the
/// recorded one) and the manifest's checks (the template's).
pub fn refuse_downgrade(manifest: &Manifest, recorded: Option<&str>) -> Result<()> {
    let (Some(old), Some(new)) = (recorded, manifest.template.version.as_deref()) else {
        return Ok(());
    };
    let (Ok(old_v), Ok(new_v)) = (parse_version(old), parse_version(new)) else {
        return Ok(());
    };
    if new_v.cmp_precedence(&old_v).is_lt() {
        return Err(Error::refused_with(
            format!(
                "the template is at version {new}, older than the project's {old} ({RECORD_FILE}): an update never goes back"
            ),
            "update from a revision at or after the project's version (--to REV, or another --template); to return to an older template, revert the update commits with git",
        ));
    }
    Ok(())
}

/// Applies the migrations newer than `old_version` (all of them when the project recorded no
/// version), in version order. Returns what each did, for the report. A recorded version that is
/// not SemVer is refused (which migrations it missed cannot be known), never taken as 0.0.0.
pub fn migrate(
    manifest: &Manifest,
    answers: &mut Map<String, Value>,
    old_version: Option<&str>,
) -> Result<Vec<String>> {
    if manifest.migrations.is_empty() {
        return Ok(Vec::new());
    }
    let old = old_version
        .map(|v| {
            parse_version(v).map_err(|why| {
                Error::refused_with(
                    format!("{RECORD_FILE}: template_version {why}, so which [[migrations]] it needs is unknown"),
                    format!(
                        "set template_version in {RECORD_FILE} to the version of the template the project was made with"
                    ),
                )
            })
        })
        .transpose()?;
    // The manifest's checks refused a migration version that is not SemVer.
    let mut due = Vec::new();
    for m in &manifest.migrations {
        let version =
            parse_version(&m.version).map_err(|why| Error::refused(format!("[[migrations]] version {why}")))?;
        if old.as_ref().is_none_or(|old| version.cmp_precedence(old).is_gt()) {
            due.push((version, m));
        }
    }
    due.sort_by(|(a, _), (b, _)| a.cmp_precedence(b));
    let mut notes = Vec::new();
    for (_, m) in due {
        if let Some(r) = &m.rename
            && let Some(v) = answers.remove(&r.from)
        {
            // A project that answered both keeps the answer it gave under the new name, and is
            // told the other one went (values unnamed: either may be a secret).
            if answers.contains_key(&r.to) {
                notes.push(format!(
                    "migration {}: `{}` is renamed `{}`, which the project already answers: that answer is kept and the one for `{}` is dropped (`--set {}=…` chooses another)",
                    m.version, r.from, r.to, r.from, r.to
                ));
            } else {
                notes.push(format!(
                    "migration {}: answer `{}` is now `{}`",
                    m.version, r.from, r.to
                ));
                answers.insert(r.to.clone(), v);
            }
        }
        if let Some(d) = &m.drop
            && answers.remove(d).is_some()
        {
            notes.push(format!("migration {}: answer `{d}` dropped", m.version));
        }
        if let Some(s) = &m.set {
            let value = toml_to_json(&s.value);
            if answers.get(&s.name) != Some(&value) {
                notes.push(format!("migration {}: `{}` set to {value}", m.version, s.name));
                answers.insert(s.name.clone(), value);
            }
        }
    }
    Ok(notes)
}

/// What each variable would have been without the user: its default in the old context, or the
/// old preset's option. An answer equal to it was never customised.
fn uncustomised(
    template: &Template,
    change: &PresetChange,
    recorded: &Map<String, Value>,
) -> Result<Map<String, Value>> {
    let old_options = change
        .old_preset
        .and_then(|id| template.catalogue.get(id).ok())
        .map(|p| p.options.clone())
        .unwrap_or_default();
    let mut ctx = inline::base(change.name, change.old_layout, change.old_preset);
    let mut out = Map::new();
    for var in &template.manifest.variables {
        let value = match (old_options.get(&var.name), &var.default) {
            (Some(v), _) => Some(toml_to_json(v)),
            (None, Some(toml::Value::String(s))) => {
                let label = format!("default of variable `{}`", var.name);
                let what = format!("the `default` of variable `{}`", var.name);
                Some(Value::String(inline::render_str(
                    s,
                    &ctx,
                    &label,
                    MANIFEST_FILE,
                    &what,
                )?))
            }
            (None, Some(other)) => Some(toml_to_json(other)),
            (None, None) => None,
        };
        if let Some(v) = value.and_then(|v| coerce(var, &v).ok()) {
            out.insert(var.name.clone(), v);
        }
        if let Some(r) = recorded.get(&var.name) {
            ctx.insert(var.name.clone(), r.clone());
        }
    }
    Ok(out)
}

/// The recorded answers carried into the new render (they rank as an answers file: below
/// `--set`/`--answers`, above the preset's options), with a note for everything that changed.
pub fn carry_over(
    template: &Template,
    recorded: &Map<String, Value>,
    old_version: Option<&str>,
    change: &PresetChange,
) -> Result<(Map<String, Value>, Vec<String>)> {
    let mut answers = recorded.clone();
    let mut notes = migrate(&template.manifest, &mut answers, old_version)?;
    answers.retain(|k, _| {
        let known = template.manifest.variable(k).is_some();
        if !known {
            notes.push(format!(
                "recorded answer `{k}` dropped: the template has no such variable any more"
            ));
        }
        known
    });
    if change.changed() {
        let new_options = change
            .new_preset
            .map(|id| template.catalogue.get(id).map(|p| p.options.clone()))
            .transpose()?
            .unwrap_or_default();
        let never_changed = uncustomised(template, change, recorded)?;
        answers.retain(|k, v| !new_options.contains_key(k) && never_changed.get(k) != Some(v));
    }
    Ok((answers, notes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::manifest::compare_versions;
    use crate::template::source::TemplateTree;

    fn manifest(migrations: &str) -> Result<Manifest> {
        let text = format!(
            r#"
[template]
name = "t"
version = "3.0.0"

[[variables]]
name = "database"
type = "choice"
choices = ["postgres", "sqlite"]
default = "sqlite"

[[variables]]
name = "port"
type = "integer"
default = 80

[layouts.one]
mounts = [{{ component = "app", at = "." }}]
{migrations}"#
        );
        let mut files = std::collections::BTreeMap::new();
        files.insert("stackwise.toml".to_string(), text.into_bytes().into());
        files.insert("components/app/a.txt".to_string(), b"a".to_vec().into());
        let tree = TemplateTree {
            files,
            presets: Vec::new(),
            source: "test".into(),
            revision: None,
            newer_tags: Vec::new(),
        };
        Manifest::load(&tree)
    }

    const MIGRATIONS: &str = r#"
[[migrations]]
version = "3.0.0"
set = { name = "port", value = 8080 }

[[migrations]]
version = "2.0.0"
rename = { from = "db", to = "database" }

[[migrations]]
version = "2.0.0"
drop = "legacy"
"#;

    #[test]
    fn migrations_newer_than_the_project_apply_in_version_order() {
        let m = manifest(MIGRATIONS).unwrap();
        let recorded: Map<String, Value> =
            serde_json::from_str(r#"{"db": "postgres", "legacy": true, "port": 81}"#).unwrap();

        let mut all = recorded.clone();
        let notes = migrate(&m, &mut all, Some("1.0.0")).unwrap();
        assert_eq!(
            Value::Object(all),
            serde_json::json!({"database": "postgres", "port": 8080})
        );
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert!(notes[0].contains("`db` is now `database`"), "{notes:?}");

        // A project made with 2.0.0 already had the rename and the drop.
        let mut some = recorded.clone();
        migrate(&m, &mut some, Some("2.0.0")).unwrap();
        assert_eq!(some["port"], 8080);
        assert_eq!(some["db"], "postgres");

        // Up to date: nothing applies. No version recorded: everything does.
        let mut none = recorded.clone();
        assert!(migrate(&m, &mut none, Some("3.0.0")).unwrap().is_empty());
        assert_eq!(none, recorded);
        let mut unknown = recorded;
        migrate(&m, &mut unknown, None).unwrap();
        assert_eq!(unknown["database"], "postgres");
    }

    /// A rename onto a variable the project already answers: that answer stays, and the note
    /// says the renamed one was dropped, not that it moved (it did not).
    #[test]
    fn a_rename_onto_an_answered_variable_keeps_that_answer_and_says_so() {
        let m = manifest(MIGRATIONS).unwrap();
        let mut both: Map<String, Value> = serde_json::from_str(r#"{"db": "postgres", "database": "mysql"}"#).unwrap();
        let notes = migrate(&m, &mut both, Some("1.0.0")).unwrap();
        assert_eq!(both["database"], "mysql");
        assert!(!both.contains_key("db"));
        assert!(
            notes[0].contains("already answers") && notes[0].contains("`db` is dropped") && !notes[0].contains("now"),
            "{notes:?}"
        );
        assert!(
            !notes[0].contains("postgres") && !notes[0].contains("mysql"),
            "{notes:?}"
        );
    }

    #[test]
    fn bad_migrations_are_refused_with_the_reason() {
        for (migration, reason) in [
            ("version = \"4.0.0\"\ndrop = \"x\"", "newer than the template"),
            ("version = \"one\"\ndrop = \"x\"", "not a SemVer 2.0 version"),
            (
                "version = \"1.0.0.1\"\ndrop = \"x\"",
                "unexpected character '.' after patch",
            ),
            ("version = \"01.0.0\"\ndrop = \"x\"", "leading zero"),
            ("version = \"1.0.0-\"\ndrop = \"x\"", "empty identifier"),
            (
                "version = \"99999999999999999999.0.0\"\ndrop = \"x\"",
                "exceeds u64::MAX",
            ),
            ("version = \"1.0\"\ndrop = \"x\"", "not a SemVer 2.0 version"),
            ("version = \"v1.0.0\"\ndrop = \"x\"", "not a SemVer 2.0 version"),
            ("version = \"1.0.0\"\ndrop = \"port\"", "still a variable"),
            (
                "version = \"1.0.0\"\nrename = { from = \"a\", to = \"b\" }",
                "not a variable",
            ),
            (
                "version = \"1.0.0\"\nset = { name = \"port\", value = \"x\" }",
                "is invalid",
            ),
            (
                "version = \"1.0.0\"\ndrop = \"a\"\nset = { name = \"port\", value = 1 }",
                "exactly one",
            ),
        ] {
            let err = manifest(&format!("\n[[migrations]]\n{migration}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(reason), "{migration}: {err}");
        }
    }

    #[test]
    fn versions_compare_by_semver_precedence_and_a_non_version_is_an_error() {
        use std::cmp::Ordering::*;
        assert_eq!(compare_versions("1.10.0", "1.9.9"), Ok(Greater));
        assert_eq!(compare_versions("2.0.0-rc.1", "2.0.0"), Ok(Less));
        assert_eq!(compare_versions("2.0.0+build.5", "2.0.0"), Ok(Equal));
        assert_eq!(compare_versions("2.0.0-rc.10", "2.0.0-rc.2"), Ok(Greater));
        assert_eq!(compare_versions("2.0.0-alpha.beta", "2.0.0-alpha.1"), Ok(Greater));
        for bad in [
            "1.0",
            "1.0.0.1",
            "01.0.0",
            "1.0.0-",
            "99999999999999999999.0.0",
            "v1.0.0",
            " 1.0.0",
        ] {
            let err = compare_versions(bad, "1.0.0").unwrap_err();
            assert!(err.contains("not a SemVer 2.0 version"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_recorded_version_that_is_not_semver_is_refused_not_taken_as_zero() {
        let m = manifest(MIGRATIONS).unwrap();
        let mut answers = Map::new();
        let err = migrate(&m, &mut answers, Some("2.0")).unwrap_err().to_string();
        assert!(
            err.contains("template_version \"2.0\" is not a SemVer 2.0 version"),
            "{err}"
        );
        assert!(answers.is_empty());
    }
}
