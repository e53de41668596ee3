//! What makes a tree listing damaged: paths that would leave a restore's target, a name
//! listed twice in one directory, an entry under something that is not a directory, a
//! symlink without a target, a listing out of order. `repo check` reports these; a restore
//! refuses the entries involved and everything below them.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, PathBuf};

use super::{Node, NodeKind};

/// One damaged entry of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeDamage {
    /// Index of the node in the listing.
    pub node: usize,
    /// What kind of damage.
    pub kind: DamageKind,
    /// What is wrong with it, naming the path.
    pub why: String,
}

/// The kinds of tree damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DamageKind {
    /// A path that is absolute, holds `..`, `.`, an empty component or a NUL byte.
    UnsafePath,
    /// A name listed more than once in one directory.
    Duplicate,
    /// An entry below something the tree lists as other than a directory (its parent, or an
    /// ancestor further up when the parent is not listed).
    UnderNonDirectory,
    /// A symlink without a target.
    NoTarget,
    /// An entry out of the listing's sort order.
    OutOfOrder,
}

impl TreeDamage {
    /// Whether a restore must refuse the entry (and everything below it). Only the order of
    /// the listing is harmless to a restore; incremental backups rely on it.
    pub fn refuses_restore(&self) -> bool {
        self.kind != DamageKind::OutOfOrder
    }
}

/// A tree path that could lead a restore outside its target; shown as the path (lossy UTF-8,
/// quoted) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsafePath {
    /// The path is empty.
    #[error("empty path")]
    Empty,
    /// The path starts at the root.
    #[error("{0:?}: absolute path")]
    Absolute(String),
    /// The path holds a NUL byte.
    #[error("{0:?}: NUL byte")]
    Nul(String),
    /// A component is empty, `.` or `..`.
    #[error("{path:?}: component {component:?}")]
    Component {
        /// The path.
        path: String,
        /// The component.
        component: String,
    },
    /// The standard library's parser found more than plain names.
    #[error("{0:?}: not a plain relative path")]
    NotPlain(String),
}

/// Turns a tree path into a relative path, refusing anything that could leave the target:
/// absolute paths, `..`, `.`, empty components, NUL bytes.
pub fn safe_relative(path: &[u8]) -> Result<PathBuf, UnsafePath> {
    let shown = || String::from_utf8_lossy(path).into_owned();
    if path.is_empty() {
        return Err(UnsafePath::Empty);
    }
    if path.starts_with(b"/") {
        return Err(UnsafePath::Absolute(shown()));
    }
    if path.contains(&0) {
        return Err(UnsafePath::Nul(shown()));
    }
    let mut out = PathBuf::new();
    for part in path.split(|b| *b == b'/') {
        if part.is_empty() || part == b"." || part == b".." {
            return Err(UnsafePath::Component {
                path: shown(),
                component: String::from_utf8_lossy(part).into_owned(),
            });
        }
        out.push(OsStr::from_bytes(part));
    }
    // Belt and braces: the std parser must agree that only normal components remain.
    if !out.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(UnsafePath::NotPlain(shown()));
    }
    Ok(out)
}

/// The parent of a tree path (`a/b` → `a`), `None` at the top.
pub(crate) fn parent_of(path: &[u8]) -> Option<&[u8]> {
    path.iter().rposition(|b| *b == b'/').map(|i| &path[..i])
}

/// The nearest node listed above `path` (its parent, or further up when the parent is not
/// listed) that is not a directory: a restore would have to write through it.
fn non_directory_above(nodes: &[Node], by_path: &HashMap<&[u8], Vec<usize>>, path: &[u8]) -> Option<usize> {
    let mut above = parent_of(path);
    while let Some(ancestor) = above {
        if let Some(&[a]) = by_path.get(ancestor).map(Vec::as_slice)
            && nodes[a].kind != NodeKind::Dir
        {
            return Some(a);
        }
        above = parent_of(ancestor);
    }
    None
}

