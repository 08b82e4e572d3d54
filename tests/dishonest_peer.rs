//! Residency against peers that lie. A node trusts a peer for exactly what the peer's
//! certificate proves (its region), never for what it claims in a message: rows a peer
//! asks for are decided and audited for the region they physically go to (the caller's
//! certificate region) as well as for the end user's claimed home region, a forwarded
//! principal is capped (never admin) and audited as `user@<region>`, and a routed read
//! gives exactly what the federated (`mesh.*`) read of the same rows gives. Rows
//! released for display (routed, `mesh.*`, `global.*`) are never copied into storage by
//! `INSERT ... SELECT`; a saga step runs only if its orchestrator's log holds it.
//!
//! Every test here fails on the code before the fix: the routed read came back in clear
//! with no audit entry on the home node.

use domicile::peers::proto::peer_client::PeerClient;
use domicile::peers::proto::{ForwardedPrincipal, ScanRowsRequest};
use domicile_tests::arrow::array::RecordBatch;
use domicile_tests::{Mesh, TestNode, column_strings};
use std::time::{Duration, Instant};

const ACCOUNTS: &str = "CREATE TABLE accounts (id BIGINT PRIMARY KEY, region TEXT NOT NULL, \
     name TEXT, email TEXT, iban TEXT, balance DECIMAL(18,2) NOT NULL) \
     WITH (locality = 'regional by row', region_column = 'region', \
     pii = 'name, email, iban', sensitive = 'balance')";

const SG_ROW: &str = "INSERT INTO accounts VALUES (21, 'ap-southeast', 'Siti Rahman', \
     'siti@example.sg', 'SG12ABCD0001234567', 50.00)";

