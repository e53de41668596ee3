//! What to type next, for errors the libraries report by meaning: the libraries never name a
//! flag or a command, since the controller reports the same errors in resource statuses.

use std::collections::BTreeSet;

use lifeboat_backup::RepoError;
use lifeboat_backup::maintenance::check::CheckAdvice;
use lifeboat_backup::maintenance::forget::ForgetError;
use lifeboat_backup::maintenance::prune::PruneRefusal;
use lifeboat_backup::pack::PackError;
use lifeboat_backup::repository::LockAdvice;
use lifeboat_controller::fence::FenceRefusal;
use lifeboat_controller::kube_objects::{ObjectsError, RepositoryAdvice};
use lifeboat_etcd::EtcdError;
use lifeboat_federation::advice::Advice;
use lifeboat_federation::clusters::ConnectError;
use lifeboat_federation::clusters::join::JoinError;
use lifeboat_federation::failover::{FailoverError, PlanError};
use lifeboat_federation::fence::FenceError;
use lifeboat_federation::state::StateError;
use lifeboat_volume::VolumeError;

/// What finds every pack whose blobs are not what their ids name.
const READ_DATA: &str = "run `drctl repo check --read-data` to find every damaged or forged pack";

/// One fix `repo check` found, with the drctl command that applies it.
pub fn check_advice(advice: &CheckAdvice, url: &str) -> String {
    match advice {
        CheckAdvice::RepairIndex {
            damaged_index,
            unindexed_needed,
            missing_pack,
        } => format!(
            "run `drctl repo repair index --repo {url}`: {}",
            CheckAdvice::repair_effect(*damaged_index, *unindexed_needed, *missing_pack)
        ),
        CheckAdvice::RepairIndexReadingAllPacks => format!(
            "run `drctl repo repair index --read-all-packs --repo {url}`: it reads every pack, \
             verifies every blob against its id and indexes only the blobs that are intact, so \
             the damaged ones are stored anew by the next backup"
        ),
        CheckAdvice::ForgetUnreadableSnapshots { ids } => format!(
            "snapshot objects that cannot be read are skipped by every command; remove them with \
             `drctl forget --repo {url} {}`",
            ids.join(" ")
        ),
        CheckAdvice::MoveStrayObjects => "the stray objects are not Lifeboat's (their names are not \
             ids): Lifeboat skips and never deletes them; move them out of the repository"
            .to_string(),
        CheckAdvice::RecoverLostData => "data in damaged or missing packs is lost unless a replica \
             (`drctl repo copy`) has those packs: copy them back into data/, or, after `drctl repo \
             repair index`, back up the sources again so their blobs are stored anew, then `drctl \
             forget` the damaged snapshots"
            .to_string(),
        CheckAdvice::PruneUnindexed { packs } => format!(
            "{packs} pack(s) no index lists and no snapshot needs (from interrupted backups): \
             `drctl repo prune --repo {url}` removes them"
        ),
    }
}

/// The hint after a restore that found damaged or forged packs (by object key) in `url`.
pub fn damaged_packs(packs: &BTreeSet<String>, url: &str) -> String {
    let list: Vec<&str> = packs.iter().map(String::as_str).collect();
    format!(
        "{} of {url} did not match the ids of their blobs ({}); {READ_DATA}",
        if list.len() == 1 { "a pack" } else { "packs" },
        list.join(", ")
    )
}

/// The hint for a check an objects restore's damage calls for.
pub fn repository_advice(advice: RepositoryAdvice, url: &str) -> String {
    match advice {
        RepositoryAdvice::Check => format!("run `drctl repo check --repo {url}` to see what else is damaged"),
        RepositoryAdvice::CheckReadingData => format!("{READ_DATA} (`--repo {url}`)"),
    }
}

/// The hint for the first error in `e`'s chain that has one.
pub fn for_error(e: &anyhow::Error) -> Option<String> {
    e.chain().find_map(|cause| {
        if let Some(r) = cause.downcast_ref::<RepoError>() {
            return repo(r);
        }
        if let Some(f) = cause.downcast_ref::<ForgetError>() {
            return match f {
                ForgetError::NoRule => Some(
                    "pass at least one --keep-* option (--keep-last, --keep-daily, --keep-within, --keep-tag…)"
                        .to_string(),
                ),
                ForgetError::Repo(r) => repo(r),
            };
        }
        if let Some(x) = cause.downcast_ref::<EtcdError>() {
            return etcd(x);
        }
        if let Some(v) = cause.downcast_ref::<VolumeError>() {
            return volume(v);
        }
        if let Some(o) = cause.downcast_ref::<ObjectsError>() {
            return objects(o);
        }
        if let Some(FenceRefusal::Fenced { mark, .. }) = cause.downcast_ref::<FenceRefusal>() {
            return Some(format!(
                "fail the application back to this cluster with `drctl failback --plan {}`, or leave \
                 its namespaces out (--exclude-namespaces)",
                mark.plan
            ));
        }
        let advice = if let Some(f) = cause.downcast_ref::<FailoverError>() {
            f.advice()
        } else if let Some(p) = cause.downcast_ref::<PlanError>() {
            p.advice()
        } else if let Some(f) = cause.downcast_ref::<FenceError>() {
            f.advice()
        } else if let Some(c) = cause.downcast_ref::<ConnectError>() {
            c.advice.clone()
        } else if let Some(j) = cause.downcast_ref::<JoinError>() {
            j.advice()
        } else if let Some(s) = cause.downcast_ref::<StateError>() {
            s.advice()
        } else {
            None
        };
        advice.map(|a| federation(&a))
    })
}

