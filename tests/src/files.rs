//! Inspecting trees of files as `stat`, `readlink`, `getfattr` and `du` see them: what a
//! restore must reproduce, and fingerprints of files a restore must not touch. Shared by the
//! files backup/restore tests and the recovery-by-FORMAT.md test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Modification times of [`make_exact_dataset`] start here (2020-09-13).
pub const T0: i64 = 1_600_000_000;

/// Where a backed-up absolute path lands under a restore target.
pub fn restored(target: &Path, original: &Path) -> PathBuf {
    target.join(original.strip_prefix("/").unwrap_or(original))
}

/// Everything about one entry that a restore must reproduce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `f`, `d`, `l`, `p` (FIFO), `s` (socket), `c` or `b` (character or block device), as
    /// `ls -l` shows them.
    pub kind: char,
    /// Permission bits with set-id and sticky bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time (s, ns).
    pub mtime: (i64, i64),
    /// Link count (files and symlinks).
    pub nlink: u64,
    /// Allocated 512-byte blocks (what `du` adds up).
    pub blocks: u64,
    /// Content size (files).
    pub size: u64,
    /// BLAKE3 of the content (files).
    pub content: Option<String>,
    /// Link target bytes (symlinks).
    pub target: Option<Vec<u8>>,
    /// Which device (device nodes), `st_rdev`.
    pub rdev: u64,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// The extended attributes of `path` itself (not a symlink's target), sorted by name.
pub fn xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut names = vec![0u8; 65536];
    let len = rustix::fs::llistxattr(path, &mut names[..]).unwrap_or(0);
    let mut out = Vec::new();
    for name in names[..len].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let mut value = vec![0u8; 65536];
        if let Ok(n) = rustix::fs::lgetxattr(path, name, &mut value[..]) {
            out.push((String::from_utf8_lossy(name).into_owned(), value[..n].to_vec()));
        }
    }
    out.sort();
    out
}

/// Records one entry.
pub fn entry(path: &Path) -> Entry {
    let m = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let ft = m.file_type();
    use std::os::unix::fs::FileTypeExt;
    let kind = if ft.is_symlink() {
        'l'
    } else if ft.is_dir() {
        'd'
    } else if ft.is_fifo() {
        'p'
    } else if ft.is_socket() {
        's'
    } else if ft.is_char_device() {
        'c'
    } else if ft.is_block_device() {
        'b'
    } else {
        'f'
    };
    Entry {
        kind,
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        mtime: (m.mtime(), m.mtime_nsec()),
        nlink: if kind == 'd' { 0 } else { m.nlink() },
        blocks: if kind == 'f' { m.blocks() } else { 0 },
        size: if kind == 'f' { m.len() } else { 0 },
        content: (kind == 'f').then(|| blake3::hash(&std::fs::read(path).unwrap()).to_hex().to_string()),
        target: (kind == 'l').then(|| std::fs::read_link(path).unwrap().as_os_str().as_bytes().to_vec()),
        rdev: if matches!(kind, 'c' | 'b') { m.rdev() } else { 0 },
        xattrs: xattrs(path),
    }
}

/// Every entry under `root` (and `root` itself, as the empty path), by path bytes.
pub fn tree(root: &Path) -> BTreeMap<Vec<u8>, Entry> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let e = entry(&p);
        if e.kind == 'd' {
            for child in std::fs::read_dir(&p).unwrap() {
                stack.push(child.unwrap().path());
            }
        }
        let rel = p.strip_prefix(root).unwrap().as_os_str().as_bytes().to_vec();
        out.insert(rel, e);
    }
    out
}

/// How far (in 512-byte sectors) a restored file's allocation may be from its source's:
/// ext4 counts an extent-tree block (4 KiB) in `st_blocks` once a file has more than four
/// extents, and a restore that writes blobs as their packs arrive can leave a file in more
/// extents than a sequential writer did (seen: 3 MiB restored in 6152 sectors, source 6144).
/// Data blocks must match; a few metadata blocks may not.
pub const ALLOCATION_SLACK: u64 = 4 * 8;

/// Asserts a restored entry is its source's: everything equal, allocation (`du`) within
/// [`ALLOCATION_SLACK`].
pub fn assert_same_entry(path: &[u8], want: &Entry, got: &Entry) {
    let shown = String::from_utf8_lossy(path);
    assert_eq!(
        Entry {
            blocks: 0,
            ..want.clone()
        },
        Entry {
            blocks: 0,
            ..got.clone()
        },
        "{shown:?} differs (left: source, right: restored)"
    );
    assert!(
        want.blocks.abs_diff(got.blocks) <= ALLOCATION_SLACK,
        "{shown:?} occupies {} sectors restored, {} in the source",
        got.blocks,
        want.blocks
    );
}

/// Asserts two trees are the same entry for entry ([`assert_same_entry`]).
pub fn assert_same_tree(source: &Path, copy: &Path) {
    let (a, b) = (tree(source), tree(copy));
    let names = |t: &BTreeMap<Vec<u8>, Entry>| {
        t.keys()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&a), names(&b), "the restored tree lists other names");
    for (path, want) in &a {
        assert_same_entry(path, want, &b[path]);
    }
}

