//! Exposing an RBD image as a block device on this node.
//!
//! Production nodes use the kernel client (`rbd map`). Where the kernel has no rbd module
//! (as on the CI machines), the image is exposed as a file by `rbd-fuse` and attached to a
//! loop device, which gives a real block device backed by the real image.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{CsiError, Result};
use crate::node::exec::{run, run_env};
use crate::rbd::connect::TempConf;

/// How images are mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
pub enum MapperKind {
    /// krbd when the kernel has it, rbd-fuse + loop otherwise.
    Auto,
    /// The kernel RBD client.
    Krbd,
    /// rbd-fuse plus a loop device.
    Fuse,
}

impl MapperKind {
    /// Resolves `Auto` on this machine.
    pub fn resolve(self) -> MapperKind {
        match self {
            MapperKind::Auto if Path::new("/sys/bus/rbd").exists() => MapperKind::Krbd,
            MapperKind::Auto => MapperKind::Fuse,
            other => other,
        }
    }
}

/// A mapped image.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Mapped {
    /// The mapper used.
    pub kind: MapperKind,
    /// The block device.
    pub device: String,
    /// The rbd-fuse mount directory, for the fuse mapper.
    pub fuse_dir: Option<PathBuf>,
    /// The image file behind the loop device, for the fuse mapper.
    pub backing: Option<String>,
}

/// What to map.
pub struct MapRequest<'a> {
    /// Pool of the image.
    pub pool: &'a str,
    /// The image.
    pub image: &'a str,
    /// cephx user.
    pub user: &'a str,
    /// A config file with monitors and key, alive for the duration of the call.
    pub conf: &'a TempConf,
    /// Directory for the fuse mount.
    pub fuse_dir: PathBuf,
    /// Devices other staged volumes' records hold (never reused or unmapped for this one).
    pub in_use: &'a [String],
}

/// Maps the image with `kind` (already resolved).
pub async fn map(kind: MapperKind, req: &MapRequest<'_>) -> Result<Mapped> {
    let conf = req.conf.0.to_string_lossy().to_string();
    match kind {
        MapperKind::Krbd | MapperKind::Auto => {
            // A stage killed after `rbd map` left the image mapped: use that device (mapping
            // again would give a second one and leave the first, and its watch, behind).
            let listed = run("rbd", &["device", "list", "--format", "json"]).await?;
            let mapped = krbd_devices(&listed, req.pool, req.image)?
                .into_iter()
                .find(|d| !req.in_use.contains(d));
            let device = match mapped {
                Some(d) => d,
                None => {
                    let spec = format!("{}/{}", req.pool, req.image);
                    run("rbd", &["map", &spec, "-c", &conf, "--id", req.user]).await?
                }
            };
            Ok(Mapped {
                kind: MapperKind::Krbd,
                device,
                fuse_dir: None,
                backing: None,
            })
        }
        MapperKind::Fuse => {
            let dir = &req.fuse_dir;
            std::fs::create_dir_all(dir)
                .map_err(|e| CsiError::Internal(format!("create {}: {e}", dir.display())))?;
            let image_file = dir.join(req.image);
            if !crate::node::exec::is_mounted(dir)? {
                let d = dir.to_string_lossy().to_string();
                let args = format!("--id {}", req.user);
                let started = run_env(
                    "rbd-fuse",
                    &["-c", &conf, "-p", req.pool, "-r", req.image, &d],
                    &[("CEPH_ARGS", &args)],
                )
                .await;
                // An rbd-fuse that a killed stage started (it outlives the driver) may mount
                // this directory between the check above and this one's own start, which then
                // refuses with "mountpoint is not empty": that mount is this image's, so use it.
                if let Err(e) = started {
                    if !crate::node::exec::is_mounted(dir)? {
                        return Err(e);
                    }
                    tracing::info!(pool = req.pool, image = req.image, dir = %d, "using the rbd-fuse mount an interrupted stage made");
                }
            }
            wait_for(&image_file).await?;
            let file = image_file.to_string_lossy().to_string();
            let device = match find_loop(&file).await? {
                Some(d) => d,
                None => run("losetup", &["-f", "--show", "--direct-io=off", &file]).await?,
            };
            Ok(Mapped {
                kind: MapperKind::Fuse,
                device,
                fuse_dir: Some(dir.clone()),
                backing: Some(file),
            })
        }
    }
}

async fn wait_for(path: &Path) -> Result<()> {
    for _ in 0..100 {
        if path.exists() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(CsiError::Internal(format!(
        "rbd-fuse did not expose {}",
        path.display()
    )))
}

async fn find_loop(file: &str) -> Result<Option<String>> {
    let out = run("losetup", &["-j", file, "-O", "NAME", "-n"]).await?;
    Ok(out
        .lines()
        .next()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty()))
}

