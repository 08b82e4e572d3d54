//! Calls to the node that owns a row: today, inserts of rows homed in another region.

use std::collections::HashMap;
use std::time::Duration;

use arrow::array::RecordBatch;
use thiserror::Error;
use tonic::transport::Endpoint;

use crate::trace_context::TracedChannel;

use super::PeerConfig;
use super::answer_deadline::{AnswerDeadline, Stall};
use super::proto::peer_client::PeerClient;
use super::proto::{
    ChangeBatch, ForwardedPrincipal, GetSagaStepReply, GetSagaStepRequest, InsertRowsRequest,
    RunStepReply, RunStepRequest, ScanRowsRequest, StartSagaReply, StartSagaRequest,
    StreamChangesRequest,
};
use super::tls::MeshTls;
use crate::auth::Principal;
use crate::error_kind::{Classify, ErrorKind};
use crate::grpc_status;

/// Rows read from a peer, in order, as they arrive.
pub type RowStream = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<RecordBatch, ForwardError>> + Send + 'static>,
>;

/// Why a forwarded write did not happen. Texts name regions and tables, not values.
#[derive(Debug, Error)]
pub enum ForwardError {
    #[error(
        "region {0} is not a peer of this node, so rows homed there cannot be reached from here"
    )]
    UnknownRegion(String),
    #[error(
        "region {region} is unreachable ({detail}); rows homed there cannot be written until it is back"
    )]
    Unreachable { region: String, detail: String },
    #[error("region {region} refused the rows: {message}")]
    Refused {
        region: String,
        /// The kind of the home's answer (`grpc_status::kind_of`).
        kind: ErrorKind,
        message: String,
    },
    #[error("cannot encode rows for region {0}")]
    Encode(String),
}

impl Classify for ForwardError {
    fn kind(&self) -> ErrorKind {
        match self {
            ForwardError::Unreachable { .. } => ErrorKind::Unavailable,
            ForwardError::UnknownRegion(_) => ErrorKind::Precondition,
            // The home's own answer, under its own kind.
            ForwardError::Refused { kind, .. } => *kind,
            ForwardError::Encode(_) => ErrorKind::Internal,
        }
    }
}

pub struct PeerRouter {
    region: String,
    clients: HashMap<String, PeerClient<TracedChannel>>,
    /// Channels without a per-call deadline, for long-lived streams (the follower
    /// detects a dead link by the stream's missing heartbeats instead).
    stream_clients: HashMap<String, PeerClient<TracedChannel>>,
    /// The same channels, for Flight SQL (federated query legs), whose deadline the
    /// caller sets.
    channels: HashMap<String, TracedChannel>,
    /// The deadline of one forwarded call (`[peers] timeout_ms`).
    timeout: Duration,
}

impl std::fmt::Debug for PeerRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerRouter")
            .field("peers", &self.clients.keys())
            .finish()
    }
}

impl PeerRouter {
    /// A router for a node without peers: every remote region is unknown.
    pub fn none(region: &str) -> Self {
        Self {
            region: region.into(),
            clients: HashMap::new(),
            stream_clients: HashMap::new(),
            channels: HashMap::new(),
            timeout: Duration::ZERO,
        }
    }

    pub fn new(
        region: &str,
        peers: &[PeerConfig],
        tls: &MeshTls,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let mut clients = HashMap::new();
        let mut stream_clients = HashMap::new();
        let mut channels = HashMap::new();
        for peer in peers {
            let endpoint = Endpoint::from_shared(format!("https://{}", peer.address))?
                .tls_config(tls.client(&peer.region))?
                .connect_timeout(timeout);
            let channel = endpoint.clone().timeout(timeout).connect_lazy();
            let channel = TracedChannel::new(channel, &peer.region);
            clients.insert(peer.region.clone(), PeerClient::new(channel));
            let undeadlined = TracedChannel::new(endpoint.connect_lazy(), &peer.region);
            stream_clients.insert(
                peer.region.clone(),
                PeerClient::new(undeadlined.clone())
                    .max_decoding_message_size(crate::limits::GRPC_MESSAGE_SIZE_MAX_BYTES),
            );
            channels.insert(peer.region.clone(), undeadlined);
        }
        Ok(Self {
            region: region.into(),
            clients,
            stream_clients,
            channels,
            timeout,
        })
    }

    pub fn local_region(&self) -> &str {
        &self.region
    }

    /// Whether this node is part of a mesh at all. A standalone node answers only for
    /// its own region: a filter on another region matches nothing here.
    pub fn has_peers(&self) -> bool {
        !self.clients.is_empty()
    }

