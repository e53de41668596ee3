//! The backup engine: where every kind of Lifeboat backup (Kubernetes objects, PV data, etcd)
//! is stored.
//!
//! It knows nothing of Kubernetes, CSI or clusters: sources feed it files and streams, and it
//! keeps them in a repository on object storage — chunked by content (FastCDC), named by keyed
//! BLAKE3, compressed (zstd), grouped into packs and encrypted (age). See `docs/FORMAT.md`.

mod aligned;
pub mod blob;
mod bufread;
pub mod chunker;
pub mod copy;
pub mod crypto;
pub mod index;
pub mod maintenance;
pub mod pack;
pub mod repository;
pub mod restore;
pub mod snapshot;
pub mod store;

pub use repository::{RepoError, Repository};
pub mod progress;
pub mod read;
pub mod session;
pub mod sources;
