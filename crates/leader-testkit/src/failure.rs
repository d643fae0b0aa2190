//! [`ScenarioFailure`]: what a scenario returns when the provider broke a rule.

use std::fmt;
use std::future::Future;
use std::time::Duration;

/// A scenario's verdict: `Ok(())` when the provider kept every rule the scenario checks (or the
/// scenario was skipped, with a printed reason), `Err` with what went wrong otherwise.
pub type ScenarioResult = Result<(), ScenarioFailure>;

/// Why a scenario failed: a broken guarantee, a bound missed, or a store error where none was
/// expected. The message says what was expected and what was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioFailure {
    message: String,
}

impl ScenarioFailure {
    /// A failure with this message.
    pub fn new(message: impl Into<String>) -> Self {
        ScenarioFailure { message: message.into() }
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Prefixes the message with where it happened.
    #[must_use]
    pub fn context(self, context: impl fmt::Display) -> Self {
        ScenarioFailure { message: format!("{context}: {}", self.message) }
    }
}

impl fmt::Display for ScenarioFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ScenarioFailure {}

/// A store error where the scenario expected success.
impl From<leader_core::Error> for ScenarioFailure {
    fn from(e: leader_core::Error) -> Self {
        ScenarioFailure::new(format!("unexpected error ({:?}): {e}", e.kind()))
    }
}

/// Returns `Err(ScenarioFailure)` with a formatted message unless the condition holds.
///
/// ```
/// fn check(leaders: usize) -> leader_testkit::ScenarioResult {
///     leader_testkit::ensure!(leaders == 1, "expected exactly one leader, saw {leaders}");
///     Ok(())
/// }
/// assert!(check(1).is_ok());
/// assert!(check(2).unwrap_err().message().contains("saw 2"));
/// ```
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return ::core::result::Result::Err($crate::ScenarioFailure::new(format!($($fmt)+)));
        }
    };
}

/// Returns `Err(ScenarioFailure)` with a formatted message.
#[macro_export]
macro_rules! fail {
    ($($fmt:tt)+) => {
        return ::core::result::Result::Err($crate::ScenarioFailure::new(format!($($fmt)+)))
    };
}

/// Awaits `fut` for at most `limit`; a failure naming `what` otherwise.
pub async fn within<T>(
    limit: Duration,
    what: impl fmt::Display,
    fut: impl Future<Output = T>,
) -> Result<T, ScenarioFailure> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| ScenarioFailure::new(format!("{what} did not happen within {}", fmt_duration(limit))))
}

/// `1.234s`: durations in failure messages.
pub fn fmt_duration(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}
