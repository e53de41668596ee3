//! Starts the shared test services by hand and prints how to reach them, for poking at them
//! with the `ceph`, `rbd`, `etcdctl` and `nfs-ls` CLIs while developing.
//!
//! `cargo run -p lifeboat-tests --bin testenv -- up` starts Ceph and NFS (if not running) and
//! keeps them up while it runs; Ctrl-C releases them to the reaper.

use std::process::ExitCode;

fn main() -> ExitCode {
    let arg = std::env::args().nth(1).unwrap_or_default();
    if arg != "up" {
        eprintln!("usage: testenv up    (start shared Ceph+RGW and NFS; hold them until Ctrl-C)");
        return ExitCode::from(2);
    }
    let ceph = match lifeboat_tests::ceph() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let nfs = match lifeboat_tests::nfs() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let rgw = ceph.rgw();
    println!("export CEPH_CONF={}", ceph.conf().display());
    println!("export AWS_ENDPOINT_URL={}", rgw.endpoint);
    println!("export AWS_ACCESS_KEY_ID={}", rgw.access_key);
    println!("export AWS_SECRET_ACCESS_KEY={}", rgw.secret_key);
    println!("export AWS_REGION={}", rgw.region);
    println!("# NFS: {}", nfs.url(""));
    println!(
        "# state and logs: {}",
        lifeboat_tests::shared::state_dir().display()
    );
    loop {
        std::thread::park();
    }
}
