//! One module per subcommand of the `domicile` binary: its arguments (clap) and its
//! body. `main.rs` only parses and dispatches.

pub mod audit;
pub mod certs;
pub mod demo;
pub mod hash_password;
pub mod mesh;
pub mod node;
pub mod plugin;
pub mod saga;
pub mod sql;
