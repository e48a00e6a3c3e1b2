//! `stackwise new`: the pipeline from a template source to a project on disk.
//! source → manifest/presets → answers → plan → render → staging → (install) → git → move into place.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};

use super::record;
use super::stage::{self, Prepare, Staging, TargetState};
use crate::error::{Error, Result};
use crate::template::answers;
use crate::template::names::ProjectName;
use crate::template::prompter::Prompter;
use crate::template::source::TemplateSource;
use crate::template::{Rendered, Template, choose_preset_and_layout, parse_sets, render_project};

/// Everything `stackwise new` was asked to do.
#[derive(Debug, Clone)]
pub struct NewRequest {
    pub name: String,
    pub preset: Option<String>,
    pub layout: Option<String>,
    /// The parent directory; the project goes to `output_dir/<kebab-name>`.
    pub output_dir: PathBuf,
    pub template: TemplateSource,
    /// Raw `KEY=VALUE` arguments.
    pub sets: Vec<String>,
    pub answers_file: Option<PathBuf>,
    pub force: bool,
    pub dry_run: bool,
    pub git: bool,
    /// Run the project's install steps (`uv sync`, `npm install`) so lockfiles are committed.
    pub install: bool,
}

/// What `--json` shows for the answer of a `secret` variable: output often lands in CI logs.
pub const SECRET_SHOWN: &str = "********";

/// What was generated (or would be, with `--dry-run`).
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub name: ProjectName,
    pub target: PathBuf,
    pub layout: String,
    pub preset: Option<String>,
    pub template: String,
    pub answers: Map<String, Value>,
    pub files: Vec<FileEntry>,
    /// Files of a non-empty target that were replaced (`--force`).
    pub overwritten: Vec<String>,
    /// Staging directories beside the target of `--force` runs that were killed while moving
    /// files into place: kept, because they hold the files those runs had replaced
    /// (`replaced/<path>`). Other leftovers of killed runs are removed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub interrupted_runs: Vec<PathBuf>,
    /// Answers that were given and not used (an answers file's value for a variable whose
    /// `when` is false): each worth a warning.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The initial commit: the render commit (template output and `.stackwise.toml` only).
    pub git_commit: Option<String>,
    /// The second commit, holding the lockfiles of `--install`.
    pub lockfiles_commit: Option<String>,
    /// Why no repository was created, when none was.
    pub git_skipped: Option<String>,
    pub dry_run: bool,
    /// Results of `--install` steps, in order (the first failure stops them).
    pub install: Vec<super::install::StepResult>,
    /// Where the install steps' output went.
    pub install_log: Option<PathBuf>,
}

impl Outcome {
    /// Records the initial commit, and warns when no git identity authored it.
    fn note_commit(&mut self, commit: super::git::RenderCommit) {
        if commit.default_author {
            self.warnings.push(super::git::DEFAULT_AUTHOR_NOTE.to_string());
        }
        self.git_commit = Some(commit.id);
    }
}

/// One file of the project and where it comes from.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FileEntry {
    pub path: String,
    /// The template file it is rendered or copied from, relative to the template root
    /// (`components/node-service/src/app.ts.tera`); `None` for `.stackwise.toml`, which
    /// stackwise writes itself.
    pub source: Option<String>,
}

/// `stackwise new`.
pub fn new_project(
    req: &NewRequest,
    prompter: &mut dyn Prompter,
    progress: &mut dyn super::install::Progress,
) -> Result<Outcome> {
    let Prepared {
        rendered,
        info,
        target,
        state,
        template,
        secrets,
    } = prepare(req, prompter)?;
    let files = rendered
        .files
        .iter()
        .map(|f| FileEntry {
            path: f.path.clone(),
            source: rendered.sources.get(&f.path).cloned(),
        })
        .collect();
    let mut outcome = Outcome {
        name: rendered.name.clone(),
        target: target.clone(),
        layout: rendered.layout.clone(),
        preset: rendered.preset.clone(),
        template,
        answers: rendered
            .answers
            .iter()
            .map(|(k, v)| {
                let shown = if secrets.contains(k) {
                    Value::from(SECRET_SHOWN)
                } else {
                    v.clone()
                };
                (k.clone(), shown)
            })
            .collect(),
        files,
        overwritten: Vec::new(),
        interrupted_runs: Vec::new(),
        warnings: rendered.ignored.clone(),
        git_commit: None,
        lockfiles_commit: None,
        git_skipped: None,
        dry_run: req.dry_run,
        install: Vec::new(),
        install_log: None,
    };
    if req.dry_run {
        if state == TargetState::NonEmpty {
            outcome.overwritten = rendered
                .files
                .iter()
                .filter(|f| target.join(&f.path).exists())
                .map(|f| f.path.clone())
                .collect();
        }
        return Ok(outcome);
    }
    write_project(req, &rendered, &info, &target, state, progress, &mut outcome)?;
    Ok(outcome)
}

