//! The whole conformance suite (leader-testkit) on the memory store: directly, and once more with
//! every handle wrapped in a pass-through layer (`Arc<dyn LeaseStore>` layering must change nothing).

use std::sync::Arc;

use leader_testkit::{LayeredProvider, MemoryProvider, Provider};

async fn memory() -> Option<Arc<dyn Provider>> {
    Some(Arc::new(MemoryProvider::new()))
}

async fn layered() -> Option<Arc<dyn Provider>> {
    Some(Arc::new(LayeredProvider::new(Arc::new(MemoryProvider::new()))))
}

mod plain {
    leader_testkit::conformance_tests!(super::memory);
}

mod layered {
    leader_testkit::conformance_tests!(super::layered);
}
