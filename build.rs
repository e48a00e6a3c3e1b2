//! What can be known of the embedded template when the binary is built is computed here once,
//! not on every run: the digest `.stackwise.toml` records as its revision (`sha256:<hex>`, the
//! same bytes in the same order as `record::tree_digest` over `TemplateTree::builtin()`; a unit
//! test holds the two equal).
//!
//! Also reruns the build when the embedded templates or presets change (include_dir cannot tell
//! cargo itself).

use std::path::Path;

use sha2::{Digest, Sha256};

/// What `source` never reads from a template (the same file, so the two cannot drift).
#[path = "src/template/skip.rs"]
mod skip;

fn main() {
    println!("cargo:rerun-if-changed=templates");
    println!("cargo:rerun-if-changed=presets");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    collect(&root.join("templates"), "", &mut files);
    files.sort();
    let mut presets = Vec::new();
    for entry in std::fs::read_dir(root.join("presets")).expect("presets/") {
        let entry = entry.expect("presets/ entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().expect("file type").is_file() && name.ends_with(".toml") {
            // Read as `String::from_utf8_lossy` reads it at run time.
            let bytes = std::fs::read(entry.path()).expect("preset");
            presets.push((name, String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    presets.sort();
    let mut h = Sha256::new();
    let mut feed = |path: &str, bytes: &[u8]| {
        h.update(path.as_bytes());
        h.update([0]);
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    for (path, bytes) in &files {
        feed(path, bytes);
    }
    for (name, text) in &presets {
        feed(&format!("presets/{name}"), text.as_bytes());
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let out = Path::new(&std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("builtin_digest.txt");
    std::fs::write(out, format!("sha256:{hex}")).expect("write the digest");
}

/// Every file under `dir` as (`/`-separated path relative to the template root, bytes), skipping
/// what [`skip::skipped`] leaves out.
fn collect(dir: &Path, prefix: &str, out: &mut Vec<(String, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).expect("templates/") {
        let entry = entry.expect("templates/ entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let kind = entry.file_type().expect("file type");
        if skip::skipped(&name, kind.is_dir()) {
            continue;
        }
        if kind.is_dir() {
            collect(&entry.path(), &rel, out);
        } else if kind.is_file() {
            out.push((rel, std::fs::read(entry.path()).expect("template file")));
        }
    }
}
