//! A hash-chained, append-only log in the database file. Storage does not interpret
//! entries (the residency guard writes JSON); it chains them:
//!
//! `hash(n) = SHA-256(hash(n-1) || n as 8 bytes big-endian || body(n))`, `hash(0)` = 32
//! zero bytes. Entry `n` is stored under key `n` as `hash(n-1) || body(n)`, and the
//! newest `(n, hash(n))` is kept apart as the tip. An entry edited in place breaks the
//! link from the next entry (or the tip); a deleted entry leaves a gap in the sequence.
//! Entries are appended inside the same commit as the data they describe.
//!
//! What the chain cannot show: someone able to rewrite the whole file can rebuild a
//! consistent chain. Record the tip hash elsewhere (`domicile audit verify` prints it)
//! to pin history up to that point.

use redb::{ReadableDatabase, ReadableTable, Table, TableDefinition};
use sha2::{Digest, Sha256};

use super::error::StorageError;

/// Sequence number → previous entry's hash (32 bytes) followed by the body.
pub(super) const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// Key `tip` → sequence number (8 bytes big-endian) followed by its hash (32 bytes).
pub(super) const AUDIT_TIP: TableDefinition<&str, &[u8]> = TableDefinition::new("audit_tip");
const TIP: &str = "tip";
const HASH_BYTES: usize = 32;

pub(super) type Hash = [u8; HASH_BYTES];

pub(super) fn chain_hash(previous: &Hash, seq: u64, body: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(seq.to_be_bytes());
    hasher.update(body);
    hasher.finalize().into()
}

fn decode_tip(bytes: &[u8]) -> Option<(u64, Hash)> {
    let seq = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
    let hash: Hash = bytes.get(8..8 + HASH_BYTES)?.try_into().ok()?;
    Some((seq, hash))
}

/// Appends `bodies` in order after the current tip, inside a write transaction.
pub(super) fn append(
    log: &mut Table<'_, u64, &'static [u8]>,
    tip: &mut Table<'_, &'static str, &'static [u8]>,
    bodies: Vec<Vec<u8>>,
) -> Result<(), StorageError> {
    if bodies.is_empty() {
        return Ok(());
    }
    let (mut seq, mut hash) = match tip.get(TIP)? {
        Some(bytes) => decode_tip(bytes.value())
            .ok_or_else(|| StorageError::Transaction("corrupt audit tip".into()))?,
        None => (0, [0; HASH_BYTES]),
    };
    for body in bodies {
        seq += 1;
        let mut stored = Vec::with_capacity(HASH_BYTES + body.len());
        stored.extend_from_slice(&hash);
        stored.extend_from_slice(&body);
        log.insert(seq, stored.as_slice())?;
        hash = chain_hash(&hash, seq, &body);
    }
    let mut encoded = seq.to_be_bytes().to_vec();
    encoded.extend_from_slice(&hash);
    tip.insert(TIP, encoded.as_slice())?;
    Ok(())
}

/// One stored entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: u64,
    pub body: Vec<u8>,
    /// This entry's chain hash (as recomputed from what is stored).
    pub hash: [u8; 32],
}

/// The first place where the stored chain does not hold.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("audit chain broken at entry {seq}: {reason}")]
pub struct AuditBreak {
    pub seq: u64,
    pub reason: String,
}

/// A chain that verified: how many entries, and the hash of the newest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditVerified {
    pub entries: u64,
    pub tip: [u8; 32],
}

fn record(seq: u64, stored: &[u8]) -> AuditRecord {
    let (previous, body) = stored.split_at(HASH_BYTES.min(stored.len()));
    let previous: Hash = previous.try_into().unwrap_or([0; HASH_BYTES]);
    AuditRecord {
        seq,
        body: body.to_vec(),
        hash: chain_hash(&previous, seq, body),
    }
}

/// Entries with `seq > after`, oldest first, at most `limit`.
pub(super) fn read(
    db: &redb::Database,
    after: u64,
    limit: usize,
) -> Result<Vec<AuditRecord>, StorageError> {
    let txn = db.begin_read()?;
    let log = txn.open_table(AUDIT)?;
    let mut out = Vec::new();
    for entry in log.range(after.saturating_add(1)..)?.take(limit) {
        let (seq, stored) = entry?;
        out.push(record(seq.value(), stored.value()));
    }
    Ok(out)
}

/// The newest `limit` entries, oldest first.
pub(super) fn newest(db: &redb::Database, limit: usize) -> Result<Vec<AuditRecord>, StorageError> {
    let txn = db.begin_read()?;
    let log = txn.open_table(AUDIT)?;
    let mut out = Vec::new();
    for entry in log.iter()?.rev().take(limit) {
        let (seq, stored) = entry?;
        out.push(record(seq.value(), stored.value()));
    }
    out.reverse();
    Ok(out)
}

