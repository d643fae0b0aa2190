//! The conformance suite (leader-testkit) against a real ZooKeeper (the standalone test server).

mod common;

use std::sync::Arc;

use common::provider::ZkProvider;
use leader_testkit::Provider;

async fn provider() -> Option<Arc<dyn Provider>> {
    let url = leader_testkit::provider_url("zookeeper")?;
    // The test session timeout is the lease (the test server has tickTime=500).
    let Some(provider) = ZkProvider::from_url(&url, common::SESSION) else {
        panic!("LEADER_TEST_ZOOKEEPER_URL {url:?} is not zk://host:port/root");
    };
    Some(Arc::new(provider))
}

leader_testkit::conformance_tests!(provider);
