use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionBeginTransactionRequest, ActionBeginTransactionResult, ActionCancelQueryRequest,
    ActionCancelQueryResult, ActionClosePreparedStatementRequest,
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult,
    ActionEndTransactionRequest, Any, CommandGetCatalogs, CommandGetCrossReference,
    CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys, CommandGetPrimaryKeys,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo,
    CommandPreparedStatementQuery, CommandPreparedStatementUpdate, CommandStatementIngest,
    CommandStatementQuery, CommandStatementUpdate, DoPutPreparedStatementResult, EndTransaction,
    ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    CancelStatus, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest,
    HandshakeResponse, IpcMessage, SchemaAsIpc, Ticket,
};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::execution::SendableRecordBatchStream;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use rand::RngCore;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use super::cancel::{Cancelled, RunningQueries};
use super::metadata::{SQL_INFO, XDBC_TYPES};
use super::params::read_parameter_rows;
use super::prepared::{PreparedTable, SessionKey};
use super::status::{auth_status, prepared_status, sql_status};
use crate::auth::{Authenticator, Principal, SessionOptions};
use crate::error_kind::ErrorKind;
use crate::grpc_status::{status, status_of};
use crate::limits::WRITE_OUTCOMES_MAX;
use crate::limits::{PARAMETERS_PER_STATEMENT_MAX, SESSION_ACTION_BODY_MAX_BYTES};
use crate::metrics::Metrics;
use crate::sql::schemas_for_metadata;
use crate::sql::transactions::TransactionId;
use crate::sql::{PreparedStatement, SqlEngine, SqlError, StatementKind, TransactionControl};
use crate::storage::Transaction;

/// How long a write's outcome waits for its DoGet.
const WRITE_OUTCOME_TTL: Duration = Duration::from_secs(300);

type DoGetStream = <FlightSqlServer as FlightService>::DoGetStream;

/// A prepared statement as a client holds it: planned once, executed with whatever
/// parameters were bound last. Only the user who prepared it may use it.
struct OpenStatement {
    statement: PreparedStatement,
    /// How many parameters the statement takes: a bound batch has this many columns.
    parameter_count: usize,
    /// Rows bound by the last DoPut; a query uses at most one, an update runs once per
    /// row. Shared, so a lookup under the table's lock copies a pointer, not the rows.
    parameters: ParameterRows,
    /// The Flight SQL transaction it was prepared in: every execution runs there.
    transaction: Option<TransactionId>,
}

type ParameterRows = Arc<Vec<Vec<ScalarValue>>>;

/// The outcome of a write run at GetFlightInfo, waiting for the client's DoGet.
struct WriteOutcome {
    owner: String,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    created: Instant,
}

/// Marks a statement ticket that names a stored write outcome rather than SQL text
/// (SQL never starts with a NUL byte).
const OUTCOME_TICKET_PREFIX: &[u8] = b"\0domicile-outcome:";

/// Marks a statement ticket of a query inside a transaction: the prefix, the 16-byte
/// transaction id, then the SQL text.
const TRANSACTION_TICKET_PREFIX: &[u8] = b"\0domicile-transaction:";

/// Marks a statement ticket of a query: the prefix, a random 16-byte query id (what
/// CancelFlightInfo names), then the rest of the ticket (SQL text, or a transaction's).
const QUERY_TICKET_PREFIX: &[u8] = b"\0domicile-query:";

/// Keys of running queries (`cancel::RunningQueries`): a statement's ticket, a prepared
/// statement's handle.
const STATEMENT_KEY: u8 = b's';
const PREPARED_KEY: u8 = b'p';

pub struct FlightSqlServer {
    engine: Arc<SqlEngine>,
    auth: Arc<Authenticator>,
    metrics: Arc<Metrics>,
    prepared: Mutex<PreparedTable<OpenStatement>>,
    /// Writes (DML, DDL) sent through the query path execute at GetFlightInfo, because
    /// clients such as ADBC's DB-API never call DoGet for a statement they do not fetch
    /// from; the count waits here for the DoGet that may follow.
    outcomes: Mutex<HashMap<u64, WriteOutcome>>,
    next_outcome: AtomicU64,
    /// Queries running in DoGet, for CancelFlightInfo.
    running: Arc<RunningQueries>,
}

impl FlightSqlServer {
    pub fn new(engine: Arc<SqlEngine>, auth: Arc<Authenticator>, metrics: Arc<Metrics>) -> Self {
        Self {
            engine,
            auth,
            metrics,
            prepared: Mutex::new(PreparedTable::default()),
            outcomes: Mutex::new(HashMap::new()),
            next_outcome: AtomicU64::new(1),
            running: Arc::default(),
        }
    }

