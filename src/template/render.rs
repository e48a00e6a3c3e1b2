//! Rendering a plan: one Tera instance holds every template of the plan plus the partials.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

pub use super::budget::RenderBudget;
use super::budget::{Meter, MeteredWriter, SPAWN_PATIENCE, resident_bytes, spawn_patiently};
use super::files::PARTIALS_DIR;
use super::inline::{self, template_error};
use super::plan::{Action, Plan};
use super::source::TemplateTree;
use crate::error::{Error, Result, TemplateError};

/// A rendered file.
#[derive(Debug, Clone)]
pub struct RenderedFile {
    pub path: String,
    pub bytes: Vec<u8>,
    pub executable: bool,
    /// Written by `stackwise new` only (`update = "once"`).
    pub update_once: bool,
}

/// Renders every file of the plan. Each Tera instance holds the templates it renders plus the
/// partials they name, so templates can `{% include "partials/..." %}`.
///
/// Parsing is most of a render's cost, and the templates are independent of each other: with
/// more than one core and enough files, they are split in two halves (by size), each parsed and
/// rendered on a thread of its own. A half that fails (a syntax error, a template that includes
/// another rendered template the other half holds) does not decide the outcome: the whole plan
/// is then rendered again in one instance, which gives the same files or the same error as a
/// render that was never split.
pub fn render_plan(tree: &TemplateTree, plan: &Plan) -> Result<Vec<RenderedFile>> {
    render_plan_within(tree, plan, RenderBudget::from_env())
}

fn render_plan_within(tree: &TemplateTree, plan: &Plan, budget: RenderBudget) -> Result<Vec<RenderedFile>> {
    // One budget for the plan, a render done again after a failed split included.
    let started = Instant::now();
    let budget = (budget, started, started + budget.time);
    let jobs: Vec<(usize, String, usize)> = plan
        .files
        .iter()
        .enumerate()
        .filter(|(_, f)| f.action == Action::Render)
        .map(|(i, f)| (i, f.source.clone(), f.mount))
        .collect();
    let sources = || -> Result<Vec<(&str, Cow<'static, str>)>> {
        let names: BTreeSet<&str> = jobs.iter().map(|(_, s, _)| s.as_str()).collect();
        names.into_iter().map(|s| Ok((s, template_text(tree, s)?))).collect()
    };
    let contexts: Arc<Vec<tera::Context>> = Arc::new(plan.contexts.iter().map(inline::tera_context).collect());
    let whole = || -> Result<Vec<Group>> { Ok(vec![group(tree, sources()?, &jobs)?]) };
    let mut rendered = if jobs.len() >= SPLIT_FROM && parallelism() > 1 {
        // Largest first, each to the lighter half.
        let mut by_size = sources()?;
        by_size.sort_by_key(|(_, t)| std::cmp::Reverse(t.len()));
        let (mut halves, mut weight) = ([Vec::new(), Vec::new()], [0, 0]);
        for (s, t) in by_size {
            let h = usize::from(weight[1] < weight[0]);
            weight[h] += t.len();
            halves[h].push((s, t));
        }
        let [a, b] = halves;
        match render_groups(vec![group(tree, a, &jobs)?, group(tree, b, &jobs)?], &contexts, budget) {
            Ok(out) => out,
            Err(Failed::Retry(_)) => render_groups(whole()?, &contexts, budget).map_err(Failed::into_error)?,
            Err(other) => return Err(other.into_error()),
        }
    } else {
        render_groups(whole()?, &contexts, budget).map_err(Failed::into_error)?
    };
    let mut out = Vec::with_capacity(plan.files.len());
    for (i, f) in plan.files.iter().enumerate() {
        let bytes = match f.action {
            Action::Copy => tree.files[&f.source].to_vec(),
            Action::Render => rendered.remove(&i).unwrap_or_default(),
        };
        out.push(RenderedFile {
            path: f.path.clone(),
            bytes,
            executable: f.executable,
            update_once: f.update_once,
        });
    }
    Ok(out)
}

