//! What a copy will do, decided from what the source holds and the destination lacks. Pure:
//! the survey feeds it one snapshot at a time (so only one snapshot's blob list is in memory),
//! and tests drive it with hand-made indexes.
//!
//! Rules, per blob a selected snapshot needs:
//! - already indexed at the destination, in a pack that is stored there: nothing to send (the
//!   pack is *reused*; with object lock, its retention is extended to cover the snapshot);
//! - else its source pack is sent, unless that pack already sits at the destination with the
//!   right size but no index lists it (a copy killed between the pack and its index file):
//!   then it is only indexed. Pack names are the BLAKE3 hash of their bytes and every store
//!   publishes objects whole, so an object under that name with that size is that pack;
//! - a blob the source index does not know, or a pack at the destination whose size differs
//!   from the source's, keeps the snapshot from being copied (reported, never guessed at).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use crate::blob::{BlobId, PackId, SnapshotId};
use crate::index::Index;
use crate::pack::pack_key;
use crate::snapshot::Snapshot;

/// Which snapshots to copy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Selection {
    /// Every snapshot.
    #[default]
    All,
    /// These snapshots: full ids, unique prefixes, or `latest`.
    Snapshots(Vec<String>),
    /// Snapshots carrying every one of these tags.
    Tags(BTreeMap<String, String>),
    /// Exactly these snapshots (chosen by the caller, e.g. by a destination's retention);
    /// ids the source does not hold are ignored.
    Ids(Vec<SnapshotId>),
}

/// A snapshot named for a copy that the source does not hold exactly once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    /// An empty id was given.
    #[error("an empty snapshot id was given; pass an id, a unique prefix of one, or latest")]
    Empty,
    /// No snapshot has this id or prefix.
    #[error("no snapshot {0} in the source")]
    NotFound(String),
    /// Several snapshots start with this prefix.
    #[error("snapshot prefix {0} matches several snapshots; give more digits")]
    Ambiguous(String),
}

impl Selection {
    /// The ids of the snapshots selected from `snapshots`; an error names a snapshot id that
    /// matches nothing or several.
    pub fn select(&self, snapshots: &[Snapshot]) -> Result<Vec<SnapshotId>, SelectError> {
        let ids = |it: &mut dyn Iterator<Item = &Snapshot>| it.filter_map(|s| s.id).collect::<Vec<_>>();
        match self {
            Self::All => Ok(ids(&mut snapshots.iter())),
            Self::Ids(wanted) => {
                let wanted: BTreeSet<&SnapshotId> = wanted.iter().collect();
                Ok(ids(&mut snapshots
                    .iter()
                    .filter(|s| s.id.is_some_and(|id| wanted.contains(&id)))))
            }
            Self::Tags(tags) => Ok(ids(&mut snapshots
                .iter()
                .filter(|s| tags.iter().all(|(k, v)| s.tags.get(k) == Some(v))))),
            Self::Snapshots(wanted) => {
                let mut out = Vec::new();
                for w in wanted {
                    if w.is_empty() {
                        return Err(SelectError::Empty);
                    }
                    let found: Vec<SnapshotId> = if w == "latest" {
                        snapshots
                            .iter()
                            .max_by_key(|s| s.time)
                            .and_then(|s| s.id)
                            .into_iter()
                            .collect()
                    } else {
                        snapshots
                            .iter()
                            .filter_map(|s| s.id)
                            .filter(|id| !w.is_empty() && id.to_hex().starts_with(w.as_str()))
                            .collect()
                    };
                    match found.as_slice() {
                        [id] => out.push(*id),
                        [] => return Err(SelectError::NotFound(w.clone())),
                        _ => return Err(SelectError::Ambiguous(w.clone())),
                    }
                }
                out.sort();
                out.dedup();
                Ok(out)
            }
        }
    }
}

/// One pack to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PackTransfer {
    /// The pack.
    pub id: PackId,
    /// Its size in bytes (checked while it streams).
    pub size: u64,
}

/// One snapshot to publish at the destination, once the packs it waits for are indexed there.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SnapshotCopy {
    /// The snapshot (the same id at the destination).
    pub id: SnapshotId,
    /// When it was taken.
    pub time: DateTime<Utc>,
    /// Packs new to the destination (sent or only indexed) that it needs.
    #[serde(skip)]
    pub packs: Vec<PackId>,
    /// Packs already at the destination that it needs.
    #[serde(skip)]
    pub reused: Vec<PackId>,
    /// How many packs it waits for.
    pub new_packs: usize,
    /// How many packs it shares with what the destination already holds.
    pub reused_packs: usize,
}

