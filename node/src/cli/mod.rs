//! Command-line front ends that are clients of a node, not the node itself.

pub mod demo;
pub mod plugin_admin;
pub mod sql_shell;
