//! What a PersistentVolume's CSI source names: an RBD image of lifeboat-csi or ceph-csi, an
//! NFS directory of lifeboat-csi, or a volume of a driver Lifeboat cannot read.
//!
//! - lifeboat-csi (`csi.lifeboat.dev`): `rbd:<clusterID>:<pool>:<image>` and
//!   `nfs:<server>:<share>:<dir>:<onDelete>` (csi/src/ids.rs).
//! - ceph-csi (`rbd.csi.ceph.com`, `<namespace>.rbd.csi.ceph.com` under Rook):
//!   volumeAttributes `clusterID`, `pool`, `imageName` (and `radosNamespace`: the image's
//!   pool is then `POOL/NAMESPACE`, the rbd CLI's pool spec); the handle is
//!   `0001-<4 hex: len>-<clusterID>-<16 hex: pool id>-<uuid>` and the image `csi-vol-<uuid>`
//!   when `imageName` is missing; static volumes (`staticVolume: "true"`) name the image in
//!   the handle (ceph-csi docs/static-pvc.md).

use std::collections::BTreeMap;

/// lifeboat-csi's default driver name.
pub const LIFEBOAT_DRIVER: &str = "csi.lifeboat.dev";
/// ceph-csi's RBD driver name (Rook prefixes its namespace: `rook-ceph.rbd.csi.ceph.com`).
pub const CEPH_CSI_RBD_DRIVER: &str = "rbd.csi.ceph.com";

/// An RBD image a CSI volume lives on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RbdImage {
    /// The CSI `clusterID` (key into the driver's cluster config for the monitors).
    pub cluster_id: String,
    /// The pool spec: `POOL`, or `POOL/NAMESPACE` for an image in a RADOS namespace.
    pub pool: String,
    /// The image.
    pub image: String,
}

/// A lifeboat-csi NFS volume: a directory of an export.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct NfsDir {
    /// The NFS server (StorageClass `server`).
    pub server: String,
    /// The exported path (StorageClass `share`), absolute.
    pub share: String,
    /// The volume's directory below the share (`[baseDir/]vol-<32 hex>`).
    pub dir: String,
}

impl NfsDir {
    /// `server:/share/dir`, as catalogs and messages name it.
    pub fn display(&self) -> String {
        format!(
            "{}:{}/{}",
            self.server,
            self.share.trim_end_matches('/'),
            self.dir
        )
    }
}

/// What a CSI volume is, as far as a backup is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CsiVolume {
    /// An RBD image Lifeboat can read.
    Rbd(RbdImage),
    /// A lifeboat-csi NFS directory.
    Nfs(NfsDir),
    /// Something this backup cannot take; the text says why.
    Unsupported(String),
}

/// Whether `driver` is ceph-csi's RBD driver (also under Rook's `<namespace>.` prefix).
pub fn is_ceph_csi_rbd(driver: &str) -> bool {
    driver == CEPH_CSI_RBD_DRIVER || driver.ends_with(".rbd.csi.ceph.com")
}

/// Reads a CSI volume source (`driver`, `volumeHandle`, `volumeAttributes`).
pub fn classify(driver: &str, handle: &str, attributes: &BTreeMap<String, String>) -> CsiVolume {
    if driver == LIFEBOAT_DRIVER || driver.ends_with(".lifeboat.dev") {
        return lifeboat(driver, handle);
    }
    if is_ceph_csi_rbd(driver) {
        return ceph_csi(driver, handle, attributes);
    }
    CsiVolume::Unsupported(format!(
        "CSI driver {driver} is not one Lifeboat reads volumes of"
    ))
}

fn lifeboat(driver: &str, handle: &str) -> CsiVolume {
    let parts: Vec<&str> = handle.split(':').collect();
    match parts[..] {
        ["rbd", cluster_id, pool, image] if [cluster_id, pool, image].iter().all(|p| is_name(p)) => {
            CsiVolume::Rbd(RbdImage {
                cluster_id: cluster_id.to_string(),
                pool: pool.to_string(),
                image: image.to_string(),
            })
        }
        ["nfs", server, share, dir, _] if !server.is_empty() && share.starts_with('/') && !dir.is_empty() => {
            CsiVolume::Nfs(NfsDir {
                server: server.to_string(),
                share: share.to_string(),
                dir: dir.to_string(),
            })
        }
        _ => CsiVolume::Unsupported(format!(
            "volume handle {handle:?} of {driver} is not an RBD or NFS volume id"
        )),
    }
}

fn ceph_csi(driver: &str, handle: &str, attributes: &BTreeMap<String, String>) -> CsiVolume {
    let attr = |k: &str| attributes.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let namespace = attr("radosNamespace");
    if namespace.is_some_and(|n| !is_name(n)) {
        return CsiVolume::Unsupported(format!(
            "{driver} volume {handle:?} names RADOS namespace {namespace:?}, which is not a valid name"
        ));
    }
    let composite = parse_ceph_csi_handle(handle);
    let Some(cluster_id) = attr("clusterID")
        .map(str::to_string)
        .or_else(|| composite.as_ref().map(|c| c.0.clone()))
    else {
        return CsiVolume::Unsupported(format!("{driver} volume {handle:?} names no clusterID"));
    };
    let Some(pool) = attr("pool") else {
        return CsiVolume::Unsupported(format!(
            "{driver} volume {handle:?} has no `pool` volume attribute (only a pool id), which Lifeboat does not resolve yet"
        ));
    };
    let image = if attr("staticVolume") == Some("true") {
        Some(handle.to_string())
    } else {
        attr("imageName")
            .map(str::to_string)
            .or_else(|| composite.map(|c| format!("csi-vol-{}", c.1)))
    };
    match image {
        Some(image) if is_name(&cluster_id) && is_name(pool) && is_name(&image) => CsiVolume::Rbd(RbdImage {
            cluster_id,
            // The rbd CLI's pool spec; a volume without the attribute may still be in the
            // namespace ceph-csi's cluster config gives its clusterID (added where that
            // config is read: `Connections::ceph_csi_pool`).
            pool: match namespace {
                Some(ns) => format!("{pool}/{ns}"),
                None => pool.to_string(),
            },
            image,
        }),
        _ => CsiVolume::Unsupported(format!(
            "{driver} volume {handle:?}: no image name in its attributes or handle"
        )),
    }
}

