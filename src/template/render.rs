//! Rendering a plan: one Tera instance holds every template of the plan plus the partials.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use super::files::PARTIALS_DIR;
use super::inline::{self, template_error};
use super::plan::{Action, Plan};
use super::source::TemplateTree;
use crate::error::{Error, Result, TemplateError};
use crate::interrupt::INTERRUPTED;

/// A rendered file.
#[derive(Debug, Clone)]
pub struct RenderedFile {
    pub path: String,
    pub bytes: Vec<u8>,
    pub executable: bool,
    /// Written by `stackwise new` only (`update = "once"`).
    pub update_once: bool,
}

/// Renders every file of the plan. One Tera instance holds all templates of the plan plus the
/// partials, so templates can `{% include "partials/..." %}`.
pub fn render_plan(tree: &TemplateTree, plan: &Plan) -> Result<Vec<RenderedFile>> {
    let mut tera = tera::Tera::new();
    tera.autoescape_on(Vec::<&str>::new());
    let sources: BTreeSet<&str> = plan
        .files
        .iter()
        .filter(|f| f.action == Action::Render)
        .map(|f| f.source.as_str())
        .collect();
    let mut texts = Vec::with_capacity(sources.len());
    for s in sources {
        texts.push((s, template_text(tree, s)?));
    }
    // Only the partials these templates name, and those the partials name in turn: an include
    // (an import, an extends) names its template with a literal string, so a partial whose name
    // appears nowhere cannot be used, and is neither read nor parsed.
    let partial_prefix = format!("{PARTIALS_DIR}/");
    let mut partials: Vec<&str> = tree
        .files
        .keys()
        .filter(|k| k.starts_with(&partial_prefix))
        .map(String::as_str)
        .collect();
    let mut scanned = 0;
    while scanned < texts.len() {
        let text = texts[scanned].1;
        scanned += 1;
        let (named, rest): (Vec<&str>, Vec<&str>) = partials.into_iter().partition(|p| text.contains(*p));
        partials = rest;
        for p in named {
            if !texts.iter().any(|(s, _)| *s == p) {
                texts.push((p, template_text(tree, p)?));
            }
        }
    }
    if let Err(e) = tera.add_raw_templates(texts) {
        return Err(template_error("template", e));
    }
    let tera_contexts: Vec<tera::Context> = plan.contexts.iter().map(inline::tera_context).collect();
    let jobs: Vec<(usize, String, usize)> = plan
        .files
        .iter()
        .enumerate()
        .filter(|(_, f)| f.action == Action::Render)
        .map(|(i, f)| (i, f.source.clone(), f.mount))
        .collect();
    let mut rendered = render_within_budget(tera, tera_contexts, jobs, RenderBudget::from_env())?;
    let mut out = Vec::with_capacity(plan.files.len());
    for (i, f) in plan.files.iter().enumerate() {
        let bytes = match f.action {
            Action::Copy => tree.files[&f.source].clone(),
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

/// The text of the template `name`, which must be text to be rendered.
fn template_text<'t>(tree: &'t TemplateTree, name: &str) -> Result<&'t str> {
    std::str::from_utf8(&tree.files[name])
        .ok()
        .filter(|t| !t.contains('\0'))
        .ok_or_else(|| {
            Error::Template(TemplateError {
                file: name.to_string(),
                message: "this looks like a binary file and cannot be rendered; drop the .tera suffix or list it under `verbatim` in component.toml".into(),
                source: None,
            })
        })
}

/// What one render may cost. A template is untrusted input: nested loops or a fan-out of
/// includes must end with an error naming the file, not run forever or fill the memory.
#[derive(Debug, Clone, Copy)]
pub struct RenderBudget {
    pub time: Duration,
    /// Bytes of rendered output, all files together.
    pub bytes: usize,
}

impl Default for RenderBudget {
    /// 10 s and 64 MiB: the built-in hybrid project renders 92 files (≈ 350 KB) in ≈ 10 ms.
    fn default() -> Self {
        RenderBudget {
            time: Duration::from_secs(10),
            bytes: 64 << 20,
        }
    }
}

impl RenderBudget {
    /// The default, or `STACKWISE_RENDER_SECONDS` / `STACKWISE_RENDER_MB` for a template that
    /// really is that large.
    pub fn from_env() -> Self {
        let d = Self::default();
        let num = |k: &str| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|n| *n > 0)
        };
        RenderBudget {
            time: num("STACKWISE_RENDER_SECONDS").map_or(d.time, Duration::from_secs),
            bytes: num("STACKWISE_RENDER_MB").map_or(d.bytes, |mb| (mb as usize).saturating_mul(1 << 20)),
        }
    }
}