/// Writes the rendered project into `target` (through a staging directory), with its render
/// commit unless `--no-git` or the target existed, and runs the install steps of `--install`.
fn write_project(
    req: &NewRequest,
    rendered: &Rendered,
    info: &record::TemplateInfo,
    target: &Path,
    state: TargetState,
    progress: &mut dyn super::install::Progress,
    outcome: &mut Outcome,
) -> Result<()> {
    // From here a Ctrl-C must not stop the process at once: staging (and install) clean up.
    crate::interrupt::start_polling()?;
    let fresh = state != TargetState::NonEmpty;
    let git_message = super::git::render_message(info, &rendered.layout, rendered.preset.as_deref());
    outcome.git_skipped = if !req.git {
        Some("--no-git".to_string())
    } else if !fresh {
        Some("the target directory already existed (--force); no repository was created".to_string())
    } else {
        None
    };
    let want_git = outcome.git_skipped.is_none();
    if want_git {
        check_filters(&rendered.files)?;
    }
    let staging = Staging::new(target)?;
    outcome.interrupted_runs = staging.kept_stale.clone();
    let prepare = match (want_git, req.install) {
        (false, _) => Prepare::Nothing,
        // With --install the repository is made after the project moved into place.
        (true, true) => Prepare::Blobs,
        (true, false) => Prepare::BlobsAndRepository,
    };
    let blobs = match staging.write_and_hash(&rendered.files, prepare) {
        Ok(blobs) => blobs,
        Err(e) => {
            staging.abandon();
            return Err(e);
        }
    };
    if !req.install {
        // Without install steps the commit happens in the staging directory, so the project
        // appears in one rename with its repository.
        if let Some(blobs) = blobs {
            match super::git::init_with_render_blobs(&staging.root, &rendered.files, &git_message, blobs) {
                Ok(c) => outcome.note_commit(c),
                Err(e) => {
                    staging.abandon();
                    return Err(e);
                }
            }
        }
        outcome.overwritten = staging.commit(target, &rendered.files, req.force)?;
        note_enclosing_repository(target, outcome);
        return Ok(());
    }
    // With --install the project moves into place first (virtual environments hold absolute
    // paths) and gets its render commit; then its install steps run, and a second commit takes
    // the lockfiles (they are not template output, so `update` never merges them).
    outcome.overwritten = staging.commit(target, &rendered.files, req.force)?;
    if let Some(blobs) = blobs {
        let commit = super::git::init_with_render_blobs(target, &rendered.files, &git_message, blobs)?;
        outcome.note_commit(commit);
    }
    install_and_commit(target, rendered, fresh, want_git, progress, outcome)?;
    note_enclosing_repository(target, outcome);
    Ok(())
}

/// A project with a repository of its own made inside another repository's work tree (`new -o
/// services` in a monorepo): that repository sees an embedded repository, whose files its clones
/// never get. Said, with the monorepo way (`--no-git`, as `cargo new` does there by itself).
fn note_enclosing_repository(target: &Path, outcome: &mut Outcome) {
    if outcome.git_commit.is_none() {
        return;
    }
    let outer = target
        .parent()
        .and_then(|p| git2::Repository::discover(p).ok())
        .and_then(|r| r.workdir().map(Path::to_path_buf));
    if let Some(outer) = outer {
        outcome.warnings.push(format!(
            "{} is inside the git repository at {}, and got a repository of its own: that one sees it as an embedded repository, whose files its clones do not get. For a monorepo, remove {}/.git and commit the project there (`stackwise update` runs from it), or create it with --no-git",
            target.display(),
            outer.display(),
            target.display()
        ));
    }
}

/// A template whose `.gitattributes` gives files to a git filter this machine configures
/// (`filter=lfs` with git-lfs installed): the render commit is made without running filters
/// (libgit2 runs none), so it would hold them unfiltered and the work tree would differ from it
/// at once. Refused before anything is written; with `--no-git`, the user's own first commit
/// runs the filter.
fn check_filters(files: &[crate::template::render::RenderedFile]) -> Result<()> {
    use super::update::{attributes, policy};
    let found: Vec<(&String, &Vec<u8>)> = files
        .iter()
        .filter(|f| attributes::is_attributes(&f.path))
        .map(|f| (&f.path, &f.bytes))
        .collect();
    if found.is_empty() {
        return Ok(());
    }
    let scratch = attributes::scratch(found, None)?;
    let paths: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
    let owned = policy::filtered(&scratch.repo, &scratch.repo, &paths)?;
    if owned.is_empty() {
        return Ok(());
    }
    Err(Error::Refused {
        action: "create the project's repository",
        reason: format!(
            "the template's .gitattributes gives files to a git filter configured here: {owned}; stackwise commits without running filters, so its first commit would hold them unfiltered"
        ),
        hint: Some(
            "create it with --no-git, then make the first commit with git (`git init && git add -A && git commit`), which runs the filter".into(),
        ),
    })
}

