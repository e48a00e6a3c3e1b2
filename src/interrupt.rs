//! Ctrl-C and SIGTERM: the binary's signal handler sets [`INTERRUPTED`]; every long step of the
//! library (rendering, staging, install) checks it and stops with [`Error::Interrupted`],
//! leaving nothing written.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

/// Set by the binary's signal handler.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Set once the running command checks [`INTERRUPTED`] itself, from the point where stopping at
/// once would leave something behind (a staging directory, a test directory). Before that, the
/// binary ends at once (its `main` returns 130 while the command's thread is left where it is):
/// a blocking read, a prompt or a fetch would never look at the flag.
pub static POLLED: AtomicBool = AtomicBool::new(false);

/// From here on, Ctrl-C sets [`INTERRUPTED`] and this command stops by itself, cleaning up.
pub fn start_polling() {
    POLLED.store(true, Ordering::SeqCst);
}

/// `Err(Interrupted)` once the user asked to stop.
pub fn check() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        Err(Error::Interrupted)
    } else {
        Ok(())
    }
}
