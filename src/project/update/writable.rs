//! Whether the merged index can be written into the work tree as it is: the file ↔ directory
//! refusals, untracked files in the way, a nested repository where the template adds a file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use git2::{Index, Oid, Repository};

use super::merge;
use super::plan::tree_paths;
use crate::error::{Error, Result};

/// Checks that the merged index can be written as it is, and returns the paths it creates.
/// Refused (exit 2, naming the path), never silently dropped: a path that is a file on one side
/// and a directory on the other (a kept file where the template now has a directory, or the
/// reverse; a committed symlink where a directory would be written through it), and an
/// untracked or ignored file, directory or symlink at a new path or at one of its parents.
pub(super) fn check_writable(repo: &Repository, index: &Index, head: Oid, root: &Path) -> Result<BTreeSet<String>> {
    let merged = merge::check_file_dirs(index)?;
    let tracked = tree_paths(repo, head)?;
    let workdir = root;
    let mut in_the_way = BTreeSet::new();
    let mut new_files = BTreeSet::new();
    for p in merged.iter().filter(|p| !tracked.contains_key(*p)) {
        new_files.insert(p.clone());
        let blocked = merge::parents(p)
            .filter(|d| !tracked.contains_key(*d))
            .find(|d| std::fs::symlink_metadata(workdir.join(d)).is_ok_and(|m| !m.is_dir()));
        // An untracked directory that is a git repository of its own (a tool cloned into the
        // project): git will not add a file inside it, so the update could never commit one.
        let nested = merge::parents(p)
            .filter(|d| !tracked.contains_key(*d))
            .find(|d| std::fs::symlink_metadata(workdir.join(d).join(".git")).is_ok());
        if let Some(d) = nested {
            return Err(Error::refused_with(
                format!("{d}/ is a git repository of its own (untracked here), and the template adds {p} inside it"),
                format!(
                    "move {d}/ out of the project, or add \"{p}\" to `skip` in the [update] table of .stackwise.toml"
                ),
            ));
        }
        if let Some(d) = blocked {
            in_the_way.insert(d.to_string());
        } else if let Ok(meta) = std::fs::symlink_metadata(workdir.join(p)) {
            // A directory of tracked files the merge removes (the template turned a directory
            // into a file) goes with them; anything else in it is in the way.
            match meta.is_dir() {
                true => in_the_way.extend(left_in(workdir, p, &tracked, &merged)?),
                false => drop(in_the_way.insert(p.clone())),
            }
        }
    }
    if !in_the_way.is_empty() {
        let list: Vec<&str> = in_the_way.iter().map(String::as_str).collect();
        return Err(Error::refused(format!(
            "untracked files are where the template's new files go ({}): move them away or commit them first (ignored files and symlinks count too)",
            list.join(", ")
        )));
    }
    Ok(new_files)
}

/// What stays in the work tree's directory `dir` once the files of HEAD the merge removes are
/// gone: untracked or ignored files, symlinks, empty directories, files the merge keeps, and
/// submodules (never removed).
fn left_in(root: &Path, dir: &str, tracked: &BTreeMap<String, i32>, merged: &BTreeSet<String>) -> Result<Vec<String>> {
    let mut left = Vec::new();
    let entries = std::fs::read_dir(root.join(dir)).map_err(|e| Error::io(root.join(dir), e))?;
    let mut empty = true;
    for entry in entries {
        empty = false;
        let entry = entry.map_err(|e| Error::io(root.join(dir), e))?;
        let rel = format!("{dir}/{}", entry.file_name().to_string_lossy());
        let is_dir = entry.file_type().map_err(|e| Error::io(entry.path(), e))?.is_dir();
        if is_dir && !tracked.contains_key(&rel) {
            left.extend(left_in(root, &rel, tracked, merged)?);
        } else if tracked.get(&rel).is_none_or(|mode| *mode == 0o160000) || merged.contains(&rel) {
            left.push(rel);
        }
    }
    if empty {
        left.push(dir.to_string());
    }
    Ok(left)
}
