//! The revision a streamed etcd database holds, read from its bytes as they pass.
//!
//! etcd 3.4's snapshot stream says nothing of the revision its database is at, and a status
//! call before or after it can differ from it by the writes made meanwhile. The database is a
//! bbolt file (the format of go.etcd.io/bbolt: `page.go`, `bucket.go`, `db.go`), written by
//! bbolt's `Tx.WriteTo` as of one read transaction: two meta pages, then every page up to the
//! transaction's high-water mark. The revision is what etcd's own `mvcc` store restores as its
//! current revision: the largest of the last key of bucket `key` (keys are revisions, 8-byte
//! big-endian main revision, `_`, 8-byte sub revision, and `t` for a tombstone, sorted) and
//! the `finishedCompactRev` and `scheduledCompactRev` entries of bucket `meta` (a compaction
//! can delete the newest tombstone). `etcdctl snapshot status` reads the same last key.
//!
//! Pages are found by walking from the meta page, as bbolt does, but the stream passes only
//! once and children can come before their parents, so while it passes each page is kept in
//! summary: a branch page as its rightmost child, a leaf page as its last key's revision (and
//! any compaction entries), and a leaf holding buckets whole (the root bucket's leaf: small).
//! Free pages keep stale contents, and a freed run of overflow pages can hold a stale page
//! header in its middle; only the pages the walk reaches are used, and each page's summary is
//! keyed by its id, which bbolt writes into its header, so a page is taken only where its id
//! matches its place in the file.
//!
//! Memory: about 40 bytes per branch or leaf page (a 2 GiB database of 4 KiB pages: ~20 MiB),
//! plus the page runs being read (at most [`MAX_OPEN_RUNS`] × [`MAX_RUN`]). Where the revision
//! cannot be read (a root bucket split over branch pages, a big-endian database, a last leaf
//! over [`MAX_RUN`]), the caller falls back to etcd's status, with a warning.

use std::collections::HashMap;

/// bbolt's meta page magic.
const MAGIC: u32 = 0xED0C_DAED;
/// The bbolt file format version etcd 3.x writes.
const VERSION: u32 = 2;
/// A page's header: id u64, flags u16, count u16, overflow u32.
const HEADER: usize = 16;
const BRANCH: u16 = 0x01;
const LEAF: u16 = 0x02;
/// A leaf element whose value is a nested bucket.
const BUCKET_ELEMENT: u32 = 0x01;
/// A leaf or branch page element's size.
const ELEMENT: usize = 16;
/// The longest page run (a page and its overflow) read whole; longer ones are not summarised
/// (etcd refuses requests over `--max-request-bytes`, 1.5 MiB by default, so a leaf this long
/// is rare; if the last leaf of bucket `key` is one, the revision is not read).
const MAX_RUN: usize = 16 << 20;
/// How many page runs may be open at once (a stale header inside another run opens a second);
/// with [`MAX_RUN`], at most 128 MiB buffered whatever the stream holds.
const MAX_OPEN_RUNS: usize = 8;
/// How deep a B+tree walk may go before the file is taken for damaged.
const MAX_DEPTH: usize = 64;

/// Why the revision could not be read from a database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the etcd database's revision could not be read from its bbolt pages: {0}")]
pub struct BoltError(String);

fn fail<T>(why: impl Into<String>) -> Result<T, BoltError> {
    Err(BoltError(why.into()))
}

/// What is kept of a leaf page.
#[derive(Debug, Default, Clone)]
struct LeafSummary {
    /// The main revision of its last key, if that key is a revision.
    last_revision: Option<i64>,
    /// The largest main revision among its compaction entries.
    compacted: Option<i64>,
}

/// A page run being read: where it starts and the bytes so far.
struct OpenRun {
    id: u64,
    want: usize,
    bytes: Vec<u8>,
}

/// Reads the revision of an etcd (bbolt) database fed to it in pieces of any size: `feed`
/// every byte in order, then `revision`. Bytes after the database (etcd's SHA-256 trailer)
/// are ignored.
#[derive(Default)]
pub struct RevisionScanner {
    page_size: usize,
    /// Bytes of the current page (fewer than a page).
    partial: Vec<u8>,
    /// The id of the next whole page.
    next_id: u64,
    /// The root bucket's root page, from meta page 0 (or 1 when 0's checksum fails).
    root: Option<u64>,
    open: Vec<OpenRun>,
    branches: HashMap<u64, u64>,
    leaves: HashMap<u64, LeafSummary>,
    /// Leaf pages holding bucket elements, whole.
    bucket_leaves: HashMap<u64, Vec<u8>>,
    broken: Option<String>,
}

