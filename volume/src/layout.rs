//! The pure part of a volume backup: which segments to read and which to take from the
//! parent, where the data runs of a segment are, and how segments become a node's extents.
//!
//! A volume is cut into fixed segments (the RBD object size, 4 MiB by default). A segment
//! touched by a change is read whole and chunked again; one that is untouched keeps the
//! parent's extents and chunks; one that never held data stays a hole. Extents never cross a
//! segment boundary, so a segment can be replaced without touching its neighbours.

use std::collections::BTreeMap;

use lifeboat_backup::blob::BlobId;
use lifeboat_backup::snapshot::{Node, VolumeExtent, VolumeLayoutError};
use lifeboat_rbd::Extent;

/// Zero detection unit inside a segment: a whole granule of zeros is a hole (never stored,
/// never written on restore); smaller zero runs are stored with the data around them
/// (zstd makes them almost free) so a fragmented filesystem does not become thousands of
/// tiny extents.
pub const HOLE_GRANULE: usize = 64 * 1024;

/// How the backup reads the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// Every allocated extent (no usable parent or base snapshot).
    Full,
    /// Only the extents changed since the parent's RBD snapshot.
    Incremental,
}

impl ReadMode {
    /// As recorded in the snapshot (`full`, `incremental`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Incremental => "incremental",
        }
    }
}

/// A segment's stored content: its extents (chunk counts filled in) and their chunks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentContent {
    /// Extents inside the segment, in offset order.
    pub extents: Vec<VolumeExtent>,
    /// Their chunks, in order.
    pub chunks: Vec<BlobId>,
}

/// What a backup does with each segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadPlan {
    /// Segments to read, ascending.
    pub read: Vec<u64>,
    /// Segments whose parent content is kept, by segment index.
    pub reused: BTreeMap<u64, SegmentContent>,
}

impl ReadPlan {
    /// Bytes the plan reads from the image (the last segment may be short).
    pub fn read_bytes(&self, size: u64, segment_size: u64) -> u64 {
        self.read
            .iter()
            .map(|s| segment_len(*s, size, segment_size))
            .sum()
    }
}

/// Length of segment `index` of a `size`-byte volume.
pub fn segment_len(index: u64, size: u64, segment_size: u64) -> u64 {
    size.saturating_sub(index * segment_size).min(segment_size)
}

