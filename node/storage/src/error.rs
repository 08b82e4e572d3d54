use thiserror::Error;

use super::row_codec::CorruptRow;

/// A failure below SQL: the database file, a commit, or bytes that do not decode.
/// Messages are kept as text so one commit failure can be reported to every statement of
/// the batch it sank.
#[derive(Clone, Debug, Error)]
pub enum StorageError {
    #[error("cannot open the database: {0}")]
    Open(String),
    #[error("storage transaction failed: {0}")]
    Transaction(String),
    #[error("storage commit failed, nothing of this statement was kept: {0}")]
    Commit(String),
    #[error(transparent)]
    CorruptRow(#[from] CorruptRow),
    #[error("corrupt catalog entry {name}: {detail}")]
    CorruptCatalog { name: String, detail: String },
    #[error("internal error: the statement failed unexpectedly and was not applied")]
    StatementPanicked,
    #[error("the storage writer has stopped")]
    WriterStopped,
    #[error("write queue is full (write_queue_statements_max = {0}); retry later")]
    Overloaded(usize),
    /// A transaction lost to a concurrent commit (SQLSTATE 40001): retry it whole.
    #[error("{0} (SQLSTATE 40001)")]
    SerializationFailure(String),
    #[error("{0}")]
    TransactionTooLarge(String),
    #[error("the transaction has ended (committed, rolled back or failed); begin a new one")]
    TransactionEnded,
}

macro_rules! from_redb {
    ($variant:ident, $($source:ty),+) => {
        $(impl From<$source> for StorageError {
            fn from(error: $source) -> Self {
                StorageError::$variant(error.to_string())
            }
        })+
    };
}

from_redb!(Open, redb::DatabaseError);
from_redb!(
    Transaction,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError
);
from_redb!(Commit, redb::CommitError);

impl domicile_model::error_kind::Classify for StorageError {
    fn kind(&self) -> domicile_model::error_kind::ErrorKind {
        use domicile_model::error_kind::ErrorKind;
        match self {
            // Refused now, worth retrying: the queue drains, or a restarted node serves.
            StorageError::Overloaded(_) | StorageError::WriterStopped => ErrorKind::Unavailable,
            StorageError::SerializationFailure(_) => ErrorKind::Conflict,
            StorageError::TransactionTooLarge(_) => ErrorKind::Exhausted,
            StorageError::TransactionEnded => ErrorKind::Precondition,
            StorageError::Open(_)
            | StorageError::Transaction(_)
            | StorageError::Commit(_)
            | StorageError::StatementPanicked
            | StorageError::CorruptRow(_)
            | StorageError::CorruptCatalog { .. } => ErrorKind::Internal,
        }
    }
}
