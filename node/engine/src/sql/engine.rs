//! The statement front door: parse, check the caller's role, plan, execute. One
//! long-lived `SessionContext` per node; statements are planned against it and executed
//! as streams.
//!
//! DDL (`CREATE TABLE`, `DROP TABLE`) is handled here, not by DataFusion, because a
//! Domicile table carries residency facts DataFusion does not model. UPDATE and DELETE
//! are checked before planning: a WHERE holding a subquery or a join is refused, because
//! DataFusion hands a table only the filters that reference it alone and would pass such
//! a statement to the table as "every row". They are then planned without the logical
//! optimizer, so an always-false WHERE reaches the table as a predicate that selects
//! nothing instead of being folded away into "no filter".

use std::sync::{Arc, Weak};
use std::time::Instant;

use arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::{SchemaProvider, TableFunctionImpl};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{ParamValues, config::Dialect};
use datafusion::execution::SessionState;
use datafusion::execution::context::{SessionConfig, SessionContext};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility, WriteOp};
use datafusion::optimizer::OptimizerRule;
use datafusion::physical_plan::execute_stream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{self, ObjectType};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use super::NodeIdentity;
use super::StatementContext;
use super::error::SqlError;
use super::query_work::WorkWatch;
use super::schemas::{CATALOG_NAME, DomicileCatalog, PUBLIC_SCHEMA};
use super::system_tables::SystemTable;
use crate::auth::{Principal, Role, SessionOptions};
use crate::catalog::{DdlError, table_def_from_create};
use crate::limits::{SQL_LENGTH_MAX_BYTES, STATEMENT_ROWS_MAX};
use crate::metrics::Metrics;
use crate::peers::PeerRouter;
use crate::residency::ResidencyGuard;
use crate::storage::Store;

/// What a statement does, which decides the role it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatementKind {
    Query,
    Dml,
    Ddl,
    /// `SET name = value`: changes the client's session, applied by the Flight service.
    Session,
    /// `BEGIN`, `COMMIT`, `ROLLBACK`: controls the session's transaction, applied by
    /// the Flight service.
    Transaction,
}

impl StatementKind {
    pub fn needed_role(self) -> Role {
        match self {
            StatementKind::Query | StatementKind::Session | StatementKind::Transaction => {
                Role::Reader
            }
            StatementKind::Dml => Role::Writer,
            StatementKind::Ddl => Role::Admin,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StatementKind::Query => "query",
            StatementKind::Dml => "dml",
            StatementKind::Ddl => "ddl",
            StatementKind::Session => "session",
            StatementKind::Transaction => "transaction",
        }
    }
}

#[derive(Clone, Debug)]
enum Body {
    Plan {
        plan: LogicalPlan,
        /// `plan` through the logical optimizer, placeholders still in it.
        optimized: Option<Box<LogicalPlan>>,
        unoptimized_dml: bool,
        /// The schema of the rows it yields: the analyzed plan's, which can differ from
        /// `plan`'s (an exact `sum(bigint)` is a DECIMAL, see `postgres_semantics`).
        output_schema: SchemaRef,
    },
    CreateTable(Box<ast::CreateTable>),
    DropTable {
        name: String,
        if_exists: bool,
    },
    SetOption {
        name: String,
        value: String,
    },
    Transaction(TransactionControl),
}

/// What a transaction statement does to the session's transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransactionControl {
    /// `BEGIN` / `START TRANSACTION`, any isolation level (every transaction is
    /// serializable, which is at least as strict as each), `READ ONLY` or not.
    Begin { read_only: bool },
    /// `COMMIT` / `END`.
    Commit,
    /// `ROLLBACK`.
    Rollback,
}

/// A parsed, authorised and planned statement; execute it any number of times with
/// different parameters.
#[derive(Clone, Debug)]
pub struct PreparedStatement {
    pub kind: StatementKind,
    body: Body,
    /// Who prepared it: the residency guard decides for this principal at execution.
    principal: Principal,
    options: SessionOptions,
    warnings: super::Warnings,
}

impl PreparedStatement {
    /// For `SET name = value`: the session option it sets.
    pub fn session_assignment(&self) -> Option<(&str, &str)> {
        match &self.body {
            Body::SetOption { name, value } => Some((name, value)),
            _ => None,
        }
    }

    /// For `BEGIN`, `COMMIT` and `ROLLBACK`: what it does to the session's transaction.
    pub fn transaction_control(&self) -> Option<TransactionControl> {
        match &self.body {
            Body::Transaction(control) => Some(*control),
            _ => None,
        }
    }

    /// Whether executing it may write (and so needs a transaction that is not read-only).
    pub fn writes(&self) -> bool {
        self.kind == StatementKind::Dml || self.kind == StatementKind::Ddl
    }

    /// A fresh warning list for one execution; returns it for reading afterwards.
    pub fn fresh_warnings(&mut self) -> super::Warnings {
        self.warnings = super::Warnings::default();
        Arc::clone(&self.warnings)
    }

    /// Schema of the rows `execute` yields.
    pub fn output_schema(&self) -> SchemaRef {
        match &self.body {
            Body::Plan { output_schema, .. } => Arc::clone(output_schema),
            Body::CreateTable(_)
            | Body::DropTable { .. }
            | Body::SetOption { .. }
            | Body::Transaction(_) => Arc::new(Schema::empty()),
        }
    }

    /// Whether executing it yields result rows rather than a count of rows written:
    /// queries, and writes that answer with rows (`SELECT * FROM start_saga(...)`).
    pub fn returns_rows(&self) -> bool {
        matches!(&self.body, Body::Plan { plan, .. } if !matches!(plan, LogicalPlan::Dml(_)))
    }

