//! A backtrace on stderr when the process aborts.
//!
//! librados and librbd end the process with `abort()` on an uncaught C++ exception
//! (`terminate called after throwing …`) and print nothing more: no frame, no thread.
//! [`report_aborts`] adds a `SIGABRT` handler that prints the aborting thread's name and
//! backtrace (C++ frames by their exported symbols), so the report names where it happened;
//! the process then ends by `SIGABRT` as before (a core where enabled). drctl, the controller
//! and lifeboat-csi install it first thing in `main`.

#![allow(unsafe_code)]

use std::io::Write;
use std::sync::OnceLock;

/// The program name the report starts with.
static PROGRAM: OnceLock<&'static str> = OnceLock::new();

/// Seconds the handler may take before `SIGALRM` ends the process: resolving symbols
/// allocates, and an abort raised inside malloc (heap damage) would deadlock it.
const HANDLER_DEADLINE_S: libc::c_uint = 30;

/// Installs the `SIGABRT` handler for `program` (`"drctl"`, …), once, at start. It is reset
/// to the default on entry (`SA_RESETHAND`), so a second abort ends the process at once.
pub fn report_aborts(program: &'static str) {
    let _ = PROGRAM.set(program);
    // SAFETY: a zeroed sigaction is valid; the handler is an `extern "C"` fn with the
    // one-argument signature `sa_sigaction` is called with when SA_SIGINFO is not set.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_abort as extern "C" fn(libc::c_int) as usize;
        action.sa_flags = libc::SA_RESETHAND;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGABRT, &action, std::ptr::null_mut());
    }
}

/// The calling thread's kernel name (`io_context_pool`, `tokio-runtime-w`, …): C++ threads
/// have no Rust name.
fn thread_name() -> String {
    let mut buf = [0u8; 17];
    // SAFETY: PR_GET_NAME writes at most 16 bytes and a NUL into the 17-byte buffer.
    let ret = unsafe { libc::prctl(libc::PR_GET_NAME, buf.as_mut_ptr(), 0, 0, 0) };
    if ret != 0 {
        return "?".to_string();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

extern "C" fn on_abort(_signal: libc::c_int) {
    // SAFETY: alarm only arms a timer; its default action ends the process if this hangs.
    unsafe { libc::alarm(HANDLER_DEADLINE_S) };
    let name = thread_name();
    let program = PROGRAM.get().copied().unwrap_or("this process");
    let trace = std::backtrace::Backtrace::force_capture();
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "{program} aborted (SIGABRT) in thread {name}; this is a bug, please report it with this backtrace:\n{trace}"
    );
    let _ = err.flush();
    drop(err);
    // The disposition is the default again (SA_RESETHAND): end the process by SIGABRT, also
    // when the signal came from outside (`kill -ABRT`) rather than from abort().
    // SAFETY: raise only sends the signal to this thread.
    unsafe { libc::raise(libc::SIGABRT) };
}
