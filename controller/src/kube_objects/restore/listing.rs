//! A snapshot's objects as a restore needs them, gathered from its tree one node at a time:
//! compact, since a backup may list hundreds of thousands of objects and the restore keeps
//! every one of them until it is done (~100 bytes each, against ~400 for a tree node).

use std::sync::Arc;

use lifeboat_backup::blob::BlobId;
use lifeboat_backup::snapshot::Node;

use crate::kube_objects::ObjectPath;

/// One object of the backup: where it was and its blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Resource directory (`deployments.apps`), shared with the objects around it.
    pub key: Arc<str>,
    /// Namespace, for namespaced objects; shared likewise.
    pub namespace: Option<Arc<str>>,
    /// Object name.
    pub name: Box<str>,
    /// Its blob.
    pub blob: BlobId,
    /// Kept only as something the restored objects may need (a Namespace, CRD,
    /// PersistentVolume or StorageClass whose labels a restore's selector does not match).
    pub unselected: bool,
}

impl Listed {
    /// `resource/namespace/name` as in the backup, for messages.
    pub fn display(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/{}/{}", self.key, ns, self.name),
            None => format!("{}/{}", self.key, self.name),
        }
    }
}

/// A snapshot's objects in tree order. The tree is sorted by path, so an object mostly has
/// the resource and namespace of the one before it: those names are stored once per run.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// The objects.
    pub objects: Vec<Listed>,
}

impl Listing {
    /// Adds `node` if it is an object (`resources/<key>/…/<name>.json` with content); other
    /// nodes (the resource table) are left out.
    pub fn push(&mut self, node: &Node) {
        let Some((key, namespace, name)) = ObjectPath::split(&node.path) else {
            return;
        };
        let Some(blob) = node.chunks.first().copied() else {
            return;
        };
        let last = self.objects.last();
        let key = match last.filter(|l| *l.key == *key) {
            Some(l) => l.key.clone(),
            None => Arc::from(key),
        };
        let namespace = namespace.map(|ns| match last.and_then(|l| l.namespace.as_ref()) {
            Some(shared) if **shared == *ns => shared.clone(),
            _ => Arc::from(ns),
        });
        self.objects.push(Listed {
            key,
            namespace,
            name: Box::from(name),
            blob,
            unselected: false,
        });
    }

    /// The listing of `nodes` (for tests, and callers that hold a whole tree).
    pub fn of(nodes: &[Node]) -> Self {
        let mut listing = Self::default();
        for n in nodes {
            listing.push(n);
        }
        listing.objects.shrink_to_fit();
        listing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(path: &str) -> Node {
        Node::stream(
            path,
            1,
            vec![BlobId::of(path.as_bytes())],
            chrono::DateTime::UNIX_EPOCH,
        )
    }

    #[test]
    fn objects_are_listed_with_names_shared() {
        let listing = Listing::of(&[
            node("lifeboat/resources.json"),
            node("resources/configmaps/namespaces/shop/a.json"),
            node("resources/configmaps/namespaces/shop/b.json"),
            node("resources/configmaps/namespaces/web/c.json"),
            node("resources/namespaces/cluster/shop.json"),
            node("resources/configmaps/namespaces/shop/too/deep.json"),
            node("resources/configmaps/namespaces/shop/no-suffix"),
        ]);
        let shown: Vec<String> = listing.objects.iter().map(Listed::display).collect();
        assert_eq!(
            shown,
            [
                "configmaps/shop/a",
                "configmaps/shop/b",
                "configmaps/web/c",
                "namespaces/shop"
            ]
        );
        let [a, b, c, ns] = &listing.objects[..] else {
            panic!("four objects");
        };
        assert!(Arc::ptr_eq(&a.key, &b.key) && Arc::ptr_eq(&b.key, &c.key));
        assert!(Arc::ptr_eq(
            a.namespace.as_ref().expect("ns"),
            b.namespace.as_ref().expect("ns")
        ));
        assert!(ns.namespace.is_none());
        assert_eq!(a.blob, BlobId::of(b"resources/configmaps/namespaces/shop/a.json"));
    }
}
