//! etcd delta snapshots against real etcd: restore to a revision in the middle of a chain,
//! resume after the watcher is killed mid-delta, and a compaction under a running stream
//! forces a new full snapshot.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail, ensure};
use etcd_client::Client;
use lifeboat_backup::Repository;
use lifeboat_backup::progress::Progress;
use lifeboat_backup::snapshot::SnapshotDetails;
use lifeboat_etcd::{
    DeltaOptions, DeltaOutcome, EtcdEndpoints, EtcdError, RestorePoint, restore_etcd_at, snapshot_etcd,
    stream_deltas,
};
use lifeboat_tests::Etcd;
use lifeboat_tests::repos::{Backend, TestRepo};
use tokio::sync::watch;

type State = BTreeMap<String, Vec<u8>>;

fn endpoints(etcd: &Etcd) -> EtcdEndpoints {
    EtcdEndpoints {
        urls: vec![etcd.endpoint()],
        tls: None,
    }
}

/// Applies `n` changes (puts, and a delete every seventh) to etcd and to `state`; returns the
/// revision after the last one.
async fn wave(c: &mut Client, state: &mut State, tag: &str, n: u32) -> Result<i64> {
    let mut rev = 0;
    for i in 0..n {
        let key = format!("/registry/secrets/default/s-{:03}", (i * 13) % 97);
        if i % 7 == 6 && state.contains_key(&key) {
            rev = c
                .delete(key.clone(), None)
                .await?
                .header()
                .map_or(0, |h| h.revision());
            state.remove(&key);
        } else {
            let value = format!("{tag}-{i}").into_bytes();
            rev = c
                .put(key.clone(), value.clone(), None)
                .await?
                .header()
                .map_or(0, |h| h.revision());
            state.insert(key, value);
        }
    }
    Ok(rev)
}

/// Restores `db` with the stock etcdctl, starts a member on it and compares every key.
async fn assert_db_holds(db: &std::path::Path, expected: &State) -> Result<()> {
    let member = Etcd::from_snapshot(db)?;
    let mut c = Client::connect([member.endpoint()], None).await?;
    let got = c
        .get("/registry/", Some(etcd_client::GetOptions::new().with_prefix()))
        .await?;
    let actual: State = got
        .kvs()
        .iter()
        .map(|kv| (kv.key_str().unwrap_or("").to_string(), kv.value().to_vec()))
        .collect();
    ensure!(
        &actual == expected,
        "restored {} keys, expected {}",
        actual.len(),
        expected.len()
    );
    Ok(())
}

