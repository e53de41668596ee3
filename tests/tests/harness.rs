//! The harness itself: a service that cannot start fails fast, naming itself and its log.

use std::time::{Duration, Instant};

use lifeboat_tests::{Etcd, HarnessError};

#[test]
fn a_service_that_cannot_start_fails_fast_with_its_log_tail() {
    let started = Instant::now();
    let err = Etcd::start_with(false, &["--no-such-flag"])
        .err()
        .expect("etcd started with a bogus flag");
    let text = err.to_string();
    assert!(
        matches!(err, HarnessError::Start { ref service, .. } if service == "etcd"),
        "{text}"
    );
    assert!(text.contains("exited before"), "{text}");
    assert!(text.contains("no-such-flag"), "log tail missing from: {text}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?} to notice",
        started.elapsed()
    );
}

#[test]
fn names_are_unique_and_valid_for_pools_and_buckets() {
    let a = lifeboat_tests::unique_name("t");
    let b = lifeboat_tests::unique_name("t");
    assert_ne!(a, b);
    assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'), "{a}");
}
