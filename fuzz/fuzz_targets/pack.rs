//! A pack's plaintext as its writer could have made it: anyone holding the repository's public
//! recipient can encrypt a pack, so everything after decryption is untrusted. Opens it whole
//! (the check and repair path) and streamed (the restore path), reads its blob list and every
//! blob the list names; nothing may panic, hang or allocate beyond the pack's own size.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use lifeboat_backup::blob::PackId;
use lifeboat_backup::crypto::RepoKey;
use lifeboat_backup::pack::{OpenPack, PackStream, PackedBlob};

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
    // The restore's path: entries in offset order, each decoded into a buffer of its raw size.
    listed.sort_by_key(|b| b.offset);
    listed.dedup_by_key(|b| b.offset);
    let Ok(mut stream) = PackStream::open(key, "data/fuzz", &ciphertext[..]) else {
        return;
    };
    let mut frame = Vec::new();
    let mut used: Vec<PackedBlob> = Vec::new();
    for entry in &listed {
        let mut out = vec![0u8; entry.raw_length as usize];
        match stream.decode_into(entry, &mut frame, &mut out) {
            Ok(()) => used.push(*entry),
            Err(_) => break,
        }
    }
    let _ = stream.finish(&used);
});
