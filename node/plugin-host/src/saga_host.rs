//! The `saga-host` import: what a saga step reads and writes, and how that becomes one
//! local ACID transaction.
//!
//! A step runs optimistically, off the storage writer thread: reads come from one
//! snapshot (and from the step's own staged writes), writes are staged here. The commit
//! then runs on the writer thread: it re-reads every row the step read and applies the
//! staged writes only if none changed since the snapshot. Because the writer applies
//! commits one at a time, a step that commits saw exactly the state it is applied to —
//! serializable, without running guest code while holding the writer. A step that
//! lost the race is re-run on a new snapshot by its caller.
//!
//! A step may touch only the tables its descriptor declares, only rows homed in this
//! node's region, and only a bounded number of rows (the guest's memory is capped; the
//! host's buffer for it must be too).

use std::collections::HashMap;
use std::sync::Arc;

use thiserror::Error;

use super::runtime::HostState;
use super::saga::bindings::domicile::plugin::saga_host::Host;
use super::wit_values::{self, Column, Value};
use crate::catalog::{Locality, TableDef};
pub(crate) use crate::limits::{STEP_ROWS_READ_MAX, STEP_ROWS_WRITTEN_MAX};
use crate::storage::{self, Snapshot, StorageError, WriteContext};

/// Why staged step writes were not applied.
#[derive(Debug, Error)]
pub enum StepCommitError {
    /// A row the step read changed (or its table was altered) after the step's snapshot.
    #[error("a row read by the step changed before it could commit")]
    Conflict,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

struct ObservedRow {
    table: Arc<TableDef>,
    key: Vec<storage::Value>,
    row: Option<Vec<storage::Value>>,
}

struct StagedRow {
    table: Arc<TableDef>,
    key: Vec<storage::Value>,
    /// `None`: delete.
    row: Option<Vec<storage::Value>>,
}

/// The reads and staged writes of one step attempt.
pub struct StepTransaction {
    snapshot: Snapshot,
    region: Arc<str>,
    tables: HashMap<String, Arc<TableDef>>,
    reads: Vec<ObservedRow>,
    writes: Vec<StagedRow>,
}

impl std::fmt::Debug for StepTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepTransaction")
            .field("region", &self.region)
            .field("tables", &self.tables.keys())
            .field("reads", &self.reads.len())
            .field("writes", &self.writes.len())
            .finish()
    }
}

impl StepTransaction {
    /// A transaction over `tables` (the step's declared tables, as `snapshot` sees
    /// them) on the node of `region`.
    pub(crate) fn new(snapshot: Snapshot, region: Arc<str>, tables: Vec<Arc<TableDef>>) -> Self {
        Self {
            snapshot,
            region,
            tables: tables.into_iter().map(|t| (t.name.clone(), t)).collect(),
            reads: Vec::new(),
            writes: Vec::new(),
        }
    }

    pub fn rows_written(&self) -> usize {
        self.writes.len()
    }

    /// Every value the step read or staged, as a guest might print it.
    pub(crate) fn shown_values(&self) -> Vec<String> {
        let read = self.reads.iter().map(|r| (&r.table, &r.row));
        let staged = self.writes.iter().map(|w| (&w.table, &w.row));
        let mut shown = Vec::new();
        for (table, row) in read.chain(staged) {
            for (value, column) in row.iter().flatten().zip(&table.columns) {
                shown.extend(crate::redact_text::renderings(value, column.column_type));
            }
        }
        shown
    }

    /// The rows this attempt would store, by table (a delete stores nothing).
    pub(crate) fn staged_puts(&self) -> Vec<(Arc<TableDef>, Vec<Vec<storage::Value>>)> {
        let mut out: Vec<(Arc<TableDef>, Vec<Vec<storage::Value>>)> = Vec::new();
        for write in &self.writes {
            let Some(row) = &write.row else { continue };
            match out.iter_mut().find(|(def, _)| def.id == write.table.id) {
                Some((_, rows)) => rows.push(row.clone()),
                None => out.push((Arc::clone(&write.table), vec![row.clone()])),
            }
        }
        out
    }

    fn table(&self, name: &str) -> Result<Arc<TableDef>, String> {
        self.tables
            .get(name)
            .cloned()
            .ok_or_else(|| format!("table {name} is not declared by this step"))
    }

    fn key(def: &TableDef, key: &[Value]) -> Result<Vec<storage::Value>, String> {
        if key.len() != def.primary_key.len() {
            return Err(format!(
                "table {} has a {}-column primary key, got {} values",
                def.name,
                def.primary_key.len(),
                key.len()
            ));
        }
        key.iter()
            .zip(&def.primary_key)
            .map(|(value, &index)| wit_values::from_wit(value, &def.columns[index]))
            .collect()
    }

    fn staged(&self, def: &TableDef, key: &[storage::Value]) -> Option<&StagedRow> {
        self.writes
            .iter()
            .find(|w| w.table.id == def.id && w.key == key)
    }

