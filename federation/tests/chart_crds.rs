//! The chart's federation CRDs (`Cluster`, `FailoverPlan`, `Drill`) are the ones the Rust
//! types generate. Regenerate after changing a CRD type with:
//!
//! ```sh
//! UPDATE_CRDS=1 cargo test -p lifeboat-federation --test chart_crds
//! ```

use std::path::PathBuf;

fn chart_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/lifeboat/crds/federation.lifeboat.dev.yaml")
}

#[test]
fn chart_crds_match_the_rust_types() {
    let generated = lifeboat_federation::crd::to_yaml().expect("CRDs serialise");
    let path = chart_file();
    if std::env::var_os("UPDATE_CRDS").is_some() {
        std::fs::write(&path, &generated).expect("write the chart's CRDs");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is out of date with federation/src/crd; regenerate it with \
         `UPDATE_CRDS=1 cargo test -p lifeboat-federation --test chart_crds` and commit the result",
        path.display()
    );
    for kind in ["kind: Cluster\n", "kind: FailoverPlan\n", "kind: Drill\n"] {
        assert!(generated.contains(kind), "{kind} is generated");
    }
}
