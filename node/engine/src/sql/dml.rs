//! Writes: INSERT through a DataFusion `DataSink`, UPDATE and DELETE through
//! `MutationExec`. Each statement becomes one storage statement (see `storage::writer`):
//! it finds its rows and stages every change inside the writer, so it is atomic,
//! serialised against every other write, and acknowledged only once durable.
//!
//! Residency: `WriteTarget::home_partition` refuses rows homed elsewhere; every row
//! that passes is then put to the jurisdiction's policy by the residency guard (inserts
//! before the write is queued, updates inside it, once the new rows exist), and the
//! decision is audited in the statement's own commit.

use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt64Array};
use arrow::compute::{and, prep_null_mask_filter};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::sink::DataSink;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::StreamExt;
use thiserror::Error;

use super::StatementContext;
use super::arrow_convert::{
    ConvertError, append_column_values, batch_to_rows, rows_to_batch, table_schema,
};
use super::pushdown::Access;
use crate::catalog::{DataClass, Locality, TableDef};
use crate::limits::{SCAN_BATCH_ROWS_MAX, STATEMENT_ROWS_MAX};
use crate::peers::ForwardError;
use crate::redact_text::{Origin, withhold_values};
use crate::residency::{AuditEntry, GuardError, ResidencyGuard};
use crate::storage::{RowWrites, StorageError, Store, Value};

/// Why a write was refused. Texts never carry values of `pii` columns.
#[derive(Debug, Error)]
pub enum WriteError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Convert(#[from] ConvertError),
    #[error("duplicate primary key {key} in table {table}")]
    DuplicateKey { table: String, key: String },
    #[error(
        "row of table {table} is homed in region {row_region}, but this node stores only rows \
         homed in {local_region}"
    )]
    NotHome {
        table: String,
        row_region: String,
        local_region: String,
    },
    #[error("table {table} lives in region {table_region}; this node is {local_region}")]
    WrongRegion {
        table: String,
        table_region: String,
        local_region: String,
    },
    #[error("{0} is a read-only replica of other regions' data; write at the source")]
    ReadOnlyReplica(String),
    /// An UPDATE or DELETE whose WHERE names rows homed in other regions: this node
    /// holds none of them, and a statement commits on one node, so it is refused rather
    /// than answered with a count of 0.
    #[error(
        "{statement} of table {table} names rows homed in {regions}; this node ({local_region}) \
         changes only rows homed here: run the statement on the node of {regions}"
    )]
    HomedElsewhere {
        statement: &'static str,
        table: String,
        regions: String,
        local_region: String,
    },
    #[error("statement would change more than statement_rows_max = {STATEMENT_ROWS_MAX} rows")]
    TooManyRows,
    #[error("table {0} was dropped or replaced while the statement ran")]
    TableChanged(String),
    #[error("cannot evaluate expression: {0}")]
    Evaluate(String),
    /// An UPDATE or DELETE by a principal homed in another region would evaluate
    /// `pii`/`sensitive` values of rows homed here: what it learns (a value copied into
    /// a `public` column, a matched-row count) would leave without a policy decision.
    #[error(
        "a principal homed in {home_region} may not read {columns} of {table} in UPDATE or \
         DELETE (personal or sensitive data of this region; no policy decides it)"
    )]
    ReadsProtected {
        table: String,
        columns: String,
        home_region: String,
    },
    /// An assignment would copy a value into a column of a weaker class (`name` into a
    /// `public` column), where policies and replication treat it as that class.
    #[error(
        "UPDATE of {table} may not set {target} ({target_class}) from {from_column} \
         ({from_class}): the value would lose its data class"
    )]
    ClassDowngrade {
        table: String,
        target: String,
        target_class: &'static str,
        from_column: String,
        from_class: &'static str,
    },
    /// Refused by the residency guard; `audit` records the refusal once the statement
    /// has been rolled back.
    #[error("{error}")]
    Residency {
        error: GuardError,
        audit: Option<Box<AuditEntry>>,
    },
    #[error("internal error: statement executed without a principal; refused")]
    NoSession,
    #[error(
        "rows of table {table} are homed in several regions ({regions:?}); write each \
         region's rows in a statement of its own"
    )]
    SpansRegions { table: String, regions: Vec<String> },
    #[error(transparent)]
    Forward(#[from] ForwardError),
    /// Inside a transaction, a statement that would reach another region's node: a
    /// transaction commits on one node, in one storage commit.
    #[error(
        "{what} inside a transaction: a transaction reads and changes only rows stored on \
         this node ({local_region}) and commits here alone; work across regions is a saga \
         (start_saga), run outside the transaction"
    )]
    OutsideTransaction { what: String, local_region: String },
}

