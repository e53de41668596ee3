//! An `index/<id>` object's JSON (after age and zstd): parsed, merged into the in-memory
//! index with itself (duplicates collapse) and every blob looked up.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeboat_backup::index::{Index, IndexFile};
use lifeboat_fuzz as _;

fuzz_target!(|json: &[u8]| {
    let Ok(file) = serde_json::from_slice::<IndexFile>(json) else {
        return;
    };
    let index = Index::from_files([&file, &file]);
    for pack in &file.packs {
        for blob in &pack.blobs {
            assert!(index.contains(&blob.id), "a listed blob is not found");
            let _ = index.get(&blob.id);
        }
    }
    let _ = index.blobs().count();
    let _ = index.memory_bytes();
});
