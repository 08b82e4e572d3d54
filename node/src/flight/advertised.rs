//! `ListActions` as the node answers it: only the actions it implements.
//!
//! arrow-flight's Flight SQL server lists every action the Flight SQL specification
//! defines (transactions, savepoints, Substrait plans, query cancellation), whether
//! the service implements them or not, and a client that believes the list fails later
//! with UNIMPLEMENTED (ADBC offers `autocommit=False`, then cannot begin). This wrapper
//! passes every call through and keeps only the supported entries of that list.

use futures::StreamExt;
use futures::stream::BoxStream;
use tonic::{Request, Response, Status, Streaming};

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, PollInfo, SchemaResult, Ticket,
};

/// The actions a client's Flight SQL service implements (Flight SQL's names):
/// prepared statements, transactions, query cancellation and Flight's session actions.
pub const CLIENT_ACTIONS: &[&str] = &[
    "CreatePreparedStatement",
    "ClosePreparedStatement",
    "BeginTransaction",
    "EndTransaction",
    "CancelQuery",
    "CancelFlightInfo",
    "SetSessionOptions",
    "GetSessionOptions",
    "CloseSession",
];

/// The actions the mesh legs' Flight SQL service implements: none (a leg is one
/// `CommandStatementQuery` and its `DoGet`).
pub const MESH_LEG_ACTIONS: &[&str] = &[];

/// `inner`, listing only the `supported` actions.
pub struct AdvertisedActions<T> {
    inner: T,
    supported: &'static [&'static str],
}

impl<T> AdvertisedActions<T> {
    pub fn new(inner: T, supported: &'static [&'static str]) -> Self {
        Self { inner, supported }
    }
}

#[tonic::async_trait]
impl<T: FlightService> FlightService for AdvertisedActions<T> {
    type HandshakeStream = T::HandshakeStream;
    type ListFlightsStream = T::ListFlightsStream;
    type DoGetStream = T::DoGetStream;
    type DoPutStream = T::DoPutStream;
    type DoExchangeStream = T::DoExchangeStream;
    type DoActionStream = T::DoActionStream;
    type ListActionsStream = BoxStream<'static, Result<ActionType, Status>>;

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        self.inner.handshake(request).await
    }

    async fn list_flights(
        &self,
        request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        self.inner.list_flights(request).await
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.inner.get_flight_info(request).await
    }

    async fn poll_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        self.inner.poll_flight_info(request).await
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        self.inner.get_schema(request).await
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        self.inner.do_get(request).await
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        self.inner.do_put(request).await
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        self.inner.do_exchange(request).await
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        self.inner.do_action(request).await
    }

    async fn list_actions(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        let supported = self.supported;
        let listed: Vec<Result<ActionType, Status>> = self
            .inner
            .list_actions(request)
            .await?
            .into_inner()
            .collect()
            .await;
        let mut kept: Vec<Result<ActionType, Status>> = listed
            .into_iter()
            .filter(|action| match action {
                Ok(action) => supported.contains(&action.r#type.as_str()),
                Err(_) => true,
            })
            .collect();
        // Flight's own actions (session options, CancelFlightInfo) are not in the
        // Flight SQL list: add those the service implements.
        for name in supported {
            let listed = kept
                .iter()
                .any(|action| matches!(action, Ok(action) if action.r#type == *name));
            if !listed {
                kept.push(Ok(ActionType {
                    r#type: (*name).to_string(),
                    description: flight_action_description(name).to_string(),
                }));
            }
        }
        Ok(Response::new(futures::stream::iter(kept).boxed()))
    }
}

/// What Flight's own actions do, as ListActions describes them.
fn flight_action_description(name: &str) -> &'static str {
    match name {
        "SetSessionOptions" => {
            "Sets session options (domicile.*). Request: SetSessionOptionsRequest"
        }
        "GetSessionOptions" => "Reads the session's options. Request: GetSessionOptionsRequest",
        "CloseSession" => "Ends the session and rolls back its transactions",
        "CancelFlightInfo" => {
            "Stops the query a FlightInfo announced. Request: CancelFlightInfoRequest"
        }
        _ => "",
    }
}
