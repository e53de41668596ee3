//! The CSI driver, built inside the test package so integration tests and the benchmark run
//! the very binary they test (`CARGO_BIN_EXE_csi-driver`) and can kill it mid-operation.

fn main() -> std::process::ExitCode {
    lifeboat_csi::cli::main()
}