/// What copying will do. `--dry-run` prints it; the executor applies it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CopyPlan {
    /// The source repository.
    pub source: String,
    /// The destination.
    pub destination: String,
    /// The destination holds no repository yet: key files, then `config`, are written first.
    pub create_repository: bool,
    /// Key objects (`keys/<id>`) to copy.
    pub keys: Vec<String>,
    /// Packs to send, in the order the snapshots need them.
    pub transfer: Vec<PackTransfer>,
    /// Packs already stored at the destination that no index lists there: indexed, not sent.
    pub index_only: Vec<PackId>,
    /// Snapshots to copy, oldest first.
    pub snapshots: Vec<SnapshotCopy>,
    /// Selected snapshots the destination already holds.
    pub present: Vec<SnapshotId>,
    /// Selected snapshots that will not be copied, and why.
    pub skipped: BTreeMap<String, String>,
    /// Bytes to send.
    pub bytes: u64,
}

impl CopyPlan {
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        !self.create_repository
            && self.keys.is_empty()
            && self.snapshots.is_empty()
            && self.index_only.is_empty()
    }
}

/// What the destination holds, as the planner needs it.
#[derive(Debug, Default)]
pub struct DestinationState {
    /// Its index (empty for a new destination).
    pub index: Index,
    /// Pack objects stored there: key → size.
    pub stored: HashMap<String, u64>,
}

/// Source pack sizes, by id.
pub type PackSizes = HashMap<PackId, u64>;

/// Builds a [`CopyPlan`] one snapshot at a time.
pub struct PlanBuilder<'a> {
    source: &'a Index,
    sizes: &'a PackSizes,
    destination: &'a DestinationState,
    plan: CopyPlan,
    /// Decisions per source pack: `Ok(true)` send, `Ok(false)` index only, `Err` conflict.
    decided: HashMap<PackId, Result<bool, String>>,
}

impl<'a> PlanBuilder<'a> {
    /// Starts a plan from `source` (its index and pack sizes) to `destination`.
    pub fn new(
        source: &'a Index,
        sizes: &'a PackSizes,
        destination: &'a DestinationState,
        plan: CopyPlan,
    ) -> Self {
        Self {
            source,
            sizes,
            destination,
            plan,
            decided: HashMap::new(),
        }
    }

    /// Records a selected snapshot the destination already holds.
    pub fn present(&mut self, id: SnapshotId) {
        self.plan.present.push(id);
    }

    /// Records a selected snapshot that cannot be copied.
    pub fn skip(&mut self, id: SnapshotId, why: String) {
        self.plan.skipped.insert(id.to_hex(), why);
    }

    fn decide(&mut self, pack: PackId) -> Result<bool, String> {
        if let Some(d) = self.decided.get(&pack) {
            return d.clone();
        }
        let key = pack_key(&pack);
        let size = self.sizes.get(&pack).copied().unwrap_or(0);
        let decision = match self.destination.stored.get(&key) {
            None => {
                self.plan.transfer.push(PackTransfer { id: pack, size });
                self.plan.bytes += size;
                Ok(true)
            }
            Some(&there) if there == size => {
                self.plan.index_only.push(pack);
                Ok(false)
            }
            Some(&there) => Err(format!(
                "pack {key} at the destination is {there} bytes, the source's is {size}: the destination's \
                 copy is damaged; check the destination repository and delete that object"
            )),
        };
        self.decided.insert(pack, decision.clone());
        decision
    }

    /// Adds snapshot `id`, taken at `time`, which needs `blobs` (tree blobs and file chunks).
    pub fn add(&mut self, id: SnapshotId, time: DateTime<Utc>, blobs: impl IntoIterator<Item = BlobId>) {
        let mut packs = BTreeSet::new();
        let mut reused = BTreeSet::new();
        for blob in blobs {
            if let Some(at) = self.destination.index.get(&blob)
                && self.destination.stored.contains_key(&pack_key(&at.pack))
            {
                reused.insert(at.pack);
                continue;
            }
            match self.source.get(&blob) {
                Some(at) => {
                    packs.insert(at.pack);
                }
                None => {
                    self.skip(
                        id,
                        format!(
                            "blob {} is not in the source's index (the source is damaged; check it)",
                            blob.short()
                        ),
                    );
                    return;
                }
            }
        }
        for pack in &packs {
            if let Err(why) = self.decide(*pack) {
                self.skip(id, why);
                return;
            }
        }
        self.plan.snapshots.push(SnapshotCopy {
            id,
            time,
            new_packs: packs.len(),
            reused_packs: reused.len(),
            packs: packs.into_iter().collect(),
            reused: reused.into_iter().collect(),
        });
    }

