//! The CSI driver binary.

fn main() -> std::process::ExitCode {
    lifeboat_csi::cli::main()
}
