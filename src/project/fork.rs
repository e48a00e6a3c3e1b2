//! `stackwise fork DIR`: the built-in template as this repository holds it — `templates/` and
//! `presets/` side by side — written into DIR as a git repository of one commit, with a README
//! for fork authors and a CI workflow that lints and tests it.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::stage::{self, Prepare, Staging, TargetState};
use crate::error::{Error, Result};
use crate::template::render::RenderedFile;
use crate::template::source::TemplateTree;

/// The directory of a fork holding the template (`--template DIR/templates`).
pub const TEMPLATE_DIR: &str = "templates";
/// The directory beside it holding the presets (found as the template's sibling).
pub const PRESETS_DIR: &str = "presets";

/// What `stackwise fork` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ForkOutcome {
    pub dir: PathBuf,
    /// The template directory to pass to `--template`, `lint` and `test`.
    pub template: PathBuf,
    pub files: usize,
    pub presets: Vec<String>,
    pub commit: Option<String>,
    /// Staging directories beside `dir` of killed `new --force` runs, kept because they hold the
    /// files those runs had replaced (as in `new`'s outcome).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub interrupted_runs: Vec<PathBuf>,
    /// What the user is told beside the result (the commit's author when no git identity is
    /// configured).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The files of a fork, in memory: the built-in tree under `templates/` and `presets/`, and the
