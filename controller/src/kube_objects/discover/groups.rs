//! Where each API group comes from (the API server itself, CRDs, or an aggregated server
//! behind an APIService) and which group versions to ask about: a plain function of what the
//! cluster lists, so the choice of versions is tested without a cluster.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIGroupList;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;

/// Who serves a group version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupSource {
    /// The API server itself (built-in types).
    ApiServer,
    /// The API server, for these CRDs (by name): the objects are in this cluster's etcd.
    Crds(Vec<String>),
    /// Another server behind an APIService: its objects are kept by that server.
    Aggregated {
        /// The APIService (`v1beta1.metrics.k8s.io`).
        apiservice: String,
        /// Its Service, `namespace/name`.
        service: String,
    },
}

/// A CRD as discovery needs it: the version its objects are stored at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrdVersions {
    /// `plural.group`.
    pub name: String,
    /// API group.
    pub group: String,
    /// Plural resource name.
    pub plural: String,
    /// The version marked `storage: true`.
    pub storage: Option<String>,
    /// Versions marked `served: true`.
    pub served: Vec<String>,
}

impl CrdVersions {
    /// From the CRD object.
    pub fn from_crd(crd: &CustomResourceDefinition) -> Self {
        let spec = &crd.spec;
        Self {
            name: crd.metadata.name.clone().unwrap_or_default(),
            group: spec.group.clone(),
            plural: spec.names.plural.clone(),
            storage: spec.versions.iter().find(|v| v.storage).map(|v| v.name.clone()),
            served: spec
                .versions
                .iter()
                .filter(|v| v.served)
                .map(|v| v.name.clone())
                .collect(),
        }
    }
}

/// An APIService served by another server, and whether the API server can reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregatedApi {
    /// The APIService's name.
    pub name: String,
    /// API group.
    pub group: String,
    /// Version.
    pub version: String,
    /// Its Service, `namespace/name`.
    pub service: String,
    /// `Some(why)` when its `Available` condition is False.
    pub unavailable: Option<String>,
}

impl AggregatedApi {
    /// From the APIService object; `None` for a local one (served by the API server).
    pub fn from_apiservice(a: &APIService) -> Option<Self> {
        let spec = a.spec.as_ref()?;
        let svc = spec.service.as_ref()?;
        let unavailable = a
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Available"))
            .filter(|c| c.status == "False")
            .map(|c| {
                let reason = c.reason.clone().unwrap_or_default();
                match c.message.as_deref().filter(|m| !m.is_empty()) {
                    Some(m) => format!("{reason}: {m}"),
                    None => reason,
                }
            });
        Some(Self {
            name: a.metadata.name.clone().unwrap_or_default(),
            group: spec.group.clone().unwrap_or_default(),
            version: spec.version.clone().unwrap_or_default(),
            service: format!(
                "{}/{}",
                svc.namespace.clone().unwrap_or_default(),
                svc.name.clone().unwrap_or_default()
            ),
            unavailable,
        })
    }
}

/// One group version to discover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// API group.
    pub group: String,
    /// Version to read it at.
    pub version: String,
    /// Who serves it.
    pub source: GroupSource,
    /// For CRD groups: the plurals to take from this version (each CRD at its storage
    /// version); `None` takes every type.
    pub only: Option<Vec<String>>,
    /// Already known to be unavailable (the APIService says so, and why): not asked.
    pub known_unavailable: Option<String>,
}

impl Query {
    /// `group/version`.
    pub fn group_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }
}

