//! The restore plan: plain data, computed from the tree and the index, that the executor
//! carries out and tests assert on.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::blob::{BlobId, PackId};
use crate::index::Index;
use crate::pack::PackedBlob;
use crate::snapshot::{Node, NodeKind, parent_of, safe_relative, tree_damage};
use crate::sources::files::Exclusions;

/// One blob to decode, and every (file, offset) it goes to.
#[derive(Debug, Clone)]
pub struct PlannedBlob {
    /// Where it is in its pack.
    pub entry: PackedBlob,
    /// (node index, byte offset) pairs.
    pub targets: Vec<(usize, u64)>,
}

/// What the executor makes of one tree node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory, created if missing; its metadata is applied after everything below it.
    Dir,
    /// A regular file, written under a temporary name and renamed into place.
    File,
    /// Another name of the file (or FIFO, socket, device node) restored as node `to` (same
    /// device and inode at backup): linked to it, not made again.
    HardLink {
        /// The node restored with the content.
        to: usize,
    },
    /// A symbolic link, created under a temporary name and renamed into place.
    Symlink,
    /// A FIFO, socket or device node, made with `mknod` under a temporary name and renamed
    /// into place.
    Special,
}

/// One node to restore.
#[derive(Debug, Clone)]
pub struct PlannedEntry {
    /// Index of the node in the tree.
    pub node: usize,
    /// Its path under the target, checked to stay there.
    pub path: PathBuf,
    /// What to make.
    pub kind: EntryKind,
}

/// What a restore will do.
#[derive(Debug, Clone, Default)]
pub struct RestorePlan {
    /// Nodes to restore, in tree order: those selected, and the directories above them that
    /// the tree lists (so they get their recorded mode, owner and times).
    pub entries: Vec<PlannedEntry>,
    /// Blobs to fetch, grouped by pack, in the order they lie in it.
    pub packs: BTreeMap<PackId, Vec<PlannedBlob>>,
    /// Files that cannot be restored because a chunk is not in the index, with why.
    pub missing: BTreeMap<usize, String>,
    /// Entries refused because the tree is damaged there (unsafe path, a name listed twice, a
    /// path under something that is not a directory), each with why. Nothing is written
    /// through them.
    pub refused: Vec<String>,
    /// Bytes to write.
    pub bytes: u64,
    /// `include` patterns that matched no path of the snapshot.
    pub unmatched: Vec<String>,
    /// Entries left out by `exclude`, counted as a backup counts them: an excluded directory
    /// once, with all it holds.
    pub excluded: u64,
}

/// An `--include` pattern that is not a glob.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "include pattern {pattern:?} is not a valid glob: {message} (syntax: * ? [abc] {{a,b}} and ** for any depth)"
)]
pub struct InvalidInclude {
    /// The pattern as given.
    pub pattern: String,
    /// What is wrong with it.
    pub message: String,
}

fn include_globs(include: &[String]) -> Result<Option<GlobSet>, InvalidInclude> {
    if include.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for pattern in include {
        let invalid = |e: globset::Error| InvalidInclude {
            pattern: pattern.clone(),
            message: e.kind().to_string(),
        };
        // Stored paths have no leading `/`; a trailing `/` means "this directory and
        // below" (restic, rsync), which matching a directory already gives: without it,
        // `dir/` would match nothing, silently. `/` alone is the whole snapshot.
        let glob = match pattern.trim_start_matches('/').trim_end_matches('/') {
            // An empty pattern is a mistake (an unset variable), not "everything".
            _ if pattern.is_empty() => {
                return Err(InvalidInclude {
                    pattern: pattern.clone(),
                    message: "empty pattern".to_string(),
                });
            }
            "" => "**",
            glob => glob,
        };
        b.add(Glob::new(glob).map_err(invalid)?);
    }
    let set = b.build().map_err(|e| InvalidInclude {
        pattern: include.join(" "),
        message: e.kind().to_string(),
    })?;
    Ok(Some(set))
}

/// True when `path` or a directory above it matches; marks in `hits` each pattern that
/// matches any of them.
fn included(globs: &GlobSet, path: &[u8], hits: &mut [bool]) -> bool {
    let mut end = 0;
    let mut any = false;
    loop {
        let next = path[end..].iter().position(|b| *b == b'/').map(|i| end + i);
        let prefix = &path[..next.unwrap_or(path.len())];
        for p in globs.matches(Path::new(OsStr::from_bytes(prefix))) {
            hits[p] = true;
            any = true;
        }
        match next {
            Some(i) => end = i + 1,
            None => return any,
        }
    }
}

