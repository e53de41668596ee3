//! `drctl`: the operator's CLI. A thin layer over the Lifeboat libraries — parse, call, print —
//! so it works with no controller running, as it must when the controller's cluster is gone.

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// Exit code for a command group that is not built yet (sysexits' EX_UNAVAILABLE), so scripts
/// can tell "not available" from "failed".
const EXIT_NOT_BUILT: u8 = 69;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let (group, arrives_with) = cli.command.not_built();
    eprintln!("drctl {group}: not built yet (arrives with {arrives_with}); nothing was done");
    ExitCode::from(EXIT_NOT_BUILT)
}
