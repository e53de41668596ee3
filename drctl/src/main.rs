//! `drctl`: the operator's CLI. A thin layer over the Lifeboat libraries — parse, call, print —
//! so it works with no controller running, as it must when the controller's cluster is gone.

mod cli;
mod commands;
mod open;
mod output;
mod progress;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc returns freed memory to the OS promptly; with glibc's per-thread arenas, the
/// megabyte-sized pack and chunk buffers of parallel workers kept RSS far above live memory.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit codes scripts can rely on.
pub mod exit {
    /// The command ran but found problems or could not do everything (check errors, partial
    /// restore); details are printed.
    pub const PARTIAL: u8 = 3;
    /// A command group that is not built yet (sysexits' EX_UNAVAILABLE).
    pub const NOT_BUILT: u8 = 69;
}

fn main() -> ExitCode {
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
