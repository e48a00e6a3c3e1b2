//! Ctrl-C and SIGTERM: the binary's signal handler sets [`INTERRUPTED`]; every long step of the
//! library (rendering, staging, install) checks it and stops with [`Error::Interrupted`],
//! leaving nothing written.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

/// Set by the binary's signal handler.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// `Err(Interrupted)` once the user asked to stop.
pub fn check() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        Err(Error::Interrupted)
    } else {
        Ok(())
    }
}
