//! How DataFusion finds tables: catalog `domicile` with schema `public` (user tables,
//! resolved from the storage catalog on every lookup, so DDL is visible at once), schema
//! `global` (read-only CDC replicas of other regions' tables, stored as `global.<name>`)
//! and schema `system` (read-only views of the node's own state).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider};
use datafusion::datasource::TableProvider;
use datafusion::error::{DataFusionError, Result};

use super::system_tables::{SYSTEM_TABLE_NAMES, SystemState, system_table};
use super::table_provider::DomicileTable;
use crate::sql::NodeIdentity;
use crate::storage::Store;

pub const CATALOG_NAME: &str = "domicile";
pub const PUBLIC_SCHEMA: &str = "public";
pub(crate) const SYSTEM_SCHEMA: &str = "system";
pub(crate) const GLOBAL_SCHEMA: &str = "global";
/// Every region's rows of a table: `mesh.<table>` (built by the federation layer).
pub(crate) const MESH_SCHEMA: &str = "mesh";
pub(crate) use crate::catalog::REPLICA_PREFIX;

#[derive(Debug)]
pub(crate) struct DomicileCatalog {
    public: Arc<StoredSchema>,
    global: Arc<StoredSchema>,
    system: Arc<SystemSchema>,
    mesh: Arc<dyn SchemaProvider>,
}

impl DomicileCatalog {
    /// `mesh`: the schema of every region's rows, built by the layer above.
    pub(crate) fn new(system: SystemState, mesh: Arc<dyn SchemaProvider>) -> Self {
        Self {
            mesh,
            public: Arc::new(StoredSchema {
                store: system.store.clone(),
                identity: Arc::clone(&system.identity),
                prefix: "",
            }),
            global: Arc::new(StoredSchema {
                store: system.store.clone(),
                identity: Arc::clone(&system.identity),
                prefix: REPLICA_PREFIX,
            }),
            system: Arc::new(SystemSchema { state: system }),
        }
    }
}

impl CatalogProvider for DomicileCatalog {
    fn schema_names(&self) -> Vec<String> {
        vec![
            PUBLIC_SCHEMA.to_string(),
            GLOBAL_SCHEMA.to_string(),
            SYSTEM_SCHEMA.to_string(),
            MESH_SCHEMA.to_string(),
        ]
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        match name {
            PUBLIC_SCHEMA => Some(Arc::clone(&self.public) as Arc<dyn SchemaProvider>),
            GLOBAL_SCHEMA => Some(Arc::clone(&self.global) as Arc<dyn SchemaProvider>),
            SYSTEM_SCHEMA => Some(Arc::clone(&self.system) as Arc<dyn SchemaProvider>),
            MESH_SCHEMA => Some(Arc::clone(&self.mesh)),
            _ => None,
        }
    }
}

/// Tables kept in storage whose names start with `prefix` (the empty prefix: names
/// without a schema, i.e. user tables).
#[derive(Debug)]
struct StoredSchema {
    store: Store,
    identity: Arc<NodeIdentity>,
    prefix: &'static str,
}

impl StoredSchema {
    fn stored_name(&self, name: &str) -> Option<String> {
        (!name.contains('.')).then(|| format!("{}{name}", self.prefix))
    }
}

#[async_trait]
impl SchemaProvider for StoredSchema {
    fn table_names(&self) -> Vec<String> {
        self.store
            .tables()
            .iter()
            .filter_map(|t| {
                let rest = t.name.strip_prefix(self.prefix)?;
                (!rest.contains('.')).then(|| rest.to_string())
            })
            .collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let Some(stored) = self.stored_name(name) else {
            return Ok(None);
        };
        Ok(self.store.table(&stored).map(|def| {
            // Names of tables a statement resolves stay readable in its errors.
            crate::redact_text::learn_table(&def);
            Arc::new(DomicileTable::new(
                def,
                self.store.clone(),
                Arc::clone(&self.identity.region),
            )) as Arc<dyn TableProvider>
        }))
    }

    fn register_table(
        &self,
        name: String,
        _table: Arc<dyn TableProvider>,
    ) -> Result<Option<Arc<dyn TableProvider>>> {
        Err(DataFusionError::NotImplemented(format!(
            "cannot register {name}: tables are created with CREATE TABLE"
        )))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.stored_name(name)
            .is_some_and(|stored| self.store.table(&stored).is_some())
    }
}

#[derive(Debug)]
struct SystemSchema {
    state: SystemState,
}

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        SYSTEM_TABLE_NAMES.iter().map(|n| n.to_string()).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        system_table(name, &self.state)
    }

    fn table_exist(&self, name: &str) -> bool {
        SYSTEM_TABLE_NAMES.contains(&name)
    }
}
