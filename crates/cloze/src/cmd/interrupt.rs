//! Ctrl-C for long commands: the first press asks the work to stop cleanly,
//! the second quits at once, and either way the process exits with 130.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};

/// The exit status of a command stopped by Ctrl-C (128 + SIGINT), as shells report it.
pub const EXIT_INTERRUPTED: u8 = 130;

/// Returned (inside an `anyhow::Error`) by a command that stopped because of
/// Ctrl-C; `main` turns it into exit status 130 and prints the message.
#[derive(Debug)]
pub struct Interrupted(pub String);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Interrupted {}

/// Quits the process now with `code`, running no destructors and no atexit
/// handlers. libtorch's worker threads may be mid-operation; the normal exit
/// path would tear down its static state under them (a segfault or a C++
/// "terminate called" backtrace). Files are left as they are: every writer in
/// cloze publishes by rename, so what is on disk is either complete or a
/// temporary that the next run removes.
pub fn quit_now(code: u8) -> ! {
    #[allow(unsafe_code)]
    // SAFETY: `_exit` takes a plain integer and does not return; it touches no
    // Rust state.
    unsafe {
        libc::_exit(i32::from(code))
    }
}

/// Installs the Ctrl-C handler. The first press prints `first_message` and
/// sets the returned flag, which the command polls to stop between units of
/// work; the second press quits at once with status 130 ([`quit_now`]).
pub fn install(first_message: &'static str) -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let presses = Arc::new(AtomicU32::new(0));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if presses.fetch_add(1, Ordering::SeqCst) == 0 {
            // The flag first: once the notice is visible, the work is sure to
            // see the request at its next check.
            flag.store(true, Ordering::SeqCst);
            eprintln!("\ninterrupt: {first_message} (press Ctrl-C again to quit now)");
        } else {
            eprintln!("\ninterrupt: quitting now");
            quit_now(EXIT_INTERRUPTED);
        }
    })
    .context("installing the Ctrl-C handler")?;
    Ok(stop)
}
