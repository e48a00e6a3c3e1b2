//! Computed first: everything an update will do, worked out in memory before anything is
//! written (SPEC §7.1) — answers, the render commit object, the base, the relocation of a
//! growing layout, the merged index, the report and the re-lock commands. Git objects may be
//! written (unreferenced until the writer applies the plan); no file, index or ref is.
//! `--dry-run` and `--check` are this computation, printed; [`super::apply`] writes it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use git2::{Index, Oid, Repository};
use serde_json::Map;

use super::base::{find_base, same_render};
use super::evolve::{self, Relocation};
use super::merge::{self, MergeSpec, Merged};
use super::report::{FileReport, FileStatus};
use super::{Change, Side, UpdateOutcome, UpdateRequest, UpdateStatus, answers, repo, skip};
use crate::error::{Error, Result};
use crate::project::git;
use crate::project::install::{self, Step};
use crate::project::record::{self, ProjectRecord, TemplateInfo};
use crate::template::names::ProjectName;
use crate::template::paths::check_relative_path;
use crate::template::prompter::Prompter;
use crate::template::source::TemplateSource;
use crate::template::{Rendered, Template, answers as template_answers, parse_sets, render_project};

/// An update, computed.
pub struct Plan {
    /// The report: what the update does (or, for `--dry-run`, would do).
    pub outcome: UpdateOutcome,
    /// HEAD when the plan was made.
    pub head: Oid,
    /// The project's directory in its repository (`""` at the root; a monorepo's
    /// `services/api`). The report's paths are relative to it, the work's to the repository.
    pub prefix: String,
    pub work: Work,
}

/// What the writer has to write.
pub enum Work {
    /// Up to date: nothing.
    Nothing,
    /// `--restore` alone: HEAD's tree with the restored files.
    Restore {
        tree: Oid,
        message: String,
        new_files: BTreeSet<String>,
    },
    Merge(Box<MergeWork>),
}

/// A merge to write.
pub struct MergeWork {
    /// The new render commit (`MERGE_HEAD`, kept alive by `refs/stackwise/pending`).
    pub render: Oid,
    /// The move-only commit of a growing layout: its tree and message.
    pub moves: Option<(Oid, String)>,
    /// The merged index that was reported (conflicts as stages 1/2/3).
    pub index: Index,
    /// Its tree, when there is no conflict: exactly what the merge commit holds.
    pub tree: Option<Oid>,
    pub message: String,
    pub ancestor_label: String,
    pub their_label: String,
    pub steps: Vec<Step>,
    /// Paths the update creates in the work tree (none exists yet).
    pub new_files: BTreeSet<String>,
    /// Conflicts whose work-tree file stays the user's ([`Merged::not_merged`]).
    pub not_merged: BTreeSet<String>,
}

/// The user's input, checked before any template is fetched.
struct Inputs {
    sets: Map<String, serde_json::Value>,
    restore: BTreeSet<String>,
    skip: skip::Patterns,
    source: TemplateSource,
}

fn refuse(msg: impl Into<String>) -> Error {
    Error::refused(msg)
}

fn read_inputs(req: &UpdateRequest, rec: &ProjectRecord) -> Result<Inputs> {
    let mut sets = match &req.answers_file {
        Some(p) => template_answers::load_file(p)?.answers,
        None => Map::new(),
    };
    sets.extend(parse_sets(&req.sets)?);
    let restore: BTreeSet<String> = req
        .restore
        .iter()
        .map(|p| p.trim_end_matches('/').to_string())
        .collect();
    for p in &restore {
        check_relative_path(p).map_err(|why| refuse(format!("--restore {p}: {why}")))?;
    }
    let skip = skip::Patterns::parse(&rec.skip)?;
    Ok(Inputs {
        sets,
        restore,
        skip,
        source: template_source(req, rec)?,
    })
}

/// The source of the next render: `--template`, else the recorded one; at `--to REV` for git.
pub fn template_source(req: &UpdateRequest, rec: &ProjectRecord) -> Result<TemplateSource> {
    let mut source = req.template.clone().unwrap_or_else(|| rec.info.source());
    if let Some(rev) = &req.to {
        match &mut source {
            TemplateSource::Git { reference, .. } => *reference = Some(rev.clone()),
            _ => {
                return Err(refuse(format!(
                    "--to {rev} needs a git template source; {} is not one (use --template DIR for another local copy)",
                    source.describe()
                )));
            }
        }
    }
    Ok(source)
}