impl crate::error_kind::Classify for WriteError {
    fn kind(&self) -> crate::error_kind::ErrorKind {
        use crate::error_kind::ErrorKind;
        match self {
            WriteError::DuplicateKey { .. } => ErrorKind::AlreadyExists,
            WriteError::NotHome { .. }
            | WriteError::HomedElsewhere { .. }
            | WriteError::WrongRegion { .. }
            | WriteError::ReadOnlyReplica(_)
            | WriteError::OutsideTransaction { .. } => ErrorKind::Precondition,
            WriteError::Convert(_) | WriteError::Evaluate(_) | WriteError::SpansRegions { .. } => {
                ErrorKind::Invalid
            }
            WriteError::TooManyRows => ErrorKind::Exhausted,
            WriteError::ReadsProtected { .. } | WriteError::ClassDowngrade { .. } => {
                ErrorKind::Refused
            }
            WriteError::TableChanged(_) => ErrorKind::Conflict,
            WriteError::NoSession => ErrorKind::Internal,
            WriteError::Storage(error) => error.kind(),
            WriteError::Residency { error, .. } => error.kind(),
            WriteError::Forward(error) => error.kind(),
        }
    }
}

/// The principal and guard of the statement being executed.
pub(crate) fn guard_session(context: &TaskContext) -> Result<Arc<StatementContext>, WriteError> {
    context
        .session_config()
        .get_extension::<StatementContext>()
        .ok_or(WriteError::NoSession)
}

/// Audits a refusal (durably, on its own: the statement wrote nothing), then fails.
async fn refuse(guard: &ResidencyGuard, error: WriteError) -> DataFusionError {
    let error = match error {
        WriteError::Residency {
            error,
            audit: Some(entry),
        } => {
            if let Err(audit_error) = guard.record(*entry).await {
                tracing::error!(error = %audit_error, "cannot audit a residency refusal");
            }
            WriteError::Residency { error, audit: None }
        }
        other => other,
    };
    DataFusionError::from(error)
}

/// Asks the guard whether `rows` may be stored; the audit entry of an allowed store is
/// returned for the caller to append in the statement's own commit.
fn check_store(
    session: &StatementContext,
    def: &TableDef,
    rows: &[Vec<Value>],
) -> Result<Option<Vec<u8>>, WriteError> {
    let verdict = session.guard.check_store(&session.principal, def, rows);
    match verdict.outcome {
        Ok(()) => Ok(verdict.audit.map(|entry| entry.to_bytes())),
        Err(error) => Err(WriteError::Residency {
            error,
            audit: verdict.audit.map(Box::new),
        }),
    }
}

/// An evaluation over stored rows failed. The engine's text may print the value it
/// failed on, quoted, double-quoted or bare (a regular expression built from a column
/// prints its pattern as is), so DML answers with the kind of failure only.
fn evaluate_error<E: fmt::Display>(error: E) -> WriteError {
    let text = error.to_string();
    let lowered = text.to_ascii_lowercase();
    // `sql::postgres_semantics` names the type and never a value: kept as it is. A
    // narrowing cast between integer types that overflows says the same, as PostgreSQL.
    let out_of_range = [
        ("smallint", "to type int16"),
        ("integer", "to type int32"),
        ("bigint", "to type int64"),
    ]
    .into_iter()
    .find(|(name, cast)| {
        lowered.contains(&format!("{name} out of range"))
            || (lowered.contains("can't cast value") && lowered.contains(cast))
    })
    .map(|(name, _)| name);
    if let Some(name) = out_of_range {
        return WriteError::Evaluate(format!("{name} out of range"));
    }
    let kind = if lowered.contains("cast") {
        "a value does not convert to the target type"
    } else if lowered.contains("overflow") || lowered.contains("too large") {
        "arithmetic overflow"
    } else if lowered.contains("divide by zero") || lowered.contains("division by zero") {
        "division by zero"
    } else if lowered.contains("regular expression") || lowered.contains("regex") {
        "invalid regular expression"
    } else {
        "evaluation failed"
    };
    // Checked, not shown: a sanitized copy for the operator's debug log.
    tracing::debug!(detail = %withhold_values(&text, Origin::Engine), "DML evaluation failed");
    WriteError::Evaluate(format!("{kind} (the stored value is withheld)"))
}

