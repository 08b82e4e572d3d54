//! Flight SQL bulk ingest on the wire: `CommandStatementIngest` as an
//! [`IngestTarget`], and its DoPut stream read into batches under bounds.
//!
//! Everything here comes from the client: wire bytes are counted as each message
//! arrives (before it is decoded), compressed and nested data are refused before they
//! are expanded, and rows are counted batch by batch. What happens to the rows is the
//! engine's (`sql::ingest`).

use std::collections::HashMap;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use arrow_flight::FlightData;
use arrow_flight::error::FlightError;
use arrow_flight::sql::{CommandStatementIngest, TableExistsOption, TableNotExistOption};
use futures::{Stream, StreamExt};
use thiserror::Error;
use tonic::Status;

use crate::limits::{INGEST_BYTES_MAX, INGEST_ROWS_MAX};
use crate::sql::ingest::{IfExists, IfMissing, IngestTarget};
use crate::sql::{CATALOG_NAME, PUBLIC_SCHEMA};

/// Why an ingest request or its data was refused. Texts never quote a value.
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum IngestError {
    #[error("ingest data exceeds ingest_bytes_max = {INGEST_BYTES_MAX} bytes; send it in parts")]
    TooManyBytes,
    #[error("ingest of more than ingest_rows_max = {INGEST_ROWS_MAX} rows; send it in parts")]
    TooManyRows,
    #[error("cannot decode ingest data: {0}")]
    Undecodable(String),
    #[error("ingest data carries no Arrow schema")]
    NoSchema,
    #[error("column {column} has a nested type ({data_type}); columns hold scalars")]
    NestedType { column: String, data_type: String },
    #[error("unsupported ingest request: {0}")]
    Unsupported(String),
}

/// What `command` asks for, as the engine's [`IngestTarget`]. An unset table
/// definition option means what the Flight SQL spec's defaults mean (fail when
/// missing, fail when present); ADBC always sets both.
///
/// Errors: `Unsupported` for a temporary table, another catalog or schema, or an
/// option value the spec does not define.
pub(crate) fn target(command: &CommandStatementIngest) -> Result<IngestTarget, IngestError> {
    if command.temporary {
        return Err(IngestError::Unsupported(
            "temporary tables (every table here is durable and governed)".into(),
        ));
    }
    if let Some(catalog) = command.catalog.as_deref()
        && !catalog.is_empty()
        && catalog != CATALOG_NAME
    {
        return Err(IngestError::Unsupported(format!(
            "catalog {catalog}: tables are ingested into {CATALOG_NAME}.{PUBLIC_SCHEMA}"
        )));
    }
    if let Some(schema) = command.schema.as_deref()
        && !schema.is_empty()
        && schema != PUBLIC_SCHEMA
    {
        return Err(IngestError::Unsupported(format!(
            "schema {schema}: tables are ingested into {CATALOG_NAME}.{PUBLIC_SCHEMA}"
        )));
    }
    if command.table.is_empty() {
        return Err(IngestError::Unsupported("an empty table name".into()));
    }
    let options = command.table_definition_options.unwrap_or_default();
    let if_missing = match TableNotExistOption::try_from(options.if_not_exist) {
        Ok(TableNotExistOption::Create) => IfMissing::Create,
        Ok(TableNotExistOption::Fail | TableNotExistOption::Unspecified) => IfMissing::Fail,
        Err(_) => {
            return Err(IngestError::Unsupported(format!(
                "if_not_exist = {}",
                options.if_not_exist
            )));
        }
    };
    let if_exists = match TableExistsOption::try_from(options.if_exists) {
        Ok(TableExistsOption::Append) => IfExists::Append,
        Ok(TableExistsOption::Replace) => IfExists::Replace,
        Ok(TableExistsOption::Fail | TableExistsOption::Unspecified) => IfExists::Fail,
        Err(_) => {
            return Err(IngestError::Unsupported(format!(
                "if_exists = {}",
                options.if_exists
            )));
        }
    };
    Ok(IngestTarget {
        table: command.table.clone(),
        if_missing,
        if_exists,
        options: command
            .options
            .clone()
            .into_iter()
            .collect::<HashMap<_, _>>(),
    })
}

/// Reads an ingest's batches (the first message, already peeked by routing, included).
///
/// Errors: [`IngestError`] as soon as a bound is passed; nothing past it is read.
pub(crate) async fn read_batches(
    messages: impl Stream<Item = Result<FlightData, Status>> + Send + 'static,
) -> Result<(SchemaRef, Vec<RecordBatch>), IngestError> {
    let mut decoded = super::client_batches::decode(
        messages,
        INGEST_BYTES_MAX,
        || IngestError::TooManyBytes,
        IngestError::Undecodable,
    );
    let mut batches = Vec::new();
    let mut rows = 0usize;
    while let Some(batch) = decoded.next().await {
        let batch = batch.map_err(decode_error)?;
        for field in batch.schema().fields() {
            let data_type = field.data_type();
            if data_type.is_nested() || matches!(data_type, DataType::RunEndEncoded(..)) {
                return Err(IngestError::NestedType {
                    column: field.name().clone(),
                    data_type: data_type.to_string(),
                });
            }
        }
        rows = rows.saturating_add(batch.num_rows());
        if rows > INGEST_ROWS_MAX {
            return Err(IngestError::TooManyRows);
        }
        batches.push(batch);
    }
    let schema = match batches.first() {
        Some(batch) => batch.schema(),
        None => decoded
            .get_ref()
            .and_then(|stream| stream.schema().cloned())
            .ok_or(IngestError::NoSchema)?,
    };
    Ok((schema, batches))
}

