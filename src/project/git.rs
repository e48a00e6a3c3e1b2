//! The project's repository (git2, no `git` binary needed): render commits, the initial commit of
//! `new`, and the plumbing `update` needs. **Every commit and ref stackwise writes is written
//! here** (`new`'s render and lockfile commits; `update`'s render commit, move-only commit, merge
//! commit, restore and lockfile commits; `refs/stackwise/pending`), so what a commit holds is
//! always a tree the caller computed, never whatever the index happens to contain.
//!
//! A **render commit** holds the pure output of the template plus `.stackwise.toml`, and a
//! `Stackwise-Render:` trailer; its parent is the previous render commit. Trees are written from
//! memory (blobs + an in-memory index), never by scanning the work tree.

use std::path::Path;

use git2::{Index, IndexEntry, IndexTime, Oid, Repository, Signature};

use super::record::TemplateInfo;
use crate::error::{Error, Result};
use crate::template::render::RenderedFile;

/// A revision as stackwise shows it: a commit id (or a `sha256:` digest of a local template) cut
/// to 12 characters. The one short form every message and report uses.
pub fn short_revision(rev: &str) -> String {
    rev.strip_prefix("sha256:").unwrap_or(rev).chars().take(12).collect()
}

/// The trailer that marks a render commit.
pub const RENDER_TRAILER: &str = "Stackwise-Render";
/// The trailer of the merge commit `update` makes.
pub const UPDATE_TRAILER: &str = "Stackwise-Update";
/// Keeps the render commit of an update in progress alive until it is merged or aborted.
pub const PENDING_REF: &str = "refs/stackwise/pending";
/// The pending ref of the work tree `repo` was opened in: [`PENDING_REF`] for the main one,
/// `refs/stackwise/worktrees/<name>/pending` for a linked one, so that one work tree's update
/// never ends another's. (Not git's per-work-tree `refs/worktree/`: `git gc` run in another
/// work tree does not count those as reachable, and would prune the render.)
pub fn pending_ref(repo: &Repository) -> String {
    if !repo.is_worktree() {
        return PENDING_REF.to_string();
    }
    // A linked work tree's git directory is `.git/worktrees/<name>/`.
    let name = repo
        .path()
        .file_name()
        .map(|n| n.as_encoded_bytes().to_vec())
        .unwrap_or_default();
    let named = format!("refs/stackwise/worktrees/{}/pending", String::from_utf8_lossy(&name));
    if git2::Reference::is_valid_name(&named) {
        named
    } else {
        let hex: String = name.iter().map(|b| format!("{b:02x}")).collect();
        format!("refs/stackwise/worktrees/{hex}/pending")
    }
}

const MODE_FILE: u32 = 0o100644;
const MODE_EXEC: u32 = 0o100755;

/// Who authors and who commits stackwise's commits, as git decides (libgit2's default signature
/// reads the configuration only): `GIT_AUTHOR_NAME`/`GIT_AUTHOR_EMAIL`
/// (`GIT_COMMITTER_…` for the committer) over `author.name`/`author.email`
/// (`committer.…`) over `user.name`/`user.email`, the email last from `EMAIL` — what CI jobs
/// and scripts set instead of a configuration. Without a name and an email, the fallback
/// `stackwise <stackwise@localhost>`, and `true`.
pub fn identity(repo: &Repository) -> (Signature<'static>, Signature<'static>, bool) {
    let config = repo.config().ok();
    let person = |role: &str| {
        let env = |k: String| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let get = |k: String| {
            config
                .as_ref()
                .and_then(|c| c.get_string(&k).ok())
                .filter(|v| !v.trim().is_empty())
        };
        let upper = role.to_uppercase();
        let name = env(format!("GIT_{upper}_NAME"))
            .or_else(|| get(format!("{role}.name")))
            .or_else(|| get("user.name".into()))?;
        let email = env(format!("GIT_{upper}_EMAIL"))
            .or_else(|| get(format!("{role}.email")))
            .or_else(|| get("user.email".into()))
            .or_else(|| env("EMAIL".into()))?;
        Signature::now(&name, &email).ok()
    };
    match (person("author"), person("committer")) {
        (Some(a), Some(c)) => (a, c, false),
        _ => {
            let fallback = Signature::now("stackwise", "stackwise@localhost").expect("a valid fallback signature");
            (fallback.clone(), fallback, true)
        }
    }
}

