//! How DataFusion finds tables: catalog `domicile` with schema `public` (user tables,
//! resolved from the storage catalog on every lookup, so DDL is visible at once), schema
//! `global` (read-only CDC replicas of other regions' tables, stored as `global.<name>`)
//! schema `system` (read-only views of the node's own state, registered by the
//! composition root) and the schemas the layers above add (`mesh`, every region's rows).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider};
use datafusion::datasource::TableProvider;
use datafusion::error::{DataFusionError, Result};

use super::system_tables::SystemTable;
use super::table_provider::DomicileTable;
use crate::sql::NodeIdentity;
use crate::storage::Store;

pub const CATALOG_NAME: &str = "domicile";
pub const PUBLIC_SCHEMA: &str = "public";
pub(crate) const SYSTEM_SCHEMA: &str = "system";
pub(crate) const GLOBAL_SCHEMA: &str = "global";
pub(crate) use crate::catalog::REPLICA_PREFIX;

#[derive(Debug)]
pub(crate) struct DomicileCatalog {
    public: Arc<StoredSchema>,
    global: Arc<StoredSchema>,
    system: Arc<SystemSchema>,
    /// Schemas the layers above add, by name (`mesh`).
    added: Vec<(String, Arc<dyn SchemaProvider>)>,
}

impl DomicileCatalog {
    /// `system_tables`: schema `system`; `added`: further schemas by name.
    pub(crate) fn new(
        store: &Store,
        identity: &Arc<NodeIdentity>,
        system_tables: Vec<SystemTable>,
        added: Vec<(String, Arc<dyn SchemaProvider>)>,
    ) -> Self {
        Self {
            added,
            public: Arc::new(StoredSchema {
                store: store.clone(),
                identity: Arc::clone(identity),
                prefix: "",
            }),
            global: Arc::new(StoredSchema {
                store: store.clone(),
                identity: Arc::clone(identity),
                prefix: REPLICA_PREFIX,
            }),
            system: Arc::new(SystemSchema {
                tables: system_tables,
                region: Arc::clone(&identity.region),
            }),
        }
    }
}

impl CatalogProvider for DomicileCatalog {
    fn schema_names(&self) -> Vec<String> {
        [PUBLIC_SCHEMA, GLOBAL_SCHEMA, SYSTEM_SCHEMA]
            .into_iter()
            .map(str::to_string)
            .chain(self.added.iter().map(|(name, _)| name.clone()))
            .collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        match name {
            PUBLIC_SCHEMA => Some(Arc::clone(&self.public) as Arc<dyn SchemaProvider>),
            GLOBAL_SCHEMA => Some(Arc::clone(&self.global) as Arc<dyn SchemaProvider>),
            SYSTEM_SCHEMA => Some(Arc::clone(&self.system) as Arc<dyn SchemaProvider>),
            _ => self
                .added
                .iter()
                .find(|(added, _)| added == name)
                .map(|(_, schema)| Arc::clone(schema)),
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

/// System tables that were renamed, and their new names: a query naming the old one is
/// told where to look rather than that nothing is there.
const RENAMED_SYSTEM_TABLES: &[(&str, &str)] = &[("nodes", "regions")];

#[derive(Debug)]
struct SystemSchema {
    tables: Vec<SystemTable>,
    /// This node's region: who reads need-to-know tables as a local reader.
    region: Arc<str>,
}

impl SystemSchema {
    fn find(&self, name: &str) -> Option<&SystemTable> {
        self.tables.iter().find(|table| table.name() == name)
    }
}

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        self.tables
            .iter()
            .map(|table| table.name().to_string())
            .collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if let Some(renamed) = RENAMED_SYSTEM_TABLES
            .iter()
            .find(|(old, _)| *old == name)
            .map(|(_, new)| new)
        {
            return Err(DataFusionError::Plan(format!(
                "system.{name} was renamed system.{renamed}"
            )));
        }
        self.find(name)
            .map(|table| table.provider(&self.region))
            .transpose()
    }

    fn table_exist(&self, name: &str) -> bool {
        self.find(name).is_some()
    }
}