/// A file or directory outside a restore target: its content (or listing) and every stat
/// field that could change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// The path.
    pub path: PathBuf,
    /// BLAKE3 of a file's content.
    pub content: Option<String>,
    /// A directory's entries, sorted.
    pub listing: Option<Vec<PathBuf>>,
    /// mode (type and permissions), uid, gid, mtime (s, ns), size, inode.
    pub stat: Option<(u32, u32, u32, i64, i64, u64, u64)>,
    /// Link count and ctime: the only things a restore may change outside, by replacing a
    /// hard link to it that stood in the target.
    pub links: Option<(u64, i64, i64)>,
}

/// Fingerprints `paths` (files or directories; a missing path is recorded as missing).
pub fn fingerprint(paths: &[&Path]) -> Vec<Fingerprint> {
    paths
        .iter()
        .map(|p| {
            let m = std::fs::symlink_metadata(p).ok();
            Fingerprint {
                path: p.to_path_buf(),
                content: m
                    .as_ref()
                    .filter(|m| m.is_file())
                    .map(|_| blake3::hash(&std::fs::read(p).unwrap()).to_hex().to_string()),
                listing: m.as_ref().filter(|m| m.is_dir()).map(|_| {
                    let mut l: Vec<PathBuf> =
                        std::fs::read_dir(p).unwrap().map(|e| e.unwrap().path()).collect();
                    l.sort();
                    l
                }),
                stat: m.as_ref().map(|m| {
                    (
                        m.mode(),
                        m.uid(),
                        m.gid(),
                        m.mtime(),
                        m.mtime_nsec(),
                        m.size(),
                        m.ino(),
                    )
                }),
                links: m.as_ref().map(|m| (m.nlink(), m.ctime(), m.ctime_nsec())),
            }
        })
        .collect()
}

/// The fingerprints without link counts and ctimes.
pub fn without_links(prints: &[Fingerprint]) -> Vec<Fingerprint> {
    prints
        .iter()
        .map(|f| Fingerprint {
            links: None,
            ..f.clone()
        })
        .collect()
}

/// Sets an entry's modification time without following a symlink.
pub fn set_mtime(path: &Path, secs: i64, nanos: i64) {
    use rustix::fs::{AtFlags, CWD, Timespec, Timestamps};
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: nanos as _,
    };
    rustix::fs::utimensat(
        CWD,
        path,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap_or_else(|e| panic!("utimensat {}: {e}", path.display()));
}

/// chown without following symlinks.
pub fn lchown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

/// chmod (after chown: chown clears set-id bits).
pub fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
}

/// Runs a command that must succeed.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(out.status.success(), "{cmd:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Temporary files a restore left under `dir` (`.lifeboat-restore-*`): there should be none.
pub fn restore_leftovers(dir: &Path) -> Vec<PathBuf> {
    let out = Command::new("find")
        .arg(dir)
        .args(["-name", ".lifeboat-restore-*"])
        .output()
        .expect("find");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(PathBuf::from)
        .collect()
}

/// Bytes to names.
pub fn name(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

/// `len` random bytes.
pub fn random(len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut buf)
        .unwrap();
    buf
}

