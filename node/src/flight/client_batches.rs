//! Arrow batches a client sends over DoPut (bound parameters, bulk ingest), decoded
//! under bounds: the wire bytes of every message are counted before it reaches the
//! decoder, a header declaring compressed buffers is refused there (see
//! `peers::ipc_input`), and a decoder panic is an error, not a crash. Messages with no
//! IPC header carry only the command and are skipped.

use arrow::array::RecordBatch;
use arrow_flight::FlightData;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use futures::{Stream, StreamExt, TryStreamExt};
use tonic::Status;

use crate::peers::{Guarded, uncompressed_header};

/// The decoding stream of a DoPut's batches.
pub(crate) type ClientBatches =
    Guarded<FlightRecordBatchStream, fn() -> Result<RecordBatch, FlightError>>;

/// Decodes `messages`, refusing with `too_many()` once their wire bytes pass
/// `max_bytes` and with `undecodable(detail)` a compressed header; read the refusal
/// back out of a decoding error with [`refusal`].
pub(crate) fn decode<E>(
    messages: impl Stream<Item = Result<FlightData, Status>> + Send + 'static,
    max_bytes: usize,
    too_many: fn() -> E,
    undecodable: fn(String) -> E,
) -> ClientBatches
where
    E: std::error::Error + Send + Sync + 'static,
{
    let mut wire_bytes = 0usize;
    let messages = messages
        .map(move |message| {
            let data = message.map_err(FlightError::from)?;
            wire_bytes = wire_bytes
                .saturating_add(data.data_header.len())
                .saturating_add(data.data_body.len())
                .saturating_add(data.app_metadata.len());
            if wire_bytes > max_bytes {
                return Err(FlightError::ExternalError(Box::new(too_many())));
            }
            if !data.data_header.is_empty() {
                uncompressed_header(&data.data_header)
                    .map_err(|detail| FlightError::ExternalError(Box::new(undecodable(detail))))?;
            }
            Ok(data)
        })
        .try_filter(|data| futures::future::ready(!data.data_header.is_empty()))
        .boxed();
    crate::peers::guarded_batches(messages)
}

/// The refusal [`decode`] raised through the decoder, or the decoder's own error as
/// `undecodable`.
pub(crate) fn refusal<E>(error: FlightError, undecodable: fn(String) -> E) -> E
where
    E: std::error::Error + Send + Sync + 'static,
{
    match error {
        FlightError::ExternalError(inner) => match inner.downcast::<E>() {
            Ok(refusal) => *refusal,
            Err(other) => undecodable(other.to_string()),
        },
        other => undecodable(other.to_string()),
    }
}
