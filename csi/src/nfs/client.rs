//! A userspace NFSv3 session on one export: just the directory operations the controller
//! needs, none of which follows a symbolic link. Each RPC opens its own session, so a call
//! that timed out (and was dropped mid-flight) cannot leave a half-read reply for the next.

use nfs3_client::nfs3_types::nfs3::{self, Nfs3Option, Nfs3Result, diropargs3, ftype3, nfs_fh3, nfsstat3};
use nfs3_client::nfs3_types::rpc::{auth_unix, opaque_auth};
use nfs3_client::nfs3_types::xdr_codec::Opaque;

use crate::error::{CsiError, Result};

type Conn = nfs3_client::Nfs3Connection<nfs3_client::tokio::TokioIo<tokio::net::TcpStream>>;

/// A mounted export.
pub struct Session {
    conn: Conn,
    root: nfs_fh3,
    what: String,
}

/// What a directory entry is, from its attributes (never by following it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link (removed or copied as a link, never followed).
    Link,
    /// Anything else (devices, sockets, fifos): removed, not copied.
    Other,
}

fn rpc(what: &str, e: impl std::fmt::Display) -> CsiError {
    CsiError::Unavailable(format!("NFS {what}: {e}"))
}

fn status(what: &str, s: nfsstat3) -> CsiError {
    match s {
        nfsstat3::NFS3ERR_NOENT => CsiError::NotFound(format!("NFS {what}: no such file or directory")),
        nfsstat3::NFS3ERR_EXIST => CsiError::AlreadyExists(format!("NFS {what}: exists")),
        other => CsiError::Internal(format!("NFS {what}: {other:?}")),
    }
}

fn name(n: &str) -> nfs3::filename3<'static> {
    n.as_bytes().to_vec().into()
}

impl Session {
    /// Mounts `share` on `server` with AUTH_UNIX as root.
    pub async fn connect(server: &str, share: &str) -> Result<Self> {
        let conn = nfs3_client::Nfs3ConnectionBuilder::new(nfs3_client::tokio::TokioConnector, server, share)
            .credential(opaque_auth::auth_unix(&auth_unix::default()))
            .mount()
            .await
            .map_err(|e| rpc(&format!("mount {server}:{share}"), e))?;
        let root = conn.root_nfs_fh3();
        Ok(Self {
            conn,
            root,
            what: format!("{server}:{share}"),
        })
    }

    /// The export's root handle.
    pub fn root(&self) -> nfs_fh3 {
        self.root.clone()
    }

    /// Looks up one name in a directory: handle and kind, or `None` if absent.
    pub async fn lookup(&mut self, dir: &nfs_fh3, n: &str) -> Result<Option<(nfs_fh3, Kind)>> {
        let res = self
            .conn
            .lookup(&nfs3::LOOKUP3args {
                what: diropargs3 {
                    dir: dir.clone(),
                    name: name(n),
                },
            })
            .await
            .map_err(|e| rpc(&format!("lookup {n} on {}", self.what), e))?;
        match res {
            Nfs3Result::Ok(ok) => {
                let kind = match ok.obj_attributes {
                    Nfs3Option::Some(a) => kind(a.type_),
                    Nfs3Option::None => self.getattr_kind(&ok.object).await?,
                };
                Ok(Some((ok.object, kind)))
            }
            Nfs3Result::Err((nfsstat3::NFS3ERR_NOENT, _)) => Ok(None),
            Nfs3Result::Err((s, _)) => Err(status(&format!("lookup {n}"), s)),
        }
    }

    async fn getattr_kind(&mut self, fh: &nfs_fh3) -> Result<Kind> {
        let res = self
            .conn
            .getattr(&nfs3::GETATTR3args { object: fh.clone() })
            .await
            .map_err(|e| rpc("getattr", e))?;
        match res {
            Nfs3Result::Ok(ok) => Ok(kind(ok.obj_attributes.type_)),
            Nfs3Result::Err((s, _)) => Err(status("getattr", s)),
        }
    }

