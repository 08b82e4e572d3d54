//! How DataFusion finds tables: catalog `domicile` with schema `public` (user tables,
//! resolved from the storage catalog on every lookup, so DDL is visible at once) and
//! schema `system` (read-only views of the node's own state).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider};
use datafusion::datasource::TableProvider;
use datafusion::error::{DataFusionError, Result};

use super::system_tables::{SYSTEM_TABLE_NAMES, SystemState, system_table};
use super::table_provider::DomicileTable;
use crate::sql::NodeIdentity;
use crate::storage::Store;

pub(crate) const CATALOG_NAME: &str = "domicile";
pub(crate) const PUBLIC_SCHEMA: &str = "public";
pub(crate) const SYSTEM_SCHEMA: &str = "system";

#[derive(Debug)]
pub(crate) struct DomicileCatalog {
    public: Arc<PublicSchema>,
    system: Arc<SystemSchema>,
}

impl DomicileCatalog {
    pub(crate) fn new(system: SystemState) -> Self {
        Self {
            public: Arc::new(PublicSchema {
                store: system.store.clone(),
                identity: Arc::clone(&system.identity),
            }),
            system: Arc::new(SystemSchema { state: system }),
        }
    }
}

impl CatalogProvider for DomicileCatalog {
    fn schema_names(&self) -> Vec<String> {
        vec![PUBLIC_SCHEMA.to_string(), SYSTEM_SCHEMA.to_string()]
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        match name {
            PUBLIC_SCHEMA => Some(Arc::clone(&self.public) as Arc<dyn SchemaProvider>),
            SYSTEM_SCHEMA => Some(Arc::clone(&self.system) as Arc<dyn SchemaProvider>),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct PublicSchema {
    store: Store,
    identity: Arc<NodeIdentity>,
}

#[async_trait]
impl SchemaProvider for PublicSchema {
    fn table_names(&self) -> Vec<String> {
        self.store.tables().iter().map(|t| t.name.clone()).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(self.store.table(name).map(|def| {
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
        self.store.table(name).is_some()
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
