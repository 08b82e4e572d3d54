//! The overload mix of issue 21 (item 9), shared by `tests/overload.rs` (which asserts)
//! and `domicile-bench --overload` (which reports): a steady workload of point reads and
//! cross-region transfers against one node of the bank (`bank::bank`), and a hostile
//! client mix against the same node.
//!
//! The steady clients connect from 127.0.0.1; each hostile kind from its own loopback
//! address (127.0.0.2 and up), as distinct clients on a network would, so the node's
//! per-address bounds (login back-off, connection slots) see the attacker, not everyone.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, BinaryArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{Action, FlightData, FlightDescriptor, Ticket};
use domicile::saga::SagaState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::bank::{transfer, writer_session};
use crate::sql_gen::Rng;
use crate::{Client, Mesh, TestNode, bound_tcp, channel_from, null_batch, to_status};

/// A loopback address of its own for each hostile kind.
fn attacker(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// Random bytes from the harness's seeded generator.
fn random_bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.next_u64() as u8).collect()
}

/// What the steady clients saw.
#[derive(Debug, Default)]
pub struct SteadyReport {
    /// Latency of each point read that succeeded.
    pub reads: Vec<Duration>,
    /// Latency of each transfer acknowledged as committed (start to answer).
    pub transfers: Vec<Duration>,
    /// Every failed read or transfer, and every transfer that did not commit.
    pub errors: Vec<String>,
    /// Cents moved from 1001 (us-east) to 2001 (eu-central) by acknowledged transfers.
    pub committed_cents: i64,
}

impl SteadyReport {
    fn merge(&mut self, other: SteadyReport) {
        self.reads.extend(other.reads);
        self.transfers.extend(other.transfers);
        self.errors.extend(other.errors);
        self.committed_cents += other.committed_cents;
    }

    /// The `q` quantile (0..=1) of `latencies`; zero when empty.
    pub fn quantile(latencies: &[Duration], q: f64) -> Duration {
        let mut sorted = latencies.to_vec();
        sorted.sort();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        sorted[((sorted.len() - 1) as f64 * q).round() as usize]
    }
}

/// Point reads of account 1001 by `readers` clients and 1-cent transfers 1001 → 2001 by
/// `transferers` clients, all against `region`'s node, for `run`. Saga keys start with
/// `keys` (distinct per call).
pub async fn steady(
    mesh: &Mesh,
    region: &str,
    readers: usize,
    transferers: usize,
    run: Duration,
    keys: &str,
) -> SteadyReport {
    let node = mesh.node(region);
    let deadline = Instant::now() + run;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..readers {
        let mut client = node.client("writer").await.expect("steady reader logs in");
        tasks.spawn(async move {
            let mut report = SteadyReport::default();
            while Instant::now() < deadline {
                let started = Instant::now();
                match client
                    .query("SELECT id, balance FROM accounts WHERE id = 1001")
                    .await
                {
                    Ok(batches) if crate::row_count(&batches) == 1 => {
                        report.reads.push(started.elapsed());
                    }
                    Ok(batches) => report
                        .errors
                        .push(format!("read: {} rows", crate::row_count(&batches))),
                    Err(status) => report.errors.push(format!("read: {status:?}")),
                }
            }
            report
        });
    }
    for worker in 0..transferers {
        let mut session = writer_session(node).await;
        let prefix = format!("{keys}-{worker}");
        tasks.spawn(async move {
            let mut report = SteadyReport::default();
            let mut n = 0;
            while Instant::now() < deadline {
                n += 1;
                let key = format!("{prefix}-{n}");
                let started = Instant::now();
                match session
                    .start_saga_settled(
                        "transfer",
                        &transfer(1001, 2001, "eu-central", 1),
                        &key,
                        Duration::from_secs(30),
                    )
                    .await
                {
                    Ok(saga) if saga.state == SagaState::Committed => {
                        report.transfers.push(started.elapsed());
                        report.committed_cents += 1;
                    }
                    Ok(saga) => report
                        .errors
                        .push(format!("transfer {key}: {:?}", saga.state)),
                    Err(error) => report.errors.push(format!("transfer {key}: {error:#}")),
                }
            }
            report
        });
    }
    let mut report = SteadyReport::default();
    while let Some(done) = tasks.join_next().await {
        report.merge(done.expect("steady task"));
    }
    report
}