    /// Schema of the parameters (`$1`, `$2`, ... or `?`), in order.
    pub fn parameter_schema(&self) -> Result<Schema, SqlError> {
        let Body::Plan { plan, .. } = &self.body else {
            return Ok(Schema::empty());
        };
        let fields = plan
            .get_parameter_fields()
            .map_err(SqlError::from_datafusion)?;
        let mut named: Vec<(usize, arrow::datatypes::Field)> = Vec::with_capacity(fields.len());
        for (name, field) in fields {
            let index: usize = name.trim_start_matches('$').parse().map_err(|_| {
                SqlError::Plan(format!(
                    "named parameter {name} is not supported; use $1 or ?"
                ))
            })?;
            let data_type =
                field.map_or(arrow::datatypes::DataType::Null, |f| f.data_type().clone());
            named.push((index, arrow::datatypes::Field::new(name, data_type, true)));
        }
        named.sort_by_key(|(index, _)| *index);
        Ok(Schema::new(
            named.into_iter().map(|(_, f)| f).collect::<Vec<_>>(),
        ))
    }
}

pub struct SqlEngine {
    /// Keeps the catalog registration alive; statements use `state`.
    _context: SessionContext,
    /// One session state for every statement: cloning it per statement copies every
    /// function registry, which costs more than planning a point lookup.
    state: SessionState,
    store: Store,
    identity: Arc<NodeIdentity>,
    metrics: Arc<Metrics>,
    /// Schema `system`, as registered.
    system_tables: Vec<SystemTable>,
    guard: Arc<ResidencyGuard>,
    router: Arc<PeerRouter>,
    transactions: Arc<super::transactions::Transactions>,
}

/// Makes a schema once the engine's address is known: a schema whose tables run
/// statements on this engine (`mesh`, for this node's own leg) keeps it weakly, since
/// the engine's catalog holds the schema.
type MakeSchema = Box<dyn FnOnce(Weak<SqlEngine>) -> Arc<dyn SchemaProvider>>;

/// Builds a `SqlEngine` from its own parts (storage, identity, guard, the way to other
/// regions' nodes) and what the layers above plug in: schemas, table functions,
/// optimizer rules and system tables. The engine builds none of those, so it depends on
/// none of the layers that provide them.
pub struct SqlEngineBuilder {
    store: Store,
    identity: Arc<NodeIdentity>,
    metrics: Arc<Metrics>,
    guard: Arc<ResidencyGuard>,
    router: Arc<PeerRouter>,
    schemas: Vec<(String, MakeSchema)>,
    table_functions: Vec<(String, Arc<dyn TableFunctionImpl>)>,
    optimizer_rules: Vec<Arc<dyn OptimizerRule + Send + Sync>>,
    system_tables: Vec<SystemTable>,
}

impl SqlEngineBuilder {
    /// Adds schema `name` of catalog `domicile`, made by `make` from the engine's weak
    /// address.
    pub fn schema(
        mut self,
        name: &str,
        make: impl FnOnce(Weak<SqlEngine>) -> Arc<dyn SchemaProvider> + 'static,
    ) -> Self {
        self.schemas.push((name.to_string(), Box::new(make)));
        self
    }

    /// Adds table function `name` (e.g. `start_saga`).
    pub fn table_function(mut self, name: &str, function: Arc<dyn TableFunctionImpl>) -> Self {
        self.table_functions.push((name.to_string(), function));
        self
    }

    /// Adds a logical optimizer rule, run after DataFusion's.
    pub fn optimizer_rule(mut self, rule: Arc<dyn OptimizerRule + Send + Sync>) -> Self {
        self.optimizer_rules.push(rule);
        self
    }

    /// Adds a table of schema `system`.
    pub fn system_table(mut self, table: SystemTable) -> Self {
        self.system_tables.push(table);
        self
    }

    /// Adds tables of schema `system`.
    pub fn system_tables(mut self, tables: impl IntoIterator<Item = SystemTable>) -> Self {
        self.system_tables.extend(tables);
        self
    }

    pub fn build(self) -> Arc<SqlEngine> {
        Arc::new_cyclic(|engine| SqlEngine::new(self, engine))
    }
}

impl SqlEngine {
    /// Starts building an engine over `store` for this node (`identity`), whose reads
    /// and writes the residency `guard` decides and whose rows homed elsewhere `router`
    /// reaches.
    pub fn builder(
        store: Store,
        identity: Arc<NodeIdentity>,
        metrics: Arc<Metrics>,
        guard: Arc<ResidencyGuard>,
        router: Arc<PeerRouter>,
    ) -> SqlEngineBuilder {
        SqlEngineBuilder {
            store,
            identity,
            metrics,
            guard,
            router,
            schemas: Vec::new(),
            table_functions: Vec::new(),
            optimizer_rules: Vec::new(),
            system_tables: Vec::new(),
        }
    }