/// What a command says when its commits were authored by the fallback of [`identity`].
pub const DEFAULT_AUTHOR_NOTE: &str = "no git identity (user.name, user.email) is configured: the commits are authored by `stackwise <stackwise@localhost>`";

/// The first commit of a new repository, and whether its author is the fallback of
/// [`signature`] (no git identity configured), which the user is told.
#[derive(Debug, Clone)]
pub struct RenderCommit {
    pub id: String,
    pub default_author: bool,
}

/// A trailer value, quoted when it holds a space.
fn trailer_value(v: &str) -> String {
    if v.chars().any(char::is_whitespace) || v.contains('"') {
        format!("{v:?}")
    } else {
        v.to_string()
    }
}

/// The message of a render commit.
pub fn render_message(info: &TemplateInfo, layout: &str, preset: Option<&str>) -> String {
    let version = info.version.as_deref().map(|v| format!(" {v}")).unwrap_or_default();
    format!(
        "stackwise: render of {}{version}\n\nThe template's output alone (layout {layout}, preset {}); `stackwise update` merges\nthe next render with this one as the base.\n\n{RENDER_TRAILER}: template={} revision={} layout={} preset={}\n",
        info.template,
        preset.unwrap_or("none"),
        trailer_value(&info.template),
        trailer_value(&info.revision),
        trailer_value(layout),
        trailer_value(preset.unwrap_or("none")),
    )
}

/// Whether a commit message carries `key:` as a trailer line.
pub fn has_trailer(message: &str, key: &str) -> bool {
    message
        .lines()
        .any(|l| l.strip_prefix(key).is_some_and(|rest| rest.starts_with(": ")))
}

/// An index entry at stage 0; with `meta`, the file's stat data.
pub fn index_entry(path: &str, id: Oid, mode: u32, meta: Option<&std::fs::Metadata>) -> IndexEntry {
    let mut e = IndexEntry {
        ctime: IndexTime::new(0, 0),
        mtime: IndexTime::new(0, 0),
        dev: 0,
        ino: 0,
        mode,
        uid: 0,
        gid: 0,
        file_size: 0,
        id,
        flags: 0,
        flags_extended: 0,
        path: path.as_bytes().to_vec(),
    };
    #[cfg(unix)]
    if let Some(m) = meta {
        // The file's stat data, so `git status` trusts the entry without reading the file.
        use std::os::unix::fs::MetadataExt;
        e.ctime = IndexTime::new(m.ctime() as i32, m.ctime_nsec() as u32);
        e.mtime = IndexTime::new(m.mtime() as i32, m.mtime_nsec() as u32);
        e.dev = m.dev() as u32;
        e.ino = m.ino() as u32;
        e.uid = m.uid();
        e.gid = m.gid();
        e.file_size = m.size() as u32;
    }
    #[cfg(not(unix))]
    if let Some(m) = meta {
        e.file_size = m.len() as u32;
    }
    e
}

fn mode_of(f: &RenderedFile) -> u32 {
    if f.executable { MODE_EXEC } else { MODE_FILE }
}

/// Writes every rendered file as a blob and returns the id of the tree holding them all.
pub fn write_tree(repo: &Repository, files: &[RenderedFile]) -> Result<Oid> {
    let mut index = Index::new()?;
    for f in files {
        let id = repo.blob(&f.bytes)?;
        index.add(&index_entry(&f.path, id, mode_of(f), None))?;
    }
    Ok(index.write_tree_to(repo)?)
}

