//! Deltas: the changes etcd made after a full snapshot, stored as links of a chain.
//!
//! Each delta is an `etcd` snapshot ([`EtcdDelta`] details) naming its full snapshot (`base`),
//! the previous link of the chain (`parent`) and the revisions it covers. Its tree holds one
//! file, [`DELTA_PATH`]: JSON lines, one [`DeltaEvent`] each, in revision order.

use base64::Engine;
use lifeboat_backup::snapshot::{EtcdDelta, Node, Snapshot, SnapshotDetails, Summary};
use lifeboat_backup::{IndexedRepository, Source, Written, archiver::Writer};

use crate::{DELTA_PATH, ETCD_CHUNKS, EtcdError};

/// One change, as a JSON line: keys and values in base64.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeltaEvent {
    /// The revision that made the change.
    pub rev: i64,
    /// `true` for a put, `false` for a delete.
    pub put: bool,
    /// The key (base64).
    pub key: String,
    /// The new value (base64; empty for deletes).
    #[serde(default)]
    pub value: String,
}

impl DeltaEvent {
    /// The event for a change etcd reported.
    pub fn new(rev: i64, put: bool, key: &[u8], value: &[u8]) -> Self {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        Self {
            rev,
            put,
            key: b64(key),
            value: if put { b64(value) } else { String::new() },
        }
    }

    /// The raw key. A key that is not base64 is damage, never an empty key: replaying it
    /// would write (or delete) the wrong key.
    pub fn key_bytes(&self) -> Result<Vec<u8>, base64::DecodeError> {
        base64::engine::general_purpose::STANDARD.decode(&self.key)
    }

    /// The raw value; damage as for [`DeltaEvent::key_bytes`].
    pub fn value_bytes(&self) -> Result<Vec<u8>, base64::DecodeError> {
        base64::engine::general_purpose::STANDARD.decode(&self.value)
    }

    /// Reads a delta's listing; `delta` names it in errors.
    pub fn parse_listing(listing: &[u8], delta: &str) -> Result<Vec<Self>, EtcdError> {
        listing
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|line| {
                let event: Self = serde_json::from_slice(line).map_err(|e| EtcdError::CorruptDelta {
                    delta: delta.to_string(),
                    problem: format!("a line is not an event: {e}"),
                })?;
                // Decoded now, so a damaged key stops the restore before anything is replayed.
                let bad = |what: &str, e: base64::DecodeError| EtcdError::CorruptDelta {
                    delta: delta.to_string(),
                    problem: format!("the {what} of revision {} is not base64 ({e})", event.rev),
                };
                event.key_bytes().map_err(|e| bad("key", e))?;
                event.value_bytes().map_err(|e| bad("value", e))?;
                Ok(event)
            })
            .collect()
    }
}

/// One delta of a chain: the events received since the previous link, written as one
/// snapshot by [`lifeboat_backup::Repository::backup`].
pub struct DeltaBatch {
    /// The previous link (the full snapshot for the first delta).
    pub parent: Snapshot,
    /// The full snapshot the chain continues.
    pub base: Snapshot,
    /// The cluster id, 16 hex digits.
    pub cluster_id: String,
    /// The events, in revision order.
    pub events: Vec<DeltaEvent>,
}

impl Source for DeltaBatch {
    type Error = EtcdError;

    fn source_id(&self) -> String {
        format!("etcd:{}", self.cluster_id)
    }

    fn purpose(&self) -> &'static str {
        "etcd delta"
    }

    async fn parent(&self, _repo: &IndexedRepository) -> Result<Option<Snapshot>, EtcdError> {
        Ok(Some(self.parent.clone()))
    }

    async fn write(&mut self, writer: &Writer<'_>) -> Result<Written, EtcdError> {
        let mut listing = Vec::new();
        for e in &self.events {
            serde_json::to_writer(&mut listing, e).map_err(|e| EtcdError::CorruptDelta {
                delta: "being written".to_string(),
                problem: e.to_string(),
            })?;
            listing.push(b'\n');
        }
        let stored = writer
            .store_stream(std::io::Cursor::new(listing), ETCD_CHUNKS)
            .await?;
        let size = stored.size;
        let node: Node = stored.node(DELTA_PATH, writer.time());
        let base = self.base.id.ok_or_else(|| EtcdError::CorruptDelta {
            delta: "being written".to_string(),
            problem: "its full snapshot has no id".to_string(),
        })?;
        Ok(Written {
            nodes: vec![node],
            details: SnapshotDetails::EtcdDelta(EtcdDelta {
                cluster_id: self.cluster_id.clone(),
                base,
                first_revision: self.events.first().map_or(0, |e| e.rev),
                last_revision: self.events.last().map_or(0, |e| e.rev),
                events: self.events.len() as u64,
            }),
            paths: self.parent.paths.clone(),
            summary: Summary {
                files: 1,
                bytes: size,
                ..Summary::default()
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_are_not_base64_are_damage_not_empty_keys() {
        let good = DeltaEvent::new(7, true, b"\x00\xffkey", b"value");
        assert_eq!(good.key_bytes().expect("decodes"), b"\x00\xffkey");
        let mut listing = serde_json::to_vec(&good).expect("json");
        listing.push(b'\n');
        assert_eq!(
            DeltaEvent::parse_listing(&listing, "d").expect("parses"),
            vec![good.clone()]
        );

        let bad = DeltaEvent {
            key: "not base64!".to_string(),
            ..good
        };
        assert!(bad.key_bytes().is_err());
        let listing = serde_json::to_vec(&bad).expect("json");
        let err = DeltaEvent::parse_listing(&listing, "abc").expect_err("damage");
        assert!(
            matches!(&err, EtcdError::CorruptDelta { delta, problem } if delta == "abc" && problem.contains("key of revision 7")),
            "{err}"
        );
    }
}