    fn new(parts: SqlEngineBuilder, address: &Weak<SqlEngine>) -> Self {
        let SqlEngineBuilder {
            store,
            identity,
            metrics,
            guard,
            router,
            schemas,
            table_functions,
            optimizer_rules,
            system_tables,
        } = parts;
        // `25.00` is a decimal, as in PostgreSQL: money typed into SQL stays exact.
        let config = SessionConfig::new()
            .set_bool("datafusion.sql_parser.parse_float_as_decimal", true)
            .with_default_catalog_and_schema(CATALOG_NAME, PUBLIC_SCHEMA)
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(true)
            .with_target_partitions(2);
        for def in store.tables() {
            crate::redact_text::learn_table(&def);
        }
        // Where DataFusion's defaults answer otherwise than PostgreSQL: comparisons of
        // values of different kinds are refused, casts to integers round, integer
        // arithmetic refuses overflow and sums of BIGINT are exact.
        let state = datafusion::execution::SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_analyzer_rules(super::postgres_semantics::analyzer_rules())
            .with_physical_optimizer_rule(Arc::new(super::cooperative_joins::CooperativeJoins))
            .build();
        let context = SessionContext::new_with_state(state);
        for rule in optimizer_rules {
            context.add_optimizer_rule(rule);
        }
        for function in super::postgres_semantics::functions() {
            context.register_udf(function.as_ref().clone());
        }
        for (name, function) in table_functions {
            context.register_udtf(&name, function);
        }
        let added = schemas
            .into_iter()
            .map(|(name, make)| (name, make(Weak::clone(address))))
            .collect();
        context.register_catalog(
            CATALOG_NAME,
            Arc::new(DomicileCatalog::new(
                &store,
                &identity,
                system_tables.clone(),
                added,
            )),
        );
        let state = context.state();
        let transactions = super::transactions::Transactions::new(store.clone());
        Self {
            _context: context,
            state,
            transactions,
            store,
            identity,
            metrics,
            system_tables,
            guard,
            router,
        }
    }

    /// The tables of schema `system`.
    pub(crate) fn system_tables(&self) -> &[SystemTable] {
        &self.system_tables
    }