impl RevisionScanner {
    /// A scanner at the start of a database.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next `bytes` of the database.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && self.broken.is_none() {
            if self.page_size == 0 {
                // The page size is in meta page 0, after the header, magic and version.
                let need = HEADER + 12;
                let take = bytes.len().min(need.saturating_sub(self.partial.len()));
                self.partial.extend_from_slice(&bytes[..take]);
                bytes = &bytes[take..];
                if self.partial.len() < need {
                    return;
                }
                let size = u32_at(&self.partial, HEADER + 8).unwrap_or(0) as usize;
                if !(512..=65536).contains(&size) || !size.is_power_of_two() {
                    self.broken = Some(format!("meta page 0 gives page size {size}"));
                    return;
                }
                self.page_size = size;
                continue;
            }
            let take = bytes.len().min(self.page_size - self.partial.len());
            self.partial.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.partial.len() == self.page_size {
                let page = std::mem::take(&mut self.partial);
                self.page(&page);
                self.partial = page;
                self.partial.clear();
            }
        }
    }

    /// One whole page, the `next_id`th.
    fn page(&mut self, page: &[u8]) {
        let id = self.next_id;
        self.next_id += 1;
        if id < 2 {
            if self.root.is_none() {
                self.root = meta_root(page);
            }
            return;
        }
        let mut done = Vec::new();
        for (i, run) in self.open.iter_mut().enumerate() {
            run.bytes.extend_from_slice(page);
            if run.bytes.len() >= run.want {
                done.push(i);
            }
        }
        for i in done.into_iter().rev() {
            let run = self.open.swap_remove(i);
            self.summarise(run.id, &run.bytes);
        }
        let (Some(own_id), Some(flags), Some(overflow)) =
            (u64_at(page, 0), u16_at(page, 8), u32_at(page, 12))
        else {
            return;
        };
        if own_id != id || (flags != BRANCH && flags != LEAF) {
            return;
        }
        let want = (overflow as usize)
            .saturating_add(1)
            .saturating_mul(self.page_size);
        if want == self.page_size {
            self.summarise(id, page);
        } else if want <= MAX_RUN && self.open.len() < MAX_OPEN_RUNS {
            self.open.push(OpenRun {
                id,
                want,
                bytes: page.to_vec(),
            });
        }
    }

    fn summarise(&mut self, id: u64, run: &[u8]) {
        let flags = u16_at(run, 8).unwrap_or(0);
        if flags == BRANCH {
            if let Some(child) = branch_last_child(run) {
                self.branches.insert(id, child);
            }
            return;
        }
        let Some(elements) = leaf_elements(run) else {
            return;
        };
        if elements.iter().any(|e| e.flags & BUCKET_ELEMENT != 0) {
            self.bucket_leaves.insert(id, run.to_vec());
        }
        self.leaves.insert(id, summarise_leaf(&elements));
    }

    /// The database's revision; an error if the bytes fed are not a whole bbolt database
    /// holding etcd's buckets.
    pub fn revision(&self) -> Result<i64, BoltError> {
        if let Some(why) = &self.broken {
            return fail(why.clone());
        }
        let Some(root) = self.root else {
            return fail("neither meta page is valid");
        };
        let Some(root_leaf) = self.bucket_leaves.get(&root) else {
            return fail(format!("the root bucket's page {root} is not a leaf of buckets"));
        };
        let buckets = leaf_elements(root_leaf).unwrap_or_default();
        let mut revision: i64 = 1;
        let key = self.bucket(&buckets, b"key")?;
        if let Some(last) = self.last_revision(&key)? {
            revision = revision.max(last);
        }
        // A database without bucket `meta` has never been compacted.
        if let Ok(meta) = self.bucket(&buckets, b"meta")
            && let Some(compacted) = self.compacted(&meta)?
        {
            revision = revision.max(compacted);
        }
        Ok(revision)
    }

    /// Bucket `name` among the root bucket's elements.
    fn bucket(&self, buckets: &[Element<'_>], name: &[u8]) -> Result<Bucket, BoltError> {
        let Some(e) = buckets
            .iter()
            .find(|e| e.key == name && e.flags & BUCKET_ELEMENT != 0)
        else {
            return fail(format!("no bucket {:?}", String::from_utf8_lossy(name)));
        };
        let Some(root) = u64_at(e.value, 0) else {
            return fail("a bucket's header is cut short");
        };
        Ok(if root == 0 {
            // An inline bucket: its one leaf page follows the 16-byte bucket header.
            Bucket::Inline(e.value.get(16..).unwrap_or_default().to_vec())
        } else {
            Bucket::Page(root)
        })
    }

    /// The leaf a walk down the rightmost edge of `bucket` ends at.
    fn rightmost_leaf(&self, mut id: u64) -> Result<LeafSummary, BoltError> {
        for _ in 0..MAX_DEPTH {
            if let Some(child) = self.branches.get(&id) {
                id = *child;
            } else if let Some(leaf) = self.leaves.get(&id) {
                return Ok(leaf.clone());
            } else {
                return fail(format!("page {id} is neither a branch nor a leaf"));
            }
        }
        fail("a bucket's tree is deeper than bbolt makes")
    }

    fn last_revision(&self, bucket: &Bucket) -> Result<Option<i64>, BoltError> {
        match bucket {
            Bucket::Inline(page) => {
                let Some(elements) = leaf_elements(page) else {
                    return fail("bucket \"key\" is inline but not a leaf");
                };
                match elements.last() {
                    None => Ok(None),
                    Some(e) => match key_revision(e.key) {
                        Some(r) => Ok(Some(r)),
                        None => fail("the last key of bucket \"key\" is not a revision"),
                    },
                }
            }
            Bucket::Page(id) => match self.rightmost_leaf(*id)?.last_revision {
                Some(r) => Ok(Some(r)),
                None => fail("the last key of bucket \"key\" is not a revision"),
            },
        }
    }

    fn compacted(&self, bucket: &Bucket) -> Result<Option<i64>, BoltError> {
        match bucket {
            Bucket::Inline(page) => Ok(leaf_elements(page)
                .map(|e| summarise_leaf(&e).compacted)
                .unwrap_or_default()),
            // The meta bucket holds a handful of entries: one leaf. (If it ever grew a branch,
            // its compaction entries would sort into the first leaf, which this does not
            // reach; it would then count as never compacted.)
            Bucket::Page(id) => Ok(self.leaves.get(id).and_then(|l| l.compacted)),
        }
    }
}