/// Segments any of `extents` overlaps, ascending, none past the volume's end.
fn touched_segments(extents: &[Extent], size: u64, segment_size: u64) -> Vec<u64> {
    let last = size.div_ceil(segment_size);
    let mut out: Vec<u64> = Vec::new();
    for e in extents.iter().filter(|e| e.length > 0) {
        let first = e.offset / segment_size;
        let end = (e.offset.saturating_add(e.length))
            .div_ceil(segment_size)
            .min(last);
        for s in first..end {
            if out.last() != Some(&s) {
                out.push(s);
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The plan of a full read: every segment holding an allocated extent.
pub fn full_plan(allocated: &[Extent], size: u64, segment_size: u64) -> ReadPlan {
    ReadPlan {
        read: touched_segments(allocated, size, segment_size),
        reused: BTreeMap::new(),
    }
}

/// Why a parent's volume node cannot be reused by an incremental read (it is then read in
/// full).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReusable {
    /// Its extents break the layout rules (a damaged tree).
    #[error(transparent)]
    Layout(#[from] VolumeLayoutError),
    /// An extent crosses a segment boundary (written with another segment size).
    #[error("extent at {0} crosses a segment boundary")]
    CrossesSegment(u64),
}

/// The plan of an incremental read: segments `changed` touches are read; the parent's other
/// segments are kept when `indexed` says all their chunks are still in the repository, and
/// read again when not. `Err` names why the parent's node cannot be reused at all (then read
/// in full): a damaged layout, or extents crossing a segment boundary.
pub fn incremental_plan(
    changed: &[Extent],
    parent: &Node,
    size: u64,
    segment_size: u64,
    indexed: impl Fn(&BlobId) -> bool,
) -> Result<ReadPlan, NotReusable> {
    let mut plan = ReadPlan {
        read: touched_segments(changed, size, segment_size),
        reused: BTreeMap::new(),
    };
    let mut by_segment: BTreeMap<u64, SegmentContent> = BTreeMap::new();
    for (extent, chunks) in parent.volume_extents()? {
        let segment = extent.offset / segment_size;
        if (extent.offset + extent.length).div_ceil(segment_size) != segment + 1 {
            return Err(NotReusable::CrossesSegment(extent.offset));
        }
        let content = by_segment.entry(segment).or_default();
        content.extents.push(extent);
        content.chunks.extend_from_slice(chunks);
    }
    let changed: std::collections::HashSet<u64> = plan.read.iter().copied().collect();
    for (segment, content) in by_segment {
        if changed.contains(&segment) || segment * segment_size >= size {
            continue;
        }
        if content.chunks.iter().all(&indexed) {
            plan.reused.insert(segment, content);
        } else {
            plan.read.push(segment);
        }
    }
    plan.read.sort_unstable();
    Ok(plan)
}

/// The data runs of a segment's bytes: ranges `(start, length)` made of granules that are not
/// all zeros, adjacent granules merged. The last granule may be short.
pub fn data_runs(data: &[u8]) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (i, granule) in data.chunks(HOLE_GRANULE).enumerate() {
        if is_zero(granule) {
            continue;
        }
        let start = i * HOLE_GRANULE;
        match runs.last_mut() {
            Some((s, l)) if *s + *l == start => *l += granule.len(),
            _ => runs.push((start, granule.len())),
        }
    }
    runs
}

fn is_zero(data: &[u8]) -> bool {
    // OR-folding fixed blocks lets the compiler vectorise; stop at the first non-zero block.
    let mut blocks = data.chunks_exact(64);
    blocks.by_ref().all(|b| b.iter().fold(0u8, |acc, x| acc | x) == 0)
        && blocks.remainder().iter().all(|b| *b == 0)
}

/// Joins read and reused segments, in segment order, into a volume node's extents and chunks.
pub fn assemble(segments: BTreeMap<u64, SegmentContent>) -> SegmentContent {
    let mut out = SegmentContent::default();
    for (_, content) in segments {
        out.extents.extend(content.extents);
        out.chunks.extend(content.chunks);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeboat_backup::snapshot::NodeKind;

    const SEG: u64 = 4 << 20;

    fn ext(offset: u64, length: u64) -> Extent {
        Extent {
            offset,
            length,
            exists: true,
        }
    }

    fn blob(n: u8) -> BlobId {
        format!("{n:02x}").repeat(32).parse().expect("hex")
    }

    fn parent(extents: &[(u64, u64)], size: u64) -> Node {
        let mut node = Node::with_path(b"volume.img", NodeKind::Volume);
        node.size = size;
        for (i, (offset, length)) in extents.iter().enumerate() {
            node.extents.push(VolumeExtent {
                offset: *offset,
                length: *length,
                chunks: 1,
            });
            node.chunks.push(blob(i as u8 + 1));
        }
        node
    }

    #[test]
    fn full_plan_reads_only_segments_with_allocated_extents() {
        let size = 10 * SEG + 100;
        let plan = full_plan(
            &[ext(0, 10), ext(SEG - 1, 2), ext(7 * SEG, 1), ext(10 * SEG, 100)],
            size,
            SEG,
        );
        assert_eq!(plan.read, vec![0, 1, 7, 10]);
        assert_eq!(plan.read_bytes(size, SEG), 3 * SEG + 100);
        assert!(full_plan(&[], size, SEG).read.is_empty());
    }

    #[test]
    fn incremental_plan_reads_changed_and_reuses_the_rest() {
        let size = 8 * SEG;
        let p = parent(
            &[(0, 4096), (SEG, 65536), (SEG + SEG / 2, 10), (5 * SEG, SEG)],
            size,
        );
        let plan =
            incremental_plan(&[ext(SEG + 7, 1), ext(6 * SEG, 4)], &p, size, SEG, |_| true).expect("plan");
        assert_eq!(plan.read, vec![1, 6]);
        assert_eq!(plan.reused.keys().copied().collect::<Vec<_>>(), vec![0, 5]);
        assert_eq!(plan.reused[&5].chunks, vec![blob(4)]);
        // A parent chunk the index lost makes its segment read again.
        let lost = blob(1);
        let plan = incremental_plan(&[], &p, size, SEG, |b| *b != lost).expect("plan");
        assert_eq!(plan.read, vec![0]);
        assert_eq!(plan.reused.keys().copied().collect::<Vec<_>>(), vec![1, 5]);
    }

    #[test]
    fn incremental_plan_refuses_a_parent_it_cannot_split() {
        let p = parent(&[(SEG - 10, 20)], 4 * SEG);
        assert!(incremental_plan(&[], &p, 4 * SEG, SEG, |_| true).is_err());
        let mut bad = parent(&[(0, 10)], 4 * SEG);
        bad.chunks.clear();
        assert!(incremental_plan(&[], &bad, 4 * SEG, SEG, |_| true).is_err());
    }

    #[test]
    fn data_runs_skip_zero_granules_and_merge_neighbours() {
        let g = HOLE_GRANULE;
        let mut data = vec![0u8; 5 * g + 100];
        data[3] = 1; // granule 0
        data[g + 5] = 1; // granule 1 (merged with 0)
        data[3 * g + g - 1] = 1; // granule 3
        data[5 * g + 99] = 1; // the short last granule
        assert_eq!(data_runs(&data), vec![(0, 2 * g), (3 * g, g), (5 * g, 100)]);
        assert!(data_runs(&vec![0u8; 3 * g]).is_empty());
        assert_eq!(data_runs(&[7u8; 10]), vec![(0, 10)]);
    }
}
