//! Every bound the node enforces, in one place. Names end in their unit; an error that
//! hits a bound names the constant. Relations between them are checked at compile
//! time (the `const _: () = assert!(...)` lines at the end); `tests/layering.rs`
//! keeps every `*_MAX` constant of the node in a `limits.rs`.

use std::time::Duration;

/// Longest table or column name, in bytes.
pub const IDENTIFIER_LENGTH_MAX: usize = 63;
/// Widest table, in columns.
pub const COLUMNS_PER_TABLE_MAX: usize = 1024;
/// Largest single TEXT or BYTEA cell, in bytes.
pub const CELL_SIZE_MAX_BYTES: usize = 1 << 20;
/// Most rows one INSERT, UPDATE or DELETE may change. A statement is one atomic storage
/// transaction whose changes are held in memory until commit, so this bounds memory.
pub const STATEMENT_ROWS_MAX: usize = 100_000;
/// Most rows one bulk ingest (Flight SQL `CommandStatementIngest`) may load. An ingest
/// is one atomic commit held in memory until it commits, like a statement, but loads
/// are larger than statements: about 1 KiB of memory per row of a few columns.
pub const INGEST_ROWS_MAX: usize = 500_000;
/// Most values (rows x table columns) one ingest may convert: a NULL costs nothing on
/// the wire and ~32 bytes once converted.
pub const INGEST_CELLS_MAX: usize = 8_000_000;
/// Wire bytes of one ingest's batches, counted before decoding.
pub const INGEST_BYTES_MAX: usize = 256 << 20;
/// Most rows one interactive transaction may change; its writes are held in memory
/// until it commits.
pub const TRANSACTION_ROWS_MAX: usize = 100_000;
/// Most reads (keys looked up, ranges scanned, partition lists) one transaction may
/// record; each is read again in the writer at commit.
pub const TRANSACTION_READS_MAX: usize = 100_000;
/// Largest body of a Flight session action (SetSessionOptions, GetSessionOptions,
/// CloseSession) decoded, in bytes: a few options fit in far less.
pub const SESSION_ACTION_BODY_MAX_BYTES: usize = 64 << 10;
/// Open interactive transactions per node and per user: each holds a storage snapshot
/// (pinning old pages of the database file) and its writes in memory.
pub const TRANSACTIONS_OPEN_MAX: usize = 1_024;
pub const TRANSACTIONS_PER_USER_MAX: usize = 64;
/// Statements one transaction may run.
pub const TRANSACTION_STATEMENTS_MAX: usize = 10_000;
/// A transaction that ran no statement for this long is rolled back (PostgreSQL's
/// `idle_in_transaction_session_timeout`), and one older than the age bound is refused
/// its next statement and rolled back: a forgotten transaction would otherwise pin its
/// snapshot for ever. Announced to clients as Flight SQL's transaction timeout.
pub const TRANSACTION_IDLE_MAX: Duration = Duration::from_secs(60);
pub const TRANSACTION_AGE_MAX: Duration = Duration::from_secs(600);
/// Statement tickets announced and not yet run, and those cancelled before they ran
/// (Flight's CancelFlightInfo), are remembered at most this many each, and for at most
/// this long: enough to refuse a cancelled statement's DoGet, bounded against a client
/// that announces queries it never runs.
pub const CANCELLABLE_TICKETS_MAX: usize = 100_000;
pub const CANCELLABLE_TICKET_AGE_MAX: Duration = Duration::from_secs(600);
/// Most statements folded into one fsync'd storage commit (group commit).
pub const COMMIT_BATCH_STATEMENTS_MAX: usize = 256;
/// How long a contended group commit waits for more statements by default, and at
/// most (`storage.commit_window_us`), in microseconds.
pub const COMMIT_WINDOW_DEFAULT_US: u64 = 200;
pub const COMMIT_WINDOW_MAX_US: u64 = 10_000;
/// Queue of statements waiting for the storage writer.
pub const WRITE_QUEUE_STATEMENTS_MAX: usize = 4096;
/// Rows per Arrow batch produced by a table scan.
pub const SCAN_BATCH_ROWS_MAX: usize = 4096;
/// Batches buffered between a storage scan thread and the query that consumes it.
pub const SCAN_CHANNEL_BATCHES_MAX: usize = 4;
/// How long a scan's reader waits for its consumer (a client or a peer) to take a
/// batch before it stops and the scan fails: a reader holds a blocking thread and a
/// storage snapshot while it waits.
pub const SCAN_CONSUMER_IDLE_MAX: Duration = Duration::from_secs(60);
/// Rows a node streams to a peer (`ScanRows`) go in messages of about this many bytes
/// of Arrow data (a single row larger than this goes alone): small enough that neither
/// side holds more than a few of them, far below `GRPC_MESSAGE_SIZE_MAX_BYTES`.
pub const PEER_SCAN_MESSAGE_BYTES_TARGET: usize = 1 << 20;
/// How long a peer's whole streamed answer (a routed read, a `mesh.<table>` leg) may
/// take, in seconds, however steadily its messages come: a peer trickling messages just
/// inside the idle timeout would otherwise hold the query and its client for ever.
pub const PEER_ANSWER_DURATION_MAX_S: u64 = 900;
/// A `mesh.<table>` leg's answer from another region is kept in the cache only up to
/// this many bytes of Arrow data; a larger one streams through uncached rather than
/// being held whole for the cache.
pub const MESH_LEG_CACHE_BYTES_MAX: usize = 8 << 20;
/// Longest SQL text accepted, in bytes.
pub const SQL_LENGTH_MAX_BYTES: usize = 1 << 20;
/// Deepest an expression may chain or nest (operators in a row plus nesting levels,
/// counted on tokens before parsing; see `sql::statement_shape`). Every walk of the
/// parsed tree recurses once per level, on a worker's stack, and planning time grows
/// about with the cube of the depth (measured in a debug build: 100 levels 1 s, 200
/// levels 8 s), so one statement of a few KiB could hold a core for minutes.
pub const EXPRESSION_DEPTH_MAX: usize = 128;
/// Stack of each runtime thread (async workers and blocking threads), in bytes.
/// Planning and rewriting a statement walk its expression tree recursively, about once
/// per level: Tokio's default of 2 MiB overflowed (aborting the node) below 1 000 levels
/// in a debug build. The margin over `EXPRESSION_DEPTH_MAX` is deliberate. Address space
/// only: pages are touched as the stack grows.
pub const WORKER_STACK_BYTES: usize = 16 << 20;
/// Most values in one `IN (...)` list.
pub const IN_LIST_VALUES_MAX: usize = 100_000;
/// Longest identifier (table, column, alias), in bytes: PostgreSQL's NAMEDATALEN - 1.
pub const IDENTIFIER_LENGTH_MAX_BYTES: usize = 63;
/// Longest quoted identifier in a statement, in bytes: tools name result columns after
/// their expressions. Stored names keep the 63-byte bound (`TableDef::validate_shape`).
pub const QUOTED_IDENTIFIER_LENGTH_MAX_BYTES: usize = 1_024;
/// Largest gRPC message the Flight SQL server decodes, in bytes.
pub const GRPC_MESSAGE_SIZE_MAX_BYTES: usize = 64 << 20;
/// Rows put to a residency policy in one call: each call has its own deadline, so a
/// large statement is decided in bounded pieces.
pub const POLICY_BATCH_ROWS_MAX: usize = 256;
/// Newest audit entries `system.audit` shows (older ones stay in the log).
pub const SYSTEM_AUDIT_ROWS_MAX: usize = 100_000;
/// Outbox events the CDC relay redacts, decides and publishes per commit.
pub const RELAY_BATCH_EVENTS_MAX: usize = 256;
/// Messages a node keeps in its change stream for peers that are behind; older ones are
/// removed (a peer further behind than this must rebuild its replica).
pub const CHANGE_STREAM_RETAINED_MAX: u64 = 1_000_000;
/// Largest change message (key + value) a replica consumer reads, in bytes; larger ones
/// are quarantined unread.
pub const CDC_MESSAGE_BYTES_MAX: usize = 32 << 20;
/// How far past the newest sequence number applied from a source a message's may be.
/// Sequence numbers of one source grow by one per captured event, and withheld events
/// leave gaps, so a real gap this large means billions of events none of which was
/// released; a forged `u64::MAX` would otherwise make every later change look old.
pub const CDC_SEQ_JUMP_MAX: u64 = 1 << 32;
/// Quarantined change messages remembered (`system.cdc_quarantine`); older records are
/// dropped, the count in `system.cdc` keeps growing.
pub const CDC_QUARANTINE_RECORDS_MAX: u64 = 10_000;
/// Messages per batch sent to a peer following the change stream.
pub const STREAM_BATCH_MESSAGES_MAX: usize = 256;
/// Open prepared statements per node, per user and per session (bearer token). The
/// per-user and per-session bounds keep one client from taking every slot.
pub const PREPARED_STATEMENTS_MAX: usize = 10_000;
pub const PREPARED_STATEMENTS_PER_USER_MAX: usize = 1_000;
pub const PREPARED_STATEMENTS_PER_SESSION_MAX: usize = 256;
/// A prepared statement unused for this long is closed, in seconds (the default bearer
/// token lifetime: a client that still has its session rarely idles this long).
pub const PREPARED_STATEMENT_IDLE_MAX_S: u64 = 3_600;
/// Memory the parameters bound to prepared statements may hold, per user and per node,
/// in bytes (bound rows stay until the next bind or close).
pub const BOUND_PARAMETER_BYTES_PER_USER_MAX: usize = 256 << 20;
pub const BOUND_PARAMETER_BYTES_MAX: usize = 1 << 30;
/// Parameters one statement may take (PostgreSQL's wire protocol has the same bound).
pub const PARAMETERS_PER_STATEMENT_MAX: usize = 65_535;
/// Wire bytes of all parameter batches of one DoPut, counted before decoding.
pub const PARAMETER_BYTES_MAX: usize = 64 << 20;
/// Parameter values (rows x columns) of one DoPut, checked before any is converted:
/// each costs ~64 bytes in memory however few bytes it took on the wire.
pub const PARAMETER_CELLS_MAX: usize = 1_000_000;
/// Live bearer tokens per node, and per user (a user's new session past the bound ends
/// its oldest).
pub const SESSIONS_MAX: usize = 100_000;
pub const SESSIONS_PER_USER_MAX: usize = 1_000;
/// Password checks (argon2, ~19 MiB each) running at once, and how long a login waits
/// for a slot before it is refused as busy, in milliseconds.
pub const ARGON2_CONCURRENT_MAX: usize = 2;
pub const LOGIN_WAIT_MAX_MS: u64 = 2_000;
/// Failed logins in a row allowed to a user name or a client address before each
/// further failure blocks it, for 1 s doubling up to `LOGIN_BACKOFF_MAX_S` seconds.
pub const LOGIN_FAILURES_FREE: u32 = 5;
pub const LOGIN_BACKOFF_MAX_S: u64 = 60;
/// User names and client addresses whose failures are remembered.
pub const LOGIN_FAILURE_KEYS_MAX: usize = 100_000;
/// Connections one listener keeps open at most (its share of the open-file limit is
/// used when smaller; see `connection_gate`), and by default at most from one client
/// address (an IPv6 client by its /64; `[listen] connections_per_address`). An address
/// also never holds more than remain free (`client_address::FairShare`), so no set of
/// clients can take every slot. An idle HTTP/2 connection costs the node ~25 KB
/// (measured: 2 000 connections that sent the preface and answer pings, +50 MB RSS).
pub const CONNECTIONS_PER_LISTENER_MAX: usize = 8_192;
pub const CONNECTIONS_PER_ADDRESS_MAX: usize = 256;
/// How soon a new connection must send its first bytes (the HTTP/2 preface or a TLS
/// ClientHello), and complete a TLS handshake, in milliseconds.
pub const CONNECTION_HANDSHAKE_MAX_MS: u64 = 10_000;
/// HTTP/2 keepalive: a ping after this many seconds without frames, and the connection
/// closed if it is not answered within the timeout (seconds). Closes connections whose
/// client vanished or stopped reading.
pub const HTTP2_KEEPALIVE_INTERVAL_S: u64 = 20;
pub const HTTP2_KEEPALIVE_TIMEOUT_S: u64 = 20;
/// Streams (calls) one HTTP/2 connection may have open at once. Each open stream holds
/// its headers and buffers (measured: ~90 KB per stream held open without a body), so
/// this times `CONNECTIONS_PER_ADDRESS_MAX` bounds what one client can pin.
pub const HTTP2_STREAMS_PER_CONNECTION_MAX: u32 = 32;
/// Largest header block of one call, in bytes (decoded; `authorization` is bounded
/// separately, at 4 KiB).
pub const HTTP2_HEADER_LIST_BYTES_MAX: u32 = 16 << 10;
/// Largest W3C trace context value read from outside the process (`traceparent` is 55
/// bytes in version 00; `tracestate` at most 32 members of 256 bytes, but a larger one
/// is dropped, as the spec allows): a longer value is ignored before it is parsed, and the
/// span starts a trace of its own. <https://www.w3.org/TR/trace-context/#tracestate-limits>
pub const TRACE_CONTEXT_BYTES_MAX: usize = 512;
/// Links one batch span (a CDC relay) keeps to the traces of the statements it carries;
/// the others' messages still continue their own traces.
pub const TRACE_LINKS_MAX: usize = 32;
/// Calls a gRPC listener has accepted and not yet answered (a streaming answer counts
/// until its first message), over all its connections; the next call is refused at
/// once with RESOURCE_EXHAUSTED. Streams held open without a request body cost ~40 KB
/// each (measured), so this bounds what every client together can pin per listener to
/// about 80 MB, where the per-connection and per-address bounds alone allow gigabytes.
pub const CALLS_IN_FLIGHT_PER_LISTENER_MAX: usize = 2_048;
/// Of those, what one client address (an IPv6 client by its /64) may hold by default:
/// a quarter (`[listen] calls_in_flight_per_address`). As with connections, an address
/// never holds more than remain free (`client_address::FairShare`). The listener-wide
/// bound is `[listen] calls_in_flight` (at most this constant).
pub const CALLS_IN_FLIGHT_PER_ADDRESS_MAX: usize = 512;
/// Oldest a connection may grow, in seconds, before the node asks its client to move
/// to a new one (HTTP/2 GOAWAY; calls in flight get `CONNECTION_AGE_GRACE_S` more).
/// Bounds how long an idle connection that answers keepalive pings, or one that
/// finished TLS but never sent the HTTP/2 preface, holds its slot.
pub const CONNECTION_AGE_MAX_S: u64 = 3_600;
pub const CONNECTION_AGE_GRACE_S: u64 = 60;
/// The metrics listener serves scrapes (one short request each): it keeps at most this
/// many connections, each for at most `METRICS_CONNECTION_LIFETIME_MAX_S` seconds.
pub const METRICS_CONNECTIONS_MAX: usize = 64;
pub const METRICS_CONNECTION_LIFETIME_MAX_S: u64 = 60;
/// Largest file read for each purpose, in bytes (`bounded_file`, checked while
/// reading): the node's config (and a leak-scan canary file); a PEM certificate chain,
/// key or CA; an ed25519 key file (hex); a password file or a password on standard
/// input; a SQL script (`domicile sql -f`). A component file read by the CLI is
/// bounded by `GRPC_MESSAGE_SIZE_MAX_BYTES`: it is uploaded in one message.
pub const CONFIG_FILE_SIZE_MAX_BYTES: u64 = 4 << 20;
pub const PEM_FILE_SIZE_MAX_BYTES: u64 = 1 << 20;
pub const KEY_FILE_SIZE_MAX_BYTES: u64 = 4_096;
pub const PASSWORD_SIZE_MAX_BYTES: u64 = 4_096;
pub const SQL_SCRIPT_FILE_SIZE_MAX_BYTES: u64 = 64 << 20;
/// Longest `authorization` header value accepted, in bytes.
pub const AUTHORIZATION_LENGTH_MAX_BYTES: usize = 4_096;

