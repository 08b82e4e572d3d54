//! The bank the saga tests share: a three-region mesh with the bundled `transfer-saga`
//! plugin, an `accounts` table (names `pii`, balances `sensitive`), account 1001 in
//! us-east holding 100.00 and 2001 in eu-central holding 5.00.

use std::time::{Duration, Instant};

use domicile::cli::admin_client::AdminSession;
use domicile::saga::fields::{Field, Fields};
use domicile::saga::{SagaRecord, SagaState};

use crate::{Mesh, TestNode, column_strings};

pub const REGIONS: [&str; 3] = ["us-east", "eu-central", "ap-southeast"];

pub const ACCOUNTS: &str = "CREATE TABLE accounts (
    id BIGINT PRIMARY KEY, region TEXT NOT NULL, name TEXT NOT NULL,
    balance DECIMAL(18,2) NOT NULL, currency TEXT NOT NULL
) WITH (locality = 'regional by row', region_column = 'region', pii = 'name',
        sensitive = 'balance')";

/// The bank on a fresh mesh whose saga steps time out after `step_timeout`.
pub async fn bank(step_timeout: Duration) -> Mesh {
    let mesh = Mesh::start_with(
        &REGIONS,
        &format!("\n[saga]\nstep_timeout_ms = {}\n", step_timeout.as_millis()),
    )
    .expect("mesh");
    open_accounts(&mesh).await;
    mesh
}

/// The bundled `transfer-saga` plugin and `accounts` on every node of `mesh`, with
/// account 1001 in us-east holding 100.00 and 2001 in eu-central holding 5.00.
pub async fn open_accounts(mesh: &Mesh) {
    for node in &mesh.nodes {
        node.upload_plugin("saga-step", "transfer_saga", 1)
            .expect("saga plugin");
        let mut admin = node.client("admin").await.expect("login");
        admin.update(ACCOUNTS).await.expect("accounts");
    }
    for (region, id, balance) in [("us-east", 1001, "100.00"), ("eu-central", 2001, "5.00")] {
        let mut writer = mesh.node(region).client("writer").await.expect("login");
        writer
            .update(&format!(
                "INSERT INTO accounts VALUES ({id}, '{region}', 'Holder {id}', {balance}, 'EUR')"
            ))
            .await
            .expect("account");
    }
}

/// An admin-API session of `node` as the harness user `writer` (homed in its region).
pub async fn writer_session(node: &TestNode) -> AdminSession {
    let endpoint = format!("http://{}", node.admin.expect("admin API"));
    AdminSession::connect(&endpoint, "writer", "writer-pw")
        .await
        .expect("admin session")
}

/// The input of a transfer of `cents` from `from` (in us-east) to `to` (in `to_region`).
pub fn transfer(from: i64, to: i64, to_region: &str, cents: i64) -> Fields {
    vec![
        ("from_account".into(), Field::Bigint(from)),
        ("to_account".into(), Field::Bigint(to)),
        ("amount".into(), Field::Decimal(cents.to_string(), 2)),
        ("currency".into(), Field::Text("EUR".into())),
        ("from_region".into(), Field::Text("us-east".into())),
        ("to_region".into(), Field::Text(to_region.into())),
    ]
}

/// The balance of account `id` as `node` stores it (text, e.g. "90.00"; empty if none).
pub async fn balance(node: &TestNode, id: i64) -> String {
    let mut client = node.client("admin").await.expect("login");
    let batches = client
        .query(&format!("SELECT balance FROM accounts WHERE id = {id}"))
        .await
        .expect("balance");
    column_strings(&batches, "balance").join(",")
}

/// The saga once terminal (or stuck), waiting on the node's answer, at most `timeout`.
pub async fn settled(session: &mut AdminSession, id: &str, timeout: Duration) -> SagaRecord {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let saga = session.saga_settled(id, left).await.expect("saga");
        if saga.state.is_terminal() || saga.state == SagaState::Stuck {
            return saga;
        }
        assert!(!left.is_zero(), "saga never settled: {saga:?}");
    }
}
