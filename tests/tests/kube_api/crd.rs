//! CRDs, discovery, the status subresource and the dynamic (untyped) API.

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams,
};
use kube::discovery::{Discovery, Scope, verbs};
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn discovery_lists_the_builtin_resources() {
    let c = cluster().await;
    let d = discover(c.client()).await;
    for (group, kind, namespaced) in [
        ("", "ConfigMap", true),
        ("", "Namespace", false),
        ("", "PersistentVolumeClaim", true),
        ("apps", "Deployment", true),
        ("batch", "CronJob", true),
        ("rbac.authorization.k8s.io", "ClusterRole", false),
        ("storage.k8s.io", "StorageClass", false),
        ("coordination.k8s.io", "Lease", true),
        ("apiextensions.k8s.io", "CustomResourceDefinition", false),
    ] {
        let g = d.get(group).unwrap_or_else(|| panic!("group {group:?} missing"));
        let (ar, caps) = g
            .recommended_resources()
            .into_iter()
            .find(|(ar, _)| ar.kind == kind)
            .unwrap_or_else(|| panic!("{kind} missing"));
        assert_eq!(caps.scope == Scope::Namespaced, namespaced, "{kind}");
        for verb in [
            verbs::LIST,
            verbs::WATCH,
            verbs::CREATE,
            verbs::PATCH,
            verbs::DELETE,
        ] {
            assert!(caps.supports_operation(verb), "{kind} {verb}");
        }
        // Namespaces are deleted one by one: no deletecollection.
        let collection = caps.supports_operation(verbs::DELETE_COLLECTION);
        assert_eq!(collection, kind != "Namespace", "{kind} deletecollection");
        assert!(!ar.plural.is_empty());
    }
    let (_, deploy) = d
        .get("apps")
        .and_then(|g| g.recommended_kind("Deployment"))
        .expect("deployments");
    assert!(
        deploy.subresources.iter().any(|(ar, _)| ar.plural == "status"),
        "deployments/status"
    );
    // Every discovered resource that can be listed, can be (as `kubectl get all` assumes).
    for group in d.groups() {
        for (ar, caps) in group.recommended_resources() {
            if !caps.supports_operation(verbs::LIST) {
                continue;
            }
            let api: Api<DynamicObject> = Api::all_with(c.client(), &ar);
            match api.list(&ListParams::default().limit(1)).await {
                Ok(_) => {}
                // Aggregated APIs of an existing cluster (metrics) may be down.
                Err(kube::Error::Api(s)) if c.is_real() && s.code == 503 => {}
                Err(e) => panic!("list {} {}: {e}", ar.api_version, ar.plural),
            }
        }
    }
    let version = c.client().apiserver_version().await.expect("/version");
    assert_eq!(version.major, "1");
}

#[tokio::test]
async fn crd_is_served_while_it_exists() {
    let (c, ns) = cluster_ns("crd").await;
    let group = format!("{}.crd.lifeboat.dev", ns.replace('-', ""));
    let def = crd(&group, "gadgets", "Gadget");
    install_crd(c.client(), &def).await;

    let d = eventually("the CRD in discovery", 30, || {
        let client = c.client();
        let group = group.clone();
        async move {
            let d = discover(client).await;
            d.has_group(&group).then_some(d)
        }
    })
    .await;
    let (ar, caps) = d
        .get(&group)
        .and_then(|g| g.recommended_kind("Gadget"))
        .expect("Gadget discovered");
    assert_eq!(ar.plural, "gadgets");
    assert_eq!(caps.scope, Scope::Namespaced);

    let api: Api<DynamicObject> = Api::namespaced_with(c.client(), &ns, &ar);
    let mut obj = DynamicObject::new("g1", &ar);
    obj.data = json!({"spec": {"size": 3}});
    let made = api.create(&PostParams::default(), &obj).await.expect("create CR");
    assert_eq!(made.metadata.generation, Some(1));
    assert_eq!(
        api.list(&ListParams::default())
            .await
            .expect("list CRs")
            .items
            .len(),
        1
    );

    let crds: Api<CustomResourceDefinition> = Api::all(c.client());
    crds.delete(&def.name_any(), &DeleteParams::default())
        .await
        .expect("delete CRD");
    eventually("the CRD to go", 60, || async {
        crds.get(&def.name_any()).await.is_err().then_some(())
    })
    .await;
    eventually("the CRs to stop being served", 30, || async {
        matches!(api.list(&ListParams::default()).await, Err(kube::Error::Api(s)) if s.code == 404)
            .then_some(())
    })
    .await;
    let d = discover(c.client()).await;
    assert!(
        !d.has_group(&group),
        "group still discovered after the CRD was deleted"
    );
}

