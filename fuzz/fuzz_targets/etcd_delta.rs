//! An etcd delta's event listing (JSON lines with base64 keys and values) as stored in the
//! repository: parsed, with every key and value decoded; and the same bytes as a database
//! file's trailer check and revision reader (`RevisionScanner`, bbolt pages). A listing that
//! parses has keys and values that decode; the revision read does not depend on how the bytes
//! are cut into pieces.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeboat_etcd::DeltaEvent;
use lifeboat_fuzz as _;

fuzz_target!(|data: &[u8]| {
    if let Ok(events) = DeltaEvent::parse_listing(data, "fuzz") {
        for event in &events {
            assert!(event.key_bytes().is_ok(), "a parsed event's key does not decode");
            assert!(
                event.value_bytes().is_ok(),
                "a parsed event's value does not decode"
            );
        }
    }
    let _ = lifeboat_etcd::verify_trailer(data);
    let mut whole = lifeboat_etcd::RevisionScanner::new();
    whole.feed(data);
    let mut cut = lifeboat_etcd::RevisionScanner::new();
    let at = data.first().map_or(0, |b| usize::from(*b) * 97 % (data.len() + 1));
    cut.feed(&data[..at]);
    cut.feed(&data[at..]);
    assert_eq!(whole.revision(), cut.revision(), "the revision depends on the pieces");
});
