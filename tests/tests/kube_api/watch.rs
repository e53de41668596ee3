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
#[cfg_attr(
    kube_backend = "existing",
    ignore = "an existing cluster's etcd cannot be compacted from a test"
)]
async fn watch_from_a_compacted_version_is_gone() {
    let (c, ns) = cluster_ns("gone").await;
    let api: Api<ConfigMap> = Api::namespaced(c.client(), &ns);
    let before = api
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");
    create_cm(&api, "after-the-list", json!({"test": "gone"})).await;
    // Compact the storage past `before`, as etcd's periodic compaction would.
    if !c.compact().await.expect("compact the cluster's storage") {
        unsupported(
            "watch_from_a_compacted_version_is_gone",
            "an existing cluster's etcd cannot be compacted from a test",
        );
    }
    // Served from etcd or from the watch cache, a compacted version is an ERROR event with a
    // 410 Expired Status (or, on some versions, a 410 answer to the request itself).
    let wp = WatchParams::default().timeout(30);
    let first = match api.watch(&wp, &before).await {
        Err(kube::Error::Api(s)) => (s.code, s.reason.clone()),
        Err(e) => panic!("unexpected error {e}"),
        Ok(stream) => {
            let mut stream = Box::pin(stream);
            loop {
                match tokio::time::timeout(Duration::from_secs(30), stream.try_next()).await {
                    Ok(Ok(Some(WatchEvent::Error(s)))) => break (s.code, s.reason.clone()),
                    Ok(Ok(Some(WatchEvent::Bookmark(_)))) => continue,
                    Ok(Err(kube::Error::Api(s))) => break (s.code, s.reason.clone()),
                    other => panic!("expected a 410 for a compacted version, got {other:?}"),
                }
            }
        }
    };
    assert_eq!(first, (410, "Expired".to_string()));
}

#[tokio::test]
#[cfg_attr(
    not(kube_backend = "in_process"),
    ignore = "a real server sends bookmarks about once a minute"
)]
async fn bookmarks_when_asked() {
    let (c, ns) = cluster_ns("bookmark").await;
    if c.is_real() {
        unsupported(
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

/// The namespace's ConfigMaps list's resourceVersion.
async fn list_rv(api: &Api<ConfigMap>) -> u64 {
    api.list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .and_then(|v| v.parse().ok())
        .expect("numeric rv")
}

#[tokio::test]
async fn watch_from_a_future_resource_version_waits_for_it() {
    let (c, ns) = cluster_ns("watchahead").await;
    let api: Api<ConfigMap> = Api::namespaced(c.client(), &ns);
    let rv = list_rv(&api).await;
    // A plain watch ahead of the server is accepted at once (no 504, no 410, as the watch
    // cache does): it sees nothing, not even changes made meanwhile, until the server passes
    // that version, and ends at its timeout.
    let wp = WatchParams::default().labels("test=ahead").timeout(4);
    let watcher = {
        let api = api.clone();
        let from = (rv + 10_000_000).to_string();
        tokio::spawn(async move { collect(&api, &wp, &from, 1).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    create_cm(&api, "before-that-version", json!({"test": "ahead"})).await;
    assert_eq!(watcher.await.expect("watch task"), pairs(&[]));
}

#[tokio::test]
async fn list_at_a_future_resource_version_fails_as_too_large() {
    let (c, ns) = cluster_ns("listahead").await;
    let client = c.client_without_retries().await.expect("client");
    let api: Api<ConfigMap> = Api::namespaced(client, &ns);
    let rv = list_rv(&api).await;
    // Not older than a version the server has not reached: it waits a few seconds for it,
    // then answers 504 with the ResourceVersionTooLarge cause clients retry on.
    let wanted = (rv + 10_000_000).to_string();
    let lp = ListParams::default()
        .at(&wanted)
        .matching(kube::api::VersionMatch::NotOlderThan);
    let started = std::time::Instant::now();
    let err = match api.list(&lp).await {
        Err(kube::Error::Api(s)) => s,
        other => panic!("expected a 504, got {other:?}"),
    };
    assert_eq!((err.code, err.reason.as_str()), (504, "Timeout"), "{err:?}");
    assert!(err.message.contains("Too large resource version"), "{err:?}");
    let causes = err.details.map(|d| d.causes).unwrap_or_default();
    assert!(
        causes.iter().any(|c| c.reason == "ResourceVersionTooLarge"),
        "{causes:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the server waits for the version before giving up"
    );
}

#[tokio::test]
#[cfg_attr(
    not(kube_backend = "in_process"),
    ignore = "sendInitialEvents needs the WatchList feature gate, off by default before Kubernetes 1.34"
)]
async fn streaming_list_from_a_future_resource_version_fails_as_too_large() {
    let (c, ns) = cluster_ns("streamahead").await;
    if c.is_real() {
        unsupported(
            "streaming_list_from_a_future_resource_version_fails_as_too_large",
            "sendInitialEvents needs the WatchList feature gate, off by default before Kubernetes 1.34",
        );
    }
    let api: Api<ConfigMap> = Api::namespaced(c.client(), &ns);
    let rv = list_rv(&api).await;
    let wp = WatchParams::streaming_lists().timeout(20);
    let events = collect(&api, &wp, &(rv + 10_000_000).to_string(), 1).await;
    assert_eq!(events, pairs(&[("ERROR", "504")]));
}