    /// Cancels the query `info` announced, for `principal` (CancelFlightInfo and
    /// CancelQuery). Errors: NOT_FOUND if nothing of it runs and nothing will (another
    /// user's query is unknown too); INVALID_ARGUMENT for a FlightInfo without a ticket
    /// of this service.
    async fn cancel(
        &self,
        principal: &Principal,
        info: &FlightInfo,
    ) -> Result<CancelStatus, Status> {
        let ticket = info
            .endpoint
            .first()
            .and_then(|endpoint| endpoint.ticket.as_ref())
            .ok_or_else(|| status(ErrorKind::Invalid, "the FlightInfo has no ticket"))?;
        let any = Any::decode(&*ticket.ticket).map_err(|_| {
            status(
                ErrorKind::Invalid,
                "the FlightInfo's ticket is not this service's",
            )
        })?;
        let (key, one_shot) = if let Ok(Some(statement)) = any.unpack::<TicketStatementQuery>() {
            if statement
                .statement_handle
                .starts_with(OUTCOME_TICKET_PREFIX)
            {
                return Err(status(
                    ErrorKind::NotFound,
                    "nothing to cancel: a write runs when it is announced (GetFlightInfo)",
                ));
            }
            (
                running_key(STATEMENT_KEY, &statement.statement_handle),
                true,
            )
        } else if let Ok(Some(prepared)) = any.unpack::<CommandPreparedStatementQuery>() {
            (
                running_key(PREPARED_KEY, &prepared.prepared_statement_handle),
                false,
            )
        } else {
            return Err(status(
                ErrorKind::Invalid,
                "the FlightInfo's ticket names no query",
            ));
        };
        match self.running.cancel(&principal.user, &key, one_shot).await {
            Cancelled::Done => {
                tracing::info!(user = %principal.user, "query cancelled");
                Ok(CancelStatus::Cancelled)
            }
            Cancelled::Stopping => {
                tracing::info!(user = %principal.user, "query cancelled, still stopping");
                Ok(CancelStatus::Cancelling)
            }
            Cancelled::NotRunning => Err(status(
                ErrorKind::NotFound,
                "no running query of yours for this FlightInfo",
            )),
        }
    }

