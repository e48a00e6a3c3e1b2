//! The merge engine: a new render merged into HEAD against an explicit base tree.
//!
//! git does the merge (libgit2's `merge_trees`, rename detection on); stackwise only prepares the
//! trees for its policies, decides the conflicts its policies settle and reports every path. It
//! writes nothing but git objects: [`super::apply`] leaves the repository exactly as `git merge`
//! would (the merged index, diff3 markers, `MERGE_HEAD`, `MERGE_MSG`, `ORIG_HEAD`). The base is a
//! parameter: normally the previous render commit, or a re-rendered or relocated one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use git2::build::TreeUpdateBuilder;
use git2::{Delta, DiffFindOptions, Index, IndexEntry, Oid, Repository, Tree, TreeWalkMode, TreeWalkResult};

use super::report::{FileReport, FileStatus};
use crate::error::{Error, Result};
use crate::project::record::RECORD_FILE;

/// What the merge of a render into HEAD needs besides the three trees.
pub struct MergeSpec<'a> {
    /// The tree of the base render (the previous render commit, or a re-rendered one).
    pub base: Oid,
    /// The new render commit (its tree is "theirs"; it becomes `MERGE_HEAD`).
    pub theirs: Oid,
    /// Paths whose template changes are never applied (`[update] skip`, `update = "once"`).
    pub skip: &'a dyn Fn(&str) -> bool,
    /// Paths the user deleted that come back from the render (`--restore`).
    pub restore: &'a BTreeSet<String>,
    /// The conflict label of the template side (`template <rev>`).
    pub their_label: String,
    /// The conflict label of the base (`last render (<rev>)`).
    pub ancestor_label: String,
}

/// The result of a merge in memory.
pub struct Merged {
    /// The merged index, policies applied; conflicts are left as stages.
    pub index: Index,
    pub files: Vec<FileReport>,
    /// Conflicts git did not merge line by line because `.gitattributes` says so (`merge=binary`,
    /// `-merge`, `binary`): as `git merge` does, the work tree keeps the user's file.
    pub not_merged: BTreeSet<String>,
}

impl Merged {
    pub fn has_conflicts(&self) -> bool {
        self.files.iter().any(|f| f.status == FileStatus::Conflict)
    }
}

/// The blob id and mode of every file of a tree, by path.
pub fn tree_files(tree: &Tree) -> Result<BTreeMap<String, (Oid, i32)>> {
    let mut out = BTreeMap::new();
    tree.walk(TreeWalkMode::PreOrder, |root, entry| {
        if entry.kind() == Some(git2::ObjectType::Blob)
            && let Some(name) = entry.name()
        {
            out.insert(format!("{root}{name}"), (entry.id(), entry.filemode()));
        }
        TreeWalkResult::Ok
    })?;
    Ok(out)
}

fn file_mode(mode: i32) -> git2::FileMode {
    match mode {
        0o100755 => git2::FileMode::BlobExecutable,
        0o120000 => git2::FileMode::Link,
        _ => git2::FileMode::Blob,
    }
}

/// A copy of `tree` where each path of `set` holds `ours`' version of it (or nothing). A path
/// neither side has stays absent: removing it would fail (a skipped new template file is in
/// the render's tree, not in the base's).
fn with_ours(
    repo: &Repository,
    tree: &Tree,
    set: &BTreeSet<&String>,
    ours: &BTreeMap<String, (Oid, i32)>,
) -> Result<Oid> {
    let mut b = TreeUpdateBuilder::new();
    for path in set {
        match ours.get(*path) {
            Some((id, mode)) => drop(b.upsert(path.as_str(), *id, file_mode(*mode))),
            None if tree.get_path(Path::new(path.as_str())).is_ok() => drop(b.remove(path.as_str())),
            None => {}
        }
    }
    Ok(b.create_updated(repo, tree)?)
}

fn path_of(e: &IndexEntry) -> String {
    String::from_utf8_lossy(&e.path).into_owned()
}

/// The three trees of a merge, the skip and record policies applied, and the files of the
/// original base and of ours.
struct Sides<'r> {
    base: Tree<'r>,
    ours: Tree<'r>,
    theirs: Tree<'r>,
    base_files: BTreeMap<String, (Oid, i32)>,
    ours_files: BTreeMap<String, (Oid, i32)>,
}

