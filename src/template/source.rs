//! Template sources: the embedded default, a local directory, or a git repository.
//! Every source is read into a [`TemplateTree`] in memory; nothing in it is ever executed.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use include_dir::{Dir, include_dir};

use super::files::MANIFEST_FILE;
use super::paths::{check_relative_path, escaped};
use super::skip;
use crate::error::{Error, Problem, Result};

static BUILTIN_TEMPLATES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/templates");
static BUILTIN_PRESETS: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/presets");

/// `sha256:<hex>` of the embedded template and presets ([`crate::project::record::tree_digest`]
/// of [`TemplateTree::builtin`]), computed once by build.rs rather than on every run.
pub const BUILTIN_DIGEST: &str = include_str!(concat!(env!("OUT_DIR"), "/builtin_digest.txt"));

/// Where a template comes from, as the user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateSource {
    Builtin,
    Local(PathBuf),
    Git {
        url: String,
        reference: Option<String>,
        subdir: Option<String>,
    },
}

impl TemplateSource {
    /// Parses `--template SRC` (with an optional `--subdir`). `URL#REF` selects a branch, tag or commit.
    pub fn parse(src: Option<&str>, subdir: Option<&str>) -> Self {
        let Some(src) = src else {
            return TemplateSource::Builtin;
        };
        let looks_remote = ["https://", "http://", "ssh://", "git://", "file://", "git@"]
            .iter()
            .any(|p| src.starts_with(p))
            || src.ends_with(".git")
            || src.contains(".git#");
        if looks_remote {
            let (url, reference) = match src.rsplit_once('#') {
                Some((u, r)) if !r.is_empty() => (u.to_string(), Some(r.to_string())),
                _ => (src.to_string(), None),
            };
            TemplateSource::Git {
                url,
                reference,
                subdir: subdir.map(str::to_string),
            }
        } else {
            let mut path = PathBuf::from(src);
            if let Some(sub) = subdir {
                path.push(sub);
            }
            TemplateSource::Local(path)
        }
    }

    /// [`TemplateSource::parse`] for user input: a local `--subdir` must stay inside the
    /// template directory (no `..`, no absolute path, no symlink on the way), like a git one.
    pub fn parse_checked(src: Option<&str>, subdir: Option<&str>) -> Result<Self> {
        let parsed = Self::parse(src, subdir);
        if let (Some(src), Some(sub), TemplateSource::Local(_)) = (src, subdir, &parsed) {
            let base = Path::new(src);
            if base.is_dir() {
                return Ok(TemplateSource::Local(resolve_subdir(base, sub)?));
            }
            check_relative(sub)?;
        }
        Ok(parsed)
    }

    /// The source a `.stackwise.toml` names (`template`, `template_subdir`): `builtin`, a
    /// directory or a git URL (`URL#REF`).
    pub fn recorded(template: &str, subdir: Option<&str>) -> Self {
        if template == "builtin" {
            TemplateSource::Builtin
        } else {
            TemplateSource::parse(Some(template), subdir)
        }
    }

    /// A short description for messages and `.stackwise.toml`.
    pub fn describe(&self) -> String {
        match self {
            TemplateSource::Builtin => "builtin".to_string(),
            TemplateSource::Local(p) => p.display().to_string(),
            TemplateSource::Git { url, reference, subdir } => {
                let mut s = url.clone();
                if let Some(r) = reference {
                    s.push('#');
                    s.push_str(r);
                }
                if let Some(d) = subdir {
                    s.push_str(" (subdir ");
                    s.push_str(d);
                    s.push(')');
                }
                s
            }
        }
    }
}

/// A template read into memory: its files by relative path (`/`-separated) and its preset files.
#[derive(Debug, Clone)]
pub struct TemplateTree {
    /// Borrowed from the binary for the embedded template (only the files a command reads are
    /// ever touched), owned when read from a directory or a clone.
    pub files: BTreeMap<String, Cow<'static, [u8]>>,
    /// (file name, content) of each preset file.
    pub presets: Vec<(String, String)>,
    /// The source as given.
    pub source: String,
    /// The git commit (for git sources) or the stackwise version (builtin).
    pub revision: Option<String>,
    /// For a git source pinned to a SemVer tag (`URL#v1.2.0`): the repository's later SemVer
    /// tags, newest first (`update` names them: a pinned project never moves by itself).
    pub newer_tags: Vec<String>,
}

