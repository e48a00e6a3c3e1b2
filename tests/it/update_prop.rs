//! A property test of SPEC §7.1: random sequences of user edits, deletions, renames,
//! file ↔ directory swaps, untracked and ignored files, and template versions; after every
//! update the invariants hold —
//! - exit 0: the work tree equals HEAD (untracked files only where there were some before),
//!   and every path reported as written is in HEAD;
//! - exit 3: `update --abort` restores files, modes, index, HEAD and refs exactly;
//! - exit 1 or 2: nothing changed.
//!
//! A seeded generator (no crate needed): a failure prints its seed; `STACKWISE_PROP_CASES=N`
//! runs more cases, `STACKWISE_PROP_SEED=S` replays one, `STACKWISE_PROP_SHOW=1` prints why
//! each update that did not exit 0 stopped.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::{git, stackwise, write};
use crate::update_trust::{generate, state, template};
use tempfile::TempDir;

/// xorshift64*: small, seeded, good enough to pick test cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a>(&mut self, items: &'a [String]) -> Option<&'a String> {
        (!items.is_empty()).then(|| &items[self.below(items.len())])
    }
}

/// The paths a template version may hold: some are parents of others (file ↔ directory).
const POOL: &[&str] = &[
    "a.txt",
    "b.txt",
    "run.sh",
    "d/x.txt",
    "d/y.txt",
    "e",
    "e/f.txt",
    "g/h/i.txt",
    "g",
    "k/l.txt",
];

fn body(tag: &str) -> String {
    (1..=6).map(|i| format!("line {i} {tag}\n")).collect()
}

fn clashes(files: &BTreeMap<String, String>, p: &str) -> bool {
    files
        .keys()
        .any(|q| q.starts_with(&format!("{p}/")) || p.starts_with(&format!("{q}/")))
}

/// The next template version: files kept, changed (a line the user may also change), removed,
/// added (possibly where a file was a directory, or the reverse).
fn next_version(rng: &mut Rng, prev: &BTreeMap<String, String>, v: usize) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (p, text) in prev {
        match rng.below(6) {
            0 => {}
            1 | 2 => {
                let line = if rng.chance(50) { "line 5" } else { "line 1" };
                out.insert(p.clone(), text.replace(&format!("{line} "), &format!("{line} v{v} ")));
            }
            _ => drop(out.insert(p.clone(), text.clone())),
        }
    }
    for _ in 0..rng.below(3) {
        let p = POOL[rng.below(POOL.len())];
        if !out.contains_key(p) && !clashes(&out, p) {
            out.insert(p.to_string(), body(&format!("{p} v{v}")));
        }
    }
    if out.is_empty() {
        out.insert("a.txt".into(), body("a"));
    }
    out
}

fn tracked(dir: &Path) -> Vec<String> {
    String::from_utf8_lossy(&git(dir, &["ls-files"]).stdout)
        .lines()
        .filter(|l| *l != ".stackwise.toml")
        .map(str::to_string)
        .collect()
}

/// One random thing a user does to the files git tracks (committed by the caller).
fn user_step(rng: &mut Rng, dir: &Path, n: usize) {
    let files = tracked(dir);
    match rng.below(5) {
        0 | 1 => {
            if let Some(p) = rng.pick(&files) {
                let text = std::fs::read_to_string(dir.join(p)).unwrap_or_default();
                let line = if rng.chance(50) { "line 1" } else { "line 3" };
                write(
                    dir,
                    p,
                    text.replacen(&format!("{line} "), &format!("{line} mine{n} "), 1),
                );
            }
        }
        2 => {
            if let Some(p) = rng.pick(&files) {
                git(dir, &["rm", "-q", "-f", p]);
            }
        }
        3 => {
            if let Some(p) = rng.pick(&files) {
                let to = format!("moved{n}.txt");
                git(dir, &["mv", p, &to]);
            }
        }
        4 => {
            // A file becomes a directory of the user's.
            if let Some(p) = rng.pick(&files) {
                git(dir, &["rm", "-q", "-f", p]);
                write(dir, &format!("{p}/mine.txt"), "mine\n");
            }
        }
        _ => {}
    }
}