/// How strict a class is: a value may move only to a column at least as strict.
fn strictness(class: DataClass) -> u8 {
    match class {
        DataClass::Public => 0,
        DataClass::Sensitive => 1,
        DataClass::Pii => 2,
    }
}

/// Refuses an UPDATE/DELETE that would read protected columns for a principal of
/// another region, or copy a value into a weaker class.
fn check_mutation_reads(
    def: &TableDef,
    predicates: &[Arc<dyn PhysicalExpr>],
    mutation: &Mutation,
    session: &StatementContext,
) -> Result<(), WriteError> {
    use datafusion::physical_expr::utils::collect_columns;
    let class_of = |index: usize| def.columns.get(index).map_or(DataClass::Pii, |c| c.class);
    let name_of = |index: usize| {
        def.columns
            .get(index)
            .map_or_else(|| format!("#{index}"), |c| c.name.clone())
    };
    let mut read: Vec<usize> = predicates
        .iter()
        .flat_map(|p| collect_columns(p).into_iter().map(|c| c.index()))
        .collect();
    if let Mutation::Update { assignments } = mutation {
        for (target, expr) in assignments {
            let sources: Vec<usize> = collect_columns(expr)
                .into_iter()
                .map(|c| c.index())
                .collect();
            if let Some(&source) = sources
                .iter()
                .find(|&&s| strictness(class_of(s)) > strictness(class_of(*target)))
            {
                return Err(WriteError::ClassDowngrade {
                    table: def.name.clone(),
                    target: name_of(*target),
                    target_class: class_of(*target).as_str(),
                    from_column: name_of(source),
                    from_class: class_of(source).as_str(),
                });
            }
            read.extend(sources);
        }
    }
    let destinations = session.destinations();
    if !session.guard.decides_egress(&destinations, def) {
        return Ok(());
    }
    read.sort_unstable();
    read.dedup();
    let protected: Vec<String> = read
        .into_iter()
        .filter(|&i| class_of(i) != DataClass::Public)
        .map(name_of)
        .collect();
    if protected.is_empty() {
        return Ok(());
    }
    Err(WriteError::ReadsProtected {
        table: def.name.clone(),
        columns: protected.join(", "),
        home_region: session.principal.home_region.clone(),
    })
}

impl From<WriteError> for DataFusionError {
    fn from(error: WriteError) -> Self {
        DataFusionError::External(Box::new(error))
    }
}

/// The table a write goes to, and the node it is written on.
#[derive(Clone, Debug)]
pub(crate) struct WriteTarget {
    pub(crate) def: Arc<TableDef>,
    pub(crate) store: Store,
    pub(crate) local_region: Arc<str>,
}

impl WriteTarget {
    /// The partition a row is stored under, refusing rows that may not live here.
    fn home_partition(&self, row: &[Value]) -> Result<String, WriteError> {
        let def = &self.def;
        match &def.locality {
            Locality::RegionalByRow { region_column } => {
                let index = def.region_column_index().expect("validated at CREATE");
                let Value::Text(region) = &row[index] else {
                    return Err(ConvertError::NullInNotNull {
                        column: region_column.clone(),
                    }
                    .into());
                };
                if region.as_str() != &*self.local_region {
                    return Err(WriteError::NotHome {
                        table: def.name.clone(),
                        row_region: region.clone(),
                        local_region: self.local_region.to_string(),
                    });
                }
                Ok(region.clone())
            }
            Locality::Regional { region } => {
                if region.as_str() != &*self.local_region {
                    return Err(WriteError::WrongRegion {
                        table: def.name.clone(),
                        table_region: region.clone(),
                        local_region: self.local_region.to_string(),
                    });
                }
                Ok(region.clone())
            }
            Locality::Global => Ok(self.local_region.to_string()),
            Locality::Replica => Err(WriteError::ReadOnlyReplica(def.name.clone())),
        }
    }
}

