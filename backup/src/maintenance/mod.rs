//! Keeping a repository healthy and small: `check`, `forget` (retention), `prune`,
//! `repair index` and `stats`. Each computes a plan or report as plain data first; the caller prints it for
//! `--dry-run` or applies it.

pub mod check;
pub mod forget;
pub mod object_lock;
pub mod prune;
pub mod repair;
pub mod stats;
