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

/// The file a writer has open: consecutive blobs of a pack mostly go to one file.
struct OpenFile {
    node: usize,
    fd: OwnedFd,
    /// Whether `O_DIRECT` is set on `fd` now.
    direct: bool,
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
            self.write_run(node, slot, &data[start..end], offset + start as u64)
                .map_err(|error| EntryError::Os {
                    path: slot.shown.clone(),
                    op: "write",
                    error,
                })?;
            from = end;
        }
        Ok(())
    }

    fn write_run(&mut self, node: usize, slot: &FileSlot, data: &[u8], offset: u64) -> io::Result<()> {
        let allow_direct = self.direct.load(Ordering::Relaxed);
        let len = data.len() as u64;
        let (start, end) = (align_up(offset), align_down(offset + len));
        let file = open_file(&mut self.open, self.dirs, node, slot).map_err(io::Error::other)?;
        if len < DIRECT_MIN || end <= start || !allow_direct {
            set_direct(file, false)?;
            return write_all_at(&file.fd, data, offset);
        }
        let middle = &data[(start - offset) as usize..(end - offset) as usize];
        set_direct(file, false)?;
        write_all_at(&file.fd, &data[..(start - offset) as usize], offset)?;
        write_all_at(&file.fd, &data[(end - offset) as usize..], end)?;
        match set_direct(file, true) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                tracing::debug!(
                    "{} refuses O_DIRECT; restoring through the page cache",
                    slot.shown
                );
                self.direct.store(false, Ordering::Relaxed);
                write_all_at(&file.fd, middle, start)
            }
            Err(e) => Err(e),
            Ok(()) => {
                let fd = &file.fd;
                if (middle.as_ptr() as usize).is_multiple_of(ALIGN) {
                    return write_all_at(fd, middle, start);
                }
                let stage = self.stage.get_or_insert_with(Stage::take).bytes();
                for (i, piece) in middle.chunks(STAGE).enumerate() {
                    stage[..piece.len()].copy_from_slice(piece);
                    write_all_at(fd, &stage[..piece.len()], start + (i * STAGE) as u64)?;
                }
                Ok(())
            }
        }
    }
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
        let fd = open_temp(&dir, &slot.temp, OFlags::WRONLY, &slot.shown)?;
        *open = Some(OpenFile {
            node,
            fd,
            direct: false,
        });
    }
    open.as_mut().ok_or_else(|| EntryError::Replaced {
        path: slot.shown.clone(),
    })
}

/// Switches `O_DIRECT` on or off for the open file (`fcntl(F_SETFL)`), if it is not already.
fn set_direct(file: &mut OpenFile, on: bool) -> io::Result<()> {
    if file.direct != on {
        let flags = if on { OFlags::DIRECT } else { OFlags::empty() };
        rustix::fs::fcntl_setfl(&file.fd, flags)?;
        file.direct = on;
    }
    Ok(())
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
