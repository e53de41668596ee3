//! The federation's metrics, registered into the controller's registry (prefix `lifeboat_`):
//! drill results per plan, cluster health per cluster, fencing per application. Labels are
//! names of resources, never error text.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::drill::DrillReport;

/// One plan.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlanLabels {
    /// The FailoverPlan's namespace.
    pub namespace: String,
    /// Its name.
    pub plan: String,
}

/// One cluster.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    /// The cluster's name.
    pub cluster: String,
}

/// One protected application.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApplicationLabels {
    /// The plan.
    pub plan: String,
    /// The application.
    pub application: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric of the federation agent.
#[derive(Debug, Clone, Default)]
pub struct FederationMetrics {
    /// `lifeboat_drill_rpo_seconds`: the latest drill's recovery point age.
    pub drill_rpo: Family<PlanLabels, FloatGauge>,
    /// `lifeboat_drill_rto_seconds`: the latest drill's start-to-ready time.
    pub drill_rto: Family<PlanLabels, FloatGauge>,
    /// `lifeboat_drill_success`: 1 if the latest drill passed and met its targets.
    pub drill_success: Family<PlanLabels, Gauge>,
    /// `lifeboat_drill_timestamp_seconds`: when the latest drill started.
    pub drill_time: Family<PlanLabels, Gauge>,
    /// `lifeboat_cluster_healthy`: 1 healthy, 0 suspect, -1 failed (unknown: absent).
    pub cluster_healthy: Family<ClusterLabels, Gauge>,
    /// `lifeboat_fence_epoch`: the epoch of each application's lease as this agent sees it.
    pub fence_epoch: Family<ApplicationLabels, Gauge>,
    /// `lifeboat_fenced`: 1 while this cluster is fenced off the application.
    pub fenced: Family<ApplicationLabels, Gauge>,
}

impl FederationMetrics {
    /// Creates the metrics and registers them with the controller's registry.
    pub fn register(metrics: &lifeboat_controller::metrics::Metrics) -> Self {
        let m = Self::default();
        metrics.register_with(|r| {
            r.register(
                "drill_rpo_seconds",
                "Age of the recovery point the latest drill restored",
                m.drill_rpo.clone(),
            );
            r.register(
                "drill_rto_seconds",
                "Start to ready of the latest drill",
                m.drill_rto.clone(),
            );
            r.register(
                "drill_success",
                "1 if the latest drill completed and met its RPO and RTO targets",
                m.drill_success.clone(),
            );
            r.register(
                "drill_timestamp_seconds",
                "Start of the latest drill (Unix seconds)",
                m.drill_time.clone(),
            );
            r.register(
                "cluster_healthy",
                "Federation verdict per cluster: 1 healthy, 0 suspect, -1 failed",
                m.cluster_healthy.clone(),
            );
            r.register(
                "fence_epoch",
                "Fencing epoch of each protected application",
                m.fence_epoch.clone(),
            );
            r.register(
                "fenced",
                "1 while this cluster is fenced off the application",
                m.fenced.clone(),
            );
        });
        m
    }

    /// Records a drill's outcome.
    pub fn drill(&self, namespace: &str, report: &DrillReport) {
        let l = PlanLabels {
            namespace: namespace.to_string(),
            plan: report.plan.clone(),
        };
        if let Some(v) = report.rpo.measured_seconds {
            self.drill_rpo.get_or_create(&l).set(v);
        }
        if let Some(v) = report.rto.measured_seconds {
            self.drill_rto.get_or_create(&l).set(v);
        }
        self.drill_success
            .get_or_create(&l)
            .set(i64::from(report.success));
        self.drill_time.get_or_create(&l).set(report.started.timestamp());
    }
}
