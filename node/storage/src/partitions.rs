//! The partitions (home regions) of a table that hold at least one row, read from any
//! table of rows: a snapshot's (read-only) or a write transaction's. One function for
//! both, so that they cannot disagree (they once did: the writer's copy stopped at a
//! key it could not read and answered as if the table had no more partitions, so an
//! UPDATE or DELETE could skip rows silently).

use redb::ReadableTable;

use super::error::StorageError;
use super::key_codec;
use crate::catalog::TableId;

/// The partitions of `table_id` in key order, found by skipping from one partition
/// prefix to the next: one seek per partition, no scan.
///
/// # Errors
/// A storage error, or a row key of the table with no readable partition (corruption).
pub(super) fn partitions_of(
    rows: &impl ReadableTable<&'static [u8], &'static [u8]>,
    table_id: TableId,
) -> Result<Vec<String>, StorageError> {
    let mut partitions = Vec::new();
    let end = key_codec::prefix_end(&key_codec::table_prefix(table_id));
    let mut start = key_codec::table_prefix(table_id);
    loop {
        let mut range = rows.range(start.as_slice()..end.as_slice())?;
        let Some(entry) = range.next() else { break };
        let (key, _) = entry?;
        let Some(partition) = key_codec::partition_of(key.value()) else {
            return Err(StorageError::Transaction(format!(
                "row key of table {table_id} has no partition"
            )));
        };
        start = key_codec::prefix_end(&key_codec::partition_prefix(table_id, &partition));
        partitions.push(partition);
    }
    Ok(partitions)
}

/// Adds the partitions of `table_id` that `staged` (row writes not yet committed, keyed
/// as the rows table is) holds to `partitions`, skipping from one partition to the next
/// as [`partitions_of`] does: a statement that stages n rows and asks once per row
/// costs n x partitions seeks, not n x n key visits.
pub(super) fn add_staged_partitions<V>(
    partitions: &mut Vec<String>,
    staged: &std::collections::BTreeMap<Vec<u8>, V>,
    table_id: TableId,
) {
    let end = key_codec::prefix_end(&key_codec::table_prefix(table_id));
    let mut start = key_codec::table_prefix(table_id);
    while let Some((key, _)) = staged.range(start.clone()..end.clone()).next() {
        match key_codec::partition_of(key) {
            Some(partition) => {
                start = key_codec::prefix_end(&key_codec::partition_prefix(table_id, &partition));
                if !partitions.contains(&partition) {
                    partitions.push(partition);
                }
            }
            None => {
                // Not a row key (never staged by this crate): step past it.
                start = key.clone();
                start.push(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use redb::{Database, ReadableDatabase, TableDefinition};

    use super::*;
    use crate::Value;

    const ROWS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("rows");

    #[test]
    fn staged_partitions_are_found_by_seeking_and_merged_once() {
        let mut staged = std::collections::BTreeMap::new();
        for (table, partition, id) in [
            (7, "us-east", 1),
            (7, "us-east", 2),
            (7, "eu-central", 3),
            (8, "ap-southeast", 4),
        ] {
            staged.insert(
                key_codec::row_key(table, partition, &[Value::BigInt(id)]),
                (),
            );
        }
        let mut partitions = vec!["eu-central".to_string()];
        add_staged_partitions(&mut partitions, &staged, 7);
        assert_eq!(partitions, ["eu-central", "us-east"]);
        let mut none = Vec::new();
        add_staged_partitions(&mut none, &staged, 9);
        assert!(none.is_empty());
    }

    /// Read-only and write tables give the same answer, and both refuse a key whose
    /// partition cannot be read.
    #[test]
    fn read_and_write_tables_agree_and_refuse_a_corrupt_key() {
        let dir = tempfile::tempdir().expect("dir");
        let db = Database::create(dir.path().join("db")).expect("db");
        let txn = db.begin_write().expect("write");
        {
            let mut rows = txn.open_table(ROWS).expect("table");
            for (table, partition, id) in [
                (7, "us-east", 1),
                (7, "us-east", 2),
                (7, "eu-central", 3),
                (7, "ap-southeast", 4),
                (8, "eu-central", 5),
            ] {
                let key = key_codec::row_key(table, partition, &[Value::BigInt(id)]);
                rows.insert(key.as_slice(), &b""[..]).expect("insert");
            }
            let expected = ["ap-southeast", "eu-central", "us-east"];
            assert_eq!(partitions_of(&rows, 7).expect("write table"), expected);
            assert_eq!(
                partitions_of(&rows, 9).expect("empty"),
                Vec::<String>::new()
            );
        }
        txn.commit().expect("commit");
        let read = db.begin_read().expect("read");
        let rows = read.open_table(ROWS).expect("table");
        assert_eq!(
            partitions_of(&rows, 7).expect("read table"),
            ["ap-southeast", "eu-central", "us-east"]
        );
        drop(rows);
        drop(read);

        // A key of table 7 that ends inside its partition's escaping: unreadable.
        let txn = db.begin_write().expect("write");
        {
            let mut rows = txn.open_table(ROWS).expect("table");
            let mut corrupt = key_codec::table_prefix(7);
            corrupt.push(b'z');
            rows.insert(corrupt.as_slice(), &b""[..]).expect("insert");
            assert!(partitions_of(&rows, 7).is_err(), "the writer's view");
        }
        txn.commit().expect("commit");
        let read = db.begin_read().expect("read");
        let rows = read.open_table(ROWS).expect("table");
        assert!(partitions_of(&rows, 7).is_err(), "a snapshot's view");
    }
}
