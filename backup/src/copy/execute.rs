//! Carrying out a [`CopyPlan`]: keys and config, then packs in parallel with an index file
//! after every few, and each snapshot manifest as soon as everything it needs is stored and
//! indexed at the destination.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::Utc;
use futures::StreamExt;

use super::bandwidth::Bandwidth;
use super::survey::{Prepared, release};
use super::transfer::{self, TransferError, Writer};
use super::{CopyError, CopyOptions, CopyReport, SnapshotStamp};
use crate::blob::{Id, PackId, SnapshotId};
use crate::index::{IndexFile, IndexPack, index_key};
use crate::pack::pack_key;
use crate::progress::Progress;
use crate::repository::object_io::{open_json, seal_json};
use crate::repository::{LockGuard, LockKind, Repository};
use crate::snapshot::{Snapshot, snapshot_key};
use crate::store::ObjectLock;
use crate::store::object_lock::Retention;

/// An index file is written after this many packs arrive (and whenever a snapshot's last
/// pack does), so a killed copy leaves few stored-but-unindexed packs, and those are only
/// indexed, not sent again, when it resumes.
const PACKS_PER_INDEX: usize = 8;

/// Applies `prepared.plan`, then releases the locks the survey took.
pub async fn execute(
    source: &Repository,
    mut prepared: Prepared,
    options: &CopyOptions,
    progress: Arc<Progress>,
) -> Result<CopyReport, CopyError> {
    let mut locks = prepared.take_locks();
    let result = run(source, prepared, options, progress, &mut locks).await;
    release(locks).await;
    result
}

/// Extends the retention of what a new snapshot reuses at the destination, once per object.
struct Extender {
    lock: Arc<ObjectLock>,
    target: Retention,
    done: HashSet<String>,
    /// Destination index files listing each pack that was there before the copy.
    listed_in: HashMap<PackId, Vec<String>>,
    extended: usize,
}

impl Extender {
    async fn ensure(&mut self, key: &str) -> Result<(), CopyError> {
        if !self.done.insert(key.to_string()) {
            return Ok(());
        }
        let current = self.lock.retention(key).await?;
        if current.is_some_and(|r| r.until >= self.target.until) {
            return Ok(());
        }
        let mode = match current {
            // Compliance cannot be turned back into governance; keep the stronger mode.
            Some(r) if r.mode == crate::store::LockMode::Compliance => r.mode,
            _ => self.target.mode,
        };
        let retention = Retention {
            mode,
            until: self.target.until,
        };
        self.lock.extend(key, &retention).await?;
        self.extended += 1;
        Ok(())
    }
}

/// The copy's moving parts between steps.
struct Run<'a> {
    source: &'a Repository,
    prepared: Prepared,
    writer: Writer,
    extender: Option<Extender>,
    report: CopyReport,
    /// Packs arrived (sent or found) but not yet in an index file.
    pending: Vec<IndexPack>,
    /// Per snapshot still to publish: packs it still waits for.
    waiting: HashMap<SnapshotId, usize>,
    needed_by: HashMap<PackId, Vec<SnapshotId>>,
    /// Snapshots whose packs have all arrived, to publish after the next index file.
    ready: Vec<SnapshotId>,
}

