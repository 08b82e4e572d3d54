//! Parameters bound over DoPut: Arrow batches where each row is one set of values.

use arrow::array::RecordBatch;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::sql::server::PeekableFlightDataStream;
use datafusion::common::ScalarValue;
use futures::{StreamExt, TryStreamExt};
use tonic::Status;

use crate::limits::STATEMENT_ROWS_MAX;

/// Reads every parameter batch of a DoPut and returns one value list per row. A DoPut
/// that carries only the command (no schema, no rows) yields no rows.
pub(crate) async fn read_parameter_rows(
    stream: PeekableFlightDataStream,
) -> Result<Vec<Vec<ScalarValue>>, Status> {
    // `into_peekable` keeps the first message (schema + command) that routing peeked at;
    // messages with no IPC header carry only the command and are skipped.
    let messages = stream
        .into_peekable()
        .try_filter(|data| futures::future::ready(!data.data_header.is_empty()))
        .map_err(FlightError::from)
        .boxed();
    let batches: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(messages)
        .try_collect()
        .await
        .map_err(|e| Status::invalid_argument(format!("cannot decode parameters: {e}")))?;
    let mut rows = Vec::new();
    for batch in batches {
        if rows.len() + batch.num_rows() > STATEMENT_ROWS_MAX {
            return Err(Status::resource_exhausted(format!(
                "more than statement_rows_max = {STATEMENT_ROWS_MAX} parameter rows"
            )));
        }
        for row in 0..batch.num_rows() {
            let values = batch
                .columns()
                .iter()
                .map(|column| ScalarValue::try_from_array(column, row))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Status::invalid_argument(format!("cannot read parameter: {e}")))?;
            rows.push(values);
        }
    }
    Ok(rows)
}
