//! The one mapping between the node's error kinds (`error_kind::ErrorKind`) and gRPC
//! statuses, both ways, for every service (Flight SQL, admin, peers) and for every
//! answer read back from a peer.
//!
//! A status this node sends carries its kind's name in the `domicile-error-kind`
//! trailer as well as its code, because two kinds share a code (`Fenced` and `Conflict`
//! are both ABORTED, as gRPC's status codes document for concurrency failures): a peer
//! reads the kind back exactly, a stock client reads the code. A status without the
//! trailer (an older node, a proxy, the transport) is read by its code.

use tonic::{Code, Status};

use crate::error_kind::{Classify, ErrorKind};

/// Metadata key of a status's kind (`ErrorKind::as_str`).
pub const KIND_KEY: &str = "domicile-error-kind";

/// The gRPC code of `kind` (codes as in `grpc/doc/statuscodes.md`).
pub const fn code_of(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::Invalid => Code::InvalidArgument,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::Refused => Code::PermissionDenied,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::Precondition => Code::FailedPrecondition,
        ErrorKind::Fenced | ErrorKind::Conflict => Code::Aborted,
        ErrorKind::Exhausted => Code::ResourceExhausted,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Unsupported => Code::Unimplemented,
        ErrorKind::Cancelled => Code::Cancelled,
        ErrorKind::Internal => Code::Internal,
    }
}

/// A status of `kind` saying `message`. The message must already be fit to show (no
/// stored value: see `redact_text::shown`). An internal failure is logged here, once,
/// since an operator must look at it.
pub fn status(kind: ErrorKind, message: impl Into<String>) -> Status {
    let message = message.into();
    if kind == ErrorKind::Internal {
        tracing::error!(error = %message, "internal failure answered to a client");
    }
    let mut status = Status::new(code_of(kind), message);
    status.metadata_mut().insert(
        KIND_KEY,
        tonic::metadata::MetadataValue::from_static(kind.as_str()),
    );
    status
}

/// The status of `error`: its kind, and its text through the sanitizer.
pub fn status_of<E: Classify + std::fmt::Display>(error: &E) -> Status {
    status(error.kind(), crate::redact_text::shown(error))
}

/// The kind of a status received from a peer: the one it names, or else the one its
/// code means.
pub fn kind_of(status: &Status) -> ErrorKind {
    status
        .metadata()
        .get(KIND_KEY)
        .and_then(|value| value.to_str().ok())
        .and_then(ErrorKind::parse)
        .unwrap_or_else(|| kind_of_code(status.code()))
}

/// The kind a bare gRPC code means. ABORTED without a named kind is a lost race (retry),
/// the reading that loses least if wrong.
pub const fn kind_of_code(code: Code) -> ErrorKind {
    match code {
        Code::InvalidArgument | Code::OutOfRange => ErrorKind::Invalid,
        Code::Unauthenticated => ErrorKind::Unauthenticated,
        Code::PermissionDenied => ErrorKind::Refused,
        Code::NotFound => ErrorKind::NotFound,
        Code::AlreadyExists => ErrorKind::AlreadyExists,
        Code::FailedPrecondition => ErrorKind::Precondition,
        Code::Aborted => ErrorKind::Conflict,
        Code::ResourceExhausted => ErrorKind::Exhausted,
        Code::Unavailable | Code::DeadlineExceeded => ErrorKind::Unavailable,
        Code::Cancelled => ErrorKind::Cancelled,
        Code::Unimplemented => ErrorKind::Unsupported,
        Code::Ok | Code::Unknown | Code::Internal | Code::DataLoss => ErrorKind::Internal,
    }
}

/// Whether a call's failure means the peer cannot serve it now: not reached, no answer
/// in time, or its own answer that it cannot now (overloaded, stopping). Either way
/// nothing was done there, and the same call may be made again later.
pub fn is_unreachable(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded => true,
        Code::Unknown => status.message().contains("transport"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_survives_the_trip_through_a_status() {
        for kind in ErrorKind::ALL {
            let sent = status(kind, "text");
            assert_eq!(kind_of(&sent), kind, "{kind}");
            assert_eq!(sent.code(), code_of(kind));
            assert_eq!(
                is_unreachable(&sent),
                kind == ErrorKind::Unavailable,
                "{kind}"
            );
        }
    }

    #[test]
    fn a_bare_code_reads_as_its_kind_and_a_forged_name_is_ignored() {
        for kind in ErrorKind::ALL {
            // Every kind but the two that share ABORTED is recovered from the code.
            if kind != ErrorKind::Fenced {
                assert_eq!(kind_of_code(code_of(kind)), kind, "{kind}");
            }
        }
        let mut forged = Status::new(Code::NotFound, "x");
        forged.metadata_mut().insert(
            KIND_KEY,
            tonic::metadata::MetadataValue::from_static("no such kind"),
        );
        assert_eq!(kind_of(&forged), ErrorKind::NotFound);
    }

    #[test]
    fn only_a_transport_failure_is_unreachable() {
        assert!(is_unreachable(&Status::unavailable("connection refused")));
        assert!(is_unreachable(&Status::deadline_exceeded("timeout")));
        assert!(is_unreachable(&Status::unknown("transport error")));
        assert!(!is_unreachable(&Status::unknown("something else")));
        assert!(!is_unreachable(&status(ErrorKind::Internal, "transport")));
    }
}