/// Shared between the rendering thread and the watcher.
struct Meter {
    written: AtomicUsize,
    over: AtomicBool,
    current: Mutex<String>,
}

/// Counts output against the budget and stops a render that goes over it or is interrupted.
struct MeteredWriter<'a> {
    buf: Vec<u8>,
    meter: &'a Meter,
    budget: RenderBudget,
    deadline: Instant,
}

impl Write for MeteredWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let total = self.meter.written.fetch_add(data.len(), Ordering::Relaxed) + data.len();
        if total > self.budget.bytes || Instant::now() > self.deadline || INTERRUPTED.load(Ordering::Relaxed) {
            self.meter.over.store(true, Ordering::SeqCst);
            return Err(std::io::Error::other("render budget exceeded"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Renders `jobs` (plan index, template name, context index) on a thread of its own while this
/// thread watches the clock and the interrupt flag: a loop that writes nothing cannot be stopped
/// from inside Tera, so on timeout or Ctrl-C the render is abandoned (nothing has been written
/// to disk yet; the binary exits right after the error).
fn render_within_budget(
    tera: tera::Tera,
    contexts: Vec<tera::Context>,
    jobs: Vec<(usize, String, usize)>,
    budget: RenderBudget,
) -> Result<HashMap<usize, Vec<u8>>> {
    let meter = Arc::new(Meter {
        written: AtomicUsize::new(0),
        over: AtomicBool::new(false),
        current: Mutex::new(String::new()),
    });
    let started = Instant::now();
    let deadline = started + budget.time;
    let (tx, rx) = mpsc::channel();
    let worker_meter = Arc::clone(&meter);
    std::thread::Builder::new()
        .name("stackwise-render".into())
        .spawn(move || {
            let mut out = HashMap::with_capacity(jobs.len());
            for (i, name, ctx) in jobs {
                if let Ok(mut c) = worker_meter.current.lock() {
                    c.clone_from(&name);
                }
                let mut w = MeteredWriter {
                    buf: Vec::new(),
                    meter: &worker_meter,
                    budget,
                    deadline,
                };
                if let Err(e) = tera.render_to(&name, &contexts[ctx], &mut w) {
                    let err = if worker_meter.over.load(Ordering::SeqCst) {
                        None
                    } else {
                        Some(template_error(&name, e))
                    };
                    let _ = tx.send(Err(err));
                    return;
                }
                out.insert(i, w.buf);
            }
            let _ = tx.send(Ok(out));
        })
        .map_err(|e| Error::io("render thread", e))?;
    let current = || meter.current.lock().map(|c| c.clone()).unwrap_or_default();
    let over = |elapsed: Duration| Error::RenderBudget {
        file: current(),
        reason: if meter.written.load(Ordering::Relaxed) > budget.bytes {
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
    };
    loop {
        match rx.recv_timeout(Duration::from_millis(25)) {
            Ok(Ok(out)) => return Ok(out),
            Ok(Err(Some(e))) => return Err(e),
            Ok(Err(None)) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                crate::interrupt::check()?;
                return Err(over(started.elapsed()));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                crate::interrupt::check()?;
                if Instant::now() > deadline {
                    return Err(over(started.elapsed()));
                }
            }
        }
    }
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
        let mut add = |path: &str, text: &str| files.insert(path.to_string(), text.as_bytes().to_vec());
        add("components/app/a.txt.tera", "a {% include \"partials/one.tera\" %}");
        add("partials/one.tera", "one {% include \"partials/two.tera\" %}");
        add("partials/two.tera", "two {{ project_name }}");
        add("partials/broken.tera", "{% if %}");
        let tree = TemplateTree {
            files,
            presets: Vec::new(),
            source: "test".into(),
            revision: None,
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
}
