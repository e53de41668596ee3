//! One NFSv3 connection to an export, with the few procedures a backup and a restore use.
//! No procedure here follows a symbolic link: entries are reached by LOOKUP of one name in
//! a directory handle, and a handle's type is read from its attributes.
//!
//! Every call returns two layers: the outer `Result` is the connection (a failure there —
//! lost connection, garbled reply, no reply within [`RPC_TIMEOUT`] — leaves the connection
//! unusable and stops the operation), the inner one the server's status for this entry
//! (`NFS3ERR_NOENT`, `NFS3ERR_ACCES`…), which the caller decides about.

use std::time::Duration;

use nfs3_client::nfs3_types::nfs3::{
    self, Nfs3Option, Nfs3Result, diropargs3, fattr3, filename3, nfs_fh3, nfsstat3, sattr3,
};
use nfs3_client::nfs3_types::rpc::{auth_unix, opaque_auth};
use nfs3_client::nfs3_types::xdr_codec::Opaque;

use super::NfsError;

/// Runs one RPC on `$client`'s connection under [`RPC_TIMEOUT`], returning the reply or
/// (from the enclosing function) the connection's failure.
macro_rules! rpc {
    ($client:ident, $op:literal, $path:expr, $call:expr) => {{
        $client.usable($op, $path)?;
        let out = tokio::time::timeout(RPC_TIMEOUT, $call).await;
        $client.settle($op, $path, out)?
    }};
}

type Conn = nfs3_client::Nfs3Connection<nfs3_client::tokio::TokioIo<tokio::net::TcpStream>>;

/// How long one RPC may take before the connection is given up.
pub(crate) const RPC_TIMEOUT: Duration = Duration::from_secs(120);

/// The largest READ or WRITE asked for, whatever the server allows (the server's `rtmax` and
/// `wtmax` may lower it).
pub(crate) const MAX_IO: u32 = 1024 * 1024;

/// The server's answer for one entry: `Err` holds its status.
pub(crate) type Reply<T> = Result<T, nfsstat3>;

/// A mounted export.
pub(crate) struct Client {
    conn: Conn,
    root: nfs_fh3,
    /// `server:export`, for messages.
    what: String,
    broken: bool,
    /// Largest READ this connection asks for.
    pub(crate) read_size: u32,
    /// Largest WRITE this connection sends.
    pub(crate) write_size: u32,
}

/// One directory entry with its attributes and handle.
pub(crate) struct Entry {
    /// The name, exact bytes.
    pub(crate) name: Vec<u8>,
    /// Its handle.
    pub(crate) fh: nfs_fh3,
    /// Its attributes.
    pub(crate) attr: fattr3,
}

fn fname(name: &[u8]) -> filename3<'static> {
    filename3(Opaque::owned(name.to_vec()))
}

fn dirop(dir: &nfs_fh3, name: &[u8]) -> diropargs3<'static> {
    diropargs3 {
        dir: dir.clone(),
        name: fname(name),
    }
}

impl Client {
    /// Mounts `export` on `server` (AUTH_UNIX as uid 0, from a privileged port) and asks the
    /// server for its transfer sizes.
    pub(crate) async fn connect(server: &str, export: &str) -> Result<Self, NfsError> {
        let mount_error = |why: String| NfsError::Mount {
            server: server.to_string(),
            export: export.to_string(),
            why,
        };
        let builder =
            nfs3_client::Nfs3ConnectionBuilder::new(nfs3_client::tokio::TokioConnector, server, export)
                .credential(opaque_auth::auth_unix(&auth_unix::default()));
        let conn = tokio::time::timeout(RPC_TIMEOUT, builder.mount())
            .await
            .map_err(|_| mount_error(format!("no answer in {}s", RPC_TIMEOUT.as_secs())))?
            .map_err(|e| mount_error(e.to_string()))?;
        let root = conn.root_nfs_fh3();
        let mut client = Self {
            conn,
            root,
            what: format!("{server}:{export}"),
            broken: false,
            read_size: MAX_IO,
            write_size: MAX_IO,
        };
        let fsroot = client.root.clone();
        let info = rpc!(
            client,
            "FSINFO",
            "/",
            client.conn.fsinfo(&nfs3::FSINFO3args { fsroot })
        );
        if let Nfs3Result::Ok(info) = info {
            if info.rtmax > 0 {
                client.read_size = info.rtmax.min(MAX_IO);
            }
            if info.wtmax > 0 {
                client.write_size = info.wtmax.min(MAX_IO);
            }
        }
        Ok(client)
    }

