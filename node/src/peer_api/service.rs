//! The server side of the node-to-node API.

use std::collections::HashSet;
use std::sync::Arc;

use futures::TryStreamExt;
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::auth::{Principal, Role};
use crate::error_kind::ErrorKind;
use crate::flight::sql_status;
use crate::grpc_status::{status, status_of};
use crate::peers::proto::peer_server::Peer;
use crate::peers::proto::{
    ChangeBatch, ForwardedPrincipal, GetSagaStepReply, GetSagaStepRequest, InsertRowsReply,
    InsertRowsRequest, PingReply, PingRequest, RunStepReply, RunStepRequest, ScanRowsReply,
    ScanRowsRequest, StartSagaReply, StartSagaRequest, StreamChangesRequest,
};
use crate::peers::{decode_ipc, encode_chunks};
use crate::plugins::StepDirection;
use crate::saga::SagaEngine;
use crate::saga::fields::Fields;
use crate::saga::participant::StepRequest;
use crate::sql::SqlEngine;

/// A peer request, which names the region its caller claims to be.
trait ClaimsRegion {
    fn claimed_region(&self) -> &str;
}

macro_rules! claims_region {
    ($($request:ty),*) => {
        $(impl ClaimsRegion for $request {
            fn claimed_region(&self) -> &str {
                &self.region
            }
        })*
    };
}

claims_region!(
    RunStepRequest,
    GetSagaStepRequest,
    StartSagaRequest,
    StreamChangesRequest,
    PingRequest,
    InsertRowsRequest,
    ScanRowsRequest
);

pub struct PeerService {
    region: String,
    peers: HashSet<String>,
    engine: Arc<SqlEngine>,
    /// Runs the steps peers ask for, and answers for the sagas this node orchestrates.
    sagas: Arc<SagaEngine>,
    /// Ends long-lived change streams when the node stops.
    shutdown: watch::Receiver<bool>,
}

