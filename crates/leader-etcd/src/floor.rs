//! The raw floor for `leader-bench`: the acquire transaction alone (create a free key bound to a
//! lease, else read it), through the same client, with no keep-alive, validation or decoding.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use leader_core::{async_trait, validate_election_name, Error, RawFloor, Result};
use tokio::time::Instant;

use crate::error::etcd_error;
use crate::EtcdStore;

/// The floor's own lease: granted once and used until shortly before it expires; the keys the
/// floor creates go with it.
const FLOOR_TTL: Duration = Duration::from_secs(60);

/// [`RawFloor`] of an [`EtcdStore`]: every call creates a fresh key (`<election>.<n>`), so each one
/// is the write an uncontended acquire of a free election is.
pub(crate) struct Floor {
    store: EtcdStore,
    lease: tokio::sync::Mutex<Option<(i64, Instant)>>,
    next: AtomicU64,
    value: Mutex<Vec<u8>>,
}

impl Floor {
    pub(crate) fn new(store: EtcdStore) -> Self {
        Floor { store, lease: tokio::sync::Mutex::new(None), next: AtomicU64::new(0), value: Mutex::new(Vec::new()) }
    }

    async fn lease(&self) -> Result<i64> {
        let mut lease = self.lease.lock().await;
        if let Some((id, at)) = *lease {
            if at.elapsed() < FLOOR_TTL - Duration::from_secs(10) {
                return Ok(id);
            }
        }
        let secs = i64::try_from(FLOOR_TTL.as_secs()).unwrap_or(60);
        let resp = self
            .store
            .inner
            .endpoints
            .call(|c| async move { c.lease_client().grant(secs, None).await })
            .await
            .map_err(|e| etcd_error("lease grant", e))?;
        *lease = Some((resp.id(), Instant::now()));
        Ok(resp.id())
    }
}

#[async_trait]
impl RawFloor for Floor {
    fn describe(&self) -> String {
        "one Txn: if create_revision(key) = 0 then put(key, lease) else get(key), on a fresh key (one round trip)"
            .to_owned()
    }

    async fn raw_acquire(&self, election: &str, instance_id: &str) -> Result<()> {
        validate_election_name(election)?;
        let lease = self.lease().await?;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let key = self.store.key_unchecked(&format!("{election}.{n}"));
        let value = {
            let mut v = self.value.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if v.is_empty() {
                *v = format!(r#"{{"participant_id":"bench-floor","instance_id":"{instance_id}","metadata":{{}}}}"#)
                    .into_bytes();
            }
            v.clone()
        };
        let resp = self
            .store
            .txn(EtcdStore::acquire_txn(&key, &value, lease))
            .await
            .map_err(|e| etcd_error("floor txn", e))?;
        if !resp.succeeded() {
            return Err(Error::backend(format!("the floor's fresh key {key:?} already existed")));
        }
        Ok(())
    }
}