fn primary_key(def: &TableDef, row: &[Value]) -> Vec<Value> {
    def.primary_key.iter().map(|&i| row[i].clone()).collect()
}

/// Names a key in an error without revealing personal data.
fn describe_key(def: &TableDef, key: &[Value]) -> String {
    if def
        .primary_key
        .iter()
        .any(|&i| def.columns[i].class != DataClass::Public)
    {
        return "(withheld: key has non-public columns)".into();
    }
    let parts: Vec<String> = key
        .iter()
        .map(|v| match v {
            Value::Text(t) => format!("'{t}'"),
            Value::Int(v) => v.to_string(),
            Value::BigInt(v) => v.to_string(),
            Value::Uuid(v) => uuid::Uuid::from_bytes(*v).to_string(),
            Value::Boolean(v) => v.to_string(),
            Value::Date(v) => format!("date#{v}"),
            Value::Timestamp(v) => format!("timestamp#{v}"),
            Value::Double(v) => v.to_string(),
            Value::Decimal(v) => format!("unscaled {v}"),
            Value::Bytea(v) => format!("<{} bytes>", v.len()),
            Value::Null => "NULL".into(),
        })
        .collect();
    format!("({})", parts.join(", "))
}

fn ensure_current(ctx: &mut impl RowWrites, def: &TableDef) -> Result<(), WriteError> {
    if ctx.is_current(def) {
        Ok(())
    } else {
        Err(WriteError::TableChanged(def.name.clone()))
    }
}

fn count_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::UInt64,
        false,
    )]))
}

fn count_batch(count: u64) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(
        count_schema(),
        vec![Arc::new(UInt64Array::from(vec![count]))],
    )?)
}

// ---------------------------------------------------------------------------------------
// INSERT

#[derive(Debug)]
pub(crate) struct InsertSink {
    target: WriteTarget,
    schema: SchemaRef,
}

impl InsertSink {
    pub(crate) fn new(target: WriteTarget, schema: SchemaRef) -> Self {
        Self { target, schema }
    }
}

impl DisplayAs for InsertSink {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InsertSink: table={}", self.target.def.name)
    }
}

#[async_trait]
impl DataSink for InsertSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        context: &Arc<TaskContext>,
    ) -> Result<u64> {
        let session = guard_session(context)?;
        let mut batches = Vec::new();
        let mut count = 0;
        while let Some(batch) = data.next().await {
            let batch = batch?;
            count += batch.num_rows();
            if count > STATEMENT_ROWS_MAX {
                return Err(WriteError::TooManyRows.into());
            }
            batches.push(batch);
        }
        insert_local(&self.target, &session, batches, STATEMENT_ROWS_MAX).await
    }
}

/// The one region other than this node's that every row is homed in, if the table is
/// REGIONAL BY ROW and no row is homed here; rows of several regions are refused
/// (a statement is atomic on one node; there is no cross-node commit).
fn remote_home(target: &WriteTarget, rows: &[Vec<Value>]) -> Result<Option<String>, WriteError> {
    let Some(index) = target.def.region_column_index() else {
        return Ok(None);
    };
    let mut homes = std::collections::BTreeSet::new();
    for row in rows {
        if let Value::Text(region) = &row[index] {
            homes.insert(region.as_str());
        }
    }
    let local = &*target.local_region;
    match (homes.len(), homes.iter().next()) {
        (1, Some(home)) if *home != local => Ok(Some((*home).to_string())),
        (n, _) if n > 1 => Err(WriteError::SpansRegions {
            table: target.def.name.clone(),
            regions: homes.iter().map(|h| (*h).to_string()).collect(),
        }),
        _ => Ok(None),
    }
}