    /// Walks a relative path of directories; `None` if a component is absent, an error if
    /// one is not a directory (a symlink planted in the path is refused, not followed).
    pub async fn walk(&mut self, rel: &str) -> Result<Option<nfs_fh3>> {
        let mut fh = self.root();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            match self.lookup(&fh, part).await? {
                None => return Ok(None),
                Some((next, Kind::Dir)) => fh = next,
                Some(_) => {
                    return Err(CsiError::FailedPrecondition(format!(
                        "{rel}: {part} is not a directory (symlinks are never followed)"
                    )));
                }
            }
        }
        Ok(Some(fh))
    }

    /// Creates a directory; an existing directory is fine.
    pub async fn mkdir(&mut self, dir: &nfs_fh3, n: &str) -> Result<nfs_fh3> {
        let res = self
            .conn
            .mkdir(&nfs3::MKDIR3args {
                where_: diropargs3 {
                    dir: dir.clone(),
                    name: name(n),
                },
                attributes: nfs3::sattr3 {
                    mode: Nfs3Option::Some(0o777),
                    ..Default::default()
                },
            })
            .await
            .map_err(|e| rpc(&format!("mkdir {n}"), e))?;
        match res {
            Nfs3Result::Ok(ok) => match ok.obj {
                Nfs3Option::Some(fh) => Ok(fh),
                Nfs3Option::None => self.expect_dir(dir, n).await,
            },
            Nfs3Result::Err((nfsstat3::NFS3ERR_EXIST, _)) => self.expect_dir(dir, n).await,
            Nfs3Result::Err((s, _)) => Err(status(&format!("mkdir {n}"), s)),
        }
    }

    async fn expect_dir(&mut self, dir: &nfs_fh3, n: &str) -> Result<nfs_fh3> {
        match self.lookup(dir, n).await? {
            Some((fh, Kind::Dir)) => Ok(fh),
            Some(_) => Err(CsiError::FailedPrecondition(format!(
                "{n} exists and is not a directory"
            ))),
            None => Err(CsiError::Internal(format!("{n} vanished after mkdir"))),
        }
    }

    /// Names in a directory, without `.` and `..`.
    pub async fn list(&mut self, dir: &nfs_fh3) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut cookie = 0;
        let mut verf = nfs3::cookieverf3::default();
        loop {
            let res = self
                .conn
                .readdir(&nfs3::READDIR3args {
                    dir: dir.clone(),
                    cookie,
                    cookieverf: verf,
                    count: 64 * 1024,
                })
                .await
                .map_err(|e| rpc("readdir", e))?;
            let ok = match res {
                Nfs3Result::Ok(ok) => ok,
                Nfs3Result::Err((s, _)) => return Err(status("readdir", s)),
            };
            verf = ok.cookieverf;
            for e in &ok.reply.entries.0 {
                cookie = e.cookie;
                let n = String::from_utf8_lossy(e.name.0.as_ref()).into_owned();
                if n != "." && n != ".." {
                    names.push(n);
                }
            }
            if ok.reply.eof || ok.reply.entries.0.is_empty() {
                return Ok(names);
            }
        }
    }

    /// Removes `n` in `dir` and, if it is a directory, everything below it. Symlinks are
    /// removed as links; the walk never leaves the tree it started in.
    pub async fn remove_tree(&mut self, dir: &nfs_fh3, n: &str) -> Result<()> {
        let Some((fh, k)) = self.lookup(dir, n).await? else {
            return Ok(());
        };
        if k == Kind::Dir {
            for child in self.list(&fh).await? {
                Box::pin(self.remove_tree(&fh, &child)).await?;
            }
            let res = self
                .conn
                .rmdir(&nfs3::RMDIR3args {
                    object: diropargs3 {
                        dir: dir.clone(),
                        name: name(n),
                    },
                })
                .await
                .map_err(|e| rpc(&format!("rmdir {n}"), e))?;
            match res {
                Nfs3Result::Ok(_) | Nfs3Result::Err((nfsstat3::NFS3ERR_NOENT, _)) => Ok(()),
                Nfs3Result::Err((s, _)) => Err(status(&format!("rmdir {n}"), s)),
            }
        } else {
            let res = self
                .conn
                .remove(&nfs3::REMOVE3args {
                    object: diropargs3 {
                        dir: dir.clone(),
                        name: name(n),
                    },
                })
                .await
                .map_err(|e| rpc(&format!("remove {n}"), e))?;
            match res {
                Nfs3Result::Ok(_) | Nfs3Result::Err((nfsstat3::NFS3ERR_NOENT, _)) => Ok(()),
                Nfs3Result::Err((s, _)) => Err(status(&format!("remove {n}"), s)),
            }
        }
    }

    /// Renames `from/n` to `to/new` (archive on delete).
    pub async fn rename(&mut self, from: &nfs_fh3, n: &str, to: &nfs_fh3, new: &str) -> Result<()> {
        let res = self
            .conn
            .rename(&nfs3::RENAME3args {
                from: diropargs3 {
                    dir: from.clone(),
                    name: name(n),
                },
                to: diropargs3 {
                    dir: to.clone(),
                    name: name(new),
                },
            })
            .await
            .map_err(|e| rpc(&format!("rename {n}"), e))?;
        match res {
            Nfs3Result::Ok(_) => Ok(()),
            Nfs3Result::Err((s, _)) => Err(status(&format!("rename {n} to {new}"), s)),
        }
    }

    /// Copies directory `src` into a new directory `n` in `dst_parent`: files byte for byte,
    /// symlinks as links, subdirectories recursively.
    pub async fn copy_tree(&mut self, src: &nfs_fh3, dst_parent: &nfs_fh3, n: &str) -> Result<()> {
        let dst = self.mkdir(dst_parent, n).await?;
        for child in self.list(src).await? {
            let Some((fh, k)) = self.lookup(src, &child).await? else {
                continue;
            };
            match k {
                Kind::Dir => Box::pin(self.copy_tree(&fh, &dst, &child)).await?,
                Kind::File => self.copy_file(&fh, &dst, &child).await?,
                Kind::Link => self.copy_link(&fh, &dst, &child).await?,
                Kind::Other => {}
            }
        }
        Ok(())
    }

    async fn copy_file(&mut self, src: &nfs_fh3, dst_dir: &nfs_fh3, n: &str) -> Result<()> {
        let dst = self.create_file(dst_dir, n).await?;
        let mut offset = 0u64;
        loop {
            let (data, eof) = self.read_at(src, offset, 256 * 1024, n).await?;
            self.write_at(&dst, offset, &data, n).await?;
            offset += data.len() as u64;
            if eof || data.is_empty() {
                return Ok(());
            }
        }
    }

    /// Creates (or truncates) regular file `n` in `dir`, mode 0644.
    pub async fn create_file(&mut self, dir: &nfs_fh3, n: &str) -> Result<nfs_fh3> {
        let res = self
            .conn
            .create(&nfs3::CREATE3args {
                where_: diropargs3 {
                    dir: dir.clone(),
                    name: name(n),
                },
                how: nfs3::createhow3::UNCHECKED(nfs3::sattr3 {
                    mode: Nfs3Option::Some(0o644),
                    size: Nfs3Option::Some(0),
                    ..Default::default()
                }),
            })
            .await
            .map_err(|e| rpc(&format!("create {n}"), e))?;
        match res {
            Nfs3Result::Ok(ok) => match ok.obj {
                Nfs3Option::Some(fh) => Ok(fh),
                Nfs3Option::None => match self.lookup(dir, n).await? {
                    Some((fh, _)) => Ok(fh),
                    None => Err(CsiError::Internal(format!("{n} vanished after create"))),
                },
            },
            Nfs3Result::Err((s, _)) => Err(status(&format!("create {n}"), s)),
        }
    }

    /// Reads up to `count` bytes at `offset`; also says whether the file ended.
    pub async fn read_at(
        &mut self,
        file: &nfs_fh3,
        offset: u64,
        count: u32,
        n: &str,
    ) -> Result<(Vec<u8>, bool)> {
        let res = self
            .conn
            .read(&nfs3::READ3args {
                file: file.clone(),
                offset,
                count,
            })
            .await
            .map_err(|e| rpc(&format!("read {n}"), e))?;
        match res {
            Nfs3Result::Ok(ok) => Ok((ok.data.0.as_ref().to_vec(), ok.eof)),
            Nfs3Result::Err((s, _)) => Err(status(&format!("read {n}"), s)),
        }
    }

    /// Writes all of `data` at `offset`, stable on the server's disk before returning.
    pub async fn write_at(&mut self, file: &nfs_fh3, offset: u64, data: &[u8], n: &str) -> Result<()> {
        let mut written = 0usize;
        while written < data.len() {
            let chunk = &data[written..];
            let res = self
                .conn
                .write(&nfs3::WRITE3args {
                    file: file.clone(),
                    offset: offset + written as u64,
                    count: chunk.len() as u32,
                    stable: nfs3::stable_how::FILE_SYNC,
                    data: Opaque::borrowed(chunk),
                })
                .await
                .map_err(|e| rpc(&format!("write {n}"), e))?;
            match res {
                Nfs3Result::Ok(w) if w.count > 0 => written += w.count as usize,
                Nfs3Result::Ok(_) => return Err(CsiError::Internal(format!("write {n}: no progress"))),
                Nfs3Result::Err((s, _)) => return Err(status(&format!("write {n}"), s)),
            }
        }
        Ok(())
    }

    async fn copy_link(&mut self, src: &nfs_fh3, dst_dir: &nfs_fh3, n: &str) -> Result<()> {
        let res = self
            .conn
            .readlink(&nfs3::READLINK3args { symlink: src.clone() })
            .await
            .map_err(|e| rpc(&format!("readlink {n}"), e))?;
        let target = match res {
            Nfs3Result::Ok(ok) => ok.data.0.as_ref().to_vec(),
            Nfs3Result::Err((s, _)) => return Err(status(&format!("readlink {n}"), s)),
        };
        let res = self
            .conn
            .symlink(&nfs3::SYMLINK3args {
                where_: diropargs3 {
                    dir: dst_dir.clone(),
                    name: name(n),
                },
                symlink: nfs3::symlinkdata3 {
                    symlink_attributes: nfs3::sattr3::default(),
                    symlink_data: target.into(),
                },
            })
            .await
            .map_err(|e| rpc(&format!("symlink {n}"), e))?;
        match res {
            Nfs3Result::Ok(_) | Nfs3Result::Err((nfsstat3::NFS3ERR_EXIST, _)) => Ok(()),
            Nfs3Result::Err((s, _)) => Err(status(&format!("symlink {n}"), s)),
        }
    }

    /// Free and total bytes of the export, as the server reports them.
    pub async fn fsstat(&mut self) -> Result<(u64, u64)> {
        let fsroot = self.root();
        let res = self
            .conn
            .fsstat(&nfs3::FSSTAT3args { fsroot })
            .await
            .map_err(|e| rpc("fsstat", e))?;
        match res {
            Nfs3Result::Ok(ok) => Ok((ok.abytes, ok.tbytes)),
            Nfs3Result::Err((s, _)) => Err(status("fsstat", s)),
        }
    }

    /// Unmounts (best effort; the TCP connection closes on drop anyway).
    pub async fn close(self) {
        let _ = self.conn.unmount().await;
    }
}

fn kind(t: ftype3) -> Kind {
    match t {
        ftype3::NF3DIR => Kind::Dir,
        ftype3::NF3REG => Kind::File,
        ftype3::NF3LNK => Kind::Link,
        _ => Kind::Other,
    }
}