    /// A channel to `region`'s node without a per-call deadline.
    pub fn channel(&self, region: &str) -> Option<TracedChannel> {
        self.channels.get(region).cloned()
    }

    /// The channel to `region`'s node that forwarded calls use.
    pub fn peer_client(&self, region: &str) -> Option<PeerClient<TracedChannel>> {
        self.clients.get(region).cloned()
    }

    fn client(&self, home: &str) -> Result<PeerClient<TracedChannel>, ForwardError> {
        self.clients
            .get(home)
            .cloned()
            .ok_or_else(|| ForwardError::UnknownRegion(home.into()))
    }

    /// Reads `columns` of the rows of `table` homed in `home` (only those with the
    /// primary keys in `keys`, if given) from `home`'s node, as `principal` may see them
    /// there.
    ///
    /// The rows arrive as a stream, one message of at most about
    /// `PEER_SCAN_MESSAGE_BYTES_TARGET` at a time, each checked (no compressed buffers)
    /// before it is decoded: neither node holds the whole answer. The call and every
    /// message after it must come within the peer timeout, so a stalled peer ends the
    /// read with `Unreachable` instead of holding it.
    pub async fn scan_rows(
        &self,
        home: &str,
        principal: &Principal,
        table: &str,
        columns: Vec<String>,
        keys: Option<&RecordBatch>,
        limit: Option<usize>,
    ) -> Result<RowStream, ForwardError> {
        let mut client = self
            .stream_clients
            .get(home)
            .cloned()
            .ok_or_else(|| ForwardError::UnknownRegion(home.into()))?;
        let keys_ipc = match keys {
            Some(keys) => encode(keys).map_err(|_| ForwardError::Encode(home.into()))?,
            None => Vec::new(),
        };
        let request = ScanRowsRequest {
            region: self.region.clone(),
            principal: Some(forwarded(principal)),
            table: table.into(),
            columns,
            keys_ipc,
            limit: limit.map_or(0, |l| l as u64),
        };
        // Each message within the peer timeout, the whole answer within
        // PEER_ANSWER_DURATION_MAX_S (a peer that trickles is cut off too).
        let deadline = AnswerDeadline::start(self.timeout);
        let stalled = move |home: &str, stall: Stall| ForwardError::Unreachable {
            region: home.into(),
            detail: stall.describe(deadline.idle()),
        };
        let replies = deadline
            .within(client.scan_rows(request))
            .await
            .map_err(|stall| stalled(home, stall))?
            .map_err(|status| classify(home, status))?
            .into_inner();
        let home = home.to_string();
        let batches = futures::stream::try_unfold(replies, move |mut replies| {
            let home = home.clone();
            async move {
                let reply = deadline
                    .within(replies.message())
                    .await
                    .map_err(|stall| stalled(&home, stall))?
                    .map_err(|status| classify(&home, status))?;
                let Some(reply) = reply else {
                    return Ok(None);
                };
                let batches = decode(&reply.arrow_ipc).map_err(|e| ForwardError::Refused {
                    region: home.clone(),
                    kind: ErrorKind::Internal,
                    message: format!("unreadable rows: {}", crate::redact_text::shown(&e)),
                })?;
                Ok(Some((
                    futures::stream::iter(batches.into_iter().map(Ok)),
                    replies,
                )))
            }
        });
        Ok(Box::pin(futures::TryStreamExt::try_flatten(batches)))
    }

