//! Ctrl-C and SIGTERM: the binary's signal handler sets [`INTERRUPTED`]; every long step of the
//! library (rendering, staging, install) checks it and stops with [`Error::Interrupted`],
//! leaving nothing written.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// Set by the binary's signal handler (through [`on_signal`]) once the command polls.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Where the running command stands, for the signal handler. Before it polls, the binary ends at
/// once (its `main` returns 130 while the command's thread is left where it is): a blocking read,
/// a prompt or a fetch would never look at the flag. From the point where stopping at once would
/// leave something behind (a staging directory, a test directory) the command checks
/// [`INTERRUPTED`] itself and cleans up.
static STATE: AtomicU8 = AtomicU8::new(NOT_POLLING);
const NOT_POLLING: u8 = 0;
const POLLING: u8 = 1;
/// A signal came before the command polled: the binary is ending, the command writes nothing.
const ENDING: u8 = 2;

/// What the binary's signal handler does with a Ctrl-C or SIGTERM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnSignal {
    /// The command polls: [`INTERRUPTED`] is set, it stops by itself and cleans up.
    CommandStops,
    /// End the process now (the command does not poll yet, or this is the second signal).
    EndNow,
}

/// Called by the signal handler. The decision and [`start_polling`] are one atomic exchange, so a
/// signal that ends the process before the command polls can never let the command start writing
/// while the process is on its way out.
///
/// A second signal within [`SAME_REQUEST_MS`] of the first is the same request delivered twice
/// (`timeout` signals the command and then its process group; a terminal signals the whole
/// foreground group), not the user insisting: the command still stops by itself. Without this,
/// about one `timeout -s TERM` in thirty ended an update in the middle of its checkout.
pub fn on_signal() -> OnSignal {
    let now = now_ms();
    match STATE.compare_exchange(NOT_POLLING, ENDING, Ordering::SeqCst, Ordering::SeqCst) {
        Err(POLLING) if !INTERRUPTED.swap(true, Ordering::SeqCst) => {
            FIRST_SIGNAL_MS.store(now, Ordering::SeqCst);
            OnSignal::CommandStops
        }
        Err(POLLING) if now.saturating_sub(FIRST_SIGNAL_MS.load(Ordering::SeqCst)) < SAME_REQUEST_MS => {
            OnSignal::CommandStops
        }
        _ => OnSignal::EndNow,
    }
}

/// Signals this close together are one request (see [`on_signal`]).
pub const SAME_REQUEST_MS: u64 = 500;

/// When the first signal of a polling command came (ms since the Unix epoch).
static FIRST_SIGNAL_MS: AtomicU64 = AtomicU64::new(0);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What the binary says when a second signal ends the process while the command writes: how
/// to undo what it left (`update`'s writer: `stackwise update --abort`). Set by the command
/// for the span where ending at once leaves something half-written.
static END_NOTE: Mutex<Option<String>> = Mutex::new(None);

/// Sets (`Some`) or clears (`None`) the note the binary prints if a second signal ends the
/// process now.
pub fn set_end_note(note: Option<String>) {
    if let Ok(mut n) = END_NOTE.lock() {
        *n = note;
    }
}

/// The note set by [`set_end_note`], if any.
pub fn end_note() -> Option<String> {
    END_NOTE.lock().ok().and_then(|n| n.clone())
}

/// From here on, Ctrl-C sets [`INTERRUPTED`] and this command stops by itself, cleaning up.
/// `Err(Interrupted)` when a signal already ended the run: the command must write nothing.
pub fn start_polling() -> Result<()> {
    match STATE.compare_exchange(NOT_POLLING, POLLING, Ordering::SeqCst, Ordering::SeqCst) {
        Ok(_) | Err(POLLING) => Ok(()),
        Err(_) => Err(Error::Interrupted),
    }
}

/// `Err(Interrupted)` once the user asked to stop.
pub fn check() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        Err(Error::Interrupted)
    } else {
        Ok(())
    }
}
