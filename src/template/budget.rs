//! What keeps a render within its budget: the budget itself, the meter every rendered byte goes
//! through, and the threads the render runs on while the calling thread watches the clock.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::interrupt::INTERRUPTED;

/// What one render may cost. A template is untrusted input: nested loops or a fan-out of
/// includes must end with an error naming the file, not run forever or fill the memory.
#[derive(Debug, Clone, Copy)]
pub struct RenderBudget {
    pub time: Duration,
    /// Bytes of rendered output, all files together.
    pub bytes: usize,
    /// Bytes the process may grow by while it renders (resident memory, where the system says):
    /// a string built up inside a template (`{% set_global x = x ~ x %}` in a loop, a `{% set %}`
    /// capture) writes nothing until it is done, so only this sees it.
    pub memory: usize,
}

impl Default for RenderBudget {
    /// 10 s, 64 MiB of output, 1 GiB of memory: the built-in hybrid project renders 92 files
    /// (≈ 350 KB) in ≈ 10 ms.
    fn default() -> Self {
        RenderBudget {
            time: Duration::from_secs(10),
            bytes: 64 << 20,
            memory: 1 << 30,
        }
    }
}

impl RenderBudget {
    /// The default, or `STACKWISE_RENDER_SECONDS` / `STACKWISE_RENDER_MB` /
    /// `STACKWISE_RENDER_MEMORY_MB` for a template that really is that large.
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
            memory: num("STACKWISE_RENDER_MEMORY_MB").map_or(d.memory, |mb| (mb as usize).saturating_mul(1 << 20)),
        }
    }
}

impl RenderBudget {
    /// The budget of one inline string (a default, a flag, a `when`, a file name): one short line
    /// renders in microseconds, so 1 s, 64 KiB of output and 64 MiB of memory are far beyond any
    /// real one, and small enough that a template with many of them cannot hold a command long.
    pub const INLINE: RenderBudget = RenderBudget {
        time: Duration::from_secs(1),
        bytes: 64 << 10,
        memory: 64 << 20,
    };

    /// [`RenderBudget::INLINE`], with the deadline of `STACKWISE_INLINE_MS` when set; read once.
    pub fn inline_from_env() -> Self {
        static INLINE: std::sync::OnceLock<RenderBudget> = std::sync::OnceLock::new();
        *INLINE.get_or_init(|| {
            let ms = std::env::var("STACKWISE_INLINE_MS")
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|n| *n > 0);
            RenderBudget {
                time: ms.map_or(Self::INLINE.time, Duration::from_millis),
                ..Self::INLINE
            }
        })
    }
}

/// The process's resident memory in bytes, where the system tells it (Linux: `VmRSS` of
/// `/proc/self/status`); `None` elsewhere, where the memory budget is not enforced.
pub(super) fn resident_bytes() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb.saturating_mul(1024))
}

/// Shared between the rendering threads and the watcher.
pub(super) struct Meter {
    pub(super) written: AtomicUsize,
    /// Set to stop every group at its next write.
    pub(super) over: AtomicBool,
    /// The template each group is rendering (empty once it is done).
    pub(super) current: Mutex<Vec<String>>,
    /// The template whose write went over the budget first.
    pub(super) culprit: Mutex<Option<String>>,
}

impl Meter {
    /// A meter for `groups` rendering threads, nothing written yet.
    pub(super) fn new(groups: usize) -> Self {
        Meter {
            written: AtomicUsize::new(0),
            over: AtomicBool::new(false),
            current: Mutex::new(vec![String::new(); groups]),
            culprit: Mutex::new(None),
        }
    }

    /// The template a budget error names: the one that went over, else one still rendering (a
    /// loop that writes nothing is only seen by the watcher's clock).
    pub(super) fn blamed(&self) -> String {
        if let Some(file) = self.culprit.lock().ok().and_then(|c| c.clone()) {
            return file;
        }
        let current = self.current.lock().map(|c| c.clone()).unwrap_or_default();
        current.into_iter().find(|f| !f.is_empty()).unwrap_or_default()
    }
}

/// Counts output against the budget and stops a render that goes over it or is interrupted.
pub(super) struct MeteredWriter<'a> {
    pub(super) buf: Vec<u8>,
    pub(super) meter: &'a Meter,
    pub(super) file: &'a str,
    pub(super) budget: RenderBudget,
    pub(super) deadline: Instant,
}

