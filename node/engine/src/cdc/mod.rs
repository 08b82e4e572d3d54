//! Change data capture: every region sees the non-sensitive metadata of every other.
//!
//! ```text
//!  write ─▶ storage commit ─▶ outbox (same commit, `storage::change_log`)
//!                                │
//!                     relay: redactor (WASM) ─▶ residency guard ─▶ change stream
//!                                                                      │
//!      peers: StreamChanges (gRPC, mTLS) ◀─────────────────────────────┘
//!        └─▶ follower ─▶ replica tables `global.<table>` (idempotent by source seq)
//! ```
//!
//! `relay` turns outbox events into Debezium-compatible messages (`envelope`) or holds
//! them. Transport, embedded (default): `stream_source` serves the change stream to
//! peers, `follower` consumes a peer's stream. Transport, Kafka (`cdc.kafka_brokers`):
//! `kafka` publishes the change stream to topics and consumes the other regions'.
//! `replica` applies changes either way, refusing into `quarantine` what may not be
//! applied; `status` is what `system.regions` / `system.cdc` show.

pub mod envelope;
mod follower;
mod kafka;
pub mod quarantine;
mod relay;
pub mod replica;
mod status;
pub mod stream_source;

pub use follower::Follower;
pub use kafka::{
    KafkaFollower, KafkaPublisher, PUBLISHED_KEY as KAFKA_PUBLISHED_KEY, TopicRecord,
    read_all_topics,
};
pub use relay::{Hold, Relay};
pub use status::{CdcStatus, RelayState, ReplicaState};