    fn read(&mut self, table: &str, key: &[Value]) -> Result<Option<Vec<Value>>, String> {
        let def = self.table(table)?;
        let key = Self::key(&def, key)?;
        if let Some(staged) = self.staged(&def, &key) {
            return Ok(staged
                .row
                .as_deref()
                .map(|r| wit_values::row_to_wit(&def, r)));
        }
        let observed = self
            .reads
            .iter()
            .find(|r| r.table.id == def.id && r.key == key)
            .map(|r| r.row.clone());
        let row = match observed {
            Some(row) => row,
            None => {
                if self.reads.len() >= STEP_ROWS_READ_MAX {
                    return Err(format!("a step may read at most {STEP_ROWS_READ_MAX} rows"));
                }
                let all: Vec<usize> = (0..def.columns.len()).collect();
                let row = self
                    .snapshot
                    .lookup(&def, &self.region, &key, &all)
                    .map_err(|e| format!("storage: {e}"))?;
                self.reads.push(ObservedRow {
                    table: Arc::clone(&def),
                    key,
                    row: row.clone(),
                });
                row
            }
        };
        Ok(row.map(|r| wit_values::row_to_wit(&def, &r)))
    }

    fn stage(
        &mut self,
        def: Arc<TableDef>,
        key: Vec<storage::Value>,
        row: Option<Vec<storage::Value>>,
    ) -> Result<(), String> {
        if let Some(existing) = self
            .writes
            .iter_mut()
            .find(|w| w.table.id == def.id && w.key == key)
        {
            existing.row = row;
            return Ok(());
        }
        if self.writes.len() >= STEP_ROWS_WRITTEN_MAX {
            return Err(format!(
                "a step may write at most {STEP_ROWS_WRITTEN_MAX} rows"
            ));
        }
        self.writes.push(StagedRow {
            table: def,
            key,
            row,
        });
        Ok(())
    }

    fn write(&mut self, table: &str, row: &[Value]) -> Result<(), String> {
        let def = self.table(table)?;
        if row.len() != def.columns.len() {
            return Err(format!(
                "table {} has {} columns, got {} values",
                def.name,
                def.columns.len(),
                row.len()
            ));
        }
        let values = row
            .iter()
            .zip(&def.columns)
            .map(|(value, column)| wit_values::from_wit(value, column))
            .collect::<Result<Vec<_>, _>>()?;
        self.check_home(&def, &values)?;
        let key = def.primary_key.iter().map(|&i| values[i].clone()).collect();
        self.stage(def, key, Some(values))
    }

    fn delete(&mut self, table: &str, key: &[Value]) -> Result<(), String> {
        let def = self.table(table)?;
        let key = Self::key(&def, key)?;
        self.stage(def, key, None)
    }

    /// A step writes only rows homed on this node: its data never lands elsewhere.
    fn check_home(&self, def: &TableDef, row: &[storage::Value]) -> Result<(), String> {
        let home = match &def.locality {
            Locality::RegionalByRow { region_column } => {
                let index = def
                    .region_column_index()
                    .ok_or_else(|| format!("table {} has no column {region_column}", def.name))?;
                match &row[index] {
                    storage::Value::Text(region) => region.as_str(),
                    _ => return Err(format!("column {region_column} must name a region")),
                }
            }
            Locality::Regional { region } => region.as_str(),
            Locality::Global => return Ok(()),
            Locality::Replica => return Err(format!("{} is a read-only replica", def.name)),
        };
        if home != &*self.region {
            return Err(format!(
                "a row of {} homed in {home} cannot be written by a step on {}",
                def.name, self.region
            ));
        }
        Ok(())
    }

    /// Applies the staged writes inside a group-commit statement, or reports a conflict
    /// if anything the step read has changed since its snapshot.
    pub fn apply(self, ctx: &mut WriteContext<'_>) -> Result<(), StepCommitError> {
        for read in &self.reads {
            if !ctx.is_current(&read.table) {
                return Err(StepCommitError::Conflict);
            }
            let all: Vec<usize> = (0..read.table.columns.len()).collect();
            let now = ctx.lookup(&read.table, &self.region, &read.key, &all)?;
            if now != read.row {
                return Err(StepCommitError::Conflict);
            }
        }
        for write in self.writes {
            if !ctx.is_current(&write.table) {
                return Err(StepCommitError::Conflict);
            }
            match write.row {
                Some(row) => ctx.put_row(&write.table, &self.region, &row),
                None => ctx.delete_row(&write.table, &self.region, &write.key),
            }
        }
        Ok(())
    }
}

impl HostState {
    fn step_transaction(&mut self) -> Result<&mut StepTransaction, String> {
        self.step
            .as_mut()
            .ok_or_else(|| "no step transaction is open".to_string())
    }
}

impl Host for HostState {
    fn table_columns(&mut self, table: String) -> Result<Vec<Column>, String> {
        let def = self.step_transaction()?.table(&table)?;
        Ok(wit_values::table(&def).columns)
    }

    fn read_row(&mut self, table: String, key: Vec<Value>) -> Result<Option<Vec<Value>>, String> {
        self.step_transaction()?.read(&table, &key)
    }

    fn write_row(&mut self, table: String, row: Vec<Value>) -> Result<(), String> {
        self.step_transaction()?.write(&table, &row)
    }

    fn delete_row(&mut self, table: String, key: Vec<Value>) -> Result<(), String> {
        self.step_transaction()?.delete(&table, &key)
    }
}
