//! Parameters bound over DoPut: Arrow batches where each row is one set of values.
//!
//! Everything here comes from the client, so every bound is checked before the work it
//! bounds: wire bytes as each message arrives (before it is decoded), and rows, columns
//! and cells of each decoded batch before any cell becomes a `ScalarValue`. The cell
//! bound matters most: a column of NULLs costs nothing on the wire and ~64 bytes per cell
//! once converted, so 100k rows of 5k NULL columns is a few hundred KiB sent and tens of
//! GB held.

use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use arrow_flight::FlightData;
use arrow_flight::error::FlightError;
use arrow_flight::sql::server::PeekableFlightDataStream;
use datafusion::common::ScalarValue;
use futures::{Stream, StreamExt};
use thiserror::Error;
use tonic::Status;

use crate::limits::{PARAMETER_BYTES_MAX, PARAMETER_CELLS_MAX, STATEMENT_ROWS_MAX};

/// Why a DoPut's parameters were refused. Texts name the bound that was hit and never
/// quote a value (a parameter may be personal data).
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum ParameterError {
    #[error("parameter batches exceed parameter_bytes_max = {PARAMETER_BYTES_MAX} bytes")]
    TooManyBytes,
    #[error("more than statement_rows_max = {STATEMENT_ROWS_MAX} parameter rows")]
    TooManyRows,
    #[error(
        "more than parameter_cells_max = {PARAMETER_CELLS_MAX} parameter values (rows x columns)"
    )]
    TooManyCells,
    #[error("the statement takes {expected} parameter(s) but the bound batch has {got} column(s)")]
    WrongColumnCount { expected: usize, got: usize },
    #[error("cannot decode parameters: {0}")]
    Undecodable(String),
    #[error("parameter {position} has a nested type ({data_type}); parameters are scalars")]
    NestedType { position: usize, data_type: String },
}

/// Reads the parameter batches of a DoPut for a statement that takes `parameters`
/// parameters and returns one value list per row. A DoPut that carries only the command
/// (no schema, no rows) yields no rows.
///
/// Errors: [`ParameterError`], as soon as a bound is passed; nothing past it is read.
pub(crate) async fn read_parameter_rows(
    stream: PeekableFlightDataStream,
    parameters: usize,
) -> Result<Vec<Vec<ScalarValue>>, ParameterError> {
    // `into_peekable` keeps the first message (schema + command) that routing peeked at.
    read_rows(stream.into_peekable(), parameters).await
}

/// [`read_parameter_rows`] over any stream of messages (the fuzz target's entry).
pub(crate) async fn read_rows(
    messages: impl Stream<Item = Result<FlightData, Status>> + Send + 'static,
    parameters: usize,
) -> Result<Vec<Vec<ScalarValue>>, ParameterError> {
    let mut batches = super::client_batches::decode(
        messages,
        PARAMETER_BYTES_MAX,
        || ParameterError::TooManyBytes,
        ParameterError::Undecodable,
    );
    let mut rows = Vec::new();
    let mut cells = 0usize;
    while let Some(batch) = batches.next().await {
        let batch = batch.map_err(decode_error)?;
        check_shape(&batch, parameters, rows.len(), &mut cells)?;
        for row in 0..batch.num_rows() {
            let values = batch
                .columns()
                .iter()
                .map(|column| ScalarValue::try_from_array(column, row).map(union_member))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ParameterError::Undecodable(e.to_string()))?;
            rows.push(values);
        }
    }
    Ok(rows)
}

/// A value of a union column as the scalar it holds. The Flight SQL spec lets a client
/// that does not know a parameter's type send a dense union of the types it might have
/// (flightsql-dbapi sends every parameter so); each row holds one scalar.
fn union_member(value: ScalarValue) -> ScalarValue {
    match value {
        ScalarValue::Union(Some((_, inner)), _, _) => union_member(*inner),
        ScalarValue::Union(None, _, _) => ScalarValue::Null,
        other => other,
    }
}

/// Whether a parameter column's type holds one scalar per row: not nested, or a union
/// whose members are all scalars.
fn is_scalar_parameter(data_type: &DataType) -> bool {
    match data_type {
        DataType::Union(fields, _) => fields.iter().all(|(_, field)| {
            !field.data_type().is_nested()
                && !matches!(
                    field.data_type(),
                    DataType::RunEndEncoded(..) | DataType::Union(..)
                )
        }),
        DataType::RunEndEncoded(..) => false,
        other => !other.is_nested(),
    }
}

