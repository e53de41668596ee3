//! etcd snapshots against real etcd 3.4 (plain and mutual TLS): the database restored from the
//! repository is accepted by `etcdctl snapshot restore`, and a member started on it serves
//! every key; consecutive snapshots deduplicate.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use etcd_client::{Client, Compare, Txn, TxnOp};
use lifeboat_backup::Repository;
use lifeboat_backup::progress::Progress;
use lifeboat_backup::snapshot::{EtcdFull, Snapshot, SnapshotDetails};
use lifeboat_etcd::{EtcdEndpoints, EtcdError, EtcdTlsFiles, restore_etcd, snapshot_etcd};
use lifeboat_tests::Etcd;
use lifeboat_tests::repos::{Backend, TestRepo};

fn full(s: &Snapshot) -> Result<&EtcdFull> {
    match &s.details {
        SnapshotDetails::EtcdFull(f) => Ok(f),
        other => anyhow::bail!("not a full etcd snapshot: {other:?}"),
    }
}

fn endpoints(etcd: &Etcd) -> EtcdEndpoints {
    EtcdEndpoints {
        urls: vec![etcd.endpoint()],
        tls: etcd.tls().map(|t| EtcdTlsFiles {
            ca: t.ca.clone(),
            cert: Some(t.cert.clone()),
            key: Some(t.key.clone()),
        }),
    }
}

async fn client(etcd: &Etcd) -> Result<Client> {
    let mut options = etcd_client::ConnectOptions::new();
    if let Some(t) = etcd.tls() {
        options = options.with_tls(
            etcd_client::TlsOptions::new()
                .ca_certificate(etcd_client::Certificate::from_pem(std::fs::read(&t.ca)?))
                .identity(etcd_client::Identity::from_pem(
                    std::fs::read(&t.cert)?,
                    std::fs::read(&t.key)?,
                )),
        );
    }
    Ok(Client::connect([etcd.endpoint()], Some(options)).await?)
}

/// Deterministic pseudo-random value for key `i` in generation `g`.
fn value(i: u32, g: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    let mut n = 0u32;
    while out.len() < 1024 {
        out.extend_from_slice(
            blake3::hash(&[i.to_le_bytes(), g.to_le_bytes(), n.to_le_bytes()].concat()).as_bytes(),
        );
        n += 1;
    }
    out
}

async fn fill(
    c: &mut Client,
    keys: u32,
    generation: impl Fn(u32) -> Option<u32>,
) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut expected = BTreeMap::new();
    let mut ops = Vec::new();
    for i in 0..keys {
        if let Some(g) = generation(i) {
            let k = format!("/registry/configmaps/ns-{}/cm-{i:06}", i % 250);
            let v = value(i, g);
            ops.push(TxnOp::put(k.clone(), v.clone(), None));
            expected.insert(k, v);
        }
        if ops.len() == 100 || (i + 1 == keys && !ops.is_empty()) {
            c.txn(
                Txn::new()
                    .when(Vec::<Compare>::new())
                    .and_then(std::mem::take(&mut ops)),
            )
            .await?;
        }
    }
    Ok(expected)
}

/// Restores `db` with the stock `etcdctl`, starts a member on it and reads every key back.
async fn verify_restored(db: &std::path::Path, expected: &BTreeMap<String, Vec<u8>>) -> Result<()> {
    let member = Etcd::from_snapshot(db)?;
    let mut c = client(&member).await?;
    // One namespace at a time keeps each response under gRPC's 4 MiB limit.
    let mut restored = 0;
    for ns in 0..250 {
        let prefix = format!("/registry/configmaps/ns-{ns}/");
        let got = c
            .get(prefix, Some(etcd_client::GetOptions::new().with_prefix()))
            .await?;
        for kv in got.kvs() {
            let k = kv.key_str()?;
            ensure!(
                expected.get(k).map(Vec::as_slice) == Some(kv.value()),
                "{k} differs after restore"
            );
            restored += 1;
        }
    }
    ensure!(
        restored == expected.len(),
        "restored {restored} keys, expected {}",
        expected.len()
    );
    Ok(())
}

