//! The one error type of every `leader` crate.

use std::fmt;

/// A boxed error from a driver or the OS, kept as the [`Error`]'s source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in terms a caller can act on.
///
/// The driver loop retries every kind except [`ErrorKind::InvalidArgument`] and
/// [`ErrorKind::Unsupported`] (see [`Error::is_transient`]); it never ends because of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Bad input: a name, option, URL or identifier that breaks a rule. The message names the value
    /// and the rule. Returned at construction, before anything is sent to a store.
    InvalidArgument,
    /// The store cannot be reached (connection refused or lost, circuit open, injected outage).
    Unavailable,
    /// A store call did not answer within `operation_timeout`.
    Timeout,
    /// The store cannot do this (e.g. `list` on a store that cannot enumerate elections).
    Unsupported,
    /// Leadership ended while an operation that needs it was running
    /// (`run_as_leader` work cancelled, `set_metadata` on a lost lease).
    LeadershipLost,
    /// The store answered with an error of its own (SQL error, Redis error reply, HTTP 5xx, ...).
    Backend,
    /// The [`Election`](crate::Election) was stopped or dropped while the caller waited.
    Stopped,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::InvalidArgument => "invalid argument",
            ErrorKind::Unavailable => "store unavailable",
            ErrorKind::Timeout => "store operation timed out",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::LeadershipLost => "leadership lost",
            ErrorKind::Backend => "store error",
            ErrorKind::Stopped => "election stopped",
        })
    }
}

/// The error of every `leader` crate: a [`kind`](Error::kind), a message, and the source error.
///
/// ```
/// use leader_core::{Error, ErrorKind};
/// let err = Error::invalid_argument("election name \"\" is empty; names need 1-128 characters");
/// assert_eq!(err.kind(), ErrorKind::InvalidArgument);
/// assert!(!err.is_transient());
/// ```
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<BoxError>,
}

impl Error {
    /// A new error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), source: None }
    }

    /// Attaches the underlying error.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// [`ErrorKind::InvalidArgument`]: the message should name the value and the rule it breaks.
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }

    /// [`ErrorKind::Unavailable`].
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    /// [`ErrorKind::Timeout`].
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Timeout, message)
    }

    /// [`ErrorKind::Unsupported`].
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }

    /// [`ErrorKind::Backend`].
    pub fn backend(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Backend, message)
    }

    /// [`ErrorKind::LeadershipLost`].
    pub fn leadership_lost(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::LeadershipLost, message)
    }

    /// [`ErrorKind::Stopped`].
    pub fn stopped(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Stopped, message)
    }

    /// The same error (kind and source kept) with another message: for a caller that adds what
    /// it knows, such as the endpoint it tried to reach.
    #[must_use]
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind or the source.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether trying again later may succeed (unavailable, timeout, backend errors).
    pub fn is_transient(&self) -> bool {
        matches!(self.kind, ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::Backend)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)?;
        if let Some(source) = &self.source {
            // A message that already quotes its source (an OS error, say) does not repeat it.
            let source = source.to_string();
            if !self.message.contains(&source) {
                write!(f, ": {source}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The most specific reason in an error's source chain, for messages about a store that cannot
/// be reached: the first [`std::io::Error`] in the chain (the operating system's words,
/// `Connection refused (os error 111)`), or else the innermost error's text. Drivers often say
/// only "error connecting to server" at the top and keep the reason deeper down.
///
/// ```
/// let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
/// let err = leader_core::Error::unavailable("cannot connect").with_source(io);
/// assert_eq!(leader_core::cause_of(&err), "connection refused");
/// ```
pub fn cause_of(e: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = e;
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return io.to_string();
        }
        innermost = s;
        source = s.source();
    }
    innermost.to_string()
}

impl From<tokio::time::error::Elapsed> for Error {
    fn from(e: tokio::time::error::Elapsed) -> Self {
        Error::timeout("store operation did not answer within operation_timeout").with_source(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_does_not_repeat_a_source_the_message_quotes() {
        let os = || std::io::Error::from_raw_os_error(2);
        let quoted = Error::unavailable(format!("directory /x cannot be created: {}", os())).with_source(os());
        let shown = quoted.to_string();
        assert_eq!(shown.matches("os error 2").count(), 1, "{shown}");
        let plain = Error::unavailable("directory /x cannot be created").with_source(os());
        assert!(plain.to_string().contains("os error 2"), "{plain}");
        let renamed = plain.with_message("another message");
        assert_eq!(renamed.kind(), ErrorKind::Unavailable);
        assert!(std::error::Error::source(&renamed).is_some());
    }
}