/// The decoder's error, or the refusal the message check raised through it.
fn decode_error(error: FlightError) -> IngestError {
    super::client_batches::refusal(error, IngestError::Undecodable)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures::TryStreamExt;

    use arrow::array::{ArrayRef, Int64Array, ListArray};
    use arrow::datatypes::{Field, Int64Type, Schema};
    use arrow_flight::encode::FlightDataEncoderBuilder;
    use arrow_flight::sql::TableDefinitionOptions;

    use super::*;

    async fn encoded(
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    ) -> Vec<Result<FlightData, Status>> {
        FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(futures::stream::iter(batches.into_iter().map(Ok)))
            .map_err(Status::from)
            .collect()
            .await
    }

    fn ids(rows: usize) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let column: ArrayRef = Arc::new(Int64Array::from_iter_values(0..rows as i64));
        RecordBatch::try_new(schema, vec![column]).expect("batch")
    }

    #[tokio::test]
    async fn batches_and_an_empty_loads_schema_are_read() {
        let batch = ids(10);
        let schema = batch.schema();
        let (read_schema, read) = read_batches(futures::stream::iter(
            encoded(Arc::clone(&schema), vec![batch.clone(), batch]).await,
        ))
        .await
        .expect("read");
        assert_eq!(read_schema, schema);
        assert_eq!(read.iter().map(RecordBatch::num_rows).sum::<usize>(), 20);
        let (empty_schema, none) = read_batches(futures::stream::iter(
            encoded(Arc::clone(&schema), vec![]).await,
        ))
        .await
        .expect("schema only");
        assert_eq!(empty_schema, schema);
        assert!(none.is_empty());
        let nothing = read_batches(futures::stream::iter(Vec::new())).await;
        assert_eq!(nothing.expect_err("no schema"), IngestError::NoSchema);
    }

    #[tokio::test]
    async fn rows_past_the_bound_are_refused() {
        let batch = ids(INGEST_ROWS_MAX / 2 + 1);
        let refused = read_batches(futures::stream::iter(
            encoded(batch.schema(), vec![batch.clone(), batch]).await,
        ))
        .await;
        assert_eq!(refused.expect_err("too many"), IngestError::TooManyRows);
    }

    #[tokio::test]
    async fn wire_bytes_are_bounded_before_decoding() {
        let message = FlightData {
            data_header: vec![0u8; 1 << 20].into(),
            ..FlightData::default()
        };
        let messages: Vec<Result<FlightData, Status>> = (0..(INGEST_BYTES_MAX >> 20) + 1)
            .map(|_| Ok(message.clone()))
            .collect();
        let refused = read_batches(futures::stream::iter(messages)).await;
        // The first message is garbage: refused as undecodable before the bound, or
        // the bound first; never read to the end.
        assert!(refused.is_err());
    }

    #[tokio::test]
    async fn nested_columns_and_garbage_are_refused_by_name() {
        let list = ListArray::from_iter_primitive::<Int64Type, _, _>(vec![Some(vec![Some(1)])]);
        let batch =
            RecordBatch::try_from_iter([("tags", Arc::new(list) as ArrayRef)]).expect("batch");
        let refused = read_batches(futures::stream::iter(
            encoded(batch.schema(), vec![batch]).await,
        ))
        .await
        .expect_err("nested");
        assert!(matches!(refused, IngestError::NestedType { ref column, .. } if column == "tags"));
        let garbage = FlightData {
            data_header: vec![0xff; 64].into(),
            data_body: vec![0xff; 64].into(),
            ..FlightData::default()
        };
        let refused = read_batches(futures::stream::iter(vec![Ok(garbage)])).await;
        assert!(
            matches!(refused, Err(IngestError::Undecodable(_))),
            "{refused:?}"
        );
    }

    #[test]
    fn the_command_maps_to_a_target_or_a_reason() {
        let mut command = CommandStatementIngest {
            table: "merchants".into(),
            table_definition_options: Some(TableDefinitionOptions {
                if_not_exist: TableNotExistOption::Create as i32,
                if_exists: TableExistsOption::Append as i32,
            }),
            ..CommandStatementIngest::default()
        };
        let target = target(&command).expect("target");
        assert_eq!(
            (target.if_missing, target.if_exists),
            (IfMissing::Create, IfExists::Append)
        );
        command.table_definition_options = None;
        let defaults = super::target(&command).expect("defaults");
        assert_eq!(
            (defaults.if_missing, defaults.if_exists),
            (IfMissing::Fail, IfExists::Fail)
        );
        command.temporary = true;
        assert!(super::target(&command).is_err());
        command.temporary = false;
        command.schema = Some("other".into());
        assert!(super::target(&command).is_err());
        command.schema = Some(PUBLIC_SCHEMA.into());
        command.table_definition_options = Some(TableDefinitionOptions {
            if_not_exist: 99,
            if_exists: 1,
        });
        assert!(super::target(&command).is_err());
    }
}
