use std::fmt;

use serde::{Deserialize, Serialize};

use crate::limits::{COLUMNS_PER_TABLE_MAX, IDENTIFIER_LENGTH_MAX};

/// Stable numeric identity of a table. Row keys start with it, so it is never reused:
/// a dropped table's id stays retired and a later table of the same name gets a new one.
pub type TableId = u32;

/// Where a table's rows are allowed to live.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Locality {
    /// Each row names its home region in `region_column`; a node stores only rows homed
    /// in its own region.
    RegionalByRow { region_column: String },
    /// The whole table lives in one region.
    Regional { region: String },
    /// Non-sensitive metadata kept on every node; rows are partitioned by the region that
    /// wrote them.
    Global,
    /// A read-only copy of CDC tables of other regions, as their redactors and policies let
    /// them leave (`global.<table>` in SQL); rows are partitioned by source region and
    /// written only by the CDC consumer.
    Replica,
}

impl fmt::Display for Locality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Locality::RegionalByRow { region_column } => {
                write!(f, "REGIONAL BY ROW ({region_column})")
            }
            Locality::Regional { region } => write!(f, "REGIONAL IN {region}"),
            Locality::Global => f.write_str("GLOBAL"),
            Locality::Replica => f.write_str("REPLICA"),
        }
    }
}

/// How sensitive a column's values are. Residency policies read this; logs and error
/// texts never carry values of `Pii` columns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataClass {
    #[default]
    Public,
    Sensitive,
    Pii,
}

impl DataClass {
    pub fn as_str(self) -> &'static str {
        match self {
            DataClass::Public => "public",
            DataClass::Sensitive => "sensitive",
            DataClass::Pii => "pii",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "public" => Some(DataClass::Public),
            "sensitive" => Some(DataClass::Sensitive),
            "pii" => Some(DataClass::Pii),
            _ => None,
        }
    }
}

/// SQL column types Domicile stores. Each maps to exactly one Arrow type (see
/// `sql::arrow_convert`); UUID is exposed to SQL as canonical lowercase text and stored
/// as 16 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ColumnType {
    Boolean,
    Int,
    BigInt,
    Double,
    Decimal { precision: u8, scale: i8 },
    Text,
    Bytea,
    Date,
    Timestamp,
    Uuid,
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnType::Boolean => f.write_str("BOOLEAN"),
            ColumnType::Int => f.write_str("INT"),
            ColumnType::BigInt => f.write_str("BIGINT"),
            ColumnType::Double => f.write_str("DOUBLE"),
            ColumnType::Decimal { precision, scale } => write!(f, "DECIMAL({precision},{scale})"),
            ColumnType::Text => f.write_str("TEXT"),
            ColumnType::Bytea => f.write_str("BYTEA"),
            ColumnType::Date => f.write_str("DATE"),
            ColumnType::Timestamp => f.write_str("TIMESTAMP"),
            ColumnType::Uuid => f.write_str("UUID"),
        }
    }
}

/// One column. `id` is what the row encoding stores, never the position, so columns can
/// be added later without rewriting rows (a missing id reads as NULL).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub id: u16,
    pub name: String,
    pub column_type: ColumnType,
    pub nullable: bool,
    pub class: DataClass,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDef {
    pub id: TableId,
    pub name: String,
    pub columns: Vec<ColumnDef>,
    /// Positions in `columns` of the primary key, in key order. Never empty.
    pub primary_key: Vec<usize>,
    pub locality: Locality,
    /// Next column id to hand out; ids of dropped columns are never reused.
    pub next_column_id: u16,
    /// Whether committed changes are captured in the outbox (in the same transaction) and
    /// published, redacted, to the other regions.
    #[serde(default)]
    pub cdc: bool,
    /// How long other regions' answers about this table (`mesh` query legs) may be
    /// served from this node's cache, in ms; `None`: the node's `cache.remote_ttl_ms`,
    /// `Some(0)`: never cached.
    #[serde(default)]
    pub cache_ttl_ms: Option<u64>,
}

