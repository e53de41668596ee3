//! Which snapshots a restore needs: the full snapshot, the delta chain that continues it, and
//! how far along it to go. Pure functions of the snapshot list, so tests assert on the plan
//! and the executor (`replay.rs`) only carries it out.

use lifeboat_backup::blob::SnapshotId;
use lifeboat_backup::snapshot::{Snapshot, SnapshotDetails};

use crate::EtcdError;
use crate::replay::RestorePoint;

fn hex(id: Option<SnapshotId>) -> String {
    id.map(|i| i.to_hex()).unwrap_or_default()
}

/// The full snapshot of `snapshot`'s chain and every delta that continues it, in order,
/// checked for gaps, from `all` (every snapshot of the repository).
pub fn chain(all: &[Snapshot], snapshot: &Snapshot) -> Result<(Snapshot, Vec<Snapshot>), EtcdError> {
    let base_id = match &snapshot.details {
        SnapshotDetails::EtcdFull(_) => snapshot.id,
        SnapshotDetails::EtcdDelta(d) => Some(d.base),
        _ => {
            return Err(EtcdError::NotEtcd {
                id: hex(snapshot.id),
                kind: snapshot.kind().to_string(),
            });
        }
    };
    let base = all
        .iter()
        .find(|s| s.id.is_some() && s.id == base_id)
        .cloned()
        .ok_or_else(|| EtcdError::MissingFull {
            delta: hex(snapshot.id),
            base: hex(base_id),
        })?;
    let mut deltas: Vec<(i64, Snapshot)> = all
        .iter()
        .filter_map(|s| match &s.details {
            SnapshotDetails::EtcdDelta(d) if Some(d.base) == base.id => Some((d.first_revision, s.clone())),
            _ => None,
        })
        .collect();
    deltas.sort_by_key(|(first, _)| *first);
    let deltas: Vec<Snapshot> = deltas.into_iter().map(|(_, s)| s).collect();
    let mut previous = base.id;
    for d in &deltas {
        if d.parent != previous {
            return Err(EtcdError::ChainGap { delta: hex(d.id) });
        }
        previous = d.id;
    }
    Ok((base, deltas))
}

/// What a restore to a point will do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestorePlan {
    /// The full snapshot restored first.
    pub full: SnapshotId,
    /// Its revision.
    pub full_revision: i64,
    /// The revision the output will reflect.
    pub revision: i64,
    /// The deltas replayed on top, in order (empty: the full snapshot as stored).
    pub deltas: Vec<SnapshotId>,
}

fn revisions(s: &Snapshot) -> (i64, i64) {
    match &s.details {
        SnapshotDetails::EtcdFull(f) => (f.revision, f.revision),
        SnapshotDetails::EtcdDelta(d) => (d.first_revision, d.last_revision),
        _ => (0, 0),
    }
}

