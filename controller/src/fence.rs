//! The mark federation leaves on a BackupRepository when this cluster has lost an
//! application's fencing lease (another cluster took the application over): backups of the
//! application's namespaces into that repository are refused until the mark is removed (by
//! a failback or relocate that returns the lease here). The backup engine and the controller
//! know nothing else of federation.

use serde::{Deserialize, Serialize};

use crate::kube_objects::NamespaceFilter;

/// Annotation key prefix: `fenced.lifeboat.dev/<plan>.<application>`, one per application.
pub const ANNOTATION_PREFIX: &str = "fenced.lifeboat.dev/";

/// The annotation's value (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceMark {
    /// The failover plan.
    pub plan: String,
    /// The application.
    pub application: String,
    /// Its namespaces: backups that include any of them are refused.
    pub namespaces: Vec<String>,
    /// The cluster that holds the application now.
    pub holder: String,
    /// The epoch it holds it at.
    pub epoch: u64,
}

impl FenceMark {
    /// The annotation key of this mark.
    pub fn annotation(&self) -> String {
        format!("{ANNOTATION_PREFIX}{}.{}", self.plan, self.application)
    }

    /// The marks among an object's annotations (unreadable ones block everything: a mark is
    /// never ignored because it could not be parsed).
    pub fn from_annotations(
        annotations: &std::collections::BTreeMap<String, String>,
    ) -> Vec<Result<Self, UnreadableMark>> {
        annotations
            .iter()
            .filter(|(k, _)| k.starts_with(ANNOTATION_PREFIX))
            .map(|(k, v)| {
                serde_json::from_str(v).map_err(|e| UnreadableMark {
                    annotation: k.clone(),
                    why: e.to_string(),
                })
            })
            .collect()
    }

    /// Whether a backup of the namespaces `filter` selects would include this application.
    pub fn blocks(&self, filter: &NamespaceFilter) -> bool {
        self.namespaces.iter().any(|ns| filter.matches(ns))
    }
}

/// A fencing mark whose annotation does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{annotation}: {why}")]
pub struct UnreadableMark {
    /// The annotation's key.
    pub annotation: String,
    /// The JSON parser's message.
    pub why: String,
}

/// Why a backup into a fenced BackupRepository is refused. Names no command: drctl's hint
/// and the Backup's status word what to do (fail the application back here, or leave its
/// namespaces out).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FenceRefusal {
    /// The backup would include an application another cluster took over.
    #[error(
        "BackupRepository {repository} is fenced for application {}/{} (namespaces {}): cluster {} \
         took it over at epoch {}, so this cluster must not back it up; fail the application back \
         here (a failback of plan {}) or leave its namespaces out of the backup",
        .mark.plan, .mark.application, .mark.namespaces.join(", "), .mark.holder, .mark.epoch, .mark.plan
    )]
    Fenced {
        /// `namespace/name` of the BackupRepository.
        repository: String,
        /// The mark that blocks the backup.
        mark: FenceMark,
    },
    /// A mark could not be read: it blocks every backup.
    #[error(
        "BackupRepository {repository} carries an unreadable fencing mark ({why}); backups are \
         refused until it is fixed or removed"
    )]
    UnreadableMark {
        /// `namespace/name` of the BackupRepository.
        repository: String,
        /// The annotation and the parse error.
        why: UnreadableMark,
    },
}

/// Why a backup of the namespaces `filter` selects must be refused by the marks among the
/// `annotations` of BackupRepository `repository` (`namespace/name`); `None`: it may go ahead.
pub fn refusal(
    repository: &str,
    annotations: &std::collections::BTreeMap<String, String>,
    filter: &NamespaceFilter,
) -> Option<FenceRefusal> {
    FenceMark::from_annotations(annotations)
        .into_iter()
        .find_map(|mark| match mark {
            Ok(m) if m.blocks(filter) => Some(FenceRefusal::Fenced {
                repository: repository.to_string(),
                mark: m,
            }),
            Ok(_) => None,
            Err(why) => Some(FenceRefusal::UnreadableMark {
                repository: repository.to_string(),
                why,
            }),
        })
}

/// Why a backup of the namespaces `filter` selects into the repository at `url` must be
/// refused on the cluster behind `client` (`None`: it may go ahead): the fencing marks on
/// every BackupRepository there over that URL (a cluster without Lifeboat's CRDs has none).
/// For backups made without the controller (`drctl backup create --repo`), which must obey
/// the same marks.
pub async fn refusal_on_cluster(
    client: &kube::Client,
    url: &str,
    filter: &NamespaceFilter,
) -> Result<Option<FenceRefusal>, kube::Error> {
    use kube::ResourceExt;
    let api: kube::Api<crate::crd::BackupRepository> = kube::Api::all(client.clone());
    let list = match api.list(&Default::default()).await {
        Ok(l) => l,
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(None),
        Err(e) => return Err(e),
    };
    let same = |u: &str| u.trim().trim_end_matches('/') == url.trim().trim_end_matches('/');
    for r in list.items.iter().filter(|r| same(&r.spec.url)) {
        let name = format!("{}/{}", r.namespace().unwrap_or_default(), r.name_any());
        if let Some(refused) = refusal(&name, r.annotations(), filter) {
            return Ok(Some(refused));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_block_backups_that_include_the_application() {
        let mark = FenceMark {
            plan: "p".into(),
            application: "shop".into(),
            namespaces: vec!["shop".into()],
            holder: "c2".into(),
            epoch: 3,
        };
        let all = NamespaceFilter::new(&[], &[]).expect("filter");
        let other = NamespaceFilter::new(&["billing".into()], &[]).expect("filter");
        let globbed = NamespaceFilter::new(&["sh*".into()], &[]).expect("filter");
        assert!(mark.blocks(&all));
        assert!(!mark.blocks(&other));
        assert!(mark.blocks(&globbed));
        let annotations = [
            (mark.annotation(), serde_json::to_string(&mark).expect("json")),
            ("fenced.lifeboat.dev/p.bad".to_string(), "{".to_string()),
            ("other".to_string(), "x".to_string()),
        ]
        .into_iter()
        .collect();
        let found = FenceMark::from_annotations(&annotations);
        assert_eq!(found.len(), 2);
        assert!(found.iter().any(|m| m.as_ref() == Ok(&mark)));
        assert!(found.iter().any(Result::is_err));
        let refused = refusal("ns/r", &annotations, &globbed).expect("refused");
        assert!(
            matches!(&refused, FenceRefusal::Fenced { mark: m, .. } if *m == mark)
                || matches!(&refused, FenceRefusal::UnreadableMark { .. }),
            "{refused}"
        );
        let only_good = [(mark.annotation(), serde_json::to_string(&mark).expect("json"))]
            .into_iter()
            .collect();
        let refused = refusal("ns/r", &only_good, &globbed).expect("refused");
        assert_eq!(
            refused,
            FenceRefusal::Fenced {
                repository: "ns/r".into(),
                mark: mark.clone()
            }
        );
        let text = refused.to_string();
        assert!(
            text.contains("failback of plan p") && !text.contains("drctl"),
            "{text}"
        );
        assert_eq!(refusal("ns/r", &only_good, &other), None);
    }
}