/// Merges `spec.theirs` into `ours` (a tree, normally HEAD's) against `spec.base`, in memory.
/// Nothing is written but git objects.
pub fn merge_in_memory(repo: &Repository, ours: Oid, spec: &MergeSpec) -> Result<Merged> {
    let mut files = Vec::new();
    let sides = prepare(repo, ours, spec, &mut files)?;
    check_submodules(repo, &sides)?;
    let mut opts = git2::MergeOptions::new();
    opts.find_renames(true).diff3_style(true);
    let mut index = repo.merge_trees(&sides.base, &sides.ours, &sides.theirs, Some(&opts))?;
    let gone = deleted_then_renamed(repo, &sides)?;
    let reported = settle_conflicts(&mut index, spec, &gone, &mut files)?;
    report_changes(repo, &sides, &reported, &mut files)?;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    check_file_dirs(&index)?;
    Ok(Merged {
        not_merged: not_merged(repo, &index)?,
        index: without_rename_records(&index)?,
        files,
    })
}

/// The conflicts of two files (not links, not submodules) that git's merge driver did not
/// merge line by line: their `merge` attribute is unset or `binary`, looked up as libgit2's
/// merge looked it up.
fn not_merged(repo: &Repository, index: &Index) -> Result<BTreeSet<String>> {
    let file = |e: &Option<IndexEntry>| e.as_ref().is_some_and(|e| matches!(e.mode, 0o100644 | 0o100755));
    let mut out = BTreeSet::new();
    for c in index.conflicts()? {
        let c = c?;
        let (Some(ours), true) = (&c.our, file(&c.our) && file(&c.their)) else {
            continue;
        };
        let path = path_of(ours);
        let attr = repo.get_attr(Path::new(&path), "merge", git2::AttrCheckFlags::FILE_THEN_INDEX)?;
        if matches!(
            git2::AttrValue::from_string(attr),
            git2::AttrValue::False | git2::AttrValue::String("binary")
        ) {
            out.insert(path);
        }
    }
    Ok(out)
}

/// Policies settled before the merge: a skipped path, and the record, look unchanged on the
/// base side, so git keeps the user's skipped file and takes the template's record cleanly.
fn prepare<'r>(repo: &'r Repository, ours: Oid, spec: &MergeSpec, files: &mut Vec<FileReport>) -> Result<Sides<'r>> {
    let base_tree = repo.find_tree(spec.base)?;
    let ours = repo.find_tree(ours)?;
    let theirs_tree = repo.find_commit(spec.theirs)?.tree()?;
    let (base_files, ours_files, theirs_files) =
        (tree_files(&base_tree)?, tree_files(&ours)?, tree_files(&theirs_tree)?);
    let skipped: BTreeSet<&String> = base_files
        .keys()
        .chain(theirs_files.keys())
        .filter(|p| p.as_str() != RECORD_FILE && (spec.skip)(p))
        .collect();
    for p in &skipped {
        if base_files.get(*p) != theirs_files.get(*p) && !files.iter().any(|f: &FileReport| &f.path == *p) {
            files.push(FileReport::new(p.as_str(), FileStatus::Skipped));
        }
    }
    let record = RECORD_FILE.to_string();
    let mut base_set = skipped.clone();
    base_set.insert(&record);
    let base = repo.find_tree(with_ours(repo, &base_tree, &base_set, &ours_files)?)?;
    let theirs = repo.find_tree(with_ours(repo, &theirs_tree, &skipped, &ours_files)?)?;
    Ok(Sides {
        base,
        ours,
        theirs,
        base_files,
        ours_files,
    })
}

/// Refuses a template change at or below one of the user's submodules: a gitlink is neither a
/// file to merge nor a directory to write into, and git's checkout of such a conflict would
/// take the submodule's working directory for something in the way.
fn check_submodules(repo: &Repository, sides: &Sides) -> Result<()> {
    let mut gitlinks = Vec::new();
    sides.ours.walk(TreeWalkMode::PreOrder, |root, entry| {
        if entry.filemode() == 0o160000
            && let Some(name) = entry.name()
        {
            gitlinks.push(format!("{root}{name}"));
        }
        TreeWalkResult::Ok
    })?;
    if gitlinks.is_empty() {
        return Ok(());
    }
    let diff = repo.diff_tree_to_tree(Some(&sides.base), Some(&sides.theirs), None)?;
    let path = |f: git2::DiffFile| f.path().map(|p| p.to_string_lossy().replace('\\', "/"));
    for delta in diff.deltas() {
        for p in [path(delta.old_file()), path(delta.new_file())].into_iter().flatten() {
            let Some(g) = gitlinks
                .iter()
                .find(|g| p == **g || p.strip_prefix(g.as_str()).is_some_and(|r| r.starts_with('/')))
            else {
                continue;
            };
            return Err(Error::refused_with(
                format!(
                    "the template changes `{p}`, and `{g}` is a submodule in your project: update never merges into a submodule"
                ),
                format!(
                    "add `{g}` to [update] skip in {RECORD_FILE} and commit, or move the submodule (git mv {g} …), then update again"
                ),
            ));
        }
    }
    Ok(())
}