enum Bucket {
    Inline(Vec<u8>),
    Page(u64),
}

struct Element<'a> {
    flags: u32,
    key: &'a [u8],
    value: &'a [u8],
}

/// The root bucket's root page from a meta page, if its magic, version and checksum hold.
fn meta_root(page: &[u8]) -> Option<u64> {
    let meta = page.get(HEADER..HEADER + 64)?;
    if u32_at(meta, 0)? != MAGIC || u32_at(meta, 4)? != VERSION {
        return None;
    }
    // The checksum is FNV-1a (64-bit) of the meta fields before it.
    let want = u64_at(meta, 56)?;
    let sum = meta[..56].iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (sum == want).then(|| u64_at(meta, 16)).flatten()
}

/// A branch page's last child.
fn branch_last_child(run: &[u8]) -> Option<u64> {
    let count = usize::from(u16_at(run, 10)?);
    let last = HEADER + count.checked_sub(1)? * ELEMENT;
    u64_at(run, last + 8)
}

/// A leaf page's elements, or None if any lies outside the run.
fn leaf_elements(run: &[u8]) -> Option<Vec<Element<'_>>> {
    if u16_at(run, 8)? != LEAF {
        return None;
    }
    let count = usize::from(u16_at(run, 10)?);
    (0..count)
        .map(|i| {
            let at = HEADER + i * ELEMENT;
            let flags = u32_at(run, at)?;
            // `pos` counts from the element itself.
            let pos = at + u32_at(run, at + 4)? as usize;
            let ksize = u32_at(run, at + 8)? as usize;
            let vsize = u32_at(run, at + 12)? as usize;
            let key = run.get(pos..pos.checked_add(ksize)?)?;
            let end = pos.checked_add(ksize)?.checked_add(vsize)?;
            let value = run.get(pos + ksize..end)?;
            Some(Element { flags, key, value })
        })
        .collect()
}

fn summarise_leaf(elements: &[Element<'_>]) -> LeafSummary {
    let compacted = elements
        .iter()
        .filter(|e| e.key == b"finishedCompactRev" || e.key == b"scheduledCompactRev")
        .filter_map(|e| key_revision(e.value))
        .max();
    LeafSummary {
        last_revision: elements.last().and_then(|e| key_revision(e.key)),
        compacted,
    }
}

/// The main revision of an etcd revision key: 8 bytes big-endian, `_`, 8 bytes, maybe `t`.
fn key_revision(key: &[u8]) -> Option<i64> {
    if !(key.len() == 17 || (key.len() == 18 && key[17] == b't')) || key[8] != b'_' {
        return None;
    }
    i64::try_from(u64::from_be_bytes(key[..8].try_into().ok()?)).ok()
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_keys_are_read_as_etcd_writes_them() {
        let mut k = 300u64.to_be_bytes().to_vec();
        k.push(b'_');
        k.extend_from_slice(&2u64.to_be_bytes());
        assert_eq!(key_revision(&k), Some(300));
        k.push(b't');
        assert_eq!(key_revision(&k), Some(300));
        k[17] = b'x';
        assert_eq!(key_revision(&k), None);
        assert_eq!(key_revision(b"finishedCompactRev"), None);
    }

    #[test]
    fn garbage_and_short_input_are_errors_not_panics() {
        for bytes in [
            vec![],
            vec![0u8; 10],
            vec![0xffu8; 100_000],
            (0..200_000u32).map(|i| (i * 7919 % 251) as u8).collect(),
        ] {
            let mut s = RevisionScanner::new();
            s.feed(&bytes);
            assert!(s.revision().is_err());
        }
    }
}