/// `(clusterID, uuid)` of a ceph-csi composite handle.
fn parse_ceph_csi_handle(handle: &str) -> Option<(String, String)> {
    let rest = handle.strip_prefix("0001-")?;
    let len = usize::from_str_radix(rest.get(..4)?, 16).ok()?;
    let rest = rest.get(4..)?.strip_prefix('-')?;
    let cluster_id = rest.get(..len)?;
    let rest = rest.get(len..)?.strip_prefix('-')?;
    let (pool_id, uuid) = (rest.get(..16)?, rest.get(16..)?.strip_prefix('-')?);
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(pool_id) && uuid.len() == 36 && uuid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
        .then(|| (cluster_id.to_string(), uuid.to_string()))
}

/// An RBD pool, image or clusterID as both drivers make them: `[A-Za-z0-9._-]`.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn lifeboat_handles() {
        let h = "rbd:ceph-a:rbd:csi-vol-0123456789abcdef0123456789abcdef";
        assert_eq!(
            classify(LIFEBOAT_DRIVER, h, &BTreeMap::new()),
            CsiVolume::Rbd(RbdImage {
                cluster_id: "ceph-a".into(),
                pool: "rbd".into(),
                image: "csi-vol-0123456789abcdef0123456789abcdef".into()
            })
        );
        assert!(matches!(
            classify(LIFEBOAT_DRIVER, "nfs:10.0.0.5:/exports:k8s/vol-ab:delete", &BTreeMap::new()),
            CsiVolume::Nfs(p) if p.display() == "10.0.0.5:/exports/k8s/vol-ab"
        ));
        assert!(matches!(
            classify(LIFEBOAT_DRIVER, "rbd:a:../etc:x", &BTreeMap::new()),
            CsiVolume::Unsupported(_)
        ));
    }

    #[test]
    fn ceph_csi_handles() {
        let h = "0001-0009-rook-ceph-0000000000000002-b0285c97-a0ce-11eb-8c66-0242ac110002";
        let with_attrs = attrs(&[
            ("clusterID", "rook-ceph"),
            ("pool", "replicapool"),
            ("imageName", "csi-vol-b0285c97-a0ce-11eb-8c66-0242ac110002"),
            ("journalPool", "replicapool"),
        ]);
        let expected = CsiVolume::Rbd(RbdImage {
            cluster_id: "rook-ceph".into(),
            pool: "replicapool".into(),
            image: "csi-vol-b0285c97-a0ce-11eb-8c66-0242ac110002".into(),
        });
        assert_eq!(classify("rook-ceph.rbd.csi.ceph.com", h, &with_attrs), expected);
        // No imageName (older ceph-csi): the image comes from the handle's uuid.
        let old = attrs(&[("pool", "replicapool")]);
        assert_eq!(classify(CEPH_CSI_RBD_DRIVER, h, &old), expected);
        // Static volumes name the image in the handle.
        let stat = attrs(&[("clusterID", "c1"), ("pool", "rbd"), ("staticVolume", "true")]);
        assert!(matches!(
            classify(CEPH_CSI_RBD_DRIVER, "my-image", &stat),
            CsiVolume::Rbd(i) if i.image == "my-image" && i.pool == "rbd"
        ));
        // A RADOS namespace: the rbd CLI's pool spec.
        let ns = attrs(&[("clusterID", "c1"), ("pool", "rbd"), ("radosNamespace", "tenant")]);
        assert!(matches!(
            classify(CEPH_CSI_RBD_DRIVER, h, &ns),
            CsiVolume::Rbd(i) if i.pool == "rbd/tenant"
        ));
        let bad = attrs(&[("clusterID", "c1"), ("pool", "rbd"), ("radosNamespace", "a/b")]);
        assert!(
            matches!(classify(CEPH_CSI_RBD_DRIVER, h, &bad), CsiVolume::Unsupported(w) if w.contains("RADOS namespace"))
        );
        assert!(
            matches!(classify(CEPH_CSI_RBD_DRIVER, h, &BTreeMap::new()), CsiVolume::Unsupported(w) if w.contains("pool"))
        );
    }

    #[test]
    fn other_drivers_are_named() {
        let v = classify("ebs.csi.aws.com", "vol-0abc", &BTreeMap::new());
        assert!(matches!(v, CsiVolume::Unsupported(w) if w.contains("ebs.csi.aws.com")));
        let v = classify("cephfs.csi.ceph.com", "0001-…", &BTreeMap::new());
        assert!(matches!(v, CsiVolume::Unsupported(w) if w.contains("cephfs.csi.ceph.com")));
    }
}
