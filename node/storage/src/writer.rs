//! The single storage writer and its group commit.
//!
//! Statements queue on a bounded channel. The writer thread takes the first waiting
//! statement, then everything else already waiting (up to `COMMIT_BATCH_STATEMENTS_MAX`),
//! runs them one after another in one redb write transaction, and commits once with
//! `Durability::Immediate` (fsync). Every statement of the batch is answered only after
//! that commit returned, so an acknowledged statement is on disk. While one batch
//! fsyncs, the next one queues: throughput grows with concurrency instead of being capped
//! at one fsync per statement.
//!
//! Under contention a batch may wait for its siblings (`commit_window`, like
//! PostgreSQL's `commit_delay` with `commit_siblings`): when the previous batch carried
//! several statements and fewer are waiting now, the writer gives the others up to the
//! window to arrive, and goes as soon as as many are there. A commit costs about the
//! same whether it carries four statements or eight (its pages and its fsync are
//! shared), so under load the same work takes fewer fsyncs (measured: about a fifth
//! fewer in the saga bench, at the same throughput). A lone writer never waits: its
//! previous batch was one statement.
//!
//! Serial execution is what makes `UPDATE t SET x = x - 10` lose no update: a statement
//! reads the effects of every statement queued before it.
//!
//! Crash at any point: before the commit returns, nothing of the batch is acknowledged
//! (and redb recovers to the previous commit); after, everything of it is durable.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use redb::{Database, Durability};
use tokio::sync::{mpsc, oneshot};

use super::error::StorageError;
use super::store::{CATALOG, CatalogCache, DatabaseHandle, META, NODE_STATE, ROWS, StoreCounters};
use super::write_context::{CatalogChange, WriteContext};
use crate::limits::{COMMIT_BATCH_STATEMENTS_MAX, WRITE_QUEUE_STATEMENTS_MAX};

type Finish = Box<dyn FnOnce(Result<(), StorageError>) + Send>;