/// An INSERT's rows: stored here if homed here, or sent to their home node (after this
/// node's policy lets them travel) and kept nowhere here. At most `rows_max` rows
/// (`STATEMENT_ROWS_MAX`, or `INGEST_ROWS_MAX` for a bulk ingest); at most
/// `STATEMENT_ROWS_MAX` are forwarded, the bound of the node that stores them.
pub(crate) async fn insert_local(
    target: &WriteTarget,
    session: &StatementContext,
    batches: Vec<RecordBatch>,
    rows_max: usize,
) -> Result<u64> {
    let def = Arc::clone(&target.def);
    let mut rows: Vec<Vec<Value>> = Vec::new();
    for batch in &batches {
        rows.extend(batch_to_rows(&def, batch).map_err(WriteError::from)?);
    }
    if rows.len() > rows_max {
        return Err(WriteError::TooManyRows.into());
    }
    // A peer's forwarded rows (`local_only`) are stored here or refused (NotHome
    // below), never sent on to a third region.
    if !session.local_only
        && let Some(home) = remote_home(target, &rows)?
    {
        if session.transaction.is_some() {
            return Err(WriteError::OutsideTransaction {
                what: format!("an INSERT of rows homed in {home}"),
                local_region: target.local_region.to_string(),
            }
            .into());
        }
        if rows.len() > STATEMENT_ROWS_MAX {
            return Err(WriteError::TooManyRows.into());
        }
        return forward(target, session, rows, &home).await;
    }
    let mut partitions: Vec<String> = Vec::with_capacity(rows.len());
    for row in &rows {
        partitions.push(target.home_partition(row)?);
    }
    let audit = match check_store(session, &def, &rows) {
        Ok(audit) => audit,
        Err(error) => return Err(refuse(&session.guard, error).await),
    };
    let insert = StoreRows {
        def,
        partitions,
        rows,
        audit,
    };
    run_statement(&target.store, session, insert)
        .await
        .map_err(DataFusionError::from)
}

/// A write statement's work on rows, run where the statement runs: in the storage
/// writer (autocommit) or inside the statement's transaction. One body for both, so
/// the two cannot drift apart.
trait RowStatement: Send + 'static {
    fn run(self, ctx: &mut impl RowWrites) -> Result<u64, WriteError>;
}

async fn run_statement(
    store: &Store,
    session: &StatementContext,
    statement: impl RowStatement,
) -> Result<u64, WriteError> {
    match &session.transaction {
        Some(transaction) => transaction.write(move |ctx| statement.run(ctx)).await,
        None => store.write(move |ctx| statement.run(ctx)).await,
    }
}

/// An INSERT's rows, their partitions and the audit entry of the decision that let
/// them be stored.
struct StoreRows {
    def: Arc<TableDef>,
    partitions: Vec<String>,
    rows: Vec<Vec<Value>>,
    audit: Option<Vec<u8>>,
}

impl RowStatement for StoreRows {
    fn run(self, ctx: &mut impl RowWrites) -> Result<u64, WriteError> {
        store_rows(ctx, &self.def, &self.partitions, &self.rows, self.audit)
    }
}

/// Stages an INSERT's rows (refusing a duplicate key) and the audit entry of the
/// decision that let them be stored.
fn store_rows(
    ctx: &mut impl RowWrites,
    def: &TableDef,
    partitions: &[String],
    rows: &[Vec<Value>],
    audit: Option<Vec<u8>>,
) -> Result<u64, WriteError> {
    ensure_current(ctx, def)?;
    for (partition, row) in partitions.iter().zip(rows) {
        let key = primary_key(def, row);
        if ctx.exists(def, &key)? {
            return Err(WriteError::DuplicateKey {
                table: def.name.clone(),
                key: describe_key(def, &key),
            });
        }
        ctx.put_row(def, partition, row);
    }
    if let Some(body) = audit {
        ctx.append_audit(body);
    }
    Ok(rows.len() as u64)
}

