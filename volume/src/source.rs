//! The RBD volume source: snapshot the image, read the allocated (first backup) or changed
//! (later ones, `rbd_diff_iterate2` from the parent's RBD snapshot) segments on several
//! threads, chunk their data runs into the repository, and keep the parent's chunks for
//! every untouched segment. Given a group snapshot point ([`crate::TakenAt`]) it reads the
//! image's member snapshot instead, diffing from the parent's base to it, and keeps the
//! point's pre-base as the next base.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use lifeboat_backup::archiver::Writer;
use lifeboat_backup::progress::Progress;
use lifeboat_backup::session::BlobSink;
use lifeboat_backup::snapshot::{
    Node, NodeKind, Snapshot, SnapshotDetails, Summary, VolumeExtent, VolumeImage,
};
use lifeboat_backup::{IndexedRepository, Source, Written};
use lifeboat_rbd::{Cluster, Image, Pool, RbdError};

use crate::layout::{
    ReadMode, ReadPlan, SegmentContent, assemble, data_runs, full_plan, incremental_plan, segment_len,
};
use crate::{TakenAt, VOLUME_CHUNKS, VOLUME_PATH, VolumeError, blocking, snap_name};

/// The smallest segment: RBD's default object size. Images with larger objects use theirs.
const MIN_SEGMENT: u64 = 4 << 20;
/// The largest segment (RBD allows 32 MiB objects).
const MAX_SEGMENT: u64 = 32 << 20;

/// One RBD image to back up. Built by [`crate::backup_volume`], which waits for the old base
/// snapshots' removal (started once the changed extents are known) before it returns.
pub struct RbdVolume {
    pub(crate) cluster: Cluster,
    pub(crate) pool: String,
    pub(crate) image: String,
    pub(crate) fsid: String,
    pub(crate) image_id: String,
    /// RBD snapshots this repository made are named `<prefix><time>`.
    pub(crate) snap_prefix: String,
    pub(crate) workers: usize,
    /// Read everything even when an incremental is possible.
    pub(crate) force_full: bool,
    /// Read at this group snapshot member instead of snapshotting the image.
    pub(crate) at: Option<TakenAt>,
    /// The RBD snapshot this backup made (removed again if the backup fails).
    pub(crate) created: Option<String>,
    /// Why the read was full, when it was (for the caller's report).
    pub(crate) full_reason: Option<String>,
    /// The removal of this repository's older RBD snapshots of the image, started as soon as
    /// the new one is diffed (they are not needed after that): each is a monitor update that
    /// waits for Ceph's next paxos proposal (up to `paxos_propose_interval`, 1 s by default), so
    /// it runs beside the read instead of after it. Its result: warnings for those left.
    pub(crate) retiring: Option<tokio::task::JoinHandle<Vec<String>>>,
}

impl RbdVolume {
    fn segment_size(object_size: u64) -> u64 {
        object_size.clamp(MIN_SEGMENT, MAX_SEGMENT)
    }
}

impl Source for RbdVolume {
    type Error = VolumeError;

    fn source_id(&self) -> String {
        format!("rbd:{}/{}/{}", self.fsid, self.pool, self.image)
    }

