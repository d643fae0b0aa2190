//! [`RawFloor`]: the primitive a provider's acquire is built on, issued raw, for `leader-bench`'s
//! "floor" column (the PostgreSQL statement alone, the Redis script alone, one lock syscall).

use async_trait::async_trait;

use crate::Result;

/// The store's raw acquire primitive, through the same driver and connection as the provider's
/// store, with none of the library around it. Providers return one from their
/// `connect_with_floor(url)`.
#[async_trait]
pub trait RawFloor: Send + Sync + 'static {
    /// What is issued, e.g. `"INSERT ... ON CONFLICT DO UPDATE ... RETURNING (one statement)"`.
    fn describe(&self) -> String;

    /// Issues the primitive once for `election` as an uncontended acquire (or refresh) by
    /// `instance_id`, and returns when the store has answered.
    async fn raw_acquire(&self, election: &str, instance_id: &str) -> Result<()>;
}
