//! The one place where errors become gRPC statuses. Every variant is matched explicitly
//! so a new error kind cannot silently become `Internal`. Every text raised while rows
//! are read or written passes `redact_text::shown`: no stored value leaves in a status.

use tonic::Status;

use super::params::ParameterError;
use super::prepared::PreparedError;

pub(crate) use crate::admin::auth_status;
use crate::peers::ForwardError;
use crate::redact_text::shown;
use crate::residency::GuardError;
use crate::sql::{SqlError, WriteError};
use crate::storage::StorageError;

impl From<ParameterError> for Status {
    fn from(error: ParameterError) -> Self {
        match error {
            ParameterError::TooManyBytes
            | ParameterError::TooManyRows
            | ParameterError::TooManyCells => Status::resource_exhausted(error.to_string()),
            ParameterError::WrongColumnCount { .. }
            | ParameterError::Undecodable(_)
            | ParameterError::NestedType { .. } => Status::invalid_argument(error.to_string()),
        }
    }
}

pub(crate) fn prepared_status(error: PreparedError) -> Status {
    match error {
        PreparedError::NodeFull
        | PreparedError::UserFull
        | PreparedError::SessionFull
        | PreparedError::UserParametersFull
        | PreparedError::NodeParametersFull => Status::resource_exhausted(error.to_string()),
        PreparedError::Unknown => Status::not_found(error.to_string()),
    }
}

pub(crate) fn sql_status(error: SqlError) -> Status {
    // Errors raised before any row is read quote only the statement and the catalog
    // (an unknown table's name is what the client typed): shown as they are. Everything
    // raised while rows are read or written passes the sanitizer.
    let message = match &error {
        SqlError::Parse(_)
        | SqlError::Plan(_)
        | SqlError::Unsupported(_)
        | SqlError::PermissionDenied { .. }
        | SqlError::NotFound(_)
        | SqlError::AlreadyExists(_)
        | SqlError::TooLarge(_)
        | SqlError::Ddl(_) => error.to_string(),
        _ => shown(&error),
    };
    match error {
        SqlError::Parse(_) | SqlError::Plan(_) | SqlError::Ddl(_) | SqlError::Execution(_) => {
            Status::invalid_argument(message)
        }
        SqlError::TooLarge(_) => Status::resource_exhausted(message),
        SqlError::Unsupported(_) => Status::unimplemented(message),
        SqlError::PermissionDenied { .. } => Status::permission_denied(message),
        SqlError::NotFound(_) => Status::not_found(message),
        SqlError::AlreadyExists(_) => Status::already_exists(message),
        SqlError::Write(write) => match write {
            WriteError::DuplicateKey { .. } => Status::already_exists(message),
            WriteError::NotHome { .. }
            | WriteError::HomedElsewhere { .. }
            | WriteError::WrongRegion { .. }
            | WriteError::ReadOnlyReplica(_) => Status::failed_precondition(message),
            WriteError::Convert(_) | WriteError::Evaluate(_) => Status::invalid_argument(message),
            WriteError::TooManyRows => Status::resource_exhausted(message),
            WriteError::ReadsProtected { .. } | WriteError::ClassDowngrade { .. } => {
                Status::permission_denied(message)
            }
            WriteError::TableChanged(_) => Status::aborted(message),
            WriteError::Storage(storage) => storage_status(storage),
            WriteError::Residency { error, .. } => residency_status(error),
            WriteError::SpansRegions { .. } => Status::invalid_argument(message),
            WriteError::Forward(forward) => forward_status(forward),
            WriteError::NoSession => {
                tracing::error!(error = %message, "statement without a session");
                Status::internal(message)
            }
        },
        SqlError::Saga(error) => crate::admin::saga_status(error),
        SqlError::Storage(storage) => storage_status(storage),
        SqlError::Residency(error) => residency_status(error),
        SqlError::Forward(error) => forward_status(error),
    }
}

fn forward_status(error: ForwardError) -> Status {
    let message = shown(&error);
    match error {
        ForwardError::Unreachable { .. } => Status::unavailable(message),
        ForwardError::UnknownRegion(_) => Status::failed_precondition(message),
        ForwardError::Refused { code, .. } => Status::new(code, message),
        ForwardError::Encode(_) => Status::internal(message),
    }
}

fn residency_status(error: GuardError) -> Status {
    let message = shown(&error);
    match error {
        GuardError::Denied { .. } | GuardError::AlteredStore(_) => {
            Status::permission_denied(message)
        }
        // No slot for the policy: refused now, worth retrying.
        GuardError::PolicyFailed { .. } if error.is_unavailable() => Status::unavailable(message),
        // Nothing to decide with, or the policy broke: refused until an operator acts.
        GuardError::NoPolicy(_) | GuardError::PolicyFailed { .. } => {
            Status::failed_precondition(message)
        }
        GuardError::Audit(storage) => storage_status(storage),
    }
}

fn storage_status(error: StorageError) -> Status {
    let message = shown(&error);
    match error {
        StorageError::Overloaded(_) | StorageError::WriterStopped => Status::unavailable(message),
        StorageError::Open(_)
        | StorageError::Transaction(_)
        | StorageError::Commit(_)
        | StorageError::StatementPanicked
        | StorageError::CorruptRow(_)
        | StorageError::CorruptCatalog { .. } => {
            tracing::error!(error = %message, "storage failure");
            Status::internal(message)
        }
    }
}
