//! Watches: events from a resourceVersion, selectors, bookmarks and 410 Gone.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, WatchEvent, WatchParams};
use serde_json::json;

use crate::common::*;

/// Collects `(type, name)` of watch events until `n` are seen or 15 s pass.
async fn collect(api: &Api<ConfigMap>, wp: &WatchParams, rv: &str, n: usize) -> Vec<(String, String)> {
    let stream = api.watch(wp, rv).await.expect("watch");
    let mut stream = Box::pin(stream);
    let mut out = Vec::new();
    let deadline = tokio::time::sleep(Duration::from_secs(15));
    tokio::pin!(deadline);
    while out.len() < n {
        tokio::select! {
            ev = stream.try_next() => match ev.expect("watch stream") {
                Some(WatchEvent::Added(o)) => out.push(("ADDED".into(), o.name_any())),
                Some(WatchEvent::Modified(o)) => out.push(("MODIFIED".into(), o.name_any())),
                Some(WatchEvent::Deleted(o)) => out.push(("DELETED".into(), o.name_any())),
                Some(WatchEvent::Bookmark(_)) => {}
                Some(WatchEvent::Error(e)) => out.push(("ERROR".into(), e.code.to_string())),
                None => break,
            },
            _ = &mut deadline => break,
        }
    }
    out
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

#[tokio::test]
async fn watch_from_a_resource_version_sees_added_modified_deleted() {
    let (c, ns) = cluster_ns("watch").await;
    let api: Api<ConfigMap> = Api::namespaced(c.client(), &ns);
    let rv = api
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");
    create_cm(&api, "w", json!({"test": "watch"})).await;
    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "2"}})),
    )
    .await
    .expect("patch");
    api.delete("w", &DeleteParams::default()).await.expect("delete");
    // The selector leaves out objects a real cluster's controllers add to new namespaces.
    let wp = WatchParams::default().labels("test=watch").timeout(20);
    let seen = collect(&api, &wp, &rv, 3).await;
    assert_eq!(
        seen,
        pairs(&[("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")])
    );
}

#[tokio::test]
async fn watch_follows_live_changes_with_a_label_selector() {
    let (c, ns) = cluster_ns("watchsel").await;
    let api: Api<ConfigMap> = Api::namespaced(c.client(), &ns);
    let rv = api
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");
    let wp = WatchParams::default().labels("watched=yes").timeout(20);
    let watcher = {
        let api = api.clone();
        tokio::spawn(async move { collect(&api, &wp, &rv, 2).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    create_cm(&api, "ignored", json!({"watched": "no"})).await;
    create_cm(&api, "seen", json!({"watched": "yes"})).await;
    // Leaving the selector is seen as a deletion.
    api.patch(
        "seen",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"watched": "no"}}})),
    )
    .await
    .expect("relabel");
    let seen = watcher.await.expect("watch task");
    assert_eq!(seen, pairs(&[("ADDED", "seen"), ("DELETED", "seen")]));
}

#[tokio::test]
async fn watch_from_a_compacted_version_is_gone() {
    let (c, ns) = cluster_ns("gone").await;
    let api: Api<ConfigMap> = Api::namespaced(c.client(), &ns);
    // "1" is long compacted (or outside the watch cache) on any server that has run a while.
    let result = api.watch(&WatchParams::default().timeout(10), "1").await;
    let first = match result {
        Err(kube::Error::Api(s)) => s.code,
        Err(e) => panic!("unexpected error {e}"),
        Ok(stream) => match Box::pin(stream).try_next().await {
            Ok(Some(WatchEvent::Error(s))) => s.code,
            Err(kube::Error::Api(s)) => s.code,
            other => panic!("expected a 410, got {other:?}"),
        },
    };
    assert_eq!(first, 410);
}

#[tokio::test]
async fn bookmarks_when_asked() {
    let (c, ns) = cluster_ns("bookmark").await;
    if c.is_real() {
        return skip(
            "bookmarks_when_asked",
            "a real server sends bookmarks about once a minute",
        );
    }
    let api: Api<ConfigMap> = Api::namespaced(c.client(), &ns);
    let rv = api
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");
    let stream = api
        .watch(
            &WatchParams {
                bookmarks: true,
                ..WatchParams::default()
            }
            .timeout(10),
            &rv,
        )
        .await
        .expect("watch");
    let mut stream = Box::pin(stream);
    let bookmark = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(ev) = stream.next().await {
            if let Ok(WatchEvent::Bookmark(b)) = ev {
                return Some(b);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .expect("a bookmark");
    assert!(!bookmark.metadata.resource_version.is_empty());
}

#[tokio::test]
async fn watch_from_a_future_resource_version_fails_as_too_large() {
    let (c, ns) = cluster_ns("watchahead").await;
    let api: Api<ConfigMap> = Api::namespaced(c.client(), &ns);
    let rv: u64 = api
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .and_then(|v| v.parse().ok())
        .expect("numeric rv");
    // After a short wait for the server to catch up, a "Too large resource version" 504.
    let events = collect(&api, &WatchParams::default(), &(rv + 10_000_000).to_string(), 1).await;
    assert_eq!(events, pairs(&[("ERROR", "504")]));
}