    fn principal<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        self.auth.principal(header).map_err(auth_status)
    }

    /// The caller and the options its session set.
    fn session<T>(&self, request: &Request<T>) -> Result<(Principal, SessionOptions), Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        self.auth.session(header).map_err(auth_status)
    }

    /// Applies a `SET name = value` statement to the caller's session; `None` if the
    /// statement is not one.
    fn apply_session_statement<T>(
        &self,
        request: &Request<T>,
        statement: &PreparedStatement,
    ) -> Option<Result<(), Status>> {
        let (name, value) = statement.session_assignment()?;
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        Some(match self.auth.set_option(header, name, value) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(status(ErrorKind::Invalid, message)),
            Err(error) => Err(auth_status(error)),
        })
    }

    /// The transaction a statement runs in: the one the client named (Flight SQL's
    /// `transaction_id`), else the one SQL `BEGIN` opened in its session, else none.
    fn transaction_id(explicit: Option<&[u8]>, options: &SessionOptions) -> Option<Vec<u8>> {
        match explicit {
            Some(id) if !id.is_empty() => Some(id.to_vec()),
            _ => options.transaction.map(|id| id.to_vec()),
        }
    }

    /// The open transaction `id` for one statement of `principal`'s. A DDL statement
    /// commits the transaction first and runs on its own (`None`); the id goes on.
    async fn transaction_for(
        &self,
        id: Option<&[u8]>,
        principal: &Principal,
        statement: &PreparedStatement,
    ) -> Result<Option<Transaction>, Status> {
        let Some(id) = id else { return Ok(None) };
        let transactions = self.engine.transactions();
        if statement.kind == StatementKind::Ddl {
            transactions
                .commit_before_ddl(id, principal, Instant::now())
                .await
                .map_err(|error| status_of(&error))?;
            return Ok(None);
        }
        transactions
            .statement(id, principal, statement.writes(), Instant::now())
            .map(Some)
            .map_err(|error| status_of(&error))
    }

    /// Applies `BEGIN`, `COMMIT` or `ROLLBACK` to the caller's session; `None` if the
    /// statement is not one. They act on the session's SQL transaction only: a client
    /// in a Flight SQL transaction ends it with EndTransaction.
    async fn apply_transaction_statement<T>(
        &self,
        request: &Request<T>,
        explicit: Option<&[u8]>,
        statement: &PreparedStatement,
    ) -> Option<Result<(), Status>> {
        let control = statement.transaction_control()?;
        Some(self.control_transaction(request, explicit, control).await)
    }

    async fn control_transaction<T>(
        &self,
        request: &Request<T>,
        explicit: Option<&[u8]>,
        control: TransactionControl,
    ) -> Result<(), Status> {
        if explicit.is_some_and(|id| !id.is_empty()) {
            return Err(status(
                ErrorKind::Invalid,
                "BEGIN, COMMIT and ROLLBACK inside a Flight SQL transaction: end it with \
                 EndTransaction",
            ));
        }
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let (principal, options) = self.auth.session(header).map_err(auth_status)?;
        let transactions = self.engine.transactions();
        match (control, options.transaction) {
            (TransactionControl::Begin { .. }, Some(_)) => Err(status(
                ErrorKind::Precondition,
                "there is already a transaction in progress in this session (SQLSTATE 25001)",
            )),
            (TransactionControl::Begin { read_only }, None) => {
                let id = transactions
                    .begin(
                        &principal,
                        SessionKey::of(header).tag(),
                        read_only,
                        Instant::now(),
                    )
                    .map_err(|error| status_of(&error))?;
                self.auth
                    .set_transaction(header, Some(id))
                    .map_err(auth_status)?;
                Ok(())
            }
            // As PostgreSQL: COMMIT or ROLLBACK with no transaction in progress does
            // nothing (it warns).
            (TransactionControl::Commit | TransactionControl::Rollback, None) => Ok(()),
            (TransactionControl::Commit, Some(id)) => {
                self.auth
                    .set_transaction(header, None)
                    .map_err(auth_status)?;
                transactions
                    .commit(&id, &principal)
                    .await
                    .map_err(|error| status_of(&error))
            }
            (TransactionControl::Rollback, Some(id)) => {
                self.auth
                    .set_transaction(header, None)
                    .map_err(auth_status)?;
                // Already rolled back (it timed out) is what ROLLBACK asked for.
                let _ = transactions.rollback(&id, &principal);
                Ok(())
            }
        }
    }

    fn open_statements(&self) -> std::sync::MutexGuard<'_, PreparedTable<OpenStatement>> {
        self.prepared
            .lock()
            .expect("prepared statement lock poisoned")
    }

    /// The statement behind `handle` with its bound parameters, checked against the caller.
    fn lookup(
        &self,
        handle: &[u8],
        principal: &Principal,
    ) -> Result<(PreparedStatement, ParameterRows, Option<TransactionId>), Status> {
        let mut statements = self.open_statements();
        let open = statements
            .get_mut(handle, &principal.user, Instant::now())
            .map_err(prepared_status)?;
        Ok((
            open.statement.clone(),
            Arc::clone(&open.parameters),
            open.transaction,
        ))
    }

    /// The transaction an execution of a prepared statement runs in: the one it was
    /// prepared in, else its session's SQL transaction.
    async fn prepared_transaction<T>(
        &self,
        request: &Request<T>,
        prepared_in: Option<TransactionId>,
        principal: &Principal,
        statement: &PreparedStatement,
    ) -> Result<Option<Transaction>, Status> {
        let id = match prepared_in {
            Some(id) => Some(id.to_vec()),
            None => Self::transaction_id(None, &self.session(request)?.1),
        };
        self.transaction_for(id.as_deref(), principal, statement)
            .await
    }

    /// Reads the parameter rows a DoPut binds to the statement behind `handle`.
    async fn read_parameters(
        &self,
        handle: &[u8],
        principal: &Principal,
        stream: PeekableFlightDataStream,
    ) -> Result<Vec<Vec<ScalarValue>>, Status> {
        let parameter_count = {
            let mut statements = self.open_statements();
            let open = statements
                .get_mut(handle, &principal.user, Instant::now())
                .map_err(prepared_status)?;
            open.parameter_count
        };
        Ok(read_parameter_rows(stream, parameter_count).await?)
    }

    async fn execute(
        &self,
        statement: &PreparedStatement,
        parameters: Option<Vec<ScalarValue>>,
        transaction: Option<Transaction>,
    ) -> Result<SendableRecordBatchStream, Status> {
        let params = parameters.map(ParamValues::from);
        self.engine
            .execute_in(statement, params, transaction)
            .await
            .map_err(sql_status)
    }

    /// Runs a write now (once per bound parameter row) and keeps its outcome for DoGet.
    /// Returns the flight info the client reads it with.
    async fn execute_write_now(
        &self,
        principal: &Principal,
        statement: &PreparedStatement,
        rows: ParameterRows,
        descriptor: FlightDescriptor,
        transaction: Option<Transaction>,
    ) -> Result<FlightInfo, Status> {
        let runs: Vec<Option<Vec<ScalarValue>>> = if rows.is_empty() {
            vec![None]
        } else {
            rows.iter().cloned().map(Some).collect()
        };
        let schema = statement.output_schema();
        let mut total: Option<u64> = None;
        let mut answered = Vec::new();
        for parameters in runs {
            let mut stream = self
                .execute(statement, parameters, transaction.clone())
                .await?;
            if statement.returns_rows() {
                while let Some(batch) = stream.next().await {
                    answered.push(batch.map_err(|e| sql_status(SqlError::from_datafusion(e)))?);
                }
                continue;
            }
            let affected = affected_rows(stream).await?;
            *total.get_or_insert(0) += u64::try_from(affected).unwrap_or(0);
        }
        let batches = match (schema.fields().is_empty(), total) {
            _ if statement.returns_rows() => answered,
            (false, Some(count)) => vec![
                RecordBatch::try_new(
                    Arc::clone(&schema),
                    vec![Arc::new(arrow::array::UInt64Array::from(vec![count]))],
                )
                .map_err(|e| status(ErrorKind::Internal, e.to_string()))?,
            ],
            _ => Vec::new(),
        };
        let info = self.record_outcome(principal, schema, batches, descriptor)?;
        // A write's FlightInfo carries the rows it changed as `total_records`: ADBC reads
        // that field as the statement's rows affected (the DB-API `rowcount`, -1 when
        // unknown), as it does for every statement run through GetFlightInfo. The
        // answer's one row holds the same count, for clients that read the stream.
        Ok(match total {
            Some(count) => info.with_total_records(i64::try_from(count).unwrap_or(i64::MAX)),
            None => info,
        })
    }

    /// An answer without rows (a `SET`), kept for the DoGet that may follow.
    fn empty_outcome(
        &self,
        principal: &Principal,
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo, Status> {
        self.record_outcome(principal, Arc::new(Schema::empty()), Vec::new(), descriptor)
    }

    /// Keeps a write's answer for the DoGet that may follow; returns the flight info
    /// that points to it.
    fn record_outcome(
        &self,
        principal: &Principal,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo, Status> {
        let id = self.next_outcome.fetch_add(1, Ordering::Relaxed);
        {
            let mut outcomes = self.outcomes.lock().expect("outcome lock poisoned");
            outcomes.retain(|_, o| o.created.elapsed() < WRITE_OUTCOME_TTL);
            if outcomes.len() >= WRITE_OUTCOMES_MAX {
                // The write is done and durable; only its echo is dropped.
                outcomes.clear();
            }
            outcomes.insert(
                id,
                WriteOutcome {
                    owner: principal.user.clone(),
                    schema: Arc::clone(&schema),
                    batches,
                    created: Instant::now(),
                },
            );
        }
        let mut handle = OUTCOME_TICKET_PREFIX.to_vec();
        handle.extend(id.to_be_bytes());
        let ticket = TicketStatementQuery {
            statement_handle: handle.into(),
        };
        Self::flight_info(&schema, ticket.as_any().encode_to_vec(), descriptor)
    }

    fn take_outcome(&self, handle: &[u8], principal: &Principal) -> Result<DoGetStream, Status> {
        let id = handle
            .get(OUTCOME_TICKET_PREFIX.len()..)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| status(ErrorKind::Invalid, "malformed outcome ticket"))?;
        let mut outcomes = self.outcomes.lock().expect("outcome lock poisoned");
        match outcomes.remove(&id) {
            Some(outcome) if outcome.owner == principal.user => {
                let stream = FlightDataEncoderBuilder::new()
                    .with_schema(outcome.schema)
                    .build(futures::stream::iter(outcome.batches.into_iter().map(Ok)));
                Ok(Box::pin(stream.map_err(Status::from)))
            }
            _ => Err(status(
                ErrorKind::NotFound,
                "write outcome already read or expired",
            )),
        }
    }

    /// GetImportedKeys, GetExportedKeys, GetCrossReference: Domicile has no foreign
    /// keys, so each lists none (an empty result of the specified schema, not an error).
    fn no_foreign_keys_info(
        &self,
        ticket: Vec<u8>,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        Ok(Response::new(Self::flight_info(
            &super::keys::foreign_keys_schema(),
            ticket,
            request.into_inner(),
        )?))
    }

    fn no_foreign_keys(&self, request: &Request<Ticket>) -> Result<Response<DoGetStream>, Status> {
        self.principal(request)?;
        Ok(Response::new(batch_stream(RecordBatch::new_empty(
            super::keys::foreign_keys_schema(),
        ))))
    }

    fn flight_info(
        schema: &Schema,
        ticket: Vec<u8>,
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo, Status> {
        let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket));
        Ok(FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| status(ErrorKind::Internal, format!("cannot encode schema: {e}")))?
            .with_endpoint(endpoint)
            .with_descriptor(descriptor)
            .with_ordered(true))
    }
}