    /// The export's root handle.
    pub(crate) fn root(&self) -> nfs_fh3 {
        self.root.clone()
    }

    /// Refuses to use a connection that failed once (it may hold half a reply).
    fn usable(&self, op: &'static str, path: &str) -> Result<(), NfsError> {
        if self.broken {
            return Err(self.rpc_error(op, path, "the connection failed earlier".to_string()));
        }
        Ok(())
    }

    /// The outcome of one RPC run under [`RPC_TIMEOUT`]; a failure marks the connection
    /// unusable.
    fn settle<T>(
        &mut self,
        op: &'static str,
        path: &str,
        out: Result<Result<T, nfs3_client::RpcError>, tokio::time::error::Elapsed>,
    ) -> Result<T, NfsError> {
        let why = match out {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer in {}s", RPC_TIMEOUT.as_secs()),
        };
        self.broken = true;
        Err(self.rpc_error(op, path, why))
    }

    fn rpc_error(&self, op: &'static str, path: &str, why: String) -> NfsError {
        NfsError::Rpc {
            server: self.what.clone(),
            op,
            path: path.to_string(),
            why,
        }
    }

    /// The attributes of `fh`.
    pub(crate) async fn getattr(&mut self, fh: &nfs_fh3, path: &str) -> Result<Reply<fattr3>, NfsError> {
        let object = fh.clone();
        let res = rpc!(
            self,
            "GETATTR",
            path,
            self.conn.getattr(&nfs3::GETATTR3args { object })
        );
        Ok(match res {
            Nfs3Result::Ok(ok) => Ok(ok.obj_attributes),
            Nfs3Result::Err((s, _)) => Err(s),
        })
    }

    /// Looks up one name in a directory (never following it): handle and attributes.
    pub(crate) async fn lookup(
        &mut self,
        dir: &nfs_fh3,
        name: &[u8],
        path: &str,
    ) -> Result<Reply<(nfs_fh3, fattr3)>, NfsError> {
        let what = dirop(dir, name);
        let res = rpc!(
            self,
            "LOOKUP",
            path,
            self.conn.lookup(&nfs3::LOOKUP3args { what })
        );
        match res {
            Nfs3Result::Ok(ok) => match ok.obj_attributes {
                Nfs3Option::Some(a) => Ok(Ok((ok.object, a))),
                Nfs3Option::None => {
                    let attr = self.getattr(&ok.object, path).await?;
                    Ok(attr.map(|a| (ok.object, a)))
                }
            },
            Nfs3Result::Err((s, _)) => Ok(Err(s)),
        }
    }

    /// Every entry of a directory but `.` and `..`, with attributes and handles
    /// (READDIRPLUS; an entry the server sent without them is looked up).
    pub(crate) async fn list(&mut self, dir: &nfs_fh3, path: &str) -> Result<Reply<Vec<Entry>>, NfsError> {
        let mut out = Vec::new();
        let mut cookie = 0;
        let mut cookieverf = nfs3::cookieverf3::default();
        loop {
            let args = nfs3::READDIRPLUS3args {
                dir: dir.clone(),
                cookie,
                cookieverf,
                dircount: 64 * 1024,
                maxcount: 256 * 1024,
            };
            let res = rpc!(self, "READDIRPLUS", path, self.conn.readdirplus(&args));
            let ok = match res {
                Nfs3Result::Ok(ok) => ok,
                Nfs3Result::Err((s, _)) => return Ok(Err(s)),
            };
            cookieverf = ok.cookieverf;
            let eof = ok.reply.eof;
            let entries = ok.reply.entries.into_inner();
            let empty = entries.is_empty();
            for e in entries {
                cookie = e.cookie;
                let name = e.name.0.to_vec();
                if name == b"." || name == b".." {
                    continue;
                }
                match (e.name_handle, e.name_attributes) {
                    (Nfs3Option::Some(fh), Nfs3Option::Some(attr)) => out.push(Entry { name, fh, attr }),
                    _ => {
                        let shown = format!("{path}/{}", String::from_utf8_lossy(&name));
                        match self.lookup(dir, &name, &shown).await? {
                            Ok((fh, attr)) => out.push(Entry { name, fh, attr }),
                            // Gone since it was listed: not in the listing either.
                            Err(nfsstat3::NFS3ERR_NOENT) => {}
                            Err(s) => return Ok(Err(s)),
                        }
                    }
                }
            }
            if eof || empty {
                return Ok(Ok(out));
            }
        }
    }