/// Every damaged entry of `nodes`, in listing order.
pub fn tree_damage(nodes: &[Node]) -> Vec<TreeDamage> {
    let mut damage = Vec::new();
    let mut by_path: HashMap<&[u8], Vec<usize>> = HashMap::with_capacity(nodes.len());
    for (i, node) in nodes.iter().enumerate() {
        by_path.entry(node.path_bytes()).or_default().push(i);
    }
    for (i, node) in nodes.iter().enumerate() {
        let path = node.path_bytes();
        if let Err(why) = safe_relative(path) {
            damage.push(TreeDamage {
                node: i,
                kind: DamageKind::UnsafePath,
                why: format!("unsafe path {why}"),
            });
            continue;
        }
        if let Some(same) = by_path.get(path).filter(|s| s.len() > 1) {
            damage.push(TreeDamage {
                node: i,
                kind: DamageKind::Duplicate,
                why: format!(
                    "{:?} is listed {} times (a damaged or forged tree; none of them is restored)",
                    node.path,
                    same.len()
                ),
            });
            continue;
        }
        if let Some(p) = non_directory_above(nodes, &by_path, path) {
            damage.push(TreeDamage {
                node: i,
                kind: DamageKind::UnderNonDirectory,
                why: format!(
                    "{:?} lies under {:?}, which is a {}, not a directory",
                    node.path,
                    nodes[p].path,
                    nodes[p].kind.name()
                ),
            });
            continue;
        }
        if node.kind == NodeKind::Symlink && node.target_bytes().is_none() {
            damage.push(TreeDamage {
                node: i,
                kind: DamageKind::NoTarget,
                why: format!("symlink {:?} has no target", node.path),
            });
            continue;
        }
        if i > 0 && nodes[i - 1].path_bytes() > path {
            damage.push(TreeDamage {
                node: i,
                kind: DamageKind::OutOfOrder,
                why: format!(
                    "{:?} is out of order (the listing must be sorted by path bytes)",
                    node.path
                ),
            });
        }
    }
    damage
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(path: &[u8], kind: NodeKind) -> Node {
        let mut n = Node::with_path(path, kind);
        if kind == NodeKind::Symlink {
            n.set_target_bytes(b"x");
        }
        n
    }

    #[test]
    fn refuses_escapes() {
        for bad in [
            &b"/etc/passwd"[..],
            b"../x",
            b"a/../../x",
            b"a//b",
            b"./a",
            b"a/.",
            b"",
            b"a\0b",
        ] {
            assert!(safe_relative(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(safe_relative(b"a/b c/d").unwrap(), PathBuf::from("a/b c/d"));
        assert_eq!(
            safe_relative(b"caf\xe9/x").unwrap().as_os_str().as_bytes(),
            b"caf\xe9/x"
        );
    }

    #[test]
    fn duplicates_entries_under_non_directories_and_disorder_are_damage() {
        let nodes = vec![
            node(b"a", NodeKind::Dir),
            node(b"a/x", NodeKind::Symlink),
            node(b"a/x", NodeKind::File),
            node(b"l", NodeKind::Symlink),
            node(b"l/y", NodeKind::File),
            node(b"z", NodeKind::File),
            node(b"m", NodeKind::File),
        ];
        let damaged: Vec<usize> = tree_damage(&nodes).iter().map(|d| d.node).collect();
        assert_eq!(damaged, vec![1, 2, 4, 6]);
        let fine = vec![node(b"a", NodeKind::Dir), node(b"a/x", NodeKind::File)];
        assert!(tree_damage(&fine).is_empty());
    }

    /// Found by the `tree` fuzz target: `data` a file, `data/sub` not listed, `data/sub/x`
    /// listed. Only the parent was looked at, so the entry was planned under a file (or a
    /// symlink) two levels up.
    #[test]
    fn an_entry_below_a_file_further_up_is_damage() {
        for kind in [NodeKind::File, NodeKind::Symlink] {
            let nodes = vec![
                node(b"data", kind),
                node(b"data/sub/deeper/x", NodeKind::File),
                node(b"other", NodeKind::Dir),
                node(b"other/unlisted/y", NodeKind::File),
            ];
            let damage = tree_damage(&nodes);
            assert_eq!(damage.len(), 1, "{damage:?}");
            assert_eq!(
                (damage[0].node, damage[0].kind),
                (1, DamageKind::UnderNonDirectory)
            );
            assert!(damage[0].why.contains("\"data\""), "{}", damage[0].why);
        }
    }
}
