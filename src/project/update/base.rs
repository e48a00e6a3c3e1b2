//! The base of an update's merge: the newest render commit reachable from HEAD, or the recorded
//! revision rendered again with the recorded answers (squash-merged updates, old projects).

use std::path::Path;

use git2::{Oid, Repository};
use serde_json::Map;

use super::repo;
use crate::error::{Error, Result};
use crate::project::git;
use crate::project::record::{self, ProjectRecord, RECORD_FILE, TemplateInfo};
use crate::template::names::ProjectName;
use crate::template::prompter::NoPrompt;
use crate::template::source::TemplateSource;
use crate::template::{Template, render_project};

/// The render of the recorded template revision with the recorded answers, as a render commit
/// without parent; `Err(reason)` when that revision cannot be had any more.
fn rerender_base(repo: &Repository, rec: &ProjectRecord) -> Result<std::result::Result<Oid, String>> {
    let source = match rec.info.source() {
        TemplateSource::Git { url, subdir, .. } => TemplateSource::Git {
            url,
            reference: Some(rec.info.revision.clone()),
            subdir,
        },
        other => other,
    };
    let template = match Template::load(&source) {
        Ok(t) => t,
        Err(e) => return Ok(Err(format!("{} cannot be read: {e}", source.describe()))),
    };
    let info = TemplateInfo::of(&template, &source);
    // Projects generated before revisions were digests recorded `stackwise X` for the built-in
    // template: that is this binary's template when X is this version.
    let legacy_builtin =
        source == TemplateSource::Builtin && rec.info.revision == format!("stackwise {}", env!("CARGO_PKG_VERSION"));
    if info.revision != rec.info.revision && !legacy_builtin {
        return Ok(Err(format!(
            "{} now holds revision {}, not the recorded {}",
            source.describe(),
            info.revision,
            rec.info.revision
        )));
    }
    let mut answers = rec.answers.clone();
    answers.retain(|k, _| template.manifest.variable(k).is_some());
    let preset = rec.preset.clone().filter(|p| template.catalogue.get(p).is_ok());
    let name = ProjectName::parse(&rec.name)?;
    let mut rendered = render_project(
        &template,
        name,
        preset,
        rec.layout.clone(),
        Map::new(),
        answers,
        &mut NoPrompt,
    )?;
    record::add_to(&mut rendered, &template, &rec.info, Some(&rec.update));
    let msg = git::render_message(&rec.info, &rendered.layout, rendered.preset.as_deref());
    Ok(Ok(git::write_render_commit(repo, &rendered.files, &msg, None)?))
}

/// The base of the merge: the newest render commit reachable from HEAD, unless the project's
/// record is at another revision (a squash-merged update), where the recorded revision is
/// rendered again. Returns the base commit and a note when it is not the plain case.
pub fn find_base(repo: &Repository, head: Oid, rec: &ProjectRecord) -> Result<(Oid, Option<String>)> {
    let found = git::find_render_commit(repo, head)?;
    if let Some(r) = found
        && repo::record_at(repo, r).is_some_and(|at| at.info.revision == rec.info.revision && at.name == rec.name)
    {
        return Ok((r, None));
    }
    match (rerender_base(repo, rec)?, found) {
        (Ok(base), _) => Ok((
            base,
            Some(format!(
                "no render commit of revision {} in the history ({}): the base is that revision rendered again with the recorded answers",
                rec.info.revision,
                if repo.is_shallow() {
                    "a shallow clone: `git fetch --unshallow` brings the rest of the history"
                } else {
                    "a squash-merged update, or a project from before render commits"
                }
            )),
        )),
        (Err(why), Some(r)) => Ok((
            r,
            Some(format!(
                "the newest render commit ({}) is older than the record, and the recorded revision cannot be rendered again ({why}); it is the base, so changes already taken may show as conflicts",
                repo::short(r)
            )),
        )),
        (Err(why), None) if repo.is_shallow() => Err(Error::refused_with(
            format!(
                "no render commit in the history of this shallow clone (it may be in the commits left out), and the recorded revision cannot be rendered again as the merge base: {why}"
            ),
            "fetch the whole history (`git fetch --unshallow`), then update",
        )),
        (Err(why), None) => Err(Error::refused_with(
            format!(
                "no render commit in the history, and the recorded revision cannot be rendered again as the merge base: {why}"
            ),
            format!(
                "make {} hold revision {} again (check out that version of the template), then update",
                rec.info.template, rec.info.revision
            ),
        )),
    }
}

/// Whether two render trees differ in anything but the stackwise version in the record.
pub fn same_render(repo: &Repository, a: Oid, b: Oid) -> Result<bool> {
    if a == b {
        return Ok(true);
    }
    let (ta, tb) = (repo.find_tree(a)?, repo.find_tree(b)?);
    let diff = repo.diff_tree_to_tree(Some(&ta), Some(&tb), None)?;
    if diff
        .deltas()
        .any(|d| d.new_file().path() != Some(Path::new(RECORD_FILE)))
    {
        return Ok(false);
    }
    let text = |t: &git2::Tree| -> Result<String> {
        let blob = repo.find_blob(t.get_path(Path::new(RECORD_FILE))?.id())?;
        Ok(String::from_utf8_lossy(blob.content())
            .lines()
            .filter(|l| !l.starts_with("stackwise_version"))
            .collect::<Vec<_>>()
            .join("\n"))
    };
    Ok(text(&ta)? == text(&tb)?)
}
