//! Prometheus metrics. Labels are small fixed sets (`&'static str` kinds and results) plus the
//! Schedule's (or BackupReplication's and its destination's) namespace and name; never error
//! text, never anything from a Secret.

mod replication;

pub use replication::{DestinationLabels, ReplicationMetrics};

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Which operation: `backup` or `restore`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    /// `backup` or `restore`.
    pub operation: &'static str,
}

/// An operation and how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `backup` or `restore`.
    pub operation: &'static str,
    /// `Completed`, `PartiallyFailed` or `Failed`.
    pub result: &'static str,
}

/// One Schedule.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScheduleLabels {
    /// The Schedule's namespace.
    pub namespace: String,
    /// The Schedule's name.
    pub schedule: String,
}

type HistogramFamily = Family<ResultLabels, Histogram, fn() -> Histogram>;

/// The `operation` label's values.
pub const OPERATIONS: [&str; 2] = ["backup", "restore"];
/// The `result` values `lifeboat_failures_total` counts.
pub const FAILED_RESULTS: [&str; 2] = ["Failed", "PartiallyFailed"];

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.5, 2.0, 14))
}

/// Every metric the controller exports.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Runs started (a resumed run counts again).
    pub attempts: Family<OpLabels, Counter>,
    /// Runs that ended Failed or PartiallyFailed.
    pub failures: Family<ResultLabels, Counter>,
    /// Wall time of finished runs.
    pub duration: HistogramFamily,
    /// Objects backed up or restored.
    pub items: Family<OpLabels, Counter>,
    /// Bytes new to the repository.
    pub bytes: Family<OpLabels, Counter>,
    /// Completion time of each Schedule's newest successful backup (Unix seconds).
    pub last_success: Family<ScheduleLabels, Gauge>,
    /// 1 while this process holds the Lease.
    pub leader: Gauge,
    /// Per replication destination: bytes, snapshots, errors, newest snapshot, lag.
    pub replication: ReplicationMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric under the `lifeboat_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("lifeboat");
        let attempts = Family::<OpLabels, Counter>::default();
        let failures = Family::<ResultLabels, Counter>::default();
        let duration: HistogramFamily = Family::new_with_constructor(duration_histogram);
        let items = Family::<OpLabels, Counter>::default();
        let bytes = Family::<OpLabels, Counter>::default();
        let last_success = Family::<ScheduleLabels, Gauge>::default();
        let leader = Gauge::default();
        registry.register("attempts", "Backup and restore runs started", attempts.clone());
        registry.register(
            "failures",
            "Backup and restore runs that ended Failed or PartiallyFailed",
            failures.clone(),
        );
        registry.register(
            "duration_seconds",
            "Wall time of finished backup and restore runs",
            duration.clone(),
        );
        registry.register("items", "Objects backed up or restored", items.clone());
        registry.register("bytes", "Bytes added to repositories by backups", bytes.clone());
        registry.register(
            "schedule_last_success_timestamp_seconds",
            "Completion time of the newest successful backup of each Schedule",
            last_success.clone(),
        );
        registry.register(
            "leader",
            "1 while this controller holds the leader Lease",
            leader.clone(),
        );
        // Series of the fixed label sets exist from the start, at 0: a counter series born at
        // 1 shows no `increase()`, so alerts would miss the first failure after a restart.
        for operation in OPERATIONS {
            let _ = attempts.get_or_create(&OpLabels { operation });
            let _ = items.get_or_create(&OpLabels { operation });
            let _ = bytes.get_or_create(&OpLabels { operation });
            for result in FAILED_RESULTS {
                let _ = failures.get_or_create(&ResultLabels { operation, result });
            }
        }
        let replication = ReplicationMetrics::register(&mut registry);
        Self {
            replication,
            registry: Mutex::new(registry),
            attempts,
            failures,
            duration,
            items,
            bytes,
            last_success,
            leader,
        }
    }

    /// Counts a started run.
    pub fn started(&self, operation: &'static str) {
        self.attempts.get_or_create(&OpLabels { operation }).inc();
    }

    /// Records a finished run.
    pub fn finished(
        &self,
        operation: &'static str,
        result: &'static str,
        seconds: f64,
        items: u64,
        bytes: u64,
    ) {
        let labels = ResultLabels { operation, result };
        if result != "Completed" {
            self.failures.get_or_create(&labels).inc();
        }
        self.duration.get_or_create(&labels).observe(seconds);
        self.items.get_or_create(&OpLabels { operation }).inc_by(items);
        self.bytes.get_or_create(&OpLabels { operation }).inc_by(bytes);
    }

    /// Lets another part of the process (federation's agent) register its own metrics under
    /// the same `lifeboat_` prefix, served on the same `/metrics`.
    pub fn register_with(&self, register: impl FnOnce(&mut Registry)) {
        if let Ok(mut registry) = self.registry.lock() {
            register(&mut registry);
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(registry) = self.registry.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        }
        out
    }
}