impl TemplateTree {
    /// Reads a template from its source.
    pub fn load(source: &TemplateSource) -> Result<Self> {
        match source {
            TemplateSource::Builtin => Ok(Self::builtin()),
            TemplateSource::Local(dir) => {
                if !dir.is_dir() {
                    return Err(Error::InvalidValue {
                        key: "--template".into(),
                        reason: format!(
                            "{} is not a directory (give a template directory, or a git URL such as https://host/repo.git#v1)",
                            dir.display()
                        ),
                    });
                }
                Self::from_dir(dir, source.describe(), None, true)
            }
            TemplateSource::Git { url, reference, subdir } => {
                if let Some(sub) = subdir {
                    check_relative(sub)?;
                }
                let checkout = tempfile::Builder::new()
                    .prefix("stackwise-template-")
                    .tempdir()
                    .map_err(|e| Error::io(std::env::temp_dir(), e))?;
                let commit = clone(url, reference.as_deref(), checkout.path()).map_err(|reason| Error::Source {
                    source_desc: source.describe(),
                    hint: reason.starts_with(CLONE_FAILED).then(|| {
                        "check the URL and your network access; for a private repository use an SSH URL with a loaded ssh-agent".to_string()
                    }),
                    reason,
                })?;
                let root = match subdir {
                    Some(sub) => resolve_subdir(checkout.path(), sub)?,
                    None => checkout.path().to_path_buf(),
                };
                if !root.join(MANIFEST_FILE).is_file() {
                    // Named within the repository: the clone's temporary directory is gone by
                    // the time the message is read.
                    return Err(no_manifest_in_clone(
                        checkout.path(),
                        subdir.as_deref(),
                        source.describe(),
                    ));
                }
                // A sibling `presets/` is inside the clone only when the template is a subdirectory.
                let mut tree = Self::from_dir(&root, source.describe(), Some(commit), subdir.is_some())?;
                tree.newer_tags = reference
                    .as_deref()
                    .map_or_else(Vec::new, |r| newer_tags(checkout.path(), r));
                Ok(tree)
            }
        }
    }

    /// The template embedded in this binary.
    pub fn builtin() -> Self {
        let mut files = BTreeMap::new();
        collect_embedded(&BUILTIN_TEMPLATES, &mut files);
        let mut presets = Vec::new();
        for f in BUILTIN_PRESETS.files() {
            if f.path().extension().is_some_and(|e| e == "toml") {
                presets.push((
                    f.path().to_string_lossy().into_owned(),
                    String::from_utf8_lossy(f.contents()).into_owned(),
                ));
            }
        }
        presets.sort();
        TemplateTree {
            files,
            presets,
            source: "builtin".to_string(),
            revision: Some(format!("stackwise {}", env!("CARGO_PKG_VERSION"))),
            newer_tags: Vec::new(),
        }
    }

    /// Reads a template directory. Symlinks are refused: a template must not point outside itself.
    /// Presets are read from `presets/` beside the manifest, or from a sibling `presets/` directory
    /// (the layout of the stackwise repository itself).
    pub fn from_dir(dir: &Path, source: String, revision: Option<String>, allow_sibling_presets: bool) -> Result<Self> {
        if !dir.join(MANIFEST_FILE).is_file() {
            return Err(Error::Source {
                source_desc: source,
                reason: format!("{} has no {MANIFEST_FILE}", dir.display()),
                hint: Some(manifest_hint(dir)),
            });
        }
        let files = read_tree(dir, "", &["presets"])?;
        let mut presets = Vec::new();
        let own = dir.join("presets");
        // The sibling `presets/` (this repository's own layout) only where it belongs to the
        // template: never beside the root of a clone, whose siblings are other temporary files.
        let sibling = if allow_sibling_presets {
            sibling_presets(dir)
        } else {
            None
        };
        let preset_dir = if own.is_dir() {
            Some(own)
        } else {
            sibling.filter(|p| p.is_dir())
        };
        if let Some(pd) = preset_dir {
            for (name, bytes) in read_tree(&pd, "presets/", &[])? {
                if name.ends_with(".toml") && !name.contains('/') {
                    let text = String::from_utf8(bytes.into_owned()).map_err(|_| {
                        Error::InvalidTemplate(vec![Problem::file(&format!("presets/{name}"), "not UTF-8 text")])
                    })?;
                    presets.push((name, text));
                }
            }
        }
        Ok(TemplateTree {
            files,
            presets,
            source,
            revision,
            newer_tags: Vec::new(),
        })
    }
}