/// A queued statement, type-erased so one queue carries statements of any result type.
trait QueuedStatement: Send {
    /// Runs the statement; returns how to answer once the batch's fate is known, or the
    /// error that poisons the whole batch.
    fn run(self: Box<Self>, ctx: &mut WriteContext<'_>) -> (Finish, Option<StorageError>);
    /// Answers without running (the batch could not start).
    fn fail(self: Box<Self>, error: StorageError);
}

struct TypedStatement<F, T, E> {
    statement: F,
    reply: oneshot::Sender<Result<T, E>>,
    /// The submitter's trace (W3C `traceparent`), for the change events it commits.
    trace_parent: Option<String>,
}

/// Names the trace of the task submitting a statement (its W3C `traceparent`), so the
/// change events the statement commits continue that trace into every region its
/// changes reach. Set once by whoever installs tracing; storage itself knows no tracing
/// system, and without it events carry no trace.
static CALLER_TRACE: std::sync::OnceLock<fn() -> Option<String>> = std::sync::OnceLock::new();

/// Registers how to name the submitting task's trace (see `CALLER_TRACE`); the first
/// registration wins.
pub fn set_caller_trace(source: fn() -> Option<String>) {
    let _ = CALLER_TRACE.set(source);
}

impl<F, T, E> QueuedStatement for TypedStatement<F, T, E>
where
    F: FnOnce(&mut WriteContext<'_>) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<StorageError> + Send + 'static,
{
    fn run(self: Box<Self>, ctx: &mut WriteContext<'_>) -> (Finish, Option<StorageError>) {
        let Self {
            statement,
            reply,
            trace_parent,
        } = *self;
        ctx.trace_parent = trace_parent;
        // A panic inside a statement is a bug in that statement; it staged nothing that
        // reached the transaction, so it fails alone and the batch goes on.
        let outcome = match std::panic::catch_unwind(AssertUnwindSafe(|| statement(ctx))) {
            Ok(outcome) => outcome,
            Err(_) => {
                ctx.discard_staged();
                tracing::error!("a write statement panicked; it was refused");
                return (
                    Box::new(move |_| {
                        drop(reply.send(Err(E::from(StorageError::StatementPanicked))))
                    }),
                    None,
                );
            }
        };
        match outcome {
            Ok(value) => match ctx.apply_staged() {
                Ok(()) => (
                    Box::new(move |commit| {
                        let _ = reply.send(commit.map(|()| value).map_err(E::from));
                    }),
                    None,
                ),
                Err(error) => {
                    let poison = error.clone();
                    (
                        Box::new(move |_| drop(reply.send(Err(E::from(error))))),
                        Some(poison),
                    )
                }
            },
            Err(error) => {
                ctx.discard_staged();
                (Box::new(move |_| drop(reply.send(Err(error)))), None)
            }
        }
    }

    fn fail(self: Box<Self>, error: StorageError) {
        let _ = self.reply.send(Err(E::from(error)));
    }
}

#[derive(Clone)]
pub(super) struct Writer {
    queue: mpsc::Sender<Box<dyn QueuedStatement>>,
}

impl Writer {
    pub(super) fn start(
        db: Arc<DatabaseHandle>,
        catalog: Arc<RwLock<CatalogCache>>,
        counters: Arc<StoreCounters>,
        commit_window: Duration,
    ) -> Result<Self, StorageError> {
        let (queue, receiver) = mpsc::channel(WRITE_QUEUE_STATEMENTS_MAX);
        std::thread::Builder::new()
            .name("storage-writer".into())
            .spawn(move || run_writer(&db, &catalog, &counters, receiver, commit_window))
            .map_err(|e| StorageError::Open(format!("cannot start the writer thread: {e}")))?;
        Ok(Self { queue })
    }

    pub(super) async fn submit<F, T, E>(&self, statement: F) -> Result<T, E>
    where
        F: FnOnce(&mut WriteContext<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StorageError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let trace_parent = CALLER_TRACE.get().and_then(|source| source());
        let queued: Box<dyn QueuedStatement> = Box::new(TypedStatement {
            statement,
            reply,
            trace_parent,
        });
        self.queue
            .send(queued)
            .await
            .map_err(|_| E::from(StorageError::WriterStopped))?;
        answer
            .await
            .map_err(|_| E::from(StorageError::WriterStopped))?
    }
}

fn run_writer(
    db: &Database,
    catalog: &Arc<RwLock<CatalogCache>>,
    counters: &Arc<StoreCounters>,
    mut receiver: mpsc::Receiver<Box<dyn QueuedStatement>>,
    commit_window: Duration,
) {
    let mut waiting: VecDeque<Box<dyn QueuedStatement>> = VecDeque::new();
    let mut last_batch = 0;
    loop {
        if waiting.is_empty() {
            match receiver.blocking_recv() {
                Some(statement) => waiting.push_back(statement),
                None => return, // every Store handle is gone: clean shutdown
            }
        }
        take_waiting(&mut receiver, &mut waiting);
        let expected = last_batch.min(COMMIT_BATCH_STATEMENTS_MAX);
        if expected >= 2 && waiting.len() < expected && !commit_window.is_zero() {
            counters.commit_waits.fetch_add(1, Ordering::Relaxed);
            let deadline = Instant::now() + commit_window;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                std::thread::sleep(left.min(COMMIT_WINDOW_SLICE));
                take_waiting(&mut receiver, &mut waiting);
                if waiting.len() >= expected {
                    break;
                }
            }
        }
        last_batch = waiting.len();
        let batch: Vec<_> = waiting.drain(..).collect();
        commit_batch(db, catalog, counters, batch, &mut waiting);
    }
}

/// How often a batch waiting for its siblings looks for them.
const COMMIT_WINDOW_SLICE: Duration = Duration::from_micros(50);

/// Moves what is queued into `waiting`, up to a batch.
fn take_waiting(
    receiver: &mut mpsc::Receiver<Box<dyn QueuedStatement>>,
    waiting: &mut VecDeque<Box<dyn QueuedStatement>>,
) {
    while waiting.len() < COMMIT_BATCH_STATEMENTS_MAX {
        match receiver.try_recv() {
            Ok(statement) => waiting.push_back(statement),
            Err(_) => break,
        }
    }
}

/// Runs one batch. Statements left unrun because an earlier one poisoned the batch go
/// back to `carry_over` and run in the next batch.
fn commit_batch(
    db: &Database,
    catalog: &Arc<RwLock<CatalogCache>>,
    counters: &Arc<StoreCounters>,
    batch: Vec<Box<dyn QueuedStatement>>,
    carry_over: &mut VecDeque<Box<dyn QueuedStatement>>,
) {
    let started = Instant::now();
    let mut txn = match db.begin_write() {
        Ok(txn) => txn,
        Err(error) => {
            let error = StorageError::from(error);
            batch
                .into_iter()
                .for_each(|statement| statement.fail(error.clone()));
            return;
        }
    };
    if let Err(error) = txn.set_durability(Durability::Immediate) {
        let error = StorageError::Transaction(error.to_string());
        batch
            .into_iter()
            .for_each(|statement| statement.fail(error.clone()));
        return;
    }

    let mut finishes: Vec<Finish> = Vec::with_capacity(batch.len());
    let mut catalog_changes: Vec<CatalogChange> = Vec::new();
    let mut poison: Option<StorageError> = None;
    let mut heads: (Option<u64>, Option<u64>) = (None, None);
    let mut changed_row_keys: Vec<Vec<u8>> = Vec::new();
    let outcome = (|| -> Result<(), StorageError> {
        let mut ctx = WriteContext {
            rows: txn.open_table(ROWS)?,
            catalog: txn.open_table(CATALOG)?,
            meta: txn.open_table(META)?,
            staged_rows: Default::default(),
            staged_catalog: Vec::new(),
            staged_range_deletes: Vec::new(),
            staged_meta: Vec::new(),
            node_state: txn.open_table(NODE_STATE)?,
            staged_state: Default::default(),
            audit: txn.open_table(super::audit_log::AUDIT)?,
            audit_tip: txn.open_table(super::audit_log::AUDIT_TIP)?,
            staged_audit: Vec::new(),
            outbox: txn.open_table(super::change_log::OUTBOX)?,
            stream: txn.open_table(super::change_log::CHANGE_STREAM)?,
            cdc_keys: Default::default(),
            changed_row_keys: Vec::new(),
            cdc_defs: Default::default(),
            trace_parent: None,
            staged_stream: Vec::new(),
            staged_outbox_removal: None,
            staged_stream_prune: None,
            outbox_head: None,
            stream_head: None,
            counters: Arc::clone(counters),
            catalog_cache: Arc::clone(catalog),
        };
        let mut statements = batch.into_iter();
        for statement in statements.by_ref() {
            let ran = std::panic::catch_unwind(AssertUnwindSafe(|| statement.run(&mut ctx)));
            match ran {
                Ok((finish, None)) => {
                    finishes.push(finish);
                    catalog_changes.append(&mut ctx.staged_catalog);
                }
                Ok((finish, Some(error))) => {
                    finishes.push(finish);
                    poison = Some(error);
                    break;
                }
                Err(_) => {
                    // The statement's reply sender was dropped by the unwind: its caller
                    // sees WriterStopped-like failure; the batch cannot be trusted.
                    poison = Some(StorageError::Transaction("a statement panicked".into()));
                    break;
                }
            }
        }
        carry_over.extend(statements);
        heads = (ctx.outbox_head, ctx.stream_head);
        changed_row_keys = std::mem::take(&mut ctx.changed_row_keys);
        Ok(())
    })();

    let result = match (outcome, poison) {
        (Err(error), _) | (Ok(()), Some(error)) => {
            let _ = txn.abort();
            Err(error)
        }
        (Ok(()), None) => {
            let committing = Instant::now();
            let committed = txn.commit().map_err(StorageError::from);
            counters
                .commit_us
                .fetch_add(micros(committing.elapsed()), Ordering::Relaxed);
            committed
        }
    };
    if result.is_ok() {
        counters.commits.fetch_add(1, Ordering::Relaxed);
        counters
            .statements_committed
            .fetch_add(finishes.len() as u64, Ordering::Relaxed);
        let mut cache = catalog
            .write()
            .expect("catalog lock poisoned: storage invariant broken");
        for change in catalog_changes {
            match change {
                CatalogChange::Put(def) => {
                    cache.by_name.insert(def.name.clone(), def);
                }
                CatalogChange::Remove(name) => {
                    cache.by_name.remove(&name);
                }
            }
        }
        drop(cache);
        // Before any writer hears "committed": a read after that never sees the old row.
        if let Some(row_cache) = counters.row_cache.get() {
            row_cache.committed(&changed_row_keys);
        }
        // Waiters (the CDC relay, stream subscribers) learn of new entries only once
        // they are durable.
        if let Some(head) = heads.0 {
            counters.outbox_head.send_replace(head);
        }
        if let Some(head) = heads.1 {
            counters.stream_head.send_replace(head);
        }
    }
    counters
        .writer_busy_us
        .fetch_add(micros(started.elapsed()), Ordering::Relaxed);
    for finish in finishes {
        finish(result.clone());
    }
}

fn micros(elapsed: std::time::Duration) -> u64 {
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
}
