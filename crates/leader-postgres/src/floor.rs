//! The raw floor for `leader-bench`: the acquire statement alone, through the same pool and the
//! same prepared statement as [`PostgresStore::try_acquire`](leader_core::LeaseStore::try_acquire),
//! with no row decoding or library logic around it.

use std::time::Duration;

use leader_core::{async_trait, AcquireRequest, Metadata, RawFloor, Result};

use crate::PostgresStore;

#[async_trait]
impl RawFloor for PostgresStore {
    fn describe(&self) -> String {
        "INSERT ... ON CONFLICT DO UPDATE ... RETURNING with pg_notify (one prepared statement, one round trip)"
            .to_owned()
    }

    async fn raw_acquire(&self, election: &str, instance_id: &str) -> Result<()> {
        let req = AcquireRequest {
            election: election.to_owned(),
            participant_id: "bench-floor".to_owned(),
            instance_id: instance_id.to_owned(),
            ttl: Duration::from_secs(60),
            metadata: Metadata::new(),
        };
        let (ttl, metadata) = PostgresStore::acquire_params(&req)?;
        let rows = self
            .query(
                "acquire",
                &self.sql().acquire,
                &[&req.election, &req.participant_id, &req.instance_id, &ttl, &metadata, &self.channel()],
            )
            .await?;
        std::hint::black_box(rows);
        Ok(())
    }
}
