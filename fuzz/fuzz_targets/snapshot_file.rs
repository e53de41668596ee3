//! `snapshots/<id>` manifests (JSON, after age and zstd), one per line, named by their line
//! number (`01…01` is line 1), so that etcd deltas can name their base and parent: parsed,
//! their typed details written back and re-read unchanged, and every etcd restore chain and
//! plan computed over the lot (gaps, loops and missing bases are errors, not panics).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeboat_backup::blob::Id;
use lifeboat_backup::snapshot::{Snapshot, SnapshotDetails};
use lifeboat_etcd::{RestorePoint, chain, plan_restore};
use lifeboat_fuzz as _;

fuzz_target!(|data: &[u8]| {
    let mut snapshots: Vec<Snapshot> = Vec::new();
    for (i, line) in data.split(|b| *b == b'\n').enumerate().take(16) {
        if let Ok(mut s) = serde_json::from_slice::<Snapshot>(line) {
            s.id = Some(Id([i as u8; 32]));
            snapshots.push(s);
        }
    }
    for s in &snapshots {
        let _ = (s.kind(), s.details.cluster_id());
        let (kind, meta) = s.details.to_wire();
        let again = SnapshotDetails::from_wire(kind, meta).expect("details written are read back");
        assert_eq!(again, s.details, "details changed through their stored form");
        let Ok((base, deltas)) = chain(&snapshots, s) else {
            continue;
        };
        for point in [
            RestorePoint::Snapshot,
            RestorePoint::Latest,
            RestorePoint::Revision(0),
            RestorePoint::Revision(i64::MAX),
            RestorePoint::Revision(i64::MIN),
        ] {
            let _ = plan_restore(s, &base, &deltas, point);
        }
    }
});