/// `--exclude` decisions for stored paths (relative, no leading `/`), each directory's
/// remembered, so a tree of N entries costs about N pattern matches, not N × depth.
struct Excluded<'a> {
    rules: &'a Exclusions,
    dirs: HashMap<&'a [u8], bool>,
}

impl<'a> Excluded<'a> {
    /// True when `path` matches (`is_dir`: it is a directory) or a directory above it does.
    /// Iterative: a forged tree's path may be thousands of components deep.
    fn test(&mut self, path: &'a [u8], is_dir: bool) -> bool {
        if self.rules.patterns().is_empty() {
            return false;
        }
        let mut undecided = Vec::new();
        let mut above = false;
        let mut dir = parent_of(path);
        while let Some(d) = dir {
            if let Some(&known) = self.dirs.get(d) {
                above = known;
                break;
            }
            undecided.push(d);
            dir = parent_of(d);
        }
        for d in undecided.into_iter().rev() {
            above = above || self.rules.excludes(&absolute(d), true);
            self.dirs.insert(d, above);
        }
        above || self.rules.excludes(&absolute(path), is_dir)
    }
}

/// A stored path as the absolute path it was backed up from (`srv/a` is `/srv/a`).
fn absolute(stored: &[u8]) -> PathBuf {
    let mut bytes = Vec::with_capacity(stored.len() + 1);
    bytes.push(b'/');
    bytes.extend_from_slice(stored);
    PathBuf::from(OsStr::from_bytes(&bytes))
}