/// Loads a template for an update; a source that cannot be read is a refusal.
fn load_template(source: &TemplateSource) -> Result<Template> {
    Template::load(source).map_err(|e| match e {
        Error::Source { .. } | Error::Io { .. } | Error::InvalidValue { .. } => Error::refused_with(
            format!("the template source {} cannot be read: {e}", source.describe()),
            "check the path or URL, or pass --template SRC to use another copy",
        ),
        other => other,
    })
}

/// The template's next render, made in memory as an update makes it. `stackwise diff --incoming`
/// shows this very render.
pub struct NextRender {
    pub template: Template,
    pub info: TemplateInfo,
    pub rendered: Rendered,
}

/// Loads `source` and renders it for the project of `rec`: preset and layout (flags, then the
/// record), the recorded answers through the template's migrations, `sets`, defaults or prompts
/// for new variables, and `.stackwise.toml`. Notes on the answers go to `notes`.
pub fn next_render(
    source: &TemplateSource,
    req: &UpdateRequest,
    rec: &ProjectRecord,
    sets: Map<String, serde_json::Value>,
    prompter: &mut dyn Prompter,
    notes: &mut Vec<String>,
) -> Result<NextRender> {
    let template = load_template(source)?;
    let info = TemplateInfo::of(&template, source);
    let rendered = render_new(&template, &info, req, rec, sets, prompter, notes)?;
    Ok(NextRender {
        template,
        info,
        rendered,
    })
}

