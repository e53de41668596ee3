//! The CSI driver binary. Not built yet: it says so and exits non-zero instead of serving a
//! socket that provisions nothing.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("lifeboat-csi: not built yet (the CSI driver arrives with issue #7)");
    ExitCode::from(69)
}
