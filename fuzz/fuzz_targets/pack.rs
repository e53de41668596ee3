//! A pack's plaintext as its writer could have made it: anyone holding the repository's public
//! recipient can encrypt a pack, so everything after decryption is untrusted. Opens it whole
//! (the check and repair path) and streamed (the restore path), reads its blob list and every
//! blob the list names; nothing may panic, hang, or size an allocation from a length no
//! writer makes (the crate's allocator aborts past 1 GiB).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use lifeboat_backup::blob::PackId;
use lifeboat_backup::crypto::RepoKey;
use lifeboat_backup::pack::{OpenPack, PackStream};
use lifeboat_fuzz as _;

static KEY: LazyLock<RepoKey> = LazyLock::new(RepoKey::generate);

fuzz_target!(|plaintext: &[u8]| {
    let key = &*KEY;
    let Ok(ciphertext) = key.encrypt(plaintext, "data/fuzz") else {
        return;
    };
    let id = PackId::of_parts(&[&ciphertext]);
    let Ok(pack) = OpenPack::open(key, &id, "data/fuzz", &[&ciphertext]) else {
        return;
    };
    let Ok((_, mut listed)) = pack.trailer() else {
        return;
    };
    for entry in &listed {
        let _ = pack.blob(entry, key.chunk_id_key());
    }
    // The restore's path (restore/items.rs, restore/packs.rs): entries in offset order, each
    // refused before anything is sized from it when no writer makes it, decoded into a buffer
    // of its raw size; a blob that fails does not stop the ones after it, and the end of the
    // stream is checked against every entry asked for.
    listed.sort_by_key(|b| b.offset);
    listed.dedup_by_key(|b| b.offset);
    let Ok(mut stream) = PackStream::open(key, "data/fuzz", &ciphertext[..]) else {
        return;
    };
    let mut frame = Vec::new();
    for entry in &listed {
        if entry.impossible_length().is_some() {
            continue;
        }
        let mut out = vec![0u8; entry.raw_length as usize];
        let _ = stream.decode_into(entry, &mut frame, &mut out);
    }
    let _ = stream.finish(&listed);
});