/// Sends rows homed in `home` to its node once this node's policy lets them travel
/// there; the decision is audited here, the storage decision there.
async fn forward(
    target: &WriteTarget,
    session: &StatementContext,
    rows: Vec<Vec<Value>>,
    home: &str,
) -> Result<u64> {
    let def = &target.def;
    let verdict = session
        .guard
        .check_travel(&session.principal, def, &rows, home);
    if let Some(entry) = verdict.audit {
        let refused = verdict.outcome.is_err();
        let recorded = session.guard.record(entry).await;
        if let (Err(error), false) = (recorded, refused) {
            return Err(WriteError::Residency { error, audit: None }.into());
        }
    }
    if let Err(error) = verdict.outcome {
        return Err(WriteError::Residency { error, audit: None }.into());
    }
    let all: Vec<usize> = (0..def.columns.len()).collect();
    let batch = rows_to_batch(def, &all, &table_schema(def), &rows).map_err(evaluate_error)?;
    let count = session
        .router
        .insert_rows(home, &session.principal, &def.name, &batch)
        .await
        .map_err(WriteError::Forward)?;
    tracing::info!(table = %def.name, home, rows = count, "rows forwarded to their home region");
    Ok(count)
}

// ---------------------------------------------------------------------------------------
// UPDATE and DELETE

pub(crate) enum Mutation {
    Delete,
    /// Column position → new value, evaluated against the old row.
    Update {
        assignments: Vec<(usize, Arc<dyn PhysicalExpr>)>,
    },
}

impl fmt::Debug for Mutation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mutation::Delete => f.write_str("Delete"),
            Mutation::Update { assignments } => write!(f, "Update({} columns)", assignments.len()),
        }
    }
}

/// Executes one UPDATE or DELETE and yields a single `count` row.
#[derive(Debug)]
pub(crate) struct MutationExec {
    target: WriteTarget,
    access: Access,
    predicates: Vec<Arc<dyn PhysicalExpr>>,
    mutation: Arc<Mutation>,
    properties: Arc<PlanProperties>,
}

impl MutationExec {
    pub(crate) fn new(
        target: WriteTarget,
        access: Access,
        predicates: Vec<Arc<dyn PhysicalExpr>>,
        mutation: Mutation,
    ) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(count_schema()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Self {
            target,
            access,
            predicates,
            mutation: Arc::new(mutation),
            properties,
        }
    }
}

impl DisplayAs for MutationExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MutationExec: {:?} table={}, {}, predicates={}",
            self.mutation,
            self.target.def.name,
            self.access.describe(),
            self.predicates.len()
        )
    }
}

impl ExecutionPlan for MutationExec {
    crate::leaf_exec_methods!("MutationExec");

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        for predicate in &self.predicates {
            if f(predicate)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        crate::sql::leaf_exec::only_partition_zero("MutationExec", partition)?;
        let session = guard_session(&context)?;
        mutation_is_local(&self.target, &self.access, &self.mutation)?;
        check_mutation_reads(&self.target.def, &self.predicates, &self.mutation, &session)?;
        let target = self.target.clone();
        let access = self.access.clone();
        let predicates = self.predicates.clone();
        let mutation = Arc::clone(&self.mutation);
        let run = async move {
            let store = target.store.clone();
            let mutate = Mutate {
                target,
                access,
                predicates,
                mutation,
                session: Arc::clone(&session),
            };
            let outcome = run_statement(&store, &session, mutate).await;
            match outcome {
                Ok(count) => count_batch(count),
                Err(error) => Err(refuse(&session.guard, error).await),
            }
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            count_schema(),
            futures::stream::once(run),
        )))
    }
}

