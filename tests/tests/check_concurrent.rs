//! `repo check` beside a backup that finishes while it runs (both hold shared locks, as restic's
//! do): the new snapshot must not be reported as damaged. Found by drctl's
//! `kill_volume_backup` campaign, where each round's next backup ran beside the next round's
//! `repo check --read-data`: check loaded the index first and listed snapshots last, so a
//! snapshot saved in between had its tree "not in the index" (exit 3, and a `fix:` line
//! advising to forget it).

use std::sync::{Arc, Mutex};

use anyhow::{Result, ensure};
use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use lifeboat_backup::Repository;
use lifeboat_backup::maintenance::check;
use lifeboat_backup::progress::Progress;
use lifeboat_backup::repository::InitOptions;
use lifeboat_backup::sources::files::{FilesOptions, backup_files};
use lifeboat_tests::repos::{Backend, TestRepo};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

/// A store that runs `hook` (once) when the first `index/` object is read, before answering.
#[derive(Debug)]
struct OnIndexRead {
    inner: Arc<dyn ObjectStore>,
    hook: Mutex<Option<Hook>>,
}

struct Hook(BoxFuture<'static, ()>);

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

impl std::fmt::Display for OnIndexRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OnIndexRead({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for OnIndexRead {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        if location.as_ref().starts_with("index/") {
            let hook = self.hook.lock().map(|mut h| h.take()).unwrap_or(None);
            if let Some(Hook(run)) = hook {
                run.await;
            }
        }
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[tokio::test]
async fn a_snapshot_saved_while_check_runs_is_not_damage() -> Result<()> {
    let t = TestRepo::new(Backend::Local)?;
    let data = t.path("data");
    std::fs::create_dir_all(&data)?;
    std::fs::write(data.join("a.txt"), b"first")?;
    let repo = Repository::init(&t.store(), &[t.user_recipient()], InitOptions::default()).await?;
    let progress = || Arc::new(Progress::default());
    backup_files(
        &repo,
        std::slice::from_ref(&data),
        &FilesOptions::default(),
        progress(),
    )
    .await?;

    // While check reads the index, another process's backup of new data finishes.
    std::fs::write(data.join("b.bin"), vec![7u8; 300_000])?;
    let (store, key, path) = (t.store(), t.user_key(), data.clone());
    let saved = Arc::new(Mutex::new(None));
    let hook = {
        let saved = saved.clone();
        Hook(Box::pin(async move {
            let other = Repository::open(&store, &[key])
                .await
                .expect("the other process opens");
            let snap = backup_files(&other, &[path], &FilesOptions::default(), progress())
                .await
                .expect("the concurrent backup");
            *saved.lock().expect("lock") = snap.id;
        }))
    };
    let watched: Arc<dyn ObjectStore> = Arc::new(OnIndexRead {
        inner: t.store().object_store().clone(),
        hook: Mutex::new(Some(hook)),
    });
    let checking = Repository::open_with(watched, &t.url, &[t.user_key()]).await?;
    let report = check::check(&checking, true, progress()).await?;
    ensure!(
        saved.lock().expect("lock").is_some(),
        "the concurrent backup did not run during the check"
    );
    ensure!(
        report.ok(),
        "check reported damage beside a concurrent backup: {report:?}"
    );
    // The next check sees both snapshots, whole.
    let report = check::check(&repo, true, progress()).await?;
    ensure!(report.ok() && report.snapshots == 2, "{report:?}");
    Ok(())
}
