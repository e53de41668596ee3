//! Replication metrics, per BackupReplication destination. Labels: the replication's namespace
//! and name, and the destination's name from its spec (bounded by the spec, never error text).
//!
//! `lifeboat_replication_lag_seconds` is computed when scraped (now minus the time of the
//! newest snapshot the destination holds), so it grows between copies as an RPO should, and an
//! alert such as `lifeboat_replication_lag_seconds > 2 * 3600` fires even when copies stall.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

/// One destination of one BackupReplication.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestinationLabels {
    /// The BackupReplication's namespace.
    pub namespace: String,
    /// The BackupReplication's name.
    pub replication: String,
    /// The destination's name in its spec.
    pub destination: String,
}

/// Reports each destination's lag at scrape time.
#[derive(Debug, Default)]
struct Lag {
    /// Unix seconds of the newest snapshot each destination holds.
    newest: Mutex<HashMap<DestinationLabels, i64>>,
}

impl Collector for Lag {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = chrono::Utc::now().timestamp();
        let Ok(newest) = self.newest.lock() else {
            return Ok(());
        };
        let gauge = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "replication_lag_seconds",
            "Age of the newest snapshot each replication destination holds (the RPO for losing the source)",
            None,
            gauge.metric_type(),
        )?;
        for (labels, time) in newest.iter() {
            ConstGauge::new((now - time).max(0)).encode(family.encode_family(labels)?)?;
        }
        Ok(())
    }
}

/// The replication metrics.
#[derive(Debug, Clone, Default)]
pub struct ReplicationMetrics {
    /// Bytes sent to each destination.
    pub bytes: Family<DestinationLabels, Counter>,
    /// Snapshots copied to each destination.
    pub snapshots: Family<DestinationLabels, Counter>,
    /// Copies to each destination that failed or were partial.
    pub errors: Family<DestinationLabels, Counter>,
    /// When a copy to each destination last succeeded (Unix seconds).
    pub last_success: Family<DestinationLabels, Gauge>,
    /// Time of the newest snapshot each destination holds (Unix seconds).
    pub newest_snapshot: Family<DestinationLabels, Gauge>,
    lag: Arc<Lag>,
}

impl ReplicationMetrics {
    /// Registers every replication metric in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "replication_bytes",
            "Bytes copied to replication destinations",
            m.bytes.clone(),
        );
        registry.register(
            "replication_snapshots",
            "Snapshots copied to replication destinations",
            m.snapshots.clone(),
        );
        registry.register(
            "replication_errors",
            "Copies to replication destinations that failed or left snapshots out",
            m.errors.clone(),
        );
        registry.register(
            "replication_last_success_timestamp_seconds",
            "When a copy to each replication destination last succeeded",
            m.last_success.clone(),
        );
        registry.register(
            "replication_newest_snapshot_timestamp_seconds",
            "Time of the newest snapshot each replication destination holds",
            m.newest_snapshot.clone(),
        );
        registry.register_collector(Box::new(m.lag.clone()));
        m
    }

    /// Records the newest snapshot a destination holds (drives the lag).
    pub fn set_newest(&self, labels: &DestinationLabels, unix_seconds: i64) {
        self.newest_snapshot.get_or_create(labels).set(unix_seconds);
        if let Ok(mut m) = self.lag.newest.lock() {
            m.insert(labels.clone(), unix_seconds);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_computed_at_scrape_time_with_the_prefix() {
        let mut registry = Registry::with_prefix("lifeboat");
        let m = ReplicationMetrics::register(&mut registry);
        let labels = DestinationLabels {
            namespace: "ns".into(),
            replication: "offsite".into(),
            destination: "dr-azure".into(),
        };
        m.set_newest(&labels, chrono::Utc::now().timestamp() - 120);
        m.bytes.get_or_create(&labels).inc_by(5);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        let line = out
            .lines()
            .find(|l| l.starts_with("lifeboat_replication_lag_seconds{"))
            .unwrap_or_else(|| panic!("no lag line in {out}"));
        assert!(line.contains("destination=\"dr-azure\""), "{line}");
        let value: i64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((120..130).contains(&value), "{line}");
        assert!(out.contains("lifeboat_replication_bytes_total{"), "{out}");
    }
}
