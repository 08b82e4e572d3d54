//! The server side of the node-to-node API (`Peer`, served on `listen.peer` with mutual
//! TLS): what this node answers its peers — routed scans and inserts, change streams,
//! saga steps and starts (`service`), and the legs of their `mesh.<table>` queries as
//! Flight SQL (`mesh_legs`), each decided by this node's own policy for the region the
//! caller's certificate proves (ARCHITECTURE.md, "Peer trust model"). It sits beside
//! `flight` and `admin`, above the engines it dispatches into; `crate::peers` is the
//! transport it is reached over.

mod identity;
mod mesh_legs;
mod service;

pub use mesh_legs::PeerFlightSql;
pub use service::PeerService;
