//! The tracing subscriber every Lifeboat binary installs survives a span held entered across
//! an `.await` in one task while other tasks ask for the current span. tracing-subscriber
//! 0.3.22 and 0.3.23 panic there ("tried to clone a span … that already closed",
//! tokio-rs/tracing#3514), which killed `drctl backup create` at `RUST_LOG=trace` with exit
//! 101; the workspace pins 0.3.20 until a fixed release. This fails if the pin is lifted to
//! a release with the fault.
#![allow(clippy::unwrap_used)]

use tracing_subscriber::util::SubscriberInitExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_held_across_await_do_not_panic_the_subscriber() {
    tracing_subscriber::registry().init();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        tasks.push(tokio::spawn(async {
            for _ in 0..2_000 {
                let _ = tracing::Span::current();
                tokio::task::yield_now().await;
            }
        }));
        tasks.push(tokio::spawn(async {
            for _ in 0..2_000 {
                let span = tracing::info_span!("held across an await");
                let _entered = span.enter();
                tokio::task::yield_now().await;
            }
        }));
    }
    let mut panicked = 0;
    for task in tasks {
        if task.await.is_err() {
            panicked += 1;
        }
    }
    assert_eq!(panicked, 0, "tasks panicked in the tracing subscriber");
}