/// Plans restoring `point` of `snapshot`'s chain (`base` and its `deltas`, from [`chain`]).
pub fn plan_restore(
    snapshot: &Snapshot,
    base: &Snapshot,
    deltas: &[Snapshot],
    point: RestorePoint,
) -> Result<RestorePlan, EtcdError> {
    let full_revision = revisions(base).1;
    let latest = deltas.last().map_or(full_revision, |d| revisions(d).1);
    let revision = match point {
        RestorePoint::Snapshot => revisions(snapshot).1,
        RestorePoint::Latest => latest,
        RestorePoint::Revision(r) if r < full_revision => {
            return Err(EtcdError::RevisionBeforeFull {
                revision: r,
                full: full_revision,
            });
        }
        RestorePoint::Revision(r) if r > latest => {
            return Err(EtcdError::RevisionAfterLatest { revision: r, latest });
        }
        RestorePoint::Revision(r) => r,
    };
    Ok(RestorePlan {
        full: base.id.ok_or_else(|| EtcdError::MissingFull {
            delta: hex(snapshot.id),
            base: String::new(),
        })?,
        full_revision,
        revision,
        deltas: deltas
            .iter()
            .filter(|d| revision > full_revision && revisions(d).0 <= revision)
            .filter_map(|d| d.id)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use lifeboat_backup::snapshot::{EtcdDelta, EtcdFull, Summary};

    fn snap(n: u8, details: SnapshotDetails, parent: Option<u8>) -> Snapshot {
        Snapshot {
            id: Some(SnapshotId::of(&[n])),
            time: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, n.into()).unwrap(),
            hostname: "h".into(),
            details,
            source: "etcd:c".into(),
            paths: vec![],
            tags: Default::default(),
            parent: parent.map(|p| SnapshotId::of(&[p])),
            tree: vec![],
            summary: Summary::default(),
        }
    }

    fn full(n: u8, revision: i64) -> Snapshot {
        snap(
            n,
            SnapshotDetails::EtcdFull(EtcdFull {
                cluster_id: "c".into(),
                member_id: "m".into(),
                endpoint: "http://e".into(),
                revision,
            }),
            None,
        )
    }

    fn delta(n: u8, base: u8, parent: u8, first: i64, last: i64) -> Snapshot {
        snap(
            n,
            SnapshotDetails::EtcdDelta(EtcdDelta {
                cluster_id: "c".into(),
                base: SnapshotId::of(&[base]),
                first_revision: first,
                last_revision: last,
                events: 1,
            }),
            Some(parent),
        )
    }

    /// Two chains (an older full snapshot and its delta, then a newer one with three
    /// deltas, listed out of order): every kind of point, planned in full.
    #[test]
    fn golden_plans_for_every_point() {
        let all = vec![
            full(1, 100),
            delta(2, 1, 1, 101, 150),
            full(3, 200),
            delta(6, 3, 5, 241, 260),
            delta(4, 3, 3, 201, 220),
            delta(5, 3, 4, 221, 240),
        ];
        let id = |n: u8| SnapshotId::of(&[n]);
        let (base, deltas) = chain(&all, &all[4]).expect("chain");
        assert_eq!(base.id, Some(id(3)));
        assert_eq!(
            deltas.iter().map(|d| d.id).collect::<Vec<_>>(),
            [Some(id(4)), Some(id(5)), Some(id(6))]
        );
        let plan = |s: &Snapshot, p| plan_restore(s, &base, &deltas, p);
        assert_eq!(
            plan(&all[2], RestorePoint::Snapshot).expect("full"),
            RestorePlan {
                full: id(3),
                full_revision: 200,
                revision: 200,
                deltas: vec![]
            }
        );
        assert_eq!(
            plan(&all[5], RestorePoint::Snapshot).expect("delta 5"),
            RestorePlan {
                full: id(3),
                full_revision: 200,
                revision: 240,
                deltas: vec![id(4), id(5)]
            }
        );
        assert_eq!(
            plan(&all[2], RestorePoint::Latest).expect("latest"),
            RestorePlan {
                full: id(3),
                full_revision: 200,
                revision: 260,
                deltas: vec![id(4), id(5), id(6)]
            }
        );
        assert_eq!(
            plan(&all[2], RestorePoint::Revision(221)).expect("221"),
            RestorePlan {
                full: id(3),
                full_revision: 200,
                revision: 221,
                deltas: vec![id(4), id(5)]
            }
        );
        assert!(matches!(
            plan(&all[2], RestorePoint::Revision(150)),
            Err(EtcdError::RevisionBeforeFull {
                revision: 150,
                full: 200
            })
        ));
        assert!(matches!(
            plan(&all[2], RestorePoint::Revision(261)),
            Err(EtcdError::RevisionAfterLatest {
                revision: 261,
                latest: 260
            })
        ));
        // The older chain is separate.
        let (old, old_deltas) = chain(&all, &all[1]).expect("old chain");
        assert_eq!((old.id, old_deltas.len()), (Some(id(1)), 1));
    }

    #[test]
    fn gaps_and_missing_full_snapshots_are_named() {
        let all = vec![full(3, 200), delta(5, 3, 4, 221, 240)];
        assert!(matches!(chain(&all, &all[0]), Err(EtcdError::ChainGap { .. })));
        let orphan = vec![delta(5, 3, 4, 221, 240)];
        assert!(matches!(
            chain(&orphan, &orphan[0]),
            Err(EtcdError::MissingFull { .. })
        ));
    }
}
