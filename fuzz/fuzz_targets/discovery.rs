//! What an API server answers during discovery: its group list, CRDs, APIServices and a
//! group version's resource list (JSON, as received; real servers and aggregated backends
//! send what they like). Planned into the group versions to read and the resource table; each
//! query names a group the server listed.
#![no_main]

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{APIGroupList, APIResourceList};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use libfuzzer_sys::fuzz_target;
use lifeboat_controller::kube_objects::discover::{AggregatedApi, CrdVersions, plan, records_from};
use lifeboat_fuzz as _;

#[derive(serde::Deserialize)]
struct Input {
    groups: APIGroupList,
    #[serde(default)]
    crds: Vec<CustomResourceDefinition>,
    #[serde(default)]
    apiservices: Vec<APIService>,
    #[serde(default)]
    resources: Option<APIResourceList>,
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<Input>(data) else {
        return;
    };
    let crds: Vec<CrdVersions> = input.crds.iter().map(CrdVersions::from_crd).collect();
    let aggregated: Vec<AggregatedApi> = input
        .apiservices
        .iter()
        .filter_map(AggregatedApi::from_apiservice)
        .collect();
    let (queries, _notes) = plan(&input.groups, &crds, &aggregated);
    for q in &queries {
        let _ = q.group_version();
    }
    if let Some(list) = &input.resources {
        let (group, version) = list
            .group_version
            .split_once('/')
            .unwrap_or(("", list.group_version.as_str()));
        for record in records_from(list, group, version) {
            assert!(
                !record.plural.contains('/'),
                "a subresource became a resource: {}",
                record.plural
            );
        }
    }
});
