//! The CSI driver's NFS backend over gRPC against the shared nfs-ganesha: a directory per
//! volume through the userspace client, onDelete delete/retain/archive, nothing outside the
//! volume ever touched, snapshots/restores/clones as copies, and the node's mount command
//! (no kernel NFS client here).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use lifeboat_csi::proto::volume_content_source::{SnapshotSource, Type as Src, VolumeSource};
use lifeboat_csi::proto::*;
use lifeboat_tests::csi::{CsiDriver, DriverOptions, code, mount_cap};
use tonic::Code;

struct Env {
    driver: CsiDriver,
    dir: lifeboat_tests::NfsDir,
    params: HashMap<String, String>,
}

async fn env(prefix: &str, extra: Vec<String>) -> Result<Env> {
    let nfs = lifeboat_tests::nfs()?;
    let dir = nfs.new_dir(prefix)?;
    let config =
        serde_json::json!({"nfs": [{"server": dir.server, "share": dir.share, "baseDirs": [dir.name]}]});
    let driver = CsiDriver::start(
        env!("CARGO_BIN_EXE_csi-driver"),
        DriverOptions {
            config,
            extra,
            ..Default::default()
        },
    )
    .await?;
    let params = HashMap::from([
        ("backend".to_string(), "nfs".to_string()),
        ("server".to_string(), dir.server.clone()),
        ("share".to_string(), dir.share.clone()),
        ("baseDir".to_string(), dir.name.clone()),
    ]);
    Ok(Env { driver, dir, params })
}

impl Env {
    fn req(&self, name: &str, on_delete: &str) -> CreateVolumeRequest {
        let mut parameters = self.params.clone();
        parameters.insert("onDelete".into(), on_delete.into());
        CreateVolumeRequest {
            name: name.into(),
            capacity_range: Some(CapacityRange {
                required_bytes: 1 << 30,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![mount_cap("")],
            parameters,
            ..Default::default()
        }
    }

    fn local(&self, v: &Volume) -> std::path::PathBuf {
        let sub = v.volume_context["subDir"]
            .strip_prefix(&format!("{}/", self.dir.name))
            .unwrap_or("");
        self.dir.local.join(sub)
    }
}

/// Every volume ListVolumes returns (one page: the tests make few).
async fn listed_volumes(
    c: &mut lifeboat_csi::proto::controller_client::ControllerClient<tonic::transport::Channel>,
) -> Result<Vec<Volume>> {
    let page = c.list_volumes(ListVolumesRequest::default()).await?.into_inner();
    ensure!(page.next_token.is_empty(), "more than one page: {page:?}");
    Ok(page.entries.into_iter().filter_map(|e| e.volume).collect())
}

/// Relative path → file content or `-> link target` or `<dir>`.
fn tree(root: &Path) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let p = e.path();
            let rel = p.strip_prefix(root)?.to_string_lossy().to_string();
            let t = e.file_type()?;
            if t.is_symlink() {
                out.insert(rel, format!("-> {}", std::fs::read_link(&p)?.display()));
            } else if t.is_dir() {
                out.insert(rel, "<dir>".into());
                stack.push(p);
            } else {
                out.insert(rel, String::from_utf8_lossy(&std::fs::read(&p)?).into_owned());
            }
        }
    }
    Ok(out)
}

