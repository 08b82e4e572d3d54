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

use futures::StreamExt;

use super::Federation;
use super::remote::LegStream;
use crate::auth::Principal;
use crate::catalog::TableDef;
use crate::limits::MESH_LEG_CACHE_BYTES_MAX;
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
    // The cache's disk tier is a file: read it as outside input.
    crate::peers::guarded(|| StreamReader::try_new(bytes.as_slice(), None)?.collect()).ok()
}

/// Passes `answer` on unchanged, keeping a copy of its batches while they total at most
/// `MESH_LEG_CACHE_BYTES_MAX`; when the answer ends without an error and within that
/// bound, `complete` gets the copy (to [`keep`] it). A larger or failed answer is never
/// handed over, so the cache never holds part of an answer.
pub(super) fn keep_when_complete(
    answer: LegStream,
    complete: impl FnOnce(Vec<RecordBatch>) + Send + 'static,
) -> LegStream {
    struct Tee<F> {
        answer: LegStream,
        kept: Option<(Vec<RecordBatch>, usize)>,
        complete: Option<F>,
    }
    let tee = Tee {
        answer,
        kept: Some((Vec::new(), 0)),
        complete: Some(complete),
    };
    Box::pin(futures::stream::unfold(tee, |mut tee| async move {
        match tee.answer.next().await {
            Some(Ok(batch)) => {
                if let Some((kept, bytes)) = &mut tee.kept {
                    *bytes = bytes.saturating_add(batch.get_array_memory_size());
                    if *bytes > MESH_LEG_CACHE_BYTES_MAX {
                        tee.kept = None;
                    } else {
                        kept.push(batch.clone());
                    }
                }
                Some((Ok(batch), tee))
            }
            Some(Err(error)) => {
                tee.kept = None;
                Some((Err(error), tee))
            }
            None => {
                if let (Some((kept, _)), Some(complete)) = (tee.kept.take(), tee.complete.take()) {
                    complete(kept);
                }
                None
            }
        }
    }))
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::federation::remote::LegError;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    fn batch(rows: usize, width: usize) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("body", DataType::Utf8, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(0..rows as i64)),
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|_| "x".repeat(width)),
                )),
            ],
        )
        .expect("batch")
    }

    /// Runs `items` through the tee; returns what passed and what was handed to keep.
    async fn tee(
        items: Vec<Result<RecordBatch, LegError>>,
    ) -> (Vec<Result<RecordBatch, String>>, Option<usize>) {
        let kept = Arc::new(Mutex::new(None));
        let sink = Arc::clone(&kept);
        let answer: LegStream = Box::pin(futures::stream::iter(items));
        let passed: Vec<_> = keep_when_complete(answer, move |batches| {
            *sink.lock().expect("lock") = Some(batches.iter().map(RecordBatch::num_rows).sum());
        })
        .map(|item| item.map_err(|e| e.to_string()))
        .collect()
        .await;
        let kept = *kept.lock().expect("lock");
        (passed, kept)
    }

    #[tokio::test]
    async fn only_a_complete_answer_within_the_bound_is_kept_and_everything_passes() {
        let (passed, kept) = tee(vec![Ok(batch(3, 10)), Ok(batch(4, 10))]).await;
        assert_eq!(passed.len(), 2);
        assert_eq!(kept, Some(7), "a small complete answer is kept whole");

        let failed = LegError::failed("eu-central", "link cut");
        let (passed, kept) = tee(vec![Ok(batch(3, 10)), Err(failed)]).await;
        assert!(passed[1].is_err(), "the error reaches the query");
        assert_eq!(kept, None, "part of an answer is never cached");

        // 3 batches of 4 MiB: more than MESH_LEG_CACHE_BYTES_MAX, passed on, not kept.
        let large: Vec<_> = (0..3).map(|_| Ok(batch(4, 1 << 20))).collect();
        let (passed, kept) = tee(large).await;
        let rows: usize = passed
            .iter()
            .map(|b| b.as_ref().map_or(0, RecordBatch::num_rows))
            .sum();
        assert_eq!(rows, 12);
        assert_eq!(kept, None);

        let (passed, kept) = tee(Vec::new()).await;
        assert!(passed.is_empty());
        assert_eq!(kept, Some(0), "an empty answer is an answer");
    }
}