/// The new render: preset and layout, carried-over answers, `.stackwise.toml`.
fn render_new(
    template: &Template,
    info: &TemplateInfo,
    req: &UpdateRequest,
    rec: &ProjectRecord,
    sets: Map<String, serde_json::Value>,
    prompter: &mut dyn Prompter,
    notes: &mut Vec<String>,
) -> Result<Rendered> {
    let (preset, layout) = super::choose_preset(template, req, rec, notes)?;
    let name = ProjectName::parse(&rec.name)?;
    let change = answers::PresetChange {
        name: &name,
        old_layout: &rec.layout,
        old_preset: rec.preset.as_deref(),
        new_preset: preset.as_deref(),
    };
    answers::refuse_downgrade(&template.manifest, rec.info.version.as_deref())?;
    let (carried, answer_notes) = answers::carry_over(template, &rec.answers, rec.info.version.as_deref(), &change)?;
    notes.extend(answer_notes);
    let given: BTreeSet<String> = carried.keys().chain(sets.keys()).cloned().collect();
    let recorded: Map<String, serde_json::Value> = carried
        .iter()
        .filter(|(k, _)| !sets.contains_key(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let preset_id = preset.clone();
    let mut rendered = render_project(template, name, preset, layout, sets, carried, prompter)
        .map_err(|e| super::notes::recorded_answer_refused(e, &recorded))?;
    notes.append(&mut rendered.ignored);
    // Asked on a terminal, the user chose them; otherwise they are named.
    if !prompter.is_interactive() {
        notes.extend(super::notes::new_answers(
            template,
            preset_id.as_deref(),
            &given,
            &rendered,
        ));
    }
    record::add_to(&mut rendered, template, info, Some(&rec.update));
    Ok(rendered)
}

/// Computes the update `req` asks for; writes no file, index or ref.
pub fn compute(req: &UpdateRequest, prompter: &mut dyn Prompter) -> Result<(Repository, Plan)> {
    let (repo, prefix) = repo::open(&req.dir)?;
    repo::check_state(&repo)?;
    repo::check_hidden(&repo)?;
    super::policy::check_index_lock(&repo)?;
    let root = repo.workdir().unwrap_or(repo.path()).join(&prefix);
    repo::check_no_stray_record(&repo, &prefix, &root)?;
    repo::check_clean(&repo)?;
    let rec = repo::head_record(&repo, &prefix)?;
    let inputs = read_inputs(req, &rec)?;
    let mut notes = Vec::new();
    let NextRender {
        template,
        info,
        rendered,
    } = next_render(&inputs.source, req, &rec, inputs.sets.clone(), prompter, &mut notes)?;
    notes.extend(super::notes::pinned_note(&inputs.source, &template.tree.newer_tags));
    let (head, full_tree) = {
        let c = repo.head()?.peel_to_commit()?;
        (c.id(), c.tree_id())
    };
    let head_tree = repo::subtree(&repo, full_tree, &prefix)?;
    let (base, base_note) = find_base(&repo, head, &rec)?;
    notes.extend(base_note);
    let render_msg = git::render_message(&info, &rendered.layout, rendered.preset.as_deref());
    let render = git::write_render_commit(&repo, &rendered.files, &render_msg, Some(base))?;
    let base_tree = repo.find_commit(base)?.tree_id();
    let reloc = evolve::relocation(
        &repo,
        (&template, &rec, &rendered),
        (base_tree, head_tree),
        &root,
        &mut notes,
    )?;
    let mut outcome = UpdateOutcome::new(&rec, &info, &rendered, notes, req);
    if matches!(inputs.source, TemplateSource::Git { reference: Some(_), .. }) {
        outcome.newer_tags = template.tree.newer_tags.clone();
    }
    let render_tree = repo.find_commit(render)?.tree_id();
    let work = if same_render(&repo, reloc.base, render_tree)? {
        restore_only(&repo, (head_tree, &root), render_tree, &inputs.restore, &mut outcome)?
    } else {
        let side = repo::record_at(&repo, base).map_or_else(|| rec.info.clone(), |r| r.info);
        let ctx = MergeContext {
            repo: &repo,
            head: head_tree,
            root: &root,
            render,
            rendered: &rendered,
            inputs: &inputs,
            labels: (describe(&side), describe(&info)),
        };
        Work::Merge(Box::new(plan_merge(&ctx, reloc, &mut outcome)?))
    };
    let work = lift(&repo, full_tree, &prefix, work)?;
    if !matches!(work, Work::Nothing) {
        let written: Vec<String> = outcome
            .files
            .iter()
            .filter(|f| {
                !matches!(
                    f.status,
                    FileStatus::KeptDeleted | FileStatus::KeptYours | FileStatus::Skipped
                )
            })
            .map(|f| repo::under(&prefix, &f.path))
            .collect();
        let after = super::attributes::after(&repo, &work, &written)?;
        super::policy::check_filters(&repo, &written, after.as_ref().map(|a| &a.repo))?;
    }
    // A commit the user's git would have made otherwise (hooks, signing, identity) says so.
    let commits = match &work {
        Work::Nothing => false,
        Work::Restore { .. } => true,
        Work::Merge(_) => req.commit && outcome.status == UpdateStatus::Clean,
    };
    if commits {
        outcome.notes.extend(super::policy::commit_notes(&repo));
    }
    Ok((
        repo,
        Plan {
            outcome,
            head,
            prefix,
            work,
        },
    ))
}

struct MergeContext<'a> {
    repo: &'a Repository,
    head: Oid,
    /// The project's directory in the work tree.
    root: &'a Path,
    render: Oid,
    rendered: &'a Rendered,
    inputs: &'a Inputs,
    /// How the base and the new render are named in conflict markers.
    labels: (String, String),
}

/// `--restore` alone (the template did not change): the current render's version of the files.
fn restore_only(
    repo: &Repository,
    (head, root): (Oid, &Path),
    render: Oid,
    restore: &BTreeSet<String>,
    outcome: &mut UpdateOutcome,
) -> Result<Work> {
    if restore.is_empty() {
        return Ok(Work::Nothing);
    }
    let mut index = Index::new()?;
    index.read_tree(&repo.find_tree(head)?)?;
    let mut files = Vec::new();
    add_restored(repo, &mut index, head, render, restore, &mut files)?;
    let tree = index.write_tree_to(repo)?;
    super::writable::check_writable(repo, &index, head, root)?;
    outcome.status = UpdateStatus::Clean;
    outcome.files = files;
    let list: Vec<&str> = restore.iter().map(String::as_str).collect();
    Ok(Work::Restore {
        tree,
        message: format!("stackwise: restore {} from the template\n", list.join(", ")),
        new_files: restore.clone(),
    })
}

/// The render's version of each `--restore` path that no merge conflict brought up.
fn add_restored(
    repo: &Repository,
    index: &mut Index,
    ours: Oid,
    render: Oid,
    restore: &BTreeSet<String>,
    files: &mut Vec<FileReport>,
) -> Result<()> {
    let (ours, render) = (repo.find_tree(ours)?, repo.find_tree(render)?);
    for p in restore {
        if files.iter().any(|f| &f.path == p) {
            continue;
        }
        let entry = repo::restorable(&ours, &render, p)?;
        merge::add_to_index(index, p, entry.id(), entry.filemode())?;
        files.push(FileReport::new(p.as_str(), FileStatus::Added));
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(())
}

/// The merged index and its report: git's merge with the policies, `--restore`d files, and
/// the moves of a growing layout.
fn merged(ctx: &MergeContext, reloc: &Relocation) -> Result<(Merged, [String; 2])> {
    let repo = ctx.repo;
    let once: BTreeSet<&str> = ctx
        .rendered
        .files
        .iter()
        .filter(|f| f.update_once)
        .map(|f| f.path.as_str())
        .collect();
    let skip = |p: &str| once.contains(p) || ctx.inputs.skip.is_match(p);
    let (ancestor, theirs) = &ctx.labels;
    let spec = MergeSpec {
        base: reloc.base,
        theirs: ctx.render,
        skip: &skip,
        restore: &ctx.inputs.restore,
        their_label: format!("template {theirs}"),
        ancestor_label: format!("last render {ancestor}"),
    };
    let mut merged = merge::merge_in_memory(repo, reloc.ours, &spec)?;
    let (index, files) = (&mut merged.index, &mut merged.files);
    let render_tree = repo.find_commit(ctx.render)?.tree_id();
    let restore = &ctx.inputs.restore;
    add_restored(repo, index, reloc.ours, render_tree, restore, files)?;
    // A moved file is reported as renamed when the merge keeps it where it moved and says
    // nothing else about it.
    let kept: BTreeSet<Vec<u8>> = index.iter().map(|e| e.path).collect();
    for m in &reloc.moved {
        let mentioned = files
            .iter()
            .any(|f| f.path == m.path || f.from.as_deref() == Some(&m.path));
        if !mentioned && kept.contains(m.path.as_bytes()) {
            files.push(m.clone());
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((merged, [spec.ancestor_label, spec.their_label]))
}

fn plan_merge(ctx: &MergeContext, reloc: Relocation, outcome: &mut UpdateOutcome) -> Result<MergeWork> {
    let repo = ctx.repo;
    let (merged, [ancestor_label, their_label]) = merged(ctx, &reloc)?;
    let Merged {
        mut index,
        files,
        not_merged,
    } = merged;
    for p in &not_merged {
        outcome.notes.push(format!(
            "{p} is not merged (merge=binary or -merge in .gitattributes): your version is in the work tree, the template's is `git show MERGE_HEAD:{p}`"
        ));
    }
    let new_files = super::writable::check_writable(repo, &index, ctx.head, ctx.root)?;
    let conflicts = files.iter().any(|f| f.status == FileStatus::Conflict);
    outcome.status = if conflicts {
        UpdateStatus::Conflicts
    } else {
        UpdateStatus::Clean
    };
    outcome.files = files;
    let steps = install::steps_for(&changed_dependency_manifests(repo, reloc.ours, &index)?);
    outcome.relock = steps.iter().map(relock_command).collect();
    Ok(MergeWork {
        render: ctx.render,
        moves: reloc.commit,
        tree: if conflicts {
            None
        } else {
            Some(index.write_tree_to(repo)?)
        },
        index,
        message: outcome.merge_message(),
        ancestor_label,
        their_label,
        steps,
        new_files,
        not_merged,
    })
}

/// The work in repository terms: for a project in a subdirectory of a larger repository, the
/// project's trees, index and new paths moved under its directory (the rest of the repository
/// as HEAD has it).
fn lift(repo: &Repository, full: Oid, prefix: &str, work: Work) -> Result<Work> {
    if prefix.is_empty() {
        return Ok(work);
    }
    let paths = |set: BTreeSet<String>| set.iter().map(|p| repo::under(prefix, p)).collect();
    Ok(match work {
        Work::Nothing => Work::Nothing,
        Work::Restore {
            tree,
            message,
            new_files,
        } => Work::Restore {
            tree: repo::lift_tree(repo, full, prefix, tree)?,
            message,
            new_files: paths(new_files),
        },
        Work::Merge(mut m) => {
            m.index = repo::lift_index(repo, full, prefix, &m.index)?;
            m.tree = m.tree.map(|t| repo::lift_tree(repo, full, prefix, t)).transpose()?;
            if let Some((t, _)) = &mut m.moves {
                *t = repo::lift_tree(repo, full, prefix, *t)?;
            }
            m.new_files = paths(std::mem::take(&mut m.new_files));
            m.not_merged = paths(std::mem::take(&mut m.not_merged));
            Work::Merge(m)
        }
    })
}

/// Every entry of a tree that is not a tree (files, symlinks, submodule gitlinks), by path.
pub fn tree_paths(repo: &Repository, tree: Oid) -> Result<BTreeMap<String, i32>> {
    let mut out = BTreeMap::new();
    repo.find_tree(tree)?
        .walk(git2::TreeWalkMode::PreOrder, |root, entry| {
            if entry.kind() != Some(git2::ObjectType::Tree)
                && let Some(name) = entry.name()
            {
                out.insert(format!("{root}{name}"), entry.filemode());
            }
            git2::TreeWalkResult::Ok
        })?;
    Ok(out)
}

/// `pyproject.toml` / `package.json` that the merge changes.
fn changed_dependency_manifests(repo: &Repository, ours: Oid, merged: &Index) -> Result<Vec<String>> {
    let ours = merge::tree_files(&repo.find_tree(ours)?)?;
    Ok(merged
        .iter()
        .filter(|e| e.flags & 0x3000 == 0)
        .map(|e| (String::from_utf8_lossy(&e.path).into_owned(), e.id))
        .filter(|(p, _)| p.ends_with("pyproject.toml") || p.ends_with("package.json"))
        .filter(|(p, id)| ours.get(p).map(|(o, _)| o) != Some(id))
        .map(|(p, _)| p)
        .collect())
}

fn relock_command(step: &Step) -> String {
    let cmd = match step.program.as_str() {
        "uv" => "uv lock",
        _ => "npm install --package-lock-only --ignore-scripts",
    };
    if step.dir == "." {
        cmd.to_string()
    } else {
        format!("(cd {} && {cmd})", step.dir)
    }
}

/// A side of an update in a few words: `1.2.0 (abcdef012345)`.
pub fn describe(info: &TemplateInfo) -> String {
    match &info.version {
        Some(v) => format!("{v} ({})", crate::project::git::short_revision(&info.revision)),
        None => crate::project::git::short_revision(&info.revision),
    }
}

impl UpdateOutcome {
    fn new(
        rec: &ProjectRecord,
        info: &TemplateInfo,
        rendered: &Rendered,
        notes: Vec<String>,
        req: &UpdateRequest,
    ) -> Self {
        let changed = |a: &str, b: &str| (a != b).then(|| Change::new(a, b));
        let old_preset = rec.preset.as_deref().unwrap_or("none");
        UpdateOutcome {
            status: UpdateStatus::UpToDate,
            from: Side::from(&TemplateInfo::clone(&rec.info)),
            to: Side::from(info),
            preset: changed(old_preset, rendered.preset.as_deref().unwrap_or("none")),
            layout: changed(&rec.layout, &rendered.layout),
            files: Vec::new(),
            commit: None,
            notes,
            newer_tags: Vec::new(),
            relock: Vec::new(),
            install: Vec::new(),
            dry_run: req.dry_run || req.check,
            merge_in_progress: false,
        }
    }

    /// `1.0.0 (abc) -> 2.0.0 (def)`, with the preset or layout change when there is one.
    pub fn headline(&self) -> String {
        let side = |s: &Side| match &s.version {
            Some(v) => format!("{v} ({})", crate::project::git::short_revision(&s.revision)),
            None => crate::project::git::short_revision(&s.revision),
        };
        let mut out = format!("{} -> {}", side(&self.from), side(&self.to));
        if let Some(p) = &self.preset {
            out.push_str(&format!(", preset {} -> {}", p.from, p.to));
        }
        if let Some(l) = &self.layout {
            out.push_str(&format!(", layout {} -> {}", l.from, l.to));
        }
        out
    }

    fn merge_message(&self) -> String {
        format!(
            "stackwise update: {} {}\n\nMerges the template's new render into the project.\n\n{}: {} -> {}\n",
            self.to.template,
            self.headline(),
            git::UPDATE_TRAILER,
            self.from.revision,
            self.to.revision
        )
    }
}
