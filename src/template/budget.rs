//! What keeps a render within its budget: the budget itself, the meter every rendered byte goes
//! through, and the threads the render runs on while the calling thread watches the clock.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, mpsc};
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
}
