//! `keys/<id>` objects and what they hold. The first byte chooses: the bytes as a whole
//! object (age's header and payload parsers, with a user identity that is not the
//! recipient), or the bytes as the identity-file text inside a key that does open (wrapped to
//! the user's key first). Either is an error or a key, never a panic.
#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use age::secrecy::ExposeSecret;
use libfuzzer_sys::fuzz_target;
use lifeboat_backup::crypto::{KeyType, RepoKey, UserKey, UserRecipient};
use lifeboat_fuzz as _;

struct User {
    key: UserKey,
    recipient: UserRecipient,
}

static USER: LazyLock<User> = LazyLock::new(|| {
    let identity = age::x25519::Identity::generate();
    let text = identity.to_string();
    User {
        key: UserKey::identity_bytes(text.expose_secret().as_bytes(), Path::new("fuzz"))
            .expect("a generated identity parses"),
        recipient: UserRecipient::X25519(identity.to_public()),
    }
});

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    let user = &*USER;
    if mode & 1 == 0 {
        let _ = KeyType::of_age_file(rest);
        let _ = user.key.unwrap(rest, "keys/fuzz");
        return;
    }
    let Ok(wrapped) = user.recipient.wrap(rest, "keys/fuzz") else {
        return;
    };
    let opened = user
        .key
        .unwrap(&wrapped, "keys/fuzz")
        .expect("a key wrapped to this user opens")
        .expect("the key is this user's");
    assert_eq!(&opened[..], rest, "the key's content changed");
    let _ = RepoKey::from_identity_file_text(&String::from_utf8_lossy(&opened), "keys/fuzz");
});
