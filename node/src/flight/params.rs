//! Parameters bound over DoPut: Arrow batches where each row is one set of values.

use arrow::array::RecordBatch;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use datafusion::common::ScalarValue;
use futures::TryStreamExt;
use tonic::Status;

use crate::limits::STATEMENT_ROWS_MAX;

/// Reads every parameter batch of a DoPut and returns one value list per row.
pub(crate) async fn read_parameter_rows(
    stream: arrow_flight::sql::server::PeekableFlightDataStream,
) -> Result<Vec<Vec<ScalarValue>>, Status> {
    let batches: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(
        stream.into_inner().map_err(FlightError::from),
    )
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
