//! A leg on another region's node: Flight SQL `DoGet` of a statement ticket over the
//! mesh channel to that node, whose certificate-checked peer listener serves it
//! (`peer_api::PeerFlightSql`). The asking user travels in headers; the region is
//! proven by this node's certificate. The answer streams in bounded, checked messages.

use arrow::array::RecordBatch;
use arrow_flight::Ticket;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::{ProstMessageExt, TicketStatementQuery};
use futures::TryStreamExt;
use prost::Message;
use thiserror::Error;

use super::{HOME_REGION_HEADER, ROLE_HEADER, USER_HEADER};
use crate::auth::Principal;
use crate::peers::PeerRouter;

#[derive(Clone, Debug, Error)]
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

/// One region's answer, batch by batch as it arrives.
pub(crate) type LegStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<RecordBatch, LegError>> + Send>>;

/// Runs `sql` on `region`'s node for `principal`; the answer streams.
///
/// Every Flight message is bounded (`GRPC_MESSAGE_SIZE_MAX_BYTES`) and checked before it
/// is decoded: a compressed Arrow buffer names its inflated size, which the decoder would
/// allocate first, so it is refused. Each message must arrive within `idle` of the one
/// before (`Timeout` otherwise): a peer that stalls mid-answer cannot hold the query.
pub(crate) async fn run(
    router: &PeerRouter,
    region: &str,
    principal: &Principal,
    sql: String,
    idle: std::time::Duration,
) -> Result<LegStream, LegError> {
    let channel = router
        .channel(region)
        .ok_or_else(|| LegError::UnknownRegion(region.to_string()))?;
    let mut client = FlightServiceClient::new(channel)
        .max_decoding_message_size(crate::limits::GRPC_MESSAGE_SIZE_MAX_BYTES);
    // One round trip: the statement ticket `PeerFlightSql` hands out for a query is the
    // query itself, so the leg goes straight to DoGet instead of GetFlightInfo first.
    let ticket = TicketStatementQuery {
        statement_handle: sql.into_bytes().into(),
    };
    let mut request = tonic::Request::new(Ticket::new(ticket.as_any().encode_to_vec()));
    for (name, value) in [
        (USER_HEADER, principal.user.as_str()),
        (ROLE_HEADER, &principal.role.to_string()),
        (HOME_REGION_HEADER, principal.home_region.as_str()),
    ] {
        let value = value
            .parse()
            .map_err(|_| LegError::failed(region, format!("{name} is not a valid header")))?;
        request.metadata_mut().insert(name, value);
    }
    // Each message within `idle`, the whole answer within PEER_ANSWER_DURATION_MAX_S.
    let deadline = crate::peers::AnswerDeadline::start(idle);
    let timed_out = {
        let region = region.to_string();
        move |stall: crate::peers::Stall| match stall {
            crate::peers::Stall::Idle => LegError::Timeout {
                region: region.clone(),
                timeout_ms: idle.as_millis(),
            },
            crate::peers::Stall::Total => LegError::failed(&region, stall.describe(idle)),
        }
    };
    let messages = deadline
        .within(client.do_get(request))
        .await
        .map_err(&timed_out)?
        .map_err(|status| LegError::failed(region, status.message()))?
        .into_inner();
    let checked = futures::stream::try_unfold(messages, move |mut messages| {
        let timed_out = timed_out.clone();
        async move {
            let message = deadline
                .within(messages.message())
                .await
                .map_err(|stall| FlightError::ExternalError(Box::new(timed_out(stall))))?
                .map_err(|status| FlightError::Tonic(Box::new(status)))?;
            let Some(data) = message else {
                return Ok(None);
            };
            if !data.data_header.is_empty() {
                crate::peers::uncompressed_header(&data.data_header)
                    .map_err(FlightError::ProtocolError)?;
            }
            Ok(Some((data, messages)))
        }
    });
    let region = region.to_string();
    let decoded = crate::peers::guarded_batches(checked);
    let batches = decoded.map_err(move |error| match error {
        FlightError::ExternalError(inner) => match inner.downcast::<LegError>() {
            Ok(leg) => *leg,
            Err(other) => LegError::failed(&region, other),
        },
        other => LegError::failed(&region, status_text(other)),
    });
    Ok(Box::pin(batches))
}

/// The peer's own message, without the transport's wrapping.
fn status_text(error: arrow_flight::error::FlightError) -> String {
    match error {
        arrow_flight::error::FlightError::Tonic(status) => status.message().to_string(),
        other => other.to_string(),
    }
}