/// Refuses an UPDATE or DELETE of rows this node cannot hold: a REGIONAL BY ROW table
/// whose WHERE pins the region column to regions other than this one (alone or beside
/// it), a REGIONAL table of another region, a replica. Without a region predicate a
/// statement changes the rows homed here, as a read without one reads them.
fn mutation_is_local(
    target: &WriteTarget,
    access: &Access,
    mutation: &Mutation,
) -> Result<(), WriteError> {
    let def = &target.def;
    let local = &*target.local_region;
    match &def.locality {
        Locality::RegionalByRow { .. } => {
            let elsewhere: Vec<&str> = access
                .partitions
                .iter()
                .flatten()
                .map(String::as_str)
                .filter(|region| *region != local)
                .collect();
            if elsewhere.is_empty() {
                return Ok(());
            }
            Err(WriteError::HomedElsewhere {
                statement: match mutation {
                    Mutation::Delete => "DELETE",
                    Mutation::Update { .. } => "UPDATE",
                },
                table: def.name.clone(),
                regions: elsewhere.join(", "),
                local_region: local.to_string(),
            })
        }
        Locality::Regional { region } if region.as_str() != local => Err(WriteError::WrongRegion {
            table: def.name.clone(),
            table_region: region.clone(),
            local_region: local.to_string(),
        }),
        Locality::Replica => Err(WriteError::ReadOnlyReplica(def.name.clone())),
        Locality::Regional { .. } | Locality::Global => Ok(()),
    }
}

/// An UPDATE or DELETE as a statement on rows (see `RowStatement`).
struct Mutate {
    target: WriteTarget,
    access: Access,
    predicates: Vec<Arc<dyn PhysicalExpr>>,
    mutation: Arc<Mutation>,
    session: Arc<StatementContext>,
}

impl RowStatement for Mutate {
    fn run(self, ctx: &mut impl RowWrites) -> Result<u64, WriteError> {
        apply_mutation(
            ctx,
            &self.target,
            &self.access,
            &self.predicates,
            &self.mutation,
            &self.session,
        )
    }
}

fn apply_mutation(
    ctx: &mut impl RowWrites,
    target: &WriteTarget,
    access: &Access,
    predicates: &[Arc<dyn PhysicalExpr>],
    mutation: &Mutation,
    session: &StatementContext,
) -> Result<u64, WriteError> {
    let def = &target.def;
    ensure_current(ctx, def)?;
    let matched = find_matches(ctx, def, access, predicates)?;
    let count = matched.len() as u64;
    match mutation {
        Mutation::Delete => {
            for (partition, row) in &matched {
                ctx.delete_row(def, partition, &primary_key(def, row));
            }
        }
        Mutation::Update { assignments } => {
            if matched.is_empty() {
                return Ok(0);
            }
            let old_rows: Vec<Vec<Value>> = matched.iter().map(|(_, row)| row.clone()).collect();
            let all: Vec<usize> = (0..def.columns.len()).collect();
            let schema = table_schema(def);
            let batch = rows_to_batch(def, &all, &schema, &old_rows).map_err(evaluate_error)?;
            let mut new_rows = old_rows.clone();
            for (position, expr) in assignments {
                let array: ArrayRef = expr
                    .evaluate(&batch)
                    .and_then(|v| v.into_array(batch.num_rows()))
                    .map_err(evaluate_error)?;
                let mut values: Vec<Vec<Value>> = vec![Vec::with_capacity(1); batch.num_rows()];
                append_column_values(def, *position, &array, &mut values)?;
                for (row, mut value) in new_rows.iter_mut().zip(values) {
                    row[*position] = value.pop().expect("one value per row");
                }
            }
            // The policy decides on the rows as they will be stored. It runs here, on
            // the writer thread, because the new rows exist only now.
            if let Some(body) = check_store(session, def, &new_rows)? {
                ctx.append_audit(body);
            }
            // Rows whose key or home changes leave their old place first, so that
            // statements like `SET id = id + 1` do not collide with themselves.
            let mut moved = Vec::new();
            for ((old_partition, old_row), new_row) in matched.iter().zip(&new_rows) {
                let new_partition = target.home_partition(new_row)?;
                let old_key = primary_key(def, old_row);
                let new_key = primary_key(def, new_row);
                if old_key != new_key || *old_partition != new_partition {
                    ctx.delete_row(def, old_partition, &old_key);
                    moved.push((new_partition, new_row, new_key));
                } else {
                    ctx.put_row(def, &new_partition, new_row);
                }
            }
            for (partition, row, key) in moved {
                if ctx.exists(def, &key)? {
                    return Err(WriteError::DuplicateKey {
                        table: def.name.clone(),
                        key: describe_key(def, &key),
                    });
                }
                ctx.put_row(def, &partition, row);
            }
        }
    }
    Ok(count)
}

