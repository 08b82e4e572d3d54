//! The kinds of the Flight SQL service's own errors (`Classify`); each becomes a status
//! through the one mapping, `grpc_status`. A statement's error is shown as
//! `SqlError::client_message` has it: every text raised while rows are read or written
//! passes `redact_text::shown`, so no stored value leaves in a status.

use tonic::Status;

use super::ingest::IngestError;
use super::params::ParameterError;
use super::prepared::PreparedError;

pub(crate) use crate::admin::auth_status;
use crate::error_kind::{Classify, ErrorKind};
use crate::grpc_status::{status, status_of};
use crate::sql::SqlError;

impl Classify for ParameterError {
    fn kind(&self) -> ErrorKind {
        match self {
            ParameterError::TooManyBytes
            | ParameterError::TooManyRows
            | ParameterError::TooManyCells => ErrorKind::Exhausted,
            ParameterError::WrongColumnCount { .. }
            | ParameterError::Undecodable(_)
            | ParameterError::NestedType { .. } => ErrorKind::Invalid,
        }
    }
}

impl Classify for IngestError {
    fn kind(&self) -> ErrorKind {
        match self {
            IngestError::TooManyBytes | IngestError::TooManyRows => ErrorKind::Exhausted,
            IngestError::Undecodable(_)
            | IngestError::NoSchema
            | IngestError::NestedType { .. } => ErrorKind::Invalid,
            IngestError::Unsupported(_) => ErrorKind::Unsupported,
        }
    }
}

impl From<IngestError> for Status {
    fn from(error: IngestError) -> Self {
        status_of(&error)
    }
}

impl From<ParameterError> for Status {
    fn from(error: ParameterError) -> Self {
        status_of(&error)
    }
}

impl Classify for PreparedError {
    fn kind(&self) -> ErrorKind {
        match self {
            PreparedError::NodeFull
            | PreparedError::UserFull
            | PreparedError::SessionFull
            | PreparedError::UserParametersFull
            | PreparedError::NodeParametersFull => ErrorKind::Exhausted,
            PreparedError::Unknown => ErrorKind::NotFound,
        }
    }
}

pub(crate) fn prepared_status(error: PreparedError) -> Status {
    status_of(&error)
}

/// A statement's error, as its client sees it.
pub(crate) fn sql_status(error: SqlError) -> Status {
    status(error.kind(), error.client_message())
}
