//! The backup engine: where every kind of Lifeboat backup (Kubernetes objects, PV data, etcd)
//! is stored.
//!
//! It knows nothing of Kubernetes, CSI, etcd or clusters: sources ([`Source`]) feed it trees of
//! files and streams through one lifecycle ([`Repository::backup`]), sinks ([`Sink`]) take
//! them back out ([`Repository::restore`]), and it keeps them in a repository on object
//! storage — chunked by content (FastCDC), named by keyed BLAKE3, compressed (zstd), grouped
//! into packs and encrypted (age). See `docs/FORMAT.md`, and `docs/sources.md` for adding a
//! source.

mod aligned;
pub mod archiver;
pub mod blob;
mod bufread;
pub mod chunker;
pub mod copy;
pub mod crypto;
pub mod duration;
pub mod index;
pub mod maintenance;
pub mod pack;
pub mod repository;
pub mod restore;
pub mod snapshot;
pub mod store;

pub use archiver::BackupOptions;
pub use repository::{IndexedRepository, RepoError, Repository};
pub use restore::{Sink, SnapshotReader};
pub use sources::{Source, Written};
pub mod progress;
pub mod read;
pub mod session;
pub mod sources;