    /// Reads up to `count` bytes at `offset`: the data, whether the file ended, and the
    /// file's attributes after the read when the server sent them.
    pub(crate) async fn read(
        &mut self,
        file: &nfs_fh3,
        offset: u64,
        count: u32,
        path: &str,
    ) -> Result<Reply<(Vec<u8>, bool, Option<fattr3>)>, NfsError> {
        let args = nfs3::READ3args {
            file: file.clone(),
            offset,
            count,
        };
        let res = rpc!(self, "READ", path, self.conn.read(&args));
        Ok(match res {
            Nfs3Result::Ok(ok) => {
                let attr = match ok.file_attributes {
                    Nfs3Option::Some(a) => Some(a),
                    Nfs3Option::None => None,
                };
                Ok((ok.data.into_owned(), ok.eof, attr))
            }
            Nfs3Result::Err((s, _)) => Err(s),
        })
    }

    /// A symlink's target, exact bytes.
    pub(crate) async fn readlink(&mut self, link: &nfs_fh3, path: &str) -> Result<Reply<Vec<u8>>, NfsError> {
        let symlink = link.clone();
        let res = rpc!(
            self,
            "READLINK",
            path,
            self.conn.readlink(&nfs3::READLINK3args { symlink })
        );
        Ok(match res {
            Nfs3Result::Ok(ok) => Ok(ok.data.0.into_owned()),
            Nfs3Result::Err((s, _)) => Err(s),
        })
    }

    /// Makes directory `name` in `dir` (mode 0700 until its metadata is set); an existing
    /// entry is `NFS3ERR_EXIST`.
    pub(crate) async fn mkdir(
        &mut self,
        dir: &nfs_fh3,
        name: &[u8],
        path: &str,
    ) -> Result<Reply<nfs_fh3>, NfsError> {
        let args = nfs3::MKDIR3args {
            where_: dirop(dir, name),
            attributes: sattr3 {
                mode: Nfs3Option::Some(0o700),
                ..Default::default()
            },
        };
        let res = rpc!(self, "MKDIR", path, self.conn.mkdir(&args));
        match res {
            Nfs3Result::Ok(ok) => self.made(dir, name, ok.obj, path).await,
            Nfs3Result::Err((s, _)) => Ok(Err(s)),
        }
    }

    /// Creates regular file `name` in `dir`, failing with `NFS3ERR_EXIST` if anything has
    /// that name (GUARDED: an existing file is never opened and written into).
    pub(crate) async fn create(
        &mut self,
        dir: &nfs_fh3,
        name: &[u8],
        path: &str,
    ) -> Result<Reply<nfs_fh3>, NfsError> {
        let args = nfs3::CREATE3args {
            where_: dirop(dir, name),
            how: nfs3::createhow3::GUARDED(sattr3 {
                mode: Nfs3Option::Some(0o600),
                ..Default::default()
            }),
        };
        let res = rpc!(self, "CREATE", path, self.conn.create(&args));
        match res {
            Nfs3Result::Ok(ok) => self.made(dir, name, ok.obj, path).await,
            Nfs3Result::Err((s, _)) => Ok(Err(s)),
        }
    }

    /// Makes symlink `name` in `dir` pointing at `target` (bytes, not interpreted).
    pub(crate) async fn symlink(
        &mut self,
        dir: &nfs_fh3,
        name: &[u8],
        target: &[u8],
        path: &str,
    ) -> Result<Reply<nfs_fh3>, NfsError> {
        let args = nfs3::SYMLINK3args {
            where_: dirop(dir, name),
            symlink: nfs3::symlinkdata3 {
                symlink_attributes: sattr3::default(),
                symlink_data: nfs3::nfspath3(Opaque::owned(target.to_vec())),
            },
        };
        let res = rpc!(self, "SYMLINK", path, self.conn.symlink(&args));
        match res {
            Nfs3Result::Ok(ok) => self.made(dir, name, ok.obj, path).await,
            Nfs3Result::Err((s, _)) => Ok(Err(s)),
        }
    }

    /// The handle a create-like call made: the one it returned, else looked up.
    async fn made(
        &mut self,
        dir: &nfs_fh3,
        name: &[u8],
        fh: nfs3::post_op_fh3,
        path: &str,
    ) -> Result<Reply<nfs_fh3>, NfsError> {
        match fh {
            Nfs3Option::Some(fh) => Ok(Ok(fh)),
            Nfs3Option::None => Ok(self.lookup(dir, name, path).await?.map(|(fh, _)| fh)),
        }
    }

