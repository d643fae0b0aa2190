//! The whole conformance suite on the in-process memory store, directly and through one more
//! pass-through layer (`Arc<dyn LeaseStore>` wrapping must change nothing).

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