/// fork's own README, CI workflow and `.gitignore`.
pub fn fork_files() -> Vec<RenderedFile> {
    let tree = TemplateTree::builtin();
    let file = |path: String, bytes: Vec<u8>| RenderedFile {
        executable: path.ends_with(".sh") || bytes.starts_with(b"#!"),
        path,
        bytes,
        update_once: false,
    };
    let mut files: Vec<RenderedFile> = tree
        .files
        .into_iter()
        .map(|(rel, bytes)| file(format!("{TEMPLATE_DIR}/{rel}"), bytes.into_owned()))
        .collect();
    for (name, text) in tree.presets {
        files.push(file(format!("{PRESETS_DIR}/{name}"), text.into_bytes()));
    }
    let version = env!("CARGO_PKG_VERSION");
    files.push(file(
        "README.md".into(),
        README.replace("{version}", version).into_bytes(),
    ));
    files.push(file(
        ".github/workflows/template.yml".into(),
        WORKFLOW.replace("{version}", version).into_bytes(),
    ));
    files.push(file(
        ".gitignore".into(),
        b"# Projects rendered while trying the template\n/out/\n".to_vec(),
    ));
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

/// Writes the fork into `dir` (which must not exist or be empty), as one git commit unless
/// `git` is false. All or nothing: it is staged beside `dir` and moved into place.
pub fn fork(dir: &Path, git: bool) -> Result<ForkOutcome> {
    if stage::target_state(dir)? == TargetState::NonEmpty {
        // Not TargetNotEmpty, whose hint offers `new --force`: a fork is never merged into files.
        return Err(Error::Refused {
            action: "fork",
            reason: format!("{} exists and is not empty", dir.display()),
            hint: Some("fork into a new or empty directory (a fork is a whole repository of its own)".into()),
        });
    }
    let files = fork_files();
    let presets = files
        .iter()
        .filter_map(|f| f.path.strip_prefix(&format!("{PRESETS_DIR}/")))
        .filter_map(|n| n.strip_suffix(".toml"))
        .map(str::to_string)
        .collect();
    crate::interrupt::start_polling()?;
    let staging = Staging::new(dir)?;
    let prepare = if git {
        Prepare::BlobsAndRepository
    } else {
        Prepare::Nothing
    };
    let blobs = match staging.write_and_hash(&files, prepare) {
        Ok(blobs) => blobs,
        Err(e) => {
            staging.abandon();
            return Err(e);
        }
    };
    let mut commit = None;
    let mut warnings = Vec::new();
    if let Some(blobs) = blobs {
        let message = format!(
            "Fork of the stackwise {} built-in template\n\nWritten by `stackwise fork`: templates/ and presets/ as the stackwise repository\nholds them. Make it yours: README.md says how.\n",
            env!("CARGO_PKG_VERSION")
        );
        match super::git::init_with_render_blobs(&staging.root, &files, &message, blobs) {
            Ok(c) => {
                if c.default_author {
                    warnings.push(super::git::DEFAULT_AUTHOR_NOTE.to_string());
                }
                commit = Some(c.id);
            }
            Err(e) => {
                staging.abandon();
                return Err(e);
            }
        }
    }
    let interrupted_runs = staging.kept_stale.clone();
    staging.commit(dir, &files, false)?;
    Ok(ForkOutcome {
        dir: dir.to_path_buf(),
        template: dir.join(TEMPLATE_DIR),
        files: files.len(),
        presets,
        commit,
        interrupted_runs,
        warnings,
    })
}

const README: &str = r#"# A fork of the stackwise template

Written by `stackwise fork` (stackwise {version}): the built-in template as the stackwise
repository holds it.

```
templates/      the template: stackwise.toml (variables, layouts), components/, partials/
presets/        the workload presets, found beside templates/ (or move them into templates/presets/)
.github/        CI: `stackwise lint` and `stackwise test` on every push
```

Try it, change it, check it:

```sh
stackwise lint templates                                  # every preset × option renders
stackwise new my-app --template templates -o out          # a project from your copy
stackwise test templates --preset ml-api --yes            # render, install, run its tests
```

Make it yours: give the template your name and a version in `templates/stackwise.toml`
(`[template] name`, `version`): every project records both, and `stackwise update` uses the
version to apply your `[[migrations]]`. The format of every file is in the stackwise repository's
docs/TEMPLATES.md; presets and their `[signals]` (what `stackwise recommend` reads) in
docs/choosing-a-stack.md.

Projects use the fork from git once it is pushed:

```sh
stackwise new my-app --template https://github.com/ORG/REPO.git#v1.0.0 --subdir templates
cd my-app && stackwise update --to v1.1.0                 # later: merge your next release
```
"#;

const WORKFLOW: &str = r#"# Lint and test the template on every push: every preset renders, installs, and passes its
# own tests (make test, lint, typecheck; e2e for hybrid).
name: template

on:
  push:
  pull_request:

permissions:
  contents: read

env:
  # The stackwise release this fork was made with; raise it to follow stackwise.
  STACKWISE_VERSION: "{version}"

jobs:
  lint:
    runs-on: ubuntu-latest
    outputs:
      presets: ${{ steps.presets.outputs.presets }}
    steps:
      - uses: actions/checkout@v4
      - name: Install stackwise
        run: curl --proto '=https' --tlsv1.2 -LsSf "https://github.com/stackwise-dev/stackwise/releases/download/v${STACKWISE_VERSION}/stackwise-installer.sh" | sh
      - run: stackwise lint templates
      - id: presets
        run: echo "presets=$(stackwise presets --template templates --json | jq -c '[.[].id]')" >> "$GITHUB_OUTPUT"

  test:
    needs: lint
    runs-on: ubuntu-latest
    strategy:
      fail-fast: false
      matrix:
        preset: ${{ fromJSON(needs.lint.outputs.presets) }}
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
      - uses: actions/setup-node@v4
        with:
          node-version: "20"
      - uses: astral-sh/setup-uv@v6
      - name: Redis (the hybrid layout's bus, for make e2e)
        run: sudo apt-get update && sudo apt-get install -y redis-server
      - name: Install stackwise
        run: curl --proto '=https' --tlsv1.2 -LsSf "https://github.com/stackwise-dev/stackwise/releases/download/v${STACKWISE_VERSION}/stackwise-installer.sh" | sh
      - run: stackwise test templates --preset "${{ matrix.preset }}" --yes --junit report.xml
      # The longest name a project may take (64 characters) and description (200): they land in
      # imports, commands and manifests, where a line can grow past a linter's length or a
      # Kubernetes name past 63. (Rename or drop the --set if your template's variables differ.)
      - run: >-
          stackwise test templates --preset "${{ matrix.preset }}" --yes
          --name "$(printf 'a%.0s' {1..62})-x" --set description="$(printf 'd%.0s' {1..200})"
      - if: always()
        uses: actions/upload-artifact@v4
        with:
          name: report-${{ matrix.preset }}
          path: report.xml
          if-no-files-found: ignore
"#;