#[tokio::test]
async fn status_subresource_semantics() {
    let (c, ns) = cluster_ns("status").await;
    let group = format!("{}.status.lifeboat.dev", ns.replace('-', ""));
    install_crd(c.client(), &crd(&group, "dials", "Dial")).await;
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(&group, "v1", "Dial"), "dials");
    let api: Api<DynamicObject> = Api::namespaced_with(c.client(), &ns, &ar);
    let mut obj = DynamicObject::new("d", &ar);
    obj.data = json!({"spec": {"level": 1}, "status": {"set": "on create"}});
    let made = api.create(&PostParams::default(), &obj).await.expect("create");
    assert!(
        made.data.get("status").is_none(),
        "status is dropped on create: {:?}",
        made.data
    );

    let patched = api
        .patch_status(
            "d",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"level": 9}, "status": {"seen": 1}})),
        )
        .await
        .expect("patch status");
    assert_eq!(patched.data["status"]["seen"], json!(1));
    assert_eq!(
        patched.data["spec"]["level"],
        json!(1),
        "spec is ignored on /status"
    );
    assert_eq!(patched.metadata.generation, Some(1));

    let main = api
        .patch(
            "d",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"level": 2}, "status": {"seen": 5}})),
        )
        .await
        .expect("patch main");
    assert_eq!(
        main.data["status"]["seen"],
        json!(1),
        "status is ignored on the main resource"
    );
    assert_eq!(main.data["spec"]["level"], json!(2));
    assert_eq!(main.metadata.generation, Some(2));

    let applied = api
        .patch_status(
            "d",
            &PatchParams::apply("lifeboat-test").force(),
            &Patch::Apply(
                json!({"apiVersion": format!("{group}/v1"), "kind": "Dial", "metadata": {"name": "d"}, "status": {"seen": 7}}),
            ),
        )
        .await
        .expect("apply status");
    assert_eq!(applied.data["status"]["seen"], json!(7));
    // Custom resources allow no unconditional update.
    let mut unconditional = api.get("d").await.expect("get");
    unconditional.metadata.resource_version = None;
    assert_eq!(
        code(api.replace("d", &PostParams::default(), &unconditional).await).0,
        422
    );
    // A CRD per run would litter a shared cluster.
    let crds: Api<CustomResourceDefinition> = Api::all(c.client());
    crds.delete(&format!("dials.{group}"), &DeleteParams::default())
        .await
        .expect("delete CRD");
}

#[tokio::test]
async fn dynamic_api_list_get_create_patch() {
    let (c, ns) = cluster_ns("dynamic").await;
    let ar = ApiResource::erase::<ConfigMap>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(c.client(), &ns, &ar);
    let mut obj = DynamicObject::new("dyn", &ar);
    obj.data = json!({"data": {"a": "1"}});
    api.create(&PostParams::default(), &obj).await.expect("create");
    let got = api.get("dyn").await.expect("get");
    assert_eq!(got.data["data"]["a"], json!("1"));
    let patched = api
        .patch(
            "dyn",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"b": "2"}})),
        )
        .await
        .expect("patch");
    assert_eq!(patched.data["data"], json!({"a": "1", "b": "2"}));
    let names: Vec<String> = api
        .list(&ListParams::default())
        .await
        .expect("list")
        .iter()
        .map(|o| o.name_any())
        .collect();
    assert!(names.contains(&"dyn".to_string()));
}

#[tokio::test]
async fn custom_resources_are_pruned_defaulted_and_validated() {
    let (c, ns) = cluster_ns("schema").await;
    let group = format!("{}.schema.lifeboat.dev", ns.replace('-', ""));
    let def: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": format!("knobs.{group}")},
        "spec": {
            "group": group, "scope": "Namespaced",
            "names": {"plural": "knobs", "singular": "knob", "kind": "Knob", "listKind": "KnobList"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {"spec": {"type": "object", "required": ["size"], "properties": {
                    "size": {"type": "integer"},
                    "mode": {"type": "string", "default": "fast", "enum": ["fast", "slow"]}
                }}}
            }}}]
        }
    }))
    .expect("crd");
    install_crd(c.client(), &def).await;
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(&group, "v1", "Knob"), "knobs");
    let api: Api<DynamicObject> = Api::namespaced_with(c.client(), &ns, &ar);
    let mut good = DynamicObject::new("k", &ar);
    good.data = json!({"spec": {"size": 2, "unknown": true}, "extra": 1});
    let made = api.create(&PostParams::default(), &good).await.expect("create");
    assert_eq!(
        made.data["spec"],
        json!({"size": 2, "mode": "fast"}),
        "pruned and defaulted"
    );
    assert!(made.data.get("extra").is_none());
    let mut wrong = DynamicObject::new("w", &ar);
    wrong.data = json!({"spec": {"size": "big"}});
    assert_eq!(code(api.create(&PostParams::default(), &wrong).await).0, 422);
    let mut missing = DynamicObject::new("m", &ar);
    missing.data = json!({"spec": {"mode": "slow"}});
    assert_eq!(code(api.create(&PostParams::default(), &missing).await).0, 422);
    let crds: Api<CustomResourceDefinition> = Api::all(c.client());
    crds.delete(&def.name_any(), &DeleteParams::default())
        .await
        .expect("delete CRD");
}

