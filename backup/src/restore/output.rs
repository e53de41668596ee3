//! Writing restored blobs into their files: each blob's whole aligned blocks with `O_DIRECT`,
//! its unaligned edges through the page cache.
//!
//! Why: a restore copies every byte into freshly allocated page-cache pages, the largest
//! single cost of restoring 1 GiB from RGW on our 2-core VMs (11 % of the whole machine's CPU
//! in the kernel's copy alone, more in page allocation and LRU locking), and it evicts the
//! cache of whatever else runs on the node during an outage. Direct writes hand the bytes to
//! the device instead. A blob's edges share their pages with neighbouring blobs, which may
//! arrive from another pack at another time, so those few bytes go through the page cache,
//! where partial pages merge; every page of a file is thus written one way only. Filesystems
//! that refuse `O_DIRECT` (tmpfs, some FUSE mounts) get the page cache for everything.
//!
//! Files are reached only through handles (the restore's temporary file, opened relative to
//! its directory's handle and checked to be the inode the restore created), and zeros are
//! never written: a file is created at its full size, so unwritten blocks stay holes and a
//! sparse file stays sparse.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::OFlags;
use rustix::io::Errno;

use super::apply::{TempFile, open_temp};
use super::error::EntryError;
use super::handles::Dirs;
use crate::aligned::{ALIGN, STAGE, Stage, align_down, align_up};

/// Blobs shorter than this are written through the page cache whole.
const DIRECT_MIN: u64 = 4 * ALIGN as u64;

/// A file being restored: its directory and its temporary name there.
#[derive(Debug)]
pub(super) struct FileSlot {
    /// Its directory, relative to the target.
    pub(super) dir: std::path::PathBuf,
    /// Its temporary name and inode.
    pub(super) temp: TempFile,
    /// Its final path, for messages.
    pub(super) shown: String,
}

/// The file a writer has open: consecutive blobs of a pack mostly go to one file. Two
/// handles, one through the page cache and one with `O_DIRECT` (opened when first needed):
/// switching one handle's flag with `fcntl` for every blob cost more than the second open.
struct OpenFile {
    node: usize,
    buffered: OwnedFd,
    direct: Option<OwnedFd>,
}

/// Writes blobs for one worker; holds its staging buffer and last file between blobs.
pub(super) struct BlobWriter<'a> {
    dirs: &'a Dirs,
    /// Shared by all workers of a restore; cleared when the target refuses `O_DIRECT`.
    direct: &'a AtomicBool,
    stage: Option<Stage>,
    open: Option<OpenFile>,
}

impl<'a> BlobWriter<'a> {
    pub(super) fn new(dirs: &'a Dirs, direct: &'a AtomicBool) -> Self {
        Self {
            dirs,
            direct,
            stage: None,
            open: None,
        }
    }

    /// Writes `data` at `offset` of node `node`'s file. Blocks of zeros (whole 4 KiB blocks
    /// of the file, and zero edges) are not written: the file was created at its full size,
    /// so they stay holes. When `data` sits at an address ≡ `offset` (mod [`ALIGN`]) (see
    /// [`crate::aligned::Placed`]), its whole blocks go to the device straight from it;
    /// otherwise through a staging copy.
    pub(super) fn write(
        &mut self,
        node: usize,
        slot: &FileSlot,
        data: &[u8],
        offset: u64,
    ) -> Result<(), EntryError> {
        let mut from = 0;
        while let Some((start, end)) = next_data_run(data, offset, from) {
            let file = open_file(&mut self.open, self.dirs, node, slot)?;
            let run = &data[start..end];
            write_run(
                file,
                slot,
                self.dirs,
                &mut self.stage,
                self.direct,
                run,
                offset + start as u64,
            )?;
            from = end;
        }
        Ok(())
    }
}

