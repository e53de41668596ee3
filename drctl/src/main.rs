//! `drctl`: the operator's CLI. A thin layer over the Lifeboat libraries — parse, call, print —
//! so it works with no controller running, as it must when the controller's cluster is gone.

mod cli;
mod commands;
mod kube;
mod open;
mod output;
mod progress;

use std::process::ExitCode;

use clap::Parser;

/// Serve allocations of 1 MiB and more (packs, chunks) straight from mmap, so freeing them
/// returns the memory to the OS. glibc otherwise raises its mmap threshold after the first
/// large free and keeps those buffers in per-thread arenas, which held a restore's RSS near
/// twice its live memory.
#[allow(unsafe_code)]
fn tune_allocator() {
    // SAFETY: mallopt only sets a glibc tunable; it is called once, before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
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
            ExitCode::FAILURE
        }
    }
}