impl PeerService {
    pub fn new(
        region: String,
        peers: impl IntoIterator<Item = String>,
        engine: Arc<SqlEngine>,
        sagas: Arc<SagaEngine>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            region,
            peers: peers.into_iter().collect(),
            engine,
            sagas,
            shutdown,
        }
    }

    /// The caller's region, proven by its certificate and matching the region the
    /// request claims (`identity::peer_region`). Every peer call starts here.
    fn authenticate<T: ClaimsRegion>(&self, request: &Request<T>) -> Result<String, Status> {
        let claimed = request.get_ref().claimed_region();
        super::identity::peer_region(request, &self.peers, Some(claimed), &self.region)
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    type StreamChangesStream = ReceiverStream<Result<ChangeBatch, Status>>;
    type ScanRowsStream = std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<ScanRowsReply, Status>> + Send + 'static>,
    >;

    async fn run_step(
        &self,
        request: Request<RunStepRequest>,
    ) -> Result<Response<RunStepReply>, Status> {
        let caller = self.authenticate(&request)?;
        let body = request.into_inner();
        let direction = match body.direction.as_str() {
            "execute" => StepDirection::Execute,
            "compensate" => StepDirection::Compensate,
            other => {
                return Err(status(
                    ErrorKind::Invalid,
                    format!("direction {other} is not execute or compensate"),
                ));
            }
        };
        // The saga, step, direction, input and epoch are checked against the
        // orchestrator's log (`SagaEngine::run_for_peer`); only the region is proven here.
        let fields: Fields = serde_json::from_str(&body.fields_json).map_err(|e| {
            status(
                ErrorKind::Invalid,
                format!(
                    "fields are not saga fields: {}",
                    crate::redact_text::shown(&e)
                ),
            )
        })?;
        let step = StepRequest {
            saga_id: body.saga_id,
            saga_type: body.saga_type,
            step: body.step,
            direction,
            epoch: body.epoch,
            fields,
            orchestrator: None,
        };
        let (saga, name) = (step.saga_id.clone(), step.step.clone());
        let outcome = self.sagas.run_for_peer(&caller, step).await;
        // Per step, so debug when it went through; a failure is worth a line at info.
        match &outcome {
            Ok(_) => {
                tracing::debug!(orchestrator = %caller, saga = %saga, step = %name, "saga step run for a peer")
            }
            Err(error) => {
                tracing::info!(orchestrator = %caller, saga = %saga, step = %name, error = %crate::redact_text::shown(&error), "saga step for a peer failed")
            }
        }
        let result = outcome.map_err(|e| status_of(&e))?;
        let fields_json = serde_json::to_string(&result).map_err(|e| {
            status(
                ErrorKind::Internal,
                format!("cannot encode the step result: {e}"),
            )
        })?;
        Ok(Response::new(RunStepReply { fields_json }))
    }

    async fn get_saga_step(
        &self,
        request: Request<GetSagaStepRequest>,
    ) -> Result<Response<GetSagaStepReply>, Status> {
        let caller = self.authenticate(&request)?;
        let asked = request.into_inner();
        match self.sagas.step_for_peer(&caller, &asked) {
            Ok(Some(epoch)) => Ok(Response::new(GetSagaStepReply { epoch })),
            Ok(None) => {
                tracing::warn!(participant = %caller, saga = %asked.saga_id, step = %asked.step, "a peer asked about a saga step this node did not send");
                Err(status(
                    ErrorKind::NotFound,
                    "this node's saga log holds no such step for your region",
                ))
            }
            Err(error) => Err(status(
                ErrorKind::Unavailable,
                format!("cannot read the saga log: {error}"),
            )),
        }
    }

    async fn start_saga(
        &self,
        request: Request<StartSagaRequest>,
    ) -> Result<Response<StartSagaReply>, Status> {
        let caller = self.authenticate(&request)?;
        let body = request.into_inner();
        let principal = principal(body.principal, &caller, Role::Writer)?;
        if !principal.may(Role::Writer) {
            return Err(status(
                ErrorKind::Refused,
                format!(
                    "user {} may not start sagas: that needs the writer role",
                    principal.user
                ),
            ));
        }
        let input: Fields = serde_json::from_str(&body.fields_json).map_err(|e| {
            status(
                ErrorKind::Invalid,
                format!(
                    "fields are not saga fields: {}",
                    crate::redact_text::shown(&e)
                ),
            )
        })?;
        let saga = self
            .sagas
            .start_for_peer(
                &caller,
                &body.saga_type,
                input,
                &body.idempotency_key,
                &body.placement,
                crate::admin::wait_limit(body.wait_ms),
            )
            .await
            .map_err(crate::admin::saga_status)?;
        tracing::info!(user = %principal.user, saga = %saga.id, saga_type = %saga.saga_type, "saga start forwarded by a peer");
        let saga_json = serde_json::to_string(&saga)
            .map_err(|e| status(ErrorKind::Internal, format!("cannot encode the saga: {e}")))?;
        Ok(Response::new(StartSagaReply { saga_json }))
    }

    async fn stream_changes(
        &self,
        request: Request<StreamChangesRequest>,
    ) -> Result<Response<Self::StreamChangesStream>, Status> {
        let caller = self.authenticate(&request)?;
        let after = request.into_inner().after_seq;
        tracing::info!(follower = %caller, after, "change stream opened");
        let stream = crate::cdc::stream_source::follow(
            self.engine.store().clone(),
            caller.to_string(),
            after,
            self.shutdown.clone(),
        )?;
        Ok(Response::new(stream))
    }

    async fn ping(&self, request: Request<PingRequest>) -> Result<Response<PingReply>, Status> {
        self.authenticate(&request)?;
        Ok(Response::new(PingReply {
            region: self.region.clone(),
        }))
    }

    async fn insert_rows(
        &self,
        request: Request<InsertRowsRequest>,
    ) -> Result<Response<InsertRowsReply>, Status> {
        let caller = self.authenticate(&request)?;
        let body = request.into_inner();
        let principal = principal(body.principal, &caller, Role::Writer)?;
        let batches = decode_ipc(&body.arrow_ipc).map_err(|e| {
            status(
                ErrorKind::Invalid,
                format!(
                    "rows are not an Arrow IPC stream: {}",
                    crate::redact_text::shown(&e)
                ),
            )
        })?;
        let count = self
            .engine
            .insert_forwarded(principal, &body.table, batches, &caller)
            .await
            .map_err(sql_status)?;
        tracing::info!(from = %caller, table = %body.table, rows = count, "stored rows forwarded by a peer");
        Ok(Response::new(InsertRowsReply { count }))
    }

    async fn scan_rows(
        &self,
        request: Request<ScanRowsRequest>,
    ) -> Result<Response<Self::ScanRowsStream>, Status> {
        let caller = self.authenticate(&request)?;
        let body = request.into_inner();
        let principal = principal(body.principal, &caller, Role::Reader)?;
        let keys = if body.keys_ipc.is_empty() {
            None
        } else {
            Some(decode_ipc(&body.keys_ipc).map_err(|e| {
                status(
                    ErrorKind::Invalid,
                    format!(
                        "keys are not an Arrow IPC stream: {}",
                        crate::redact_text::shown(&e)
                    ),
                )
            })?)
        };
        let limit = usize::try_from(body.limit).ok().filter(|l| *l > 0);
        let batches = self
            .engine
            .scan_forwarded(principal, &body.table, &body.columns, keys, limit, &caller)
            .await
            .map_err(sql_status)?;
        // Read, decided and sent batch by batch: the storage reader's channel and
        // HTTP/2 flow control hold back reading while the caller is slow.
        let replies = batches
            .map_err(|e| sql_status(crate::sql::SqlError::from_datafusion(e)))
            .and_then(|batch| {
                let chunks = encode_chunks(&batch, crate::limits::PEER_SCAN_MESSAGE_BYTES_TARGET)
                    .map_err(|e| status(ErrorKind::Internal, format!("cannot encode rows: {e}")));
                std::future::ready(chunks.map(|chunks| {
                    futures::stream::iter(
                        chunks
                            .into_iter()
                            .map(|arrow_ipc| Ok(ScanRowsReply { arrow_ipc })),
                    )
                }))
            })
            .try_flatten();
        let replies = crate::trace_context::stream_in_current_span(replies);
        Ok(Response::new(Box::pin(replies)))
    }
}

/// The client a peer (of region `caller`, its certificate's) calls for. Only vouched
/// for by the peer, so: never more than `cap` (never admin), named `user@<caller>` in
/// audit entries, and its claimed home region only adds a destination to decide for
/// (the rows go to `caller` in any case; an empty claim counts as `caller`).
fn principal(
    forwarded: Option<ForwardedPrincipal>,
    caller: &str,
    cap: Role,
) -> Result<Principal, Status> {
    let forwarded =
        forwarded.ok_or_else(|| status(ErrorKind::Invalid, "the call names no principal"))?;
    let role = Role::parse(&forwarded.role).ok_or_else(|| {
        status(
            ErrorKind::Invalid,
            "forwarded principal has an unknown role",
        )
    })?;
    let home_region = if forwarded.home_region.is_empty() {
        caller.to_string()
    } else {
        forwarded.home_region
    };
    Ok(Principal {
        user: format!("{}@{caller}", forwarded.user),
        role: role.min(cap),
        home_region,
        compliance: Vec::new(),
    })
}