/// Every row (with its partition) that satisfies all predicates, reading only the keys
/// or partitions `access` allows.
fn find_matches(
    ctx: &mut impl RowWrites,
    def: &TableDef,
    access: &Access,
    predicates: &[Arc<dyn PhysicalExpr>],
) -> Result<Vec<(String, Vec<Value>)>, WriteError> {
    let all: Vec<usize> = (0..def.columns.len()).collect();
    let schema = table_schema(def);
    let partitions = match &access.partitions {
        Some(partitions) => partitions.clone(),
        None => ctx.partitions(def.id)?,
    };
    let mut matched = Vec::new();
    let filter_chunk = |partition: &str,
                        chunk: &mut Vec<Vec<Value>>,
                        matched: &mut Vec<(String, Vec<Value>)>|
     -> Result<(), WriteError> {
        if chunk.is_empty() {
            return Ok(());
        }
        let mask = evaluate_predicates(def, &all, &schema, chunk, predicates)?;
        for (row, keep) in chunk.drain(..).zip(mask.iter()) {
            if keep == Some(true) {
                if matched.len() >= STATEMENT_ROWS_MAX {
                    return Err(WriteError::TooManyRows);
                }
                matched.push((partition.to_string(), row));
            }
        }
        Ok(())
    };
    match &access.keys {
        Some(keys) => {
            for key in keys {
                for partition in &partitions {
                    if let Some(row) = ctx.lookup(def, partition, key, &all)? {
                        filter_chunk(partition, &mut vec![row], &mut matched)?;
                        break;
                    }
                }
            }
        }
        None => {
            for partition in &partitions {
                let mut chunk = Vec::new();
                ctx.scan(def, Some(partition), |row| -> Result<bool, WriteError> {
                    chunk.push(row);
                    if chunk.len() >= SCAN_BATCH_ROWS_MAX {
                        filter_chunk(partition, &mut chunk, &mut matched)?;
                    }
                    Ok(true)
                })?;
                filter_chunk(partition, &mut chunk, &mut matched)?;
            }
        }
    }
    Ok(matched)
}

fn evaluate_predicates(
    def: &TableDef,
    all: &[usize],
    schema: &SchemaRef,
    rows: &[Vec<Value>],
    predicates: &[Arc<dyn PhysicalExpr>],
) -> Result<BooleanArray, WriteError> {
    let batch = rows_to_batch(def, all, schema, rows).map_err(evaluate_error)?;
    let mut mask = BooleanArray::from(vec![true; rows.len()]);
    for predicate in predicates {
        let result = predicate
            .evaluate(&batch)
            .and_then(|v| v.into_array(batch.num_rows()))
            .map_err(evaluate_error)?;
        let Some(result) = result.as_any().downcast_ref::<BooleanArray>() else {
            return Err(WriteError::Evaluate(format!(
                "WHERE clause is {}, not BOOLEAN",
                result.data_type()
            )));
        };
        // NULL counts as false, as in SQL.
        let result = if result.null_count() > 0 {
            prep_null_mask_filter(result)
        } else {
            result.clone()
        };
        mask = and(&mask, &result).map_err(evaluate_error)?;
    }
    Ok(mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluation_errors_keep_their_kind_and_lose_their_values() {
        for (engine_text, expected) in [
            (
                "Execution error: bigint out of range",
                "bigint out of range",
            ),
            (
                "Arrow error: Cast error: Can't cast value 4294967294 to type Int32",
                "integer out of range",
            ),
            (
                "Arrow error: Cast error: Cannot cast string 'DE89 3704' to value of Int64 type",
                "a value does not convert to the target type (the stored value is withheld)",
            ),
            (
                "Arrow error: Divide by zero error",
                "division by zero (the stored value is withheld)",
            ),
        ] {
            let WriteError::Evaluate(text) = evaluate_error(engine_text) else {
                panic!("{engine_text}: not an evaluation error");
            };
            assert_eq!(text, expected, "{engine_text}");
            assert!(!text.contains("4294967294") && !text.contains("DE89"));
        }
    }
}
