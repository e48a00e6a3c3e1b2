//! `stackwise new`: the pipeline from a template source to a project on disk.
//! source → manifest/presets → answers → plan → render → staging → (install) → git → move into place.

use std::path::PathBuf;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::answers::{self, Inputs, Prompter};
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::names::ProjectName;
use crate::plan::{self, RenderedFile};
use crate::preset::Catalogue;
use crate::record;
use crate::source::{TemplateSource, TemplateTree};
use crate::stage::{self, Staging, TargetState};

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

/// What was generated (or would be, with `--dry-run`).
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub name: ProjectName,
    pub target: PathBuf,
    pub layout: String,
    pub preset: Option<String>,
    pub template: String,
    pub answers: Map<String, Value>,
    pub files: Vec<String>,
    /// Files of a non-empty target that were replaced (`--force`).
    pub overwritten: Vec<String>,
    pub git_commit: Option<String>,
    /// Why no repository was created, when none was.
    pub git_skipped: Option<String>,
    pub dry_run: bool,
    /// Results of `--install` steps, in order (the first failure stops them).
    pub install: Vec<crate::install::StepResult>,
    /// Where the install steps' output went.
    pub install_log: Option<PathBuf>,
}

/// The template, its manifest and its presets, loaded and checked.
pub struct Loaded {
    pub tree: TemplateTree,
    pub manifest: Manifest,
    pub catalogue: Catalogue,
}

impl Loaded {
    pub fn load(source: &TemplateSource) -> Result<Self> {
        let tree = TemplateTree::load(source)?;
        let manifest = Manifest::load(&tree)?;
        let catalogue = Catalogue::load(&tree, &manifest)?;
        Ok(Loaded {
            tree,
            manifest,
            catalogue,
        })
    }
}

/// Resolves name, preset, layout and answers, and renders every file in memory.
pub struct Rendered {
    pub name: ProjectName,
    pub layout: String,
    pub preset: Option<String>,
    pub answers: Map<String, Value>,
    pub files: Vec<RenderedFile>,
}

/// Picks the preset and layout from the flags, the answers file and (on a terminal) the user.
pub fn choose_preset_and_layout(
    loaded: &Loaded,
    preset: Option<&str>,
    layout: Option<&str>,
    file_preset: Option<&str>,
    prompter: &mut dyn Prompter,
) -> Result<(Option<String>, String)> {
    if let Some(l) = layout
        && !loaded.manifest.layouts.contains_key(l)
    {
        return Err(Error::UnknownLayout {
            name: l.to_string(),
            available: loaded.manifest.layout_names(),
        });
    }
    let preset_id = match (preset, layout) {
        (Some(p), _) => Some(p.to_string()),
        (None, Some(_)) => None,
        (None, None) => match file_preset {
            Some(p) => Some(p.to_string()),
            None => {
                let default = loaded.catalogue.default_preset().map(|p| p.id.clone());
                if prompter.is_interactive() && !loaded.catalogue.presets.is_empty() {
                    prompter.choose_preset(&loaded.catalogue, &loaded.manifest)?.or(default)
                } else {
                    default
                }
            }
        },
    };
    match preset_id {
        Some(id) => {
            let p = loaded.catalogue.get(&id)?;
            if let Some(l) = layout
                && l != p.layout
            {
                return Err(Error::LayoutConflict {
                    preset: p.id.clone(),
                    preset_layout: p.layout.clone(),
                    layout: l.to_string(),
                });
            }
            Ok((Some(p.id.clone()), p.layout.clone()))
        }
        None => {
            let l = layout
                .map(str::to_string)
                .or_else(|| loaded.manifest.layouts.keys().next().cloned())
                .ok_or_else(|| Error::Manifest {
                    path: crate::source::MANIFEST_FILE.into(),
                    reason: "declares no layouts".into(),
                })?;
            Ok((None, l))
        }
    }
}

/// Parses `--set` arguments into pre-answers.
pub fn parse_sets(sets: &[String]) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    for s in sets {
        let (k, v) = answers::parse_set(s)?;
        out.insert(k, Value::String(v));
    }
    Ok(out)
}

