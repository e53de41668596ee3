//! Reading extended attributes (and with them POSIX ACLs, which Linux keeps as
//! `system.posix_acl_access` and `system.posix_acl_default`) without following symlinks.

use std::io;
use std::path::Path;

use rustix::io::Errno;

use crate::snapshot::Xattr;

/// Linux's limit on one value and on a name list (`XATTR_SIZE_MAX`, `XATTR_LIST_MAX`).
const XATTR_MAX: usize = 64 * 1024;

/// Reads the attributes of one path after another, reusing its buffers.
#[derive(Default)]
pub(super) struct XattrReader {
    names: Vec<u8>,
    value: Vec<u8>,
}

impl XattrReader {
    /// The attributes of `path` (not of what a symlink points to), in the order the
    /// filesystem lists them; empty where the filesystem has none or does not support them.
    pub(super) fn read(&mut self, path: &Path) -> io::Result<Vec<Xattr>> {
        if self.names.is_empty() {
            self.names = vec![0; XATTR_MAX];
            self.value = vec![0; XATTR_MAX];
        }
        let len = match rustix::fs::llistxattr(path, &mut self.names[..]) {
            Ok(len) => len,
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for name in self.names[..len].split(|b| *b == 0).filter(|n| !n.is_empty()) {
            let text = std::str::from_utf8(name).map_err(|_| {
                io::Error::other(format!(
                    "attribute name {:?} is not UTF-8",
                    String::from_utf8_lossy(name)
                ))
            })?;
            match rustix::fs::lgetxattr(path, name, &mut self.value[..]) {
                Ok(n) => out.push(Xattr {
                    name: text.to_string(),
                    value: self.value[..n].to_vec(),
                }),
                // Removed since it was listed.
                Err(Errno::NODATA) => {}
                Err(e) => return Err(io::Error::other(format!("read {text}: {e}"))),
            }
        }
        Ok(out)
    }
}
