//! The restore's entries before and after their content arrives: directories and temporary
//! files made first (so blobs can land in any order), then every file, hard link, symlink,
//! FIFO, socket and device node given its metadata and renamed into place, then directories'
//! metadata, deepest first.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType};
use rustix::io::Errno;

use super::RestoreReport;
use super::apply::{
    MetaNotes, Privileges, TEMP_PREFIX, apply_to_fd, apply_to_special, apply_to_symlink, create_temp,
    discard, is_older_temporary_name, is_temporary_name, link_temp, open_temp, put_in_place, special_temp,
    symlink_temp,
};
use super::error::EntryError;
use super::files_plan::{EntryKind, PlannedEntry, RestorePlan};
use super::handles::Dirs;
use super::output::FileSlot;
use crate::snapshot::{Node, NodeKind};

/// Mode of a directory while the restore fills it; its recorded mode comes at the end.
const DIR_WHILE_RESTORING: u32 = 0o700;
/// Mode (less the umask) of a directory the tree does not list (above a backed-up path).
const DIR_UNLISTED: u32 = 0o777;

fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new(""))
}

fn name(path: &Path) -> &std::ffi::OsStr {
    path.file_name().unwrap_or_default()
}

/// Makes every directory of the plan, and every file as an empty temporary file of its full
/// size; returns the files' slots by node index. Entries that fail are added to `failed`
/// with their error in `report`.
pub(super) fn prepare(
    nodes: &[Node],
    plan: &RestorePlan,
    dirs: &Dirs,
    failed: &mut BTreeSet<usize>,
    report: &mut RestoreReport,
) -> Vec<Option<FileSlot>> {
    let mut slots: Vec<Option<FileSlot>> = (0..nodes.len()).map(|_| None).collect();
    for e in &plan.entries {
        if failed.contains(&e.node) {
            continue;
        }
        let shown = dirs.shown(&e.path);
        let made = match e.kind {
            EntryKind::Dir => dirs.make(&e.path, DIR_WHILE_RESTORING).map(|_| ()),
            EntryKind::File => dirs.make(parent(&e.path), DIR_UNLISTED).and_then(|dir| {
                let temp = create_temp(&dir, nodes[e.node].size)
                    .map_err(|err| EntryError::os(&shown, "create", err))?;
                slots[e.node] = Some(FileSlot {
                    dir: parent(&e.path).to_path_buf(),
                    temp,
                    shown,
                });
                Ok(())
            }),
            EntryKind::HardLink { .. } | EntryKind::Symlink | EntryKind::Special => {
                dirs.make(parent(&e.path), DIR_UNLISTED).map(|_| ())
            }
        };
        if let Err(err) = made {
            report.errors.push(err.to_string());
            failed.insert(e.node);
        }
    }
    slots
}

/// Removes the temporary file of a file that failed.
pub(super) fn discard_file(dirs: &Dirs, slot: &FileSlot) {
    if let Ok(dir) = dirs.get(&slot.dir) {
        discard(&dir, &slot.temp.name);
    }
}

