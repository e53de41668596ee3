//! The CSI driver binary.

fn main() -> std::process::ExitCode {
    lifeboat_rbd::report_aborts("lifeboat-csi");
    lifeboat_csi::cli::main()
}
