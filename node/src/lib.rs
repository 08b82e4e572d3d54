//! Domicile node: one region's cell of a data mesh that keeps personal data at home.
//!
//! Rows live in `storage` (redb), described by `catalog`, queried through `sql`
//! (DataFusion) and served by `flight` (Arrow Flight SQL). See ARCHITECTURE.md.

pub mod admin;
pub mod auth;
pub mod bounded_file;
pub mod cache;
pub mod catalog;
pub mod cdc;
pub mod cli;
pub mod client_address;
pub mod clock;
pub mod config;
pub mod connection_gate;
pub mod federation;
pub mod flight;
#[doc(hidden)]
pub mod fuzzing;
pub mod limits;
pub mod metrics;
pub mod peer_api;
pub mod peers;
pub mod plugins;
pub mod redact_text;
pub mod residency;
pub mod saga;
pub mod server;
pub mod sql;
pub mod storage;
