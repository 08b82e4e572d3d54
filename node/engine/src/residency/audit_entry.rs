//! What one audited decision records. Never a row value: tables, columns, regions,
//! principals, outcomes and the policy version that decided.

use serde::{Deserialize, Serialize};

/// The path data was about to take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditPath {
    /// Rows stored on this node.
    Store,
    /// Rows returned to a client homed in another region.
    QueryResult,
    /// Rows written here but homed elsewhere, sent to their home node.
    Forward,
    /// Change events (already redacted) published to the other regions.
    Replication,
    /// A saga step's message sent to the node of another region.
    SagaStep,
    /// A support action (e.g. retrying or compensating a stuck saga).
    Support,
    /// Another region's answer kept in this node's cache.
    Cache,
}

impl AuditPath {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditPath::Store => "store",
            AuditPath::QueryResult => "query-result",
            AuditPath::Forward => "forward",
            AuditPath::Replication => "replication",
            AuditPath::SagaStep => "saga-step",
            AuditPath::Support => "support",
            AuditPath::Cache => "cache",
        }
    }
}

/// The policy version that decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRef {
    pub jurisdiction: String,
    pub version: u64,
    pub sha256: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub time_unix_ms: u64,
    pub principal: String,
    pub path: AuditPath,
    pub table: String,
    pub columns: Vec<String>,
    pub source_region: String,
    pub destination_region: String,
    /// `allow`, `deny`, or `allow-with` (columns removed or masked).
    pub decision: String,
    /// The policy's reason for a denial, the column actions of an `allow-with`, or why
    /// the guard failed closed.
    pub reason: Option<String>,
    pub rows: u64,
    /// `None` when no policy could decide (none active, or it failed).
    pub plugin: Option<PluginRef>,
}

impl AuditEntry {
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain strings and numbers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}