/// Writes a render commit of `files` with the given parent, on no branch; returns its id.
pub fn write_render_commit(
    repo: &Repository,
    files: &[RenderedFile],
    message: &str,
    parent: Option<Oid>,
) -> Result<Oid> {
    let tree = repo.find_tree(write_tree(repo, files)?)?;
    let (author, committer, _) = identity(repo);
    let parents = match parent {
        Some(p) => vec![repo.find_commit(p)?],
        None => Vec::new(),
    };
    let refs: Vec<&git2::Commit> = parents.iter().collect();
    Ok(repo.commit(None, &author, &committer, message, &tree, &refs)?)
}

/// The blobs of a new project's files, hashed into an object database of their own, in memory,
/// before its repository exists: hashing every byte (libgit2's SHA-1 with collision detection)
/// is most of the CPU time of a new repository, and it needs nothing but the rendered files, so
/// `new` does it on another thread while it writes the files. No disk is touched.
pub struct RenderBlobs {
    scratch: Repository,
    /// The blob id of each file, in the order of the files.
    ids: Vec<Oid>,
    /// The new project's (empty) repository, when [`render_blobs_and_init`] created it too.
    repo: Option<Repository>,
}

/// Hashes `files` as blobs into a [`RenderBlobs`] (see there).
pub fn render_blobs(files: &[RenderedFile]) -> Result<RenderBlobs> {
    let scratch = Repository::from_odb(git2::Odb::new()?)?;
    let objects = scratch.odb()?;
    objects.add_new_mempack_backend(1)?;
    let ids = files
        .iter()
        .map(|f| objects.write(git2::ObjectType::Blob, &f.bytes))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    drop(objects);
    Ok(RenderBlobs {
        scratch,
        ids,
        repo: None,
    })
}

/// [`render_blobs`], then the new project's empty repository in `dir` too: libgit2 writes its
/// skeleton and probes the file system (~5 ms on a disk here, more than all that follows), and
/// that can happen while the project's files are written beside it.
pub fn render_blobs_and_init(files: &[RenderedFile], dir: &Path) -> Result<RenderBlobs> {
    let mut blobs = render_blobs(files)?;
    blobs.repo = Some(init_repository(dir)?);
    Ok(blobs)
}

/// An empty repository in `dir` whose first branch will be `main`, seeded as [`init_templates`]
/// says.
fn init_repository(dir: &Path) -> Result<Repository> {
    let mut opts = git2::RepositoryInitOptions::new();
    opts.initial_head("main");
    init_templates(&mut opts);
    Ok(Repository::init_opts(dir, &opts)?)
}

/// Creates the repository of a new project in `dir` (branch `main`) whose first commit is the
/// render commit of `files`, written from memory; the index matches the files on disk (with
/// their stat data), so `git status` is clean at once. Returns the commit id.
pub fn init_with_render(dir: &Path, files: &[RenderedFile], message: &str) -> Result<String> {
    Ok(init_with_render_blobs(dir, files, message, render_blobs(files)?)?.id)
}