/// A tree with every kind of thing a restore gets wrong, under `root` (created): set-id and
/// sticky bits, other owners, names and a symlink target that are not UTF-8, three names for
/// one inode, a 256 MiB file holding 128 KiB, several chunks, an empty file, a FIFO and a
/// socket, user and trusted extended attributes, access and default ACLs (`setfacl`), an
/// attribute on a symlink, and a distinct modification time on every entry. Run as root.
pub fn make_exact_dataset(root: &Path) {
    let p = |rel: &[u8]| root.join(name(rel));
    std::fs::create_dir_all(root).unwrap();
    for (file, mode) in [("setuid", 0o4755), ("setgid", 0o2755), ("exec-only", 0o4711)] {
        std::fs::write(root.join(file), random(5000)).unwrap();
        lchown(&root.join(file), 1234, 5678);
        chmod(&root.join(file), mode);
    }
    std::fs::create_dir(root.join("sticky")).unwrap();
    std::fs::write(root.join("sticky/inside.txt"), b"in a sticky directory\n").unwrap();
    lchown(&root.join("sticky/inside.txt"), 1234, 1234);
    chmod(&root.join("sticky"), 0o1777);
    std::fs::create_dir(root.join("setgid-dir")).unwrap();
    lchown(&root.join("setgid-dir"), 1234, 5678);
    chmod(&root.join("setgid-dir"), 0o2775);

    // Names and targets that are not UTF-8.
    std::fs::write(p(b"caf\xe9"), b"latin-1 name\n").unwrap();
    chmod(&p(b"caf\xe9"), 0o640);
    std::fs::create_dir_all(p(b"d\xff\xfe/inner")).unwrap();
    std::fs::write(p(b"d\xff\xfe/inner/file"), random(3000)).unwrap();
    chmod(&p(b"d\xff\xfe"), 0o750);
    std::os::unix::fs::symlink(name(b"caf\xe9"), root.join("badlink")).unwrap();
    std::os::unix::fs::symlink(name(b"/nonexistent/\xff\xfe"), root.join("badlink2")).unwrap();
    lchown(&root.join("badlink2"), 1234, 5678);

    // Three names for one inode.
    std::fs::create_dir_all(root.join("links")).unwrap();
    std::fs::create_dir_all(root.join("other")).unwrap();
    std::fs::write(root.join("links/a"), random(70_000)).unwrap();
    std::fs::hard_link(root.join("links/a"), root.join("links/b")).unwrap();
    std::fs::hard_link(root.join("links/a"), root.join("other/c")).unwrap();

    // 256 MiB holding 128 KiB of data.
    let sparse = std::fs::File::create(root.join("sparse.img")).unwrap();
    sparse.set_len(256 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&sparse, &random(128 << 10), 100 << 20).unwrap();
    drop(sparse);

    // Several chunks, and an empty file.
    std::fs::write(root.join("big.bin"), random(3 << 20)).unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    chmod(&root.join("empty"), 0o600);

    // A FIFO and a socket (what any user may make; device nodes: [`make_device_nodes`]).
    make_node(&root.join("fifo"), rustix::fs::FileType::Fifo, 0);
    lchown(&root.join("fifo"), 1234, 5678);
    chmod(&root.join("fifo"), 0o640);
    std::fs::hard_link(root.join("fifo"), root.join("links/fifo-too")).unwrap(); // one pipe, two names
    let listener = std::os::unix::net::UnixListener::bind(root.join("socket")).unwrap();
    drop(listener); // its name stays: a socket file
    chmod(&root.join("socket"), 0o770);

    // Extended attributes and ACLs (an access ACL on a file, a default ACL on a directory).
    let x = root.join("xattr.txt");
    std::fs::write(&x, b"attributes\n").unwrap();
    for (attr, value) in [
        ("user.comment", &b"caf\xe9 \x00\x01 binary"[..]),
        ("trusted.lifeboat", b"root only"),
    ] {
        rustix::fs::setxattr(&x, attr, value, rustix::fs::XattrFlags::empty()).unwrap();
    }
    run(Command::new("setfacl")
        .args(["-m", "u:1234:r-x,g:5678:r--"])
        .arg(&x));
    std::fs::create_dir(root.join("acl-dir")).unwrap();
    std::fs::write(root.join("acl-dir/f"), b"f").unwrap();
    run(Command::new("setfacl")
        .args(["-d", "-m", "u:1234:rwx"])
        .arg(root.join("acl-dir")));
    std::os::unix::fs::symlink("xattr.txt", root.join("xlink")).unwrap();
    rustix::fs::lsetxattr(
        root.join("xlink"),
        "trusted.on-a-link",
        b"yes",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();

    // Distinct times everywhere, directories last (deepest first).
    let mut all: Vec<_> = tree(root).into_keys().collect();
    all.sort_by_key(|k| {
        std::cmp::Reverse(k.iter().filter(|b| **b == b'/').count() + usize::from(!k.is_empty()))
    });
    for (i, rel) in all.iter().enumerate() {
        let path = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(name(rel))
        };
        set_mtime(&path, T0 + i as i64 * 1000, 123_456_789);
    }
}

/// Makes a FIFO, socket or device node (`rdev` for devices) with mode 0600.
pub fn make_node(path: &Path, kind: rustix::fs::FileType, rdev: u64) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        kind,
        rustix::fs::Mode::from_bits_truncate(0o600),
        rdev,
    )
    .unwrap_or_else(|e| panic!("mknod {}: {e}", path.display()));
}

/// Device nodes under `root` (created), as root: the character device 1:3 (what `/dev/null`
/// is) with mode 0666, another owner and a second name (`null-like.link`, a hard link), and
/// the block device 7:200 (a loop device number
/// no test uses) with mode 0660 and an attribute, each with its own time. Returns their
/// names.
pub fn make_device_nodes(root: &Path) -> [&'static str; 2] {
    std::fs::create_dir_all(root).unwrap();
    let (chr, blk) = (root.join("null-like"), root.join("loop200"));
    make_node(
        &chr,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::makedev(1, 3),
    );
    lchown(&chr, 1234, 5678);
    chmod(&chr, 0o666);
    std::fs::hard_link(&chr, root.join("null-like.link")).unwrap();
    make_node(
        &blk,
        rustix::fs::FileType::BlockDevice,
        rustix::fs::makedev(7, 200),
    );
    chmod(&blk, 0o660);
    rustix::fs::setxattr(
        &blk,
        "trusted.lifeboat",
        b"a device",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    set_mtime(&chr, T0 + 11, 1);
    set_mtime(&blk, T0 + 12, 2);
    set_mtime(root, T0 + 13, 3);
    ["null-like", "loop200"]
}

/// A command's stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
