use datafusion::error::DataFusionError;
use thiserror::Error;

use super::dml::WriteError;
use crate::auth::Role;
use crate::catalog::DdlError;
use crate::error_kind::{Classify, ErrorKind};
use crate::peers::ForwardError;
use crate::redact_text::{Origin, withhold_values};
use crate::residency::GuardError;
use crate::storage::StorageError;

/// Why a statement failed, sorted by whose fault it is (`Classify`); each protocol maps
/// the kind to its status (`grpc_status`).
#[derive(Debug, Error)]
pub enum SqlError {
    #[error("SQL parse error: {0}")]
    Parse(String),
    #[error("planning error: {0}")]
    Plan(String),
    #[error("not supported: {0}")]
    Unsupported(String),
    #[error("user {user} lacks role {needed} for this statement")]
    PermissionDenied { user: String, needed: Role },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    TooLarge(String),
    #[error(transparent)]
    Ddl(DdlError),
    #[error("write refused: {0}")]
    Write(WriteError),
    #[error(transparent)]
    Storage(StorageError),
    /// The residency guard refused to store or release data.
    #[error(transparent)]
    Residency(GuardError),
    /// A row's home node could not be reached, or refused.
    #[error(transparent)]
    Forward(ForwardError),
    /// `start_saga` could not start or find the saga.
    #[error(transparent)]
    Saga(crate::saga::SagaError),
    #[error("execution error: {0}")]
    Execution(String),
}

impl Classify for SqlError {
    fn kind(&self) -> ErrorKind {
        match self {
            SqlError::Parse(_) | SqlError::Plan(_) | SqlError::Ddl(_) | SqlError::Execution(_) => {
                ErrorKind::Invalid
            }
            SqlError::TooLarge(_) => ErrorKind::Exhausted,
            SqlError::Unsupported(_) => ErrorKind::Unsupported,
            SqlError::PermissionDenied { .. } => ErrorKind::Refused,
            SqlError::NotFound(_) => ErrorKind::NotFound,
            SqlError::AlreadyExists(_) => ErrorKind::AlreadyExists,
            SqlError::Write(error) => error.kind(),
            SqlError::Storage(error) => error.kind(),
            SqlError::Residency(error) => error.kind(),
            SqlError::Forward(error) => error.kind(),
            SqlError::Saga(error) => error.kind(),
        }
    }
}

impl SqlError {
    /// The text a client is shown. Errors raised before any row is read quote only the
    /// statement and the catalog (an unknown table's name is what the client typed):
    /// shown as they are. Everything raised while rows are read or written passes the
    /// sanitizer (`redact_text::shown`), so no stored value leaves in an error.
    pub fn client_message(&self) -> String {
        match self {
            SqlError::Parse(_)
            | SqlError::Plan(_)
            | SqlError::Unsupported(_)
            | SqlError::PermissionDenied { .. }
            | SqlError::NotFound(_)
            | SqlError::AlreadyExists(_)
            | SqlError::TooLarge(_)
            | SqlError::Ddl(_) => self.to_string(),
            SqlError::Write(_)
            | SqlError::Storage(_)
            | SqlError::Residency(_)
            | SqlError::Forward(_)
            | SqlError::Saga(_)
            | SqlError::Execution(_) => crate::redact_text::shown(self),
        }
    }
}

impl SqlError {
    /// Sorts a DataFusion error by cause, unwrapping context and our own errors that
    /// travelled through DataFusion as `External`.
    pub fn from_datafusion(error: DataFusionError) -> Self {
        match error {
            DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
                Self::from_datafusion(*inner)
            }
            DataFusionError::Shared(shared) => match std::sync::Arc::try_unwrap(shared) {
                Ok(inner) => Self::from_datafusion(inner),
                Err(shared) => SqlError::Execution(engine_text(&shared)),
            },
            DataFusionError::External(boxed) => match boxed.downcast::<WriteError>() {
                Ok(write) => match *write {
                    WriteError::Storage(storage) => SqlError::Storage(storage),
                    WriteError::Residency { error, .. } => SqlError::Residency(error),
                    WriteError::Forward(error) => SqlError::Forward(error),
                    other => SqlError::Write(other),
                },
                Err(boxed) if boxed.is::<crate::saga::SagaError>() => {
                    match boxed.downcast::<crate::saga::SagaError>() {
                        Ok(saga) => SqlError::Saga(*saga),
                        Err(other) => SqlError::Execution(ours(&other)),
                    }
                }
                Err(boxed) => match boxed.downcast::<StorageError>() {
                    Ok(storage) => SqlError::Storage(*storage),
                    Err(boxed) if boxed.is::<GuardError>() => {
                        match boxed.downcast::<GuardError>() {
                            Ok(guard) => SqlError::Residency(*guard),
                            Err(other) => SqlError::Execution(ours(&other)),
                        }
                    }
                    Err(boxed) => match boxed.downcast::<DataFusionError>() {
                        Ok(inner) => Self::from_datafusion(*inner),
                        Err(other) => SqlError::Execution(ours(&other)),
                    },
                },
            },
            DataFusionError::SQL(error, _) => SqlError::Parse(error.to_string()),
            DataFusionError::Plan(message) => SqlError::Plan(message),
            DataFusionError::SchemaError(error, _) => SqlError::Plan(error.to_string()),
            DataFusionError::NotImplemented(message) => SqlError::Unsupported(message),
            DataFusionError::ArrowError(error, _) => match *error {
                // Our own errors can come back wrapped by Arrow (e.g. through a
                // stream adapter): unwrap them so they keep their kind.
                arrow::error::ArrowError::ExternalError(boxed) => {
                    match boxed.downcast::<DataFusionError>() {
                        Ok(inner) => Self::from_datafusion(*inner),
                        Err(other) => SqlError::Execution(engine_text(&other)),
                    }
                }
                other => SqlError::Execution(engine_text(&other)),
            },
            DataFusionError::Collection(errors) => match errors.into_iter().next() {
                Some(first) => Self::from_datafusion(first),
                None => SqlError::Execution("unknown error".into()),
            },
            other => SqlError::Execution(engine_text(&other.strip_backtrace())),
        }
    }
}

/// A text of DataFusion or Arrow from execution: it may carry the stored value that
/// failed, quoted or bare (see `redact_text`).
fn engine_text(error: &dyn std::fmt::Display) -> String {
    withhold_values(&error.to_string(), Origin::Engine)
}

/// One of our errors that travelled through DataFusion as `External`: foreign parts were
/// withheld where they entered; checked once more.
fn ours(error: &dyn std::fmt::Display) -> String {
    withhold_values(&error.to_string(), Origin::Domicile)
}