/// [`init_with_render`] with the files' blobs already hashed by [`render_blobs`] (of these same
/// `files`), or by [`render_blobs_and_init`] (with `dir`) which also created the repository.
///
/// The objects are built in an object database of their own, in memory, and written to the
/// repository as one pack file ([`write_pack`]) rather than a loose file each: a new project
/// has a hundred objects, and a file per object (create, link, stamp, in a directory of its own)
/// costs several times the whole render. Building them in the repository's own database would
/// ask its disk, for every new object, whether it holds it already (a stat, a scan of the pack
/// directory and a touch, each time).
pub fn init_with_render_blobs(
    dir: &Path,
    files: &[RenderedFile],
    message: &str,
    blobs: RenderBlobs,
) -> Result<RenderCommit> {
    let RenderBlobs { scratch, ids, repo } = blobs;
    let objects = scratch.odb()?;
    // (A cheap check that they are: one blob of the same size per file; and a repository made
    // beforehand is the one of `dir`.)
    let same = ids.len() == files.len()
        && files
            .iter()
            .zip(&ids)
            .all(|(f, id)| objects.read_header(*id).is_ok_and(|(size, _)| size == f.bytes.len()));
    let here = |r: &Repository| r.workdir().and_then(|w| w.canonicalize().ok()) == dir.canonicalize().ok();
    if !same || repo.as_ref().is_some_and(|r| !here(r)) {
        return Err(git2::Error::from_str("the hashed blobs are not those of the files").into());
    }
    let repo = match repo {
        Some(repo) => repo,
        None => init_repository(dir)?,
    };
    // The repository's index file, not bound to the repository: an index that is would look
    // each blob up on the repository's disk, where it is not yet.
    let mut index = Index::open(&repo.path().join("index"))?;
    let mut blobs = std::collections::HashMap::with_capacity(files.len());
    for (f, id) in files.iter().zip(ids) {
        blobs.insert(id, f.bytes.as_slice());
        let meta = std::fs::symlink_metadata(dir.join(&f.path)).ok();
        index.add(&index_entry(&f.path, id, mode_of(f), meta.as_ref()))?;
    }
    let tree = scratch.find_tree(index.write_tree_to(&scratch)?)?;
    let (author, committer, default_author) = identity(&repo);
    let oid = scratch.commit(None, &author, &committer, message, &tree, &[])?;
    // Every object: the commit, its tree, and each tree and blob below (deduplicated).
    let mut ids = std::collections::BTreeSet::from([oid, tree.id()]);
    tree.walk(git2::TreeWalkMode::PreOrder, |_, entry| {
        ids.insert(entry.id());
        git2::TreeWalkResult::Ok
    })?;
    write_pack(repo.path(), &objects, &blobs, &ids)?;
    repo.reference("refs/heads/main", oid, false, "stackwise new: render commit")?;
    index.write()?;
    Ok(RenderCommit {
        id: oid.to_string(),
        default_author,
    })
}

/// Chooses what a new repository is seeded with, as `git init` would: the template directory the
/// user named (`GIT_TEMPLATE_DIR`, else `init.templateDir` of their git configuration) when there
/// is one, copied whole (a team's shared hooks live there). Without one, git copies its own
/// sample hooks (a dozen `*.sample` files nothing runs); libgit2's minimal skeleton (description,
/// `info/exclude`, one hooks README) is written instead: a file in `.git` costs a new project about
/// as much as one of its own files.
fn init_templates(opts: &mut git2::RepositoryInitOptions) {
    if let Some(dir) = std::env::var_os("GIT_TEMPLATE_DIR").filter(|d| !d.is_empty()) {
        opts.template_path(Path::new(&dir));
        return;
    }
    let configured = git2::Config::open_default()
        .and_then(|c| c.get_path("init.templatedir"))
        .is_ok();
    opts.external_template(configured);
}

