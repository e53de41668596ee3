//! One error type for every librados/librbd call, carrying the object it was about.

/// A failed Ceph call, with what was being done and to which pool, image or snapshot.
///
/// The errno is kept so callers can map it to meaning (`ENOENT` → not found, `EEXIST` →
/// already exists, `EBUSY` → in use) without parsing text.
#[derive(Debug, thiserror::Error)]
pub enum RbdError {
    /// librados or librbd returned a negative errno.
    #[error("{op} {target}: {}", errno_text(*errno))]
    Ceph {
        /// The operation, e.g. `"create image"`.
        op: &'static str,
        /// The object it was about, e.g. `"rbd/vol-1"`.
        target: String,
        /// The positive errno value.
        errno: i32,
    },
    /// Connecting to the cluster failed (bad config, unreachable monitors, bad key).
    #[error("connect to Ceph as {user} with {config}: {message}")]
    Connect {
        /// The cephx user id (not the key).
        user: String,
        /// The config file used.
        config: String,
        /// What librados said.
        message: String,
    },
    /// A name contained a NUL byte and cannot be passed to C.
    #[error("{what} {name:?} contains a NUL byte")]
    InvalidName {
        /// Which kind of name, e.g. `"image name"`.
        what: &'static str,
        /// The offending name.
        name: String,
    },
}

impl RbdError {
    /// The errno behind this error, if it came from a Ceph call.
    pub fn errno(&self) -> Option<i32> {
        match self {
            RbdError::Ceph { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    /// True when the pool, image or snapshot does not exist.
    pub fn is_not_found(&self) -> bool {
        self.errno() == Some(libc::ENOENT)
    }

    /// True when the image or snapshot already exists.
    pub fn is_already_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }

    /// True when the object is in use (watchers, protected snapshot, children).
    pub fn is_busy(&self) -> bool {
        matches!(self.errno(), Some(libc::EBUSY) | Some(libc::ENOTEMPTY))
    }
}

/// `No such file or directory (errno 2)`: the C library's text once, with the number
/// (`std::io::Error` would add its own ` (os error 2)`).
pub(crate) fn errno_text(errno: i32) -> String {
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    let text = text
        .strip_suffix(&format!(" (os error {errno})"))
        .unwrap_or(&text);
    format!("{text} (errno {errno})")
}

/// Turns a C return code into a result, keeping the context for the message.
pub(crate) fn check(ret: i64, op: &'static str, target: impl FnOnce() -> String) -> Result<i64, RbdError> {
    if ret < 0 {
        Err(RbdError::Ceph {
            op,
            target: target(),
            errno: i32::try_from(-ret).unwrap_or(libc::EIO),
        })
    } else {
        Ok(ret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_errno_is_said_once() {
        let e = RbdError::Ceph {
            op: "open pool",
            target: "nosuch".to_string(),
            errno: libc::ENOENT,
        };
        assert_eq!(
            e.to_string(),
            "open pool nosuch: No such file or directory (errno 2)"
        );
    }
}