impl TableDef {
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Position of the column naming each row's home region, for REGIONAL BY ROW tables.
    pub fn region_column_index(&self) -> Option<usize> {
        match &self.locality {
            Locality::RegionalByRow { region_column } => self.column_index(region_column),
            _ => None,
        }
    }

    pub fn is_primary_key_column(&self, index: usize) -> bool {
        self.primary_key.contains(&index)
    }

    /// What a new table must hold besides [`TableDef::validate`]'s invariants: rules
    /// added after tables that break them may have been stored (such a table still
    /// loads, and is governed as its columns' classes ask, see `is_governed`).
    ///
    /// A GLOBAL table holds public data only: its rows are copied to every region, so a
    /// `sensitive` column there would be released everywhere with no region's decision.
    pub fn validate_new(&self) -> Result<(), String> {
        self.validate()?;
        self.validate_shape()?;
        if self.locality == Locality::Global
            && let Some(column) = self.columns.iter().find(|c| c.class != DataClass::Public)
        {
            return Err(format!(
                "GLOBAL table {} may not hold {} column {}: GLOBAL rows are copied to every \
                 region without a residency decision; declare the table REGIONAL or REGIONAL BY ROW",
                self.name,
                column.class.as_str(),
                column.name
            ));
        }
        Ok(())
    }

    /// The bounds a new or changed definition must respect (names, width, DECIMAL
    /// precision and scale). Not part of `validate`, which runs when the catalog loads:
    /// a replica created from a bad message before these checks existed must not stop
    /// the node from starting.
    pub fn validate_shape(&self) -> Result<(), String> {
        let local_name = self
            .name
            .strip_prefix(super::REPLICA_PREFIX)
            .unwrap_or(&self.name);
        if local_name.is_empty() || local_name.len() > IDENTIFIER_LENGTH_MAX {
            return Err(format!(
                "table name length must be 1..={IDENTIFIER_LENGTH_MAX} bytes"
            ));
        }
        // A replica adds its four columns to the source's.
        let width_max = if local_name.len() < self.name.len() {
            COLUMNS_PER_TABLE_MAX + 4
        } else {
            COLUMNS_PER_TABLE_MAX
        };
        if self.columns.len() > width_max {
            return Err(format!(
                "table {} has more than columns_per_table_max = {COLUMNS_PER_TABLE_MAX} columns",
                self.name
            ));
        }
        for column in &self.columns {
            if column.name.is_empty() || column.name.len() > IDENTIFIER_LENGTH_MAX {
                return Err(format!(
                    "column name length must be 1..={IDENTIFIER_LENGTH_MAX} bytes"
                ));
            }
            if let ColumnType::Decimal { precision, scale } = column.column_type
                && (!(1..=38).contains(&precision) || scale < 0 || scale.unsigned_abs() > precision)
            {
                return Err(format!(
                    "column {}: DECIMAL needs 1 <= precision <= 38 and 0 <= scale <= precision",
                    column.name
                ));
            }
        }
        Ok(())
    }

    /// Whether residency decisions govern this table's rows: every table but a GLOBAL
    /// one of public columns only (GLOBAL tables stored before `validate_new` refused
    /// `sensitive` columns are governed like regional ones).
    pub fn is_governed(&self) -> bool {
        self.locality != Locality::Global
            || self.columns.iter().any(|c| c.class != DataClass::Public)
    }

