//! The controller binary. Not built yet: it says so and exits non-zero instead of pretending
//! to reconcile anything.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("lifeboat-controller: not built yet (the controller arrives with issue #5)");
    ExitCode::from(69)
}