/// Writes one run of data at `offset`: whole aligned blocks with `O_DIRECT` (unless the
/// run is short or the target refuses it), edges through the page cache.
fn write_run(
    file: &mut OpenFile,
    slot: &FileSlot,
    dirs: &Dirs,
    stage: &mut Option<Stage>,
    direct: &AtomicBool,
    data: &[u8],
    offset: u64,
) -> Result<(), EntryError> {
    let failed = |error| EntryError::Os {
        path: slot.shown.clone(),
        op: "write",
        error,
    };
    let len = data.len() as u64;
    let (start, end) = (align_up(offset), align_down(offset + len));
    if len < DIRECT_MIN || end <= start || !direct.load(Ordering::Relaxed) {
        return write_all_at(&file.buffered, data, offset).map_err(failed);
    }
    let middle = &data[(start - offset) as usize..(end - offset) as usize];
    write_all_at(&file.buffered, &data[..(start - offset) as usize], offset).map_err(failed)?;
    write_all_at(&file.buffered, &data[(end - offset) as usize..], end).map_err(failed)?;
    let fd = match &file.direct {
        Some(fd) => fd,
        None => {
            let dir = dirs.get(&slot.dir)?;
            match open_temp(&dir, &slot.temp, OFlags::WRONLY | OFlags::DIRECT, &slot.shown) {
                Ok(fd) => file.direct.insert(fd),
                Err(EntryError::Os { error, .. }) if error.raw_os_error() == Some(libc::EINVAL) => {
                    tracing::debug!(
                        "{} refuses O_DIRECT; restoring through the page cache",
                        slot.shown
                    );
                    direct.store(false, Ordering::Relaxed);
                    return write_all_at(&file.buffered, middle, start).map_err(failed);
                }
                Err(e) => return Err(e),
            }
        }
    };
    if (middle.as_ptr() as usize).is_multiple_of(ALIGN) {
        return write_all_at(fd, middle, start).map_err(failed);
    }
    let stage = stage.get_or_insert_with(Stage::take).bytes();
    for (i, piece) in middle.chunks(STAGE).enumerate() {
        stage[..piece.len()].copy_from_slice(piece);
        write_all_at(fd, &stage[..piece.len()], start + (i * STAGE) as u64).map_err(failed)?;
    }
    Ok(())
}

/// The open handle of node `node`'s temporary file, opened (and checked to be the inode the
/// restore created) when the last blob went elsewhere.
fn open_file<'o>(
    open: &'o mut Option<OpenFile>,
    dirs: &Dirs,
    node: usize,
    slot: &FileSlot,
) -> Result<&'o mut OpenFile, EntryError> {
    if open.as_ref().is_none_or(|f| f.node != node) {
        *open = None;
        let dir = dirs.get(&slot.dir)?;
        let buffered = open_temp(&dir, &slot.temp, OFlags::WRONLY, &slot.shown)?;
        *open = Some(OpenFile {
            node,
            buffered,
            direct: None,
        });
    }
    open.as_mut().ok_or_else(|| EntryError::Replaced {
        path: slot.shown.clone(),
    })
}