/// The longest a saga call waits for the saga to end.
pub const SAGA_WAIT_MAX_MS: u64 = 30_000;
/// Most write outcomes kept waiting at once.
pub const WRITE_OUTCOMES_MAX: usize = 10_000;
/// Most primary keys one statement turns into point lookups; beyond it a scan is cheaper.
pub const POINT_LOOKUP_KEYS_MAX: usize = 10_000;
/// Point lookups up to this many keys are answered on the calling task.
pub const INLINE_LOOKUP_KEYS_MAX: usize = 64;
/// Waits between attempts of a saga step or compensation (`clock::Backoff`: doubling
/// from the first to the second, with jitter).
pub const SAGA_RETRY_BACKOFF_MIN: Duration = Duration::from_millis(50);
pub const SAGA_RETRY_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Attempts of one compensation before the saga is left `stuck` for support.
pub const COMPENSATION_ATTEMPTS_MAX: u32 = 30;
/// Longest idempotency key accepted, in bytes.
pub const IDEMPOTENCY_KEY_MAX_BYTES: usize = 200;
/// Largest remote result cached, bytes (Arrow IPC); larger answers are not cached.
pub const CACHE_REMOTE_ENTRY_MAX_BYTES: usize = 1024 * 1024;
/// Largest log read at start; a longer one (damaged, or not ours) is started afresh.
pub const CACHE_EXPIRY_LOG_MAX_BYTES: u64 = 64 << 20;
/// Longest key recorded (the cache's remote keys are 33 bytes).
pub const CACHE_EXPIRY_KEY_MAX_BYTES: usize = 255;
/// The log is compacted when it holds this many records more than live entries.
pub const CACHE_EXPIRY_DEAD_RECORDS_MAX: usize = 4096;
/// A stream that says nothing for this long (the source sends a batch at least every
/// `CHANGE_STREAM_HEARTBEAT`) is treated as a dead link and re-opened.
pub const CHANGE_STREAM_SILENCE_MAX: Duration = Duration::from_secs(3);
/// Waits before a replica follower re-opens a failed change stream (`clock::Backoff`).
pub const REPLICA_RETRY_BACKOFF_MIN: Duration = Duration::from_millis(200);
pub const REPLICA_RETRY_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A batch without messages goes out at least this often, so a follower can tell a
/// quiet source from a dead link.
pub const CHANGE_STREAM_HEARTBEAT: Duration = Duration::from_millis(500);
/// Largest response the consumer accepts from a broker, in bytes: a few messages at the
/// message bound.
pub const KAFKA_FETCH_BYTES_MAX: usize = 4 * CDC_MESSAGE_BYTES_MAX;