    fn purpose(&self) -> &'static str {
        "volume backup"
    }

    async fn parent(&self, repo: &IndexedRepository) -> Result<Option<Snapshot>, VolumeError> {
        let source = self.source_id();
        Ok(repo
            .snapshots()
            .await?
            .into_iter()
            .rfind(|s| matches!(s.details, SnapshotDetails::Volume(_)) && s.source == source))
    }

    async fn write(&mut self, writer: &Writer<'_>) -> Result<Written, VolumeError> {
        let base = match writer.parent().map(|p| &p.details) {
            Some(SnapshotDetails::Volume(d)) => Some(d.clone()),
            _ => None,
        };
        let keep = base.as_ref().map(|b| b.rbd_snapshot.clone());
        // `name` is the next base; `read_at` the snapshot read (the same one without a point).
        let (name, read_at, snap_id, existing, object_size, size) = match self.at.clone() {
            None => {
                let name = snap_name(&self.snap_prefix, writer.time());
                let this = self.handle();
                let made = name.clone();
                let (id, existing, object_size, size) =
                    blocking(move || this.snapshot_image(keep.as_deref(), &made)).await?;
                (name.clone(), ReadAt::Name(name), id, existing, object_size, size)
            }
            Some(at) => {
                let this = self.handle();
                let pre_base = at.base.clone();
                let (existing, object_size) =
                    blocking(move || this.prepare_at(keep.as_deref(), &pre_base)).await?;
                (
                    at.base,
                    ReadAt::Id(at.member_id),
                    at.base_id,
                    existing,
                    object_size,
                    at.size,
                )
            }
        };
        self.created = Some(name.clone());
        let segment_size = Self::segment_size(object_size);

        // The parent is a valid base only if its RBD snapshot is still the one it read.
        let usable = base.as_ref().and_then(|b| {
            let why = if self.force_full {
                Some("a full read was asked for".to_string())
            } else if b.image_id != self.image_id {
                Some(format!(
                    "the image was re-created (id {} → {})",
                    b.image_id, self.image_id
                ))
            } else if b.size != size {
                Some(format!("the image was resized ({} → {size} bytes)", b.size))
            } else if b.segment_size != segment_size {
                Some("the segment size changed".to_string())
            } else if !existing
                .iter()
                .any(|s| s.name == b.rbd_snapshot && s.id == b.rbd_snapshot_id)
            {
                Some(format!("the base RBD snapshot {} is gone", b.rbd_snapshot))
            } else if !existing
                .iter()
                .any(|s| s.name == b.rbd_snapshot && s.size == b.size)
            {
                // A group point's pre-base is taken a moment before the point read.
                Some(format!(
                    "the base RBD snapshot {} is not of the size read",
                    b.rbd_snapshot
                ))
            } else {
                None
            };
            self.full_reason = why;
            self.full_reason.is_none().then(|| b.rbd_snapshot.clone())
        });
        if base.is_none() {
            self.full_reason = Some("no earlier backup of this image".to_string());
        }

        let parent_node = match &usable {
            Some(_) => writer
                .parent_tree()
                .await?
                .and_then(|nodes| nodes.into_iter().find(|n| n.kind == NodeKind::Volume)),
            None => None,
        };
        let (plan, mode) = {
            let this = self.handle();
            let snap = read_at.clone();
            let from = usable.clone();
            let diff = blocking(move || {
                let pool = this.cluster.pool(&this.pool)?;
                let img = open_at(&pool, &this.image, &snap)?;
                Ok::<_, VolumeError>(img.changed_extents(from.as_deref())?)
            })
            .await?;
            match parent_node
                .as_ref()
                .map(|p| incremental_plan(&diff, p, size, segment_size, |b| writer.is_indexed(b)))
            {
                Some(Ok(plan)) => (plan, ReadMode::Incremental),
                other => {
                    if let Some(Err(why)) = other {
                        self.full_reason = Some(format!("the parent's volume node cannot be reused: {why}"));
                    } else if usable.is_some() {
                        self.full_reason = Some("the parent snapshot holds no volume node".to_string());
                    }
                    let allocated = if usable.is_some() {
                        let this = self.handle();
                        let snap = read_at.clone();
                        blocking(move || {
                            let pool = this.cluster.pool(&this.pool)?;
                            let img = open_at(&pool, &this.image, &snap)?;
                            Ok::<_, VolumeError>(img.changed_extents(None)?)
                        })
                        .await?
                    } else {
                        diff
                    };
                    (full_plan(&allocated, size, segment_size), ReadMode::Full)
                }
            }
        };
        if let Some(why) = &self.full_reason {
            tracing::info!(pool = %self.pool, image = %self.image, reason = %why, "full read");
        }
        // The new snapshot is the next base whatever happens now: if this backup fails it is
        // removed too, and the next backup reads in full (never a wrong incremental).
        self.retiring = Some(tokio::task::spawn_blocking({
            let this = self.handle();
            let keep = name.clone();
            move || this.retire_snapshots(&keep)
        }));

        let read_bytes = plan.read_bytes(size, segment_size);
        let progress = writer.progress().clone();
        progress.add_total(read_bytes, 1);
        let ReadPlan { read, reused } = plan;
        let sinks: Vec<BlobSink> = (0..self.workers.max(1)).map(|_| writer.sink()).collect();
        let job = ReadJob {
            volume: self.handle(),
            snapshot: read_at,
            segments: read,
            size,
            segment_size,
            progress: progress.clone(),
        };
        let mut segments = blocking(move || job.run(sinks)).await?;
        segments.extend(reused);
        let SegmentContent { extents, chunks } = assemble(segments);
        progress.add_done(0, 1);

        let stored: u64 = extents.iter().map(|e| e.length).sum();
        let mut node = Node::stream(VOLUME_PATH, size, chunks, writer.time());
        node.kind = NodeKind::Volume;
        node.extents = extents;
        Ok(Written {
            nodes: vec![node],
            details: SnapshotDetails::Volume(VolumeImage {
                cluster_fsid: self.fsid.clone(),
                pool: self.pool.clone(),
                image: self.image.clone(),
                image_id: self.image_id.clone(),
                rbd_snapshot: name,
                rbd_snapshot_id: snap_id,
                size,
                segment_size,
                read: mode.as_str().to_string(),
                read_bytes,
            }),
            paths: vec![format!("{}/{}", self.pool, self.image)],
            summary: Summary {
                files: 1,
                bytes: stored,
                files_read: u64::from(read_bytes > 0),
                ..Summary::default()
            },
        })
    }
}