/// The files the user deleted (not moved) that the template renamed: new path → old path.
fn deleted_then_renamed(repo: &Repository, sides: &Sides) -> Result<BTreeMap<String, String>> {
    let mut diff = repo.diff_tree_to_tree(Some(&sides.base), Some(&sides.theirs), None)?;
    diff.find_similar(Some(DiffFindOptions::new().renames(true)))?;
    let moved_by_user = user_renames(repo, &sides.base, &sides.ours)?;
    let path = |f: git2::DiffFile| f.path().map(|p| p.to_string_lossy().replace('\\', "/"));
    Ok(diff
        .deltas()
        .filter(|d| d.status() == Delta::Renamed)
        .filter_map(|d| Some((path(d.new_file())?, path(d.old_file())?)))
        .filter(|(_, old)| !sides.ours_files.contains_key(old) && !moved_by_user.contains_key(old))
        .collect())
}

/// Conflicts the policies settle (the record, `--restore`, kept-deleted, kept-yours); the rest
/// stay for the user. Returns every path reported. A file the user deleted that the template
/// renamed (`gone`: new path → old path) is two conflicts to git — the base at the old path,
/// the template's file at the new one — and kept deleted like any other.
fn settle_conflicts(
    index: &mut Index,
    spec: &MergeSpec,
    gone: &BTreeMap<String, String>,
    files: &mut Vec<FileReport>,
) -> Result<BTreeSet<String>> {
    let conflicts: Vec<git2::IndexConflict> = index.conflicts()?.collect::<std::result::Result<_, _>>()?;
    let renamed_from = |c: &git2::IndexConflict| match (&c.ancestor, &c.our, &c.their) {
        (None, None, Some(t)) => gone.get(&path_of(t)).cloned(),
        _ => None,
    };
    let old_paths: BTreeSet<String> = conflicts.iter().filter_map(renamed_from).collect();
    let mut reported: BTreeSet<String> = BTreeSet::new();
    for c in conflicts {
        let Some(any) = c.their.as_ref().or(c.our.as_ref()).or(c.ancestor.as_ref()) else {
            continue;
        };
        let path = path_of(any);
        reported.insert(path.clone());
        if let (Some(_), None, None) = (&c.ancestor, &c.our, &c.their)
            && old_paths.contains(&path)
        {
            // Reported at its new path, below.
            index.conflict_remove(Path::new(&path))?;
            continue;
        }
        let from = renamed_from(&c);
        let keep = |e: &IndexEntry| Some((path_of(e), e.id, e.mode));
        let (status, keep) = match (&c.ancestor, &c.our, &c.their) {
            (_, _, Some(t)) if path_of(t) == RECORD_FILE => (FileStatus::Updated, keep(t)),
            (Some(_), None, Some(t)) if spec.restore.contains(&path_of(t)) => (FileStatus::Added, keep(t)),
            (Some(_), None, Some(_)) => (FileStatus::KeptDeleted, None),
            (None, None, Some(t)) if from.is_some() && spec.restore.contains(&path_of(t)) => {
                (FileStatus::Added, keep(t))
            }
            (None, None, Some(_)) if from.is_some() => (FileStatus::KeptDeleted, None),
            (Some(_), Some(o), None) => (FileStatus::KeptYours, keep(o)),
            _ => {
                let from = c.ancestor.as_ref().map(path_of).filter(|a| *a != path);
                files.push(FileReport {
                    path,
                    status: FileStatus::Conflict,
                    from,
                });
                continue;
            }
        };
        let paths: BTreeSet<String> = [&c.ancestor, &c.our, &c.their]
            .into_iter()
            .flatten()
            .map(path_of)
            .collect();
        for p in paths {
            index.conflict_remove(Path::new(&p))?;
        }
        if let Some((p, id, mode)) = keep {
            add_to_index(index, &p, id, mode as i32)?;
        }
        files.push(FileReport { path, status, from });
    }
    Ok(reported)
}