/// One random untracked or ignored file, made after the user's commit.
fn untracked_step(rng: &mut Rng, dir: &Path, n: usize) {
    match rng.below(3) {
        0 => {
            // An untracked file, possibly where the template will want a file or a directory.
            let p = POOL[rng.below(POOL.len())];
            if std::fs::symlink_metadata(dir.join(p)).is_err()
                && !Path::new(p).ancestors().skip(1).any(|a| dir.join(a).is_file())
            {
                let _ = std::fs::create_dir_all(dir.join(p).parent().unwrap());
                let _ = std::fs::write(dir.join(p), "untracked\n");
            }
        }
        1 => {
            let p = format!("ignored{n}.log");
            let exclude = dir.join(".git/info/exclude");
            let mut text = std::fs::read_to_string(&exclude).unwrap_or_default();
            text.push_str(&format!("{p}\n"));
            std::fs::write(&exclude, text).unwrap();
            write(dir, &p, "ignored\n");
        }
        _ => {}
    }
}

/// Commits what the user changed (ignored files stay out).
fn commit_user(dir: &Path, n: usize) {
    git(dir, &["add", "-A"]);
    let _ = std::process::Command::new("git")
        .args(["-c", "user.name=T", "-c", "user.email=t@e", "commit", "-q", "-m"])
        .arg(format!("user {n}"))
        .current_dir(dir)
        .output();
}

fn untracked(dir: &Path) -> Vec<String> {
    String::from_utf8_lossy(&git(dir, &["status", "--porcelain", "--untracked-files=all"]).stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn as_slice(files: &BTreeMap<String, String>) -> Vec<(&str, &str)> {
    files.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect()
}

/// One case: a project from v1, then rounds of user steps and a new template version.
fn case(seed: u64, seen: &mut BTreeMap<i32, usize>) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let tmp = TempDir::new().unwrap();
    let mut files = next_version(&mut rng, &BTreeMap::new(), 1);
    files.insert("b.txt".into(), body("b"));
    let t1 = tmp.path().join("t1");
    template(&t1, "1.0.0", &as_slice(&files), "");
    let dir = generate(tmp.path(), "demo", &t1, &[]);
    for round in 2..=3 {
        for n in 0..1 + rng.below(3) {
            user_step(&mut rng, &dir, round * 10 + n);
        }
        commit_user(&dir, round);
        for n in 0..rng.below(3) {
            untracked_step(&mut rng, &dir, round * 10 + n);
        }
        files = next_version(&mut rng, &files, round);
        let t = tmp.path().join(format!("t{round}"));
        template(&t, &format!("{round}.0.0"), &as_slice(&files), "");
        let before = state(&dir);
        let untracked_before = untracked(&dir);
        let out = stackwise()
            .arg("update")
            .arg(&dir)
            .arg("--template")
            .arg(&t)
            .args(["--yes", "--json"])
            .output()
            .unwrap();
        let why = format!(
            "seed {seed}, round {round}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        *seen.entry(out.status.code().unwrap_or(-1)).or_default() += 1;
        if out.status.code() != Some(0) && std::env::var_os("STACKWISE_PROP_SHOW").is_some() {
            eprintln!(
                "seed {seed} exit {:?}: {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        match out.status.code() {
            Some(0) => {
                assert_eq!(untracked(&dir), untracked_before, "work tree != HEAD; {why}");
                let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                let head =
                    String::from_utf8_lossy(&git(&dir, &["ls-tree", "-r", "--name-only", "HEAD"]).stdout).into_owned();
                for f in doc["files"].as_array().unwrap() {
                    let written = ["added", "updated", "merged", "renamed", "kept-yours"];
                    if written.contains(&f["status"].as_str().unwrap()) {
                        let p = f["path"].as_str().unwrap();
                        assert!(head.lines().any(|l| l == p), "{p} reported but not in HEAD; {why}");
                    }
                }
            }
            Some(3) => {
                stackwise().arg("update").arg(&dir).arg("--abort").assert().success();
                assert_eq!(state(&dir), before, "--abort did not restore; {why}");
            }
            Some(1 | 2) => assert_eq!(state(&dir), before, "a failed update changed something; {why}"),
            other => panic!("exit {other:?}; {why}"),
        }
    }
}

#[test]
fn random_edits_and_template_versions_keep_the_update_invariants() {
    if let Some(seed) = std::env::var("STACKWISE_PROP_SEED").ok().and_then(|s| s.parse().ok()) {
        return case(seed, &mut BTreeMap::new());
    }
    let cases: u64 = std::env::var("STACKWISE_PROP_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    let mut seen = BTreeMap::new();
    for seed in 1..=cases {
        case(seed, &mut seen);
    }
    eprintln!("exit codes of {} updates: {seen:?}", cases * 2);
}