/// Plans restoring `nodes`: those matching an `include` glob (all when there is none), less
/// those `exclude` leaves out, with the directories above each listed so they get their
/// recorded metadata. Errors: an `include` pattern that is not a glob.
pub fn plan_restore(
    nodes: &[Node],
    index: &Index,
    include: &[String],
    exclude: &Exclusions,
) -> Result<RestorePlan, InvalidInclude> {
    let globs = include_globs(include)?;
    let mut excluded = Excluded {
        rules: exclude,
        dirs: HashMap::new(),
    };
    let mut excluded_dirs: HashSet<&[u8]> = HashSet::new();
    let mut hits = vec![false; include.len()];
    let mut plan = RestorePlan::default();

    let damaged: HashMap<usize, String> = tree_damage(nodes)
        .into_iter()
        .filter(|d| d.refuses_restore())
        .map(|d| (d.node, d.why))
        .collect();
    // Paths nothing may be restored through: every damaged entry's.
    let blocked: HashSet<&[u8]> = damaged.keys().map(|&i| nodes[i].path_bytes()).collect();
    let listed: HashMap<&[u8], usize> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| !damaged.contains_key(i))
        .map(|(i, n)| (n.path_bytes(), i))
        .collect();

    let mut wanted: BTreeSet<usize> = BTreeSet::new();
    'nodes: for (i, node) in nodes.iter().enumerate() {
        if let Some(globs) = &globs
            && !included(globs, node.path_bytes(), &mut hits)
        {
            continue;
        }
        if excluded.test(node.path_bytes(), node.kind == NodeKind::Dir) {
            // Counted as a backup counts: an excluded directory once, with all it holds.
            if !parent_of(node.path_bytes()).is_some_and(|p| excluded_dirs.contains(p)) {
                plan.excluded += 1;
            }
            if node.kind == NodeKind::Dir {
                excluded_dirs.insert(node.path_bytes());
            }
            continue;
        }
        if let Some(why) = damaged.get(&i) {
            plan.refused.push(format!("{}: refused: {why}", node.path));
            continue;
        }
        let mut above = Vec::new();
        let mut path = node.path_bytes();
        while let Some(parent) = parent_of(path) {
            if blocked.contains(parent) {
                plan.refused.push(format!(
                    "{}: refused: it lies under {:?}, which is refused",
                    node.path,
                    String::from_utf8_lossy(parent)
                ));
                continue 'nodes;
            }
            above.extend(listed.get(parent).copied());
            path = parent;
        }
        wanted.insert(i);
        wanted.extend(above);
    }

    let mut first_name: HashMap<(u64, u64, NodeKind), usize> = HashMap::new();
    let mut by_blob: HashMap<(PackId, u32), usize> = HashMap::new();
    for i in wanted {
        let node = &nodes[i];
        let path = match safe_relative(node.path_bytes()) {
            Ok(p) => p,
            Err(why) => {
                // tree_damage refused these already; kept as a second line of defence.
                plan.refused
                    .push(format!("{}: refused: unsafe path {why}", node.path));
                continue;
            }
        };
        let kind = match node.kind {
            NodeKind::Dir => EntryKind::Dir,
            NodeKind::Symlink => EntryKind::Symlink,
            NodeKind::File
            | NodeKind::Fifo
            | NodeKind::Socket
            | NodeKind::CharDevice
            | NodeKind::BlockDevice
                if node.nlink > 1 && node.inode != 0 =>
            {
                // Keyed by type too: in a damaged tree a file and a FIFO claiming one inode
                // stay a file and a FIFO.
                match first_name.get(&(node.dev, node.inode, node.kind)) {
                    Some(&to) => EntryKind::HardLink { to },
                    None => {
                        first_name.insert((node.dev, node.inode, node.kind), i);
                        if node.kind == NodeKind::File {
                            EntryKind::File
                        } else {
                            EntryKind::Special
                        }
                    }
                }
            }
            NodeKind::Fifo | NodeKind::Socket | NodeKind::CharDevice | NodeKind::BlockDevice => {
                EntryKind::Special
            }
            // A volume image restores as a sparse file of its size (`dd` it onto a device).
            NodeKind::File | NodeKind::Volume => EntryKind::File,
        };
        plan.entries.push(PlannedEntry { node: i, path, kind });
        if kind != EntryKind::File {
            continue;
        }
        // Where each chunk goes: one after another for a file; from each extent's offset for
        // a volume image, whose holes are left unwritten in the sparse file.
        let layout: Vec<(u64, u64, &[BlobId])> = if node.kind == NodeKind::Volume {
            match node.volume_extents() {
                Ok(extents) => extents
                    .into_iter()
                    .map(|(e, c)| (e.offset, e.length, c))
                    .collect(),
                Err(why) => {
                    plan.missing
                        .insert(i, format!("refused: damaged volume layout: {why}"));
                    continue;
                }
            }
        } else {
            vec![(0, node.size, node.chunks.as_slice())]
        };
        'runs: for (start, length, chunks) in layout {
            let mut offset = start;
            for id in chunks {
                let Some(loc) = index.get(id) else {
                    plan.missing
                        .insert(i, format!("chunk {} is not in the index", id.short()));
                    break 'runs;
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
            // A file's chunks are its content: a size they do not add up to is a damaged (or
            // forged) tree, and the restored file would be silently short or padded.
            if !plan.missing.contains_key(&i) && offset - start != length {
                let held = offset - start;
                let claim = match node.kind {
                    NodeKind::Volume => format!("a length of {length} bytes at offset {start}"),
                    _ => format!("its size as {length} bytes"),
                };
                plan.missing.insert(
                    i,
                    format!(
                        "refused: the tree gives {claim} but its chunks hold {held} (damaged tree; a repository check reports it)"
                    ),
                );
            }
        }
        plan.bytes += node.size;
    }
    // The executor reads each pack front to back.
    for blobs in plan.packs.values_mut() {
        blobs.sort_by_key(|b| b.entry.offset);
    }
    plan.unmatched = include
        .iter()
        .zip(hits)
        .filter(|(_, hit)| !hit)
        .map(|(p, _)| p.clone())
        .collect();
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan with no `--exclude`.
    fn plan_of(nodes: &[Node], index: &Index, include: &[String]) -> Result<RestorePlan, InvalidInclude> {
        plan_restore(nodes, index, include, &Exclusions::default())
    }

    fn node(path: &[u8], kind: NodeKind) -> Node {
        let mut n = Node::with_path(path, kind);
        if kind == NodeKind::Symlink {
            n.set_target_bytes(b"/etc/passwd");
        }
        n
    }

    #[test]
    fn include_patterns_that_match_nothing_are_named() {
        let nodes = vec![
            node(b"tmp", NodeKind::Dir),
            node(b"tmp/t", NodeKind::Dir),
            node(b"tmp/t/plain", NodeKind::File),
        ];
        let include = ["tmp".to_string(), "tmp/t/plain".to_string(), "plain".to_string()];
        let plan = plan_of(&nodes, &Index::default(), &include).unwrap();
        assert_eq!(plan.unmatched, ["plain"]);
        assert_eq!(plan.entries.len(), 3);
        let err = plan_of(&nodes, &Index::default(), &["a[".to_string()]).unwrap_err();
        assert_eq!(err.pattern, "a[");
    }

    #[test]
    fn a_trailing_slash_means_the_directory_and_below() {
        let nodes = vec![
            node(b"tmp", NodeKind::Dir),
            node(b"tmp/t", NodeKind::Dir),
            node(b"tmp/t/plain", NodeKind::File),
            node(b"tmp/u", NodeKind::File),
        ];
        for pattern in ["tmp/t/", "/tmp/t//", "tmp/*/"] {
            let plan = plan_of(&nodes, &Index::default(), &[pattern.to_string()]).unwrap();
            assert!(plan.unmatched.is_empty(), "{pattern}");
            let restored: Vec<usize> = plan.entries.iter().map(|e| e.node).collect();
            assert!(restored.contains(&2), "{pattern}: {restored:?}");
        }
        let plan = plan_of(&nodes, &Index::default(), &["tmp/t/".to_string()]).unwrap();
        assert_eq!(plan.entries.len(), 3, "tmp/u is not below tmp/t/");
        let all = plan_of(&nodes, &Index::default(), &["/".to_string()]).unwrap();
        assert_eq!(all.entries.len(), 4);
        let empty = plan_of(&nodes, &Index::default(), &[String::new()]).unwrap_err();
        assert_eq!(empty.message, "empty pattern");
    }

    #[test]
    fn duplicates_are_refused_with_everything_below_them() {
        let nodes = vec![
            node(b"d", NodeKind::Dir),
            node(b"d/x", NodeKind::Symlink),
            node(b"d/x", NodeKind::File),
            node(b"d/x/y", NodeKind::File),
            node(b"d/z", NodeKind::File),
        ];
        let plan = plan_of(&nodes, &Index::default(), &[]).unwrap();
        let restored: Vec<usize> = plan.entries.iter().map(|e| e.node).collect();
        assert_eq!(restored, vec![0, 4]);
        assert_eq!(plan.refused.len(), 3, "{:?}", plan.refused);
        assert!(plan.refused.iter().all(|r| r.contains("refused")));
    }

    #[test]
    fn parents_of_included_paths_and_hard_links_are_planned() {
        let mut a = node(b"top/deep/a", NodeKind::File);
        let mut b = node(b"top/deep/b", NodeKind::File);
        for n in [&mut a, &mut b] {
            (n.dev, n.inode, n.nlink) = (1, 42, 2);
        }
        let nodes = vec![
            node(b"other", NodeKind::File),
            node(b"top", NodeKind::Dir),
            node(b"top/deep", NodeKind::Dir),
            a,
            b,
            node(b"top/deep/c\xff", NodeKind::File),
        ];
        let plan = plan_of(&nodes, &Index::default(), &["top/deep/[ab]".to_string()]).unwrap();
        let kinds: Vec<(usize, EntryKind)> = plan.entries.iter().map(|e| (e.node, e.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                (1, EntryKind::Dir),
                (2, EntryKind::Dir),
                (3, EntryKind::File),
                (4, EntryKind::HardLink { to: 3 }),
            ]
        );
        let plan = plan_of(&nodes, &Index::default(), &["top/deep/c?".to_string()]).unwrap();
        assert_eq!(plan.entries.last().map(|e| e.node), Some(5));
    }

    /// `--exclude` takes entries (and all an excluded directory holds) out of what is restored,
    /// after `--include`, with backup's pattern rules (absolute paths, a trailing `/` for
    /// directories only); a hard link whose first name is excluded is restored with its
    /// content under the name that is kept.
    #[test]
    fn excluded_entries_and_all_below_them_are_left_out_after_include() {
        let mut first = node(b"srv/app/cache/linked", NodeKind::File);
        let mut second = node(b"srv/app/linked", NodeKind::File);
        for n in [&mut first, &mut second] {
            (n.dev, n.inode, n.nlink) = (1, 9, 2);
        }
        let nodes = vec![
            node(b"srv", NodeKind::Dir),
            node(b"srv/app", NodeKind::Dir),
            node(b"srv/app/cache", NodeKind::Dir),
            node(b"srv/app/cache/deep", NodeKind::Dir),
            node(b"srv/app/cache/deep/f", NodeKind::File),
            first,
            node(b"srv/app/conf", NodeKind::File),
            second,
            node(b"srv/app/run.tmp", NodeKind::File),
            node(b"srv/logs", NodeKind::File),
        ];
        let exclude = |patterns: &[&str]| {
            Exclusions::new(&patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>()).unwrap()
        };
        let restored = |plan: &RestorePlan| -> Vec<(usize, EntryKind)> {
            plan.entries.iter().map(|e| (e.node, e.kind)).collect()
        };
        let plan = plan_restore(&nodes, &Index::default(), &[], &exclude(&["cache/", "*.tmp"])).unwrap();
        assert_eq!(
            restored(&plan),
            vec![
                (0, EntryKind::Dir),
                (1, EntryKind::Dir),
                (6, EntryKind::File),
                (7, EntryKind::File),
                (9, EntryKind::File),
            ]
        );
        assert_eq!(
            plan.excluded, 2,
            "the cache directory (once, with all it holds) and run.tmp"
        );
        // After include: the included directory less a part of it; anchored patterns.
        let include = ["srv/app".to_string()];
        let plan = plan_restore(&nodes, &Index::default(), &include, &exclude(&["/srv/app/conf"])).unwrap();
        assert!(plan.unmatched.is_empty());
        let nodes_kept: Vec<usize> = plan.entries.iter().map(|e| e.node).collect();
        assert_eq!(nodes_kept, vec![0, 1, 2, 3, 4, 5, 7, 8]);
        assert_eq!(plan.excluded, 1);
        // An anchored pattern matches from the root only (`/app` is not `/srv/app`); a bare
        // name matches at any depth.
        let plan = plan_restore(&nodes, &Index::default(), &[], &exclude(&["/app", "deep"])).unwrap();
        assert_eq!(plan.excluded, 1, "srv/app/cache/deep, with its file");
        // A file included under an excluded directory that is not: still left out, and
        // counted, so the restore says why it is missing.
        let include = ["srv/app/cache/deep/f".to_string()];
        let plan = plan_restore(&nodes, &Index::default(), &include, &exclude(&["cache/"])).unwrap();
        assert!(plan.entries.is_empty() && plan.unmatched.is_empty());
        assert_eq!(plan.excluded, 1);
        let none = plan_restore(&nodes, &Index::default(), &[], &Exclusions::default()).unwrap();
        assert_eq!((none.entries.len(), none.excluded), (nodes.len(), 0));
    }

    /// Names of one FIFO are links to the first; a file claiming the same inode (a damaged
    /// tree) stays a file, and is never made a link to the FIFO.
    #[test]
    fn hard_links_join_nodes_of_one_type_only() {
        let mut nodes = vec![
            node(b"a-fifo", NodeKind::Fifo),
            node(b"b-file", NodeKind::File),
            node(b"c-fifo", NodeKind::Fifo),
        ];
        for n in &mut nodes {
            (n.dev, n.inode, n.nlink) = (1, 7, 2);
        }
        let plan = plan_of(&nodes, &Index::default(), &[]).unwrap();
        let kinds: Vec<(usize, EntryKind)> = plan.entries.iter().map(|e| (e.node, e.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                (0, EntryKind::Special),
                (1, EntryKind::File),
                (2, EntryKind::HardLink { to: 0 }),
            ]
        );
    }
    /// Per pack, its blobs in read order with the (node, offset) places each goes to.
    type PlannedPacks = Vec<(PackId, Vec<(crate::blob::BlobId, Vec<(usize, u64)>)>)>;

    fn planned_packs(plan: &RestorePlan) -> PlannedPacks {
        plan.packs
            .iter()
            .map(|(p, blobs)| {
                (
                    *p,
                    blobs.iter().map(|b| (b.entry.id, b.targets.clone())).collect(),
                )
            })
            .collect()
    }

    /// A realistic tree: a config and its backup copy sharing both chunks (deduplicated
    /// across two packs), an empty file, a log whose second chunk the index lost, a database
    /// with a second hard-linked name, and a symlink. The whole plan is asserted, then the
    /// plan of an `include` that selects one file (its directories come along).
    #[test]
    fn golden_plan_for_a_small_server() {
        use crate::blob::{BlobId, BlobKind};
        use crate::index::{IndexFile, IndexPack};

        let chunk = |n: u8| BlobId::of(&[n]);
        let (pack_a, pack_b) = (PackId::of(b"a"), PackId::of(b"b"));
        let blob = |n: u8, offset: u32, raw_length: u32| PackedBlob {
            id: chunk(n),
            offset,
            length: raw_length / 2,
            raw_length,
        };
        // Pack A: chunks 3 then 1; pack B: chunks 5 then 2 (not in path order, as parallel
        // writers leave them). Chunk 4 is in no pack.
        let index = Index::from_files(&[IndexFile {
            packs: vec![
                IndexPack {
                    id: pack_a,
                    kind: BlobKind::Data,
                    size: 1000,
                    blobs: vec![blob(3, 0, 300), blob(1, 150, 100)],
                },
                IndexPack {
                    id: pack_b,
                    kind: BlobKind::Data,
                    size: 1000,
                    blobs: vec![blob(5, 0, 500), blob(2, 250, 60)],
                },
            ],
        }]);
        let file = |path: &[u8], chunks: &[u8]| {
            let mut n = node(path, NodeKind::File);
            n.chunks = chunks.iter().map(|&c| chunk(c)).collect();
            n.size = chunks
                .iter()
                .map(|&c| index.get(&chunk(c)).map_or(40, |l| u64::from(l.entry.raw_length)))
                .sum();
            n
        };
        let mut db = file(b"var/lib/db", &[5]);
        let mut db_link = file(b"var/lib/db.link", &[5]);
        for n in [&mut db, &mut db_link] {
            (n.dev, n.inode, n.nlink) = (8, 77, 2);
        }
        let nodes = vec![
            node(b"etc", NodeKind::Dir),                 // 0
            node(b"etc/app", NodeKind::Dir),             // 1
            file(b"etc/app/config.yaml", &[1, 2]),       // 2
            file(b"etc/app/config.yaml.bak", &[1, 2]),   // 3
            file(b"etc/app/empty", &[]),                 // 4
            node(b"etc/app/current", NodeKind::Symlink), // 5
            node(b"var", NodeKind::Dir),                 // 6
            node(b"var/lib", NodeKind::Dir),             // 7
            db,                                          // 8
            db_link,                                     // 9
            node(b"var/log", NodeKind::Dir),             // 10
            file(b"var/log/app.log", &[3, 4]),           // 11
        ];

        let plan = plan_of(&nodes, &index, &[]).unwrap();
        let entries: Vec<(usize, &str, EntryKind)> = plan
            .entries
            .iter()
            .map(|e| (e.node, e.path.to_str().unwrap(), e.kind))
            .collect();
        assert_eq!(
            entries,
            vec![
                (0, "etc", EntryKind::Dir),
                (1, "etc/app", EntryKind::Dir),
                (2, "etc/app/config.yaml", EntryKind::File),
                (3, "etc/app/config.yaml.bak", EntryKind::File),
                (4, "etc/app/empty", EntryKind::File),
                (5, "etc/app/current", EntryKind::Symlink),
                (6, "var", EntryKind::Dir),
                (7, "var/lib", EntryKind::Dir),
                (8, "var/lib/db", EntryKind::File),
                (9, "var/lib/db.link", EntryKind::HardLink { to: 8 }),
                (10, "var/log", EntryKind::Dir),
                (11, "var/log/app.log", EntryKind::File),
            ]
        );
        // Each pack read front to back, each blob decoded once for every place it goes.
        let packs = planned_packs(&plan);
        let mut expected = vec![
            (
                pack_a,
                vec![(chunk(3), vec![(11, 0)]), (chunk(1), vec![(2, 0), (3, 0)])],
            ),
            (
                pack_b,
                vec![(chunk(5), vec![(8, 0)]), (chunk(2), vec![(2, 100), (3, 100)])],
            ),
        ];
        expected.sort_by_key(|(p, _)| *p);
        assert_eq!(packs, expected);
        assert_eq!(
            plan.missing,
            BTreeMap::from([(11, format!("chunk {} is not in the index", chunk(4).short()))])
        );
        assert!(plan.refused.is_empty() && plan.unmatched.is_empty());
        // Every file's size, the hard link's once: 160 + 160 + 0 + 500 + (300 + 40).
        assert_eq!(plan.bytes, 1160);

        let plan = plan_of(&nodes, &index, &["etc/app/*.yaml".to_string()]).unwrap();
        let entries: Vec<(usize, EntryKind)> = plan.entries.iter().map(|e| (e.node, e.kind)).collect();
        assert_eq!(
            entries,
            vec![(0, EntryKind::Dir), (1, EntryKind::Dir), (2, EntryKind::File)]
        );
        let packs = planned_packs(&plan);
        let mut expected = vec![
            (pack_a, vec![(chunk(1), vec![(2, 0)])]),
            (pack_b, vec![(chunk(2), vec![(2, 100)])]),
        ];
        expected.sort_by_key(|(p, _)| *p);
        assert_eq!(packs, expected);
        assert!(plan.missing.is_empty());
        assert_eq!(plan.bytes, 160);
    }
}