async fn full_snapshots(tls: bool) -> Result<()> {
    let etcd = if tls { Etcd::start_tls()? } else { Etcd::start()? };
    let mut c = client(&etcd).await?;
    let before = fill(&mut c, 100_000, |_| Some(0)).await?;
    let t = TestRepo::new(Backend::Local)?;
    let repo = Repository::init(&t.store(), &[t.user_recipient()], Default::default()).await?;
    let progress = || Arc::new(Progress::default());
    let first = snapshot_etcd(&repo, &endpoints(&etcd), BTreeMap::new(), progress()).await?;
    ensure!(
        first.kind() == "etcd" && first.summary.bytes > 100 << 20,
        "{:?}",
        first.summary
    );

    // Change 1% of the keys; the second snapshot must store a small fraction of the first.
    let after_change = fill(&mut c, 100_000, |i| (i % 100 == 7).then_some(1)).await?;
    let second = snapshot_etcd(&repo, &endpoints(&etcd), BTreeMap::new(), progress()).await?;
    let ratio = second.summary.stored_bytes as f64 / first.summary.stored_bytes as f64;
    ensure!(
        ratio <= 0.10,
        "second snapshot stored {:.1}% of the first",
        ratio * 100.0
    );
    let (rev1, rev2) = (full(&first)?.revision, full(&second)?.revision);
    ensure!(rev2 > rev1, "revisions {rev1} then {rev2}");

    // Both restore to databases etcd accepts, holding exactly the keys of their time.
    let mut expected_second = before.clone();
    expected_second.extend(after_change);
    for (snap, expected, name) in [
        (&first, &before, "first.db"),
        (&second, &expected_second, "second.db"),
    ] {
        let out = t.path(name);
        restore_etcd(&repo, snap, &out, false).await?;
        verify_restored(&out, expected)
            .await
            .with_context(|| format!("restoring {name}"))?;
    }
    Ok(())
}

#[tokio::test]
async fn full_snapshots_restore_and_deduplicate_plain() -> Result<()> {
    full_snapshots(false).await
}

#[tokio::test]
async fn full_snapshots_restore_and_deduplicate_mutual_tls() -> Result<()> {
    full_snapshots(true).await
}

#[tokio::test]
async fn bad_endpoints_certificates_and_outputs_get_clear_errors() -> Result<()> {
    let t = TestRepo::new(Backend::Local)?;
    let repo = Repository::init(&t.store(), &[t.user_recipient()], Default::default()).await?;
    let progress = || Arc::new(Progress::default());

    // Nobody listening.
    let dead = EtcdEndpoints {
        urls: vec!["http://127.0.0.1:1".to_string()],
        tls: None,
    };
    let err = snapshot_etcd(&repo, &dead, BTreeMap::new(), progress())
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    ensure!(
        err.contains("127.0.0.1:1") && err.contains("no healthy etcd member"),
        "{err}"
    );

    // A mutual-TLS etcd without a client certificate: refused, and the endpoint is named.
    let etcd = Etcd::start_tls()?;
    let tls = etcd.tls().context("tls")?;
    let no_cert = EtcdEndpoints {
        urls: vec![etcd.endpoint()],
        tls: Some(EtcdTlsFiles {
            ca: tls.ca.clone(),
            cert: None,
            key: None,
        }),
    };
    let err = snapshot_etcd(&repo, &no_cert, BTreeMap::new(), progress())
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    ensure!(err.contains(&etcd.endpoint()), "{err}");
    ensure!(
        repo.snapshots().await?.is_empty(),
        "a failed snapshot became visible"
    );

    // One dead endpoint among healthy ones is skipped.
    let mixed = EtcdEndpoints {
        urls: vec!["https://127.0.0.1:1".to_string(), etcd.endpoint()],
        tls: endpoints(&etcd).tls,
    };
    let snap = snapshot_etcd(&repo, &mixed, BTreeMap::new(), progress()).await?;
    ensure!(full(&snap)?.endpoint == etcd.endpoint());

    // An existing output file is never overwritten without force.
    let out = t.path("existing.db");
    std::fs::write(&out, b"precious")?;
    let err = restore_etcd(&repo, &snap, &out, false).await.err();
    ensure!(
        matches!(err, Some(EtcdError::OutputExists { .. })) && std::fs::read(&out)? == b"precious",
        "{err:?}"
    );
    restore_etcd(&repo, &snap, &out, true).await?;
    ensure!(lifeboat_etcd::verify_trailer(&std::fs::read(&out)?));
    Ok(())
}