impl RbdVolume {
    fn handle(&self) -> RbdVolumeRef {
        RbdVolumeRef {
            cluster: self.cluster.clone(),
            pool: self.pool.clone(),
            image: self.image.clone(),
            snap_prefix: self.snap_prefix.clone(),
        }
    }
}

/// The snapshot a backup reads: its own user snapshot, or a group snapshot member (by id).
#[derive(Debug, Clone)]
enum ReadAt {
    Name(String),
    Id(u64),
}

impl std::fmt::Display for ReadAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadAt::Name(name) => f.write_str(name),
            ReadAt::Id(id) => write!(f, "group snapshot member {id}"),
        }
    }
}

/// Opens `image` read-only at snapshot `at`.
fn open_at<'p>(pool: &'p Pool, image: &str, at: &ReadAt) -> Result<Image<'p>, RbdError> {
    match at {
        ReadAt::Name(name) => pool.open_read_only(image, Some(name)),
        ReadAt::Id(id) => {
            let mut img = pool.open_read_only(image, None)?;
            img.set_snapshot_by_id(*id)?;
            Ok(img)
        }
    }
}

/// The parts of [`RbdVolume`] a blocking task needs.
#[derive(Clone)]
struct RbdVolumeRef {
    cluster: Cluster,
    pool: String,
    image: String,
    snap_prefix: String,
}

impl RbdVolumeRef {
    /// Removes this repository's RBD snapshots of the image other than `keep` (the new
    /// base); returns a warning for each that could not be removed.
    fn retire_snapshots(&self, keep: &str) -> Vec<String> {
        let (pool, image) = (&self.pool, &self.image);
        let retired = (|| {
            let p = self.cluster.pool(pool)?;
            let mut img = p.open(image, None)?;
            let mut warnings = Vec::new();
            for s in img.snapshots()? {
                if s.name.starts_with(&self.snap_prefix)
                    && s.name != keep
                    && let Err(e) = img.remove_snapshot(&s.name)
                {
                    warnings.push(format!(
                        "old base snapshot {pool}/{image}@{} not removed: {e}",
                        s.name
                    ));
                }
            }
            Ok::<_, VolumeError>(warnings)
        })();
        retired.unwrap_or_else(|e| vec![format!("old base snapshots not removed: {e}")])
    }

    /// For a backup at a group point: removes this repository's RBD snapshots of the image
    /// other than `keep` and the point's `pre_base`; returns the image's snapshots and object
    /// size.
    fn prepare_at(
        &self,
        keep: Option<&str>,
        pre_base: &str,
    ) -> Result<(Vec<lifeboat_rbd::Snapshot>, u64), VolumeError> {
        let pool = self.cluster.pool(&self.pool)?;
        let mut img = self.open(&pool)?;
        let before = img.snapshots()?;
        self.remove_strays(&mut img, &before, &[keep, Some(pre_base)])?;
        Ok((before, img.info()?.object_size))
    }