/// Every other path the template changed, by what happened to it.
fn report_changes(
    repo: &Repository,
    sides: &Sides,
    reported: &BTreeSet<String>,
    files: &mut Vec<FileReport>,
) -> Result<()> {
    let mut diff = repo.diff_tree_to_tree(Some(&sides.base), Some(&sides.theirs), None)?;
    diff.find_similar(Some(DiffFindOptions::new().renames(true)))?;
    let moved_by_user = user_renames(repo, &sides.base, &sides.ours)?;
    // A file is its content and its mode: a mode the template or the user changed is a change.
    let ours_at = |p: &str| sides.ours_files.get(p).copied();
    let base_at = |p: &str| sides.base_files.get(p).copied();
    for delta in diff.deltas() {
        let path = |f: git2::DiffFile| f.path().map(|p| p.to_string_lossy().replace('\\', "/"));
        let (Some(new_path), Some(old_path)) = (path(delta.new_file()), path(delta.old_file())) else {
            continue;
        };
        if reported.contains(&new_path) || reported.contains(&old_path) {
            continue;
        }
        let theirs = Some((delta.new_file().id(), i32::from(delta.new_file().mode())));
        let status = match delta.status() {
            // The user made the same move already: the merge changes nothing there.
            Delta::Renamed if ours_at(&new_path) == theirs && ours_at(&old_path).is_none() => continue,
            Delta::Renamed => {
                files.push(FileReport {
                    path: new_path,
                    status: FileStatus::Renamed,
                    from: Some(old_path),
                });
                continue;
            }
            // The user already has exactly the template's new file.
            Delta::Added | Delta::Modified | Delta::Typechange if ours_at(&new_path) == theirs => continue,
            Delta::Added => FileStatus::Added,
            Delta::Deleted if ours_at(&old_path).is_none() => continue,
            Delta::Deleted => FileStatus::Removed,
            _ if ours_at(&new_path).is_some() && ours_at(&new_path) == base_at(&new_path) => FileStatus::Updated,
            // Edited by the user too.
            _ => FileStatus::Merged,
        };
        // Moved by the user: git carried the change along, to where the file is now.
        let path = match moved_by_user.get(&new_path) {
            Some(to) if ours_at(&new_path).is_none() => to.clone(),
            _ => new_path,
        };
        files.push(FileReport::new(path, status));
    }
    Ok(())
}

/// The parent directories of a path, outermost first.
pub fn parents(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

/// Refuses an index where a path is a file and a directory at once (at any stage): a file the
/// user kept where the template now has a directory, or the reverse, or a committed symlink
/// where a directory would be written through it. Returns the index's paths.
pub fn check_file_dirs(index: &Index) -> Result<BTreeSet<String>> {
    let merged: BTreeSet<String> = index.iter().map(|e| path_of(&e)).collect();
    for p in &merged {
        if let Some(file) = parents(p).find(|d| merged.contains(*d)) {
            return Err(file_dir_clash(file, p));
        }
    }
    Ok(merged)
}

fn file_dir_clash(file: &str, below: &str) -> Error {
    Error::refused_with(
        format!(
            "`{file}` would be a file and a directory at once: the merge has both `{file}` and `{below}` (a file you kept where the template now has a directory, or the reverse; or a symlink)"
        ),
        format!("rename one of them and commit (e.g. git mv {file} {file}.mine && git commit), then update again"),
    )
}

/// A copy of the merged index with its entries only. libgit2 keeps a record (the index's NAME
/// extension) of each rename conflict, naming its stages; once a policy settled such a conflict
/// the record points at entries that are gone, and writing or checking out the index fails.
fn without_rename_records(index: &Index) -> Result<Index> {
    let mut out = Index::new()?;
    for e in index.iter() {
        out.add(&e)?;
    }
    Ok(out)
}

/// The files the user renamed since the base: old path → new path.
fn user_renames(repo: &Repository, base: &Tree, ours: &Tree) -> Result<BTreeMap<String, String>> {
    let mut diff = repo.diff_tree_to_tree(Some(base), Some(ours), None)?;
    diff.find_similar(Some(DiffFindOptions::new().renames(true)))?;
    let path = |f: git2::DiffFile| f.path().map(|p| p.to_string_lossy().replace('\\', "/"));
    Ok(diff
        .deltas()
        .filter(|d| d.status() == Delta::Renamed)
        .filter_map(|d| Some((path(d.old_file())?, path(d.new_file())?)))
        .collect())
}

/// Adds a blob at stage 0 of an index — refused when a file or directory of the index is in
/// its way (an index would silently drop it).
pub fn add_to_index(index: &mut Index, path: &str, id: Oid, mode: i32) -> Result<()> {
    let below = format!("{path}/");
    let clash = index
        .iter()
        .map(|e| path_of(&e))
        .find(|p| p.starts_with(&below) || parents(path).any(|d| d == p));
    if let Some(other) = clash {
        let mut paths = BTreeSet::from([path.to_string(), other]);
        let (a, b) = (
            paths.pop_first().unwrap_or_default(),
            paths.pop_first().unwrap_or_default(),
        );
        return Err(file_dir_clash(&a, &b));
    }
    index.add(&crate::project::git::index_entry(path, id, mode as u32, None))?;
    Ok(())
}
