//! A snapshot's tree listing (JSON lines, after age and zstd), which anyone holding the
//! repository's public recipient can write: parsed, checked for damage, and planned for a
//! restore with and without `--include` and `--exclude`. The plan must never leave the target:
//! every path is plain and relative, no path is planned twice, nothing is planned under a
//! planned symlink or file, and a hard link names a file the plan writes.
#![no_main]

use std::collections::HashMap;
use std::path::{Component, Path};
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use lifeboat_backup::index::Index;
use lifeboat_backup::restore::{EntryKind, plan_restore};
use lifeboat_backup::snapshot::{Node, safe_relative, tree_damage};
use lifeboat_backup::sources::files::Exclusions;
use lifeboat_fuzz as _;

/// Exclusions planned with, compiled once (not per input).
static EXCLUDE: LazyLock<Exclusions> = LazyLock::new(|| {
    Exclusions::new(&["b*".to_string(), "/x/y/".to_string()]).expect("the fuzz target's patterns compile")
});

fuzz_target!(|listing: &[u8]| {
    let Ok(nodes) = Node::parse_listing(listing) else {
        return;
    };
    let _ = tree_damage(&nodes);
    for node in &nodes {
        let _ = node.volume_extents();
        let _ = node.stored_length();
    }
    let index = Index::default();
    let (any_a, under_x) = (["**/a*".to_string()], ["x/".to_string()]);
    let cases: [(&[String], Exclusions); 4] = [
        (&[], Exclusions::default()),
        (&any_a, Exclusions::default()),
        (&under_x, EXCLUDE.clone()),
        (&[], EXCLUDE.clone()),
    ];
    for (include, exclude) in &cases {
        let Ok(plan) = plan_restore(&nodes, &index, include, exclude) else {
            continue;
        };
        let mut planned: HashMap<&Path, &EntryKind> = HashMap::new();
        for entry in &plan.entries {
            assert!(
                entry.path.components().all(|c| matches!(c, Component::Normal(_))),
                "planned path {:?} is not plain",
                entry.path
            );
            let checked = safe_relative(nodes[entry.node].path_bytes()).expect("a planned path is safe");
            assert_eq!(checked, entry.path, "the plan's path is not the node's");
            assert!(
                planned.insert(&entry.path, &entry.kind).is_none(),
                "{:?} planned twice",
                entry.path
            );
        }
        for entry in &plan.entries {
            for ancestor in entry.path.ancestors().skip(1) {
                if let Some(kind) = planned.get(ancestor) {
                    assert!(
                        matches!(kind, EntryKind::Dir),
                        "{:?} planned under {ancestor:?}, which is planned as {kind:?}",
                        entry.path
                    );
                }
            }
            if let EntryKind::HardLink { to } = entry.kind {
                let target = plan.entries.iter().find(|e| e.node == to);
                assert!(
                    target.is_some_and(|t| matches!(t.kind, EntryKind::File)),
                    "hard link {:?} names node {to}, which the plan does not write as a file",
                    entry.path
                );
            }
        }
    }
});
