//! Domicile's end-to-end tests, one module per file, built as one test binary (linking
//! the whole node once rather than once per file). Each starts real `domicile` nodes
//! (the binary built by `cargo build -p domicile --bins`) on ports the OS picks, and
//! drives them with stock clients; shared fixtures live in `harness/`.
//!
//! Run one file's tests: `cargo nextest run -p domicile-tests --test e2e -E 'test(/^saga::/)'`.

mod bank;
mod cache;
mod cancel;
mod cdc;
mod cdc_kafka;
mod client_tls;
mod crash_recovery;
mod demo;
mod differential;
mod dishonest_peer;
mod example_config;
mod federation;
mod hostile_input;
mod ingest;
mod layering;
mod leak_hunt;
mod lost_updates;
mod mesh;
mod mesh_differential;
mod operations;
mod overload;
mod plugin_admin;
mod plugin_host;
mod plugin_registry;
mod residency;
mod saga;
mod saga_step;
mod single_node;
mod slt;
mod traces;
mod transactions;
mod value_free_errors;
