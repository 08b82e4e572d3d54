//! Nodes as a mesh over mutual TLS: peers see each other (reachability, RTT) in
//! `system.regions`; a caller whose certificate names another region than it claims, a
//! server answering for another region, and a certificate of another CA are refused; a
//! node configured with another region's certificate does not start; a killed peer shows
//! as unreachable and comes back after a restart.

use std::time::{Duration, Instant};

use domicile::peers::certs::dns_name;
use domicile::peers::proto::PingRequest;
use domicile::peers::proto::peer_client::PeerClient;
use domicile_tests::{Mesh, TestNode, column_strings, free_port, make_certs};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

const REGIONS: [&str; 3] = ["us-east", "eu-central", "ap-southeast"];

/// `system.regions` of `node` as (region, reachable) once `done` holds, or panics.
async fn wait_for_nodes(
    node: &TestNode,
    done: impl Fn(&[(String, String)]) -> bool,
) -> Vec<(String, String)> {
    let mut client = node.client("reader").await.expect("login");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let batches = client
            .query("SELECT region, reachable FROM system.regions ORDER BY region")
            .await
            .expect("system.regions");
        let rows: Vec<(String, String)> = column_strings(&batches, "region")
            .into_iter()
            .zip(column_strings(&batches, "reachable"))
            .collect();
        if done(&rows) {
            return rows;
        }
        assert!(Instant::now() < deadline, "{}: {rows:?}", node.region);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn all_reachable(rows: &[(String, String)]) -> bool {
    rows.len() == 3 && rows.iter().all(|(_, reachable)| reachable == "true")
}

fn peer_address(mesh: &Mesh, region: &str) -> String {
    let config =
        std::fs::read_to_string(mesh.nodes[0].dir.path().join("node.toml")).expect("config");
    // Every other node's config names `region`'s peer address; for the first node's own
    // address, read the second node's config.
    let other = if mesh.nodes[0].region == region {
        std::fs::read_to_string(mesh.nodes[1].dir.path().join("node.toml")).expect("config")
    } else {
        config
    };
    let marker = format!("region = \"{region}\"\naddress = \"");
    let start = other.find(&marker).expect("peer entry") + marker.len();
    other[start..]
        .split('"')
        .next()
        .expect("address")
        .to_string()
}

fn client_tls(mesh: &Mesh, cert_region: &str, server_region: &str) -> ClientTlsConfig {
    let dir = mesh.certs.path();
    let read = |name: String| std::fs::read(dir.join(name)).expect("cert file");
    ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.pem".into())))
        .identity(Identity::from_pem(
            read(format!("{cert_region}.pem")),
            read(format!("{cert_region}.key")),
        ))
        .domain_name(dns_name(server_region))
}

async fn ping(address: &str, tls: ClientTlsConfig, claim: &str) -> Result<String, String> {
    let channel = Endpoint::from_shared(format!("https://{address}"))
        .expect("endpoint")
        .tls_config(tls)
        .expect("tls")
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    PeerClient::new(channel)
        .ping(PingRequest {
            region: claim.into(),
        })
        .await
        .map(|reply| reply.into_inner().region)
        .map_err(|status| format!("{:?}: {}", status.code(), status.message()))
}

#[tokio::test(flavor = "multi_thread")]
async fn peers_see_each_other_and_impostors_are_refused() {
    let mut mesh = Mesh::start(&REGIONS).expect("mesh starts");
    for node in &mesh.nodes {
        wait_for_nodes(node, all_reachable).await;
        let mut client = node.client("reader").await.expect("login");
        let rtts = client
            .query("SELECT rtt_ms FROM system.regions WHERE NOT is_self")
            .await
            .expect("rtt");
        for rtt in column_strings(&rtts, "rtt_ms") {
            let rtt: f64 = rtt.parse().expect("a measured RTT");
            assert!(rtt > 0.0 && rtt < 2000.0, "{rtt}");
        }
    }

    let eu = peer_address(&mesh, "eu-central");
    // An honest peer is answered.
    assert_eq!(
        ping(&eu, client_tls(&mesh, "us-east", "eu-central"), "us-east").await,
        Ok("eu-central".to_string())
    );
    // A caller whose certificate names ap-southeast, claiming us-east.
    let lying = ping(
        &eu,
        client_tls(&mesh, "ap-southeast", "eu-central"),
        "us-east",
    )
    .await;
    assert!(
        matches!(&lying, Err(e) if e.contains("PermissionDenied") && e.contains("certificate names ap-southeast")),
        "{lying:?}"
    );
    // A server answering for eu-central when the caller expects us-east: TLS refuses.
    let wrong_server = ping(
        &eu,
        client_tls(&mesh, "ap-southeast", "us-east"),
        "ap-southeast",
    )
    .await;
    assert!(wrong_server.is_err(), "{wrong_server:?}");
    // A certificate of another CA.
    let rogue = tempfile::tempdir().expect("dir");
    make_certs(rogue.path(), &["us-east"]).expect("rogue certs");
    let read = |name: &str| std::fs::read(rogue.path().join(name)).expect("file");
    let foreign = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(
            std::fs::read(mesh.certs.path().join("ca.pem")).expect("ca"),
        ))
        .identity(Identity::from_pem(read("us-east.pem"), read("us-east.key")))
        .domain_name(dns_name("eu-central"));
    assert!(
        ping(&eu, foreign, "us-east").await.is_err(),
        "a foreign CA's certificate"
    );

    // A killed peer is seen as unreachable, and again after its restart.
    mesh.kill9("us-east");
    wait_for_nodes(mesh.node("eu-central"), |rows| {
        rows.iter()
            .any(|(region, reachable)| region == "us-east" && reachable == "false")
    })
    .await;
    mesh.restart("us-east").expect("restart");
    wait_for_nodes(mesh.node("eu-central"), all_reachable).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_with_another_regions_certificate_does_not_start() {
    let certs = tempfile::tempdir().expect("dir");
    make_certs(certs.path(), &["ap-southeast"]).expect("certs");
    let extra = format!(
        "\n[mesh]\nca_cert = \"{dir}/ca.pem\"\ncert = \"{dir}/ap-southeast.pem\"\nkey = \"{dir}/ap-southeast.key\"\n",
        dir = certs.path().display()
    );
    let port = free_port().expect("port");
    let refused = TestNode::start_full("eu-central", &extra, Some(port), |_| Ok(()));
    let error = format!("{:#}", refused.err().expect("must not start"));
    assert!(
        error.contains("mesh.cert names region ap-southeast, but this node is eu-central"),
        "{error}"
    );
}

const ACCOUNTS: &str = "CREATE TABLE accounts (id BIGINT PRIMARY KEY, region TEXT NOT NULL, \
     name TEXT, balance DECIMAL(18,2) NOT NULL) \
     WITH (locality = 'regional by row', region_column = 'region', pii = 'name', sensitive = 'balance')";

fn files_containing(dir: &std::path::Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if memchr::memmem::find(&std::fs::read(&path).expect("read"), needle.as_bytes())
            .is_some()
        {
            found.push(path);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_on_the_wrong_node_lands_at_home_and_nowhere_else() {
    let mut mesh = Mesh::start(&["us-east", "eu-central"]).expect("mesh starts");
    for node in &mesh.nodes {
        let mut admin = node.client("admin").await.expect("login");
        admin.update(ACCOUNTS).await.expect("create accounts");
        wait_for_nodes(node, |rows| {
            rows.iter().all(|(_, r)| r == "true") && rows.len() == 2
        })
        .await;
    }
    let canary = "canary-forwarded-5d1e";
    let mut us = mesh.node("us-east").client("writer").await.expect("login");
    let stored = us
        .update(&format!(
            "INSERT INTO accounts VALUES (7, 'eu-central', '{canary}', 10.00)"
        ))
        .await
        .expect("an EU row written on the US node is forwarded");
    assert_eq!(stored, 1);
    let mut eu = mesh
        .node("eu-central")
        .client("admin")
        .await
        .expect("login");
    let home = eu
        .query("SELECT name FROM accounts WHERE id = 7")
        .await
        .expect("read at home");
    assert_eq!(column_strings(&home, "name"), [canary]);
    let here = us
        .query("SELECT count(*) AS n FROM accounts")
        .await
        .expect("read on US");
    assert_eq!(
        column_strings(&here, "n"),
        ["0"],
        "the US node stores nothing of it"
    );
    let travel = us
        .query("SELECT decision FROM system.audit WHERE path = 'forward'")
        .await
        .expect("audit");
    assert_eq!(column_strings(&travel, "decision"), ["allow"]);

    // A read of EU rows on the US node is answered by the EU node, through the EU
    // policy for a reader homed in us-east: pii masked, sensitive removed.
    let remote = us
        .query("SELECT id, name, balance FROM accounts WHERE region = 'eu-central' AND id = 7")
        .await
        .expect("forwarded read");
    assert_eq!(column_strings(&remote, "id"), ["7"]);
    assert_eq!(column_strings(&remote, "name"), ["*****************5d1e"]);
    assert_eq!(column_strings(&remote, "balance"), [""]);
    let all_eu = us
        .query("SELECT count(*) AS n FROM accounts WHERE region = 'eu-central'")
        .await
        .expect("forwarded scan");
    assert_eq!(column_strings(&all_eu, "n"), ["1"]);
    let decided = eu
        .query("SELECT principal, decision, destination_region FROM system.audit WHERE path = 'query-result'")
        .await
        .expect("EU audit");
    assert_eq!(column_strings(&decided, "principal")[0], "writer@us-east");
    assert_eq!(column_strings(&decided, "decision")[0], "allow-with");
    assert_eq!(column_strings(&decided, "destination_region")[0], "us-east");

    // Rows of two regions in one statement are refused (no cross-node commit).
    let mixed = us
        .update(
            "INSERT INTO accounts VALUES (8, 'eu-central', 'x', 1.00), (9, 'us-east', 'y', 1.00)",
        )
        .await
        .expect_err("two homes");
    assert!(
        mixed.message().contains("homed in several regions"),
        "{mixed}"
    );

    // An UPDATE or DELETE of rows homed elsewhere is refused naming their region, not
    // answered with a count of 0 (issue 20): the row was just read through this node.
    for statement in [
        "UPDATE accounts SET balance = 11.00 WHERE region = 'eu-central' AND id = 7",
        "DELETE FROM accounts WHERE region = 'eu-central' AND id = 7",
        "DELETE FROM accounts WHERE region IN ('us-east', 'eu-central')",
        "UPDATE accounts SET balance = 0.00 WHERE id = 7 AND (region = 'eu-central' OR region = 'ap-southeast')",
    ] {
        let refused = us.update(statement).await.expect_err(statement);
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused}");
        assert!(
            refused.message().contains("names rows homed in")
                && refused.message().contains("eu-central")
                && refused.message().contains("changes only rows homed here"),
            "{statement}: {refused}"
        );
    }
    let unchanged = eu
        .query("SELECT balance FROM accounts WHERE id = 7")
        .await
        .expect("read at home");
    assert_eq!(column_strings(&unchanged, "balance"), ["10.00"]);
    // Without a region predicate a statement changes the rows homed here, as a read
    // without one reads them.
    assert_eq!(
        us.update("UPDATE accounts SET balance = 1.00 WHERE id = 7")
            .await
            .expect("local rows only"),
        0
    );

    // With eu-central down, a forwarded write fails naming it; local writes go on.
    mesh.kill9("eu-central");
    let down = us
        .update("INSERT INTO accounts VALUES (10, 'eu-central', 'z', 1.00)")
        .await
        .expect_err("home unreachable");
    assert!(
        down.message().contains("region eu-central is unreachable"),
        "{down}"
    );
    let unreadable = us
        .query("SELECT id FROM accounts WHERE region = 'eu-central'")
        .await
        .expect_err("home unreachable for reads too");
    assert!(
        unreadable
            .message()
            .contains("region eu-central is unreachable"),
        "{unreadable}"
    );
    us.update("INSERT INTO accounts VALUES (11, 'us-east', 'local', 1.00)")
        .await
        .expect("local writes keep working");
    mesh.restart("eu-central").expect("restart");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match us
            .update("INSERT INTO accounts VALUES (10, 'eu-central', 'z', 1.00)")
            .await
        {
            Ok(n) => {
                assert_eq!(n, 1);
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "after restart: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let us_index = mesh
        .nodes
        .iter()
        .position(|n| n.region == "us-east")
        .expect("us");
    mesh.nodes[us_index].stop().expect("stop");
    let leaked = files_containing(mesh.nodes[us_index].dir.path(), canary);
    assert!(leaked.is_empty(), "the forwarding node kept {leaked:?}");
}

/// Polls `f` until it returns `Ok`, for at most 30 s.
async fn eventually<T>(what: &str, mut f: impl AsyncFnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match f().await {
            Ok(value) => return value,
            Err(last) => assert!(Instant::now() < deadline, "{what}: {last}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_link_fails_forwarded_calls_clearly_and_local_work_goes_on() {
    let mesh = Mesh::start(&REGIONS).expect("mesh starts");
    for node in &mesh.nodes {
        let mut admin = node.client("admin").await.expect("login");
        admin.update(ACCOUNTS).await.expect("create accounts");
        wait_for_nodes(node, all_reachable).await;
    }
    let mut us = mesh.node("us-east").client("writer").await.expect("login");
    let mut eu = mesh
        .node("eu-central")
        .client("writer")
        .await
        .expect("login");
    let mut ap = mesh
        .node("ap-southeast")
        .client("writer")
        .await
        .expect("login");

    // Simulated WAN: 80 ms RTT between us-east and eu-central shows in system.regions.
    mesh.set_rtt("us-east", "eu-central", Duration::from_millis(80));
    eventually("RTT to eu-central", async || {
        let batches = us
            .query("SELECT rtt_ms FROM system.regions WHERE region = 'eu-central'")
            .await
            .map_err(|e| e.to_string())?;
        let rtt: f64 = column_strings(&batches, "rtt_ms")[0]
            .parse()
            .map_err(|_| "no RTT yet".to_string())?;
        if rtt >= 80.0 {
            Ok(())
        } else {
            Err(format!("rtt {rtt}"))
        }
    })
    .await;
    us.update("INSERT INTO accounts VALUES (1, 'eu-central', 'a', 1.00)")
        .await
        .expect("a forwarded write over the slow link");

    mesh.cut("us-east", "eu-central");
    let refused = us
        .update("INSERT INTO accounts VALUES (2, 'eu-central', 'b', 1.00)")
        .await
        .expect_err("the link is cut");
    assert!(
        refused
            .message()
            .contains("region eu-central is unreachable"),
        "{refused}"
    );
    us.update("INSERT INTO accounts VALUES (3, 'us-east', 'c', 1.00)")
        .await
        .expect("us-east writes locally");
    eu.update("INSERT INTO accounts VALUES (4, 'eu-central', 'd', 1.00)")
        .await
        .expect("eu-central writes locally");
    ap.update("INSERT INTO accounts VALUES (5, 'eu-central', 'e', 1.00)")
        .await
        .expect("ap-southeast still reaches eu-central");
    wait_for_nodes(mesh.node("us-east"), |rows| {
        rows.iter()
            .any(|(region, reachable)| region == "eu-central" && reachable == "false")
    })
    .await;

    mesh.heal("us-east", "eu-central");
    eventually("forwarded write after healing", async || {
        us.update("INSERT INTO accounts VALUES (2, 'eu-central', 'b', 1.00)")
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;
    let at_home = eu
        .query("SELECT count(*) AS n FROM accounts")
        .await
        .expect("count");
    assert_eq!(
        column_strings(&at_home, "n"),
        ["4"],
        "rows 1, 2, 4, 5 are homed in eu-central"
    );
}

/// Issue 21: a routed read was one gRPC message, refused above 4 MiB, and held whole on
/// both nodes. Now 50 MiB of EU rows read through the US node arrive complete and in
/// order, streamed in bounded messages, and an aggregate over them is computed as they
/// pass.
#[tokio::test]
async fn a_routed_read_of_50_mib_streams_through() {
    const ROWS: usize = 800;
    const BODY_BYTES: usize = 64 << 10;
    let mesh = Mesh::start(&["us-east", "eu-central"]).expect("mesh starts");
    for node in &mesh.nodes {
        let mut admin = node.client("admin").await.expect("login");
        admin
            .update(
                "CREATE TABLE blobs (id BIGINT PRIMARY KEY, region TEXT NOT NULL, body TEXT) \
                 WITH (locality = 'regional by row', region_column = 'region')",
            )
            .await
            .expect("create blobs");
        wait_for_nodes(node, |rows| {
            rows.iter().all(|(_, r)| r == "true") && rows.len() == 2
        })
        .await;
    }
    let body = |id: usize| format!("{id:08}").repeat(BODY_BYTES / 8);
    let mut eu = mesh
        .node("eu-central")
        .client("writer")
        .await
        .expect("login");
    for chunk in (0..ROWS).collect::<Vec<_>>().chunks(8) {
        let values: Vec<String> = chunk
            .iter()
            .map(|id| format!("({id}, 'eu-central', '{}')", body(*id)))
            .collect();
        eu.update(&format!("INSERT INTO blobs VALUES {}", values.join(", ")))
            .await
            .expect("insert");
    }

    let mut us = mesh.node("us-east").client("reader").await.expect("login");
    let rows = us
        .query("SELECT id, body FROM blobs WHERE region = 'eu-central' ORDER BY id")
        .await
        .expect("a routed read of 50 MiB");
    let ids = column_strings(&rows, "id");
    let bodies = column_strings(&rows, "body");
    assert_eq!(ids.len(), ROWS);
    let total: usize = bodies.iter().map(String::len).sum();
    assert_eq!(total, ROWS * BODY_BYTES, "every byte arrives");
    for (index, (id, text)) in ids.iter().zip(&bodies).enumerate() {
        assert_eq!(id, &index.to_string());
        assert!(*text == body(index), "row {index} arrived changed");
    }
    let sums = us
        .query("SELECT count(*) AS n, sum(length(body)) AS bytes FROM blobs WHERE region = 'eu-central'")
        .await
        .expect("aggregate over a routed read");
    assert_eq!(column_strings(&sums, "n"), [ROWS.to_string()]);
    assert_eq!(
        column_strings(&sums, "bytes"),
        [(ROWS * BODY_BYTES).to_string()]
    );

    // The same rows as a federated leg (mesh.blobs), streamed the same way; too large
    // for the leg cache, so a second read is answered by the EU node again, whole.
    for _ in 0..2 {
        let legs = us
            .query("SELECT id, body FROM mesh.blobs WHERE region = 'eu-central' ORDER BY id")
            .await
            .expect("a mesh leg of 50 MiB");
        let bodies = column_strings(&legs, "body");
        assert_eq!(bodies.len(), ROWS);
        assert!(
            bodies
                .iter()
                .enumerate()
                .all(|(id, text)| *text == body(id)),
            "a leg's rows arrived changed"
        );
    }
}