    /// Runs a saga step on `region`'s node.
    pub async fn run_step(
        &self,
        region: &str,
        request: RunStepRequest,
    ) -> Result<RunStepReply, ForwardError> {
        let mut client = self.client(region)?;
        client
            .run_step(RunStepRequest {
                region: self.region.clone(),
                ..request
            })
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| classify(region, status))
    }

    /// Asks `region`'s node, the orchestrator of a saga, whether its log holds a step
    /// (dialed at its configured address; its certificate must name `region`).
    pub async fn get_saga_step(
        &self,
        region: &str,
        request: GetSagaStepRequest,
    ) -> Result<GetSagaStepReply, ForwardError> {
        let mut client = self.client(region)?;
        client
            .get_saga_step(GetSagaStepRequest {
                region: self.region.clone(),
                ..request
            })
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| classify(region, status))
    }

    /// Starts a saga on `owner`'s node, the node of its first step's region, for
    /// `principal`; its deadline is the call timeout plus `wait`.
    pub async fn start_saga(
        &self,
        owner: &str,
        principal: &Principal,
        request: StartSagaRequest,
        wait: Duration,
    ) -> Result<StartSagaReply, ForwardError> {
        let channel = self
            .channel(owner)
            .ok_or_else(|| ForwardError::UnknownRegion(owner.into()))?;
        // A reply is one saga record: tonic's default bound (4 MiB) holds it.
        let mut client = PeerClient::new(channel);
        let mut call = tonic::Request::new(StartSagaRequest {
            region: self.region.clone(),
            principal: Some(forwarded(principal)),
            ..request
        });
        call.set_timeout(self.timeout.saturating_add(wait));
        client
            .start_saga(call)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| classify(owner, status))
    }

    /// Regions this node can reach.
    pub fn peer_regions(&self) -> Vec<String> {
        let mut regions: Vec<String> = self.clients.keys().cloned().collect();
        regions.sort();
        regions
    }

    /// Follows `source`'s change stream from after `after_seq`.
    pub async fn stream_changes(
        &self,
        source: &str,
        after_seq: u64,
    ) -> Result<tonic::Streaming<ChangeBatch>, ForwardError> {
        let mut client = self
            .stream_clients
            .get(source)
            .cloned()
            .ok_or_else(|| ForwardError::UnknownRegion(source.into()))?;
        let request = StreamChangesRequest {
            region: self.region.clone(),
            after_seq,
        };
        client
            .stream_changes(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| classify(source, status))
    }

    /// Sends `rows` (full rows of `table`, all homed in `home`) to `home`'s node, which
    /// stores them for `principal`; returns how many it stored.
    pub async fn insert_rows(
        &self,
        home: &str,
        principal: &Principal,
        table: &str,
        rows: &RecordBatch,
    ) -> Result<u64, ForwardError> {
        let mut client = self.client(home)?;
        let arrow_ipc = encode(rows).map_err(|_| ForwardError::Encode(home.into()))?;
        let request = InsertRowsRequest {
            region: self.region.clone(),
            principal: Some(forwarded(principal)),
            table: table.into(),
            arrow_ipc,
        };
        client
            .insert_rows(request)
            .await
            .map(|reply| reply.into_inner().count)
            .map_err(|status| classify(home, status))
    }
}

fn forwarded(principal: &Principal) -> ForwardedPrincipal {
    ForwardedPrincipal {
        user: principal.user.clone(),
        role: principal.role.to_string(),
        home_region: principal.home_region.clone(),
    }
}

/// A transport failure means the home is unreachable; anything else is its answer.
fn classify(home: &str, status: tonic::Status) -> ForwardError {
    if grpc_status::is_unreachable(&status) {
        ForwardError::Unreachable {
            region: home.into(),
            detail: crate::redact_text::shown(&status.message()),
        }
    } else {
        ForwardError::Refused {
            region: home.into(),
            kind: grpc_status::kind_of(&status),
            message: crate::redact_text::shown(&status.message()),
        }
    }
}

fn encode(batch: &RecordBatch) -> Result<Vec<u8>, arrow::error::ArrowError> {
    encode_all(&batch.schema(), std::slice::from_ref(batch))
}

/// `batch` as Arrow IPC streams of about `target_bytes` of array data each (a single
/// row larger than that goes alone), for messages that stay small whatever the batch.
pub fn encode_chunks(
    batch: &RecordBatch,
    target_bytes: usize,
) -> Result<Vec<Vec<u8>>, arrow::error::ArrowError> {
    let rows = batch.num_rows();
    if rows == 0 {
        return Ok(Vec::new());
    }
    let bytes_per_row = batch.get_array_memory_size().div_ceil(rows).max(1);
    let rows_per_chunk = (target_bytes / bytes_per_row).clamp(1, rows);
    (0..rows)
        .step_by(rows_per_chunk)
        .map(|offset| {
            let chunk = batch.slice(offset, rows_per_chunk.min(rows - offset));
            encode_all(&chunk.schema(), std::slice::from_ref(&chunk))
        })
        .collect()
}

/// One Arrow IPC stream of `batches` (possibly none) of `schema`.
pub fn encode_all(
    schema: &arrow::datatypes::Schema,
    batches: &[RecordBatch],
) -> Result<Vec<u8>, arrow::error::ArrowError> {
    let mut out = Vec::new();
    let mut writer = arrow::ipc::writer::StreamWriter::try_new(&mut out, schema)?;
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    drop(writer);
    Ok(out)
}

/// The batches of one Arrow IPC stream from a peer; compressed buffers are refused
/// before anything is decoded (see `ipc_input`).
pub fn decode(bytes: &[u8]) -> Result<Vec<RecordBatch>, arrow::error::ArrowError> {
    super::ipc_input::uncompressed_stream(bytes).map_err(arrow::error::ArrowError::IpcError)?;
    super::ipc_input::guarded(|| {
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)?.collect()
    })
}
