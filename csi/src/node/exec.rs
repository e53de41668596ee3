//! Running the node's tools (mount, mkfs, losetup, rbd-fuse…) with their output kept for
//! the error, and reading the mount table.

use std::path::Path;

use crate::error::{CsiError, Result};

/// Runs a command; a non-zero exit is INTERNAL with the command line and its stderr.
pub async fn run(program: &str, args: &[&str]) -> Result<String> {
    run_env(program, args, &[]).await
}

/// Like [`run`], with extra environment variables.
pub async fn run_env(program: &str, args: &[&str], env: &[(&str, &str)]) -> Result<String> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .await
        .map_err(|e| CsiError::Internal(format!("run {program}: {e}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(CsiError::Internal(format!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Exit code of a command (for probes such as `blkid`, where "not found" is an answer).
pub async fn status(program: &str, args: &[&str]) -> Result<(i32, String)> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| CsiError::Internal(format!("run {program}: {e}")))?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    ))
}

/// True if `path` is a mount point (from /proc/self/mountinfo).
pub fn is_mounted(path: &Path) -> Result<bool> {
    let table = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| CsiError::Internal(format!("read mountinfo: {e}")))?;
    let want = path.to_string_lossy();
    Ok(table
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| unescape(mp) == want.trim_end_matches('/')))
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Bytes and inodes of the filesystem holding `path`: (total, free for users, used) each.
pub async fn fs_stats(path: &Path) -> Result<([u64; 3], [u64; 3])> {
    let p = path.to_string_lossy();
    let out = run("stat", &["-f", "-c", "%b %a %f %S %c %d", &p]).await?;
    let n: Vec<u64> = out.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    let [blocks, avail, free, bsize, files, ffree] = n.as_slice() else {
        return Err(CsiError::Internal(format!("unexpected stat -f output {out:?}")));
    };
    let bytes = [blocks * bsize, avail * bsize, (blocks - free) * bsize];
    let inodes = [*files, *ffree, files - ffree];
    Ok((bytes, inodes))
}

/// Size of a block device in bytes.
pub async fn device_size(device: &str) -> Result<u64> {
    run("blockdev", &["--getsize64", device])
        .await?
        .parse()
        .map_err(|e| CsiError::Internal(format!("blockdev size of {device}: {e}")))
}