/// Checks one decoded batch against the bounds, given the rows and cells read before it.
fn check_shape(
    batch: &RecordBatch,
    parameters: usize,
    rows_before: usize,
    cells: &mut usize,
) -> Result<(), ParameterError> {
    if batch.num_columns() != parameters {
        return Err(ParameterError::WrongColumnCount {
            expected: parameters,
            got: batch.num_columns(),
        });
    }
    // A nested column is many values per cell (a struct of 5,000 NULL children counts
    // as one cell but converts into 5,000): parameters are scalars, so refuse them.
    for (position, field) in batch.schema().fields().iter().enumerate() {
        let data_type = field.data_type();
        if !is_scalar_parameter(data_type) {
            return Err(ParameterError::NestedType {
                position: position + 1,
                data_type: data_type.to_string(),
            });
        }
    }
    if rows_before.saturating_add(batch.num_rows()) > STATEMENT_ROWS_MAX {
        return Err(ParameterError::TooManyRows);
    }
    *cells = cells.saturating_add(batch.num_rows().saturating_mul(batch.num_columns()));
    if *cells > PARAMETER_CELLS_MAX {
        return Err(ParameterError::TooManyCells);
    }
    Ok(())
}

/// The decoder's error, or the refusal the message check raised through it.
fn decode_error(error: FlightError) -> ParameterError {
    super::client_batches::refusal(error, ParameterError::Undecodable)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array, NullArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow_flight::encode::FlightDataEncoderBuilder;

    use super::*;

    fn batch(columns: usize, rows: usize, nulls: bool) -> RecordBatch {
        let fields: Vec<Field> = (0..columns)
            .map(|i| {
                let data_type = if nulls {
                    DataType::Null
                } else {
                    DataType::Int64
                };
                Field::new(format!("${}", i + 1), data_type, true)
            })
            .collect();
        let arrays: Vec<ArrayRef> = (0..columns)
            .map(|_| -> ArrayRef {
                if nulls {
                    Arc::new(NullArray::new(rows))
                } else {
                    Arc::new(Int64Array::from_iter_values(0..rows as i64))
                }
            })
            .collect();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).expect("batch")
    }

    async fn encoded(batches: Vec<RecordBatch>) -> Vec<Result<FlightData, Status>> {
        FlightDataEncoderBuilder::new()
            .build(futures::stream::iter(batches.into_iter().map(Ok)))
            .map(|m| m.map_err(Status::from))
            .collect()
            .await
    }

    async fn read(batches: Vec<RecordBatch>, parameters: usize) -> Result<usize, ParameterError> {
        let messages = encoded(batches).await;
        read_rows(futures::stream::iter(messages), parameters)
            .await
            .map(|rows| rows.len())
    }

    #[tokio::test]
    async fn rows_within_every_bound_are_read() {
        let rows = read(vec![batch(3, 10, false), batch(3, 5, false)], 3).await;
        assert_eq!(rows, Ok(15));
    }

    /// The amplification attack of issue 21: few bytes on the wire, a huge number of
    /// cells once converted. Refused before any conversion (this test would need tens of
    /// GB if it were not).
    #[tokio::test]
    async fn null_columns_cannot_amplify_into_cells() {
        let wide = batch(5_000, 100_000, true);
        let messages = encoded(vec![wide]).await;
        let wire: usize = messages
            .iter()
            .map(|m| {
                m.as_ref()
                    .map_or(0, |d| d.data_body.len() + d.data_header.len())
            })
            .sum();
        assert!(wire < 2 << 20, "the attack is cheap to send: {wire} bytes");
        let outcome = read_rows(futures::stream::iter(messages), 5_000).await;
        assert_eq!(outcome.err(), Some(ParameterError::TooManyCells));
    }

    #[tokio::test]
    async fn rows_past_the_statement_bound_are_refused() {
        let half = STATEMENT_ROWS_MAX / 2 + 1;
        let rows = read(vec![batch(1, half, false), batch(1, half, false)], 1).await;
        assert_eq!(rows, Err(ParameterError::TooManyRows));
    }

    #[tokio::test]
    async fn a_batch_whose_width_is_not_the_statements_is_refused() {
        assert_eq!(
            read(vec![batch(4, 1, false)], 2).await,
            Err(ParameterError::WrongColumnCount {
                expected: 2,
                got: 4
            })
        );
        assert_eq!(
            read(vec![batch(1, 1, false)], 0).await,
            Err(ParameterError::WrongColumnCount {
                expected: 0,
                got: 1
            })
        );
    }

    #[tokio::test]
    async fn wire_bytes_are_bounded_before_decoding() {
        // Few rows and cells, many bytes: one 16 MiB value per batch, repeated.
        let value = vec![7u8; 16 << 20];
        let column: ArrayRef = Arc::new(arrow::array::BinaryArray::from(vec![value.as_slice()]));
        let one = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("$1", DataType::Binary, true)])),
            vec![column],
        )
        .expect("batch");
        let messages = encoded(vec![one]).await;
        let (schema, record) = (messages[0].clone(), messages[1].clone());
        let mut stream = vec![schema];
        stream.extend(std::iter::repeat_n(
            record,
            PARAMETER_BYTES_MAX / (16 << 20) + 1,
        ));
        let outcome = read_rows(futures::stream::iter(stream), 1).await;
        assert_eq!(outcome.err(), Some(ParameterError::TooManyBytes));
    }

    /// A compressed buffer names its inflated size, which the decoder would allocate
    /// before any bound: refused from the header, before decoding.
    #[tokio::test]
    async fn compressed_batches_are_refused_before_decoding() {
        let options = arrow::ipc::writer::IpcWriteOptions::default()
            .try_with_compression(Some(arrow::ipc::CompressionType::ZSTD))
            .expect("options");
        let messages: Vec<Result<FlightData, Status>> = FlightDataEncoderBuilder::new()
            .with_options(options)
            .build(futures::stream::iter(vec![Ok(batch(1, 10, false))]))
            .map(|m| m.map_err(Status::from))
            .collect()
            .await;
        let outcome = read_rows(futures::stream::iter(messages), 1).await;
        assert!(
            matches!(&outcome, Err(ParameterError::Undecodable(detail)) if detail.contains("compressed")),
            "{outcome:?}"
        );
    }

    /// One struct parameter of 5,000 NULL children is one cell by count and 5,000
    /// values once converted: nested parameters are refused.
    #[tokio::test]
    async fn nested_parameters_are_refused() {
        let children: Vec<(Arc<Field>, ArrayRef)> = (0..5_000)
            .map(|i| {
                (
                    Arc::new(Field::new(format!("c{i}"), DataType::Null, true)),
                    Arc::new(NullArray::new(100)) as ArrayRef,
                )
            })
            .collect();
        let column: ArrayRef = Arc::new(arrow::array::StructArray::from(children));
        let nested = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new(
                "$1",
                column.data_type().clone(),
                true,
            )])),
            vec![column],
        )
        .expect("batch");
        let outcome = read(vec![nested], 1).await;
        assert!(
            matches!(outcome, Err(ParameterError::NestedType { position: 1, .. })),
            "{outcome:?}"
        );
    }

    /// flightsql-dbapi sends each parameter as a dense union of int64, float64, utf8,
    /// binary and bool (the spec allows it for a type the client does not know): read
    /// as the scalar each row holds. A union with a nested member is still refused.
    #[tokio::test]
    async fn dense_union_parameters_are_read_as_their_member() {
        use arrow::array::{Int8Array, Int32Array, StringArray, UnionArray};
        use arrow::datatypes::UnionFields;
        let fields = UnionFields::try_new(
            [0, 1],
            [
                Field::new("int", DataType::Int64, true),
                Field::new("text", DataType::Utf8, true),
            ],
        )
        .expect("fields");
        let union = UnionArray::try_new(
            fields,
            Int8Array::from(vec![1, 0]).into_parts().1,
            Some(Int32Array::from(vec![0, 0]).into_parts().1),
            vec![
                Arc::new(Int64Array::from(vec![7])) as ArrayRef,
                Arc::new(StringArray::from(vec!["it's"])) as ArrayRef,
            ],
        )
        .expect("union");
        let column: ArrayRef = Arc::new(union);
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new(
                "param_0",
                column.data_type().clone(),
                false,
            )])),
            vec![column],
        )
        .expect("batch");
        let rows = read_rows(futures::stream::iter(encoded(vec![batch]).await), 1)
            .await
            .expect("read");
        assert_eq!(
            rows,
            vec![
                vec![ScalarValue::Utf8(Some("it's".into()))],
                vec![ScalarValue::Int64(Some(7))]
            ]
        );
        let nested_member = DataType::Union(
            UnionFields::try_new(
                [0],
                [Field::new(
                    "list",
                    DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
                    true,
                )],
            )
            .expect("fields"),
            arrow::datatypes::UnionMode::Dense,
        );
        assert!(!is_scalar_parameter(&nested_member));
    }

    #[tokio::test]
    async fn garbage_is_an_invalid_argument_not_a_panic() {
        let garbage = FlightData {
            data_header: vec![0xff; 64].into(),
            data_body: vec![1, 2, 3].into(),
            ..Default::default()
        };
        let outcome = read_rows(futures::stream::iter(vec![Ok(garbage)]), 1).await;
        assert!(matches!(outcome, Err(ParameterError::Undecodable(_))));
    }
}