/// Streams a result as Flight data, mapping a failure mid-stream to the same status it
/// would have had before the first batch.
///
/// Warnings the statement collected (a partial `mesh` answer) ride on the last message
/// (the last batch, or the schema of an empty result) as its `app_metadata`:
/// `{"warnings": ["...", ...]}`. Every Flight client reads that field or ignores it.
/// The key a running query is known by: its kind and ticket bytes.
fn running_key(kind: u8, ticket: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(ticket.len() + 1);
    key.push(kind);
    key.extend_from_slice(ticket);
    key
}

/// Flight's action that cancels the query a FlightInfo announced.
const CANCEL_FLIGHT_INFO: &str = "CancelFlightInfo";

fn flight_stream(stream: SendableRecordBatchStream, warnings: crate::sql::Warnings) -> DoGetStream {
    let schema = stream.schema();
    let batches =
        stream.map_err(|e| FlightError::Tonic(Box::new(sql_status(SqlError::from_datafusion(e)))));
    let encoded = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(batches)
        .map_err(|e| match e {
            FlightError::Tonic(status) => *status,
            other => status(ErrorKind::Internal, other.to_string()),
        });
    // Each message is held back until the next arrives, so the last can carry them.
    let with_warnings = futures::stream::unfold(
        (encoded, None::<FlightData>),
        move |(mut inner, mut held)| {
            let warnings = Arc::clone(&warnings);
            async move {
                loop {
                    match inner.next().await {
                        Some(Ok(data)) => {
                            if let Some(previous) = held.replace(data) {
                                return Some((Ok(previous), (inner, held)));
                            }
                        }
                        Some(Err(status)) => return Some((Err(status), (inner, None))),
                        None => {
                            let mut last = held.take()?;
                            let warnings = warnings.lock().map(|w| w.clone()).unwrap_or_default();
                            if !warnings.is_empty() {
                                let body = serde_json::json!({ "warnings": warnings });
                                last.app_metadata = body.to_string().into_bytes().into();
                            }
                            return Some((Ok(last), (inner, None)));
                        }
                    }
                }
            }
        },
    );
    Box::pin(with_warnings)
}

fn batch_stream(batch: RecordBatch) -> DoGetStream {
    let schema = batch.schema();
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::once(async { Ok(batch) }));
    Box::pin(stream.map_err(Status::from))
}

/// Drains a DML/DDL result and returns its row count (0 for DDL; the rows answered by a
/// write that answers with rows, such as `start_saga`).
async fn affected_rows(mut stream: SendableRecordBatchStream) -> Result<i64, Status> {
    let mut count: i64 = 0;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| sql_status(SqlError::from_datafusion(e)))?;
        if let Some(column) = batch.column_by_name("count")
            && let Some(values) = column.as_any().downcast_ref::<arrow::array::UInt64Array>()
        {
            count += values
                .iter()
                .flatten()
                .map(|v| i64::try_from(v).unwrap_or(i64::MAX))
                .sum::<i64>();
        } else {
            count += i64::try_from(batch.num_rows()).unwrap_or(i64::MAX);
        }
    }
    Ok(count)
}

