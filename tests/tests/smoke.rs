//! Each real service the harness starts, exercised through the Rust client Lifeboat uses for
//! it: proof the fixtures are real, and the first thing to read when one breaks.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use futures::TryStreamExt;
use lifeboat_backup::store::{Secret, Store, StoreOptions};
use lifeboat_tests::{Etcd, ceph, nfs};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutMode, PutPayload};

fn rgw_options() -> Result<StoreOptions> {
    let rgw = ceph()?.rgw();
    Ok(StoreOptions {
        s3_endpoint: Some(rgw.endpoint.clone()),
        s3_region: Some(rgw.region.clone()),
        access_key_id: Some(rgw.access_key.clone()),
        secret_access_key: Some(Secret::new(rgw.secret_key.clone())),
        ..StoreOptions::default()
    })
}

#[tokio::test]
async fn rgw_serves_s3_put_get_list_delete() -> Result<()> {
    let bucket = ceph()?.rgw().new_bucket("smoke")?;
    let store = Store::open(&format!("s3://{bucket}/repo"), &rgw_options()?)?;
    let s3 = store.object_store();

    let key = ObjectPath::from("data/one");
    s3.put(&key, PutPayload::from_static(b"hello rgw")).await?;
    s3.put(
        &ObjectPath::from("data/two"),
        PutPayload::from(vec![7u8; 3 << 20]),
    )
    .await?;
    let got = s3.get(&key).await?.bytes().await?;
    ensure!(got.as_ref() == b"hello rgw", "read back {got:?}");

    let mut listed: Vec<String> = s3
        .list(Some(&ObjectPath::from("data")))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await?;
    listed.sort();
    ensure!(listed == ["data/one", "data/two"], "listed {listed:?}");

    // Conditional create is what locks and snapshot commits rely on.
    let again = s3
        .put_opts(&key, PutPayload::from_static(b"other"), PutMode::Create.into())
        .await;
    ensure!(
        matches!(again, Err(object_store::Error::AlreadyExists { .. })),
        "create-if-absent overwrote: {again:?}"
    );

    s3.delete(&key).await?;
    ensure!(
        matches!(s3.head(&key).await, Err(object_store::Error::NotFound { .. })),
        "deleted object still there"
    );
    Ok(())
}

async fn etcd_round_trip(etcd: &Etcd) -> Result<()> {
    let mut options = etcd_client::ConnectOptions::new().with_connect_timeout(Duration::from_secs(5));
    if let Some(tls) = etcd.tls() {
        let tls_options = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(std::fs::read(&tls.ca)?))
            .identity(etcd_client::Identity::from_pem(
                std::fs::read(&tls.cert)?,
                std::fs::read(&tls.key)?,
            ));
        options = options.with_tls(tls_options);
    }
    let mut client = etcd_client::Client::connect([etcd.endpoint()], Some(options)).await?;
    for i in 0..100 {
        client
            .put(format!("/registry/smoke/{i:03}"), format!("value-{i}"), None)
            .await?;
    }
    let got = client.get("/registry/smoke/042", None).await?;
    ensure!(
        got.kvs().first().map(|kv| kv.value()) == Some(b"value-42".as_slice()),
        "get returned {got:?}"
    );

    let mut stream = client.maintenance_client().snapshot().await?;
    let mut db = Vec::new();
    while let Some(chunk) = stream.message().await? {
        db.extend_from_slice(chunk.blob());
    }
    let file = etcd.scratch().join("smoke.db");
    std::fs::write(&file, &db)?;
    // etcd's own tool must accept the snapshot: it checks the trailing hash.
    let out = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "status", "-w", "json"])
        .arg(&file)
        .output()?;
    ensure!(
        out.status.success(),
        "etcdctl rejected the snapshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    ensure!(
        status["totalKey"].as_u64().unwrap_or(0) >= 100,
        "snapshot status {status}"
    );
    Ok(())
}

#[tokio::test]
async fn etcd_plain_put_get_snapshot() -> Result<()> {
    let etcd = Etcd::start()?;
    etcd_round_trip(&etcd).await
}

#[tokio::test]
async fn etcd_mutual_tls_put_get_snapshot() -> Result<()> {
    let etcd = Etcd::start_tls()?;
    etcd_round_trip(&etcd).await?;
    // Without a client certificate the server must refuse us.
    let out = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", etcd.endpoint()))
        .arg(format!("--cacert={}", etcd.tls().context("tls")?.ca.display()))
        .args(["--command-timeout=3s", "get", "x"])
        .output()?;
    ensure!(
        !out.status.success(),
        "etcd accepted a client without a certificate"
    );
    Ok(())
}

