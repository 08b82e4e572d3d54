//! Distributed tracing (issue 25, item 1): two nodes export their spans over OTLP to a
//! receiver in this process; a client's W3C `traceparent` is continued through a routed
//! read (client → US node → peer call → EU node) and a committed change is followed into
//! the other region's replica (EU commit → CDC relay → US apply). No span holds a value
//! of a row or the text of a statement.

use std::time::Duration;

use domicile_tests::otlp::{ExportedSpan, OtlpReceiver};
use domicile_tests::{Mesh, TestNode, column_strings};

const ACCOUNTS: &str = "CREATE TABLE accounts (
    id BIGINT PRIMARY KEY, region TEXT NOT NULL, name TEXT NOT NULL, iban TEXT,
    balance DECIMAL(18,2) NOT NULL
) WITH (locality = 'regional by row', region_column = 'region',
        pii = 'name, iban', sensitive = 'balance', cdc = 'on')";

const CANARY_NAME: &str = "Traceable Canary 7c31";
const CANARY_IBAN: &str = "DE44500105175407324931";

/// Spans are exported within a second or so; a loaded 2-core machine may take longer.
const EXPORTED_WITHIN: Duration = Duration::from_secs(30);

/// A random-looking but fixed trace id per test step, as a client would make one.
fn traceparent(trace_id: &str) -> String {
    format!("00-{trace_id}-00f067aa0ba902b7-01")
}

async fn reachable(node: &TestNode) {
    node.wait_for(
        "SELECT reachable FROM system.regions",
        Duration::from_secs(30),
        |batches| {
            let reachable = column_strings(batches, "reachable");
            reachable.len() == 2 && reachable.iter().all(|r| r == "true")
        },
    )
    .await;
}

/// A us-east / eu-central mesh whose nodes export to `receiver`, with `extra` config,
/// both with the bundled PII redactor and `accounts`, reachable to each other.
async fn traced_mesh(receiver: &OtlpReceiver, extra: &str) -> Mesh {
    let config = format!(
        "\n[telemetry]\notlp_endpoint = \"{}\"\n{extra}",
        receiver.endpoint
    );
    let mesh = Mesh::start_with(&["us-east", "eu-central"], &config).expect("mesh starts");
    for node in &mesh.nodes {
        node.upload_plugin("cdc-redactor", "pii_redactor", 1)
            .expect("redactor upload");
        let mut admin = node.client("admin").await.expect("login");
        admin.update(ACCOUNTS).await.expect("create accounts");
    }
    for node in &mesh.nodes {
        reachable(node).await;
    }
    mesh
}

/// Inserts account `id` homed in eu-central, holding the canaries, on `node` under a
/// client-begun trace `trace_id`.
async fn insert_traced(node: &TestNode, id: u32, trace_id: &str) {
    let mut writer = node.client("writer").await.expect("login");
    writer
        .inner
        .set_header("traceparent", traceparent(trace_id));
    writer
        .update(&format!(
            "INSERT INTO accounts VALUES ({id}, 'eu-central', '{CANARY_NAME}', '{CANARY_IBAN}', 10.00)"
        ))
        .await
        .expect("insert at home");
}

