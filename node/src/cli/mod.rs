//! Command-line front ends that are clients of a node, not the node itself.

pub mod admin_client;
pub mod bundled_plugins;
pub mod commands;
pub mod demo;
pub mod endpoint;
pub mod interactive;
pub mod logging;
pub mod output;
pub mod progress;
pub mod saga_cli;
pub mod sql_shell;
pub mod statements;