/// Walks the whole chain from entry 1 to the tip.
pub(super) fn verify(
    db: &redb::Database,
) -> Result<Result<AuditVerified, AuditBreak>, StorageError> {
    let txn = db.begin_read()?;
    let log = txn.open_table(AUDIT)?;
    let tips = txn.open_table(AUDIT_TIP)?;
    let broken = |seq: u64, reason: &str| {
        Ok(Err(AuditBreak {
            seq,
            reason: reason.to_string(),
        }))
    };
    let mut expected_seq = 1u64;
    let mut hash: Hash = [0; HASH_BYTES];
    for entry in log.iter()? {
        let (seq, stored) = entry?;
        let seq = seq.value();
        if seq != expected_seq {
            return broken(expected_seq, "entry missing (the sequence has a gap)");
        }
        let stored = stored.value();
        if stored.len() < HASH_BYTES || stored[..HASH_BYTES] != hash {
            let reason = format!(
                "its link does not match entry {} as stored (one of the two was altered)",
                seq - 1
            );
            return broken(seq, &reason);
        }
        hash = chain_hash(&hash, seq, &stored[HASH_BYTES..]);
        expected_seq += 1;
    }
    let entries = expected_seq - 1;
    match tips.get(TIP)?.and_then(|t| decode_tip(t.value())) {
        None if entries == 0 => {}
        None => return broken(entries, "the tip record is missing"),
        Some((seq, _)) if seq != entries => {
            return broken(entries.min(seq) + 1, "entries after this point are missing");
        }
        Some((_, tip)) if tip != hash => {
            return broken(entries, "its content does not match the recorded tip");
        }
        Some(_) => {}
    }
    Ok(Ok(AuditVerified { entries, tip: hash }))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::Store;

    async fn store_with_entries(path: &std::path::Path, count: u64) {
        let store = Store::open(path).expect("store");
        for i in 0..count {
            store
                .write(move |ctx| {
                    ctx.append_audit(format!("entry {i}").into_bytes());
                    Ok::<_, StorageError>(())
                })
                .await
                .expect("append");
        }
        // A failed statement's entries are not kept.
        let failed = store
            .write(|ctx| {
                ctx.append_audit(b"never".to_vec());
                Err::<(), _>(StorageError::Transaction("refused".into()))
            })
            .await;
        assert!(failed.is_err());
        let verified = store.verify_audit().expect("read").expect("intact");
        assert_eq!(verified.entries, count);
        let entries = store.audit_entries(0, 100).expect("entries");
        assert_eq!(entries.len() as u64, count);
        assert_eq!(entries.last().map(|e| e.hash), Some(verified.tip));
        assert!(entries.iter().all(|e| e.body != b"never"));
        let closed = store.close_watch();
        drop(store);
        assert!(closed.wait(Duration::from_secs(5)));
    }

    type Edit = fn(&mut Table<'_, u64, &'static [u8]>);

    /// Edits the database file the way an intruder with file access would.
    fn tamper(path: &std::path::Path, edit: impl FnOnce(&mut Table<'_, u64, &'static [u8]>)) {
        let db = redb::Database::create(path).expect("open");
        let txn = db.begin_write().expect("txn");
        {
            let mut log = txn.open_table(AUDIT).expect("audit");
            edit(&mut log);
        }
        txn.commit().expect("commit");
    }

    fn verdict(path: &std::path::Path) -> Result<AuditVerified, AuditBreak> {
        let db = redb::Database::create(path).expect("open");
        verify(&db).expect("read")
    }

    #[tokio::test]
    async fn an_edited_or_deleted_entry_breaks_the_chain_where_it_happened() {
        let dir = tempfile::tempdir().expect("dir");
        let cases: [(&str, Edit, u64); 4] = [
            (
                "edit entry 2",
                |log| {
                    let mut stored = log.get(2).expect("get").expect("entry").value().to_vec();
                    let last = stored.len() - 1;
                    stored[last] ^= 1;
                    log.insert(2, stored.as_slice()).expect("put");
                },
                3,
            ),
            (
                "edit the newest entry",
                |log| {
                    let mut stored = log.get(4).expect("get").expect("entry").value().to_vec();
                    stored.push(b'!');
                    log.insert(4, stored.as_slice()).expect("put");
                },
                4,
            ),
            (
                "delete entry 3",
                |log| {
                    log.remove(3).expect("remove");
                },
                3,
            ),
            (
                "delete the newest entry",
                |log| {
                    log.remove(4).expect("remove");
                },
                4,
            ),
        ];
        for (i, (what, edit, broken_at)) in cases.into_iter().enumerate() {
            let path = dir.path().join(format!("{i}.redb"));
            store_with_entries(&path, 4).await;
            assert!(verdict(&path).is_ok(), "{what}: intact before");
            tamper(&path, edit);
            match verdict(&path) {
                Err(AuditBreak { seq, .. }) => assert_eq!(seq, broken_at, "{what}"),
                Ok(_) => panic!("{what} went unnoticed"),
            }
        }
    }
}