/// Puts every file, hard link, symlink, FIFO, socket and device node in place with its
/// metadata, then gives directories theirs. Files in `failed` are skipped (their temporary
/// files already removed), and so are their other names. `report.bytes` becomes the size of
/// the files put in place (each inode once): bytes written into a file that then failed were
/// not restored.
pub(super) fn finish(
    nodes: &[Node],
    plan: &RestorePlan,
    dirs: &Dirs,
    slots: &[Option<FileSlot>],
    failed: &BTreeSet<usize>,
    report: &mut RestoreReport,
) {
    let privileges = Privileges::of_process();
    let mut notes = MetaNotes::default();
    report.bytes = 0;
    let mut links: HashMap<usize, Vec<&PlannedEntry>> = HashMap::new();
    for e in &plan.entries {
        if let EntryKind::HardLink { to } = e.kind
            && !failed.contains(&e.node)
        {
            links.entry(to).or_default().push(e);
        }
    }
    for e in plan.entries.iter().filter(|e| e.kind == EntryKind::File) {
        let others = links.remove(&e.node).unwrap_or_default();
        let slot = match &slots[e.node] {
            Some(slot) if !failed.contains(&e.node) => slot,
            _ => {
                link_source_failed(dirs, &others, &dirs.shown(&e.path), report);
                continue;
            }
        };
        let dir = match finish_file(dirs, slot, &nodes[e.node], privileges, &mut notes) {
            Ok(dir) => dir,
            Err(err) => {
                report.errors.push(err.to_string());
                link_source_failed(dirs, &others, &slot.shown, report);
                continue;
            }
        };
        report.files += link_others(dirs, &dir, &slot.temp.name, &others, "file", report);
        match put_in_place(&dir, &slot.temp.name, name(&e.path), "file", &slot.shown) {
            Ok(()) => {
                report.files += 1;
                report.bytes += nodes[e.node].size;
            }
            Err(err) => report.errors.push(err.to_string()),
        }
    }

    for e in plan.entries.iter().filter(|e| e.kind == EntryKind::Symlink) {
        if failed.contains(&e.node) {
            continue;
        }
        let shown = dirs.shown(&e.path);
        let node = &nodes[e.node];
        let made = dirs.get(parent(&e.path)).and_then(|dir| {
            let temp = symlink_temp(&dir, node.target_bytes().unwrap_or_default())
                .map_err(|err| EntryError::os(&shown, "create symlink", err))?;
            apply_to_symlink(&dir, &temp, node, privileges, &shown, &mut notes);
            put_in_place(&dir, &temp, name(&e.path), "symlink", &shown)
        });
        match made {
            Ok(()) => report.symlinks += 1,
            Err(err) => report.errors.push(err.to_string()),
        }
    }

    for e in plan.entries.iter().filter(|e| e.kind == EntryKind::Special) {
        let others = links.remove(&e.node).unwrap_or_default();
        let shown = dirs.shown(&e.path);
        if failed.contains(&e.node) {
            link_source_failed(dirs, &others, &shown, report);
            continue;
        }
        let node = &nodes[e.node];
        let made = dirs.get(parent(&e.path)).and_then(|dir| {
            let temp = special_temp(&dir, node).map_err(|err| match err {
                Errno::PERM if matches!(node.kind, NodeKind::CharDevice | NodeKind::BlockDevice) => {
                    EntryError::DeviceNeedsRoot {
                        path: shown.clone(),
                        kind: node.kind.name(),
                    }
                }
                err => EntryError::os(&shown, "create", err),
            })?;
            apply_to_special(&dir, &temp, node, privileges, &shown, &mut notes)?;
            Ok((dir, temp.name))
        });
        let (dir, temp) = match made {
            Ok(made) => made,
            Err(err) => {
                report.errors.push(err.to_string());
                link_source_failed(dirs, &others, &shown, report);
                continue;
            }
        };
        report.special_files += link_others(dirs, &dir, &temp, &others, node.kind.name(), report);
        match put_in_place(&dir, &temp, name(&e.path), node.kind.name(), &shown) {
            Ok(()) => report.special_files += 1,
            Err(err) => report.errors.push(err.to_string()),
        }
    }

    let mut dir_entries: Vec<&PlannedEntry> = plan
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::Dir && !failed.contains(&e.node))
        .collect();
    dir_entries.sort_by_key(|e| std::cmp::Reverse(e.path.components().count()));
    // What the snapshot puts in each directory: never removed as a leftover, whatever its name.
    let mut planned: HashMap<&Path, HashSet<&OsStr>> = HashMap::new();
    for e in &plan.entries {
        planned.entry(parent(&e.path)).or_default().insert(name(&e.path));
    }
    let (mut stale_temps, mut older_temps) = (0, 0);
    for e in dir_entries {
        match dirs.get(&e.path) {
            Ok(fd) => {
                // Every file of this restore is in place by now: what still has a temporary
                // name was left by an interrupted restore. Removed before the directory's
                // times are set, since removing changes them.
                let (removed, older) = remove_stale_temps(&fd, planned.get(e.path.as_path()));
                stale_temps += removed;
                older_temps += older;
                apply_to_fd(
                    fd.as_fd(),
                    &nodes[e.node],
                    privileges,
                    &dirs.shown(&e.path),
                    &mut notes,
                );
                report.dirs += 1;
            }
            Err(err) => report.errors.push(err.to_string()),
        }
    }

    report.errors.extend(notes.errors);
    if older_temps > 0 {
        report.warnings.push(format!(
            "left {older_temps} file(s) named like an earlier release's restore temporaries \
             ({TEMP_PREFIX} + 16 hex digits, without check digits) in the restored directories: \
             delete them unless someone else made them"
        ));
    }
    if stale_temps > 0 {
        report.warnings.push(format!(
            "removed {stale_temps} temporary file(s) ({TEMP_PREFIX}…) an interrupted restore had \
             left in the restored directories"
        ));
    }
    if notes.xattrs_need_root > 0 {
        report.warnings.push(format!(
            "{} extended attributes in the trusted. and security. namespaces were not restored: \
             setting them needs root",
            notes.xattrs_need_root
        ));
    }
}

