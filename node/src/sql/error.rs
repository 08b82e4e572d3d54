use datafusion::error::DataFusionError;
use thiserror::Error;

use super::dml::WriteError;
use crate::auth::Role;
use crate::catalog::DdlError;
use crate::mesh::ForwardError;
use crate::residency::GuardError;
use crate::storage::StorageError;

/// Why a statement failed, sorted by whose fault it is: the transport layer maps each
/// variant to one status code (see `flight::status`).
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
    #[error("execution error: {0}")]
    Execution(String),
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
                Err(shared) => SqlError::Execution(shared.to_string()),
            },
            DataFusionError::External(boxed) => match boxed.downcast::<WriteError>() {
                Ok(write) => match *write {
                    WriteError::Storage(storage) => SqlError::Storage(storage),
                    WriteError::Residency { error, .. } => SqlError::Residency(error),
                    WriteError::Forward(error) => SqlError::Forward(error),
                    other => SqlError::Write(other),
                },
                Err(boxed) => match boxed.downcast::<StorageError>() {
                    Ok(storage) => SqlError::Storage(*storage),
                    Err(boxed) if boxed.is::<GuardError>() => {
                        match boxed.downcast::<GuardError>() {
                            Ok(guard) => SqlError::Residency(*guard),
                            Err(other) => SqlError::Execution(other.to_string()),
                        }
                    }
                    Err(boxed) => match boxed.downcast::<DataFusionError>() {
                        Ok(inner) => Self::from_datafusion(*inner),
                        Err(other) => SqlError::Execution(other.to_string()),
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
                        Err(other) => {
                            SqlError::Execution(without_quoted_values(&other.to_string()))
                        }
                    }
                }
                other => SqlError::Execution(without_quoted_values(&other.to_string())),
            },
            DataFusionError::Collection(errors) => match errors.into_iter().next() {
                Some(first) => Self::from_datafusion(first),
                None => SqlError::Execution("unknown error".into()),
            },
            other => SqlError::Execution(without_quoted_values(&other.strip_backtrace())),
        }
    }
}

/// Evaluation errors from Arrow and DataFusion quote the value that failed (`Cannot
/// cast string 'Ana Lopez' to value of Int32 type`), and that value may be personal
/// data read from storage. Every single-quoted span is replaced before the text can
/// reach a client or a log.
fn without_quoted_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut inside = false;
    for c in text.chars() {
        if c == '\'' {
            if inside {
                out.push_str("<value withheld>'");
            } else {
                out.push('\'');
            }
            inside = !inside;
        } else if !inside {
            out.push(c);
        }
    }
    if inside {
        out.push_str("<value withheld>");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::without_quoted_values;

    #[test]
    fn quoted_values_are_withheld() {
        assert_eq!(
            without_quoted_values("Cannot cast string 'Ana Lopez' to value of Int32 type"),
            "Cannot cast string '<value withheld>' to value of Int32 type"
        );
        assert_eq!(without_quoted_values("no quotes"), "no quotes");
        assert_eq!(
            without_quoted_values("dangling 'abc"),
            "dangling '<value withheld>"
        );
    }
}
