//! Sources: things that feed the engine. Each turns its data into tree nodes and blobs through
//! a [`crate::session::Session`]; the engine itself knows none of them.

pub mod files;