/// Resolves answers and renders the project in memory (nothing touches the disk).
#[allow(clippy::too_many_arguments)]
pub fn render_project(
    loaded: &Loaded,
    name: ProjectName,
    preset: Option<String>,
    layout: String,
    sets: Map<String, Value>,
    file_answers: Map<String, Value>,
    prompter: &mut dyn Prompter,
) -> Result<Rendered> {
    let mut inputs = Inputs {
        sets,
        file: file_answers,
        ..Inputs::default()
    };
    if let Some(id) = &preset {
        for (k, v) in &loaded.catalogue.get(id)?.options {
            inputs.preset_options.insert(k.clone(), answers::toml_to_json(v));
        }
    }
    let base = crate::context::base(&name, &layout, preset.as_deref());
    let answers = answers::resolve(&loaded.manifest, &base, &inputs, prompter)?;
    let mut values = base;
    values.extend(answers.clone());
    let plan = plan::plan(&loaded.tree, &loaded.manifest, &layout, &values)?;
    let mut files = plan::render(&loaded.tree, &plan)?;
    if !files.iter().any(|f| f.path == record::RECORD_FILE) {
        let text = record::render(
            &loaded.manifest,
            &loaded.tree.source,
            loaded.tree.revision.as_deref(),
            &name.name,
            &layout,
            preset.as_deref(),
            &answers,
        );
        files.push(RenderedFile {
            path: record::RECORD_FILE.into(),
            bytes: text.into_bytes(),
            executable: false,
        });
        files.sort_by(|a, b| a.path.cmp(&b.path));
    }
    Ok(Rendered {
        name,
        layout,
        preset,
        answers,
        files,
    })
}

/// `stackwise new`.
pub fn new_project(
    req: &NewRequest,
    prompter: &mut dyn Prompter,
    progress: &mut dyn crate::install::Progress,
) -> Result<Outcome> {
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

    let loaded = Loaded::load(&req.template)?;
    // A re-render from `.stackwise.toml` keeps the recorded preset, or the recorded layout when
    // it was generated with --layout alone; flags still win.
    let (file_preset, file_layout) = match (&req.preset, &req.layout) {
        (None, None) => (file.preset.as_deref(), file.layout.as_deref()),
        _ => (None, None),
    };
    let (preset, layout) = choose_preset_and_layout(
        &loaded,
        req.preset.as_deref(),
        req.layout
            .as_deref()
            .or(if file_preset.is_none() { file_layout } else { None }),
        file_preset,
        prompter,
    )?;
    let rendered = render_project(&loaded, name, preset, layout, sets, file.answers, prompter)?;
    let files: Vec<String> = rendered.files.iter().map(|f| f.path.clone()).collect();
    let mut outcome = Outcome {
        name: rendered.name.clone(),
        target: target.clone(),
        layout: rendered.layout.clone(),
        preset: rendered.preset.clone(),
        template: loaded.tree.source.clone(),
        answers: rendered.answers.clone(),
        files,
        overwritten: Vec::new(),
        git_commit: None,
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

    let staging = Staging::new(&target)?;
    if let Err(e) = staging.write(&rendered.files) {
        staging.abandon();
        return Err(e);
    }
    let fresh = state != TargetState::NonEmpty;
    let git_message = format!(
        "Initial commit: {} generated by stackwise {}\n\nLayout: {}\nPreset: {}\n",
        rendered.name.slug,
        env!("CARGO_PKG_VERSION"),
        rendered.layout,
        rendered.preset.as_deref().unwrap_or("none")
    );
    outcome.git_skipped = if !req.git {
        Some("--no-git".to_string())
    } else if !fresh {
        Some("the target directory already existed (--force); no repository was created".to_string())
    } else {
        None
    };
    let want_git = outcome.git_skipped.is_none();
    if !req.install {
        // Without install steps the commit happens in the staging directory, so the project
        // appears in one rename with its repository.
        if want_git {
            match crate::git::init_and_commit(&staging.root, &git_message) {
                Ok(c) => outcome.git_commit = Some(c),
                Err(e) => {
                    staging.abandon();
                    return Err(e);
                }
            }
        }
        outcome.overwritten = staging.commit(&target, &rendered.files, req.force)?;
        return Ok(outcome);
    }
    // With --install the project moves into place first (virtual environments hold absolute
    // paths), then its install steps run, then the commit takes the lockfiles along.
    outcome.overwritten = staging.commit(&target, &rendered.files, req.force)?;
    let written: Vec<String> = rendered.files.iter().map(|f| f.path.clone()).collect();
    let steps = crate::install::plan(&written);
    let log = std::env::temp_dir().join(format!(
        "stackwise-install-{}-{}.log",
        rendered.name.slug,
        std::process::id()
    ));
    let results = crate::install::run(&target, &steps, &log, progress);
    outcome.install_log = Some(log);
    outcome.install = results;
    if want_git {
        outcome.git_commit = Some(crate::git::init_and_commit(&target, &git_message)?);
    }
    Ok(outcome)
}