fn schema_bytes(schema: &Schema) -> Result<prost::bytes::Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| {
            status(ErrorKind::Internal, format!("cannot encode schema: {e}"))
        })?;
    Ok(bytes)
}

fn utf8(bytes: &[u8], what: &str) -> Result<String, Status> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| status(ErrorKind::Invalid, format!("{what} is not UTF-8")))
}

#[tonic::async_trait]
impl FlightSqlService for FlightSqlServer {
    type FlightService = FlightSqlServer;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let client = request.remote_addr().map(|address| address.ip());
        let outcome = self.auth.handshake(header, client).await;
        let (token, principal) = match outcome {
            Ok(ok) => ok,
            Err(error) => {
                let status = auth_status(error);
                self.metrics.record_rpc("handshake", Err(&status));
                tracing::info!(reason = %status.message(), "handshake refused");
                return Err(status);
            }
        };
        self.metrics.record_rpc("handshake", Ok(()));
        tracing::info!(user = %principal.user, role = %principal.role, "session opened");
        let bearer = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| status(ErrorKind::Internal, "token is not a valid header value"))?;
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: token.into_bytes().into(),
        };
        let stream: Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>> =
            Box::pin(futures::stream::once(async { Ok(reply) }));
        let mut response = Response::new(stream);
        response.metadata_mut().insert("authorization", bearer);
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let (principal, options) = self.session(&request)?;
        let statement = self
            .engine
            .prepare_with(&principal, options.clone(), &query.query)
            .await
            .map_err(sql_status)?;
        if let Some(applied) = self.apply_session_statement(&request, &statement) {
            applied?;
            let info = self.empty_outcome(&principal, request.into_inner())?;
            return Ok(Response::new(info));
        }
        let explicit = query.transaction_id.as_deref();
        if let Some(applied) = self
            .apply_transaction_statement(&request, explicit, &statement)
            .await
        {
            applied?;
            let info = self.empty_outcome(&principal, request.into_inner())?;
            return Ok(Response::new(info));
        }
        let transaction_id = Self::transaction_id(explicit, &options);
        if statement.kind != StatementKind::Query {
            let transaction = self
                .transaction_for(transaction_id.as_deref(), &principal, &statement)
                .await?;
            let info = self
                .execute_write_now(
                    &principal,
                    &statement,
                    Arc::default(),
                    request.into_inner(),
                    transaction,
                )
                .await?;
            return Ok(Response::new(info));
        }
        // A query runs at DoGet: its ticket names it (a random id, for
        // CancelFlightInfo) and the transaction it runs in.
        let mut statement_handle = QUERY_TICKET_PREFIX.to_vec();
        let mut query_id = [0u8; 16];
        rand::rng().fill_bytes(&mut query_id);
        statement_handle.extend(query_id);
        if let Some(id) = transaction_id {
            crate::sql::transactions::parse_id(&id).map_err(|error| status_of(&error))?;
            statement_handle.extend(TRANSACTION_TICKET_PREFIX);
            statement_handle.extend(id);
        }
        statement_handle.extend(query.query.into_bytes());
        self.running.announce(
            &principal.user,
            &running_key(STATEMENT_KEY, &statement_handle),
            Instant::now(),
        );
        let ticket = TicketStatementQuery {
            statement_handle: statement_handle.into(),
        };
        let info = Self::flight_info(
            &statement.output_schema(),
            ticket.as_any().encode_to_vec(),
            request.into_inner(),
        )?;
        Ok(Response::new(info))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let principal = self.principal(&request)?;
        if ticket.statement_handle.starts_with(OUTCOME_TICKET_PREFIX) {
            return Ok(Response::new(
                self.take_outcome(&ticket.statement_handle, &principal)?,
            ));
        }
        let key = running_key(STATEMENT_KEY, &ticket.statement_handle);
        let handle = match ticket.statement_handle.strip_prefix(QUERY_TICKET_PREFIX) {
            Some(rest) if rest.len() >= 16 => &rest[16..],
            Some(_) => return Err(status(ErrorKind::Invalid, "malformed statement ticket")),
            None => &ticket.statement_handle[..],
        };
        let (transaction_id, sql) = match handle.strip_prefix(TRANSACTION_TICKET_PREFIX) {
            Some(rest) if rest.len() >= 16 => (Some(&rest[..16]), &rest[16..]),
            Some(_) => return Err(status(ErrorKind::Invalid, "malformed statement ticket")),
            None => (None, handle),
        };
        let sql = utf8(sql, "statement handle")?;
        let (principal, options) = self.session(&request)?;
        let running = self.running.start(&principal.user, &key)?;
        let mut statement = self
            .engine
            .prepare_with(&principal, options, &sql)
            .await
            .map_err(sql_status)?;
        let transaction = self
            .transaction_for(transaction_id, &principal, &statement)
            .await?;
        let warnings = statement.fresh_warnings();
        let (stream, work) = self
            .engine
            .execute_watched(&statement, None, transaction)
            .await
            .map_err(sql_status)?;
        Ok(Response::new(self.running.run(
            running,
            flight_stream(stream, warnings),
            work,
        )))
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let principal = self.principal(&request)?;
        let (statement, parameters, prepared_in) =
            self.lookup(&query.prepared_statement_handle, &principal)?;
        if let Some(applied) = self.apply_session_statement(&request, &statement) {
            applied?;
            let info = self.empty_outcome(&principal, request.into_inner())?;
            return Ok(Response::new(info));
        }
        if let Some(applied) = self
            .apply_transaction_statement(
                &request,
                prepared_in.as_ref().map(|id| &id[..]),
                &statement,
            )
            .await
        {
            applied?;
            let info = self.empty_outcome(&principal, request.into_inner())?;
            return Ok(Response::new(info));
        }
        if statement.kind != StatementKind::Query {
            let transaction = self
                .prepared_transaction(&request, prepared_in, &principal, &statement)
                .await?;
            let info = self
                .execute_write_now(
                    &principal,
                    &statement,
                    parameters,
                    request.into_inner(),
                    transaction,
                )
                .await?;
            return Ok(Response::new(info));
        }
        // The schema the DoGet will send: with the bound row's types where the
        // statement alone left a placeholder untyped (`SELECT ? AS x`). ADBC refuses
        // a stream whose schema differs from the one announced.
        let schema = self
            .engine
            .result_schema(
                &statement,
                parameters.last().cloned().map(ParamValues::from),
            )
            .map_err(sql_status)?;
        let info = Self::flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )?;
        Ok(Response::new(info))
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let principal = self.principal(&request)?;
        let (mut statement, parameters, prepared_in) =
            self.lookup(&query.prepared_statement_handle, &principal)?;
        if parameters.len() > 1 {
            return Err(status(
                ErrorKind::Invalid,
                format!(
                    "a query runs with one row of parameters, {} are bound",
                    parameters.len()
                ),
            ));
        }
        let key = running_key(PREPARED_KEY, &query.prepared_statement_handle);
        let running = self.running.start(&principal.user, &key)?;
        let transaction = self
            .prepared_transaction(&request, prepared_in, &principal, &statement)
            .await?;
        let warnings = statement.fresh_warnings();
        let params = parameters.last().cloned().map(ParamValues::from);
        let (stream, work) = self
            .engine
            .execute_watched(&statement, params, transaction)
            .await
            .map_err(sql_status)?;
        Ok(Response::new(self.running.run(
            running,
            flight_stream(stream, warnings),
            work,
        )))
    }

    async fn do_action_cancel_query(
        &self,
        query: ActionCancelQueryRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        let principal = self.principal(&request)?;
        let info = FlightInfo::decode(&*query.info)
            .map_err(|_| status(ErrorKind::Invalid, "CancelQuery carries no FlightInfo"))?;
        // CancelQuery's CancelResult numbers its values as CancelStatus does.
        let result = self.cancel(&principal, &info).await? as i32;
        Ok(ActionCancelQueryResult { result })
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let (principal, options) = self.session(&request)?;
        // Prepared in a Flight SQL transaction: every execution runs there.
        let transaction = match query.transaction_id.as_deref() {
            Some(id) if !id.is_empty() => Some(
                self.engine
                    .transactions()
                    .owned(id, &principal)
                    .map_err(|error| status_of(&error))?,
            ),
            _ => None,
        };
        let statement = self
            .engine
            .prepare_with(&principal, options, &query.query)
            .await
            .map_err(sql_status)?;
        let dataset_schema = schema_bytes(&statement.output_schema())?;
        let parameters = statement.parameter_schema().map_err(sql_status)?;
        if parameters.fields().len() > PARAMETERS_PER_STATEMENT_MAX {
            return Err(status(
                ErrorKind::Invalid,
                format!(
                    "the statement takes {} parameters, more than parameters_per_statement_max = {PARAMETERS_PER_STATEMENT_MAX}",
                    parameters.fields().len()
                ),
            ));
        }
        let parameter_schema = schema_bytes(&parameters)?;
        let mut handle = vec![0u8; 16];
        rand::rng().fill_bytes(&mut handle);
        let session = SessionKey::of(
            request
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok()),
        );
        self.open_statements()
            .open(
                handle.clone(),
                &principal.user,
                session,
                OpenStatement {
                    statement,
                    parameter_count: parameters.fields().len(),
                    parameters: Arc::new(Vec::new()),
                    transaction,
                },
                Instant::now(),
            )
            .map_err(prepared_status)?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.into(),
            dataset_schema,
            parameter_schema,
        })
    }

    async fn do_action_begin_transaction(
        &self,
        _query: ActionBeginTransactionRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionBeginTransactionResult, Status> {
        let principal = self.principal(&request)?;
        let session = SessionKey::of(
            request
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok()),
        );
        let id = self
            .engine
            .transactions()
            .begin(&principal, session.tag(), false, Instant::now())
            .map_err(|error| status_of(&error))?;
        Ok(ActionBeginTransactionResult {
            transaction_id: id.to_vec().into(),
        })
    }

    async fn do_action_end_transaction(
        &self,
        query: ActionEndTransactionRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        let principal = self.principal(&request)?;
        let transactions = self.engine.transactions();
        match EndTransaction::try_from(query.action) {
            Ok(EndTransaction::Commit) => transactions
                .commit(&query.transaction_id, &principal)
                .await
                .map_err(|error| status_of(&error)),
            Ok(EndTransaction::Rollback) => transactions
                .rollback(&query.transaction_id, &principal)
                .map_err(|error| status_of(&error)),
            _ => Err(status(
                ErrorKind::Invalid,
                format!(
                    "EndTransaction action {} is neither COMMIT (1) nor ROLLBACK (2)",
                    query.action
                ),
            )),
        }
    }

    /// Flight's session actions (`session_options`) and CancelFlightInfo; any other
    /// action type is not implemented.
    async fn do_action_fallback(
        &self,
        request: Request<arrow_flight::Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        use super::session_options as session;
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let header = header.as_deref();
        let action = request.into_inner();
        let body = match action.r#type.as_str() {
            session::SET_SESSION_OPTIONS => {
                let wanted = session::decode_set(&action.body).map_err(|e| status_of(&e))?;
                self.auth
                    .with_options(header, |options| session::apply(options, &wanted))
                    .map_err(auth_status)?
                    .encode_to_vec()
            }
            session::GET_SESSION_OPTIONS => {
                let (_, options) = self.auth.session(header).map_err(auth_status)?;
                session::current(&options).encode_to_vec()
            }
            session::CLOSE_SESSION => {
                let (principal, open) = self.auth.close(header).map_err(auth_status)?;
                // Its transactions end with it (SQL BEGIN's and Flight SQL's: ADBC
                // closes a connection without ending the transaction it holds).
                if let Some(id) = open {
                    let _ = self.engine.transactions().rollback(&id, &principal);
                }
                self.engine
                    .transactions()
                    .end_session(SessionKey::of(header).tag(), &principal);
                session::CloseSessionResult {
                    status: session::CloseStatus::Closed as i32,
                }
                .encode_to_vec()
            }
            CANCEL_FLIGHT_INFO => {
                let (principal, _) = self.auth.session(header).map_err(auth_status)?;
                if action.body.len() > SESSION_ACTION_BODY_MAX_BYTES {
                    return Err(status(
                        ErrorKind::Invalid,
                        format!(
                            "CancelFlightInfo body of {} bytes exceeds {SESSION_ACTION_BODY_MAX_BYTES}",
                            action.body.len()
                        ),
                    ));
                }
                let request = arrow_flight::CancelFlightInfoRequest::decode(&*action.body)
                    .map_err(|_| status(ErrorKind::Invalid, "malformed CancelFlightInfoRequest"))?;
                let info = request.info.ok_or_else(|| {
                    status(ErrorKind::Invalid, "CancelFlightInfo names no FlightInfo")
                })?;
                arrow_flight::CancelFlightInfoResult {
                    status: self.cancel(&principal, &info).await? as i32,
                }
                .encode_to_vec()
            }
            other => {
                return Err(status(
                    ErrorKind::Unsupported,
                    format!("action {other} is not implemented"),
                ));
            }
        };
        let result = arrow_flight::Result { body: body.into() };
        Ok(Response::new(Box::pin(futures::stream::once(async {
            Ok(result)
        }))))
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        let principal = self.principal(&request)?;
        self.open_statements()
            .close(&query.prepared_statement_handle, &principal.user)
            .map_err(prepared_status)
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let principal = self.principal(&request)?;
        let handle = &query.prepared_statement_handle;
        let parameters = self
            .read_parameters(handle, &principal, request.into_inner())
            .await?;
        let bytes = parameters
            .iter()
            .flatten()
            .map(ScalarValue::size)
            .fold(0usize, usize::saturating_add);
        let mut statements = self.open_statements();
        let open = statements
            .bind(handle, &principal.user, bytes, Instant::now())
            .map_err(prepared_status)?;
        open.parameters = Arc::new(parameters);
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(query.prepared_statement_handle),
        })
    }

    async fn do_put_prepared_statement_update(
        &self,
        query: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let principal = self.principal(&request)?;
        let (statement, bound, prepared_in) =
            self.lookup(&query.prepared_statement_handle, &principal)?;
        if let Some(applied) = self.apply_session_statement(&request, &statement) {
            return applied.map(|()| 0);
        }
        if let Some(applied) = self
            .apply_transaction_statement(
                &request,
                prepared_in.as_ref().map(|id| &id[..]),
                &statement,
            )
            .await
        {
            return applied.map(|()| 0);
        }
        let transaction = self
            .prepared_transaction(&request, prepared_in, &principal, &statement)
            .await?;
        let sent = self
            .read_parameters(
                &query.prepared_statement_handle,
                &principal,
                request.into_inner(),
            )
            .await?;
        let rows = if sent.is_empty() {
            bound
        } else {
            Arc::new(sent)
        };
        if rows.is_empty() {
            let stream = self.execute(&statement, None, transaction).await?;
            return affected_rows(stream).await;
        }
        // One execution per parameter row (executemany); each is its own statement.
        let mut total = 0i64;
        for row in rows.iter() {
            let stream = self
                .execute(&statement, Some(row.clone()), transaction.clone())
                .await?;
            total += affected_rows(stream).await?;
        }
        Ok(total)
    }

    /// Bulk ingest (`sql::ingest`): the data is read whole (bounded) before anything
    /// changes; a table it creates is DDL, so a transaction it runs in is committed
    /// first, and its rows then join the transaction (or commit at once, atomically).
    async fn do_put_statement_ingest(
        &self,
        command: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let (principal, options) = self.session(&request)?;
        let target = super::ingest::target(&command)?;
        let explicit = command.transaction_id.as_deref();
        let transaction_id = Self::transaction_id(explicit, &options);
        let (schema, batches) =
            super::ingest::read_batches(request.into_inner().into_peekable()).await?;
        let transactions = self.engine.transactions();
        let transaction = match transaction_id.as_deref() {
            None => None,
            Some(id) => {
                let now = Instant::now();
                if target.creates_table(&self.engine) {
                    transactions
                        .commit_before_ddl(id, &principal, now)
                        .await
                        .map_err(|error| status_of(&error))?;
                }
                Some(
                    transactions
                        .statement(id, &principal, true, now)
                        .map_err(|error| status_of(&error))?,
                )
            }
        };
        let started = Instant::now();
        let loaded = self
            .engine
            .ingest(&principal, options, &target, schema, batches, transaction)
            .await;
        self.metrics
            .record_statement("ingest", loaded.is_ok(), started.elapsed());
        let rows = loaded.map_err(sql_status)?;
        Ok(i64::try_from(rows).unwrap_or(i64::MAX))
    }

    async fn do_put_statement_update(
        &self,
        command: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let (principal, options) = self.session(&request)?;
        let statement = self
            .engine
            .prepare_with(&principal, options.clone(), &command.query)
            .await
            .map_err(sql_status)?;
        if let Some(applied) = self.apply_session_statement(&request, &statement) {
            return applied.map(|()| 0);
        }
        let explicit = command.transaction_id.as_deref();
        if let Some(applied) = self
            .apply_transaction_statement(&request, explicit, &statement)
            .await
        {
            return applied.map(|()| 0);
        }
        let transaction_id = Self::transaction_id(explicit, &options);
        let transaction = self
            .transaction_for(transaction_id.as_deref(), &principal, &statement)
            .await?;
        let stream = self.execute(&statement, None, transaction).await?;
        affected_rows(stream).await
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        let schema = query.into_builder().schema();
        Ok(Response::new(Self::flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )?))
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.principal(&request)?;
        let mut builder = query.into_builder();
        for (catalog, _) in schemas_for_metadata(&self.engine) {
            builder.append(catalog);
        }
        Ok(Response::new(batch_stream(
            builder.build().map_err(Status::from)?,
        )))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        let schema = query.clone().into_builder().schema();
        Ok(Response::new(Self::flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )?))
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.principal(&request)?;
        let mut builder = query.into_builder();
        for (catalog, schemas) in schemas_for_metadata(&self.engine) {
            for (schema, _) in schemas {
                builder.append(&catalog, schema);
            }
        }
        Ok(Response::new(batch_stream(
            builder.build().map_err(Status::from)?,
        )))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        let schema = query.clone().into_builder().schema();
        Ok(Response::new(Self::flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )?))
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.principal(&request)?;
        let mut builder = query.into_builder();
        for (catalog, schemas) in schemas_for_metadata(&self.engine) {
            for (schema, tables) in schemas {
                for (table, table_type, table_schema) in tables {
                    builder
                        .append(&catalog, &schema, table, table_type, &table_schema)
                        .map_err(Status::from)?;
                }
            }
        }
        Ok(Response::new(batch_stream(
            builder.build().map_err(Status::from)?,
        )))
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        Ok(Response::new(Self::flight_info(
            &super::keys::primary_keys_schema(),
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )?))
    }

    async fn do_get_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.principal(&request)?;
        let batch = super::keys::primary_keys(
            &self.engine.store().tables(),
            (crate::sql::CATALOG_NAME, crate::sql::PUBLIC_SCHEMA),
            (
                query.catalog.as_deref(),
                query.db_schema.as_deref(),
                &query.table,
            ),
        )
        .map_err(|e| status(ErrorKind::Internal, e.to_string()))?;
        Ok(Response::new(batch_stream(batch)))
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.no_foreign_keys_info(query.as_any().encode_to_vec(), request)
    }

    async fn do_get_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.no_foreign_keys(&request)
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.no_foreign_keys_info(query.as_any().encode_to_vec(), request)
    }

    async fn do_get_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.no_foreign_keys(&request)
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.no_foreign_keys_info(query.as_any().encode_to_vec(), request)
    }

    async fn do_get_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.no_foreign_keys(&request)
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        let schema = query.into_builder().schema();
        Ok(Response::new(Self::flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )?))
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.principal(&request)?;
        let mut builder = query.into_builder();
        builder.append("TABLE");
        builder.append("SYSTEM TABLE");
        builder.append("VIEW");
        Ok(Response::new(batch_stream(
            builder.build().map_err(Status::from)?,
        )))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        let schema = query.clone().into_builder(&SQL_INFO).schema();
        Ok(Response::new(Self::flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )?))
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.principal(&request)?;
        Ok(Response::new(batch_stream(
            query
                .into_builder(&SQL_INFO)
                .build()
                .map_err(Status::from)?,
        )))
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        let schema = query.into_builder(&XDBC_TYPES).schema();
        Ok(Response::new(Self::flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )?))
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.principal(&request)?;
        Ok(Response::new(batch_stream(
            query
                .into_builder(&XDBC_TYPES)
                .build()
                .map_err(Status::from)?,
        )))
    }

    async fn do_get_fallback(
        &self,
        _request: Request<Ticket>,
        message: Any,
    ) -> Result<Response<DoGetStream>, Status> {
        Err(status(
            ErrorKind::Unsupported,
            format!("unsupported ticket type {}", message.type_url),
        ))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