#[tokio::test]
async fn create_delete_retain_archive_and_nothing_outside_is_touched() -> Result<()> {
    let e = env("csi-nfs", vec![]).await?;
    let mut c = e.driver.clients().await?;
    ensure!(c.identity.probe(ProbeRequest {}).await?.into_inner().ready == Some(true));

    // A canary next to the volumes that symlinks inside volumes point at.
    let canary = e.dir.local.join("canary");
    std::fs::create_dir_all(&canary)?;
    std::fs::write(canary.join("precious"), b"keep me")?;

    let a = c
        .controller
        .create_volume(e.req("pvc-a", "delete"))
        .await?
        .into_inner()
        .volume
        .context("v")?;
    ensure!(
        a.volume_id.starts_with("nfs:") && a.volume_id.ends_with(":delete"),
        "{a:?}"
    );
    let a_dir = e.local(&a);
    ensure!(a_dir.is_dir(), "{} missing", a_dir.display());
    let again = c
        .controller
        .create_volume(e.req("pvc-a", "delete"))
        .await?
        .into_inner()
        .volume
        .context("v")?;
    ensure!(again.volume_id == a.volume_id && again.capacity_bytes == a.capacity_bytes);
    // Same name, a size the recorded volume cannot satisfy: ALREADY_EXISTS, as the spec says.
    let mut bigger = e.req("pvc-a", "delete");
    bigger.capacity_range = Some(CapacityRange {
        required_bytes: 4 << 30,
        limit_bytes: 0,
    });
    ensure!(code(c.controller.create_volume(bigger).await) == Code::AlreadyExists);
    // ListVolumes finds it through the export and base directory in the driver config, with
    // the id CreateVolume gave and the recorded capacity.
    let listed = listed_volumes(&mut c.controller).await?;
    ensure!(
        listed
            .iter()
            .any(|v| v.volume_id == a.volume_id && v.capacity_bytes == a.capacity_bytes),
        "{listed:?}"
    );
    // Content, including links out of the volume, which deletion must not follow.
    std::fs::create_dir_all(a_dir.join("sub/deeper"))?;
    std::fs::write(a_dir.join("sub/deeper/file"), b"data")?;
    std::os::unix::fs::symlink(&canary, a_dir.join("link-to-dir"))?;
    std::os::unix::fs::symlink(canary.join("precious"), a_dir.join("sub/link-to-file"))?;
    std::os::unix::fs::symlink("../../canary", a_dir.join("relative-link"))?;

    let del = |id: &str| DeleteVolumeRequest {
        volume_id: id.into(),
        secrets: HashMap::new(),
    };
    c.controller
        .delete_volume(del(&a.volume_id))
        .await
        .with_context(|| e.driver.log())?;
    c.controller.delete_volume(del(&a.volume_id)).await?;
    ensure!(!a_dir.exists(), "volume directory still there");
    ensure!(
        !listed_volumes(&mut c.controller)
            .await?
            .iter()
            .any(|v| v.volume_id == a.volume_id),
        "a deleted volume is still listed"
    );
    ensure!(
        std::fs::read(canary.join("precious"))? == b"keep me",
        "deletion followed a symlink"
    );

    // Forged ids that try to climb out are refused before anything is touched.
    for forged in [
        format!("nfs:{}:{}:{}/..:delete", e.dir.server, e.dir.share, e.dir.name),
        format!("nfs:{}:{}:..:delete", e.dir.server, e.dir.share),
        format!("nfs:{}:{}/..:{}:delete", e.dir.server, e.dir.share, e.dir.name),
    ] {
        c.controller.delete_volume(del(&forged)).await?;
    }
    ensure!(canary.join("precious").exists() && e.dir.local.exists());

    // A baseDir that is a symlink is refused, not followed.
    std::os::unix::fs::symlink(&canary, e.dir.local.join("linked-base"))?;
    let mut via_link = e.req("pvc-l", "delete");
    via_link
        .parameters
        .insert("baseDir".into(), format!("{}/linked-base", e.dir.name));
    ensure!(code(c.controller.create_volume(via_link).await) == Code::FailedPrecondition);
    let mut escaping = e.req("pvc-l", "delete");
    escaping.parameters.insert("baseDir".into(), "../etc".into());
    ensure!(code(c.controller.create_volume(escaping).await) == Code::InvalidArgument);
    let mut bad_policy = e.req("pvc-l", "shred");
    bad_policy.parameters.insert("onDelete".into(), "shred".into());
    ensure!(code(c.controller.create_volume(bad_policy).await) == Code::InvalidArgument);

    // retain keeps the directory; archive renames it.
    let b = c
        .controller
        .create_volume(e.req("pvc-b", "retain"))
        .await?
        .into_inner()
        .volume
        .context("v")?;
    std::fs::write(e.local(&b).join("f"), b"retained")?;
    c.controller.delete_volume(del(&b.volume_id)).await?;
    ensure!(std::fs::read(e.local(&b).join("f"))? == b"retained");
    let a2 = c
        .controller
        .create_volume(e.req("pvc-c", "archive"))
        .await?
        .into_inner()
        .volume
        .context("v")?;
    std::fs::write(e.local(&a2).join("f"), b"archived")?;
    c.controller.delete_volume(del(&a2.volume_id)).await?;
    ensure!(!e.local(&a2).exists());
    let archived: Vec<_> = std::fs::read_dir(&e.dir.local)?
        .flatten()
        .filter(|d| d.file_name().to_string_lossy().starts_with("archived-vol-"))
        .collect();
    ensure!(archived.len() == 1 && std::fs::read(archived[0].path().join("f"))? == b"archived");

    // Controller RPCs that only look.
    let got = c
        .controller
        .controller_get_volume(ControllerGetVolumeRequest {
            volume_id: b.volume_id.clone(),
        })
        .await?
        .into_inner();
    ensure!(
        got.status
            .and_then(|s| s.volume_condition)
            .is_some_and(|c| !c.abnormal)
    );
    let cap = c
        .controller
        .get_capacity(GetCapacityRequest {
            parameters: e.params.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    ensure!(cap.available_capacity > 0);
    let expanded = c
        .controller
        .controller_expand_volume(ControllerExpandVolumeRequest {
            volume_id: b.volume_id.clone(),
            capacity_range: Some(CapacityRange {
                required_bytes: 2 << 30,
                limit_bytes: 0,
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    ensure!(!expanded.node_expansion_required);
    let mut block = e.req("pvc-block", "delete");
    block.volume_capabilities = vec![lifeboat_tests::csi::block_cap()];
    ensure!(code(c.controller.create_volume(block).await) == Code::InvalidArgument);

    // The node's mount: built and attempted; this VM has no kernel NFS client, so it fails
    // at the mount call itself, with the command in the error.
    let staging = tempfile::tempdir()?;
    let staged = c
        .node
        .node_stage_volume(NodeStageVolumeRequest {
            volume_id: b.volume_id.clone(),
            staging_target_path: staging.path().to_string_lossy().into(),
            volume_capability: Some(mount_cap("")),
            volume_context: b.volume_context.clone(),
            ..Default::default()
        })
        .await;
    match staged {
        Ok(_) => eprintln!("NOTE: this machine mounted NFS; the node path ran end to end"),
        Err(s) => ensure!(
            s.message().contains(&format!(
                "mount -t nfs {}:{}/{}",
                e.dir.server, e.dir.share, b.volume_context["subDir"]
            )),
            "{s:?}"
        ),
    }
    Ok(())
}

#[tokio::test]
async fn snapshot_restore_and_clone_copy_the_tree() -> Result<()> {
    let e = env("csi-nfs-snap", vec![]).await?;
    let mut c = e.driver.clients().await?.controller;
    let v = c
        .create_volume(e.req("src", "delete"))
        .await?
        .into_inner()
        .volume
        .context("v")?;
    let src = e.local(&v);
    std::fs::create_dir_all(src.join("a/b"))?;
    std::fs::write(src.join("a/b/data.bin"), vec![7u8; 300 * 1024])?;
    std::fs::write(src.join("top.txt"), b"top")?;
    std::os::unix::fs::symlink("a/b/data.bin", src.join("link"))?;
    let at_snapshot = tree(&src)?;

    let snap_req = CreateSnapshotRequest {
        source_volume_id: v.volume_id.clone(),
        name: "snap-1".into(),
        ..Default::default()
    };
    let snap = c
        .create_snapshot(snap_req.clone())
        .await
        .with_context(|| e.driver.log())?
        .into_inner()
        .snapshot
        .context("s")?;
    ensure!(snap.ready_to_use);
    let again = c
        .create_snapshot(snap_req)
        .await?
        .into_inner()
        .snapshot
        .context("s")?;
    ensure!(again.snapshot_id == snap.snapshot_id);
    // The same snapshot name asked of another volume is a conflict, not the first volume's copy.
    let other = c
        .create_volume(e.req("other", "delete"))
        .await?
        .into_inner()
        .volume
        .context("v")?;
    let reuse = CreateSnapshotRequest {
        source_volume_id: other.volume_id.clone(),
        name: "snap-1".into(),
        ..Default::default()
    };
    ensure!(code(c.create_snapshot(reuse).await) == Code::AlreadyExists);
    std::fs::write(src.join("top.txt"), b"changed after the snapshot")?;

    let mut restore = e.req("restored", "delete");
    restore.volume_content_source = Some(VolumeContentSource {
        r#type: Some(Src::Snapshot(SnapshotSource {
            snapshot_id: snap.snapshot_id.clone(),
        })),
    });
    let restored = c.create_volume(restore).await?.into_inner().volume.context("v")?;
    ensure!(
        tree(&e.local(&restored))? == at_snapshot,
        "restore differs from the snapshot"
    );

    let mut clone = e.req("cloned", "delete");
    clone.volume_content_source = Some(VolumeContentSource {
        r#type: Some(Src::Volume(VolumeSource {
            volume_id: v.volume_id.clone(),
        })),
    });
    let cloned = c.create_volume(clone).await?.into_inner().volume.context("v")?;
    ensure!(
        tree(&e.local(&cloned))? == tree(&src)?,
        "clone differs from its source"
    );

    let listed = c
        .list_snapshots(ListSnapshotsRequest {
            snapshot_id: snap.snapshot_id.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    ensure!(listed.entries.len() == 1);
    let mut missing = e.req("from-missing", "delete");
    missing.volume_content_source = Some(VolumeContentSource {
        r#type: Some(Src::Snapshot(SnapshotSource {
            snapshot_id: format!("{}:snap-nothing", v.volume_id),
        })),
    });
    ensure!(code(c.create_volume(missing).await) == Code::NotFound);

    let del = DeleteSnapshotRequest {
        snapshot_id: snap.snapshot_id,
        secrets: HashMap::new(),
    };
    c.delete_snapshot(del.clone()).await?;
    c.delete_snapshot(del).await?;
    // Deleted, the name is free for the other volume.
    let moved = c
        .create_snapshot(CreateSnapshotRequest {
            source_volume_id: other.volume_id.clone(),
            name: "snap-1".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .snapshot
        .context("s")?;
    c.delete_snapshot(DeleteSnapshotRequest {
        snapshot_id: moved.snapshot_id,
        secrets: HashMap::new(),
    })
    .await?;
    for id in [v.volume_id, restored.volume_id, cloned.volume_id, other.volume_id] {
        c.delete_volume(DeleteVolumeRequest {
            volume_id: id,
            secrets: HashMap::new(),
        })
        .await?;
    }
    let left: Vec<String> = std::fs::read_dir(&e.dir.local)?
        .flatten()
        .map(|d| d.file_name().to_string_lossy().to_string())
        .filter(|n| n != ".lifeboat-snapshots" && n != ".lifeboat-meta")
        .collect();
    ensure!(left.is_empty(), "left behind: {left:?}");
    for meta in [".lifeboat-snapshots", ".lifeboat-meta"] {
        let left: Vec<_> = std::fs::read_dir(e.dir.local.join(meta))?
            .flatten()
            .map(|d| d.file_name())
            .collect();
        ensure!(left.is_empty(), "left in {meta}: {left:?}");
    }
    Ok(())
}

#[tokio::test]
async fn a_timed_out_nfs_call_does_not_poison_the_next() -> Result<()> {
    // 300 ms for a whole RPC's NFS work: copying 256 MiB through the userspace client cannot
    // finish in it; making a directory can.
    let e = env("csi-nfs-timeout", vec!["--nfs-timeout-ms".into(), "300".into()]).await?;
    let mut c = e.driver.clients().await?.controller;
    let v = c
        .create_volume(e.req("big", "delete"))
        .await?
        .into_inner()
        .volume
        .context("v")?;
    let chunk: Vec<u8> = (0..(1 << 20)).map(|i| (i % 253) as u8).collect();
    {
        use std::io::Write;
        let mut f = std::fs::File::create(e.local(&v).join("big.bin"))?;
        for _ in 0..256 {
            f.write_all(&chunk)?;
        }
    }
    let started = std::time::Instant::now();
    let r = c
        .create_snapshot(CreateSnapshotRequest {
            source_volume_id: v.volume_id.clone(),
            name: "too-slow".into(),
            ..Default::default()
        })
        .await;
    ensure!(code(r) == Code::Unavailable);
    ensure!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    // The next calls to the same server, on the same driver, work.
    let small = c
        .create_volume(e.req("small", "delete"))
        .await?
        .into_inner()
        .volume
        .context("v")?;
    ensure!(e.local(&small).is_dir());
    for id in [small.volume_id, v.volume_id] {
        c.delete_volume(DeleteVolumeRequest {
            volume_id: id,
            secrets: HashMap::new(),
        })
        .await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_second_operation_on_a_busy_volume_is_aborted() -> Result<()> {
    let e = env("csi-nfs-inflight", vec![]).await?;
    let mut c = e.driver.clients().await?.controller;
    // A slow snapshot (a copy of `mib` MiB) holds the volume; a delete meanwhile is ABORTED.
    // Timing decides whether the delete lands while the copy runs: a copy that finished
    // first is tried again with a bigger volume, and never passes unchecked.
    for (attempt, mib) in [(1, 256), (2, 512), (3, 1024)] {
        let v = c
            .create_volume(e.req(&format!("busy-{attempt}"), "delete"))
            .await?
            .into_inner()
            .volume
            .context("v")?;
        {
            use std::io::Write;
            let chunk = vec![1u8; 1 << 20];
            let mut f = std::fs::File::create(e.local(&v).join("big.bin"))?;
            for _ in 0..mib {
                f.write_all(&chunk)?;
            }
        }
        let mut slow = c.clone();
        let snap_req = CreateSnapshotRequest {
            source_volume_id: v.volume_id.clone(),
            name: format!("slow-{attempt}"),
            ..Default::default()
        };
        let snapshot = tokio::spawn(async move { slow.create_snapshot(snap_req).await });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let del = DeleteVolumeRequest {
            volume_id: v.volume_id.clone(),
            secrets: HashMap::new(),
        };
        let r = c.delete_volume(del.clone()).await;
        let finished_first = snapshot.is_finished();
        let snap = snapshot.await??.into_inner().snapshot.context("snapshot")?;
        c.delete_snapshot(DeleteSnapshotRequest {
            snapshot_id: snap.snapshot_id,
            secrets: HashMap::new(),
        })
        .await?;
        c.delete_volume(del).await?;
        ensure!(!e.local(&v).exists());
        if !finished_first {
            ensure!(code(r) == Code::Aborted);
            return Ok(());
        }
        eprintln!("attempt {attempt}: the snapshot of {mib} MiB finished within 100 ms; again, bigger");
    }
    bail!("a 1 GiB snapshot finished within 100 ms three times: the ABORTED check never ran")
}

/// Every id a hand-made PersistentVolume could carry that names something the driver did not
/// create — another application's folder, the base directory, the driver's own metadata, a
/// folder named like a volume but without a record, a real volume under another policy or
/// another base — is deleted with nothing touched, for every onDelete policy; the export's
/// whole tree (neighbour volume, records, foreign folders) stays byte for byte the same.
#[tokio::test]
async fn delete_volume_removes_only_what_the_driver_created() -> Result<()> {
    let e = env("csi-nfs-forged", vec![]).await?;
    let mut c = e.driver.clients().await?.controller;
    let neighbour = c
        .create_volume(e.req("neighbour", "delete"))
        .await?
        .into_inner()
        .volume
        .context("v")?;
    std::fs::write(e.local(&neighbour).join("data"), b"neighbour's data")?;
    let snap = c
        .create_snapshot(CreateSnapshotRequest {
            source_volume_id: neighbour.volume_id.clone(),
            name: "neighbour-snap".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .snapshot
        .context("snapshot")?;
    // Foreign folders: another application, one named like a volume with no record, one in
    // a deeper folder of someone else's, and files at the share's root.
    let fake_hash = lifeboat_csi::ids::name_hash("never-created");
    for (dir, file) in [
        ("other-app", "db.sqlite"),
        (&format!("vol-{fake_hash}") as &str, "looks-like-ours"),
        ("users/alice", "thesis.tex"),
    ] {
        std::fs::create_dir_all(e.dir.local.join(dir))?;
        std::fs::write(e.dir.local.join(dir).join(file), format!("{dir} content"))?;
    }
    // Folders at the share's root too (other tests share it, so only these are compared).
    let share_root = e.dir.local.parent().context("share root")?.to_path_buf();
    let root_app = format!("{}-other-app", e.dir.name);
    let root_vol = format!("vol-{}", lifeboat_csi::ids::name_hash(&root_app));
    for dir in [&root_app, &root_vol] {
        std::fs::create_dir_all(share_root.join(dir))?;
        std::fs::write(share_root.join(dir).join("file"), format!("{dir} at the root"))?;
    }
    let root_trees = || -> Result<Vec<BTreeMap<String, String>>> {
        Ok(vec![
            tree(&share_root.join(&root_app))?,
            tree(&share_root.join(&root_vol))?,
        ])
    };
    let before_base = tree(&e.dir.local)?;
    let before_share = root_trees()?;

    let (server, share, base) = (&e.dir.server, &e.dir.share, &e.dir.name);
    let neighbour_dir = neighbour.volume_context["subDir"].clone();
    let neighbour_name = neighbour_dir.rsplit('/').next().context("name")?.to_string();
    for policy in ["delete", "retain", "archive"] {
        let forged = [
            format!("nfs:{server}:{share}:other-app:{policy}"),
            format!("nfs:{server}:{share}:{root_app}:{policy}"),
            format!("nfs:{server}:{share}:{root_vol}:{policy}"),
            format!("nfs:{server}:{share}:{base}:{policy}"),
            format!("nfs:{server}:{share}:{base}/other-app:{policy}"),
            format!("nfs:{server}:{share}:{base}/.lifeboat-meta:{policy}"),
            format!("nfs:{server}:{share}:{base}/.lifeboat-meta/{neighbour_name}:{policy}"),
            format!("nfs:{server}:{share}:{base}/.lifeboat-snapshots:{policy}"),
            format!("nfs:{server}:{share}:{base}/users:{policy}"),
            format!("nfs:{server}:{share}:{base}/vol-{fake_hash}:{policy}"),
            format!("nfs:{server}:{share}:vol-{fake_hash}:{policy}"),
            format!("nfs:{server}:{share}:{base}/users/{neighbour_name}:{policy}"),
            format!("nfs:{server}:{share}:{neighbour_name}:{policy}"),
            format!("nfs:{server}:{share}::{policy}"),
            format!("nfs:{server}:{share}:{base}/..:{policy}"),
        ];
        for id in forged.iter().chain(
            // The neighbour itself under the policies it was not created with.
            (policy != "delete")
                .then(|| format!("nfs:{server}:{share}:{neighbour_dir}:{policy}"))
                .iter(),
        ) {
            c.delete_volume(DeleteVolumeRequest {
                volume_id: id.clone(),
                secrets: HashMap::new(),
            })
            .await
            .with_context(|| format!("DeleteVolume {id}: {}", e.driver.log()))?;
            ensure!(
                tree(&e.dir.local)? == before_base,
                "DeleteVolume {id} changed the base directory"
            );
            ensure!(
                root_trees()? == before_share,
                "DeleteVolume {id} changed a folder at the share's root"
            );
        }
    }
    // Forged snapshot ids: another volume's snapshot name under the neighbour's id, and one
    // the driver never made.
    let snap_name = snap
        .snapshot_id
        .rsplit(':')
        .next()
        .context("snap name")?
        .to_string();
    let other_hash = lifeboat_csi::ids::name_hash("someone");
    for id in [
        format!("nfs:{server}:{share}:{base}/vol-{fake_hash}:delete:{snap_name}"),
        format!("{}:snap-{other_hash}", neighbour.volume_id),
        format!("{}:..", neighbour.volume_id),
        format!("{}:.lifeboat-meta", neighbour.volume_id),
    ] {
        c.delete_snapshot(DeleteSnapshotRequest {
            snapshot_id: id.clone(),
            secrets: HashMap::new(),
        })
        .await
        .with_context(|| format!("DeleteSnapshot {id}"))?;
        ensure!(
            tree(&e.dir.local)? == before_base,
            "DeleteSnapshot {id} changed the base directory"
        );
    }
    ensure!(
        root_trees()? == before_share,
        "a folder at the share's root changed"
    );
    ensure!(
        listed_volumes(&mut c)
            .await?
            .iter()
            .any(|v| v.volume_id == neighbour.volume_id),
        "the neighbour is no longer listed"
    );

    // The real ids still work, and take only their own directories.
    c.delete_snapshot(DeleteSnapshotRequest {
        snapshot_id: snap.snapshot_id,
        secrets: HashMap::new(),
    })
    .await?;
    c.delete_volume(DeleteVolumeRequest {
        volume_id: neighbour.volume_id.clone(),
        secrets: HashMap::new(),
    })
    .await?;
    ensure!(!e.local(&neighbour).exists(), "the neighbour was not deleted");
    for dir in [&root_app, &root_vol] {
        std::fs::remove_dir_all(share_root.join(dir))?;
    }
    for (dir, file) in [
        ("other-app", "db.sqlite"),
        (&format!("vol-{fake_hash}") as &str, "looks-like-ours"),
        ("users/alice", "thesis.tex"),
    ] {
        ensure!(
            std::fs::read(e.dir.local.join(dir).join(file))? == format!("{dir} content").as_bytes(),
            "{dir} was touched"
        );
    }
    Ok(())
}

/// NFS volumes have no mutable parameters; GetCapacity without parameters counts the
/// configured export.
#[tokio::test]
async fn nfs_mutable_parameters_are_refused_and_capacity_needs_no_parameters() -> Result<()> {
    let e = env("csi-nfs-modify", vec![]).await?;
    let mut c = e.driver.clients().await?.controller;
    let mut with_qos = e.req("qos", "delete");
    with_qos.mutable_parameters = HashMap::from([("qosIopsLimit".to_string(), "10".to_string())]);
    ensure!(code(c.create_volume(with_qos).await) == Code::InvalidArgument);
    let v = c
        .create_volume(e.req("plain", "delete"))
        .await?
        .into_inner()
        .volume
        .context("v")?;
    let modify = |params: &[(&str, &str)]| ControllerModifyVolumeRequest {
        volume_id: v.volume_id.clone(),
        mutable_parameters: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    ensure!(
        code(
            c.controller_modify_volume(modify(&[("qosIopsLimit", "10")]))
                .await
        ) == Code::InvalidArgument
    );
    c.controller_modify_volume(modify(&[])).await?;
    let all = c.get_capacity(GetCapacityRequest::default()).await?.into_inner();
    ensure!(all.available_capacity > 0, "{all:?}");
    c.delete_volume(DeleteVolumeRequest {
        volume_id: v.volume_id,
        secrets: HashMap::new(),
    })
    .await?;
    Ok(())
}