/// Gives the entry under the temporary name `temp` in `dir` its other names (`others`, hard
/// links of one inode), each linked under a temporary name in its own directory and renamed
/// into place; returns how many were put in place. `kind` names the entry in errors.
fn link_others(
    dirs: &Dirs,
    dir: &OwnedFd,
    temp: &OsStr,
    others: &[&PlannedEntry],
    kind: &'static str,
    report: &mut RestoreReport,
) -> u64 {
    let mut linked = 0;
    for other in others {
        let shown = dirs.shown(&other.path);
        let done = dirs.get(parent(&other.path)).and_then(|to_dir| {
            let name_temp =
                link_temp(dir, temp, &to_dir).map_err(|err| EntryError::os(&shown, "link", err))?;
            put_in_place(&to_dir, &name_temp, name(&other.path), kind, &shown)
        });
        match done {
            Ok(()) => linked += 1,
            Err(err) => report.errors.push(err.to_string()),
        }
    }
    linked
}

/// Reports each of `others` as not restored because the name they are links to (`to`, as
/// shown) could not be.
fn link_source_failed(dirs: &Dirs, others: &[&PlannedEntry], to: &str, report: &mut RestoreReport) {
    for other in others {
        report.errors.push(
            EntryError::LinkSourceFailed {
                path: dirs.shown(&other.path),
                to: to.to_string(),
            }
            .to_string(),
        );
    }
}

/// Removes the entries in `dir` other than directories (files, symlinks, FIFOs, sockets,
/// device nodes) named as a restore names its temporary files ([`super::apply::temporary_name`], check digits included), but for the names the
/// snapshot itself puts there (`planned`); never a directory, never another name. Returns how
/// many, and how many names look like an earlier release's temporaries (no check digits),
/// which are left. Errors only leave them in place.
fn remove_stale_temps(dir: &OwnedFd, planned: Option<&HashSet<&OsStr>>) -> (usize, usize) {
    let Ok(mut listing) = rustix::fs::Dir::read_from(dir) else {
        return (0, 0);
    };
    let mut stale = Vec::new();
    let mut older = 0;
    while let Some(Ok(entry)) = listing.next() {
        let name = entry.file_name().to_bytes();
        let ours = planned.is_some_and(|p| p.contains(OsStr::from_bytes(name)));
        let is_temp = !ours && is_temporary_name(name);
        if !ours && !is_temp && is_older_temporary_name(name) {
            older += 1;
        }
        if is_temp && entry.file_type() != FileType::Directory {
            stale.push(entry.file_name().to_owned());
        }
    }
    let removed = stale
        .iter()
        .filter(|name| rustix::fs::unlinkat(dir, name.as_c_str(), AtFlags::empty()).is_ok())
        .count();
    (removed, older)
}

/// Gives a file its metadata through its own handle; returns its directory's handle, for
/// putting it in place.
fn finish_file(
    dirs: &Dirs,
    slot: &FileSlot,
    node: &Node,
    privileges: Privileges,
    notes: &mut MetaNotes,
) -> Result<std::sync::Arc<std::os::fd::OwnedFd>, EntryError> {
    let dir = dirs.get(&slot.dir)?;
    // Not discarded on failure: whatever holds the name now is not the restore's.
    let fd = open_temp(&dir, &slot.temp, rustix::fs::OFlags::RDONLY, &slot.shown)?;
    apply_to_fd(fd.as_fd(), node, privileges, &slot.shown, notes);
    Ok(dir)
}
