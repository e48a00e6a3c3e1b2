//! The git attributes a project will have once the update is written. A template version may add
//! or change a `.gitattributes` (`*.bin filter=lfs`): asked before anything is written, the
//! project's repository answers with the attributes from before the update, so a check that
//! depends on them (the filter drivers of `policy::check_filters`) must ask the result instead.

use std::collections::BTreeMap;
use std::path::Path;

use git2::{Repository, TreeWalkMode, TreeWalkResult};

use super::plan::Work;
use crate::error::{Error, Result};

const FILE: &str = ".gitattributes";

pub fn is_attributes(path: &str) -> bool {
    path == FILE || path.ends_with("/.gitattributes")
}

/// A scratch repository whose attribute sources are the project's once the update is written:
/// every `.gitattributes` of the result, the project's `info/attributes` and its
/// `core.attributesFile` (the global and system sources are this machine's, read by both).
/// libgit2 answers attribute questions about paths that need not exist, so nothing else is
/// copied. Dropped with its directory.
pub struct AttributesAfter {
    _dir: tempfile::TempDir,
    pub repo: Repository,
}

/// The attributes after `work`, or None when it writes no `.gitattributes` (those of the
/// project as it is are the ones that will apply). `written`: the repository paths it writes.
pub fn after(project: &Repository, work: &Work, written: &[String]) -> Result<Option<AttributesAfter>> {
    if !written.iter().any(|p| is_attributes(p)) {
        return Ok(None);
    }
    let files = result_files(project, work, written)?;
    scratch(&files, Some(project)).map(Some)
}

/// The scratch repository for `files` (`.gitattributes` files by repository path), with
/// `project`'s own attribute sources when there is a project (`new` has none yet).
pub fn scratch<'a>(
    files: impl IntoIterator<Item = (&'a String, &'a Vec<u8>)>,
    project: Option<&Repository>,
) -> Result<AttributesAfter> {
    let dir = tempfile::Builder::new()
        .prefix(".stackwise-attributes-")
        .tempdir()
        .map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let repo = Repository::init(dir.path())?;
    for (path, content) in files {
        write(&dir.path().join(path), content)?;
    }
    let Some(project) = project else {
        return Ok(AttributesAfter { _dir: dir, repo });
    };
    let info = project.commondir().join("info").join("attributes");
    if let Ok(content) = std::fs::read(&info) {
        write(&repo.path().join("info").join("attributes"), &content)?;
    }
    if let Ok(path) = project.config()?.get_path("core.attributesFile") {
        let path = match project.workdir() {
            Some(root) if path.is_relative() => root.join(path),
            _ => path,
        };
        repo.config()?.set_str("core.attributesFile", &path.to_string_lossy())?;
    }
    Ok(AttributesAfter { _dir: dir, repo })
}

fn write(to: &Path, content: &[u8]) -> Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    std::fs::write(to, content).map_err(|e| Error::io(to, e))
}

/// Every `.gitattributes` of the result, by repository path: the project's tracked ones as they
/// are on disk (uncommitted edits apply to git as well), replaced or removed where `work` writes
/// them. A conflicted one counts as the template's side: that is the side that may add a filter.
fn result_files(project: &Repository, work: &Work, written: &[String]) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut files = BTreeMap::new();
    let root = project.workdir().unwrap_or(project.path());
    for entry in project.index()?.iter() {
        let path = String::from_utf8_lossy(&entry.path).into_owned();
        if is_attributes(&path) {
            let content = match std::fs::read(root.join(&path)) {
                Ok(c) => c,
                Err(_) => project.find_blob(entry.id)?.content().to_vec(),
            };
            files.insert(path, content);
        }
    }
    let mut new = BTreeMap::new();
    match work {
        Work::Nothing => {}
        Work::Restore { tree, .. } => {
            let mut ids = Vec::new();
            project.find_tree(*tree)?.walk(TreeWalkMode::PreOrder, |dir, e| {
                let path = format!("{dir}{}", e.name().unwrap_or_default());
                if is_attributes(&path) {
                    ids.push((path, e.id()));
                }
                TreeWalkResult::Ok
            })?;
            for (path, id) in ids {
                new.insert(path, project.find_blob(id)?.content().to_vec());
            }
        }
        Work::Merge(m) => {
            for e in m.index.iter() {
                let path = String::from_utf8_lossy(&e.path).into_owned();
                let stage = (e.flags >> 12) & 3;
                if is_attributes(&path) && (stage == 0 || stage == 3) {
                    new.insert(path, project.find_blob(e.id)?.content().to_vec());
                }
            }
        }
    }
    for path in written.iter().filter(|p| is_attributes(p)) {
        match new.remove(path) {
            Some(content) => files.insert(path.clone(), content),
            None => files.remove(path),
        };
    }
    Ok(files)
}