#[test]
fn rbd_image_create_resize_snapshot_remove() -> Result<()> {
    let ceph = ceph()?;
    let pool_name = ceph.new_pool("smoke")?;
    let cluster = ceph.connect()?;
    let pool = cluster.pool(&pool_name)?;
    let opts = lifeboat_rbd::ImageOptions {
        features: Some(
            lifeboat_rbd::features::parse("layering,exclusive-lock,object-map,fast-diff")
                .map_err(anyhow::Error::msg)?,
        ),
        ..Default::default()
    };
    pool.create_image("vol1", 64 << 20, &opts)?;
    let again = pool.create_image("vol1", 64 << 20, &opts).unwrap_err();
    ensure!(again.is_already_exists(), "{again}");
    {
        let mut image = pool.open("vol1", None)?;
        image.write_at(4 << 20, b"lifeboat")?;
        image.flush()?;
        image.create_snapshot("snap1")?;
        image.write_at(32 << 20, b"after snapshot")?;
        image.resize(128 << 20, false)?;
        ensure!(image.info()?.size == 128 << 20, "resize did not take");
        let snaps = image.snapshots()?;
        ensure!(
            snaps.len() == 1 && snaps[0].name == "snap1" && snaps[0].size == 64 << 20,
            "{snaps:?}"
        );
        image.protect_snapshot("snap1")?;
        ensure!(image.is_snapshot_protected("snap1")?);
        let busy = image.remove_snapshot("snap1").unwrap_err();
        ensure!(busy.is_busy(), "removing a protected snapshot: {busy}");
        image.unprotect_snapshot("snap1")?;
        // Only the write after the snapshot differs from it.
        let changed = image.changed_extents(Some("snap1"))?;
        ensure!(
            changed
                .iter()
                .any(|e| e.exists && e.offset <= 32 << 20 && e.offset + e.length > 32 << 20)
                && !changed
                    .iter()
                    .any(|e| e.offset <= 4 << 20 && e.offset + e.length > 4 << 20),
            "changed extents {changed:?}"
        );
        let mut buf = [0u8; 8];
        image.read_at(4 << 20, &mut buf)?;
        ensure!(&buf == b"lifeboat");
        image.remove_snapshot("snap1")?;
    }
    ensure!(pool.list_images()? == ["vol1"]);
    // The stock CLI sees what librbd made.
    let out = ceph
        .rbd_cmd()
        .args(["info", &format!("{pool_name}/vol1"), "--format", "json"])
        .output()?;
    let info: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    ensure!(info["size"].as_u64() == Some(128 << 20), "rbd info: {info}");
    pool.remove_image("vol1")?;
    ensure!(pool.list_images()?.is_empty());
    ensure!(pool.open("vol1", None).err().is_some_and(|e| e.is_not_found()));
    ceph.delete_pool(&pool_name)?;
    Ok(())
}

#[tokio::test]
async fn nfs_mkdir_readdir_through_userspace_client() -> Result<()> {
    use nfs3_client::nfs3_types::nfs3;
    use nfs3_client::nfs3_types::rpc::{auth_unix, opaque_auth};

    let nfs = nfs()?;
    let dir = nfs.new_dir("smoke")?;
    let mut conn =
        nfs3_client::Nfs3ConnectionBuilder::new(nfs3_client::tokio::TokioConnector, &dir.server, &dir.share)
            .credential(opaque_auth::auth_unix(&auth_unix::default()))
            .mount()
            .await
            .context("mount the export over NFSv3")?;
    let root = conn.root_nfs_fh3();
    let lookup = conn
        .lookup(&nfs3::LOOKUP3args {
            what: nfs3::diropargs3 {
                dir: root,
                name: dir.name.as_bytes().into(),
            },
        })
        .await?;
    let nfs3::Nfs3Result::Ok(found) = lookup else {
        anyhow::bail!("lookup of {} failed: {lookup:?}", dir.name);
    };
    let test_dir = found.object;
    for name in ["pvc-a", "pvc-b"] {
        let made = conn
            .mkdir(&nfs3::MKDIR3args {
                where_: nfs3::diropargs3 {
                    dir: test_dir.clone(),
                    name: name.as_bytes().into(),
                },
                attributes: nfs3::sattr3::default(),
            })
            .await?;
        ensure!(matches!(made, nfs3::Nfs3Result::Ok(_)), "mkdir {name}: {made:?}");
    }
    let listing = conn
        .readdir(&nfs3::READDIR3args {
            dir: test_dir,
            cookie: 0,
            cookieverf: nfs3::cookieverf3::default(),
            count: 64 * 1024,
        })
        .await?;
    let nfs3::Nfs3Result::Ok(listing) = listing else {
        anyhow::bail!("readdir failed: {listing:?}");
    };
    let mut names: Vec<String> = listing
        .reply
        .entries
        .0
        .iter()
        .map(|e| String::from_utf8_lossy(e.name.as_ref()).into_owned())
        .filter(|n| n != "." && n != "..")
        .collect();
    names.sort();
    ensure!(names == ["pvc-a", "pvc-b"], "readdir listed {names:?}");
    // And the server really made them on its disk.
    ensure!(dir.local.join("pvc-a").is_dir() && dir.local.join("pvc-b").is_dir());
    conn.unmount().await?;
    Ok(())
}
