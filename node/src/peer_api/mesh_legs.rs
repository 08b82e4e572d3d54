//! Flight SQL for other regions' nodes, on the mesh listener (mutual TLS): the legs of
//! their `mesh.<table>` queries. Only `CommandStatementQuery` and its `DoGet`; the
//! caller's region is its certificate's, the user and role those it vouches for. The
//! rows leave for the caller's region, so this node's policy decides for that region.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt, SqlInfo, TicketStatementQuery};
use arrow_flight::{
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, Ticket,
};
use futures::{Stream, TryStreamExt};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{Principal, Role};
use crate::error_kind::ErrorKind;
use crate::federation::{HOME_REGION_HEADER, ROLE_HEADER, USER_HEADER};
use crate::flight::sql_status;
use crate::grpc_status::status;
use crate::sql::{SqlEngine, SqlError};

type DoGetStream = Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send>>;

pub struct PeerFlightSql {
    engine: Arc<SqlEngine>,
    peers: HashSet<String>,
}

impl PeerFlightSql {
    pub fn new(engine: Arc<SqlEngine>, peers: impl IntoIterator<Item = String>) -> Self {
        Self {
            engine,
            peers: peers.into_iter().collect(),
        }
    }

    /// The user a peer asks for and the peer's region (its certificate's). The user is
    /// capped at reader and named `user@<region>`; its claimed home region (header,
    /// the peer's region if absent) is decided for as well as the peer's region.
    fn principal<T>(&self, request: &Request<T>) -> Result<(Principal, String), Status> {
        let region = super::identity::peer_region(
            request,
            &self.peers,
            None,
            &self.engine.identity().region,
        )?;
        let header = |name: &str| {
            request
                .metadata()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .ok_or_else(|| status(ErrorKind::Invalid, format!("a mesh leg needs {name}")))
        };
        let role = Role::parse(&header(ROLE_HEADER)?)
            .ok_or_else(|| status(ErrorKind::Invalid, "a mesh leg names an unknown role"))?;
        let home_region = header(HOME_REGION_HEADER)
            .ok()
            .filter(|home| !home.is_empty())
            .unwrap_or_else(|| region.clone());
        let principal = Principal {
            user: format!("{}@{region}", header(USER_HEADER)?),
            role: role.min(Role::Reader),
            home_region,
            compliance: Vec::new(),
        };
        Ok((principal, region))
    }
}

#[tonic::async_trait]
impl FlightSqlService for PeerFlightSql {
    type FlightService = PeerFlightSql;

    async fn do_handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        Err(status(
            ErrorKind::Unsupported,
            "mesh legs authenticate with the mesh certificate, not a handshake",
        ))
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let (principal, _) = self.principal(&request)?;
        let statement = self
            .engine
            .prepare(&principal, &query.query)
            .await
            .map_err(sql_status)?;
        let ticket = TicketStatementQuery {
            statement_handle: query.query.into_bytes().into(),
        };
        let endpoint =
            FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec()));
        let info = FlightInfo::new()
            .try_with_schema(&statement.output_schema())
            .map_err(|e| status(ErrorKind::Internal, format!("cannot encode schema: {e}")))?
            .with_endpoint(endpoint)
            .with_descriptor(request.into_inner())
            .with_ordered(true);
        Ok(Response::new(info))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let (principal, caller) = self.principal(&request)?;
        let sql = std::str::from_utf8(&ticket.statement_handle)
            .map_err(|_| status(ErrorKind::Invalid, "the statement handle is not UTF-8"))?;
        let stream = self
            .engine
            .run_mesh_leg(&principal, sql, Some(caller.as_str()))
            .await
            .map_err(sql_status)?;
        let schema = stream.schema();
        let batches = stream
            .map_err(|e| FlightError::Tonic(Box::new(sql_status(SqlError::from_datafusion(e)))));
        let encoded = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches);
        let stream: DoGetStream = Box::pin(crate::trace_context::stream_in_current_span(
            encoded.map_err(|e| match e {
                FlightError::Tonic(status) => *status,
                other => status(ErrorKind::Internal, other.to_string()),
            }),
        ));
        Ok(Response::new(stream))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
