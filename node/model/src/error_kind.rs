//! What went wrong, in words every protocol of the node can answer: the one error model.
//!
//! Each error type of the node says which kind each of its variants is (`Classify`,
//! written as an explicit match beside the type, so a new variant cannot fall into a
//! catch-all). One module per protocol turns a kind into that protocol's status (for
//! gRPC: `domicile_engine::grpc_status`), and a peer's answer is decoded back into the
//! same kind, so no domain code reads a transport's codes.

/// The kinds of failure, by what the caller should do about them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request itself is wrong (syntax, types, a malformed argument): sent again
    /// unchanged it fails again.
    Invalid,
    /// No valid credentials (a login refused, a token unknown or expired).
    Unauthenticated,
    /// Who asks may not do this: a role, a residency policy, or a certificate that does
    /// not prove what the caller claims.
    Refused,
    /// What the request names does not exist (a table, a saga, a plugin version).
    NotFound,
    /// What the request would create exists already (a key, a table, a version).
    AlreadyExists,
    /// Not possible in the current state, whoever asks and however often: the row is
    /// homed elsewhere, no policy is loaded, the saga is in another state. Something
    /// else must change first.
    Precondition,
    /// A newer owner holds what the request would change (a saga driven by a newer
    /// orchestrator epoch): stop, do not retry.
    Fenced,
    /// Lost a race with a concurrent writer: retry from fresh reads.
    Conflict,
    /// A bound was reached (rows, bytes, sessions, calls in flight): ask for less, or
    /// later.
    Exhausted,
    /// Cannot be done now (a peer unreachable, the writer overloaded, the node
    /// stopping): retry later, unchanged.
    Unavailable,
    /// The node does not support the request.
    Unsupported,
    /// The caller cancelled it (Flight's CancelFlightInfo) or went away: nothing more of
    /// it runs. Sent again, it runs again.
    Cancelled,
    /// A bug or damaged storage: logged where it happens; an operator must look.
    Internal,
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 13] = [
        ErrorKind::Invalid,
        ErrorKind::Unauthenticated,
        ErrorKind::Refused,
        ErrorKind::NotFound,
        ErrorKind::AlreadyExists,
        ErrorKind::Precondition,
        ErrorKind::Fenced,
        ErrorKind::Conflict,
        ErrorKind::Exhausted,
        ErrorKind::Unavailable,
        ErrorKind::Unsupported,
        ErrorKind::Cancelled,
        ErrorKind::Internal,
    ];

    /// The kind's name on the wire between nodes (lower case, stable).
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Invalid => "invalid",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::Refused => "refused",
            ErrorKind::NotFound => "not_found",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::Precondition => "precondition",
            ErrorKind::Fenced => "fenced",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Exhausted => "exhausted",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Internal => "internal",
        }
    }

    /// The kind named `name` (`as_str`'s inverse); `None` for any other text.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// Whether the same request may succeed when sent again later, unchanged.
    pub const fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Conflict | ErrorKind::Unavailable | ErrorKind::Cancelled
        )
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error that knows its kind. Implemented beside each error type with a match that
/// names every variant.
pub trait Classify {
    /// This error's kind.
    fn kind(&self) -> ErrorKind;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_distinct_name_that_parses_back() {
        let mut names = std::collections::HashSet::new();
        for kind in ErrorKind::ALL {
            assert!(names.insert(kind.as_str()), "{kind} named twice");
            assert_eq!(ErrorKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(ErrorKind::parse("Invalid"), None);
        assert_eq!(ErrorKind::parse(""), None);
    }
}