    /// The plan, snapshots oldest first.
    pub fn finish(mut self) -> CopyPlan {
        self.plan.snapshots.sort_by_key(|s| (s.time, s.id));
        self.plan.present.sort();
        self.plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::BlobKind;
    use crate::index::{IndexFile, IndexPack};
    use crate::pack::PackedBlob;
    use chrono::TimeZone;

    fn blob(n: u8) -> BlobId {
        BlobId::of(&[n])
    }

    fn pack(n: u8) -> PackId {
        PackId::of(&[n, 0xff])
    }

    /// An index with pack `p` holding blobs `bs`, for each (p, bs).
    fn index(packs: &[(u8, &[u8])]) -> (Index, PackSizes) {
        let file = IndexFile {
            packs: packs
                .iter()
                .map(|(p, bs)| IndexPack {
                    id: pack(*p),
                    kind: BlobKind::Data,
                    size: 1000 + u64::from(*p),
                    blobs: bs
                        .iter()
                        .map(|b| PackedBlob {
                            id: blob(*b),
                            offset: 0,
                            length: 1,
                            raw_length: 1,
                        })
                        .collect(),
                })
                .collect(),
        };
        let sizes = file.packs.iter().map(|p| (p.id, p.size)).collect();
        (Index::from_files([&file]), sizes)
    }

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, h, 0, 0).unwrap()
    }

    #[test]
    fn sends_what_the_destination_lacks_and_indexes_what_an_interrupted_copy_left() {
        let (src, sizes) = index(&[(1, &[1, 2]), (2, &[3]), (3, &[4]), (4, &[5])]);
        // The destination has pack 1 indexed, pack 2 stored but unindexed, pack 3 stored
        // with the wrong size.
        let (dst_index, _) = index(&[(1, &[1, 2])]);
        let destination = DestinationState {
            index: dst_index,
            stored: [
                (pack_key(&pack(1)), 1001),
                (pack_key(&pack(2)), 1002),
                (pack_key(&pack(3)), 7),
            ]
            .into(),
        };
        let mut b = PlanBuilder::new(&src, &sizes, &destination, CopyPlan::default());
        let (s1, s2, s3, s4) = (
            SnapshotId::of(b"1"),
            SnapshotId::of(b"2"),
            SnapshotId::of(b"3"),
            SnapshotId::of(b"4"),
        );
        b.add(s2, at(2), [blob(1), blob(3), blob(5)]);
        b.add(s1, at(1), [blob(1), blob(2)]);
        b.add(s3, at(3), [blob(4)]);
        b.add(s4, at(4), [blob(9)]);
        let plan = b.finish();
        assert_eq!(
            plan.transfer,
            [PackTransfer {
                id: pack(4),
                size: 1004
            }]
        );
        assert_eq!(plan.bytes, 1004);
        assert_eq!(plan.index_only, [pack(2)]);
        let order: Vec<_> = plan.snapshots.iter().map(|s| s.id).collect();
        assert_eq!(order, [s1, s2], "oldest first");
        assert_eq!(plan.snapshots[0].packs, Vec::<PackId>::new());
        assert_eq!(plan.snapshots[0].reused, [pack(1)]);
        let mut waits = plan.snapshots[1].packs.clone();
        waits.sort();
        let mut expected = vec![pack(2), pack(4)];
        expected.sort();
        assert_eq!(waits, expected);
        assert!(
            plan.skipped[&s3.to_hex()].contains("damaged"),
            "{:?}",
            plan.skipped
        );
        assert!(plan.skipped[&s4.to_hex()].contains("not in the source's index"));
    }

    #[test]
    fn an_indexed_pack_missing_from_the_destination_is_sent_again() {
        let (src, sizes) = index(&[(1, &[1])]);
        let (dst_index, _) = index(&[(1, &[1])]);
        let destination = DestinationState {
            index: dst_index,
            stored: HashMap::new(),
        };
        let mut b = PlanBuilder::new(&src, &sizes, &destination, CopyPlan::default());
        b.add(SnapshotId::of(b"1"), at(1), [blob(1)]);
        let plan = b.finish();
        assert_eq!(plan.transfer.len(), 1);
    }

    #[test]
    fn selects_by_id_prefix_latest_and_tags() {
        let snap = |n: u8, h: u32, tag: Option<(&str, &str)>| Snapshot {
            id: Some(SnapshotId::of(&[n])),
            time: at(h),
            hostname: "h".into(),
            details: crate::snapshot::SnapshotDetails::Files(Default::default()),
            source: "s".into(),
            paths: vec![],
            tags: tag
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into_iter()
                .collect(),
            parent: None,
            tree: vec![],
            summary: Default::default(),
        };
        let snaps = vec![snap(1, 1, Some(("env", "prod"))), snap(2, 2, None)];
        let id1 = SnapshotId::of(&[1]);
        let id2 = SnapshotId::of(&[2]);
        assert_eq!(Selection::All.select(&snaps).unwrap().len(), 2);
        assert_eq!(
            Selection::Tags([("env".into(), "prod".into())].into())
                .select(&snaps)
                .unwrap(),
            [id1]
        );
        assert_eq!(
            Selection::Snapshots(vec!["latest".into(), id1.to_hex()[..10].to_string()])
                .select(&snaps)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            Selection::Snapshots(vec!["latest".into()])
                .select(&snaps)
                .unwrap(),
            [id2]
        );
        let err = Selection::Snapshots(vec!["zz".into()])
            .select(&snaps)
            .unwrap_err();
        assert_eq!(err, SelectError::NotFound("zz".into()));
        assert!(err.to_string().contains("no snapshot zz"), "{err}");
        // An empty id would match every snapshot as a prefix; it is refused instead.
        let err = Selection::Snapshots(vec![String::new()])
            .select(&snaps)
            .unwrap_err();
        assert_eq!(err, SelectError::Empty);
    }
}