/// The `presets/` beside a template directory (this repository's layout), found from the
/// directory's real path: `--template .` has no parent as written.
pub fn sibling_presets(dir: &Path) -> Option<PathBuf> {
    let real = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    real.parent().map(|p| p.join("presets"))
}

fn collect_embedded(dir: &Dir<'static>, out: &mut BTreeMap<String, Cow<'static, [u8]>>) {
    for f in dir.files() {
        let name = f.path().file_name().and_then(|n| n.to_str()).unwrap_or("");
        if skip::is_junk_file(name) {
            continue;
        }
        out.insert(
            f.path().to_string_lossy().replace('\\', "/"),
            Cow::Borrowed(f.contents()),
        );
    }
    for d in dir.dirs() {
        let name = d.path().file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !skip::skipped(name, true) {
            collect_embedded(d, out);
        }
    }
}

/// Every file under `root`, by its path relative to it. A file or directory name that is not
/// UTF-8 is refused (all of them at once, each named with its bytes escaped, under `label`): made
/// into text, two such names could become one and a file would be lost.
fn read_tree(root: &Path, label: &str, skip_top: &[&str]) -> Result<BTreeMap<String, Cow<'static, [u8]>>> {
    let mut files = BTreeMap::new();
    let mut not_utf8 = Vec::new();
    // Copied files are output too: the render budget's bytes bound what is read, before any of it
    // is held (a sparse 1.5 GB file was read whole, twice over, by every command).
    let cap = super::budget::RenderBudget::from_env().bytes as u64;
    let mut total = 0u64;
    let mut walker = walkdir::WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| {
            let name = e.file_name().to_str().unwrap_or("");
            let skipped = e.depth() > 0 && skip::skipped(name, e.file_type().is_dir());
            let skipped_top = e.depth() == 1 && skip_top.contains(&name);
            !(skipped || skipped_top)
        });
    while let Some(entry) = walker.next() {
        let entry = entry.map_err(|e| {
            let path = e.path().map(Path::to_path_buf).unwrap_or_else(|| root.to_path_buf());
            Error::io(path, std::io::Error::other(e.to_string()))
        })?;
        let rel_path = entry.path().strip_prefix(root).unwrap_or(entry.path());
        let Some(rel) = rel_path.to_str().map(|r| r.replace('\\', "/")) else {
            let what = if entry.file_type().is_dir() {
                "directory"
            } else {
                "file"
            };
            not_utf8.push(Problem::file(
                &format!("{label}{}", escaped_bytes(rel_path.as_os_str().as_encoded_bytes())),
                format!("the {what} name is not UTF-8 (invalid bytes shown as \\xNN); rename it"),
            ));
            if entry.file_type().is_dir() {
                walker.skip_current_dir(); // what is under it is named by it
            }
            continue;
        };
        if entry.path_is_symlink() {
            return Err(Error::UnsafePath {
                // The root itself can be the link: name it rather than "".
                path: if rel.is_empty() { root.display().to_string() } else { rel },
                reason: "templates may not contain symlinks (a link can point outside the template or the target); replace it with a regular file".into(),
            });
        }
        if entry.file_type().is_file() {
            let bytes = read_within(entry.path(), cap - total).map_err(|e| match e {
                Some(e) => Error::io(entry.path(), e),
                None => Error::RenderBudget {
                    file: format!("{label}{rel}"),
                    reason: format!(
                        "the template's files come to more than {} MiB, the render budget of all files together (STACKWISE_RENDER_MB raises it)",
                        cap >> 20
                    ),
                },
            })?;
            total += bytes.len() as u64;
            files.insert(rel, Cow::Owned(bytes));
        }
    }
    if !not_utf8.is_empty() {
        return Err(Error::InvalidTemplate(not_utf8));
    }
    Ok(files)
}

/// The bytes of the file at `path`, or `Err(None)` when it holds more than `room` (read no
/// further than that, so a file that grows while it is read is caught too).
fn read_within(path: &Path, room: u64) -> std::result::Result<Vec<u8>, Option<std::io::Error>> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(Some)?;
    let len = file.metadata().map_err(Some)?.len();
    if len > room {
        return Err(None);
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(room + 1).read_to_end(&mut bytes).map_err(Some)?;
    if bytes.len() as u64 > room {
        return Err(None);
    }
    Ok(bytes)
}

