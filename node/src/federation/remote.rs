//! A leg on another region's node: Flight SQL `DoGet` of a statement ticket over the
//! mesh channel to that node, whose certificate-checked peer listener serves it
//! (`peer_api::PeerFlightSql`). The asking user travels in headers; the region is
//! proven by this node's certificate.

use arrow::array::RecordBatch;
use arrow_flight::Ticket;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{ProstMessageExt, TicketStatementQuery};
use futures::TryStreamExt;
use prost::Message;
use thiserror::Error;

use super::{HOME_REGION_HEADER, ROLE_HEADER, USER_HEADER};
use crate::auth::Principal;
use crate::peers::PeerRouter;

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
            // A leg's error may be DataFusion's, quoting a value it failed on.
            message: crate::redact_text::withhold_values(
                &error.to_string(),
                crate::redact_text::Origin::Engine,
            ),
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
    client.set_header(HOME_REGION_HEADER, principal.home_region.clone());
    // One round trip: the statement ticket `PeerFlightSql` hands out for a query is the
    // query itself, so the leg goes straight to DoGet instead of GetFlightInfo first.
    let ticket = TicketStatementQuery {
        statement_handle: sql.into_bytes().into(),
    };
    let stream = client
        .do_get(Ticket::new(ticket.as_any().encode_to_vec()))
        .await
        .map_err(|e| LegError::failed(region, status_text(e)))?;
    stream
        .try_collect()
        .await
        .map_err(|e| LegError::failed(region, status_text(e)))
}

/// The peer's own message, without the transport's wrapping.
fn status_text(error: arrow_flight::error::FlightError) -> String {
    match error {
        arrow_flight::error::FlightError::Tonic(status) => status.message().to_string(),
        other => other.to_string(),
    }
}
