//! [`MetricsLayer`]: store operations and their latency through the `metrics` facade.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{Intercept, InterceptLayer, Layer, Op};
use crate::LeaseStore;

/// Records `leader_store_operations_total{op, outcome, election}` (outcome `ok` or `error`) and
/// `leader_store_operation_duration_seconds{op, election}` for every call. Install a `metrics`
/// recorder (e.g. `metrics-exporter-prometheus`) to collect them. For `list`, `election` is the
/// prefix.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricsLayer;

impl MetricsLayer {
    /// The layer.
    pub fn new() -> Self {
        MetricsLayer
    }
}

struct Recorder;

impl Layer for MetricsLayer {
    fn layer(&self, inner: Arc<dyn LeaseStore>) -> Arc<dyn LeaseStore> {
        InterceptLayer::new(Arc::new(Recorder)).layer(inner)
    }
}

#[async_trait]
impl Intercept for Recorder {
    fn after(&self, op: Op, election: &str, ok: bool, elapsed: Duration) {
        let outcome = if ok { "ok" } else { "error" };
        metrics::counter!("leader_store_operations_total", "op" => op.as_str(), "outcome" => outcome, "election" => election.to_owned())
            .increment(1);
        metrics::histogram!("leader_store_operation_duration_seconds", "op" => op.as_str(), "election" => election.to_owned())
            .record(elapsed.as_secs_f64());
    }
}
