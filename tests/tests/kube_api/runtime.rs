//! kube-runtime against the server: a Controller over a CRD, and a watcher that survives a
//! dropped watch and a 410 Gone.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher::{self, Event};
use kube::{CustomResource, Resource, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::common::*;

/// A small CRD for the controller test (the CRD itself is written by hand in `common::crd`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "runtime.lifeboat.dev",
    version = "v1",
    kind = "Widget",
    plural = "widgets"
)]
#[kube(namespaced, status = "WidgetStatus", schema = "disabled")]
pub struct WidgetSpec {
    pub size: i64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct WidgetStatus {
    pub observed_size: i64,
}

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct ReconcileError(#[from] kube::Error);

async fn reconcile(w: Arc<Widget>, client: Arc<kube::Client>) -> Result<Action, ReconcileError> {
    let api: Api<Widget> = Api::namespaced((*client).clone(), &w.namespace().unwrap_or_default());
    let status = json!({"status": {"observedSize": w.spec.size}});
    api.patch_status(&w.name_any(), &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(Action::await_change())
}

fn error_policy(_: Arc<Widget>, _: &ReconcileError, _: Arc<kube::Client>) -> Action {
    Action::requeue(Duration::from_millis(200))
}

#[tokio::test]
async fn controller_reconciles_a_custom_resource() {
    let (c, ns) = cluster_ns("controller").await;
    install_crd(c.client(), &crd("runtime.lifeboat.dev", "widgets", "Widget")).await;
    let api: Api<Widget> = Api::namespaced(c.client(), &ns);
    let controller = Controller::new(api.clone(), watcher::Config::default())
        .run(reconcile, error_policy, Arc::new(c.client()))
        .for_each(|_| async {});
    let task = tokio::spawn(controller);
    api.create(&PostParams::default(), &Widget::new("w1", WidgetSpec { size: 3 }))
        .await
        .expect("create");
    let observed = |want: i64| {
        let api = api.clone();
        async move {
            let w = api.get("w1").await.ok()?;
            (w.status.map(|s| s.observed_size) == Some(want)).then_some(())
        }
    };
    eventually("the first reconcile", 30, || observed(3)).await;
    api.patch(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"size": 5}})),
    )
    .await
    .expect("resize");
    eventually("the reconcile of the change", 30, || observed(5)).await;
    task.abort();
}

#[tokio::test]
#[cfg_attr(
    not(kube_backend = "in_process"),
    ignore = "a real cluster cannot drop watches on request"
)]
async fn watcher_survives_dropped_watches_and_gone() {
    let (c, ns) = cluster_ns("watcher").await;
    let Some(faults) = c.faults() else {
        unsupported(
            "watcher_survives_dropped_watches_and_gone",
            "a real cluster cannot drop watches on request",
        );
    };
    let api: Api<ConfigMap> = Api::namespaced(c.client(), &ns);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let stream = watcher::watcher(api.clone(), watcher::Config::default()).default_backoff();
    let task = tokio::spawn(async move {
        let mut stream = Box::pin(stream);
        while let Some(ev) = stream.next().await {
            let msg = match ev {
                Ok(Event::Apply(o)) | Ok(Event::InitApply(o)) => format!("apply {}", o.name_any()),
                Ok(Event::Init) => "init".into(),
                Ok(_) => continue,
                Err(_) => "error".into(),
            };
            if tx.send(msg).is_err() {
                return;
            }
        }
    });
    let mut wait_for = async |want: &str| {
        tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(m) = rx.recv().await {
                if m == want {
                    return;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("watcher never said {want:?}"));
    };
    wait_for("init").await;
    create_cm(&api, "before", json!({})).await;
    wait_for("apply before").await;

    faults.drop_watches();
    create_cm(&api, "after-drop", json!({})).await;
    wait_for("apply after-drop").await;

    // History compacted while the watch is down: the resumed watch gets 410 and relists.
    faults.compact();
    faults.drop_watches();
    wait_for("init").await;
    create_cm(&api, "after-gone", json!({})).await;
    wait_for("apply after-gone").await;
    task.abort();
}

#[tokio::test]
#[cfg_attr(
    not(kube_backend = "in_process"),
    ignore = "WatchList (sendInitialEvents) depends on the server's feature gates; run with --ignored where it is on"
)]
async fn watcher_with_streaming_lists() {
    let (c, ns) = cluster_ns("streaming").await;
    if c.is_real() {
        unsupported(
            "watcher_with_streaming_lists",
            "WatchList (sendInitialEvents) depends on the server's feature gates",
        );
    }
    let api: Api<ConfigMap> = Api::namespaced(c.client(), &ns);
    create_cm(&api, "existing", json!({})).await;
    let stream =
        watcher::watcher(api.clone(), watcher::Config::default().streaming_lists()).default_backoff();
    let mut stream = Box::pin(stream);
    let mut seen = Vec::new();
    let done = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(ev) = stream.next().await {
            match ev.expect("watch event") {
                Event::InitApply(o) => seen.push(o.name_any()),
                Event::InitDone => return,
                _ => {}
            }
        }
    })
    .await;
    assert!(done.is_ok(), "the initial events never ended");
    assert!(seen.contains(&"existing".to_string()), "{seen:?}");
}

#[tokio::test]
async fn recorded_events_are_seen_through_both_event_apis() {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use kube::api::ListParams;
    use kube::runtime::events::{Event as Recorded, EventType, Recorder, Reporter};

    let (c, ns) = cluster_ns("events").await;
    let api: Api<ConfigMap> = Api::namespaced(c.client(), &ns);
    let cm = create_cm(&api, "subject", json!({})).await;
    let reporter = Reporter {
        controller: "lifeboat-test".into(),
        instance: Some("test-0".into()),
    };
    let recorder = Recorder::new(c.client(), reporter);
    let event = Recorded {
        type_: EventType::Normal,
        reason: "Tested".into(),
        note: Some("recorded by the test".into()),
        action: "Testing".into(),
        secondary: None,
    };
    recorder
        .publish(&event, &cm.object_ref(&()))
        .await
        .expect("publish");
    let core: Api<CoreEvent> = Api::namespaced(c.client(), &ns);
    let seen = eventually("the event through core v1", 30, || async {
        let lp = ListParams::default().fields("involvedObject.name=subject");
        let list = core.list(&lp).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("Tested"))
    })
    .await;
    assert_eq!(seen.message.as_deref(), Some("recorded by the test"));
    assert_eq!(seen.involved_object.kind.as_deref(), Some("ConfigMap"));
}
