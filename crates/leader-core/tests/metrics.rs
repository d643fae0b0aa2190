//! Every metric name in the README's table appears with its documented labels.
#![cfg(feature = "metrics")]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use leader_core::layer::{LeaseStoreExt, MetricsLayer};
use leader_core::{Election, LeaseStore};
use metrics_util::debugging::DebuggingRecorder;

#[test]
fn every_documented_metric_is_recorded_with_its_labels() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
        rt.block_on(async {
            let memory: Arc<dyn LeaseStore> = Arc::new(leader_memory::MemoryStore::new());
            let store = memory.layer(MetricsLayer::new());
            let a = Election::new(store, "jobs", "a", common::options()).unwrap();
            a.wait_for_leadership().await.unwrap();
            tokio::time::sleep(common::options().renew_interval * 2).await;
            a.stop().await.unwrap();
        });
    });
    let mut seen = BTreeSet::new();
    for (key, _unit, _desc, _value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let labels: BTreeSet<String> = key.labels().map(|l| l.key().to_owned()).collect();
        seen.insert((key.name().to_owned(), labels.into_iter().collect::<Vec<_>>().join(",")));
    }
    let expected = [
        ("leader_is_leader", "election,participant"),
        ("leader_acquisitions_total", "election,participant"),
        ("leader_losses_total", "election,participant,reason"),
        ("leader_leadership_duration_seconds", "election,participant"),
        ("leader_store_operations_total", "election,op,outcome"),
        ("leader_store_operation_duration_seconds", "election,op"),
    ];
    for (name, labels) in expected {
        assert!(seen.contains(&(name.to_owned(), labels.to_owned())), "{name}{{{labels}}} missing from {seen:?}");
    }
}