/// One hostile kind's tally.
#[derive(Debug, Default)]
pub struct Outcomes {
    pub attempts: u64,
    /// Attempts the node refused or cut off the way it should.
    pub refused: u64,
    /// Anything else (accepted garbage, a wrong error, a hang), at most 10 kept.
    pub unexpected: Vec<String>,
    /// Refusals by how they happened, where a kind tells them apart.
    pub tallies: BTreeMap<&'static str, u64>,
}

impl Outcomes {
    fn merge(&mut self, other: Outcomes) {
        self.attempts += other.attempts;
        self.refused += other.refused;
        self.unexpected.extend(other.unexpected);
        for (name, count) in other.tallies {
            *self.tallies.entry(name).or_default() += count;
        }
    }

    fn expect(&mut self, ok: bool, what: impl FnOnce() -> String) {
        self.attempts += 1;
        if ok {
            self.refused += 1;
        } else if self.unexpected.len() < 10 {
            self.unexpected.push(what());
        }
    }
}

/// Every hostile kind's tally, and the node's memory during the attack.
#[derive(Debug, Default)]
pub struct AttackReport {
    pub kinds: BTreeMap<&'static str, Outcomes>,
    /// Largest `VmRSS` sampled during the attack, in KiB.
    pub rss_max_kib: u64,
    /// `VmHWM` at the end, in KiB.
    pub hwm_kib: u64,
}