/// A plan renders on two threads from this many rendered files on (below it, starting the
/// second thread and parsing the partials twice costs about what it saves).
const SPLIT_FROM: usize = 16;

/// The cores this process may use (its cgroup's quota included), asked once.
pub(crate) fn parallelism() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get))
}

/// What one thread parses and renders: the templates (with the partials they name) and the
/// render jobs (plan index, template name, context index) of those templates.
struct Group {
    texts: Vec<(String, Cow<'static, str>)>,
    jobs: Vec<(usize, String, usize)>,
}

/// The group rendering `sources`: their texts, the partials they name and those the partials name
/// in turn (an include, an import, an extends names its template with a literal string, so a
/// partial whose name appears nowhere cannot be used, and is neither read nor parsed), and the
/// jobs of `sources`.
fn group(
    tree: &TemplateTree,
    sources: Vec<(&str, Cow<'static, str>)>,
    jobs: &[(usize, String, usize)],
) -> Result<Group> {
    let jobs = jobs
        .iter()
        .filter(|(_, s, _)| sources.iter().any(|(name, _)| name == s))
        .cloned()
        .collect();
    let mut texts: Vec<(String, Cow<'static, str>)> = sources.into_iter().map(|(s, t)| (s.to_string(), t)).collect();
    let partial_prefix = format!("{PARTIALS_DIR}/");
    let mut partials: Vec<&str> = tree
        .files
        .keys()
        .filter(|k| k.starts_with(&partial_prefix))
        .map(String::as_str)
        .collect();
    let mut scanned = 0;
    while scanned < texts.len() {
        // Every name starts with the prefix: one pass over the text for the prefix, then a
        // comparison where it occurs (rather than a search of the whole text per partial).
        let text = &texts[scanned].1;
        scanned += 1;
        let mentions: Vec<&str> = text
            .match_indices(partial_prefix.as_str())
            .map(|(at, _)| &text[at..])
            .collect();
        let (named, rest): (Vec<&str>, Vec<&str>) = partials
            .into_iter()
            .partition(|p| mentions.iter().any(|m| m.starts_with(*p)));
        partials = rest;
        for p in named {
            if !texts.iter().any(|(s, _)| s == p) {
                let text = template_text(tree, p)?;
                texts.push((p.to_string(), text));
            }
        }
    }
    Ok(Group { texts, jobs })
}

/// Why [`render_groups`] failed: for a reason a render of the whole plan in one instance may not
/// share (a template's syntax or what it does when rendered, which can depend on what the other
/// half holds; no thread for the second half), or for good (the budget, an interrupt).
enum Failed {
    Retry(Error),
    Final(Error),
}

impl Failed {
    fn into_error(self) -> Error {
        match self {
            Failed::Retry(e) | Failed::Final(e) => e,
        }
    }
}

/// The text of the template `name`, which must be text to be rendered: borrowed from the binary
/// for the embedded template.
fn template_text(tree: &TemplateTree, name: &str) -> Result<Cow<'static, str>> {
    let text = match &tree.files[name] {
        Cow::Borrowed(bytes) => std::str::from_utf8(bytes).ok().map(Cow::Borrowed),
        Cow::Owned(bytes) => std::str::from_utf8(bytes).ok().map(|t| Cow::Owned(t.to_string())),
    };
    text.filter(|t| !t.contains('\0')).ok_or_else(|| {
            Error::Template(TemplateError {
                file: name.to_string(),
                message: "this looks like a binary file and cannot be rendered; drop the .tera suffix or list it under `verbatim` in component.toml".into(),
                source: None,
            })
        })
}

/// Parses and renders each group on a thread of its own while this thread watches the clock and
/// the interrupt flag: a loop that writes nothing cannot be stopped from inside Tera, so on
/// timeout or Ctrl-C the render is abandoned (nothing has been written to disk yet; the binary
/// exits right after the error). The budget is the plan's, shared by the groups.
fn render_groups(
    groups: Vec<Group>,
    contexts: &Arc<Vec<tera::Context>>,
    (budget, started, deadline): (RenderBudget, Instant, Instant),
) -> std::result::Result<HashMap<usize, Vec<u8>>, Failed> {
    let meter = Arc::new(Meter::new(groups.len()));
    let (tx, rx) = mpsc::channel();
    let mut pending = groups.len();
    // Growth is what counts: the process may hold a clone or another render's result already.
    let resident_at_start = resident_bytes();
    let grown = || match (resident_at_start, resident_bytes()) {
        (Some(before), Some(now)) => now.saturating_sub(before),
        _ => 0,
    };
    start_groups(groups, contexts, &meter, &tx, (budget, deadline))?;
    // Only the groups hold a sender: once every one has ended, a group that never answered
    // (a panic) is seen as a disconnection, not waited for until the deadline.
    drop(tx);
    let over = |elapsed: Duration| {
        // The other group stops at its next write.
        meter.over.store(true, Ordering::SeqCst);
        Failed::Final(Error::RenderBudget {
            file: meter.blamed(),
            reason: if grown() > budget.memory {
                format!(
                    "more than {} MiB of memory while rendering (a string built up in a loop? raise STACKWISE_RENDER_MEMORY_MB if the template really needs it)",
                    budget.memory >> 20
                )
            } else if meter.written.load(Ordering::Relaxed) > budget.bytes {
                format!(
                    "more than {} MiB of output (raise STACKWISE_RENDER_MB if the template really is that large)",
                    budget.bytes >> 20
                )
            } else {
                format!(
                    "still rendering after {:.1} s (a runaway loop? raise STACKWISE_RENDER_SECONDS if the template really is that slow)",
                    elapsed.as_secs_f64()
                )
            },
        })
    };
    let interrupted = || crate::interrupt::check().map_err(Failed::Final);
    let mut out = HashMap::new();
    while pending > 0 {
        match rx.recv_timeout(Duration::from_millis(25)) {
            Ok(Ok(part)) => {
                out.extend(part);
                pending -= 1;
            }
            Ok(Err(Some(e))) => {
                meter.over.store(true, Ordering::SeqCst);
                return Err(Failed::Retry(e));
            }
            Ok(Err(None)) => {
                interrupted()?;
                return Err(over(started.elapsed()));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // A group ended without answering: the template engine panicked (its message is
                // on stderr already).
                interrupted()?;
                meter.over.store(true, Ordering::SeqCst);
                return Err(Failed::Final(Error::Template(TemplateError {
                    file: meter.blamed(),
                    message: "the template engine stopped while rendering this file (a panic; its message is above)"
                        .into(),
                    source: None,
                })));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                interrupted()?;
                if Instant::now() > deadline || grown() > budget.memory {
                    return Err(over(started.elapsed()));
                }
            }
        }
    }
    Ok(out)
}

/// Starts a thread for each group. When one cannot start (a limit on threads), the ones started
/// are stopped and given back, and the plan is to be rendered again in one instance.
fn start_groups(
    groups: Vec<Group>,
    contexts: &Arc<Vec<tera::Context>>,
    meter: &Arc<Meter>,
    tx: &mpsc::Sender<GroupResult>,
    (budget, deadline): (RenderBudget, Instant),
) -> std::result::Result<(), Failed> {
    let mut started_groups = Vec::with_capacity(groups.len());
    // A render in one instance is the last resort: its thread is worth waiting a moment for.
    let patience = if groups.len() == 1 {
        SPAWN_PATIENCE
    } else {
        Duration::ZERO
    };
    for (g, Group { texts, jobs }) in groups.into_iter().enumerate() {
        let (tx, worker_meter, contexts) = (tx.clone(), Arc::clone(meter), Arc::clone(contexts));
        let spawned = spawn_patiently(
            "stackwise-render",
            patience.min(deadline.saturating_duration_since(Instant::now())),
            move || {
                let _ = tx.send(render_group(g, texts, jobs, &contexts, &worker_meter, budget, deadline));
            },
        );
        match spawned {
            Ok(handle) => started_groups.push(handle),
            Err(e) => {
                // No thread for this group (a limit on threads): the ones started stop at their
                // next write, and their threads are given back (within the budget) for the
                // render in one instance.
                meter.over.store(true, Ordering::SeqCst);
                while started_groups.iter().any(|h| !h.is_finished()) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
                for handle in started_groups.into_iter().filter(|h| h.is_finished()) {
                    let _ = handle.join();
                }
                return Err(Failed::Retry(Error::Thread {
                    what: "render the templates",
                    source: e,
                }));
            }
        }
    }
    Ok(())
}

/// What a group's thread sends back.
type GroupResult = std::result::Result<HashMap<usize, Vec<u8>>, Option<Error>>;

/// One group, on its thread: `Err(None)` when the render was stopped (budget, interrupt, or the
/// other group failed), `Err(Some(_))` for an error of the templates.
fn render_group(
    g: usize,
    texts: Vec<(String, Cow<'static, str>)>,
    jobs: Vec<(usize, String, usize)>,
    contexts: &[tera::Context],
    meter: &Meter,
    budget: RenderBudget,
    deadline: Instant,
) -> GroupResult {
    let mut tera = tera::Tera::new();
    tera.autoescape_on(Vec::<&str>::new());
    tera.add_raw_templates(texts)
        .map_err(|e| Some(template_error("template", e)))?;
    let mut out = HashMap::with_capacity(jobs.len());
    for (i, name, ctx) in jobs {
        if let Ok(mut c) = meter.current.lock() {
            c[g].clone_from(&name);
        }
        let mut w = MeteredWriter {
            buf: Vec::new(),
            meter,
            file: &name,
            budget,
            deadline,
        };
        if let Err(e) = tera.render_to(&name, &contexts[ctx], &mut w) {
            return Err(if meter.over.load(Ordering::SeqCst) {
                None
            } else {
                Some(template_error(&name, e))
            });
        }
        out.insert(i, w.buf);
    }
    if let Ok(mut c) = meter.current.lock() {
        c[g].clear();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::plan::PlannedFile;
    use super::*;

    /// Only the partials a rendered template names, directly or through another partial, are
    /// parsed: one that nothing names may even be broken.
    #[test]
    fn only_the_partials_a_render_names_are_parsed() {
        let mut files = std::collections::BTreeMap::new();
        let mut add = |path: &str, text: &str| files.insert(path.to_string(), text.as_bytes().to_vec().into());
        add("components/app/a.txt.tera", "a {% include \"partials/one.tera\" %}");
        add("partials/one.tera", "one {% include \"partials/two.tera\" %}");
        add("partials/two.tera", "two {{ project_name }}");
        add("partials/broken.tera", "{% if %}");
        let tree = TemplateTree {
            files,
            presets: Vec::new(),
            source: "test".into(),
            revision: None,
            newer_tags: Vec::new(),
        };
        let mut context = serde_json::Map::new();
        context.insert("project_name".into(), "demo".into());
        let plan = Plan {
            files: vec![PlannedFile {
                path: "a.txt".into(),
                source: "components/app/a.txt.tera".into(),
                action: Action::Render,
                mount: 0,
                executable: false,
                update_once: false,
            }],
            contexts: vec![context],
        };
        let out = render_plan(&tree, &plan).unwrap();
        assert_eq!(String::from_utf8_lossy(&out[0].bytes), "a one two demo");
    }

    /// A plan of `texts.len()` rendered files `components/app/f<i>.txt.tera` → `f<i>.txt`, enough
    /// to be split in two halves; the largest text goes to the first half, the second largest to
    /// the other.
    fn split_plan(texts: &[String]) -> (TemplateTree, Plan) {
        assert!(texts.len() >= SPLIT_FROM);
        let mut files = std::collections::BTreeMap::new();
        let mut planned = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            let source = format!("components/app/f{i}.txt.tera");
            files.insert(source.clone(), text.as_bytes().to_vec().into());
            planned.push(PlannedFile {
                path: format!("f{i}.txt"),
                source,
                action: Action::Render,
                mount: 0,
                executable: false,
                update_once: false,
            });
        }
        let mut context = serde_json::Map::new();
        context.insert("project_name".into(), "demo".into());
        let tree = TemplateTree {
            files,
            presets: Vec::new(),
            source: "test".into(),
            revision: None,
            newer_tags: Vec::new(),
        };
        (
            tree,
            Plan {
                files: planned,
                contexts: vec![context],
            },
        )
    }

    fn small_texts() -> Vec<String> {
        (0..SPLIT_FROM + 4)
            .map(|i| format!("{i} {{{{ project_name }}}}"))
            .collect()
    }

    /// A template may include another rendered template (not a partial): when the two land in
    /// different halves, the render is done again in one instance, with the same result.
    #[test]
    fn a_template_including_one_of_the_other_half_renders_as_unsplit() {
        let mut texts = small_texts();
        let last = texts.len() - 1;
        texts[0] = format!(
            "{} {{% include \"components/app/f{last}.txt.tera\" %}}",
            "x".repeat(400)
        );
        texts[last] = format!("{} last {{{{ project_name }}}}", "y".repeat(300));
        let (tree, plan) = split_plan(&texts);
        let out = render_plan(&tree, &plan).unwrap();
        let text = |path: &str| {
            let f = out.iter().find(|f| f.path == path).unwrap();
            String::from_utf8(f.bytes.clone()).unwrap()
        };
        assert_eq!(
            text("f0.txt"),
            format!("{} {} last demo", "x".repeat(400), "y".repeat(300))
        );
        assert_eq!(text("f1.txt"), "1 demo");
        assert_eq!(out.len(), texts.len());
    }

    /// The same for a Tera component defined by a template of the other half.
    #[test]
    fn a_component_of_the_other_half_renders_as_unsplit() {
        let mut texts = small_texts();
        let last = texts.len() - 1;
        texts[0] = format!("{} {{{{<hello />}}}}", "x".repeat(400));
        texts[last] = format!("{{% component hello() %}}hi{{% endcomponent %}}{}", "y".repeat(300));
        let (tree, plan) = split_plan(&texts);
        let out = render_plan(&tree, &plan).unwrap();
        let f0 = out.iter().find(|f| f.path == "f0.txt").unwrap();
        assert_eq!(String::from_utf8_lossy(&f0.bytes), format!("{} hi", "x".repeat(400)));
    }

    /// With two broken templates in different halves, the error is the one an unsplit render
    /// reports (the first template in name order), whichever half fails first.
    #[test]
    fn a_split_render_reports_the_error_an_unsplit_one_would() {
        let mut texts = small_texts();
        // f3 is the largest (first half), f15 the next (second half); f15 comes first by name.
        texts[3] = format!("{} {{% if %}}", "x".repeat(400));
        texts[15] = format!("{} {{% for %}}", "y".repeat(300));
        let (tree, plan) = split_plan(&texts);
        for _ in 0..5 {
            let Err(Error::Template(e)) = render_plan(&tree, &plan) else {
                panic!("a broken template must fail the render");
            };
            assert!(e.message.contains("f15.txt.tera"), "{}", e.message);
        }
    }

    /// The budget is the plan's, whichever half runs away; the error names the file.
    #[test]
    fn a_split_render_ends_at_its_budget() {
        let mut texts = small_texts();
        texts[7] =
            "{% for i in range(end=100000) %}{% for j in range(end=100000) %}x{% endfor %}{% endfor %}".to_string();
        let (tree, plan) = split_plan(&texts);
        let budget = RenderBudget {
            time: Duration::from_millis(300),
            bytes: 64 << 20,
            memory: 1 << 30,
        };
        let started = Instant::now();
        let result = render_plan_within(&tree, &plan, budget).map(|_| ());
        let Err(Error::RenderBudget { file, .. }) = result else {
            panic!("a runaway template must end at the budget: {result:?}");
        };
        assert_eq!(file, "components/app/f7.txt.tera");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }
}
