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
    Ok(!mounts_at(path)?.is_empty())
}

/// One mount on a path, as /proc/self/mountinfo lists it (proc(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The mounted device or remote (`/dev/loop3`, `server:/share/dir`).
    pub source: String,
    /// Filesystem type (`ext4`, `nfs4`).
    pub fs_type: String,
    /// Mounted read-only (the per-mount `ro` flag, which a read-only bind mount sets).
    pub read_only: bool,
}

/// Every mount on `path`, oldest first (several when mounts are stacked).
pub fn mounts_at(path: &Path) -> Result<Vec<MountEntry>> {
    let table = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| CsiError::Internal(format!("read mountinfo: {e}")))?;
    Ok(parse_mountinfo(&table, &path.to_string_lossy()))
}

/// The entries of a mountinfo table mounted on `path`. Fields: id, parent, major:minor, root,
/// mount point, mount options, optional fields…, `-`, type, source, super options.
fn parse_mountinfo(table: &str, path: &str) -> Vec<MountEntry> {
    let want = path.trim_end_matches('/');
    table
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let (point, options) = (fields.get(4)?, fields.get(5)?);
            if unescape(point) != want {
                return None;
            }
            let dash = fields.iter().position(|f| *f == "-")?;
            Some(MountEntry {
                fs_type: fields.get(dash + 1)?.to_string(),
                source: unescape(fields.get(dash + 2)?),
                read_only: options.split(',').any(|o| o == "ro"),
            })
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_entries_give_source_type_and_read_only() {
        let table = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                     90 22 7:3 / /var/lib/kubelet/staging rw,relatime shared:50 - ext4 /dev/loop3 rw\n\
                     91 22 7:3 / /var/lib/kubelet/staging rw,relatime - ext4 /dev/loop3 rw\n\
                     92 22 7:3 / /pods/a\\040b ro,relatime shared:50 - ext4 /dev/loop3 rw\n\
                     93 22 0:60 / /pods/nfs rw - nfs4 10.0.0.5:/srv/export/k8s rw,vers=4.2\n";
        let staged = parse_mountinfo(table, "/var/lib/kubelet/staging/");
        assert_eq!(staged.len(), 2, "stacked mounts are each listed");
        assert_eq!(staged[0].source, "/dev/loop3");
        assert!(!staged[0].read_only);
        let published = parse_mountinfo(table, "/pods/a b");
        assert!(published[0].read_only, "{published:?}");
        let nfs = parse_mountinfo(table, "/pods/nfs");
        assert_eq!(
            (nfs[0].fs_type.as_str(), nfs[0].source.as_str()),
            ("nfs4", "10.0.0.5:/srv/export/k8s")
        );
        assert!(parse_mountinfo(table, "/pods").is_empty());
    }
}