const _: () = assert!(COMMIT_BATCH_STATEMENTS_MAX <= WRITE_QUEUE_STATEMENTS_MAX);
const _: () = assert!(SCAN_BATCH_ROWS_MAX <= STATEMENT_ROWS_MAX);
const _: () = assert!(STATEMENT_ROWS_MAX <= TRANSACTION_ROWS_MAX);
const _: () = assert!(STATEMENT_ROWS_MAX <= INGEST_ROWS_MAX);
const _: () = assert!(INGEST_ROWS_MAX <= INGEST_CELLS_MAX);
const _: () = assert!(TRANSACTIONS_PER_USER_MAX <= TRANSACTIONS_OPEN_MAX);
const _: () = assert!(TRANSACTION_IDLE_MAX.as_secs() <= TRANSACTION_AGE_MAX.as_secs());
const _: () = assert!(CELL_SIZE_MAX_BYTES < GRPC_MESSAGE_SIZE_MAX_BYTES);
const _: () = assert!(PREPARED_STATEMENTS_PER_SESSION_MAX <= PREPARED_STATEMENTS_PER_USER_MAX);
const _: () = assert!(PREPARED_STATEMENTS_PER_USER_MAX <= PREPARED_STATEMENTS_MAX);
const _: () = assert!(STATEMENT_ROWS_MAX <= PARAMETER_CELLS_MAX);
const _: () = assert!(BOUND_PARAMETER_BYTES_PER_USER_MAX <= BOUND_PARAMETER_BYTES_MAX);
const _: () = assert!(PARAMETER_BYTES_MAX <= BOUND_PARAMETER_BYTES_PER_USER_MAX);
const _: () = assert!(SESSIONS_PER_USER_MAX <= SESSIONS_MAX);
const _: () = assert!(ARGON2_CONCURRENT_MAX >= 1);
const _: () = assert!(CONNECTIONS_PER_ADDRESS_MAX <= CONNECTIONS_PER_LISTENER_MAX);
const _: () = assert!(CALLS_IN_FLIGHT_PER_ADDRESS_MAX < CALLS_IN_FLIGHT_PER_LISTENER_MAX);
const _: () = assert!(AUTHORIZATION_LENGTH_MAX_BYTES < HTTP2_HEADER_LIST_BYTES_MAX as usize);
const _: () = assert!(CELL_SIZE_MAX_BYTES < CDC_MESSAGE_BYTES_MAX);
const _: () = assert!(CHANGE_STREAM_RETAINED_MAX < CDC_SEQ_JUMP_MAX);
const _: () = assert!(
    CHANGE_STREAM_HEARTBEAT.as_millis() * 4 <= CHANGE_STREAM_SILENCE_MAX.as_millis(),
    "a follower must miss several heartbeats before it takes the link for dead"
);
const _: () = assert!(SAGA_RETRY_BACKOFF_MIN.as_millis() < SAGA_RETRY_BACKOFF_MAX.as_millis());
const _: () =
    assert!(REPLICA_RETRY_BACKOFF_MIN.as_millis() < REPLICA_RETRY_BACKOFF_MAX.as_millis());
const _: () = assert!(INLINE_LOOKUP_KEYS_MAX <= POINT_LOOKUP_KEYS_MAX);
const _: () = assert!(KAFKA_FETCH_BYTES_MAX >= CDC_MESSAGE_BYTES_MAX);
