//! Other regions' answers to `mesh` legs in the node's cache, for the table's TTL.
//!
//! The key is everything the answer depends on: the region asked, the user and role it
//! was asked for, this node's region (which the answering policy decided for) and the
//! leg's SQL. An answer is kept only after this node's policy allowed storing its rows
//! here (audited as `cache`); keeping it happens after the query got its answer.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;

use super::Federation;
use crate::auth::Principal;
use crate::catalog::TableDef;
use crate::sql::arrow_convert::append_column_values;
use crate::storage::Value;

pub(super) fn key(region: &str, principal: &Principal, asking: &str, sql: &str) -> Vec<u8> {
    [
        region,
        &principal.user,
        &principal.role.to_string(),
        &principal.home_region, // the answering policy decides for it too
        asking,
        sql,
    ]
    .join("\u{0}")
    .into_bytes()
}

/// The answer cached under `key`, if any and not expired.
pub(super) async fn cached(federation: &Federation, key: &[u8]) -> Option<Vec<RecordBatch>> {
    let bytes = federation.cache.as_ref()?.remote_get(key).await?;
    let reader = StreamReader::try_new(bytes.as_slice(), None).ok()?;
    reader.collect::<Result<Vec<_>, _>>().ok()
}

/// Keeps `batches` (the answer of `region` to a leg over `columns` of `def`) if the
/// table's TTL allows caching and this node's policy allows storing the rows here.
pub(super) fn keep(
    federation: &Arc<Federation>,
    principal: &Principal,
    def: &Arc<TableDef>,
    columns: &[usize],
    region: &str,
    key: Vec<u8>,
    answer: (SchemaRef, &[RecordBatch]),
) {
    let (schema, batches) = answer;
    let Some(cache) = federation.cache.clone() else {
        return;
    };
    let ttl = cache.remote_ttl(def.cache_ttl_ms);
    if ttl.is_zero() {
        return;
    }
    let (federation, principal, def, columns, region, batches, schema) = (
        Arc::clone(federation),
        principal.clone(),
        Arc::clone(def),
        columns.to_vec(),
        region.to_string(),
        batches.to_vec(),
        schema,
    );
    tokio::spawn(async move {
        let Some(rows) = rows_of(&def, &columns, &batches) else {
            return;
        };
        let verdict = federation
            .guard
            .check_cache(&principal, &def, &columns, &rows, &region);
        if let Some(audit) = verdict.audit
            && let Err(error) = federation.guard.record(audit).await
        {
            tracing::warn!(error = %error, "cannot audit a cache decision; not cached");
            return;
        }
        if let Err(refusal) = verdict.outcome {
            tracing::debug!(table = %def.name, region = %region, reason = %refusal, "answer not cached");
            cache.remote_refused();
            return;
        }
        match encode(&schema, &batches) {
            Some(bytes) => cache.remote_put(&key, &bytes, ttl),
            None => tracing::warn!(table = %def.name, "cannot encode an answer for the cache"),
        }
    });
}

/// The answer as rows of `columns` (for the policy), `None` if it does not convert.
fn rows_of(def: &TableDef, columns: &[usize], batches: &[RecordBatch]) -> Option<Vec<Vec<Value>>> {
    let mut all = Vec::new();
    for batch in batches {
        let mut rows: Vec<Vec<Value>> = (0..batch.num_rows())
            .map(|_| Vec::with_capacity(columns.len()))
            .collect();
        for (index, &position) in columns.iter().enumerate() {
            append_column_values(def, position, batch.columns().get(index)?, &mut rows).ok()?;
        }
        all.append(&mut rows);
    }
    Some(all)
}

/// Arrow IPC stream; an empty answer keeps the leg's schema.
fn encode(schema: &SchemaRef, batches: &[RecordBatch]) -> Option<Vec<u8>> {
    let schema = batches
        .first()
        .map_or_else(|| Arc::clone(schema), RecordBatch::schema);
    let mut bytes = Vec::new();
    let mut writer = StreamWriter::try_new(&mut bytes, &schema).ok()?;
    for batch in batches {
        writer.write(batch).ok()?;
    }
    writer.finish().ok()?;
    drop(writer);
    Some(bytes)
}