/// The hostile mix against `node` for `run`.
pub async fn attack(node: &TestNode, run: Duration) -> AttackReport {
    let deadline = Instant::now() + run;
    let endpoint = node.endpoint();
    let mut tasks = tokio::task::JoinSet::new();
    {
        let endpoint = endpoint.clone();
        tasks.spawn(async move {
            (
                "oversized parameters",
                oversized_parameters(&endpoint, deadline).await,
            )
        });
    }
    {
        let endpoint = endpoint.clone();
        tasks.spawn(async move {
            (
                "giant statements",
                giant_statements(&endpoint, deadline).await,
            )
        });
    }
    for flooder in 0..4u8 {
        let endpoint = endpoint.clone();
        tasks.spawn(async move {
            (
                "login flood",
                login_flood(&endpoint, 10 + flooder * 8, deadline).await,
            )
        });
    }
    {
        let endpoint = endpoint.clone();
        tasks.spawn(async move { ("garbage Flight", garbage_flight(&endpoint, deadline).await) });
    }
    let address = node.flight_sql;
    tasks.spawn(async move { ("garbage bytes", garbage_bytes(address, deadline).await) });
    tasks.spawn(async move { ("slow-loris", slow_loris(address, deadline).await) });
    if let Some(peer) = node.peer {
        tasks.spawn(async move {
            (
                "stalled TLS handshakes",
                stalled_tls_handshakes(peer, deadline).await,
            )
        });
    }

    let mut report = AttackReport::default();
    let sampling = async {
        let mut rss_max = 0;
        while Instant::now() < deadline {
            if let Some((rss, _)) = node.memory_kib() {
                rss_max = rss_max.max(rss);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        rss_max
    };
    let joined = async {
        let mut kinds: BTreeMap<&'static str, Outcomes> = BTreeMap::new();
        while let Some(done) = tasks.join_next().await {
            let (kind, outcomes) = done.expect("attack task");
            kinds.entry(kind).or_default().merge(outcomes);
        }
        kinds
    };
    let (rss_max, kinds) = tokio::join!(sampling, joined);
    report.kinds = kinds;
    report.rss_max_kib = rss_max;
    report.hwm_kib = node.memory_kib().map_or(0, |(_, hwm)| hwm);
    report
}

/// A logged-in user binds parameter batches far past every bound: 10 M NULL cells,
/// 5 000 columns for a one-parameter statement, and one batch of 65 MiB of bytes.
async fn oversized_parameters(endpoint: &str, deadline: Instant) -> Outcomes {
    let mut outcomes = Outcomes::default();
    let Ok(mut client) = Client::connect_from(endpoint, attacker(2), "reader", "reader-pw").await
    else {
        outcomes.expect(false, || "the attacking reader could not log in".into());
        return outcomes;
    };
    let select: Vec<String> = (1..=100).map(|i| format!("${i} AS c{i}")).collect();
    // Past grpc_message_size_max_bytes (64 MiB): refused by the transport unread.
    let payload = vec![7u8; 65 << 20];
    let mut round = 0u64;
    while Instant::now() < deadline {
        round += 1;
        let (sql, batch, bound) = match round % 8 {
            0 => (
                "SELECT $1 AS b".to_string(),
                RecordBatch::try_new(
                    Arc::new(Schema::new(vec![Field::new("$1", DataType::Binary, true)])),
                    vec![Arc::new(BinaryArray::from_vec(vec![&payload[..]])) as ArrayRef],
                )
                .expect("batch"),
                "",
            ),
            n if n % 2 == 0 => (
                "SELECT $1 AS one".to_string(),
                null_batch(5_000, 10),
                "takes 1 parameter",
            ),
            _ => (
                format!("SELECT {}", select.join(", ")),
                null_batch(100, 100_000),
                "parameter_cells_max",
            ),
        };
        let mut statement = match client.inner.prepare(sql, None).await {
            Ok(statement) => statement,
            Err(error) => {
                outcomes.expect(false, || format!("prepare failed: {error}"));
                continue;
            }
        };
        if statement.set_parameters(batch).is_err() {
            outcomes.expect(false, || "bind locally".into());
            continue;
        }
        let answer = statement.execute().await.map_err(to_status);
        outcomes.expect(
            answer
                .as_ref()
                .is_err_and(|status| status.message().contains(bound)),
            || format!("{answer:?}").chars().take(300).collect(),
        );
        let _ = statement.close().await;
    }
    outcomes
}

/// A logged-in user sends statements shaped to exhaust the parser and planner: each
/// must be refused naming its bound.
async fn giant_statements(endpoint: &str, deadline: Instant) -> Outcomes {
    let mut outcomes = Outcomes::default();
    let Ok(mut client) = Client::connect_from(endpoint, attacker(3), "reader", "reader-pw").await
    else {
        outcomes.expect(false, || "the attacking reader could not log in".into());
        return outcomes;
    };
    let chain = |op: &str, terms: usize| vec!["1"; terms].join(op);
    let statements = [
        format!("SELECT {} AS n", chain(" + ", 600_000)),
        format!("SELECT {} AS n", chain(" + ", 100_000)),
        format!(
            "SELECT id FROM accounts WHERE id IN ({})",
            chain(",", 110_000)
        ),
        format!("SELECT {}1{} AS n", "(".repeat(10_000), ")".repeat(10_000)),
        format!("SELECT 1 AS {}", "x".repeat(500_000)),
    ];
    let mut i = 0;
    while Instant::now() < deadline {
        let sql = &statements[i % statements.len()];
        i += 1;
        let answer = client.query(sql).await;
        outcomes.expect(
            answer.as_ref().is_err_and(|status| {
                status.message().contains("_max") && status.message().len() < 1024
            }),
            || format!("{answer:?}").chars().take(300).collect(),
        );
    }
    outcomes
}

/// Handshakes with made-up user names and passwords from eight addresses starting at
/// 127.0.0.`first`, as fast as they are answered.
async fn login_flood(endpoint: &str, first: u8, deadline: Instant) -> Outcomes {
    let mut outcomes = Outcomes::default();
    let mut n = 0u64;
    while Instant::now() < deadline {
        n += 1;
        let source = attacker(first + (n % 8) as u8);
        let refused =
            match Client::connect_from(endpoint, source, &format!("user-{first}-{n}"), "guess")
                .await
            {
                Ok(_) => Err("a made-up user logged in".to_string()),
                Err(error) => {
                    let text = format!("{error:#}");
                    if text.contains("invalid user name or password")
                        || text.contains("too many failed logins")
                        || text.contains("too many logins at once")
                    {
                        Ok(())
                    } else {
                        Err(text)
                    }
                }
            };
        outcomes.expect(refused.is_ok(), || refused.unwrap_err());
    }
    outcomes
}

/// Well-formed gRPC calls carrying garbage: random tickets, commands, actions and
/// FlightData, without and with a valid session.
async fn garbage_flight(endpoint: &str, deadline: Instant) -> Outcomes {
    let mut outcomes = Outcomes::default();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let token = match Client::connect_from(endpoint, attacker(4), "reader", "reader-pw").await {
        Ok(client) => client.inner.token().cloned(),
        Err(_) => None,
    };
    let Ok(channel) = channel_from(endpoint, attacker(4)).await else {
        outcomes.expect(false, || "no channel".into());
        return outcomes;
    };
    let mut client = FlightServiceClient::new(channel);
    let mut round = 0u64;
    while Instant::now() < deadline {
        round += 1;
        let session = token.as_deref().filter(|_| round.is_multiple_of(2));
        let size = (rng.next_u64() % 4096) as usize;
        let answer: Result<(), tonic::Status> = match round % 5 {
            0 => client
                .do_get(with_token(
                    tonic::Request::new(Ticket::new(random_bytes(&mut rng, size))),
                    session,
                ))
                .await
                .map(|_| ()),
            1 => client
                .get_flight_info(with_token(
                    tonic::Request::new(FlightDescriptor::new_cmd(random_bytes(&mut rng, size))),
                    session,
                ))
                .await
                .map(|_| ()),
            2 => client
                .do_action(with_token(
                    tonic::Request::new(Action::new(
                        String::from_utf8_lossy(&random_bytes(&mut rng, 16)).to_string(),
                        random_bytes(&mut rng, size),
                    )),
                    session,
                ))
                .await
                .map(|_| ()),
            3 => {
                let data = FlightData::new()
                    .with_descriptor(FlightDescriptor::new_cmd(random_bytes(&mut rng, 64)))
                    .with_data_header(random_bytes(&mut rng, size))
                    .with_data_body(random_bytes(&mut rng, size));
                let stream = futures::stream::iter(vec![data.clone(), data]);
                client
                    .do_put(with_token(tonic::Request::new(stream), session))
                    .await
                    .map(|_| ())
            }
            _ => {
                let request = arrow_flight::HandshakeRequest {
                    protocol_version: 0,
                    payload: random_bytes(&mut rng, size).into(),
                };
                client
                    .handshake(with_token(
                        tonic::Request::new(futures::stream::iter(vec![request])),
                        session,
                    ))
                    .await
                    .map(|_| ())
            }
        };
        outcomes.expect(answer.is_err(), || format!("garbage accepted: {answer:?}"));
    }
    outcomes
}

/// `request` with `token` as its bearer token, if any.
fn with_token<T>(mut request: tonic::Request<T>, token: Option<&str>) -> tonic::Request<T> {
    if let Some(token) = token
        && let Ok(value) = format!("Bearer {token}").parse()
    {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// TCP connections that send random bytes (not HTTP/2): each must be closed by the node.
async fn garbage_bytes(address: SocketAddr, deadline: Instant) -> Outcomes {
    let mut outcomes = Outcomes::default();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    while Instant::now() < deadline {
        let closed = async {
            let mut stream = bound_tcp(attacker(5), address).await.ok()?;
            let _ = stream.write_all(&random_bytes(&mut rng, 4096)).await;
            let mut buf = [0u8; 4096];
            tokio::time::timeout(Duration::from_secs(15), async {
                while let Ok(1..) = stream.read(&mut buf).await {}
            })
            .await
            .ok()
        };
        let closed = closed.await.is_some();
        outcomes.expect(closed, || "a garbage connection stayed open 15 s".into());
    }
    outcomes
}

/// Slow-loris: 300 connections from one address, each sending a few bytes of the
/// HTTP/2 preface and then nothing. Past the per-address bound they must be closed at
/// once; the rest when the greeting deadline (10 s) passes.
async fn slow_loris(address: SocketAddr, deadline: Instant) -> Outcomes {
    silent_connections(300, attacker(6), address, b"PRI * HT", deadline, |held| {
        if held < Duration::from_secs(2) {
            Some("closed over the address bound")
        } else if (Duration::from_secs(9)..Duration::from_secs(14)).contains(&held) {
            Some("closed at the greeting deadline")
        } else {
            None
        }
    })
    .await
}

/// 50 connections to the peer listener (mutual TLS) that send the start of a TLS
/// ClientHello (more than the greeting's 24 bytes) and then nothing: each must be
/// closed by the TLS handshake deadline (10 s).
async fn stalled_tls_handshakes(address: SocketAddr, deadline: Instant) -> Outcomes {
    // A handshake record (22), TLS 1.0 record version, 512 bytes announced; a
    // ClientHello (1) of 508 bytes, version 1.2, then 32 "random" bytes.
    let mut partial = vec![22, 3, 1, 2, 0, 1, 0, 1, 252, 3, 3];
    partial.extend_from_slice(&[0x5a; 32]);
    silent_connections(50, attacker(7), address, &partial, deadline, |held| {
        (Duration::from_secs(9)..Duration::from_secs(14))
            .contains(&held)
            .then_some("closed at the TLS handshake deadline")
    })
    .await
}

/// `count` connections from `source` that each send `first` and then nothing, opened
/// again whenever the node closes them, until `deadline`. `classify` names how a
/// closure after `held` came about, or `None` if the node should not have closed it
/// then; a connection never closed is unexpected too.
async fn silent_connections(
    count: usize,
    source: IpAddr,
    address: SocketAddr,
    first: &[u8],
    deadline: Instant,
    classify: fn(Duration) -> Option<&'static str>,
) -> Outcomes {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..count {
        let first = first.to_vec();
        tasks.spawn(async move {
            let mut outcomes = Outcomes::default();
            while Instant::now() < deadline {
                let Ok(mut stream) = bound_tcp(source, address).await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let opened = Instant::now();
                let _ = stream.write_all(&first).await;
                let mut buf = [0u8; 64];
                let closed = tokio::time::timeout(
                    deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(15),
                    async { while let Ok(1..) = stream.read(&mut buf).await {} },
                )
                .await
                .is_ok();
                let held = opened.elapsed();
                let how = closed.then(|| classify(held)).flatten();
                outcomes.expect(how.is_some(), || {
                    format!("a silent connection was held {held:?} (closed: {closed})")
                });
                if let Some(how) = how {
                    *outcomes.tallies.entry(how).or_default() += 1;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            outcomes
        });
    }
    let mut total = Outcomes::default();
    while let Some(done) = tasks.join_next().await {
        total.merge(done.expect("silent connection task"));
    }
    total
}

/// Calls one client address holds open on a node: DoPut calls whose request stream
/// never sends its first message, so the node keeps each one accepted and unanswered
/// (the Flight SQL service waits for the command in that first message).
pub struct HeldCalls {
    /// The calls still unanswered; aborting them (or dropping the `HeldCalls`) lets the
    /// node free their slots.
    pub held: Vec<tokio::task::JoinHandle<Result<(), tonic::Status>>>,
    /// Calls the node answered at once with RESOURCE_EXHAUSTED.
    pub refused: usize,
    /// Anything else: a connection that failed, a call answered otherwise.
    pub unexpected: Vec<String>,
}

impl Drop for HeldCalls {
    fn drop(&mut self) {
        for call in &self.held {
            call.abort();
        }
    }
}

/// Opens `connections` HTTP/2 connections from `source`, each with as many calls as a
/// connection may carry (32), and sorts the calls after `settle` into held and refused.
pub async fn hold_calls(
    endpoint: &str,
    source: IpAddr,
    connections: usize,
    settle: Duration,
) -> HeldCalls {
    const STREAMS_PER_CONNECTION: usize = 32;
    let mut calls = Vec::new();
    let mut unexpected = Vec::new();
    for _ in 0..connections {
        let channel = match channel_from(endpoint, source).await {
            Ok(channel) => channel,
            Err(error) => {
                unexpected.push(format!("connect from {source}: {error:#}"));
                continue;
            }
        };
        for _ in 0..STREAMS_PER_CONNECTION {
            let mut client = FlightServiceClient::new(channel.clone());
            calls.push(tokio::spawn(async move {
                client
                    .do_put(tonic::Request::new(futures::stream::pending::<FlightData>()))
                    .await
                    .map(|_| ())
            }));
        }
    }
    tokio::time::sleep(settle).await;
    let mut held = Vec::new();
    let mut refused = 0;
    for call in calls {
        if !call.is_finished() {
            held.push(call);
            continue;
        }
        match call.await {
            Ok(Err(status)) if status.code() == tonic::Code::ResourceExhausted => refused += 1,
            other => unexpected.push(format!("a held call ended: {other:?}")),
        }
    }
    HeldCalls {
        held,
        refused,
        unexpected,
    }
}