#[tokio::test]
async fn deltas_restore_to_a_mid_chain_revision_and_resume_after_a_kill() -> Result<()> {
    let etcd = Etcd::start()?;
    let mut c = Client::connect([etcd.endpoint()], None).await?;
    let mut state = State::new();
    wave(&mut c, &mut state, "base", 120).await?;
    let t = TestRepo::new(Backend::Local)?;
    let repo = Repository::init(&t.store(), &[t.user_recipient()], Default::default()).await?;
    let full = snapshot_etcd(
        &repo,
        &endpoints(&etcd),
        BTreeMap::new(),
        Arc::new(Progress::default()),
    )
    .await?;

    // Stream deltas every 200 ms while two waves of changes happen.
    let options = DeltaOptions {
        interval: Duration::from_millis(200),
        ..DeltaOptions::default()
    };
    let (stop, stopped) = watch::channel(false);
    let ep = endpoints(&etcd);
    let streamer = stream_deltas(&repo, &ep, &options, stopped, Arc::new(Progress::default()));
    let writer = async {
        let r1 = wave(&mut c, &mut state, "one", 60).await?;
        let state1 = state.clone();
        tokio::time::sleep(Duration::from_millis(600)).await;
        let r2 = wave(&mut c, &mut state, "two", 60).await?;
        tokio::time::sleep(Duration::from_millis(600)).await;
        let _ = stop.send(true);
        Ok::<_, anyhow::Error>((r1, state1, r2))
    };
    let (outcome, written) = tokio::join!(streamer, writer);
    let (r1, state1, r2) = written?;
    let DeltaOutcome::Stopped {
        deltas,
        last_revision,
    } = outcome?
    else {
        bail!("unexpected outcome")
    };
    ensure!(deltas >= 2, "only {deltas} deltas");
    ensure!(
        last_revision == r2,
        "stored up to {last_revision}, etcd is at {r2}"
    );

    // A revision in the middle of the chain, and the latest point.
    let mid = t.path("mid.db");
    let summary = restore_etcd_at(&repo, &full, RestorePoint::Revision(r1), &mid, false).await?;
    ensure!(summary.revision == r1 && summary.deltas >= 1, "{summary:?}");
    assert_db_holds(&mid, &state1).await?;
    let latest = t.path("latest.db");
    restore_etcd_at(&repo, &full, RestorePoint::Latest, &latest, false).await?;
    assert_db_holds(&latest, &state).await?;

    // Kill the watcher mid-delta (changes received, not yet stored), then resume: nothing is lost.
    let slow = DeltaOptions {
        interval: Duration::from_secs(3600),
        ..DeltaOptions::default()
    };
    let (_keep, never) = watch::channel(false);
    let killed = tokio::time::timeout(Duration::from_millis(800), async {
        let s = stream_deltas(&repo, &ep, &slow, never, Arc::new(Progress::default()));
        let w = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            wave(&mut c, &mut state, "three", 30).await
        };
        tokio::join!(s, w)
    })
    .await;
    ensure!(killed.is_err(), "the watcher was supposed to be killed mid-delta");
    let (stop, stopped) = watch::channel(false);
    let resume = stream_deltas(&repo, &ep, &options, stopped, Arc::new(Progress::default()));
    let (outcome, _) = tokio::join!(resume, async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        let _ = stop.send(true);
    });
    ensure!(
        matches!(outcome?, DeltaOutcome::Stopped { deltas: 1.., .. }),
        "the resumed stream stored nothing"
    );
    let resumed = t.path("resumed.db");
    restore_etcd_at(&repo, &full, RestorePoint::Latest, &resumed, false).await?;
    assert_db_holds(&resumed, &state).await?;

    // Points outside the chain are refused with the range that exists.
    let err = restore_etcd_at(&repo, &full, RestorePoint::Revision(1), &t.path("x.db"), false)
        .await
        .err();
    ensure!(
        matches!(err, Some(EtcdError::RevisionBeforeFull { revision: 1, .. })),
        "{err:?}"
    );

    // A delta whose full snapshot is gone cannot be restored, and says why.
    let delta = repo
        .snapshots()
        .await?
        .into_iter()
        .rfind(|s| matches!(s.details, SnapshotDetails::EtcdDelta(_)))
        .ok_or_else(|| anyhow::anyhow!("no delta"))?;
    repo.forget_snapshots(&[full.id.ok_or_else(|| anyhow::anyhow!("no id"))?])
        .await?;
    let orphan = t.path("orphan.db");
    let err = restore_etcd_at(&repo, &delta, RestorePoint::Snapshot, &orphan, false)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    ensure!(err.contains("full snapshot") && err.contains("missing"), "{err}");
    ensure!(!orphan.exists(), "a database was written without its base");
    Ok(())
}

#[tokio::test]
async fn compaction_under_a_delta_stream_forces_a_full_snapshot() -> Result<()> {
    let etcd = Etcd::start()?;
    let mut c = Client::connect([etcd.endpoint()], None).await?;
    let mut state = State::new();
    wave(&mut c, &mut state, "base", 50).await?;
    let t = TestRepo::new(Backend::Local)?;
    let repo = Repository::init(&t.store(), &[t.user_recipient()], Default::default()).await?;
    snapshot_etcd(
        &repo,
        &endpoints(&etcd),
        BTreeMap::new(),
        Arc::new(Progress::default()),
    )
    .await?;
    // Changes the chain never saw, then compacted away.
    let rev = wave(&mut c, &mut state, "lost", 50).await?;
    c.compact(rev, Some(etcd_client::CompactionOptions::new().with_physical()))
        .await?;

    let (_keep, never) = watch::channel(false);
    let outcome = stream_deltas(
        &repo,
        &endpoints(&etcd),
        &DeltaOptions::default(),
        never,
        Arc::new(Progress::default()),
    )
    .await?;
    let DeltaOutcome::NewFull {
        compact_revision,
        full,
    } = outcome
    else {
        bail!("no new full snapshot: {outcome:?}")
    };
    ensure!(
        compact_revision == rev,
        "compacted at {compact_revision}, expected {rev}"
    );
    let snap = repo.find_snapshot(&full.to_hex()).await?;
    ensure!(matches!(snap.details, SnapshotDetails::EtcdFull(_)));
    let db = t.path("new-full.db");
    restore_etcd_at(&repo, &snap, RestorePoint::Snapshot, &db, false).await?;
    assert_db_holds(&db, &state).await?;
    Ok(())
}