/// Writes the objects `ids` of `from` (here: the in-memory ones of a new repository; the
/// contents of the blobs as given in `blobs`) into `git_dir` as one pack and its index, without
/// deltas and with stored (uncompressed) zlib streams: nothing to search or compress, so writing
/// it costs little more than its bytes. `git gc` compresses it whenever it repacks.
///
/// The index (`.idx`, version 2) is written here too, from what writing the pack knows already
/// (each object's id, offset and CRC-32): libgit2's indexer would read the whole pack back and
/// hash every object again, most of the cost of the repository.
fn write_pack(
    git_dir: &Path,
    from: &git2::Odb,
    blobs: &std::collections::HashMap<Oid, &[u8]>,
    ids: &std::collections::BTreeSet<Oid>,
) -> Result<()> {
    use sha1::Digest;
    let mut pack = Vec::new();
    pack.extend_from_slice(b"PACK");
    pack.extend_from_slice(&2u32.to_be_bytes());
    pack.extend_from_slice(&(ids.len() as u32).to_be_bytes());
    // (id, CRC-32 of the entry as packed, offset of the entry), in the order of the ids.
    let mut entries = Vec::with_capacity(ids.len());
    for id in ids {
        let offset = pack.len();
        // A blob's bytes are at hand (reading it back would hash it again); the trees and the
        // commit are read.
        let read;
        let (kind, data): (usize, &[u8]) = match blobs.get(id) {
            Some(bytes) => (3, bytes),
            None => {
                read = from.read(*id)?;
                let kind = match read.kind() {
                    git2::ObjectType::Commit => 1,
                    git2::ObjectType::Tree => 2,
                    git2::ObjectType::Blob => 3,
                    _ => 4,
                };
                (kind, read.data())
            }
        };
        // Entry header: type and size, 4 bits of size in the first byte, then 7 bits a byte.
        let mut size = data.len() >> 4;
        let mut byte = (kind << 4 | (data.len() & 0x0f)) as u8;
        while size > 0 {
            pack.push(byte | 0x80);
            byte = (size & 0x7f) as u8;
            size >>= 7;
        }
        pack.push(byte);
        zlib_stored(&mut pack, data);
        entries.push((*id, crc32fast::hash(&pack[offset..]), offset as u64));
    }
    let checksum = sha1::Sha1::digest(&pack);
    pack.extend_from_slice(&checksum);
    let idx = pack_index(&entries, &checksum);

    // The pack first: a pack is found by its index.
    let name: String = checksum.iter().map(|b| format!("{b:02x}")).collect();
    let dir = git_dir.join("objects").join("pack");
    for (ext, bytes) in [("pack", &pack), ("idx", &idx)] {
        let path = dir.join(format!("pack-{name}.{ext}"));
        std::fs::write(&path, bytes).map_err(|e| crate::error::Error::io(&path, e))?;
        // Read-only, as git leaves its packs.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444))
                .map_err(|e| crate::error::Error::io(&path, e))?;
        }
    }
    Ok(())
}

/// The index (`.idx`, version 2) of a pack whose entries are `entries` (id, CRC-32, offset, in
/// the order of the ids) and whose checksum is `checksum`.
fn pack_index(entries: &[(Oid, u32, u64)], checksum: &[u8]) -> Vec<u8> {
    use sha1::Digest;
    // The index: a fan-out table of the first bytes of the ids, the sorted ids (a BTreeSet of
    // ids is sorted as bytes), their CRCs, their offsets (31 bits, or an index into a table of
    // 64-bit ones), the pack's checksum, and its own.
    let mut idx = Vec::with_capacity(8 + 256 * 4 + entries.len() * 28 + 40);
    idx.extend_from_slice(b"\xfftOc");
    idx.extend_from_slice(&2u32.to_be_bytes());
    let mut fanout = [0u32; 256];
    for (id, _, _) in entries {
        fanout[usize::from(id.as_bytes()[0])] += 1;
    }
    let mut total = 0;
    for count in fanout {
        total += count;
        idx.extend_from_slice(&total.to_be_bytes());
    }
    for (id, _, _) in entries {
        idx.extend_from_slice(id.as_bytes());
    }
    for (_, crc, _) in entries {
        idx.extend_from_slice(&crc.to_be_bytes());
    }
    let mut large = Vec::new();
    for (_, _, offset) in entries {
        let small = match u32::try_from(*offset) {
            Ok(o) if o < 0x8000_0000 => o,
            _ => {
                large.push(*offset);
                0x8000_0000 | (large.len() as u32 - 1)
            }
        };
        idx.extend_from_slice(&small.to_be_bytes());
    }
    for offset in large {
        idx.extend_from_slice(&offset.to_be_bytes());
    }
    idx.extend_from_slice(checksum);
    let own = sha1::Sha1::digest(&idx);
    idx.extend_from_slice(&own);

    idx
}

