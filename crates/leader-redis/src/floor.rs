//! [`RawFloor`] for `leader-bench`: the acquire script alone, by `EVALSHA` on the store's client.

use std::time::Duration;

use leader_core::{async_trait, AcquireRequest, Metadata, RawFloor, Result};

use crate::scripts::scripts;
use crate::RedisStore;

/// Runs the acquire script (`EVALSHA`, `EVAL` on `NOSCRIPT`) and nothing else: no reply parsing,
/// no `WAIT`, no tracing.
pub(crate) struct RedisFloor {
    pub(crate) store: RedisStore,
}

#[async_trait]
impl RawFloor for RedisFloor {
    fn describe(&self) -> String {
        "EVALSHA of the acquire Lua script (one round trip)".to_owned()
    }

    async fn raw_acquire(&self, election: &str, instance_id: &str) -> Result<()> {
        let req = AcquireRequest {
            election: election.to_owned(),
            participant_id: instance_id.to_owned(),
            instance_id: instance_id.to_owned(),
            ttl: Duration::from_secs(15).min(self.store.max_lease()),
            metadata: Metadata::new(),
        };
        let (keys, args) = self.store.acquire_args(&req)?;
        let _: fred::types::Value = scripts().acquire.run(self.store.client(), keys, args).await?;
        Ok(())
    }
}
