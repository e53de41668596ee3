//! The restore plan: plain data, computed from the tree and the index, that the executor
//! carries out and tests assert on.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use globset::{Glob, GlobSetBuilder};

use super::safe_path::safe_relative;
use crate::blob::PackId;
use crate::index::Index;
use crate::pack::PackedBlob;
use crate::snapshot::{Node, NodeKind};

/// One blob to decode, and every (file, offset) it goes to.
#[derive(Debug, Clone)]
pub struct PlannedBlob {
    /// Where it is in its pack.
    pub entry: PackedBlob,
    /// (node index, byte offset) pairs.
    pub targets: Vec<(usize, u64)>,
}

/// What a restore will do.
#[derive(Debug, Clone, Default)]
pub struct RestorePlan {
    /// Nodes to restore (index into the tree) with their safe relative paths, in tree order.
    pub entries: Vec<(usize, PathBuf)>,
    /// Blobs to fetch, grouped by pack, in the order they lie in it.
    pub packs: BTreeMap<PackId, Vec<PlannedBlob>>,
    /// Files that cannot be restored because a chunk is not in the index, with why.
    pub missing: BTreeMap<usize, String>,
    /// Paths refused as unsafe, with why.
    pub refused: Vec<String>,
    /// Bytes to write.
    pub bytes: u64,
}

/// Plans restoring `nodes`, filtered by `include` globs.
pub fn plan_restore(nodes: &[Node], index: &Index, include: &[String]) -> Result<RestorePlan, String> {
    let globs = if include.is_empty() {
        None
    } else {
        let mut b = GlobSetBuilder::new();
        for pattern in include {
            let g = Glob::new(pattern.trim_start_matches('/'))
                .map_err(|e| format!("--include {pattern:?} is not a valid glob: {e}"))?;
            b.add(g);
        }
        Some(b.build().map_err(|e| format!("--include: {e}"))?)
    };
    let mut plan = RestorePlan::default();
    let mut by_blob: HashMap<(PackId, u32), usize> = HashMap::new();
    for (i, node) in nodes.iter().enumerate() {
        if let Some(globs) = &globs {
            // A path is included when it or any directory above it matches.
            let mut prefix = String::new();
            let matched = node.path.split('/').any(|part| {
                if !prefix.is_empty() {
                    prefix.push('/');
                }
                prefix.push_str(part);
                globs.is_match(&prefix)
            });
            if !matched {
                continue;
            }
        }
        let rel = match safe_relative(&node.path) {
            Ok(r) => r,
            Err(why) => {
                plan.refused.push(format!("refused: {why}"));
                continue;
            }
        };
        plan.entries.push((i, rel));
        if node.kind != NodeKind::File {
            continue;
        }
        let mut offset = 0u64;
        for id in &node.chunks {
            let Some(loc) = index.get(id) else {
                plan.missing
                    .insert(i, format!("chunk {} is not in the index", id.short()));
                break;
            };
            let slot = *by_blob.entry((loc.pack, loc.entry.offset)).or_insert_with(|| {
                let blobs = plan.packs.entry(loc.pack).or_default();
                blobs.push(PlannedBlob {
                    entry: loc.entry,
                    targets: Vec::new(),
                });
                blobs.len() - 1
            });
            if let Some(blobs) = plan.packs.get_mut(&loc.pack) {
                blobs[slot].targets.push((i, offset));
            }
            offset += u64::from(loc.entry.raw_length);
        }
        plan.bytes += node.size;
    }
    // The executor reads each pack front to back.
    for blobs in plan.packs.values_mut() {
        blobs.sort_by_key(|b| b.entry.offset);
    }
    Ok(plan)
}
