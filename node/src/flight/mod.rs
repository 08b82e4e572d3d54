//! Arrow Flight SQL over tonic: the only public data interface of a node. Stock clients
//! (Python ADBC, JDBC, the `domicile sql` CLI) connect here.

mod advertised;
mod cancel;
mod client_batches;
mod ingest;
mod keys;
mod metadata;
mod params;
mod prepared;
mod service;
mod session_options;
mod status;

pub use advertised::{AdvertisedActions, CLIENT_ACTIONS, MESH_LEG_ACTIONS};
pub(crate) use params::read_rows as read_parameter_messages;
pub use service::FlightSqlServer;
pub(crate) use status::sql_status;