fn in_trace<'a>(spans: &'a [ExportedSpan], trace_id: &str) -> Vec<&'a ExportedSpan> {
    spans.iter().filter(|s| s.trace_id == trace_id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_follows_a_routed_read_and_a_change_across_two_regions() {
    let receiver = OtlpReceiver::start().await.expect("OTLP receiver");
    let mesh = traced_mesh(&receiver, "").await;
    let (us, eu) = (mesh.node("us-east"), mesh.node("eu-central"));

    // A write at home whose change replicates, in a trace the client began.
    let write_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    insert_traced(eu, 7, write_trace).await;

    // A read on the US node of the row homed in Frankfurt: answered by the EU node.
    let read_trace = "0af7651916cd43dd8448eb211c80319c";
    let mut reader = us.client("writer").await.expect("login");
    reader
        .inner
        .set_header("traceparent", traceparent(read_trace));
    let answer = reader
        .query("SELECT id, name FROM accounts WHERE region = 'eu-central' AND id = 7")
        .await
        .expect("routed read");
    assert_eq!(column_strings(&answer, "id"), ["7"]);
    assert_ne!(
        column_strings(&answer, "name"),
        [CANARY_NAME],
        "masked for the US"
    );

    let spans = receiver
        .wait_for(
            "the routed read's spans from both nodes",
            EXPORTED_WITHIN,
            |spans| {
                let read = in_trace(spans, read_trace);
                read.iter().any(|s| s.region == "eu-central" && s.kind == 2)
                    && read
                        .iter()
                        .any(|s| s.region == "us-east" && s.name == "statement")
            },
        )
        .await;
    let read = in_trace(&spans, read_trace);
    // The US node continued the client's trace: its server span's parent is the
    // client's span.
    let us_server = read
        .iter()
        .find(|s| s.region == "us-east" && s.kind == 2 && s.parent_span_id == "00f067aa0ba902b7")
        .unwrap_or_else(|| panic!("no US server span under the client's: {read:#?}"));
    assert_eq!(us_server.attribute("rpc.system"), Some("grpc"));
    // The EU node's server span is the child of a US peer call of the same trace.
    let eu_server = read
        .iter()
        .find(|s| s.region == "eu-central" && s.kind == 2)
        .expect("an EU server span");
    let peer_call = read
        .iter()
        .find(|s| s.span_id == eu_server.parent_span_id)
        .unwrap_or_else(|| panic!("the EU span's parent is not in the trace: {read:#?}"));
    assert_eq!(peer_call.region, "us-east");
    assert_eq!(peer_call.kind, 3, "a client span");
    assert_eq!(peer_call.attribute("peer.region"), Some("eu-central"));
    for name in ["plan", "statement"] {
        assert!(
            read.iter().any(|s| s.region == "us-east" && s.name == name),
            "no US {name} span: {read:#?}"
        );
    }
    // The EU node decided what may leave by its policy, inside the same trace.
    assert!(
        read.iter()
            .any(|s| s.region == "eu-central" && s.name == "plugin call"),
        "no EU policy call in the read's trace: {read:#?}"
    );

    // The change: committed in the EU in the write's trace, relayed, applied in the US
    // under the same trace.
    let spans = receiver
        .wait_for("the change's apply in the US", EXPORTED_WITHIN, |spans| {
            in_trace(spans, write_trace)
                .iter()
                .any(|s| s.region == "us-east" && s.name == "cdc apply")
        })
        .await;
    let write = in_trace(&spans, write_trace);
    assert!(
        write
            .iter()
            .any(|s| s.region == "eu-central" && s.name == "storage commit"),
        "{write:#?}"
    );
    assert!(
        spans.iter().any(|s| s.region == "eu-central"
            && s.name == "cdc relay"
            && s.linked_traces.iter().any(|t| t == write_trace)),
        "the relay batch links the write's trace"
    );
    let replica = us
        .wait_for(
            "SELECT id FROM global.accounts WHERE id = 7",
            Duration::from_secs(30),
            |batches| column_strings(batches, "id") == ["7"],
        )
        .await;
    assert_eq!(column_strings(&replica, "id"), ["7"]);

    // Nothing of the rows or the statements is in any span.
    let spans = receiver.spans();
    for span in &spans {
        let name = [("name".to_string(), span.name.clone())];
        for (key, value) in span.attributes.iter().chain(&name) {
            for secret in [
                CANARY_NAME,
                CANARY_IBAN,
                "7c31",
                "INSERT",
                "SELECT",
                "accounts VALUES",
            ] {
                assert!(
                    !value.contains(secret),
                    "span {} ({}) attribute {key} holds {secret:?}: {value}",
                    span.name,
                    span.region
                );
            }
        }
    }
    // The peer monitor's pings and health probes are not traced: every exported span
    // belongs to a trace some client or change began.
    assert!(
        !spans
            .iter()
            .any(|s| s.attribute("rpc.method") == Some("Ping")
                || s.attribute("rpc.service") == Some("grpc.health.v1.Health")),
        "background pings were traced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_traceparent_starts_a_trace_of_its_own_and_the_query_is_answered() {
    let receiver = OtlpReceiver::start().await.expect("OTLP receiver");
    let node = TestNode::start_with(
        "us-east",
        &format!("\n[telemetry]\notlp_endpoint = \"{}\"\n", receiver.endpoint),
        |_| Ok(()),
    )
    .expect("node starts");
    let oversize = format!("00-{}-00f067aa0ba902b7-01", "ab".repeat(400));
    for hostile in [
        "not a trace".to_string(),
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01".to_string(),
        oversize,
    ] {
        let mut client = node.client("reader").await.expect("login");
        client.inner.set_header("traceparent", hostile.clone());
        let answer = client.query("SELECT 1 AS one").await.expect("answered");
        assert_eq!(column_strings(&answer, "one"), ["1"], "{hostile}");
    }
    let spans = receiver
        .wait_for("the statements' spans", EXPORTED_WITHIN, |spans| {
            spans.iter().filter(|s| s.name == "statement").count() >= 3
        })
        .await;
    for span in spans.iter().filter(|s| s.kind == 2) {
        assert!(span.parent_span_id.is_empty(), "a root: {span:?}");
        assert_ne!(span.trace_id, "00000000000000000000000000000000");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_across_regions_is_one_trace() {
    use domicile_tests::bank;
    let receiver = OtlpReceiver::start().await.expect("OTLP receiver");
    let telemetry = format!("\n[telemetry]\notlp_endpoint = \"{}\"\n", receiver.endpoint);
    let mesh = Mesh::start_with(&["us-east", "eu-central"], &telemetry).expect("mesh starts");
    bank::open_accounts(&mesh).await;
    for node in &mesh.nodes {
        reachable(node).await;
    }
    let transfer_trace = "5b8aa5a2d2c872e8321cf37308d69df2";
    let mut writer = mesh.node("us-east").client("writer").await.expect("login");
    writer
        .inner
        .set_header("traceparent", traceparent(transfer_trace));
    writer
        .query(
            "SELECT id, state FROM start_saga('transfer', 'traced-transfer-1', {\
             'from_account': 1001, 'to_account': 2001, 'amount': 7.00, 'currency': 'EUR', \
             'from_region': 'us-east', 'to_region': 'eu-central'})",
        )
        .await
        .expect("transfer started");
    mesh.node("eu-central")
        .wait_for(
            "SELECT balance FROM accounts WHERE id = 2001",
            Duration::from_secs(30),
            |batches| column_strings(batches, "balance") == ["12.00"],
        )
        .await;
    let spans = receiver
        .wait_for(
            "the transfer's steps in both regions",
            EXPORTED_WITHIN,
            |spans| {
                let steps: Vec<_> = in_trace(spans, transfer_trace)
                    .into_iter()
                    .filter(|s| s.name == "saga step")
                    .collect();
                steps.iter().any(|s| s.region == "us-east")
                    && steps.iter().any(|s| s.region == "eu-central")
            },
        )
        .await;
    let transfer = in_trace(&spans, transfer_trace);
    let credit = transfer
        .iter()
        .find(|s| s.region == "eu-central" && s.name == "saga step")
        .expect("the credit's step in Frankfurt");
    assert_eq!(credit.attribute("saga.orchestrator"), Some("us-east"));
    assert_eq!(credit.attribute("saga.step_region"), Some("eu-central"));
    // Its parent chain reaches the US node's call to Frankfurt.
    let server = transfer
        .iter()
        .find(|s| s.span_id == credit.parent_span_id)
        .expect("the step's server span");
    let call = transfer
        .iter()
        .find(|s| s.span_id == server.parent_span_id)
        .expect("the US peer call");
    assert_eq!((call.region.as_str(), call.kind), ("us-east", 3));
    for span in &transfer {
        for (key, value) in &span.attributes {
            assert!(!value.contains("Holder"), "{key} = {value}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_kafka_continues_its_statements_trace() {
    let broker = domicile_tests::KafkaBroker::start().expect("tansu starts");
    let receiver = OtlpReceiver::start().await.expect("OTLP receiver");
    let kafka = format!("[cdc]\nkafka_brokers = \"{}\"\n", broker.brokers());
    let mesh = traced_mesh(&receiver, &kafka).await;
    let (us, eu) = (mesh.node("us-east"), mesh.node("eu-central"));
    let write_trace = "7e1f0c2ab1a94d2f8e3c5b6a79d80e11";
    insert_traced(eu, 9, write_trace).await;
    us.wait_for(
        "SELECT id FROM global.accounts WHERE id = 9",
        Duration::from_secs(60),
        |batches| column_strings(batches, "id") == ["9"],
    )
    .await;
    // The US node applied it from a Kafka topic: its apply span continues the trace the
    // message's `traceparent` header carried through the broker.
    receiver
        .wait_for("the Kafka-fed apply in the US", EXPORTED_WITHIN, |spans| {
            in_trace(spans, write_trace)
                .iter()
                .any(|s| s.region == "us-east" && s.name == "cdc apply")
        })
        .await;
    drop(broker);
}
