//! [`FencedResource`]: the downstream resource fencing tokens protect.

use std::sync::Mutex;

use leader_core::FencingToken;

/// An in-memory resource that refuses a write whose token is lower than the highest it has seen,
/// as a database row guarded by `WHERE token >= stored_token` would. Used to show that a deposed
/// leader's late writes are refused (section (b) 10).
///
/// ```
/// use leader_core::FencingToken;
/// let r = leader_testkit::FencedResource::new();
/// r.write(FencingToken::new(5), "a").unwrap();
/// r.write(FencingToken::new(6), "b").unwrap();
/// assert!(r.write(FencingToken::new(5), "late").is_err());
/// assert_eq!(r.writes().len(), 2);
/// ```
#[derive(Debug, Default)]
pub struct FencedResource {
    state: Mutex<Fenced>,
}

#[derive(Debug, Default)]
struct Fenced {
    max: Option<FencingToken>,
    writes: Vec<(FencingToken, String)>,
}

/// A write refused because a higher token was seen before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleToken {
    /// The token of the refused write.
    pub token: FencingToken,
    /// The highest token seen.
    pub max_seen: FencingToken,
}

impl std::fmt::Display for StaleToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "token {} refused: token {} was seen before", self.token, self.max_seen)
    }
}

impl std::error::Error for StaleToken {}

impl FencedResource {
    /// An empty resource.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes `value` if `token` is at least the highest token seen.
    pub fn write(&self, token: FencingToken, value: impl Into<String>) -> Result<(), StaleToken> {
        let mut st = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(max) = st.max {
            if token < max {
                return Err(StaleToken { token, max_seen: max });
            }
        }
        st.max = Some(token);
        st.writes.push((token, value.into()));
        Ok(())
    }

    /// The highest token seen.
    pub fn max_token(&self) -> Option<FencingToken> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner).max
    }

    /// The accepted writes, in order.
    pub fn writes(&self) -> Vec<(FencingToken, String)> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner).writes.clone()
    }
}