impl Run<'_> {
    /// Marks `pack` arrived; true if a snapshot now has all it needs.
    fn arrived(&mut self, pack: PackId) -> bool {
        if let Some(entry) = self.prepared.source_packs.get(&pack) {
            self.pending.push(entry.clone());
        }
        let mut any = false;
        for s in self.needed_by.get(&pack).into_iter().flatten() {
            if let Some(n) = self.waiting.get_mut(s) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.waiting.remove(s);
                    self.ready.push(*s);
                    any = true;
                }
            }
        }
        any
    }

    /// Records a pack that failed its checks; the snapshots needing it are not copied.
    fn damaged(&mut self, pack: PackId, why: String) {
        let key = pack_key(&pack);
        for s in self.needed_by.get(&pack).into_iter().flatten() {
            if self.waiting.remove(s).is_some() {
                self.report
                    .skipped
                    .insert(s.to_hex(), format!("needs pack {key}, which {why}"));
            }
        }
        self.report.damaged.insert(key, why);
    }

    /// Writes an index file for the pending packs, then publishes the snapshots now ready.
    async fn flush(&mut self) -> Result<(), CopyError> {
        if !self.pending.is_empty() {
            let file = IndexFile {
                packs: std::mem::take(&mut self.pending),
            };
            let bytes = seal_json(self.source.key(), "index", &file)?;
            let key = index_key(&Id::of(&bytes));
            self.writer.put(&key, vec![bytes.into()]).await.map_err(fatal)?;
            self.report.index_files_written += 1;
            if let Some(x) = &mut self.extender {
                x.done.insert(key);
            }
        }
        let ready = std::mem::take(&mut self.ready);
        for id in ready {
            self.publish(id).await?;
        }
        Ok(())
    }

    /// Writes snapshot `id`'s manifest, as the source holds it, after extending the retention
    /// of what it reuses.
    async fn publish(&mut self, id: SnapshotId) -> Result<(), CopyError> {
        if let Some(x) = &mut self.extender {
            // Packs it reuses, and packs an earlier (interrupted) copy stored: neither was
            // written with this copy's retention. Packs this copy sent are `done` already.
            let depends: Vec<PackId> = self
                .prepared
                .plan
                .snapshots
                .iter()
                .find(|s| s.id == id)
                .map(|s| s.reused.iter().chain(&s.packs).copied().collect())
                .unwrap_or_default();
            for pack in depends {
                x.ensure(&pack_key(&pack)).await?;
                for file in x.listed_in.get(&pack).cloned().unwrap_or_default() {
                    x.ensure(&file).await?;
                }
            }
        }
        let key = snapshot_key(&id);
        let bytes = self.source.objects().get(&key).await?;
        // Decrypting proves the manifest is intact (age authenticates it) before it is copied.
        let _: Snapshot = open_json(self.source.key(), &key, &bytes)?;
        self.writer.put(&key, vec![bytes]).await.map_err(fatal)?;
        self.report.snapshots_copied.push(id);
        Ok(())
    }
}

fn fatal(e: TransferError) -> CopyError {
    match e {
        TransferError::Failed(e) => e,
        TransferError::Damaged(why) => CopyError::Repo(crate::repository::RepoError::Corrupt {
            object: "copy".to_string(),
            message: why,
        }),
    }
}

