//! A leg on another region's node: Flight SQL (`CommandStatementQuery`, then `DoGet`)
//! over the mesh channel to that node, whose certificate-checked peer listener serves
//! it (`peer_flight`). The asking user travels in headers; the region is proven by this
//! node's certificate.

use arrow::array::RecordBatch;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use thiserror::Error;

use super::{ROLE_HEADER, USER_HEADER};
use crate::auth::Principal;
use crate::mesh::PeerRouter;

#[derive(Debug, Error)]
pub(crate) enum LegError {
    #[error("region {0} is not in this node's mesh")]
    UnknownRegion(String),
    #[error("region {region} did not answer within {timeout_ms} ms")]
    Timeout { region: String, timeout_ms: u128 },
    #[error("region {region} failed: {message}")]
    Failed { region: String, message: String },
}

impl LegError {
    pub(crate) fn failed(region: &str, error: impl std::fmt::Display) -> Self {
        LegError::Failed {
            region: region.to_string(),
            message: error.to_string(),
        }
    }
}

/// Runs `sql` on `region`'s node for `principal` and collects the answer.
pub(crate) async fn run(
    router: &PeerRouter,
    region: &str,
    principal: &Principal,
    sql: String,
) -> Result<Vec<RecordBatch>, LegError> {
    let channel = router
        .channel(region)
        .ok_or_else(|| LegError::UnknownRegion(region.to_string()))?;
    let mut client = FlightSqlServiceClient::new(channel);
    client.set_header(USER_HEADER, principal.user.clone());
    client.set_header(ROLE_HEADER, principal.role.to_string());
    let info = client
        .execute(sql, None)
        .await
        .map_err(|e| LegError::failed(region, status_text(e)))?;
    let mut batches = Vec::new();
    for endpoint in info.endpoint {
        let ticket = endpoint
            .ticket
            .ok_or_else(|| LegError::failed(region, "an endpoint without a ticket"))?;
        let stream = client
            .do_get(ticket)
            .await
            .map_err(|e| LegError::failed(region, status_text(e)))?;
        let mut part: Vec<RecordBatch> = stream
            .try_collect()
            .await
            .map_err(|e| LegError::failed(region, status_text(e)))?;
        batches.append(&mut part);
    }
    Ok(batches)
}

/// The peer's own message, without the transport's wrapping.
fn status_text(error: arrow_flight::error::FlightError) -> String {
    match error {
        arrow_flight::error::FlightError::Tonic(status) => status.message().to_string(),
        other => other.to_string(),
    }
}
