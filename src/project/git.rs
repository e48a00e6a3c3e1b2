//! `git init` and the initial commit of a generated project (git2, no `git` binary needed).

use std::path::Path;

use crate::error::Result;

/// Creates a repository on branch `main` and commits every file that is not ignored.
/// The author comes from the user's git configuration, with a fallback identity.
/// Returns the commit id.
pub fn init_and_commit(dir: &Path, message: &str) -> Result<String> {
    let mut opts = git2::RepositoryInitOptions::new();
    opts.initial_head("main");
    let repo = git2::Repository::init_opts(dir, &opts)?;
    let mut index = repo.index()?;
    index.add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)?;
    index.write()?;
    let tree_id = index.write_tree()?;
    let tree = repo.find_tree(tree_id)?;
    let sig = repo
        .signature()
        .or_else(|_| git2::Signature::now("stackwise", "stackwise@localhost"))?;
    let oid = repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &[])?;
    Ok(oid.to_string())
}
