//! What a container orchestrator sends the CSI driver as text: volume, snapshot and group
//! snapshot ids, list paging tokens, and StorageClass parameters (`key=value` lines). An id
//! that parses is one the driver could have made: it prints back to itself, and an NFS
//! volume's directory has only plain names (a `DeleteVolume` can never reach outside it).
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use lifeboat_csi::controller::paging::decode_token;
use lifeboat_csi::ids::{GroupSnapshotId, SnapshotId, VolumeId};
use lifeboat_csi::nfs::NfsParams;
use lifeboat_csi::rbd::params::RbdParams;
use lifeboat_csi::rbd::qos::Qos;
use lifeboat_fuzz as _;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(id) = VolumeId::parse(&text) {
        assert_eq!(id.to_string(), text, "a volume id does not print back to itself");
        if let VolumeId::Nfs(v) = &id {
            assert!(
                v.dir.split('/').all(|c| !c.is_empty() && c != "." && c != ".."),
                "NFS directory {:?} leaves its share",
                v.dir
            );
        }
    }
    if let Ok(id) = SnapshotId::parse(&text) {
        assert_eq!(
            SnapshotId::parse(&id.to_string()).ok(),
            Some(id),
            "snapshot id round trip"
        );
    }
    if let Ok(id) = GroupSnapshotId::parse(&text) {
        let again = GroupSnapshotId::parse(&id.to_string()).expect("a group id prints back");
        assert_eq!(again.to_string(), id.to_string(), "group snapshot id round trip");
    }
    let _ = decode_token(&text, |t| !t.is_empty());
    let params: HashMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let _ = RbdParams::parse(&params);
    let _ = NfsParams::parse(&params);
    let _ = Qos::parse(&params);
});