fn volume(e: &VolumeError) -> Option<String> {
    match e {
        VolumeError::Repository(r) => repo(r),
        VolumeError::TargetExists { .. } => Some("pass --force to overwrite the image".to_string()),
        VolumeError::NotAVolume { .. } => Some(
            "`drctl snapshots` lists the snapshots with their kinds: give one of kind `volume`".to_string(),
        ),
        VolumeError::Damaged { .. } => Some(READ_DATA.to_string()),
        _ => None,
    }
}

fn repo(e: &RepoError) -> Option<String> {
    Some(match e {
        RepoError::NotARepository { url } => format!("create one with `drctl repo init --repo {url}`"),
        RepoError::NoRecipients => {
            "pass --recipient AGE_OR_SSH_PUBLIC_KEY or --passphrase-file FILE".to_string()
        }
        RepoError::NoKeyGiven { .. } => {
            "pass --identity FILE (or set DRCTL_IDENTITY) or --passphrase-file FILE".to_string()
        }
        RepoError::SnapshotNotFound { url, .. } => format!("list them with `drctl snapshots --repo {url}`"),
        RepoError::NoMatchingSnapshot { url, .. } => {
            format!("list the snapshots with `drctl snapshots --repo {url}`")
        }
        RepoError::WrongSnapshotKind { kind, .. } => match kind.as_str() {
            "etcd" => "restore it with `drctl etcd restore`".to_string(),
            "kubernetes" => "restore it with `drctl restore create --from-snapshot`".to_string(),
            _ => "give the id of a snapshot of the right kind (`drctl snapshots` lists them)".to_string(),
        },
        RepoError::DamagedIndex { url, .. } => {
            format!("rebuild the index from the packs with `drctl repo repair index --repo {url}`")
        }
        RepoError::MissingBlob { .. } | RepoError::PackUnreadable { .. } => {
            "run `drctl repo check` to see what is damaged".to_string()
        }
        RepoError::Pack(PackError::BlobMismatch { .. }) => READ_DATA.to_string(),
        RepoError::Pack(PackError::NotThePack { .. }) => "run `drctl repo check` to see which".to_string(),
        RepoError::PruneRefused { url, reason } => match reason {
            PruneRefusal::MissingPacks { .. } | PruneRefusal::UnindexedPackHoldsNeeded { .. } => format!(
                "run `drctl repo repair index --repo {url}`, then `drctl repo prune` again \
                 (`drctl repo check --repo {url}` names any snapshots that lost data)"
            ),
            PruneRefusal::LostBlobs { .. } => format!(
                "`drctl repo check --repo {url}` names the damaged snapshots; back up their sources \
                 again or `drctl forget` them, then prune again"
            ),
        },
        RepoError::Locked { url, advice, .. } => match advice {
            LockAdvice::Wait => return None,
            LockAdvice::HolderGone { .. } => format!("remove the lock with `drctl repo unlock --repo {url}`"),
            LockAdvice::HolderUnknown { host, .. } => format!(
                "if its holder is gone, run `drctl repo unlock --repo {url}` on {host} (it checks), or, \
                 after making sure, `drctl repo unlock --remove-all --repo {url}`"
            ),
        },
        RepoError::DamagedSnapshot { url, id, .. } => format!(
            "remove it with `drctl forget --repo {url} {id}` (`drctl repo check` lists every such snapshot)"
        ),
        RepoError::KeyNotFound { .. } => "list them with `drctl repo key list`".to_string(),
        RepoError::LastKey { .. } => "add another with `drctl repo key add` first".to_string(),
        RepoError::KeyInUse { url, .. } => format!(
            "check that another key opens the repository (`drctl repo key list --repo {url} \
             --identity OTHER`), then remove it with --force"
        ),
        RepoError::LockNotWritten { .. } => "if the repository is read-only, `drctl restore files` \
             and `drctl repo check` read it without a lock with --no-lock"
            .to_string(),
        _ => return None,
    })
}

fn etcd(e: &EtcdError) -> Option<String> {
    Some(match e {
        EtcdError::NoEndpoints => "pass --endpoints https://HOST:2379[,…]".to_string(),
        EtcdError::OutputExists { .. } => "pass --force to replace it".to_string(),
        EtcdError::NotEtcd { .. } | EtcdError::NoSnapshot { .. } => {
            "list etcd snapshots with `drctl etcd snapshots`".to_string()
        }
        EtcdError::NotFull { .. } => {
            "pass --latest or --to-revision N to restore a point of its chain".to_string()
        }
        EtcdError::Repo(r) => return repo(r),
        _ => return None,
    })
}

