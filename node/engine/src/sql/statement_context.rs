//! What a statement carries beyond its plan (`StatementContext`): who asks, the
//! residency guard, the way to the other regions' nodes, and what the statement may
//! read. Built per statement by the engine or by the peer API for a peer's call.

use std::sync::Arc;

use crate::auth::Principal;
use crate::peers::PeerRouter;
use crate::residency::ResidencyGuard;

/// What a statement needs beyond its plan: who is asking, the guard, and the way to
/// the other regions' nodes. Travels in DataFusion's session config (`TaskContext`), so
/// every scan and sink of a statement sees it.
#[derive(Debug)]
pub struct StatementContext {
    pub principal: Principal,
    pub guard: Arc<ResidencyGuard>,
    pub router: Arc<PeerRouter>,
    /// A mesh leg (another node's `mesh.<table>` query, or this node's own part of
    /// one): reads only this node's own partition and never asks another node.
    pub local_only: bool,
    /// What the client's session set (`SET ...`).
    pub options: crate::auth::SessionOptions,
    /// Where a statement that answers partially says what is missing.
    pub warnings: super::Warnings,
    /// For a peer's call (`ScanRows`, `InsertRows`, a mesh leg): the caller's region,
    /// from its certificate. The rows go there, whatever home the peer claims.
    pub via_region: Option<String>,
    /// The statement stores what it reads (INSERT ... SELECT): rows released for
    /// display are not rows this node may keep, so its reads never cross to another
    /// node (a routed partition is refused) and never read `mesh.*` or `global.*`.
    pub copies: bool,
    /// The interactive transaction the statement runs in: its reads see the
    /// transaction's snapshot and writes, its writes join the transaction (see
    /// `storage::Transaction`). Such a statement never reaches another node.
    pub transaction: Option<crate::storage::Transaction>,
    /// The statement's span: the work its plan does on DataFusion's own tasks (a routed
    /// read's peer call, a mesh leg) runs in it, so it joins the statement's trace.
    pub span: tracing::Span,
}

/// Why a read that feeds a write is refused: names the source, never a value.
pub fn copy_refused(source: &str) -> String {
    format!(
        "INSERT ... SELECT may copy only rows stored on this node: {source} holds rows \
         released for display under their home region's policy, not for storage here \
         (write them at their home node, or read them with SELECT)"
    )
}

impl StatementContext {
    /// Every region released rows reach: the principal's (claimed) home region and,
    /// for a peer's call, the caller's certificate region.
    pub fn destinations(&self) -> Vec<&str> {
        let mut regions = vec![self.principal.home_region.as_str()];
        if let Some(via) = self.via_region.as_deref()
            && via != self.principal.home_region.as_str()
        {
            regions.push(via);
        }
        regions
    }
}