async fn run(
    source: &Repository,
    prepared: Prepared,
    options: &CopyOptions,
    progress: Arc<Progress>,
    locks: &mut Vec<LockGuard>,
) -> Result<CopyReport, CopyError> {
    let retention = options.object_lock.map(|s| s.retention(Utc::now()));
    let lock = match (retention, prepared.replica.object_lock()) {
        (None, _) => None,
        (Some(r), Some(l)) => Some((l.clone(), r)),
        (Some(_), None) => {
            return Err(CopyError::LockUnavailable {
                destination: prepared.replica.url().to_string(),
                support: "the destination is not an S3 store with static credentials".to_string(),
            });
        }
    };
    let writer = Writer {
        objects: prepared.destination.clone(),
        lock: lock.clone(),
    };
    let plan = prepared.plan.clone();
    let extender = lock.map(|(lock, target)| {
        let mut listed_in: HashMap<PackId, Vec<String>> = HashMap::new();
        for (file, packs) in &prepared.destination_index_files {
            for p in packs {
                listed_in.entry(*p).or_default().push(file.clone());
            }
        }
        Extender {
            lock,
            target,
            done: HashSet::new(),
            listed_in,
            extended: 0,
        }
    });
    let mut needed_by: HashMap<PackId, Vec<SnapshotId>> = HashMap::new();
    for s in &plan.snapshots {
        for p in &s.packs {
            needed_by.entry(*p).or_default().push(s.id);
        }
    }
    let report = CopyReport {
        source: plan.source.clone(),
        destination: plan.destination.clone(),
        created: plan.create_repository,
        retention,
        skipped: plan.skipped.clone(),
        snapshots_present: plan.present.len(),
        ..CopyReport::default()
    };
    let mut run = Run {
        source,
        writer,
        extender,
        report,
        pending: Vec::new(),
        waiting: plan.snapshots.iter().map(|s| (s.id, s.packs.len())).collect(),
        ready: plan
            .snapshots
            .iter()
            .filter(|s| s.packs.is_empty())
            .map(|s| s.id)
            .collect(),
        needed_by,
        prepared,
    };
    run.waiting.retain(|_, n| *n > 0);
    progress.add_total(plan.bytes, plan.transfer.len() as u64);

    // 1. Key files, then the config that makes the destination a repository.
    for key in &plan.keys {
        let bytes = source.objects().get(key).await?;
        run.writer.put(key, vec![bytes]).await.map_err(fatal)?;
        run.report.keys_copied += 1;
    }
    if plan.create_repository {
        let bytes = source.objects().get("config").await?;
        run.writer.put("config", vec![bytes]).await.map_err(fatal)?;
        locks.push(
            run.prepared
                .replica
                .lock(LockKind::Shared, &format!("copy from {}", source.url()))
                .await?,
        );
    }
    if let Some(x) = &mut run.extender {
        // What this copy writes gets the target retention already; what it reuses does not.
        x.done.extend(plan.keys.iter().cloned());
        x.done.extend(plan.transfer.iter().map(|t| pack_key(&t.id)));
        for key in run
            .prepared
            .destination_keys
            .clone()
            .iter()
            .chain(["config".to_string()].iter())
        {
            if !plan.create_repository || key != "config" {
                x.ensure(key).await?;
            }
        }
        x.done.insert("config".to_string());
    }

    // 2. Packs an interrupted copy left unindexed: index them now.
    for pack in &plan.index_only {
        run.arrived(*pack);
        run.report.packs_indexed += 1;
    }
    run.flush().await?;

    // 3. Packs, with an index file every few and snapshots as they become complete.
    let source_objects = source.objects();
    let limit = options.bandwidth.map(Bandwidth::new);
    let writer = run.writer.clone();
    let mut transfers = futures::stream::iter(plan.transfer.iter().copied())
        .map(|t| {
            let (src, writer, limit, progress) = (&source_objects, &writer, limit.as_ref(), &*progress);
            async move {
                (
                    t,
                    transfer::pack(src, writer, t.id, t.size, limit, progress).await,
                )
            }
        })
        .buffer_unordered(options.parallelism.max(1));
    while let Some((t, result)) = transfers.next().await {
        match result {
            Ok(()) => {
                run.report.packs_copied += 1;
                run.report.bytes_copied += t.size;
                let completes = run.arrived(t.id);
                if completes || run.pending.len() >= PACKS_PER_INDEX {
                    run.flush().await?;
                }
            }
            Err(TransferError::Damaged(why)) => {
                tracing::warn!("pack {} not copied: {why}", pack_key(&t.id));
                run.damaged(t.id, why);
            }
            Err(TransferError::Failed(e)) => return Err(e),
        }
    }
    drop(transfers);
    run.flush().await?;

    // The newest selected snapshot the destination now holds: its age is the RPO.
    let copied: HashSet<SnapshotId> = run.report.snapshots_copied.iter().copied().collect();
    run.report.newest = plan
        .present
        .iter()
        .chain(copied.iter())
        .filter_map(|id| {
            run.prepared
                .times
                .get(id)
                .map(|t| SnapshotStamp { id: *id, time: *t })
        })
        .max_by_key(|s| s.time);
    if let Some(x) = &run.extender {
        run.report.retention_extended = x.extended;
    }
    run.report.destination_snapshots = run.prepared.destination_snapshots + run.report.snapshots_copied.len();
    Ok(run.report)
}
