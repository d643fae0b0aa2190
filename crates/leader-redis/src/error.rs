//! fred's errors as `leader_core::Error` kinds the driver can act on.

use fred::error::{Error as FredError, ErrorKind as FredKind};
use leader_core::Error;

/// Connection trouble is `Unavailable`, fred's own timeouts `Timeout`, bad configuration
/// `InvalidArgument`, and everything the server answered with (error replies) `Backend`.
pub(crate) fn from_fred(e: FredError) -> Error {
    // The message says what kind of trouble; fred's error (the source) carries the details.
    let message = match e.kind() {
        FredKind::IO => "redis connection failed",
        FredKind::Timeout => "redis did not answer in time",
        FredKind::Canceled => "redis command canceled (connection closed)",
        FredKind::Config | FredKind::Url => "invalid redis configuration",
        _ => "redis error",
    };
    let mapped = match e.kind() {
        FredKind::IO
        | FredKind::Canceled
        | FredKind::Routing
        | FredKind::Protocol
        | FredKind::Backpressure
        | FredKind::Tls
        | FredKind::Sentinel
        | FredKind::Cluster => Error::unavailable(message),
        FredKind::Timeout => Error::timeout(message),
        FredKind::Config | FredKind::Url => Error::invalid_argument(message),
        _ => Error::backend(message),
    };
    mapped.with_source(e)
}