/// Waits until `node` sees every other node of the mesh as reachable.
async fn wait_for_peers(node: &TestNode, peers: usize) {
    let mut client = node.client("reader").await.expect("login");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let batches = client
            .query("SELECT count(*) AS n FROM system.regions WHERE reachable")
            .await
            .expect("system.regions");
        if column_strings(&batches, "n") == [peers.to_string()] {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: peers not reachable",
            node.region
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// us-east and ap-southeast with `accounts` on both and one Singapore customer.
async fn two_regions() -> Mesh {
    let mesh = Mesh::start(&["us-east", "ap-southeast"]).expect("mesh starts");
    for node in &mesh.nodes {
        let mut admin = node.client("admin").await.expect("login");
        admin.update(ACCOUNTS).await.expect("create accounts");
        wait_for_peers(node, 2).await;
    }
    let mut sg = mesh
        .node("ap-southeast")
        .client("admin")
        .await
        .expect("login");
    sg.update(SG_ROW).await.expect("stored at home");
    mesh
}

async fn audit_of(node: &TestNode) -> Vec<(String, String, String)> {
    let mut admin = node.client("admin").await.expect("login");
    let batches = admin
        .query(
            "SELECT principal, decision, destination_region FROM system.audit \
             WHERE path = 'query-result' ORDER BY seq",
        )
        .await
        .expect("audit");
    let principals = column_strings(&batches, "principal");
    let decisions = column_strings(&batches, "decision");
    let destinations = column_strings(&batches, "destination_region");
    principals
        .into_iter()
        .zip(decisions)
        .zip(destinations)
        .map(|((p, d), r)| (p, d, r))
        .collect()
}

fn decode(ipc: &[u8]) -> Vec<RecordBatch> {
    domicile_tests::arrow::ipc::reader::StreamReader::try_new(ipc, None)
        .expect("ipc")
        .collect::<Result<Vec<_>, _>>()
        .expect("batches")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_routed_read_is_decided_for_the_region_the_rows_go_to_like_a_mesh_read() {
    let mesh = two_regions().await;
    // `apac`: a reader homed in ap-southeast, connected to us-east. The rows are read
    // by ap-southeast's node and shown on us-east: they leave Singapore.
    let mut apac = mesh.node("us-east").client("apac").await.expect("login");
    let routed = apac
        .query(
            "SELECT id, name, email, iban, balance FROM accounts \
             WHERE region = 'ap-southeast' ORDER BY id",
        )
        .await
        .expect("routed read");
    for (column, clear) in [
        ("name", "Siti Rahman"),
        ("email", "siti@example.sg"),
        ("iban", "SG12ABCD0001234567"),
    ] {
        let got = column_strings(&routed, column);
        assert_eq!(got.len(), 1, "{column}: {got:?}");
        assert_ne!(got[0], clear, "{column} left Singapore in clear");
        assert!(got[0].contains('*'), "{column} is masked (PDPA): {got:?}");
    }
    assert_eq!(column_strings(&routed, "balance"), ["50.00"]);
    let audit = audit_of(mesh.node("ap-southeast")).await;
    assert_eq!(
        audit,
        [(
            "apac@us-east".to_string(),
            "allow-with".to_string(),
            "us-east".to_string()
        )],
        "the home node audits the release to the caller's region"
    );
    let meshed = apac
        .query(
            "SELECT id, name, email, iban, balance FROM mesh.accounts \
             WHERE mesh_region = 'ap-southeast' ORDER BY id",
        )
        .await
        .expect("mesh read");
    for column in ["id", "name", "email", "iban", "balance"] {
        assert_eq!(
            column_strings(&routed, column),
            column_strings(&meshed, column),
            "routed and federated reads of the same rows differ in {column}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_principal_gets_what_the_callers_region_may_see_and_no_more() {
    let mesh = two_regions().await;
    // Holding us-east's certificate, claim an admin homed in Singapore: the claim would
    // have skipped the decision entirely.
    let channel = mesh
        .peer_channel("us-east", "ap-southeast")
        .await
        .expect("peer channel");
    let mut peer = PeerClient::new(channel);
    let reply = peer
        .scan_rows(ScanRowsRequest {
            region: "us-east".into(),
            principal: Some(ForwardedPrincipal {
                user: "mallory".into(),
                role: "admin".into(),
                home_region: "ap-southeast".into(),
            }),
            table: "accounts".into(),
            columns: vec!["id".into(), "name".into(), "iban".into()],
            keys_ipc: Vec::new(),
            limit: 0,
        })
        .await
        .expect("a scan the caller's region may see (masked)")
        .into_inner();
    let replies: Vec<_> = futures::TryStreamExt::try_collect(reply)
        .await
        .expect("the rows stream");
    let batches: Vec<RecordBatch> = replies
        .iter()
        .flat_map(|reply| decode(&reply.arrow_ipc))
        .collect();
    assert_eq!(column_strings(&batches, "id"), ["21"]);
    for (column, clear) in [("name", "Siti Rahman"), ("iban", "SG12ABCD0001234567")] {
        let got = column_strings(&batches, column);
        assert_ne!(got, [clear], "{column} released in clear to a forged claim");
        assert!(got[0].contains('*'), "{column}: {got:?}");
    }
    let audit = audit_of(mesh.node("ap-southeast")).await;
    assert_eq!(
        audit,
        [(
            "mallory@us-east".to_string(),
            "allow-with".to_string(),
            "us-east".to_string()
        )]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_cannot_claim_another_region_than_its_certificate() {
    let mesh = two_regions().await;
    let channel = mesh
        .peer_channel("us-east", "ap-southeast")
        .await
        .expect("peer channel");
    let refused = PeerClient::new(channel)
        .scan_rows(ScanRowsRequest {
            // Claims to be Singapore itself: no egress at all would be decided.
            region: "ap-southeast".into(),
            principal: Some(ForwardedPrincipal {
                user: "mallory".into(),
                role: "reader".into(),
                home_region: "ap-southeast".into(),
            }),
            table: "accounts".into(),
            columns: vec!["id".into(), "name".into()],
            keys_ipc: Vec::new(),
            limit: 0,
        })
        .await
        .expect_err("a claim its certificate does not prove");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(audit_of(mesh.node("ap-southeast")).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn insert_select_copies_no_rows_released_for_display() {
    let mesh = two_regions().await;
    let us = mesh.node("us-east");
    let mut admin = us.client("admin").await.expect("login");
    admin
        .update(
            "CREATE TABLE copies (id BIGINT PRIMARY KEY, name TEXT) \
             WITH (locality = 'regional', pii = 'name')",
        )
        .await
        .expect("a local table");
    let mut us_row = admin;
    us_row
        .update(
            "INSERT INTO accounts VALUES (11, 'us-east', 'Uma Home', 'uma@example.com', \
             'US00HOME', 10.00)",
        )
        .await
        .expect("a US row");
    let mut writer = us.client("writer").await.expect("login");
    for source in ["mesh.accounts", "accounts WHERE region = 'ap-southeast'"] {
        let refused = writer
            .update(&format!("INSERT INTO copies SELECT id, name FROM {source}"))
            .await
            .expect_err(source);
        assert!(
            refused
                .message()
                .contains("INSERT ... SELECT may copy only rows stored on this node"),
            "{source}: {refused:?}"
        );
    }
    // Copying this node's own rows is what INSERT ... SELECT is for.
    let copied = writer
        .update("INSERT INTO copies SELECT id, name FROM accounts WHERE region = 'us-east'")
        .await
        .expect("a local copy");
    assert_eq!(copied, 1);
    let names = writer
        .query("SELECT name FROM copies")
        .await
        .expect("copies");
    assert_eq!(column_strings(&names, "name"), ["Uma Home"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_leg_reads_no_system_or_replica_table() {
    use domicile_tests::arrow_flight::Ticket;
    use domicile_tests::arrow_flight::sql::client::FlightSqlServiceClient;
    use domicile_tests::arrow_flight::sql::{ProstMessageExt, TicketStatementQuery};
    use futures::TryStreamExt;
    use prost::Message;

    let mesh = two_regions().await;
    // A routed read first, so ap-southeast's audit log has something to show.
    let mut apac = mesh.node("us-east").client("apac").await.expect("login");
    apac.query("SELECT id FROM accounts WHERE region = 'ap-southeast'")
        .await
        .expect("routed read");
    for sql in [
        "SELECT * FROM system.audit",
        "SELECT id, idempotency_key, last_error FROM system.sagas",
        "SELECT * FROM system.cdc",
    ] {
        let channel = mesh
            .peer_channel("us-east", "ap-southeast")
            .await
            .expect("peer channel");
        let mut client = FlightSqlServiceClient::new(channel);
        // Claims to be homed where the data is, to look like a local reader.
        client.set_header("x-domicile-user", "mallory");
        client.set_header("x-domicile-role", "reader");
        client.set_header("x-domicile-home-region", "ap-southeast");
        let ticket = TicketStatementQuery {
            statement_handle: sql.as_bytes().to_vec().into(),
        };
        let answer = match client
            .do_get(Ticket::new(ticket.as_any().encode_to_vec()))
            .await
        {
            Ok(stream) => stream
                .try_collect::<Vec<_>>()
                .await
                .map_err(|e| e.to_string()),
            Err(error) => Err(error.to_string()),
        };
        let refused = answer.expect_err(sql);
        assert!(refused.contains("peer leg reading"), "{sql}: {refused}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dml_of_another_regions_writer_reads_no_protected_column() {
    let mesh = two_regions().await;
    let sg = mesh.node("ap-southeast");
    // `visitor`: a writer homed in us-east, connected to ap-southeast. What its UPDATE
    // or DELETE learns from a predicate or an assignment (a matched-row count, a value
    // copied elsewhere) would reach the US with no decision by the PDPA policy.
    let mut visitor = sg.client("visitor").await.expect("login");
    for sql in [
        "UPDATE accounts SET balance = balance WHERE id = 21 AND iban LIKE 'SG12%'",
        "DELETE FROM accounts WHERE name = 'Siti Rahman'",
        "UPDATE accounts SET email = name WHERE id = 21",
    ] {
        let refused = visitor.update(sql).await.expect_err(sql);
        assert_eq!(
            refused.code(),
            tonic::Code::PermissionDenied,
            "{sql}: {refused:?}"
        );
        assert!(
            refused.message().contains("may not read"),
            "{sql}: {refused:?}"
        );
    }
    // Reading only public columns is a write like any other, decided by may-store.
    visitor
        .update("UPDATE accounts SET balance = 60.00 WHERE id = 21")
        .await
        .expect("an update that reads nothing protected");
    let mut local = sg.client("writer").await.expect("login");
    // Class downgrade: a name into a public column is refused even for a local writer.
    let refused = local
        .update("UPDATE accounts SET region = name WHERE id = 21")
        .await
        .expect_err("a pii value into a public column");
    assert!(
        refused.message().contains("would lose its data class"),
        "{refused:?}"
    );
    // An evaluation error over a stored value names the failure, not the value, even
    // when the engine prints the value bare (a regular expression built from a name).
    let failed = local
        .update(
            "UPDATE accounts SET balance = balance WHERE id = 21 \
             AND regexp_like('x', name || '(')",
        )
        .await
        .expect_err("an invalid regular expression");
    for secret in ["Siti", "Rahman"] {
        assert!(!failed.message().contains(secret), "{failed:?}");
    }
    let balance = local
        .query("SELECT balance, name FROM accounts WHERE id = 21")
        .await
        .expect("row");
    assert_eq!(column_strings(&balance, "name"), ["Siti Rahman"]);
}

// ---------------------------------------------------------------------------------
// Sagas: a step runs only if its orchestrator's log holds it.

mod sagas {
    use std::time::Duration;

    use domicile::cli::admin_client::AdminSession;
    use domicile::peers::proto::RunStepRequest;
    use domicile::peers::proto::peer_client::PeerClient;
    use domicile::saga::fields::Fields;
    use domicile::saga::{SagaRecord, SagaState};
    use domicile_tests::bank::balance;
    use domicile_tests::{Mesh, column_strings};

    async fn bank() -> Mesh {
        domicile_tests::bank::bank(Duration::from_secs(4)).await
    }

    fn transfer(cents: i64) -> Fields {
        domicile_tests::bank::transfer(1001, 2001, "eu-central", cents)
    }

    fn forged(
        claim: &str,
        saga_id: &str,
        direction: &str,
        epoch: u64,
        cents: i64,
    ) -> RunStepRequest {
        RunStepRequest {
            region: claim.into(),
            saga_id: saga_id.into(),
            saga_type: "transfer".into(),
            step: "credit".into(),
            direction: direction.into(),
            epoch,
            fields_json: serde_json::to_string(&transfer(cents)).expect("json"),
        }
    }

    async fn peer(mesh: &Mesh, cert: &str) -> PeerClient<tonic::transport::Channel> {
        PeerClient::new(
            mesh.peer_channel(cert, "eu-central")
                .await
                .expect("peer channel"),
        )
    }

    async fn settled(session: &mut AdminSession, id: &str) -> SagaRecord {
        domicile_tests::bank::settled(session, id, Duration::from_secs(60)).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_peer_cannot_run_a_step_its_orchestrator_did_not_record() {
        let mesh = bank().await;
        let (us, eu) = (mesh.node("us-east"), mesh.node("eu-central"));

        // The reproduction: us-east's certificate, a saga that exists nowhere, a credit
        // of 1,000,000.00 to an EU account.
        let refused = peer(&mesh, "us-east")
            .await
            .run_step(forged(
                "us-east",
                "01900000-0000-7000-8000-00000000f00d",
                "execute",
                1,
                100_000_000,
            ))
            .await
            .expect_err("a forged credit");
        assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
        assert_eq!(balance(eu, 2001).await, "5.00", "no money moved");

        // A live saga, its credit retrying while us-east <-> eu-central is cut.
        mesh.cut("us-east", "eu-central");
        let endpoint = format!("grpc://{}", us.admin.expect("admin API"));
        let mut session = AdminSession::connect(&endpoint, "writer", "writer-pw")
            .await
            .expect("admin session");
        let live = session
            .start_saga("transfer", &transfer(700), "dishonest-live")
            .await
            .expect("start");
        tokio::time::sleep(Duration::from_millis(500)).await;
        // An epoch of u64::MAX would fence the real orchestrator for good: refused.
        peer(&mesh, "us-east")
            .await
            .run_step(forged("us-east", &live.id, "compensate", u64::MAX, 700))
            .await
            .expect_err("an inflated epoch");
        // Another region may not drive it at all.
        let foreign = peer(&mesh, "ap-southeast")
            .await
            .run_step(forged("ap-southeast", &live.id, "execute", 1, 700))
            .await
            .expect_err("another region's step");
        assert_eq!(foreign.code(), tonic::Code::PermissionDenied, "{foreign:?}");
        mesh.heal("us-east", "eu-central");
        let saga = settled(&mut session, &live.id).await;
        assert_eq!(saga.state, SagaState::Committed, "{saga:?}");
        assert_eq!(saga.epoch, 1, "nothing raised the epoch: {saga:?}");
        assert_eq!(balance(eu, 2001).await, "12.00");
        assert_eq!(balance(us, 1001).await, "93.00");

        // The committed credit cannot be undone by a request its orchestrator's log does
        // not want (the saga committed), nor replayed with a larger amount.
        let undo = peer(&mesh, "us-east")
            .await
            .run_step(forged("us-east", &live.id, "compensate", 1, 700))
            .await
            .expect_err("a compensation nobody recorded");
        assert_eq!(undo.code(), tonic::Code::PermissionDenied, "{undo:?}");
        let _ = peer(&mesh, "us-east")
            .await
            .run_step(forged("us-east", &live.id, "execute", 1, 70_000))
            .await;
        assert_eq!(
            balance(eu, 2001).await,
            "12.00",
            "no forged step moved money"
        );

        // The participant decided and audited what its step stored and what its reply
        // carried back, under its own policy.
        let mut eu_admin = eu.client("admin").await.expect("login");
        let audit = eu_admin
            .query(
                "SELECT path, decision FROM system.audit \
                 WHERE principal = 'saga-participant' ORDER BY seq",
            )
            .await
            .expect("audit");
        let paths = column_strings(&audit, "path");
        assert!(paths.iter().any(|p| p == "store"), "{paths:?}");
        assert!(paths.iter().any(|p| p == "saga-step"), "{paths:?}");
    }

    /// A region whose node is compromised (it confirms any step it is asked about)
    /// drives sagas it orchestrates, and only those: a saga's first step runs in its
    /// orchestrator's region, as the participant's own plugin places the input. It
    /// cannot take over another region's saga whose id it learned, nor fence it: the
    /// participant keeps each orchestrator's sagas apart (no squatting).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_compromised_region_drives_its_own_sagas_and_cannot_take_over_another_regions() {
        let mesh = bank().await;
        let (us, eu) = (mesh.node("us-east"), mesh.node("eu-central"));
        mesh.cut("us-east", "eu-central");
        let mut session = domicile_tests::bank::writer_session(us).await;
        let live = session
            .start_saga("transfer", &transfer(700), "compromised-live")
            .await
            .expect("start");
        tokio::time::sleep(Duration::from_millis(300)).await;

        let _server = super::compromised::take_over(&mesh, "ap-southeast").await;
        // us-east's saga, as ap-southeast would like to run it: its first step runs in
        // us-east, so eu-central's plugin does not let ap-southeast drive it.
        let taken = peer(&mesh, "ap-southeast")
            .await
            .run_step(forged("ap-southeast", &live.id, "execute", 1, 70_000))
            .await
            .expect_err("another region's saga");
        assert_eq!(taken.code(), tonic::Code::PermissionDenied, "{taken:?}");
        assert!(
            taken.message().contains("credit@eu-central"),
            "names the placement: {taken:?}"
        );

        // The same id with an input whose first step is ap-southeast's: a saga of
        // ap-southeast's own, under its own name (its certificate proves the region,
        // its node vouches for the debit there). It runs, at an epoch of u64::MAX ...
        let mut own = forged("ap-southeast", &live.id, "execute", u64::MAX, 1);
        let mut input = transfer(1);
        for (name, field) in &mut input {
            if name == "from_region" {
                *field = domicile::saga::fields::Field::Text("ap-southeast".into());
            }
        }
        own.fields_json = serde_json::to_string(&input).expect("json");
        peer(&mesh, "ap-southeast")
            .await
            .run_step(own)
            .await
            .expect("a step of ap-southeast's own saga");
        assert_eq!(balance(eu, 2001).await, "5.01");

        // ... and fences nothing of us-east's saga of the same id: it commits at its
        // first epoch, its credit applied once.
        mesh.heal("us-east", "eu-central");
        let saga = settled(&mut session, &live.id).await;
        assert_eq!(saga.state, SagaState::Committed, "{saga:?}");
        assert_eq!(saga.epoch, 1, "{saga:?}");
        assert_eq!(balance(eu, 2001).await, "12.01");
        assert_eq!(balance(us, 1001).await, "93.00");
    }
}

/// A compromised region: ap-southeast's peer certificate and, in place of its node, a
/// server that confirms every saga step anyone asks it about (`GetSagaStep`).
mod compromised {
    use std::pin::Pin;

    use domicile::peers::proto::peer_server::{Peer, PeerServer};
    use domicile::peers::proto::{
        ChangeBatch, GetSagaStepReply, GetSagaStepRequest, InsertRowsReply, InsertRowsRequest,
        PingReply, PingRequest, RunStepReply, RunStepRequest, ScanRowsReply, ScanRowsRequest,
        StartSagaReply, StartSagaRequest, StreamChangesRequest,
    };
    use domicile_tests::Mesh;
    use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
    use tonic::{Request, Response, Status};

    struct ConfirmsEverything {
        region: String,
    }

    type Changes = Pin<Box<dyn futures::Stream<Item = Result<ChangeBatch, Status>> + Send>>;

    #[tonic::async_trait]
    impl Peer for ConfirmsEverything {
        type StreamChangesStream = Changes;
        type ScanRowsStream =
            Pin<Box<dyn futures::Stream<Item = Result<ScanRowsReply, Status>> + Send>>;

        async fn ping(&self, _: Request<PingRequest>) -> Result<Response<PingReply>, Status> {
            Ok(Response::new(PingReply {
                region: self.region.clone(),
            }))
        }
        async fn insert_rows(
            &self,
            _: Request<InsertRowsRequest>,
        ) -> Result<Response<InsertRowsReply>, Status> {
            Err(Status::unimplemented("compromised"))
        }
        async fn scan_rows(
            &self,
            _: Request<ScanRowsRequest>,
        ) -> Result<Response<Self::ScanRowsStream>, Status> {
            Err(Status::unimplemented("compromised"))
        }
        async fn stream_changes(
            &self,
            _: Request<StreamChangesRequest>,
        ) -> Result<Response<Changes>, Status> {
            Err(Status::unimplemented("compromised"))
        }
        async fn run_step(
            &self,
            _: Request<RunStepRequest>,
        ) -> Result<Response<RunStepReply>, Status> {
            Err(Status::unimplemented("compromised"))
        }
        async fn get_saga_step(
            &self,
            request: Request<GetSagaStepRequest>,
        ) -> Result<Response<GetSagaStepReply>, Status> {
            Ok(Response::new(GetSagaStepReply {
                epoch: request.into_inner().epoch,
            }))
        }
        async fn start_saga(
            &self,
            _: Request<StartSagaRequest>,
        ) -> Result<Response<StartSagaReply>, Status> {
            Err(Status::unimplemented("compromised"))
        }
    }

    /// Serves the compromised node of `region` on a free loopback port (mutual TLS with
    /// `region`'s certificate) and points every other node's link to `region` at it.
    pub(crate) async fn take_over(mesh: &Mesh, region: &str) -> tokio::task::JoinHandle<()> {
        let (cert, key, ca) = mesh.cert_files(region);
        let read = |path: &std::path::Path| std::fs::read(path).expect("cert file");
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(read(&cert), read(&key)))
            .client_ca_root(Certificate::from_pem(read(&ca)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listen");
        let address = listener.local_addr().expect("address");
        let service = PeerServer::new(ConfirmsEverything {
            region: region.to_string(),
        });
        let server = Server::builder()
            .tls_config(tls)
            .expect("tls")
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
        let task = tokio::spawn(async move {
            let _ = server.await;
        });
        for node in &mesh.nodes {
            if node.region != region {
                mesh.redirect(&node.region, region, address);
            }
        }
        task
    }
}

/// The change stream's history is not for a region that joined after it was relayed:
/// each message was decided (`may-leave` for replication) for the regions that were
/// peers then, and goes to no other. ap-southeast relays a change while us-east is its
/// only peer, then restarts with eu-central added to its peers: a follower holding
/// eu-central's certificate reads past that history without receiving it, and receives
/// the changes relayed after it joined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_that_joins_later_reads_none_of_the_change_history_decided_before() {
    use domicile::peers::proto::StreamChangesRequest;
    use futures::StreamExt;

    const RATES: &str = "CREATE TABLE rates (id BIGINT PRIMARY KEY, region TEXT NOT NULL, \
         label TEXT) WITH (locality = 'regional by row', region_column = 'region', cdc = 'on')";

    // What a follower holding `cert` receives from ap-southeast's stream from the start,
    // until its position has reached the stream's head: (messages, position).
    async fn follow(mesh: &Mesh, cert: &str) -> (usize, u64) {
        let channel = mesh
            .peer_channel(cert, "ap-southeast")
            .await
            .expect("peer channel");
        let mut stream = PeerClient::new(channel)
            .stream_changes(StreamChangesRequest {
                region: cert.into(),
                after_seq: 0,
            })
            .await
            .expect("stream opens")
            .into_inner();
        let (mut messages, mut position) = (0, 0);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let Ok(Some(batch)) = tokio::time::timeout(Duration::from_secs(5), stream.next()).await
            else {
                break;
            };
            let batch = batch.expect("batch");
            messages += batch.messages.len();
            position = position.max(batch.through_seq);
            if batch.stream_head_seq > 0 && position >= batch.stream_head_seq {
                break;
            }
        }
        (messages, position)
    }

    async fn insert_and_wait_relayed(mesh: &Mesh, id: u64) {
        let mut sg = mesh
            .node("ap-southeast")
            .client("admin")
            .await
            .expect("login");
        sg.update(&format!(
            "INSERT INTO rates VALUES ({id}, 'ap-southeast', 'sgd-usd')"
        ))
        .await
        .expect("insert");
        // Relayed once us-east's replica holds it.
        mesh.node("us-east")
            .wait_for(
                &format!("SELECT id FROM global.rates WHERE id = {id}"),
                Duration::from_secs(30),
                |batches| batches.iter().map(|b| b.num_rows()).sum::<usize>() == 1,
            )
            .await;
    }

    let mut mesh = two_regions().await;
    for node in &mesh.nodes {
        node.upload_plugin("cdc-redactor", "pii_redactor", 1)
            .expect("redactor upload");
        let mut admin = node.client("admin").await.expect("login");
        admin.update(RATES).await.expect("create rates");
    }
    insert_and_wait_relayed(&mesh, 1).await;
    let (before_join, _) = follow(&mesh, "us-east").await;
    assert_eq!(before_join, 1, "the destination region reads the change");

    // eu-central joins: a certificate from the mesh's CA, a peer entry on ap-southeast.
    domicile_tests::make_certs(mesh.certs.path(), &["eu-central"]).expect("eu cert");
    mesh.node("ap-southeast")
        .append_config("\n[[peers]]\nregion = \"eu-central\"\naddress = \"127.0.0.1:9\"\n")
        .expect("config");
    mesh.restart("ap-southeast").expect("restart");
    insert_and_wait_relayed(&mesh, 2).await;

    let (to_us, us_position) = follow(&mesh, "us-east").await;
    assert_eq!(to_us, 2, "us-east was a destination of both changes");
    let (to_eu, eu_position) = follow(&mesh, "eu-central").await;
    assert_eq!(
        to_eu, 1,
        "eu-central receives the change relayed after it joined, not the one before"
    );
    assert!(
        eu_position >= us_position,
        "the withheld history is passed over ({eu_position} < {us_position}), not a stall"
    );
}