    fn open<'p>(&self, pool: &'p Pool) -> Result<Image<'p>, VolumeError> {
        pool.open(&self.image, None).map_err(|e| {
            if e.is_not_found() {
                VolumeError::ImageNotFound {
                    pool: self.pool.clone(),
                    image: self.image.clone(),
                }
            } else {
                e.into()
            }
        })
    }

    /// Removes this repository's RBD snapshots in `snaps` other than `keep` (left by a backup
    /// that was killed).
    fn remove_strays(
        &self,
        img: &mut Image<'_>,
        snaps: &[lifeboat_rbd::Snapshot],
        keep: &[Option<&str>],
    ) -> Result<(), VolumeError> {
        for stray in snaps
            .iter()
            .filter(|s| s.name.starts_with(&self.snap_prefix) && !keep.contains(&Some(s.name.as_str())))
        {
            tracing::info!(pool = %self.pool, image = %self.image, snapshot = %stray.name, "removing a stray RBD snapshot of an unfinished backup");
            img.remove_snapshot(&stray.name)?;
        }
        Ok(())
    }

    /// Removes this repository's RBD snapshots of the image other than `keep` (left by a
    /// backup that was killed), creates snapshot `name`, and returns its id, the image's
    /// snapshots before, the object size and the image size at the snapshot.
    fn snapshot_image(
        &self,
        keep: Option<&str>,
        name: &str,
    ) -> Result<(u64, Vec<lifeboat_rbd::Snapshot>, u64, u64), VolumeError> {
        let pool = self.cluster.pool(&self.pool)?;
        let mut img = self.open(&pool)?;
        let before = img.snapshots()?;
        self.remove_strays(&mut img, &before, &[keep])?;
        img.create_snapshot(name)?;
        let after = img.snapshots()?;
        let made = after
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| VolumeError::Task(format!("snapshot {name} vanished after it was created")))?;
        let info = img.info()?;
        Ok((made.id, before, info.object_size, made.size))
    }
}

/// Reads segments of one RBD snapshot on several threads and stores their data runs.
struct ReadJob {
    volume: RbdVolumeRef,
    snapshot: ReadAt,
    segments: Vec<u64>,
    size: u64,
    segment_size: u64,
    progress: Arc<Progress>,
}

impl ReadJob {
    fn run(self, sinks: Vec<BlobSink>) -> Result<BTreeMap<u64, SegmentContent>, VolumeError> {
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let done: Mutex<BTreeMap<u64, SegmentContent>> = Mutex::new(BTreeMap::new());
        let results: Vec<Result<(), VolumeError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = sinks
                .into_iter()
                .map(|sink| scope.spawn(|| self.worker(sink, &next, &failed, &done)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(VolumeError::Task("a read worker panicked".to_string())))
                })
                .collect()
        });
        results.into_iter().collect::<Result<Vec<()>, _>>()?;
        Ok(done.into_inner().unwrap_or_else(|p| p.into_inner()))
    }

    fn worker(
        &self,
        mut sink: BlobSink,
        next: &AtomicUsize,
        failed: &AtomicBool,
        done: &Mutex<BTreeMap<u64, SegmentContent>>,
    ) -> Result<(), VolumeError> {
        let result = (|| {
            let pool = self.volume.cluster.pool(&self.volume.pool)?;
            let img = open_at(&pool, &self.volume.image, &self.snapshot)?;
            let mut buf = vec![0u8; self.segment_size as usize];
            while !failed.load(Ordering::Relaxed) {
                let Some(&segment) = self.segments.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    break;
                };
                let start = segment * self.segment_size;
                let len = segment_len(segment, self.size, self.segment_size) as usize;
                let data = &mut buf[..len];
                let mut filled = 0;
                while filled < len {
                    let n = img.read_at(start + filled as u64, &mut data[filled..])?;
                    if n == 0 {
                        return Err(VolumeError::Task(format!(
                            "{}/{}@{}: read at {} returned no data before the image's end",
                            self.volume.pool,
                            self.volume.image,
                            self.snapshot,
                            start + filled as u64
                        )));
                    }
                    filled += n;
                }
                let mut content = SegmentContent::default();
                for (offset, length) in data_runs(data) {
                    let ids = sink.put_chunked(&data[offset..offset + length], VOLUME_CHUNKS)?;
                    content.extents.push(VolumeExtent {
                        offset: start + offset as u64,
                        length: length as u64,
                        chunks: ids.len() as u32,
                    });
                    content.chunks.extend(ids);
                }
                done.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(segment, content);
                self.progress.add_done(len as u64, 0);
            }
            sink.finish()?;
            Ok(())
        })();
        if result.is_err() {
            failed.store(true, Ordering::Relaxed);
        }
        result
    }
}
