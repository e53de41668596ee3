//! How a [`Snapshot`] is stored: the JSON layout of docs/FORMAT.md, which every version has
//! written — `kind` and `meta` as plain strings — so repositories written before typed
//! metadata read unchanged, and older readers can read what this version writes.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{Snapshot, SnapshotDetails, Summary};
use crate::blob::{BlobId, SnapshotId};

/// The stored fields, borrowed for writing.
#[derive(serde::Serialize)]
struct ManifestOut<'a> {
    time: &'a DateTime<Utc>,
    hostname: &'a str,
    kind: &'a str,
    source: &'a str,
    paths: &'a [String],
    tags: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    meta: BTreeMap<String, String>,
    parent: &'a Option<SnapshotId>,
    tree: &'a [BlobId],
    summary: &'a Summary,
}

/// The stored fields, as read.
#[derive(serde::Deserialize)]
struct ManifestIn {
    time: DateTime<Utc>,
    hostname: String,
    kind: String,
    source: String,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    meta: BTreeMap<String, String>,
    #[serde(default)]
    parent: Option<SnapshotId>,
    tree: Vec<BlobId>,
    summary: Summary,
}

impl serde::Serialize for Snapshot {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (_, meta) = self.details.to_wire();
        ManifestOut {
            time: &self.time,
            hostname: &self.hostname,
            kind: self.details.kind(),
            source: &self.source,
            paths: &self.paths,
            tags: &self.tags,
            meta,
            parent: &self.parent,
            tree: &self.tree,
            summary: &self.summary,
        }
        .serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Snapshot {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let m = ManifestIn::deserialize(d)?;
        let details = SnapshotDetails::from_wire(m.kind, m.meta).map_err(serde::de::Error::custom)?;
        Ok(Self {
            id: None,
            time: m.time,
            hostname: m.hostname,
            details,
            source: m.source,
            paths: m.paths,
            tags: m.tags,
            parent: m.parent,
            tree: m.tree,
            summary: m.summary,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{EtcdDelta, EtcdFull, FilesBackup, KubernetesObjects, VolumeImage};

    /// Manifests as the code before typed metadata wrote them (docs/FORMAT.md), one per kind:
    /// each reads into its variant and writes back to the same JSON value.
    #[test]
    fn manifests_of_every_kind_round_trip_through_the_stored_layout() {
        let base = "0560319572954cd148efdfb623b00b35266ad24e8eca8e334e7fa412acc0ffc4";
        let summary = r#""summary":{"files":1,"dirs":0,"bytes":20512,"files_read":1,"new_bytes":20512,"stored_bytes":1600,"new_blobs":1,"duration_ms":12,"warnings":[]}"#;
        let cases: Vec<(String, SnapshotDetails)> = vec![
            (
                format!(
                    r#"{{"time":"2026-11-25T20:08:16Z","hostname":"node-1","kind":"files","source":"files:/data","paths":["/data"],"tags":{{"env":"prod"}},"parent":null,"tree":[],{summary}}}"#
                ),
                SnapshotDetails::Files(Default::default()),
            ),
            (
                format!(
                    r#"{{"time":"2026-12-04T19:08:16Z","hostname":"node-1","kind":"files","source":"files:/","paths":["/"],"tags":{{}},"meta":{{"exclude_caches":"true","excludes":"[\"*.tmp\",\"/var/cache\"]","one_file_system":"true"}},"parent":null,"tree":[],{summary}}}"#
                ),
                SnapshotDetails::Files(FilesBackup {
                    excludes: vec!["*.tmp".into(), "/var/cache".into()],
                    one_file_system: true,
                    exclude_caches: true,
                }),
            ),
            (
                format!(
                    r#"{{"time":"2026-11-25T20:08:16Z","hostname":"node-1","kind":"etcd","source":"etcd:9e190fc32020ecde","paths":["http://127.0.0.1:2379"],"tags":{{}},"meta":{{"cluster_id":"9e190fc32020ecde","endpoint":"http://127.0.0.1:2379","member_id":"47bbb608f36b1024","revision":"3","type":"full"}},"parent":null,"tree":[],{summary}}}"#
                ),
                SnapshotDetails::EtcdFull(EtcdFull {
                    cluster_id: "9e190fc32020ecde".into(),
                    member_id: "47bbb608f36b1024".into(),
                    endpoint: "http://127.0.0.1:2379".into(),
                    revision: 3,
                }),
            ),
            (
                format!(
                    r#"{{"time":"2026-11-25T20:08:16Z","hostname":"node-1","kind":"etcd","source":"etcd:9e190fc32020ecde","paths":["http://127.0.0.1:2379"],"tags":{{}},"meta":{{"base":"{base}","cluster_id":"9e190fc32020ecde","events":"2","first_revision":"4","last_revision":"5","revision":"5","type":"delta"}},"parent":"{base}","tree":[],{summary}}}"#
                ),
                SnapshotDetails::EtcdDelta(EtcdDelta {
                    cluster_id: "9e190fc32020ecde".into(),
                    base: base.parse().expect("id"),
                    first_revision: 4,
                    last_revision: 5,
                    events: 2,
                }),
            ),
            (
                format!(
                    r#"{{"time":"2026-11-25T20:08:16Z","hostname":"node-1","kind":"kubernetes","source":"kubernetes:a9bf","paths":[],"tags":{{"backup":"nightly"}},"meta":{{"backup":"nightly","cluster_id":"a9bf","items":"4"}},"parent":null,"tree":[],{summary}}}"#
                ),
                SnapshotDetails::Kubernetes(KubernetesObjects {
                    cluster_id: "a9bf".into(),
                    backup: "nightly".into(),
                    items: 4,
                }),
            ),
            (
                format!(
                    r#"{{"time":"2026-11-25T20:08:16Z","hostname":"node-1","kind":"volume","source":"rbd:f1/rbd/pvc-1","paths":["rbd/pvc-1"],"tags":{{}},"meta":{{"cluster_fsid":"f1","image":"pvc-1","image_id":"10ab","pool":"rbd","rbd_snapshot":"lifeboat.0123.20261125T200816Z","rbd_snapshot_id":"7","read":"incremental","read_bytes":"4194304","segment_size":"4194304","size":"1073741824","type":"rbd"}},"parent":null,"tree":[],{summary}}}"#
                ),
                SnapshotDetails::Volume(VolumeImage {
                    cluster_fsid: "f1".into(),
                    pool: "rbd".into(),
                    image: "pvc-1".into(),
                    image_id: "10ab".into(),
                    rbd_snapshot: "lifeboat.0123.20261125T200816Z".into(),
                    rbd_snapshot_id: 7,
                    size: 1 << 30,
                    segment_size: 4 << 20,
                    read: "incremental".into(),
                    read_bytes: 4 << 20,
                }),
            ),
            (
                format!(
                    r#"{{"time":"2026-11-25T20:08:16Z","hostname":"node-1","kind":"vm-disk","source":"vm:pvc-1","paths":[],"tags":{{}},"meta":{{"pool":"rbd"}},"parent":null,"tree":[],{summary}}}"#
                ),
                SnapshotDetails::Other {
                    kind: "vm-disk".into(),
                    meta: BTreeMap::from([("pool".to_string(), "rbd".to_string())]),
                },
            ),
        ];
        for (json, details) in cases {
            let snap: Snapshot = serde_json::from_str(&json).expect("reads");
            assert_eq!(snap.details, details, "{json}");
            let written: serde_json::Value = serde_json::to_value(&snap).expect("writes");
            let stored: serde_json::Value = serde_json::from_str(&json).expect("json");
            assert_eq!(written, stored, "writing back changes the manifest");
        }
    }

    #[test]
    fn a_known_kind_with_bad_metadata_is_an_error_naming_the_key() {
        let json = r#"{"time":"2026-11-25T20:08:16Z","hostname":"h","kind":"etcd","source":"etcd:1","meta":{"type":"delta","cluster_id":"1","base":"zz","first_revision":"4","last_revision":"5","events":"2"},"tree":[],"summary":{"files":1,"dirs":0,"bytes":0,"files_read":0,"new_bytes":0,"stored_bytes":0,"new_blobs":0,"duration_ms":0}}"#;
        let err = serde_json::from_str::<Snapshot>(json).expect_err("bad base");
        assert!(err.to_string().contains("base \"zz\""), "{err}");
        let json = json.replace(r#""type":"delta""#, r#""type":"diff""#);
        let err = serde_json::from_str::<Snapshot>(&json).expect_err("bad type");
        assert!(err.to_string().contains("\"diff\""), "{err}");
    }
}