    pub fn identity(&self) -> &NodeIdentity {
        &self.identity
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The node's open interactive transactions.
    pub fn transactions(&self) -> &Arc<super::transactions::Transactions> {
        &self.transactions
    }

    /// Parses, authorises and plans `sql` without executing it.
    pub async fn prepare(
        &self,
        principal: &Principal,
        sql: &str,
    ) -> Result<PreparedStatement, SqlError> {
        self.prepare_with(principal, SessionOptions::default(), sql)
            .await
    }

    /// `prepare`, for a session that set `options`. Traced as a `plan` span that
    /// records the statement's kind, never its text (literals may be `pii`).
    pub async fn prepare_with(
        &self,
        principal: &Principal,
        options: SessionOptions,
        sql: &str,
    ) -> Result<PreparedStatement, SqlError> {
        let span = tracing::info_span!(
            "plan",
            db.system.name = "domicile",
            db.operation.name = tracing::field::Empty,
            enduser.id = %principal.user,
        );
        let prepared = tracing::Instrument::instrument(
            self.parse_and_plan(principal, options, sql),
            span.clone(),
        )
        .await?;
        span.record("db.operation.name", prepared.kind.as_str());
        Ok(prepared)
    }

    async fn parse_and_plan(
        &self,
        principal: &Principal,
        options: SessionOptions,
        sql: &str,
    ) -> Result<PreparedStatement, SqlError> {
        if sql.len() > SQL_LENGTH_MAX_BYTES {
            return Err(SqlError::TooLarge(format!(
                "statement of {} bytes exceeds sql_length_max_bytes = {SQL_LENGTH_MAX_BYTES}",
                sql.len()
            )));
        }
        super::statement_shape::check(sql)?;
        if let Some(assignment) = session_option(sql) {
            let (name, value) = assignment?;
            // Refuse an unknown option or value now, not when it is applied.
            SessionOptions::default()
                .set(&name, &value)
                .map_err(SqlError::Plan)?;
            return Ok(PreparedStatement {
                kind: StatementKind::Session,
                body: Body::SetOption { name, value },
                principal: principal.clone(),
                options,
                warnings: super::Warnings::default(),
            });
        }
        let sql = number_question_mark_placeholders(sql)?;
        let state = &self.state;
        let statement = state
            .sql_to_statement(&sql, &Dialect::Generic)
            .map_err(SqlError::from_datafusion)?;
        let kind = classify(&statement)?;
        if !principal.may(kind.needed_role()) {
            return Err(SqlError::PermissionDenied {
                user: principal.user.clone(),
                needed: kind.needed_role(),
            });
        }
        let body = match statement {
            DfStatement::Statement(inner) => match *inner {
                ast::Statement::StartTransaction { modes, .. } => {
                    let read_only = modes.iter().any(|mode| {
                        matches!(
                            mode,
                            ast::TransactionMode::AccessMode(ast::TransactionAccessMode::ReadOnly)
                        )
                    });
                    Body::Transaction(TransactionControl::Begin { read_only })
                }
                ast::Statement::Commit { .. } => Body::Transaction(TransactionControl::Commit),
                ast::Statement::Rollback { .. } => Body::Transaction(TransactionControl::Rollback),
                ast::Statement::CreateTable(create) => Body::CreateTable(Box::new(create)),
                ast::Statement::Drop {
                    names, if_exists, ..
                } => {
                    let [name] = names.as_slice() else {
                        return Err(SqlError::Unsupported(
                            "DROP TABLE of several tables at once".into(),
                        ));
                    };
                    let name = crate::catalog::ddl_table_name(name).map_err(SqlError::Ddl)?;
                    Body::DropTable { name, if_exists }
                }
                other => {
                    self.plan(state, DfStatement::Statement(Box::new(other)))
                        .await?
                }
            },
            other => self.plan(state, other).await?,
        };
        Ok(PreparedStatement {
            kind,
            body,
            principal: principal.clone(),
            options,
            warnings: super::Warnings::default(),
        })
    }

    async fn plan(
        &self,
        state: &datafusion::execution::SessionState,
        statement: DfStatement,
    ) -> Result<Body, SqlError> {
        let plan = state
            .statement_to_plan(statement)
            .await
            .map_err(SqlError::from_datafusion)?;
        let unoptimized_dml = refuse_unsafe_dml(&plan)?;
        // Optimise once here, not per execution, unless the plan holds functions whose
        // value depends on when they run (now(), random()), which optimising would freeze.
        let optimized = if unoptimized_dml || has_non_immutable_functions(&plan) {
            None
        } else {
            state.optimize(&plan).ok().map(Box::new)
        };
        let analyzed_schema = |plan: &LogicalPlan| {
            state
                .analyzer()
                .execute_and_check(plan.clone(), state.config_options(), |_, _| {})
                .map(|analyzed| Arc::new(analyzed.schema().as_arrow().clone()))
        };
        let output_schema = match &optimized {
            Some(optimized) => Arc::new(optimized.schema().as_arrow().clone()),
            None => analyzed_schema(&plan)
                .unwrap_or_else(|_| Arc::new(plan.schema().as_arrow().clone())),
        };
        Ok(Body::Plan {
            plan,
            optimized,
            unoptimized_dml,
            output_schema,
        })
    }

    /// Executes a prepared statement with `params` bound to its placeholders.
    pub async fn execute(
        &self,
        prepared: &PreparedStatement,
        params: Option<ParamValues>,
    ) -> Result<SendableRecordBatchStream, SqlError> {
        self.execute_in(prepared, params, None).await
    }

    /// `execute`, inside `transaction` if one is given: the statement reads the
    /// transaction's snapshot and writes, and its writes commit with the transaction.
    /// DDL, `start_saga` and anything that would reach another region's node are
    /// refused there.
    pub async fn execute_in(
        &self,
        prepared: &PreparedStatement,
        params: Option<ParamValues>,
        transaction: Option<crate::storage::Transaction>,
    ) -> Result<SendableRecordBatchStream, SqlError> {
        Ok(self.execute_watched(prepared, params, transaction).await?.0)
    }

    /// `execute_in`, and a watch that tells when every part of the statement's plan
    /// has stopped (its stream may be dropped while a task DataFusion spawned for it
    /// still finishes a step): what a cancellation waits for. `None` for a statement
    /// without a plan (DDL), whose work is done when this returns.
    pub async fn execute_watched(
        &self,
        prepared: &PreparedStatement,
        params: Option<ParamValues>,
        transaction: Option<crate::storage::Transaction>,
    ) -> Result<(SendableRecordBatchStream, Option<WorkWatch>), SqlError> {
        let started = Instant::now();
        let span = tracing::info_span!(
            "statement",
            db.system.name = "domicile",
            db.operation.name = prepared.kind.as_str(),
            enduser.id = %prepared.principal.user,
            db.transaction = transaction.is_some(),
        );
        let result = tracing::Instrument::instrument(
            self.execute_inner(prepared, params, false, None, transaction),
            span,
        )
        .await;
        self.metrics
            .record_statement(prepared.kind.as_str(), result.is_ok(), started.elapsed());
        result
    }

    /// The schema of `prepared`'s result once `params` are bound: a placeholder the
    /// statement alone does not type (`SELECT ? AS x`) takes the bound value's type, so
    /// the schema a client is told before it reads is the one it then reads. Errors as
    /// binding at execution would.
    pub fn result_schema(
        &self,
        prepared: &PreparedStatement,
        params: Option<ParamValues>,
    ) -> Result<SchemaRef, SqlError> {
        match &prepared.body {
            Body::Plan {
                plan,
                optimized,
                unoptimized_dml,
                ..
            } if params.is_some() && !*unoptimized_dml => {
                let (plan, _) = self.bound_plan(plan, optimized.as_deref(), false, params)?;
                Ok(Arc::new(plan.schema().as_arrow().clone()))
            }
            _ => Ok(prepared.output_schema()),
        }
    }

    /// The logical plan `execute` plans physically, with `params` bound, and whether
    /// DataFusion's optimizer is to be skipped: unoptimised DML and pre-optimised
    /// queries go straight to the physical planner.
    fn bound_plan(
        &self,
        unoptimized: &LogicalPlan,
        optimized: Option<&LogicalPlan>,
        unoptimized_dml: bool,
        params: Option<ParamValues>,
    ) -> Result<(LogicalPlan, bool), SqlError> {
        let state = &self.state;
        let (plan, skip_optimizer) = match optimized {
            Some(optimized) => (optimized, true),
            None => (unoptimized, unoptimized_dml),
        };
        let analyze = |plan: LogicalPlan| {
            state
                .analyzer()
                .execute_and_check(plan, state.config_options(), |_, _| {})
                .map_err(SqlError::from_datafusion)
        };
        let (plan, skip_optimizer) = match params {
            None => (plan.clone(), skip_optimizer),
            Some(params) => match typed_parameters(plan, params)? {
                (params, true) => (bind(plan, params)?, skip_optimizer),
                // A value kept the client's type: the statement is typed again
                // (coercion, rounding casts) from its unoptimised plan.
                (params, false) if !unoptimized_dml => {
                    (analyze(bind(unoptimized, params)?)?, false)
                }
                (params, false) => (bind(unoptimized, params)?, true),
            },
        };
        // UPDATE and DELETE skip the optimizer, not the analyzer: their filters and
        // assignments are typed like any other statement's (an INT key `IN (2, 3)`, a
        // rounding cast).
        let plan = if unoptimized_dml {
            analyze(plan)?
        } else {
            plan
        };
        Ok((plan, skip_optimizer))
    }

    /// Runs one region's part of a `mesh.<table>` query (this node's, or a peer's over
    /// the mesh) for `principal`: a query only, over this node's own partitions; the
    /// egress policy decides what leaves for the principal's home region (and `via`).
    pub async fn run_mesh_leg(
        &self,
        principal: &Principal,
        sql: &str,
        via: Option<&str>,
    ) -> Result<SendableRecordBatchStream, SqlError> {
        let prepared = self.prepare(principal, sql).await?;
        if prepared.kind != StatementKind::Query {
            return Err(SqlError::Unsupported("a mesh leg runs queries only".into()));
        }
        // A peer's leg reads user tables only: `system.*` (the audit log, sagas, CDC
        // state) and `global.*` are this node's business, not a peer's.
        if via.is_some()
            && let Body::Plan { plan, .. } = &prepared.body
            && let Some(table) = first_non_public_table(plan)
        {
            return Err(SqlError::PermissionDenied {
                user: format!("{} (peer leg reading {table})", principal.user),
                needed: Role::Admin,
            });
        }
        let started = Instant::now();
        let result = self.execute_inner(&prepared, None, true, via, None).await;
        self.metrics
            .record_statement("mesh-leg", result.is_ok(), started.elapsed());
        result.map(|(stream, _)| stream)
    }

    async fn execute_inner(
        &self,
        prepared: &PreparedStatement,
        params: Option<ParamValues>,
        local_only: bool,
        via: Option<&str>,
        transaction: Option<crate::storage::Transaction>,
    ) -> Result<(SendableRecordBatchStream, Option<WorkWatch>), SqlError> {
        if transaction.is_some() && prepared.kind == StatementKind::Ddl {
            return Err(SqlError::Unsupported(
                "DDL inside a transaction: CREATE and DROP TABLE commit on their own here; \
                 COMMIT or ROLLBACK first"
                    .into(),
            ));
        }
        match &prepared.body {
            Body::Plan {
                plan,
                optimized,
                unoptimized_dml,
                ..
            } => {
                let state = &self.state;
                let (plan, skip_optimizer) =
                    self.bound_plan(plan, optimized.as_deref(), *unoptimized_dml, params)?;
                let physical = if skip_optimizer {
                    DefaultPhysicalPlanner::default()
                        .create_physical_plan(&plan, state)
                        .await
                } else {
                    state.create_physical_plan(&plan).await
                }
                .map_err(SqlError::from_datafusion)?;
                // Every scan and sink of this statement finds its principal and the
                // guard here.
                let session = StatementContext {
                    principal: prepared.principal.clone(),
                    guard: Arc::clone(&self.guard),
                    router: Arc::clone(&self.router),
                    local_only,
                    options: prepared.options.clone(),
                    warnings: Arc::clone(&prepared.warnings),
                    via_region: via.map(str::to_string),
                    copies: prepared.kind == StatementKind::Dml,
                    transaction,
                    span: tracing::Span::current(),
                };
                let config = state.config().clone().with_extension(Arc::new(session));
                let task = Arc::new(TaskContext::from(state).with_session_config(config));
                let (physical, watch) =
                    super::query_work::track(physical).map_err(SqlError::from_datafusion)?;
                let stream = execute_stream(physical, task).map_err(SqlError::from_datafusion)?;
                Ok((stream, Some(watch)))
            }
            Body::CreateTable(create) => {
                if params.is_some_and(|p| !matches!(&p, ParamValues::List(l) if l.is_empty())) {
                    return Err(SqlError::Plan("CREATE TABLE takes no parameters".into()));
                }
                self.create_table(create).await?;
                Ok((empty_stream(), None))
            }
            Body::DropTable { name, if_exists } => {
                self.drop_table(name, *if_exists).await?;
                Ok((empty_stream(), None))
            }
            Body::SetOption { .. } => Err(SqlError::Unsupported(
                "SET changes a client session; send it over Flight SQL".into(),
            )),
            Body::Transaction(_) => Err(SqlError::Unsupported(
                "BEGIN, COMMIT and ROLLBACK control a client session's transaction; send them \
                 over Flight SQL"
                    .into(),
            )),
        }
    }

    /// The context of a write the engine runs itself (not through a plan): a bulk
    /// ingest's rows, for `principal` in a session that set `options`.
    pub(super) fn write_context(
        &self,
        principal: &Principal,
        options: SessionOptions,
        transaction: Option<crate::storage::Transaction>,
    ) -> StatementContext {
        StatementContext {
            principal: principal.clone(),
            guard: Arc::clone(&self.guard),
            router: Arc::clone(&self.router),
            local_only: false,
            options,
            warnings: super::Warnings::default(),
            via_region: None,
            copies: false,
            transaction,
            span: tracing::Span::current(),
        }
    }

    /// Stores rows a peer (of region `via`) forwarded for `principal` (full rows of
    /// `table`, homed here: never sent on), through the same checks as a local INSERT.
    pub async fn insert_forwarded(
        &self,
        principal: Principal,
        table: &str,
        batches: Vec<arrow::array::RecordBatch>,
        via: &str,
    ) -> Result<u64, SqlError> {
        if !principal.may(Role::Writer) {
            return Err(SqlError::PermissionDenied {
                user: principal.user,
                needed: Role::Writer,
            });
        }
        let def = self
            .store
            .table(table)
            .ok_or_else(|| SqlError::NotFound(format!("table {table} does not exist")))?;
        let session = StatementContext {
            principal,
            guard: Arc::clone(&self.guard),
            router: Arc::clone(&self.router),
            local_only: true,
            options: SessionOptions::default(),
            warnings: super::Warnings::default(),
            via_region: Some(via.to_string()),
            copies: false,
            transaction: None,
            span: tracing::Span::current(),
        };
        let target = super::dml::WriteTarget {
            def,
            store: self.store.clone(),
            local_region: Arc::clone(&self.identity.region),
        };
        super::dml::insert_local(&target, &session, batches, STATEMENT_ROWS_MAX)
            .await
            .map_err(SqlError::from_datafusion)
    }

    /// Reads `columns` of the rows of `table` homed here (those with the given primary
    /// keys, if any) for a principal a peer of region `via` forwarded; egress is decided
    /// for `via` and the principal's home region. The rows stream as they are read
    /// (see [`super::scan::stream_rows`]).
    pub async fn scan_forwarded(
        &self,
        principal: Principal,
        table: &str,
        columns: &[String],
        keys: Option<Vec<arrow::array::RecordBatch>>,
        limit: Option<usize>,
        via: &str,
    ) -> Result<SendableRecordBatchStream, SqlError> {
        let def = self
            .store
            .table(table)
            .ok_or_else(|| SqlError::NotFound(format!("table {table} does not exist")))?;
        let projection = columns
            .iter()
            .map(|c| {
                def.column_index(c)
                    .ok_or_else(|| SqlError::NotFound(format!("table {table} has no column {c}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let keys = match keys {
            Some(batches) => Some(
                super::scan::keys_from_batches(&def, &batches)
                    .map_err(|e| SqlError::Plan(e.to_string()))?,
            ),
            None => None,
        };
        let session = Arc::new(StatementContext {
            principal,
            guard: Arc::clone(&self.guard),
            router: Arc::clone(&self.router),
            local_only: true,
            options: SessionOptions::default(),
            warnings: super::Warnings::default(),
            via_region: Some(via.to_string()),
            copies: false,
            transaction: None,
            span: tracing::Span::current(),
        });
        let access = super::pushdown::Access {
            keys,
            partitions: Some(vec![self.identity.region.to_string()]),
        };
        super::scan::stream_rows(def, self.store.clone(), access, projection, limit, session)
            .map_err(SqlError::from_datafusion)
    }

    /// Prepare and execute in one step.
    pub async fn run(
        &self,
        principal: &Principal,
        sql: &str,
    ) -> Result<(PreparedStatement, SendableRecordBatchStream), SqlError> {
        let prepared = self.prepare(principal, sql).await?;
        let stream = self.execute(&prepared, None).await?;
        Ok((prepared, stream))
    }

    async fn create_table(&self, create: &ast::CreateTable) -> Result<(), SqlError> {
        let create_owned = create.clone();
        let region = self.identity.region.to_string();
        let if_not_exists = create.if_not_exists;
        let outcome = self
            .store
            .write(move |ctx| {
                ctx.create_table(|id| {
                    table_def_from_create(&create_owned, id, &region).map_err(|e| e.to_string())
                })
            })
            .await
            .map_err(SqlError::Storage)?;
        match outcome {
            Ok(def) => {
                tracing::info!(table = %def.name, table_id = def.id, locality = %def.locality, "table created");
                Ok(())
            }
            Err(crate::storage::CatalogRefusal::AlreadyExists(_)) if if_not_exists => Ok(()),
            Err(crate::storage::CatalogRefusal::AlreadyExists(name)) => Err(
                SqlError::AlreadyExists(format!("table {name} already exists")),
            ),
            Err(crate::storage::CatalogRefusal::Invalid(message)) => {
                Err(SqlError::Ddl(DdlError::Invalid(message)))
            }
        }
    }

    async fn drop_table(&self, name: &str, if_exists: bool) -> Result<(), SqlError> {
        let Some(def) = self.store.table(name) else {
            return if if_exists {
                Ok(())
            } else {
                Err(SqlError::NotFound(format!("table {name} does not exist")))
            };
        };
        let dropped = self
            .store
            .write(move |ctx| {
                if !ctx.is_current(&def) {
                    return Ok(false);
                }
                ctx.drop_table(&def);
                Ok::<_, crate::storage::StorageError>(true)
            })
            .await
            .map_err(SqlError::Storage)?;
        if dropped {
            tracing::info!(table = %name, "table dropped");
            Ok(())
        } else if if_exists {
            Ok(())
        } else {
            Err(SqlError::NotFound(format!("table {name} does not exist")))
        }
    }
}

/// Types positional parameters. A value is cast to the type the plan inferred for its
/// placeholder when the cast is exact (ADBC sends Python ints as BIGINT even for INT
/// columns, and a key lookup needs the column's type); otherwise it keeps the client's
/// type, and compares as PostgreSQL compares a typed parameter: numerically (`id = 1.5`
/// matches no integer id), while an assignment to a column rounds (see
/// `postgres_semantics`) and refuses overflow. Returns the values and whether every one
/// has its placeholder's type (so the plan typed at prepare time still holds).
fn typed_parameters(
    plan: &LogicalPlan,
    params: ParamValues,
) -> Result<(ParamValues, bool), SqlError> {
    let ParamValues::List(mut values) = params else {
        return Ok((params, true));
    };
    let expected = plan
        .get_parameter_types()
        .map_err(SqlError::from_datafusion)?;
    if values.len() != expected.len() {
        return Err(SqlError::Plan(format!(
            "statement takes {} parameter(s), {} bound",
            expected.len(),
            values.len()
        )));
    }
    let mut exact = true;
    for (index, value) in values.iter_mut().enumerate() {
        let Some(Some(target)) = expected.get(&format!("${}", index + 1)) else {
            continue;
        };
        if &value.value.data_type() == target {
            continue;
        }
        match exact_cast(&value.value, target) {
            Some(cast) => value.value = cast,
            None => exact = false,
        }
    }
    Ok((ParamValues::List(values), exact))
}

fn bind(plan: &LogicalPlan, params: ParamValues) -> Result<LogicalPlan, SqlError> {
    plan.clone()
        .with_param_values(params)
        .map_err(SqlError::from_datafusion)
}

/// `value` as `target` if that loses nothing (cast back, it is the same value) and
/// changes no kind of value: a number does not become a text nor a boolean a number
/// (PostgreSQL has no such comparison; see `postgres_semantics::comparable_types`). A
/// text value may become anything, as PostgreSQL's untyped literal does.
fn exact_cast(
    value: &datafusion::common::ScalarValue,
    target: &arrow::datatypes::DataType,
) -> Option<datafusion::common::ScalarValue> {
    use super::postgres_semantics::{Kind, kind};
    match (kind(&value.data_type()), kind(target)) {
        (Some(from), Some(to)) if from != to && from != Kind::Text => return None,
        _ => {}
    }
    let cast = value.cast_to(target).ok()?;
    let back = cast.cast_to(&value.data_type()).ok()?;
    (back == *value).then_some(cast)
}

fn empty_stream() -> SendableRecordBatchStream {
    Box::pin(RecordBatchStreamAdapter::new(
        Arc::new(Schema::empty()),
        futures::stream::empty(),
    ))
}

/// The kind of a parsed statement, refusing what Domicile does not run.
fn classify(statement: &DfStatement) -> Result<StatementKind, SqlError> {
    match statement {
        DfStatement::Statement(inner) => classify_ast(inner),
        DfStatement::Explain(explain) => {
            let inner = classify(&explain.statement)?;
            if explain.options.analyze && inner != StatementKind::Query {
                return Err(SqlError::Unsupported("EXPLAIN ANALYZE of a write".into()));
            }
            Ok(StatementKind::Query)
        }
        DfStatement::CreateExternalTable(_) => Err(SqlError::Unsupported(
            "CREATE EXTERNAL TABLE (Domicile tables live in node storage)".into(),
        )),
        DfStatement::CopyTo(_) => Err(SqlError::Unsupported("COPY".into())),
        DfStatement::Reset(_) => Err(SqlError::Unsupported("RESET".into())),
    }
}

fn classify_ast(statement: &ast::Statement) -> Result<StatementKind, SqlError> {
    use ast::Statement as S;
    match statement {
        S::Query(_) if calls_start_saga(statement) => Ok(StatementKind::Dml),
        S::Query(_) | S::ShowTables { .. } | S::ShowColumns { .. } | S::ExplainTable { .. } => {
            Ok(StatementKind::Query)
        }
        S::Explain {
            analyze, statement, ..
        } => {
            if *analyze && classify_ast(statement)? != StatementKind::Query {
                return Err(SqlError::Unsupported("EXPLAIN ANALYZE of a write".into()));
            }
            Ok(StatementKind::Query)
        }
        S::Insert(_) | S::Update(_) | S::Delete(_) => Ok(StatementKind::Dml),
        S::CreateTable(_) => Ok(StatementKind::Ddl),
        S::Drop {
            object_type: ObjectType::Table,
            ..
        } => Ok(StatementKind::Ddl),
        S::StartTransaction {
            statements,
            exception,
            has_end_keyword,
            modifier,
            ..
        } if statements.is_empty()
            && exception.is_none()
            && !*has_end_keyword
            && modifier.is_none() =>
        {
            Ok(StatementKind::Transaction)
        }
        S::StartTransaction { .. } => Err(SqlError::Unsupported(
            "BEGIN ... END blocks and transaction modifiers; write BEGIN, the statements, \
             then COMMIT"
                .into(),
        )),
        S::Commit {
            chain: false,
            modifier: None,
            ..
        }
        | S::Rollback {
            chain: false,
            savepoint: None,
        } => Ok(StatementKind::Transaction),
        S::Commit { .. }
        | S::Rollback {
            savepoint: None, ..
        } => Err(SqlError::Unsupported(
            "COMMIT or ROLLBACK AND CHAIN and transaction modifiers".into(),
        )),
        S::Rollback { .. } | S::Savepoint { .. } | S::ReleaseSavepoint { .. } => Err(
            SqlError::Unsupported("savepoints (a transaction commits or rolls back whole)".into()),
        ),
        other => {
            let text = other.to_string();
            let verb: String = text
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            Err(SqlError::Unsupported(format!("statement {verb} ...")))
        }
    }
}

/// `SET name = value` (a session option) as its name and value text; `None` if `sql`
/// is not a single SET.
pub fn session_option(sql: &str) -> Option<Result<(String, String), SqlError>> {
    use datafusion::sql::sqlparser::parser::Parser;
    let statements = Parser::parse_sql(&GenericDialect {}, sql).ok()?;
    let [ast::Statement::Set(set)] = statements.as_slice() else {
        return None;
    };
    let ast::Set::SingleAssignment {
        variable, values, ..
    } = set
    else {
        return Some(Err(SqlError::Unsupported(
            "this form of SET; write SET name = value".into(),
        )));
    };
    let value = match values.as_slice() {
        [ast::Expr::Value(value)] => match &value.value {
            ast::Value::SingleQuotedString(text) | ast::Value::Number(text, _) => text.clone(),
            ast::Value::Boolean(b) => b.to_string(),
            other => other.to_string(),
        },
        [ast::Expr::Identifier(ident)] => ident.value.clone(),
        _ => {
            return Some(Err(SqlError::Plan("SET takes one constant value".into())));
        }
    };
    Some(Ok((variable.to_string(), value)))
}

/// Whether the query reads from `start_saga(...)`: it writes, so it needs the writer
/// role and no EXPLAIN ANALYZE.
fn calls_start_saga(statement: &ast::Statement) -> bool {
    let found = ast::visit_relations(statement, |name| {
        let is_start = name
            .0
            .last()
            .and_then(|part| part.as_ident())
            .is_some_and(|ident| {
                ident
                    .value
                    .eq_ignore_ascii_case(super::saga_function::FUNCTION_NAME)
            });
        if is_start {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    });
    found.is_break()
}

/// Refuses UPDATE/DELETE shapes whose filters DataFusion would not hand to the table
/// (subqueries, joins, other tables). Returns whether the plan is such a DML, to be
/// planned without the optimizer.
fn refuse_unsafe_dml(plan: &LogicalPlan) -> Result<bool, SqlError> {
    let LogicalPlan::Dml(dml) = plan else {
        return Ok(false);
    };
    if !matches!(dml.op, WriteOp::Update | WriteOp::Delete) {
        return Ok(false);
    }
    let refuse = |why: &str| {
        SqlError::Unsupported(format!(
            "{} {why}; select the keys first, then {} ... WHERE <key> IN (...)",
            dml.op, dml.op
        ))
    };
    let mut scans = 0usize;
    let mut problem: Option<SqlError> = None;
    dml.input
        .apply(|node| {
            let ok = match node {
                LogicalPlan::TableScan(scan) => {
                    scans += 1;
                    scan.table_name.resolved_eq(&dml.table_name)
                }
                LogicalPlan::Filter(filter) => !has_subquery(&filter.predicate),
                LogicalPlan::Projection(projection) => !projection.expr.iter().any(has_subquery),
                LogicalPlan::SubqueryAlias(_) => true,
                _ => false,
            };
            if ok {
                Ok(TreeNodeRecursion::Continue)
            } else {
                problem = Some(refuse(
                    "with a subquery, join or second table in its WHERE or SET",
                ));
                Ok(TreeNodeRecursion::Stop)
            }
        })
        .map_err(SqlError::from_datafusion)?;
    if let Some(problem) = problem {
        return Err(problem);
    }
    if scans != 1 {
        return Err(refuse("reading more than its own table"));
    }
    Ok(true)
}

fn has_non_immutable_functions(plan: &LogicalPlan) -> bool {
    plan.exists(|node| {
        Ok(node.expressions().iter().any(|expr| {
            expr.exists(|e| {
                Ok(matches!(e, Expr::ScalarFunction(f)
                    if f.func.signature().volatility != Volatility::Immutable))
            })
            .unwrap_or(true)
        }))
    })
    .unwrap_or(true)
}

fn has_subquery(expr: &Expr) -> bool {
    expr.exists(|e| {
        Ok(matches!(
            e,
            Expr::ScalarSubquery(_) | Expr::InSubquery(_) | Expr::Exists(_)
        ))
    })
    .unwrap_or(true)
}

/// Rewrites `?` placeholders (JDBC/ADBC style) to `$1`, `$2`, ... by token, so strings and
/// comments holding '?' are left alone. DataFusion would otherwise treat every `?` as one
/// parameter.
fn number_question_mark_placeholders(sql: &str) -> Result<String, SqlError> {
    if !sql.contains('?') {
        return Ok(sql.to_string());
    }
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize()
        .map_err(|e| SqlError::Parse(e.to_string()))?;
    let mut next = 0usize;
    let mut out = String::with_capacity(sql.len() + 8);
    for token in tokens {
        match token {
            Token::Placeholder(p) if p == "?" => {
                next += 1;
                out.push_str(&format!("${next}"));
            }
            other => out.push_str(&other.to_string()),
        }
    }
    Ok(out)
}

/// The first table `plan` reads outside schema `public` (`system.audit`,
/// `global.accounts`), if any.
fn first_non_public_table(plan: &LogicalPlan) -> Option<String> {
    let mut found = None;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && scan
                .table_name
                .schema()
                .is_some_and(|schema| schema != PUBLIC_SCHEMA)
        {
            found = Some(scan.table_name.to_string());
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

#[cfg(test)]
mod tests {
    use super::{StatementKind, classify_ast, number_question_mark_placeholders, session_option};

    #[test]
    fn set_statements_become_session_options() {
        let set = |sql: &str| session_option(sql).map(|r| r.map_err(|e| e.to_string()));
        assert_eq!(
            set("SET domicile.mesh_partial_results = true"),
            Some(Ok(("domicile.mesh_partial_results".into(), "true".into())))
        );
        assert_eq!(
            set("set domicile.mesh_partial_results = 'off'"),
            Some(Ok(("domicile.mesh_partial_results".into(), "off".into())))
        );
        assert_eq!(set("SELECT 1"), None);
    }

    /// Transaction control is classified as such; what Domicile does not do with it
    /// (savepoints, chains, `BEGIN ... END` blocks) is refused, never run as a plain
    /// BEGIN or COMMIT.
    #[test]
    fn transaction_statements_and_their_unsupported_forms() {
        use datafusion::sql::sqlparser::dialect::GenericDialect;
        use datafusion::sql::sqlparser::parser::Parser;
        let kind = |sql: &str| {
            let statements = Parser::parse_sql(&GenericDialect {}, sql).expect(sql);
            classify_ast(&statements[0]).map_err(|e| e.to_string())
        };
        for sql in [
            "BEGIN",
            "BEGIN TRANSACTION",
            "START TRANSACTION READ ONLY",
            "START TRANSACTION ISOLATION LEVEL READ COMMITTED",
            "COMMIT",
            "END",
            "ROLLBACK",
        ] {
            assert_eq!(kind(sql), Ok(StatementKind::Transaction), "{sql}");
        }
        for sql in [
            "SAVEPOINT a",
            "ROLLBACK TO SAVEPOINT a",
            "RELEASE SAVEPOINT a",
            "COMMIT AND CHAIN",
            "ROLLBACK AND CHAIN",
        ] {
            let refused = kind(sql).expect_err(sql);
            assert!(refused.starts_with("not supported"), "{sql}: {refused}");
        }
    }

    #[test]
    fn question_marks_are_numbered_outside_strings() {
        let sql = "SELECT '?' AS q FROM t WHERE a = ? AND b IN (?, ?) -- what?";
        assert_eq!(
            number_question_mark_placeholders(sql).expect("tokenizes"),
            "SELECT '?' AS q FROM t WHERE a = $1 AND b IN ($2, $3) -- what?"
        );
    }
}
