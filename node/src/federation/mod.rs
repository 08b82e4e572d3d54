//! Federated queries: `SELECT ... FROM mesh.<table>` on any node reads `<table>` on every
//! region's node and unions the answers, each row tagged with the region that gave it
//! (`mesh_region`).
//!
//! Each region's part (a "leg") is a query DataFusion's unparser writes from the
//! pushed-down projection, filters and limit (`leg_sql`), run by that region's node on
//! its own partition only, as the asking user, through its own residency guard: the
//! policy of the region that holds the rows decides what leaves for the asking node's
//! region. Remote legs travel as Flight SQL over the mesh's mutual TLS
//! (`peer_api::PeerFlightSql` serves them); this node's own leg runs in process. An unreachable region fails the
//! query, naming it, unless the session set `domicile.mesh_partial_results`.

mod aggregate_pushdown;
mod leg_cache;
mod leg_sql;
mod mesh_table;
mod remote;

use std::sync::{Arc, Weak};
use std::time::Duration;

pub use aggregate_pushdown::MeshAggregatePushdown;
pub use mesh_table::MeshSchema;

use crate::cache::NodeCache;
use crate::peers::PeerRouter;
use crate::residency::ResidencyGuard;
use crate::sql::SqlEngine;

/// The column naming the region each `mesh.<table>` row came from.
pub const REGION_COLUMN: &str = "mesh_region";

/// `schema` with the `mesh_region` tag appended: what a mesh scan answers.
fn with_region_tag(schema: &arrow::datatypes::Schema) -> arrow::datatypes::SchemaRef {
    let mut fields: Vec<arrow::datatypes::Field> =
        schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(arrow::datatypes::Field::new(
        REGION_COLUMN,
        arrow::datatypes::DataType::Utf8,
        false,
    ));
    Arc::new(arrow::datatypes::Schema::new(fields))
}

/// Header names of a leg request between nodes: the asking user and role (the region
/// is the caller's certificate's).
pub(crate) const USER_HEADER: &str = "x-domicile-user";
pub(crate) const ROLE_HEADER: &str = "x-domicile-role";
/// The asking user's (claimed) home region; the answering node decides for it too
/// when it is not the caller's region.
pub(crate) const HOME_REGION_HEADER: &str = "x-domicile-home-region";

/// What a `mesh.<table>` scan needs: the regions, the way to their nodes, and this
/// node's engine for its own leg.
pub struct Federation {
    region: String,
    router: Arc<PeerRouter>,
    /// Longest a leg may take, first batch to last.
    timeout: Duration,
    /// Where other regions' answers are kept for their TTL, if the node caches.
    cache: Option<Arc<NodeCache>>,
    /// Decides whether an answer may be kept here.
    guard: Arc<ResidencyGuard>,
    /// This node's engine, for its own leg: weak, since the engine's catalog holds the
    /// `mesh` schema that holds this.
    engine: Weak<SqlEngine>,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation")
            .field("region", &self.region)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Federation {
    pub fn new(
        region: &str,
        router: Arc<PeerRouter>,
        timeout: Duration,
        cache: Option<Arc<NodeCache>>,
        guard: Arc<ResidencyGuard>,
        engine: Weak<SqlEngine>,
    ) -> Arc<Self> {
        Arc::new(Self {
            region: region.to_string(),
            router,
            timeout,
            cache,
            guard,
            engine,
        })
    }

    /// Every region of the mesh, in name order.
    fn regions(&self) -> Vec<String> {
        let mut regions = self.router.peer_regions();
        regions.push(self.region.clone());
        regions.sort();
        regions.dedup();
        regions
    }

    pub fn cache(&self) -> Option<&Arc<NodeCache>> {
        self.cache.as_ref()
    }

    fn engine(&self) -> Option<Arc<SqlEngine>> {
        self.engine.upgrade()
    }
}