fn objects(e: &ObjectsError) -> Option<String> {
    Some(match e {
        ObjectsError::WrongKind { .. } | ObjectsError::NoSnapshotOfBackup { .. } => {
            "list the backups with `drctl backup list --repo …`".to_string()
        }
        ObjectsError::NothingToRestore => "pass --from-backup NAME or --from-snapshot ID".to_string(),
        ObjectsError::VolumeTargets(_) => "map the backup's StorageClasses to this cluster's with \
             --storage-class-mapping OLD:NEW, or restore the objects alone with --no-volumes"
            .to_string(),
        ObjectsError::Repo(r) => return repo(r),
        _ => return None,
    })
}

/// A federation library's advice as the drctl command that follows it.
pub fn federation(advice: &Advice) -> String {
    match advice {
        Advice::ReviewRuns => "see who ran what with `drctl audit`, then try again".to_string(),
        Advice::ResumeRun { kind, plan } => format!("resume it with `drctl {kind} --plan {plan} --resume`"),
        Advice::RelocateOrForce { plan } => format!(
            "for a planned move use `drctl relocate --plan {plan} --to TARGET` (no data loss); to fail \
             over anyway pass --force (the source will be fenced)"
        ),
        Advice::RelocateTo { plan, to } => format!("use `drctl relocate --plan {plan} --to {to}`"),
        Advice::FailOver { plan } => {
            format!("use `drctl failover --plan {plan}` (restores the newest recovery point)")
        }
        Advice::BackUpApplication => "back it up (a Schedule on its cluster, or `drctl backup create \
             --include-namespaces …`) and try again"
            .to_string(),
        Advice::RegisterClusters { clusters } => {
            let add: Vec<String> = clusters
                .iter()
                .map(|c| format!("`drctl cluster add {c}`"))
                .collect();
            format!("register them: {}", add.join(", "))
        }
        Advice::StoreKubeconfig { cluster, secret } => format!(
            "register it with `drctl cluster add {cluster} --kubeconfig-secret {}`",
            secret.as_deref().unwrap_or("NAME")
        ),
        Advice::GiveKubeconfig { cluster, context } => {
            format!("pass --kubeconfig-for {cluster}=FILE, or --kubeconfig FILE with context {context}")
        }
        Advice::DrillBesideTheApplications => {
            "pass --namespace-suffix -drill (or another target with --to)".to_string()
        }
        Advice::NameTarget => "pass --to CLUSTER".to_string(),
        Advice::NameContext => "pass --context NAME (`kubectl config get-contexts` lists them)".to_string(),
        Advice::NameStateRepositories => {
            "pass --repo URL (repeatable) or name the repositories in the plan".to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use lifeboat_controller::fence::FenceMark;

    use super::*;

    #[test]
    fn library_errors_get_the_drctl_command_here() {
        let unreachable = anyhow::Error::new(PlanError::SourceUnreachable {
            cluster: "c1".into(),
            plan: "shop".into(),
        })
        .context("plan the relocation");
        assert_eq!(
            for_error(&unreachable).as_deref(),
            Some("use `drctl failover --plan shop` (restores the newest recovery point)")
        );
        let in_progress = anyhow::Error::new(FailoverError::InProgress {
            kind: "failback".into(),
            run: "r1".into(),
            plan: "shop".into(),
            step: "restoreObjects".into(),
        });
        assert_eq!(
            for_error(&in_progress).as_deref(),
            Some("resume it with `drctl failback --plan shop --resume`")
        );
        let fenced = anyhow::Error::new(FenceRefusal::Fenced {
            repository: "lifeboat/r".into(),
            mark: FenceMark {
                plan: "shop".into(),
                application: "web".into(),
                namespaces: vec!["web".into()],
                holder: "c2".into(),
                epoch: 4,
            },
        });
        let hint = for_error(&fenced).unwrap_or_default();
        assert!(hint.contains("`drctl failback --plan shop`"), "{hint}");
        let unregistered = anyhow::Error::new(PlanError::NoTarget {
            plan: "shop".into(),
            tried: "c2: not registered; c3: unreachable from here".into(),
            unregistered: vec!["c2".into()],
        });
        assert_eq!(
            for_error(&unregistered).as_deref(),
            Some("register them: `drctl cluster add c2`")
        );
        let no_state = anyhow::Error::new(FailoverError::State(StateError::NoRepository));
        assert_eq!(
            for_error(&no_state).as_deref(),
            Some("pass --repo URL (repeatable) or name the repositories in the plan")
        );
        let no_target = anyhow::Error::new(PlanError::RelocateWithoutTarget { plan: "shop".into() });
        assert_eq!(for_error(&no_target).as_deref(), Some("pass --to CLUSTER"));
    }
}