    /// Writes all of `data` at `offset` in pieces of at most `write_size`, each stable on the
    /// server's disk before the reply (FILE_SYNC).
    pub(crate) async fn write(
        &mut self,
        file: &nfs_fh3,
        offset: u64,
        data: &[u8],
        path: &str,
    ) -> Result<Reply<()>, NfsError> {
        let mut done = 0usize;
        while done < data.len() {
            let end = data.len().min(done + self.write_size as usize);
            let piece = &data[done..end];
            let args = nfs3::WRITE3args {
                file: file.clone(),
                offset: offset + done as u64,
                count: piece.len() as u32,
                stable: nfs3::stable_how::FILE_SYNC,
                data: Opaque::borrowed(piece),
            };
            let res = rpc!(self, "WRITE", path, self.conn.write(&args));
            match res {
                Nfs3Result::Ok(w) if w.count > 0 => done += w.count as usize,
                Nfs3Result::Ok(_) => return Ok(Err(nfsstat3::NFS3ERR_IO)),
                Nfs3Result::Err((s, _)) => return Ok(Err(s)),
            }
        }
        Ok(Ok(()))
    }

    /// Sets attributes of `fh` (the fields of `attr` that are `Some`).
    pub(crate) async fn setattr(
        &mut self,
        fh: &nfs_fh3,
        attr: sattr3,
        path: &str,
    ) -> Result<Reply<()>, NfsError> {
        let args = nfs3::SETATTR3args {
            object: fh.clone(),
            new_attributes: attr,
            guard: Nfs3Option::None,
        };
        let res = rpc!(self, "SETATTR", path, self.conn.setattr(&args));
        Ok(match res {
            Nfs3Result::Ok(_) => Ok(()),
            Nfs3Result::Err((s, _)) => Err(s),
        })
    }

    /// Removes non-directory `name` from `dir` (a symlink is removed as a link).
    pub(crate) async fn remove(
        &mut self,
        dir: &nfs_fh3,
        name: &[u8],
        path: &str,
    ) -> Result<Reply<()>, NfsError> {
        let object = dirop(dir, name);
        let res = rpc!(
            self,
            "REMOVE",
            path,
            self.conn.remove(&nfs3::REMOVE3args { object })
        );
        Ok(match res {
            Nfs3Result::Ok(_) => Ok(()),
            Nfs3Result::Err((s, _)) => Err(s),
        })
    }

    /// Removes empty directory `name` from `dir`.
    pub(crate) async fn rmdir(
        &mut self,
        dir: &nfs_fh3,
        name: &[u8],
        path: &str,
    ) -> Result<Reply<()>, NfsError> {
        let object = dirop(dir, name);
        let res = rpc!(self, "RMDIR", path, self.conn.rmdir(&nfs3::RMDIR3args { object }));
        Ok(match res {
            Nfs3Result::Ok(_) => Ok(()),
            Nfs3Result::Err((s, _)) => Err(s),
        })
    }

    /// Removes `name` from `dir` and, when it is a directory, everything below it first.
    /// Symlinks are removed as links; the walk never leaves the tree it started in.
    pub(crate) async fn remove_tree(
        &mut self,
        dir: &nfs_fh3,
        name: &[u8],
        path: &str,
    ) -> Result<Reply<()>, NfsError> {
        let (fh, attr) = match self.lookup(dir, name, path).await? {
            Ok(found) => found,
            Err(nfsstat3::NFS3ERR_NOENT) => return Ok(Ok(())),
            Err(s) => return Ok(Err(s)),
        };
        if attr.type_ != nfs3::ftype3::NF3DIR {
            return self.remove(dir, name, path).await;
        }
        let entries = match self.list(&fh, path).await? {
            Ok(e) => e,
            Err(s) => return Ok(Err(s)),
        };
        for e in entries {
            let below = format!("{path}/{}", String::from_utf8_lossy(&e.name));
            if let Err(s) = Box::pin(self.remove_tree(&fh, &e.name, &below)).await? {
                return Ok(Err(s));
            }
        }
        self.rmdir(dir, name, path).await
    }

    /// Unmounts (best effort; the connection closes on drop anyway).
    pub(crate) async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.conn.unmount()).await;
    }
}