fn write_all_at(fd: &OwnedFd, mut data: &[u8], mut offset: u64) -> io::Result<()> {
    while !data.is_empty() {
        match rustix::io::pwrite(fd, data, offset) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                data = &data[n..];
                offset += n as u64;
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// True when every byte of `block` is zero. Data that is not zero almost always shows it in
/// its first bytes, so those are checked alone first.
fn is_zero(block: &[u8]) -> bool {
    let (head, rest) = block.split_at(block.len().min(16));
    head.iter().all(|b| *b == 0) && rest.chunks(512).all(|c| c.iter().fold(0, |acc, b| acc | b) == 0)
}

/// The next run of `data` (which lies at file offset `offset`), from index `from` on, that
/// holds bytes other than zero, in whole blocks of the file ([`ALIGN`]-aligned, clipped to
/// `data`): `(start, end)` indices into `data`.
fn next_data_run(data: &[u8], offset: u64, mut from: usize) -> Option<(usize, usize)> {
    let block_end = |at: usize| {
        let next_boundary = align_down(offset + at as u64) + ALIGN as u64;
        ((next_boundary - offset) as usize).min(data.len())
    };
    while from < data.len() && is_zero(&data[from..block_end(from)]) {
        from = block_end(from);
    }
    if from >= data.len() {
        return None;
    }
    let start = from;
    while from < data.len() && !is_zero(&data[from..block_end(from)]) {
        from = block_end(from);
    }
    Some((start, from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aligned::Placed;
    use crate::restore::apply::create_temp;
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;

    fn slot(dirs: &Dirs, size: u64) -> FileSlot {
        let temp = create_temp(&dirs.get(Path::new("")).unwrap(), size).unwrap();
        FileSlot {
            dir: Default::default(),
            shown: "file".into(),
            temp,
        }
    }

    /// Blobs of awkward sizes at awkward offsets, written in a scrambled order (as packs
    /// arrive), some placed for direct writes and some not, must give back exactly the
    /// original file.
    fn restore_scrambled(dir: &Path, direct: bool) {
        let data: Vec<u8> = (0..(3 * STAGE + 77_777)).map(|i| (i * 31 % 253) as u8).collect();
        let cuts = [
            0,
            5,
            4096,
            9000,
            70_000,
            70_001,
            1 << 20,
            STAGE + 3,
            3 * STAGE + 1,
            data.len(),
        ];
        let dirs = Dirs::open(dir).unwrap();
        let file = slot(&dirs, data.len() as u64);
        let flag = AtomicBool::new(direct);
        let mut writer = BlobWriter::new(&dirs, &flag);
        let mut placed = Placed::default();
        let mut blobs: Vec<_> = cuts.windows(2).map(|w| (w[0], w[1])).collect();
        blobs.reverse();
        blobs.swap(1, 4);
        for (n, (from, to)) in blobs.into_iter().enumerate() {
            let blob = &data[from..to];
            if n % 2 == 0 {
                let slot = placed.slot(blob.len(), from as u64);
                slot.copy_from_slice(blob);
                writer
                    .write(n % 3, &file, slot, from as u64)
                    .expect("write placed");
            } else {
                let unplaced = placed.slot(blob.len(), from as u64 + 1);
                unplaced.copy_from_slice(blob);
                writer
                    .write(n % 3, &file, unplaced, from as u64)
                    .expect("write staged");
            }
        }
        let written = std::fs::read(dir.join(&file.temp.name)).expect("read");
        assert!(written == data, "content differs");
    }

    #[test]
    fn direct_and_buffered_writes_assemble_the_same_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        restore_scrambled(dir.path(), true);
        restore_scrambled(dir.path(), false);
    }

    #[test]
    fn zeros_stay_holes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dirs = Dirs::open(dir.path()).unwrap();
        let file = slot(&dirs, 64 << 20);
        let flag = AtomicBool::new(true);
        let mut writer = BlobWriter::new(&dirs, &flag);
        // 8 MiB of zeros with 100 KiB of data in the middle, as a chunk of a sparse file is.
        let mut blob = vec![0u8; 8 << 20];
        blob[(3 << 20) + 100..(3 << 20) + 100 + 100_000].fill(7);
        writer.write(0, &file, &blob, 1 << 20).unwrap();
        writer.write(0, &file, &vec![0u8; 1 << 20], 20 << 20).unwrap();
        let path = dir.path().join(&file.temp.name);
        let content = std::fs::read(&path).unwrap();
        assert_eq!(content[1 << 20..9 << 20], blob[..]);
        assert!(
            content[..1 << 20]
                .iter()
                .chain(&content[9 << 20..])
                .all(|b| *b == 0)
        );
        let allocated = std::fs::metadata(&path).unwrap().blocks() * 512;
        assert!(
            allocated <= 128 * 1024,
            "{allocated} bytes allocated for 100 KB of data"
        );
    }

    #[test]
    fn data_runs_skip_zero_blocks() {
        let mut data = vec![0u8; 5 * ALIGN];
        data[10] = 1;
        data[3 * ALIGN + 5] = 1;
        // At file offset 100, blocks end at data indices 3996, 8092, …
        let runs: Vec<_> = std::iter::successors(next_data_run(&data, 100, 0), |&(_, end)| {
            next_data_run(&data, 100, end)
        })
        .collect();
        assert_eq!(runs, vec![(0, 3996), (3 * ALIGN - 100, 4 * ALIGN - 100)]);
    }
}