    /// Checks the invariants every stored definition must hold; storage refuses to
    /// persist a definition that fails them.
    pub fn validate(&self) -> Result<(), String> {
        if self.columns.is_empty() {
            return Err(format!("table {} has no columns", self.name));
        }
        for (i, column) in self.columns.iter().enumerate() {
            if self.columns[..i].iter().any(|c| c.name == column.name) {
                return Err(format!("column {} is declared twice", column.name));
            }
            if column.id >= self.next_column_id {
                return Err(format!("column {} has an unallocated id", column.name));
            }
        }
        for &index in &self.primary_key {
            let column = self
                .columns
                .get(index)
                .ok_or_else(|| format!("primary key of {} names a missing column", self.name))?;
            if column.nullable {
                return Err(format!(
                    "primary key column {} must be NOT NULL",
                    column.name
                ));
            }
        }
        if self.locality == Locality::Global
            && let Some(column) = self.columns.iter().find(|c| c.class == DataClass::Pii)
        {
            return Err(format!(
                "GLOBAL table {} may not hold pii column {}: GLOBAL rows are copied to every region",
                self.name, column.name
            ));
        }
        if self.cdc {
            if self.locality == Locality::Replica {
                return Err(format!(
                    "replica table {} cannot itself be captured",
                    self.name
                ));
            }
            if let Some(&index) = self
                .primary_key
                .iter()
                .find(|&&i| self.columns[i].class != DataClass::Public)
            {
                return Err(format!(
                    "cdc needs a public primary key: {} is {}, and the key of every change \
                     event leaves the region unredacted (as the message key)",
                    self.columns[index].name,
                    self.columns[index].class.as_str()
                ));
            }
        }
        if let Locality::RegionalByRow { region_column } = &self.locality {
            let index = self.column_index(region_column).ok_or_else(|| {
                format!(
                    "region_column {region_column} is not a column of {}",
                    self.name
                )
            })?;
            let column = &self.columns[index];
            if column.column_type != ColumnType::Text {
                return Err(format!("region_column {region_column} must be TEXT"));
            }
            if column.nullable {
                return Err(format!("region_column {region_column} must be NOT NULL"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn global(fee_class: DataClass) -> TableDef {
        let column = |id: u16, name: &str, class| ColumnDef {
            id,
            name: name.into(),
            column_type: ColumnType::BigInt,
            nullable: false,
            class,
        };
        TableDef {
            id: 7,
            name: "fees".into(),
            columns: vec![
                column(0, "id", DataClass::Public),
                column(1, "fee", fee_class),
            ],
            primary_key: vec![0],
            locality: Locality::Global,
            next_column_id: 2,
            cdc: true,
            cache_ttl_ms: None,
        }
    }

    /// Issue 21: a replica built from a forged message could hold DECIMAL(200,2). New
    /// and changed definitions are refused; a stored one still loads (`validate`), so a
    /// node attacked before the check existed still starts.
    #[test]
    fn shapes_are_checked_on_new_definitions_not_on_load() {
        let mut poisoned = global(DataClass::Public);
        poisoned.name = format!("{}fees", crate::catalog::REPLICA_PREFIX);
        poisoned.columns[1].column_type = ColumnType::Decimal {
            precision: 200,
            scale: 2,
        };
        assert_eq!(poisoned.validate(), Ok(()));
        assert!(
            poisoned
                .validate_shape()
                .is_err_and(|e| e.contains("DECIMAL"))
        );
        let mut long = global(DataClass::Public);
        long.columns[1].name = "x".repeat(IDENTIFIER_LENGTH_MAX + 1);
        assert!(
            long.validate_new()
                .is_err_and(|e| e.contains("column name length"))
        );
        let mut replica = global(DataClass::Public);
        replica.name = format!("{}{}", crate::catalog::REPLICA_PREFIX, "t".repeat(63));
        assert_eq!(
            replica.validate_shape(),
            Ok(()),
            "the prefix does not count"
        );
    }

    #[test]
    fn a_global_table_holds_public_columns_only_and_an_older_one_that_does_not_is_governed() {
        let public = global(DataClass::Public);
        assert_eq!(public.validate_new(), Ok(()));
        assert!(
            !public.is_governed(),
            "public reference data needs no decision"
        );

        let sensitive = global(DataClass::Sensitive);
        let refusal = sensitive.validate_new().expect_err("sensitive in GLOBAL");
        assert!(refusal.contains("sensitive column fee"), "{refusal}");
        // Stored by an earlier version: it still loads, and every path decides on it.
        assert_eq!(sensitive.validate(), Ok(()));
        assert!(sensitive.is_governed());

        assert!(global(DataClass::Pii).validate().is_err(), "pii never");
    }
}