#[tokio::test]
#[cfg_attr(
    not(kube_backend = "in_process"),
    ignore = "aggregated discovery v2 needs Kubernetes 1.30+; run with --ignored against such a server"
)]
async fn aggregated_discovery_matches_the_classic_one() {
    let c = cluster().await;
    // apidiscovery.k8s.io/v2 is served from 1.30 (v2beta1 before, which kube does not read).
    let info = c.client().apiserver_version().await.expect("/version");
    let number = |s: &str| {
        s.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse::<u32>()
            .unwrap_or(0)
    };
    if (number(&info.major), number(&info.minor)) < (1, 30) {
        unsupported(
            "aggregated_discovery_matches_the_classic_one",
            &format!(
                "the server is {}.{}; aggregated discovery v2 needs 1.30+",
                info.major, info.minor
            ),
        );
    }
    let classic = discover(c.client()).await;
    let aggregated = Discovery::new(c.client())
        .run_aggregated()
        .await
        .expect("aggregated discovery");
    // Other tests' CRDs may come and go between the two runs on a shared cluster.
    for group in classic.groups().filter(|g| !g.name().ends_with(".lifeboat.dev")) {
        let other = aggregated
            .get(group.name())
            .unwrap_or_else(|| panic!("group {:?} missing from aggregated discovery", group.name()));
        let kinds = |g: &kube::discovery::ApiGroup| {
            let mut k: Vec<String> = g
                .recommended_resources()
                .into_iter()
                .map(|(ar, _)| ar.kind)
                .collect();
            k.sort();
            k
        };
        assert_eq!(kinds(group), kinds(other), "group {:?}", group.name());
    }
}

#[tokio::test]
async fn a_multi_version_crd_prunes_each_version_by_its_own_schema() {
    let (c, ns) = cluster_ns("multiver").await;
    let group = format!(
        "t{}.lifeboat-test.dev",
        lifeboat_tests::unique_name("mv").replace(['-', '_'], "")
    );
    let spec_with = |legacy: bool| {
        let mut props = json!({"size": {"type": "integer"}});
        if legacy {
            props["legacyMode"] = json!({"type": "boolean"});
        }
        json!({"openAPIV3Schema": {"type": "object", "properties": {
            "spec": {"type": "object", "properties": props}}}})
    };
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": format!("gadgets.{group}")},
        "spec": {"group": group, "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "conversion": {"strategy": "None"},
            "versions": [
                {"name": "v1alpha1", "served": true, "storage": true, "schema": spec_with(true)},
                {"name": "v1beta1", "served": true, "storage": false, "schema": spec_with(false)}]}
    }))
    .expect("crd");
    install_crd(c.client(), &crd).await;
    let at = |version: &str| ApiResource {
        group: group.clone(),
        version: version.into(),
        api_version: format!("{group}/{version}"),
        kind: "Gadget".into(),
        plural: "gadgets".into(),
    };
    let alpha: Api<DynamicObject> = Api::namespaced_with(c.client(), &ns, &at("v1alpha1"));
    let beta: Api<DynamicObject> = Api::namespaced_with(c.client(), &ns, &at("v1beta1"));
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": format!("{group}/v1alpha1"), "kind": "Gadget",
        "metadata": {"name": "g1"}, "spec": {"size": 3, "legacyMode": true}}))
    .expect("object");
    eventually("the CRD to be served", 30, || {
        let alpha = alpha.clone();
        async move { alpha.list(&ListParams::default()).await.ok().map(|_| ()) }
    })
    .await;
    alpha
        .create(&PostParams::default(), &obj)
        .await
        .expect("create at the storage version");
    // The preferred version (v1beta1 outranks v1alpha1) does not declare legacyMode: read
    // there, it is pruned; read at the storage version, it is there.
    let d = discover(c.client()).await;
    assert_eq!(d.get(&group).and_then(|g| g.preferred_version()), Some("v1beta1"));
    let via_beta = beta.get("g1").await.expect("get at v1beta1");
    assert_eq!(via_beta.data["spec"], json!({"size": 3}));
    let via_alpha = alpha.get("g1").await.expect("get at v1alpha1");
    assert_eq!(via_alpha.data["spec"], json!({"size": 3, "legacyMode": true}));
    // Written at v1beta1, a field only v1alpha1 has is dropped.
    let obj2: DynamicObject = serde_json::from_value(json!({
        "apiVersion": format!("{group}/v1beta1"), "kind": "Gadget",
        "metadata": {"name": "g2"}, "spec": {"size": 1, "legacyMode": true}}))
    .expect("object");
    beta.create(&PostParams::default(), &obj2)
        .await
        .expect("create at v1beta1");
    let g2 = alpha.get("g2").await.expect("get at v1alpha1");
    assert_eq!(g2.data["spec"], json!({"size": 1}));
    let crds: Api<CustomResourceDefinition> = Api::all(c.client());
    let _ = crds
        .delete(&format!("gadgets.{group}"), &DeleteParams::default())
        .await;
}
