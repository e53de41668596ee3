//! The kernel NFS mount a node performs for an NFS volume, built as data so it is tested
//! without a kernel NFS client (these CI machines have none).

use std::path::Path;

use crate::ids::NfsVolume;

/// `mount -t nfs [-o opts] server:/share/dir staging`, options from the StorageClass
/// (`mountOptions` parameter) and the capability's mount flags.
pub fn command(vol: &NfsVolume, class_options: &str, flags: &[String], staging: &Path) -> Vec<String> {
    let mut opts: Vec<String> = class_options
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(str::to_string)
        .collect();
    for f in flags {
        if !opts.contains(f) {
            opts.push(f.clone());
        }
    }
    let share = vol.share.trim_end_matches('/');
    let mut cmd = vec!["mount".to_string(), "-t".into(), "nfs".into()];
    if !opts.is_empty() {
        cmd.push("-o".into());
        cmd.push(opts.join(","));
    }
    cmd.push(format!("{}:{share}/{}", vol.server, vol.dir));
    cmd.push(staging.to_string_lossy().to_string());
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_mount_command() {
        let dir = format!("k8s/{}", crate::ids::hashed_name("vol-", "pvc-1"));
        let v = NfsVolume::new("10.0.0.5", "/srv/export", &dir, "delete").expect("valid");
        let cmd = command(
            &v,
            "nfsvers=4.1, hard",
            &["noatime".into(), "hard".into()],
            Path::new("/stage/x"),
        );
        assert_eq!(
            cmd,
            [
                "mount",
                "-t",
                "nfs",
                "-o",
                "nfsvers=4.1,hard,noatime",
                format!("10.0.0.5:/srv/export/{dir}").as_str(),
                "/stage/x"
            ]
        );
    }
}