/// A path's bytes as text: each invalid byte as `\xNN`, control characters escaped as well.
fn escaped_bytes(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        out.push_str(&escaped(chunk.valid()));
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// `base/sub`, refusing every way out of `base`: `..`, an absolute path, and a symlink on the
/// way (a committed link in a clone can point anywhere on the user's disk).
fn resolve_subdir(base: &Path, sub: &str) -> Result<PathBuf> {
    check_relative(sub)?;
    let refuse = |reason: String| Error::InvalidValue {
        key: "--subdir".into(),
        reason,
    };
    let mut at = base.to_path_buf();
    for seg in sub.split('/').filter(|s| !s.is_empty() && *s != ".") {
        at.push(seg);
        if std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(refuse(format!(
                "{sub:?} passes through the symlink {}; a template subdirectory must be a real directory inside the source",
                at.display()
            )));
        }
    }
    if let (Ok(real_base), Ok(real)) = (base.canonicalize(), at.canonicalize())
        && !real.starts_with(&real_base)
    {
        return Err(refuse(format!("{sub:?} leaves the template source")));
    }
    Ok(at)
}

fn check_relative(sub: &str) -> Result<()> {
    check_relative_path(sub).map_err(|why| Error::InvalidValue {
        key: "--subdir".into(),
        reason: format!("{sub:?} must be a relative path inside the repository ({why})"),
    })
}

