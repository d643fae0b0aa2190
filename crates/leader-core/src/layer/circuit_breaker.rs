//! [`CircuitBreakerLayer`]: fail fast while the store keeps failing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{Intercept, InterceptLayer, Layer, Op};
use crate::{Error, LeaseStore, Result};

/// Opens after `threshold` consecutive failed calls; while open every call fails at once with
/// [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable) (the election treats that like an
/// unreachable store: a leader steps down at its local deadline, followers keep retrying); after
/// `cool_down` it half-opens and lets one probe through: a success closes it, a failure opens it
/// again. Watches are refused while open, so followers poll (and so probe) instead.
///
/// ```
/// # fn wrap(store: std::sync::Arc<dyn leader_core::LeaseStore>) {
/// use std::time::Duration;
/// use leader_core::layer::{CircuitBreakerLayer, LeaseStoreExt};
/// let breaker = CircuitBreakerLayer::new(5, Duration::from_secs(2));
/// let store = store.layer(breaker.clone());
/// assert!(!breaker.is_open());
/// # }
/// ```
#[derive(Clone)]
pub struct CircuitBreakerLayer {
    state: Arc<Breaker>,
}

struct Breaker {
    threshold: u32,
    cool_down: Duration,
    inner: Mutex<BreakerState>,
}

#[derive(Default)]
struct BreakerState {
    failures: u32,
    opened_at: Option<Instant>,
    probing: bool,
}

impl CircuitBreakerLayer {
    /// Opens after `threshold` (at least 1) consecutive failures; half-opens after `cool_down`.
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        CircuitBreakerLayer {
            state: Arc::new(Breaker {
                threshold: threshold.max(1),
                cool_down,
                inner: Mutex::new(BreakerState::default()),
            }),
        }
    }

    /// Whether calls fail fast now.
    pub fn is_open(&self) -> bool {
        self.state.lock().opened_at.is_some()
    }
}

impl Breaker {
    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Layer for CircuitBreakerLayer {
    fn layer(&self, inner: Arc<dyn LeaseStore>) -> Arc<dyn LeaseStore> {
        InterceptLayer::new(self.state.clone()).layer(inner)
    }
}

#[async_trait]
impl Intercept for Breaker {
    async fn before(&self, op: Op, _election: &str) -> Result<()> {
        let mut st = self.lock();
        let Some(opened) = st.opened_at else { return Ok(()) };
        if opened.elapsed() >= self.cool_down && !st.probing {
            st.probing = true; // half-open: this call is the probe
            return Ok(());
        }
        Err(Error::unavailable(format!(
            "circuit open after {} consecutive store failures; {} refused",
            self.threshold,
            op.as_str()
        )))
    }

    fn after(&self, _op: Op, _election: &str, ok: bool, _elapsed: Duration) {
        let mut st = self.lock();
        if ok {
            if st.opened_at.is_some() {
                tracing::info!("store circuit closed");
            }
            *st = BreakerState::default();
            return;
        }
        if st.probing {
            st.probing = false;
            st.opened_at = Some(Instant::now());
            return;
        }
        if st.opened_at.is_some() {
            return; // a refused call; the circuit stays open
        }
        st.failures += 1;
        if st.failures >= self.threshold {
            tracing::warn!(failures = st.failures, "store circuit opened");
            st.opened_at = Some(Instant::now());
        }
    }

    fn allow_watch(&self, _election: &str) -> bool {
        self.lock().opened_at.is_none()
    }
}
