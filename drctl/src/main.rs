//! `drctl`: the operator's CLI. A thin layer over the Lifeboat libraries — parse, call, print —
//! so it works with no controller running, as it must when the controller's cluster is gone.

mod cli;
mod commands;
mod hint;
mod kube;
mod open;
mod output;
mod progress;

use std::process::ExitCode;

use clap::Parser;

/// One malloc arena for the whole process. glibc gives each busy thread its own arena, and
/// freed pack-sized buffers stay cached in all of them: a restore's RSS reached twice its live
/// memory (260–390 MiB). Forcing such buffers to mmap instead (threshold 1 MiB) bounded RSS
/// but made every chunk and pack buffer a fresh mmap, page faults and zeroing: a fifth of a
/// backup's CPU. One arena keeps both low (1 GiB backup ~120 MiB RSS, restore ~140 MiB); the
/// engine's large allocations are few enough that threads do not queue on its lock.
#[allow(unsafe_code)]
fn tune_allocator() {
    // SAFETY: mallopt only sets a glibc tunable; it is called once, before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Exit codes scripts can rely on.
pub mod exit {
    /// The command ran but found problems or could not do everything (check errors, partial
    /// restore); details are printed.
    pub const PARTIAL: u8 = 3;
    /// A command group that is not built yet (sysexits' EX_UNAVAILABLE).
    pub const NOT_BUILT: u8 = 69;
}

fn main() -> ExitCode {
    tune_allocator();
    // kube links rustls with ring and object_store with aws-lc-rs: pick one for the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            if let Some(hint) = hint::for_error(&e) {
                eprintln!("hint: {hint}");
            }
            ExitCode::FAILURE
        }
    }
}