/// The group versions to discover: each aggregated or built-in group at its preferred
/// version; each CRD group at the storage version of each of its CRDs (a CRD whose storage
/// version is not served at the group's preferred version, with a note).
pub fn plan(
    groups: &APIGroupList,
    crds: &[CrdVersions],
    aggregated: &[AggregatedApi],
) -> (Vec<Query>, Vec<String>) {
    let mut queries: Vec<Query> = Vec::new();
    let mut notes = Vec::new();
    for g in &groups.groups {
        let preferred = g
            .preferred_version
            .as_ref()
            .map(|v| v.version.clone())
            .or_else(|| g.versions.first().map(|v| v.version.clone()));
        let Some(preferred) = preferred else {
            continue;
        };
        let group_crds: Vec<&CrdVersions> = crds.iter().filter(|c| c.group == g.name).collect();
        if !group_crds.is_empty() {
            for c in group_crds {
                let version = match &c.storage {
                    Some(s) if c.served.contains(s) => s.clone(),
                    _ => {
                        notes.push(format!(
                            "CRD {}: its storage version is not served; its objects are read at {} \
                             and fields only the storage version has may be missing",
                            c.name, preferred
                        ));
                        preferred.clone()
                    }
                };
                match queries
                    .iter_mut()
                    .find(|q| q.group == g.name && q.version == version)
                {
                    Some(q) => {
                        if let GroupSource::Crds(names) = &mut q.source {
                            names.push(c.name.clone());
                        }
                        if let Some(only) = &mut q.only {
                            only.push(c.plural.clone());
                        }
                    }
                    None => queries.push(Query {
                        group: g.name.clone(),
                        version,
                        source: GroupSource::Crds(vec![c.name.clone()]),
                        only: Some(vec![c.plural.clone()]),
                        known_unavailable: None,
                    }),
                }
            }
            continue;
        }
        let agg = aggregated
            .iter()
            .find(|a| a.group == g.name && a.version == preferred);
        queries.push(match agg {
            Some(a) => Query {
                group: g.name.clone(),
                version: preferred,
                source: GroupSource::Aggregated {
                    apiservice: a.name.clone(),
                    service: a.service.clone(),
                },
                only: None,
                known_unavailable: a.unavailable.clone(),
            },
            None => Query {
                group: g.name.clone(),
                version: preferred,
                source: GroupSource::ApiServer,
                only: None,
                known_unavailable: None,
            },
        });
    }
    (queries, notes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn groups() -> APIGroupList {
        serde_json::from_value(json!({"groups": [
            {"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
             "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}},
            {"name": "metrics.k8s.io", "versions": [{"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"}],
             "preferredVersion": {"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"}},
            {"name": "example.com", "versions": [
                {"groupVersion": "example.com/v1beta1", "version": "v1beta1"},
                {"groupVersion": "example.com/v1alpha1", "version": "v1alpha1"}],
             "preferredVersion": {"groupVersion": "example.com/v1beta1", "version": "v1beta1"}}
        ]}))
        .expect("groups")
    }

    #[test]
    fn custom_resources_are_read_at_their_storage_version() {
        let crds = vec![
            CrdVersions {
                name: "widgets.example.com".into(),
                group: "example.com".into(),
                plural: "widgets".into(),
                storage: Some("v1alpha1".into()),
                served: vec!["v1alpha1".into(), "v1beta1".into()],
            },
            CrdVersions {
                name: "gizmos.example.com".into(),
                group: "example.com".into(),
                plural: "gizmos".into(),
                storage: Some("v1beta1".into()),
                served: vec!["v1beta1".into()],
            },
        ];
        let aggregated = vec![AggregatedApi {
            name: "v1beta1.metrics.k8s.io".into(),
            group: "metrics.k8s.io".into(),
            version: "v1beta1".into(),
            service: "kube-system/metrics-server".into(),
            unavailable: Some("MissingEndpoints: no addresses".into()),
        }];
        let (queries, notes) = plan(&groups(), &crds, &aggregated);
        assert!(notes.is_empty(), "{notes:?}");
        let gvs: Vec<String> = queries.iter().map(Query::group_version).collect();
        assert_eq!(
            gvs,
            [
                "apps/v1",
                "metrics.k8s.io/v1beta1",
                "example.com/v1alpha1",
                "example.com/v1beta1"
            ]
        );
        assert_eq!(queries[2].only, Some(vec!["widgets".to_string()]));
        assert_eq!(queries[3].only, Some(vec!["gizmos".to_string()]));
        assert_eq!(
            queries[1].known_unavailable.as_deref(),
            Some("MissingEndpoints: no addresses")
        );
        assert!(matches!(queries[1].source, GroupSource::Aggregated { .. }));
        assert_eq!(queries[0].source, GroupSource::ApiServer);
    }

    #[test]
    fn an_unserved_storage_version_falls_back_with_a_note() {
        let crds = vec![CrdVersions {
            name: "widgets.example.com".into(),
            group: "example.com".into(),
            plural: "widgets".into(),
            storage: Some("v1alpha1".into()),
            served: vec!["v1beta1".into()],
        }];
        let (queries, notes) = plan(&groups(), &crds, &[]);
        assert_eq!(queries[2].group_version(), "example.com/v1beta1");
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("widgets.example.com"), "{notes:?}");
    }
}