impl Write for MeteredWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let total = self.meter.written.fetch_add(data.len(), Ordering::Relaxed) + data.len();
        let own = total > self.budget.bytes || Instant::now() > self.deadline;
        if own || INTERRUPTED.load(Ordering::Relaxed) || self.meter.over.load(Ordering::Relaxed) {
            if own && let Ok(mut culprit) = self.meter.culprit.lock() {
                culprit.get_or_insert_with(|| self.file.to_string());
            }
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

/// How long a thread that the system refuses "for now" (EAGAIN) is asked for again.
pub(super) const SPAWN_PATIENCE: Duration = Duration::from_millis(250);

/// Starts a thread, asking again for up to `patience` while the system answers EAGAIN. Under a
/// limit on threads (RLIMIT_NPROC) a thread that has just ended still counts for a moment after
/// `join` returns (the kernel releases it a little later): seen here, about one spawn in ten
/// right after a thread was seen finished, one in a thousand right after `join`.
pub(super) fn spawn_patiently<F: FnOnce() + Send + 'static>(
    name: &str,
    patience: Duration,
    work: F,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let give_up = Instant::now() + patience;
    let mut pause = Duration::from_micros(100);
    loop {
        // The work goes to the thread once it exists, so a refused spawn does not lose it.
        let (hand, take) = mpsc::sync_channel::<F>(1);
        match std::thread::Builder::new().name(name.into()).spawn(move || {
            if let Ok(work) = take.recv() {
                work();
            }
        }) {
            Ok(handle) => {
                // The thread holds the receiver until it has the work: this cannot fail.
                let _ = hand.send(work);
                return Ok(handle);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() + pause <= give_up => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Why a render under a budget stopped before its end ([`run_within`]).
#[derive(Debug)]
pub enum Stop {
    /// Over the budget: what went over, as the end of a sentence.
    Over(String),
    /// Ctrl-C ([`INTERRUPTED`]).
    Interrupted,
    /// The template engine panicked (its message is on stderr already).
    Panicked,
    /// No thread to render on (a limit on threads).
    NoThread(std::io::Error),
}

/// Work handed to a worker thread of [`run_within`].
type Job = Box<dyn FnOnce() + Send>;

/// The worker threads of [`run_within`] that wait for work: a thread per render would cost more
/// than the render of a short string. One whose render was abandoned is never put back.
static IDLE: Mutex<Vec<mpsc::Sender<Job>>> = Mutex::new(Vec::new());

/// When the caller of [`run_within`] first looks at the clock, the memory and Ctrl-C (a real
/// inline string is rendered by then), and how often after that.
const FIRST_LOOK: Duration = Duration::from_millis(1);
const LOOK: Duration = Duration::from_millis(10);

/// Hands `job` to an idle worker, or to a new one: the worker's channel.
fn hand_over(job: Job) -> Result<mpsc::Sender<Job>, Stop> {
    let mut job = job;
    while let Some(worker) = IDLE.lock().ok().and_then(|mut idle| idle.pop()) {
        match worker.send(job) {
            Ok(()) => return Ok(worker),
            // That worker is gone (a panic): the job comes back.
            Err(mpsc::SendError(back)) => job = back,
        }
    }
    let (worker, jobs) = mpsc::channel::<Job>();
    spawn_patiently("stackwise-inline", SPAWN_PATIENCE, move || {
        while let Ok(job) = jobs.recv() {
            job();
        }
    })
    .map_err(Stop::NoThread)?;
    // The new worker holds the receiver until its loop ends: this cannot fail.
    let _ = worker.send(job);
    Ok(worker)
}

/// Why an inline string's render under `budget`, started at `started`, was stopped (the process
/// having grown by `grown` bytes since): its reasons speak of inline strings and their knob.
fn stop_of(meter: &Meter, budget: RenderBudget, grown: usize, started: Instant) -> Stop {
    if INTERRUPTED.load(Ordering::SeqCst) {
        return Stop::Interrupted;
    }
    Stop::Over(if grown > budget.memory {
        format!(
            "more than {} MiB of memory (a string built up in a loop?)",
            budget.memory >> 20
        )
    } else if meter.written.load(Ordering::Relaxed) > budget.bytes {
        format!(
            "more than {} KiB of output (a default, a flag, a `when` or a file name is one short line)",
            budget.bytes >> 10
        )
    } else {
        format!(
            "still rendering after {:.1} s (a runaway loop? raise STACKWISE_INLINE_MS if the string really is that slow)",
            started.elapsed().as_secs_f64()
        )
    })
}

/// Runs `work` on this thread with a writer metered against `budget` (output, time, Ctrl-C at
/// each write): for work whose time and memory only grow with what it writes.
pub(super) fn run_here<T>(budget: RenderBudget, work: impl FnOnce(&mut MeteredWriter<'_>) -> T) -> Result<T, Stop> {
    let started = Instant::now();
    let meter = Meter::new(0);
    let mut w = MeteredWriter {
        buf: Vec::new(),
        meter: &meter,
        file: "",
        budget,
        deadline: started + budget.time,
    };
    let out = work(&mut w);
    if meter.over.load(Ordering::SeqCst) {
        return Err(stop_of(&meter, budget, 0, started));
    }
    Ok(out)
}

/// Runs `work` on a worker thread with a writer metered against `budget` (time, output), while
/// this thread watches the clock, the memory the process grows by, and Ctrl-C. The short strings
/// of a template's manifests render this way: a loop that writes nothing, or a string built up
/// in one, cannot be stopped from inside Tera, so on a stop the render is abandoned (it stops at
/// its next write; the command ends with the error).
pub(super) fn run_within<T: Send + 'static>(
    budget: RenderBudget,
    work: impl FnOnce(&mut MeteredWriter<'_>) -> T + Send + 'static,
) -> Result<T, Stop> {
    let started = Instant::now();
    let deadline = started + budget.time;
    let meter = Arc::new(Meter::new(1));
    let (tx, rx) = mpsc::sync_channel(1);
    let worker_meter = Arc::clone(&meter);
    let worker = hand_over(Box::new(move || {
        let mut w = MeteredWriter {
            buf: Vec::new(),
            meter: &worker_meter,
            file: "",
            budget,
            deadline,
        };
        let _ = tx.send(work(&mut w));
    }))?;
    let over = |resident_at_start: Option<usize>| {
        meter.over.store(true, Ordering::SeqCst);
        let grown = resident_at_start
            .zip(resident_bytes())
            .map_or(0, |(a, b)| b.saturating_sub(a));
        stop_of(&meter, budget, grown, started)
    };
    // Read at the first look, not before: a real string is rendered by then, and reading it
    // costs more than rendering one.
    let mut resident_at_start = None;
    let mut wait = FIRST_LOOK;
    loop {
        match rx.recv_timeout(wait) {
            // The writer stopped it (output, deadline, Ctrl-C): the work ended with an error.
            Ok(_) if meter.over.load(Ordering::SeqCst) => return Err(over(resident_at_start)),
            Ok(out) => {
                if let Ok(mut idle) = IDLE.lock() {
                    idle.push(worker);
                }
                return Ok(out);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err(Stop::Panicked),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let grown = resident_at_start
                    .zip(resident_bytes())
                    .is_some_and(|(a, b)| b.saturating_sub(a) > budget.memory);
                if INTERRUPTED.load(Ordering::SeqCst) || grown || Instant::now() > deadline {
                    return Err(over(resident_at_start));
                }
                if wait == FIRST_LOOK {
                    resident_at_start = resident_bytes();
                    wait = LOOK;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The work reaches the thread whether it started at once or after a refusal; with no
    /// patience at all a thread that can start still does.
    #[test]
    fn a_thread_started_patiently_does_its_work() {
        for patience in [SPAWN_PATIENCE, Duration::ZERO] {
            let (tx, rx) = mpsc::channel();
            let handle = spawn_patiently("test", patience, move || tx.send(7).unwrap()).unwrap();
            handle.join().unwrap();
            assert_eq!(rx.recv().unwrap(), 7);
        }
    }

    /// Renders `template` with a fresh Tera into the metered writer.
    fn render(template: &str, w: &mut MeteredWriter<'_>) -> Result<Vec<u8>, tera::Error> {
        tera::Tera::new().render_str_to(template, &tera::Context::new(), false, &mut *w)?;
        Ok(std::mem::take(&mut w.buf))
    }

    const SPIN: &str = "{% for i in range(end=100000) %}{% for j in range(end=100000) %}{% endfor %}{% endfor %}";

    /// [`RenderBudget::INLINE`] without its memory cap: the cap reads the whole process's memory,
    /// and the other tests of this binary allocate while these run.
    const NO_MEMORY_CAP: RenderBudget = RenderBudget {
        memory: 1 << 40,
        ..RenderBudget::INLINE
    };

    /// A loop that writes nothing is stopped by the clock of the thread that watches it, and
    /// the next render gets a worker that is free.
    #[test]
    fn a_runaway_render_on_a_worker_ends_at_its_deadline() {
        let budget = RenderBudget {
            time: Duration::from_millis(200),
            ..NO_MEMORY_CAP
        };
        let started = Instant::now();
        let stop = run_within(budget, |w| render(SPIN, w)).unwrap_err();
        assert!(
            matches!(&stop, Stop::Over(why) if why.contains("still rendering")),
            "{stop:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        let out = run_within(budget, |w| render("{{ 1 + 1 }}", w)).unwrap().unwrap();
        assert_eq!(out, b"2");
    }

    /// Output over the cap stops a render at the write that goes over, on a worker or here.
    #[test]
    fn a_render_over_its_output_cap_stops() {
        let flood = "{% for i in range(end=100000) %}{% for j in range(end=100000) %}x{% endfor %}{% endfor %}";
        let stop = run_within(NO_MEMORY_CAP, |w| render(flood, w)).unwrap_err();
        assert!(
            matches!(&stop, Stop::Over(why) if why.contains("64 KiB of output")),
            "{stop:?}"
        );
        let stop = run_here(RenderBudget::INLINE, |w| render(flood, w)).unwrap_err();
        assert!(
            matches!(&stop, Stop::Over(why) if why.contains("64 KiB of output")),
            "{stop:?}"
        );
        assert_eq!(
            run_here(RenderBudget::INLINE, |w| render("ok", w)).unwrap().unwrap(),
            b"ok"
        );
    }

    /// A panic of the template engine is a stop of its own, not a hang.
    #[test]
    fn a_worker_that_panics_is_reported() {
        let stop = run_within(NO_MEMORY_CAP, |_| -> () { panic!("engine") }).unwrap_err();
        assert!(matches!(stop, Stop::Panicked), "{stop:?}");
        assert_eq!(run_within(NO_MEMORY_CAP, |_| 3).unwrap(), 3);
    }
}