/// Whether OpenSSL's trust store was left empty at start-up ([`defer_tls_roots`]).
static TLS_ROOTS_DEFERRED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// libgit2, built with HTTPS, creates its OpenSSL context when it starts and parses the system's
/// whole CA bundle into it (tens of milliseconds), although only the clone of an `https://`
/// template uses it. This starts libgit2 with OpenSSL pointed at an empty bundle, then puts the
/// environment back as it was (child processes see the user's own); [`load_tls_roots`] gives the
/// real certificate locations to libgit2 right before a clone.
///
/// Call it before the first git2 call, while the process has a single thread (it sets environment
/// variables for a moment). A command that never uses git does not call it at all: starting
/// libgit2 starts OpenSSL and libssh2 too, costs a command like `new --no-git` has no use for.
pub fn defer_tls_roots() {
    #[cfg(all(unix, not(target_os = "macos"), not(target_os = "ios")))]
    {
        const VARS: [&str; 2] = ["SSL_CERT_FILE", "SSL_CERT_DIR"];
        let saved = VARS.map(std::env::var_os);
        // SAFETY: called at the start of `main`, before any other thread exists, so no thread
        // reads the environment while it changes.
        unsafe { std::env::set_var("SSL_CERT_FILE", "/dev/null") };
        git2::opts::strict_hash_verification(true); // starts libgit2 (and its OpenSSL context)
        for (var, value) in VARS.iter().zip(saved) {
            // SAFETY: as above.
            unsafe {
                match value {
                    Some(v) => std::env::set_var(var, v),
                    None => std::env::remove_var(var),
                }
            }
        }
        TLS_ROOTS_DEFERRED.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Loads the certificate authorities (the user's `SSL_CERT_FILE`/`SSL_CERT_DIR`, else the
/// system's) into libgit2's TLS context, when [`defer_tls_roots`] left it empty. Before a clone.
pub fn load_tls_roots() {
    if !TLS_ROOTS_DEFERRED.swap(false, std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let found = openssl_probe::probe();
    // SAFETY: libgit2's options are process-wide; this runs on the command's thread before the clone
    // and while no other libgit2 operation is in flight.
    unsafe {
        if let Some(file) = found.cert_file {
            let _ = git2::opts::set_ssl_cert_file(file);
        }
        if let Some(dir) = found.cert_dir {
            let _ = git2::opts::set_ssl_cert_dir(dir);
        }
    }
}

/// Clones `url` into `into`, checks out `reference` if given, and returns the commit id.
const CLONE_FAILED: &str = "cannot clone";

fn clone(url: &str, reference: Option<&str>, into: &Path) -> std::result::Result<String, String> {
    load_tls_roots();
    let repo = git2::build::RepoBuilder::new()
        .clone(url, into)
        .map_err(|e| format!("{CLONE_FAILED}: {}", e.message()))?;
    if let Some(r) = reference {
        let obj = repo
            .revparse_single(r)
            .or_else(|_| repo.revparse_single(&format!("origin/{r}")))
            .map_err(|_| format!("no branch, tag or commit named `{r}` in the repository"))?;
        repo.checkout_tree(&obj, Some(git2::build::CheckoutBuilder::new().force()))
            .map_err(|e| e.message().to_string())?;
        repo.set_head_detached(obj.peel_to_commit().map_err(|e| e.message().to_string())?.id())
            .map_err(|e| e.message().to_string())?;
    }
    let head = repo.head().map_err(|e| e.message().to_string())?;
    let commit = head.peel_to_commit().map_err(|e| e.message().to_string())?;
    Ok(commit.id().to_string())
}

/// The SemVer tags of the clone at `dir` later than `pinned` (itself a SemVer tag, `v` or not),
/// newest first; none when `pinned` is a branch or a commit.
fn newer_tags(dir: &Path, pinned: &str) -> Vec<String> {
    let version = |tag: &str| semver::Version::parse(tag.strip_prefix('v').unwrap_or(tag)).ok();
    let (Some(from), Ok(repo)) = (version(pinned), git2::Repository::open(dir)) else {
        return Vec::new();
    };
    let Ok(names) = repo.tag_names(None) else {
        return Vec::new();
    };
    let mut newer: Vec<(semver::Version, String)> = names
        .iter()
        .flatten()
        .filter_map(|t| {
            version(t)
                .filter(|v| *v > from && v.pre.is_empty())
                .map(|v| (v, t.to_string()))
        })
        .collect();
    newer.sort_by(|a, b| b.0.cmp(&a.0));
    newer.into_iter().map(|(_, t)| t).collect()
}

/// A clone whose root (or `--subdir`) has no manifest: said within the repository, with the
/// directories of the clone that have one (a few levels down) as the `--subdir` to pass.
fn no_manifest_in_clone(clone: &Path, subdir: Option<&str>, source_desc: String) -> Error {
    let at = match subdir {
        Some(sub) if clone.join(sub).is_dir() => format!("{sub}/ has no {MANIFEST_FILE}"),
        Some(sub) => format!("the repository has no directory {sub}"),
        None => format!("the repository has no {MANIFEST_FILE} at its root"),
    };
    let found: Vec<String> = walkdir::WalkDir::new(clone)
        .max_depth(4)
        .into_iter()
        .filter_entry(|e| {
            e.depth() == 0 || !skip::skipped(e.file_name().to_str().unwrap_or(""), e.file_type().is_dir())
        })
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file() && e.file_name() == MANIFEST_FILE)
        .filter_map(|e| {
            let dir = e.path().parent()?.strip_prefix(clone).ok()?;
            Some(dir.to_string_lossy().replace('\\', "/"))
        })
        .take(5)
        .collect();
    let hint = match found.as_slice() {
        [] => "a template directory needs a manifest at its root (see docs/TEMPLATES.md); no directory of this repository (4 levels down) has one".to_string(),
        [root] if root.is_empty() => "the repository's root has one: leave out --subdir".to_string(),
        dirs => format!(
            "{MANIFEST_FILE} is in: {}; pass that directory as --subdir",
            dirs.iter()
                .map(|d| if d.is_empty() { "the root".to_string() } else { format!("{d}/") })
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Error::Source {
        source_desc,
        reason: at,
        hint: Some(hint),
    }
}

/// Where the manifest may be instead: `DIR/templates` (a fork's root, this repository's root),
/// else the general rule (`--subdir` applies to `new`, `update` and `adopt`).
fn manifest_hint(dir: &Path) -> String {
    let nested = dir.join("templates");
    if nested.join(MANIFEST_FILE).is_file() {
        return format!(
            "the template is in {} (a fork's root holds templates/ and presets/): name that directory, or pass --subdir templates to new, update or adopt",
            nested.display()
        );
    }
    "a template directory needs a manifest at its root (see docs/TEMPLATES.md); `new`, `update` and `adopt` take --subdir PATH when it is further down".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sources() {
        assert_eq!(TemplateSource::parse(None, None), TemplateSource::Builtin);
        assert_eq!(
            TemplateSource::parse(Some("https://example.com/t.git#v1"), Some("tpl")),
            TemplateSource::Git {
                url: "https://example.com/t.git".into(),
                reference: Some("v1".into()),
                subdir: Some("tpl".into())
            }
        );
        assert_eq!(
            TemplateSource::parse(Some("./my-template"), None),
            TemplateSource::Local("./my-template".into())
        );
    }

    #[test]
    fn builtin_has_a_manifest_and_presets() {
        let t = TemplateTree::builtin();
        assert!(t.files.contains_key(MANIFEST_FILE));
        assert!(!t.presets.is_empty());
    }
}
