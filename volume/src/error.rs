//! Why a volume backup or restore failed, naming the image and the fix.

use lifeboat_backup::RepoError;
use lifeboat_rbd::RbdError;

/// A volume backup or restore failure.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The repository failed (lock, store, index, a missing or damaged blob).
    #[error(transparent)]
    Repository(#[from] RepoError),
    /// A librados/librbd call failed; the message names the pool, image or snapshot.
    #[error(transparent)]
    Ceph(#[from] RbdError),
    /// The image to back up does not exist.
    #[error("RBD image {pool}/{image} does not exist; check the pool and image names (`rbd ls {pool}`)")]
    ImageNotFound {
        /// The pool.
        pool: String,
        /// The image.
        image: String,
    },
    /// The restore target exists and replacing it was not asked for.
    #[error(
        "RBD image {pool}/{image} already exists and was left as it is; restore into a new image name, or ask for it to be overwritten"
    )]
    TargetExists {
        /// The pool.
        pool: String,
        /// The image.
        image: String,
    },
    /// The snapshot given to a volume restore holds something else.
    #[error("snapshot {id} is a {kind} snapshot, not a volume")]
    NotAVolume {
        /// The snapshot.
        id: String,
        /// Its kind.
        kind: String,
    },
    /// The snapshot's volume node is damaged (a forged or corrupted tree).
    #[error("snapshot {id}: {why}")]
    Damaged {
        /// The snapshot.
        id: String,
        /// What is wrong.
        why: String,
    },
    /// The image is in an RBD group of someone else's (an image is in one group at a time).
    #[error("RBD image {pool}/{image} is in RBD group {group}; an image can be in one group at a time")]
    InGroup {
        /// The pool.
        pool: String,
        /// The image.
        image: String,
        /// The group it is in.
        group: String,
    },
    /// The recovery point given to a backup is of another image, or of an earlier image of
    /// that name.
    #[error("the group snapshot point given for RBD image {pool}/{image} is not of this image ({why})")]
    WrongPoint {
        /// The pool.
        pool: String,
        /// The image.
        image: String,
        /// What differs.
        why: String,
    },
    /// A worker thread or task failed.
    #[error("volume worker failed: {0}")]
    Task(String),
}
