//! Small plain RADOS objects next to the images, for the few facts librbd has no place for
//! (which volume a CSI snapshot name belongs to). One object per fact, so each write is atomic
//! and nothing is shared between unrelated requests.

use crate::cluster::{Pool, cstring};
use crate::error::RbdError;

impl Pool {
    /// The content of object `name` (up to `max` bytes), or `None` if it does not exist.
    pub fn read_object(&self, name: &str, max: usize) -> Result<Option<Vec<u8>>, RbdError> {
        match self.ioctx().read(&cstring("object name", name)?, max) {
            Ok(buf) => Ok(Some(buf)),
            Err(libc::ENOENT) => Ok(None),
            Err(errno) => Err(self.object_error("read object", name, errno)),
        }
    }

    /// Creates or replaces object `name` with `data`, in one atomic write.
    pub fn write_object(&self, name: &str, data: &[u8]) -> Result<(), RbdError> {
        self.ioctx()
            .write_full(&cstring("object name", name)?, data)
            .map_err(|errno| self.object_error("write object", name, errno))
    }

    /// Removes object `name`; absent is fine.
    pub fn remove_object(&self, name: &str) -> Result<(), RbdError> {
        match self.ioctx().remove(&cstring("object name", name)?) {
            Ok(()) | Err(libc::ENOENT) => Ok(()),
            Err(errno) => Err(self.object_error("remove object", name, errno)),
        }
    }

    fn object_error(&self, op: &'static str, name: &str, errno: i32) -> RbdError {
        RbdError::Ceph {
            op,
            target: self.spec(name),
            errno,
        }
    }
}