/// Undoes [`map`]; safe to repeat.
pub async fn unmap(m: &Mapped) -> Result<()> {
    match m.kind {
        MapperKind::Krbd | MapperKind::Auto => {
            if Path::new(&m.device).exists() {
                run("rbd", &["unmap", &m.device]).await?;
            }
        }
        MapperKind::Fuse => {
            // Detach only a loop device still backed by this image: the number may have been
            // reused by another volume since.
            if let Some(file) = &m.backing
                && let Some(dev) = find_loop(file).await.ok().flatten()
            {
                run("losetup", &["-d", &dev]).await?;
            }
            if let Some(dir) = &m.fuse_dir {
                // The loop device lets go of the image file asynchronously after detaching.
                let d = dir.to_string_lossy().to_string();
                let mut tries = 0;
                while crate::node::exec::is_mounted(dir)? {
                    match run("umount", &[&d]).await {
                        Ok(_) => {}
                        Err(e) if tries >= 50 => return Err(e),
                        Err(_) => {
                            tries += 1;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
    Ok(())
}

/// Undoes what an interrupted [`map`] of `pool/image` may have left when no stage record says
/// what was mapped (the driver was killed between mapping and writing the record): the kernel
/// RBD devices of that image (from `rbd device list`) that no other stage record holds
/// (`in_use`), or the rbd-fuse mount in `fuse_dir` and the loop device on its image file.
/// Nothing mapped is fine.
pub async fn unmap_leftovers(
    kind: MapperKind,
    pool: &str,
    image: &str,
    fuse_dir: &Path,
    in_use: &[String],
) -> Result<()> {
    match kind {
        MapperKind::Krbd | MapperKind::Auto => {
            let listed = run("rbd", &["device", "list", "--format", "json"]).await?;
            for device in krbd_devices(&listed, pool, image)?
                .into_iter()
                .filter(|d| !in_use.contains(d))
            {
                tracing::info!(
                    pool,
                    image,
                    device,
                    "unmapping a device an interrupted stage left"
                );
                unmap(&Mapped {
                    kind: MapperKind::Krbd,
                    device,
                    fuse_dir: None,
                    backing: None,
                })
                .await?;
            }
            Ok(())
        }
        MapperKind::Fuse => {
            if !fuse_dir.exists() {
                return Ok(());
            }
            tracing::info!(pool, image, dir = %fuse_dir.display(), "removing an rbd-fuse mapping an interrupted stage left");
            unmap(&Mapped {
                kind: MapperKind::Fuse,
                device: String::new(),
                fuse_dir: Some(fuse_dir.to_path_buf()),
                backing: Some(fuse_dir.join(image).to_string_lossy().into_owned()),
            })
            .await
        }
    }
}

/// Devices mapping `pool/image` (not a snapshot of it) in `rbd device list --format json`
/// output: `[{"pool": …, "name": …, "snap": "-", "device": "/dev/rbd0", …}]`.
fn krbd_devices(listed: &str, pool: &str, image: &str) -> Result<Vec<String>> {
    let entries: Vec<serde_json::Value> =
        serde_json::from_str(if listed.trim().is_empty() { "[]" } else { listed }).map_err(|e| {
            CsiError::Internal(format!("unexpected `rbd device list` output ({e}): {listed}"))
        })?;
    Ok(entries
        .iter()
        .filter(|d| d["pool"] == pool && d["name"] == image && d["snap"].as_str().is_none_or(|s| s == "-"))
        .filter_map(|d| d["device"].as_str().map(str::to_string))
        .collect())
}

/// Makes the block device notice the image grew.
pub async fn refresh_size(m: &Mapped) -> Result<()> {
    if m.kind == MapperKind::Fuse {
        run("losetup", &["-c", &m.device]).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_devices_of_one_image_are_found_in_the_device_list() {
        let listed = r#"[{"id":"0","pool":"rbd","namespace":"","name":"csi-vol-a","snap":"-","device":"/dev/rbd0"},
            {"id":"1","pool":"rbd","namespace":"","name":"csi-vol-a","snap":"s1","device":"/dev/rbd1"},
            {"id":"2","pool":"other","namespace":"","name":"csi-vol-a","snap":"-","device":"/dev/rbd2"},
            {"id":"3","pool":"rbd","namespace":"","name":"csi-vol-b","snap":"-","device":"/dev/rbd3"}]"#;
        assert_eq!(
            krbd_devices(listed, "rbd", "csi-vol-a").ok(),
            Some(vec!["/dev/rbd0".to_string()])
        );
        assert_eq!(krbd_devices("[]", "rbd", "x").ok(), Some(vec![]));
        assert!(krbd_devices("rbd: not json", "rbd", "x").is_err());
    }
}