/// A zlib stream of stored blocks (RFC 1950/1951, no compression).
fn zlib_stored(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(&[0x78, 0x01]);
    let mut chunks = data.chunks(0xffff).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        out.push(u8::from(chunks.peek().is_none()));
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for block in data.chunks(5552) {
        for &byte in block {
            a += u32::from(byte);
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    out.extend_from_slice(&(b << 16 | a).to_be_bytes());
}

/// Commits every file of `dir` that is neither ignored nor committed yet (the lockfiles that
/// `--install` wrote) on top of HEAD. Returns the commit id, or None when there was nothing new.
pub fn commit_new_files(dir: &Path, message: &str) -> Result<Option<String>> {
    let repo = Repository::open(dir)?;
    let mut index = repo.index()?;
    index.add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)?;
    let tree_id = index.write_tree()?;
    let head = repo.head()?.peel_to_commit()?;
    if head.tree_id() == tree_id {
        return Ok(None);
    }
    index.write()?;
    Ok(Some(
        commit_on_head(&repo, head.id(), tree_id, &[], message)?.to_string(),
    ))
}

/// Commits `tree` on top of `head` (then `others` as further parents) and moves HEAD's branch (or
/// a detached HEAD) to it — only if it is still at `head`, compared and set under the ref's lock
/// as git does. `head` is the commit the caller computed `tree` from: a commit made meanwhile (in
/// another terminal, by an editor) is neither built upon with a tree that lacks its changes nor
/// dropped; the caller gets [`Error::HeadMoved`] and nothing moved.
pub fn commit_on_head(repo: &Repository, head: Oid, tree: Oid, others: &[Oid], message: &str) -> Result<Oid> {
    let tree = repo.find_tree(tree)?;
    let mut parents = vec![repo.find_commit(head)?];
    for id in others {
        parents.push(repo.find_commit(*id)?);
    }
    let refs: Vec<&git2::Commit> = parents.iter().collect();
    let (author, committer, _) = identity(repo);
    let id = repo.commit(None, &author, &committer, message, &tree, &refs)?;
    let name = repo
        .find_reference("HEAD")?
        .symbolic_target()
        .unwrap_or("HEAD")
        .to_string();
    let summary = message.lines().next().unwrap_or_default();
    match repo.reference_matching(&name, id, true, head, &format!("commit: {summary}")) {
        Ok(_) => Ok(id),
        Err(e) if e.code() == git2::ErrorCode::Modified => {
            let now = repo
                .refname_to_id(&name)
                .map(|o| short_revision(&o.to_string()))
                .unwrap_or_default();
            Err(Error::HeadMoved {
                was: short_revision(&head.to_string()),
                now,
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Keeps the render commit of an update alive (the work tree's [`pending_ref`]) until it is
/// merged.
pub fn set_pending(repo: &Repository, render: Oid) -> Result<()> {
    repo.reference(&pending_ref(repo), render, true, "stackwise update: render to merge")?;
    Ok(())
}

/// Removes the work tree's [`pending_ref`]; true when there was one.
pub fn clear_pending(repo: &Repository) -> Result<bool> {
    match repo.find_reference(&pending_ref(repo)) {
        Ok(mut r) => {
            r.delete()?;
            Ok(true)
        }
        Err(_) => Ok(false),
    }
}

/// Moves the current branch (and the index and work tree, forcibly) back to `to`.
pub fn reset_hard(repo: &Repository, to: Oid) -> Result<()> {
    let obj = repo.find_object(to, None)?;
    let mut co = git2::build::CheckoutBuilder::new();
    co.force();
    repo.reset(&obj, git2::ResetType::Hard, Some(&mut co))?;
    Ok(())
}

/// The newest commit reachable from `from` that is a render commit.
pub fn find_render_commit(repo: &Repository, from: Oid) -> Result<Option<Oid>> {
    let mut walk = repo.revwalk()?;
    walk.push(from)?;
    walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::TIME)?;
    for id in walk {
        let id = id?;
        let commit = repo.find_commit(id)?;
        if has_trailer(&String::from_utf8_lossy(commit.message_bytes()), RENDER_TRAILER) {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

#[cfg(test)]
#[path = "git_tests.rs"]
mod tests;