/// What `new` renders, before anything is written: the user's input checked (the cheap checks
/// first, before any template is fetched or question asked), the template loaded, the preset and
/// layout chosen, every answer resolved, the project rendered with its record.
struct Prepared {
    rendered: Rendered,
    info: record::TemplateInfo,
    target: PathBuf,
    state: TargetState,
    template: String,
    /// The variables whose answers are secret: never shown (nor recorded).
    secrets: Vec<String>,
}

fn prepare(req: &NewRequest, prompter: &mut dyn Prompter) -> Result<Prepared> {
    // Cheap checks of the user's input first, before any template is fetched or question asked.
    let name = ProjectName::parse(&req.name)?;
    let sets = parse_sets(&req.sets)?;
    let file = match &req.answers_file {
        Some(p) => answers::load_file(p)?,
        None => answers::AnswersFile::default(),
    };
    let target = req.output_dir.join(&name.slug);
    let state = stage::target_state(&target)?;
    if state == TargetState::NonEmpty && !req.force {
        return Err(Error::TargetNotEmpty { path: target });
    }

    let template = Template::load(&req.template)?;
    name.check_reserved(&template.manifest.template.reserved_names)?;
    // A re-render from `.stackwise.toml` keeps the recorded preset, or the recorded layout when
    // it was generated with --layout alone; flags still win.
    let (file_preset, file_layout) = match (&req.preset, &req.layout) {
        (None, None) => (file.preset.as_deref(), file.layout.as_deref()),
        _ => (None, None),
    };
    let (preset, layout) = choose_preset_and_layout(
        &template,
        req.preset.as_deref(),
        req.layout
            .as_deref()
            .or(if file_preset.is_none() { file_layout } else { None }),
        file_preset,
        prompter,
    )?;
    let mut rendered = render_project(&template, name, preset, layout, sets, file.answers, prompter)?;
    let info = record::TemplateInfo::of(&template, &req.template);
    record::add_to(&mut rendered, &template, &info, None);
    Ok(Prepared {
        rendered,
        info,
        target,
        state,
        template: template.tree.source.clone(),
        secrets: template
            .manifest
            .variables
            .iter()
            .filter(|v| v.secret)
            .map(|v| v.name.clone())
            .collect(),
    })
}

/// `--install` after the project moved into place: its install steps, the log kept only when one
/// failed, and a second commit taking the lockfiles (they are not template output, so `update`
/// never merges them).
fn install_and_commit(
    target: &Path,
    rendered: &Rendered,
    fresh: bool,
    want_git: bool,
    progress: &mut dyn super::install::Progress,
    outcome: &mut Outcome,
) -> Result<()> {
    let written: Vec<String> = rendered.files.iter().map(|f| f.path.clone()).collect();
    let steps = super::install::steps_for(&written);
    let log = super::install::new_log(&rendered.name.slug).map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let results = super::install::run(target, &steps, &log, progress);
    if crate::interrupt::check().is_err() {
        let _ = std::fs::remove_file(&log);
        return Err(interrupted_install(target, fresh));
    }
    // The log is kept only when a step failed: it is where the failure is explained.
    if results.iter().all(|r| r.ok) {
        let _ = std::fs::remove_file(&log);
    } else {
        outcome.install_log = Some(log);
    }
    outcome.install = results;
    if want_git {
        outcome.lockfiles_commit = super::git::commit_new_files(
            target,
            "stackwise: lockfiles from install\n\nWritten by the project's own install steps (uv sync, npm install), not by the\ntemplate: `stackwise update` never merges them.\n",
        )?;
    }
    Ok(())
}

/// Ctrl-C during `--install`: the project had moved into place for its install steps. A new
/// directory goes again, as if nothing had been written (all or nothing); one that existed before
/// (`--force`) stays, without its lockfiles.
fn interrupted_install(target: &std::path::Path, fresh: bool) -> Error {
    if fresh && std::fs::remove_dir_all(target).is_ok() {
        return Error::InterruptedLeaving(format!(
            "the install steps were stopped and {} was removed; nothing was written",
            target.display()
        ));
    }
    Error::InterruptedLeaving(format!(
        "the install steps were stopped; the project is at {} without its lockfiles (run `make install` there)",
        target.display()
    ))
}
