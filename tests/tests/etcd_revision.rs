//! The revision a full etcd snapshot records is the one its database holds, against real
//! etcd 3.4: a member started on the restored database answers that revision — for an empty
//! etcd, a large one (a B+tree of branch pages), one whose newest change is a tombstone that
//! compaction removed, and one written to all through the snapshot. The database's bytes fed
//! to `RevisionScanner` in pieces of any size give the same revision.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, ensure};
use etcd_client::{Client, CompactionOptions, Compare, Txn, TxnOp};
use lifeboat_backup::Repository;
use lifeboat_backup::progress::Progress;
use lifeboat_backup::snapshot::{Snapshot, SnapshotDetails};
use lifeboat_etcd::{EtcdEndpoints, RevisionScanner, restore_etcd, snapshot_etcd};
use lifeboat_tests::Etcd;
use lifeboat_tests::repos::{Backend, TestRepo};

fn endpoints(etcd: &Etcd) -> EtcdEndpoints {
    EtcdEndpoints {
        urls: vec![etcd.endpoint()],
        tls: None,
    }
}

async fn revision_of(c: &mut Client) -> Result<i64> {
    Ok(c.status().await?.header().context("no header")?.revision())
}

fn recorded(s: &Snapshot) -> Result<i64> {
    match &s.details {
        SnapshotDetails::EtcdFull(f) => Ok(f.revision),
        other => anyhow::bail!("not a full etcd snapshot: {other:?}"),
    }
}

/// Restores `snap`, checks the recorded revision against a member started on the database
/// and against the scanner fed the file in odd pieces; the recorded revision.
async fn check(t: &TestRepo, repo: &Repository, snap: &Snapshot, name: &str) -> Result<i64> {
    let want = recorded(snap)?;
    let db = t.path(&format!("{name}.db"));
    restore_etcd(repo, snap, &db, false).await?;
    let bytes = std::fs::read(&db)?;
    for piece in [1, 7, 4095, 4096, 4097, 65_536, 1 << 20] {
        let mut scanner = RevisionScanner::new();
        for part in bytes.chunks(piece) {
            scanner.feed(part);
        }
        ensure!(
            scanner.revision()? == want,
            "{name}: fed in pieces of {piece} bytes, the database reads as revision {:?}, \
             recorded {want}",
            scanner.revision()
        );
    }
    let member = Etcd::from_snapshot(&db)?;
    let mut c = Client::connect([member.endpoint()], None).await?;
    let served = revision_of(&mut c).await?;
    ensure!(
        served == want,
        "{name}: the snapshot records revision {want}, a member started on it serves {served}"
    );
    Ok(want)
}

async fn put_many(c: &mut Client, from: u32, to: u32, size: usize) -> Result<()> {
    let mut ops = Vec::new();
    for i in from..to {
        ops.push(TxnOp::put(
            format!("/registry/configmaps/ns-{}/cm-{i:06}", i % 50),
            vec![b'x'; size],
            None,
        ));
        if ops.len() == 100 || i + 1 == to {
            let txn = Txn::new()
                .when(Vec::<Compare>::new())
                .and_then(std::mem::take(&mut ops));
            c.txn(txn).await?;
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_full_snapshot_records_the_revision_its_database_holds() -> Result<()> {
    let etcd = Etcd::start()?;
    let mut c = Client::connect([etcd.endpoint()], None).await?;
    let t = TestRepo::new(Backend::Local)?;
    let repo = Repository::init(&t.store(), &[t.user_recipient()], Default::default()).await?;
    let urls = endpoints(&etcd);
    let snapshot = || snapshot_etcd(&repo, &urls, BTreeMap::new(), Arc::new(Progress::default()));

    // Nothing written yet: revision 1.
    let empty = snapshot().await?;
    ensure!(check(&t, &repo, &empty, "empty").await? == revision_of(&mut c).await?);

    // 30,000 keys, single puts between batches: bucket `key` spans many leaves under branches.
    put_many(&mut c, 0, 30_000, 300).await?;
    for i in 0..20 {
        c.put(format!("/registry/pods/p{i}"), "v", None).await?;
    }
    let large = snapshot().await?;
    ensure!(check(&t, &repo, &large, "large").await? == revision_of(&mut c).await?);

    // The newest change a delete, then compacted away: the tombstone is gone from bucket
    // `key`, and the revision lives on in bucket `meta`.
    c.delete("/registry/pods/p3", None).await?;
    let deleted_at = revision_of(&mut c).await?;
    c.compact(deleted_at, Some(CompactionOptions::new().with_physical()))
        .await?;
    let compacted = snapshot().await?;
    ensure!(check(&t, &repo, &compacted, "compacted").await? == deleted_at);

    // Written to all through the snapshot: whatever revision the stream caught, the member
    // started on it serves that one.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let mut w = Client::connect([etcd.endpoint()], None).await?;
        tokio::spawn(async move {
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                w.put(format!("/registry/leases/l{}", i % 500), vec![b'y'; 200], None)
                    .await?;
                i += 1;
            }
            anyhow::Ok(i)
        })
    };
    let mut caught = Vec::new();
    for round in 0..3 {
        let before = revision_of(&mut c).await?;
        let busy = snapshot().await?;
        let got = check(&t, &repo, &busy, &format!("busy-{round}")).await?;
        ensure!(
            got >= before,
            "recorded {got}, before the snapshot etcd was at {before}"
        );
        caught.push((before, got));
    }
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await??;
    ensure!(writes > 0, "the writer wrote nothing");
    println!("revisions before each snapshot and recorded: {caught:?} ({writes} writes)");
    Ok(())
}
