//! Kubernetes objects backup and restore through the library, against the Kubernetes API
//! test server (or a real API server: see docs/testing.md), with a repository on local disk.

mod common;
mod conflicts;
mod discovery;
mod filters_and_errors;
mod round_trip;
mod selection;
