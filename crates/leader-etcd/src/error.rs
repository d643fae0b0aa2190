//! Mapping `etcd-client` errors onto [`leader_core::Error`].

use etcd_client::Error as EtcdError;
use leader_core::Error;
use tonic::Code;

/// Whether `e` is etcd's "requested lease not found": the lease expired or was revoked (a put
/// that names it, or a keep-alive of it).
pub(crate) fn lease_not_found(e: &EtcdError) -> bool {
    match e {
        EtcdError::GRpcStatus(s) => s.code() == Code::NotFound && s.message().contains("lease not found"),
        // What etcd-client reports when the keep-alive's answer has TTL 0.
        EtcdError::LeaseKeepAliveError(m) => m.contains("lease not found"),
        _ => false,
    }
}

/// Maps an error of operation `op`: connection trouble, timeouts and a cluster without a leader are
/// `Unavailable` (the election retries and reports `StoreUnavailable`); what the server answered
/// (permissions, bad requests) is `Backend`.
pub(crate) fn etcd_error(op: &str, e: EtcdError) -> Error {
    let transient = match &e {
        EtcdError::GRpcStatus(s) => matches!(
            s.code(),
            Code::Unavailable
                | Code::DeadlineExceeded
                | Code::Cancelled
                | Code::Aborted
                | Code::ResourceExhausted
                | Code::Unknown
        ),
        EtcdError::TransportError(_)
        | EtcdError::IoError(_)
        | EtcdError::WatchError(_)
        | EtcdError::LeaseKeepAliveError(_) => true,
        _ => false,
    };
    let message = match &e {
        EtcdError::GRpcStatus(s) => format!("etcd {op} failed: {} ({:?})", s.message(), s.code()),
        other => format!("etcd {op} failed: {other}"),
    };
    if transient {
        Error::unavailable(message).with_source(e)
    } else if matches!(e, EtcdError::InvalidArgs(_) | EtcdError::InvalidUri(_)) {
        Error::invalid_argument(message).with_source(e)
    } else {
        Error::backend(message).with_source(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leader_core::ErrorKind;

    #[test]
    fn maps_kinds() {
        let status = |code, msg: &str| EtcdError::GRpcStatus(tonic::Status::new(code, msg));
        assert_eq!(etcd_error("x", status(Code::Unavailable, "etcdserver: no leader")).kind(), ErrorKind::Unavailable);
        assert_eq!(etcd_error("x", status(Code::PermissionDenied, "denied")).kind(), ErrorKind::Backend);
        assert_eq!(etcd_error("x", EtcdError::InvalidArgs("e".into())).kind(), ErrorKind::InvalidArgument);
        assert!(lease_not_found(&status(Code::NotFound, "etcdserver: requested lease not found")));
        assert!(!lease_not_found(&status(Code::NotFound, "something else")));
        assert!(lease_not_found(&EtcdError::LeaseKeepAliveError("lease not found".into())));
    }
}
