//! When each remote result expires, so that it is removed when it does, not only when
//! it is next read (foyer keeps an entry until it is evicted; it has no TTL).
//!
//! The index lives in memory and in an append-only log beside the disk tier
//! (`<cache dir>/expiries.log`), so entries the disk tier recovers after a restart are
//! swept as well. A record is `expires_unix_ms` (8 bytes, little-endian), the key's
//! length (1 byte) and the key: the cache's own key, a keyed hash, never a value. The
//! log is rewritten with the live entries once most of its records are dead. A log
//! lost in a crash only delays removals to the entry's next read or eviction.

use crate::limits::{
    CACHE_EXPIRY_DEAD_RECORDS_MAX, CACHE_EXPIRY_KEY_MAX_BYTES, CACHE_EXPIRY_LOG_MAX_BYTES,
};
use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub(super) struct ExpiryIndex {
    /// Each key's newest expiry.
    expires: HashMap<Vec<u8>, u64>,
    /// The same, ordered by expiry.
    by_time: BTreeSet<(u64, Vec<u8>)>,
    path: PathBuf,
    log: Option<File>,
    records: usize,
}

impl ExpiryIndex {
    /// The index of `dir`'s log, empty if there is none or it cannot be read (then the
    /// cache works on; removals wait for reads).
    pub(super) fn open(dir: &Path) -> Self {
        let path = dir.join("expiries.log");
        let mut index = Self {
            expires: HashMap::new(),
            by_time: BTreeSet::new(),
            path,
            log: None,
            records: 0,
        };
        match read_log(&index.path) {
            Ok(records) => {
                for (key, expires) in records {
                    index.note(key, expires);
                    index.records += 1;
                }
            }
            Err(error) => {
                tracing::warn!(error = %error, "cache expiry log unreadable; starting a new one");
            }
        }
        index.rewrite();
        index
    }

    /// Records that `key` now expires at `expires_unix_ms`.
    pub(super) fn insert(&mut self, key: &[u8], expires_unix_ms: u64) {
        if key.len() > CACHE_EXPIRY_KEY_MAX_BYTES {
            return;
        }
        self.note(key.to_vec(), expires_unix_ms);
        if let Some(log) = &mut self.log
            && let Err(error) = log.write_all(&record(key, expires_unix_ms))
        {
            tracing::warn!(error = %error, "cannot append to the cache expiry log");
            self.log = None;
        }
        self.records += 1;
        if self.records > self.expires.len() + CACHE_EXPIRY_DEAD_RECORDS_MAX {
            self.rewrite();
        }
    }

    /// Takes out every key expired at `now_unix_ms`, for the caller to remove.
    pub(super) fn expired(&mut self, now_unix_ms: u64) -> Vec<Vec<u8>> {
        let mut due = Vec::new();
        while let Some((expires, _)) = self.by_time.first() {
            if *expires > now_unix_ms {
                break;
            }
            let Some((_, key)) = self.by_time.pop_first() else {
                break;
            };
            self.expires.remove(&key);
            due.push(key);
        }
        if !due.is_empty() && self.records > self.expires.len() + CACHE_EXPIRY_DEAD_RECORDS_MAX {
            self.rewrite();
        }
        due
    }

    /// Whether `key` is waiting to expire (not swept, not unknown).
    pub(super) fn contains(&self, key: &[u8]) -> bool {
        self.expires.contains_key(key)
    }

    /// How many entries are waiting to expire.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.expires.len()
    }

    fn note(&mut self, key: Vec<u8>, expires: u64) {
        if let Some(previous) = self.expires.insert(key.clone(), expires) {
            self.by_time.remove(&(previous, key.clone()));
        }
        self.by_time.insert((expires, key));
    }

    /// Replaces the log by one record per live entry (written aside, then renamed).
    fn rewrite(&mut self) {
        let aside = self.path.with_extension("log.new");
        let written = (|| -> std::io::Result<File> {
            let mut file = File::create(&aside)?;
            let mut bytes = Vec::with_capacity(self.expires.len() * 48);
            for (expires, key) in &self.by_time {
                bytes.extend_from_slice(&record(key, *expires));
            }
            file.write_all(&bytes)?;
            std::fs::rename(&aside, &self.path)?;
            OpenOptions::new().append(true).open(&self.path)
        })();
        match written {
            Ok(file) => {
                self.log = Some(file);
                self.records = self.expires.len();
            }
            Err(error) => {
                tracing::warn!(error = %error, "cannot write the cache expiry log");
                self.log = None;
            }
        }
    }
}

fn record(key: &[u8], expires_unix_ms: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + key.len());
    out.extend_from_slice(&expires_unix_ms.to_le_bytes());
    out.push(u8::try_from(key.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(key);
    out
}

/// The log's records; a torn last record (a crash mid-append) is dropped.
fn read_log(path: &Path) -> std::io::Result<Vec<(Vec<u8>, u64)>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    if file.metadata()?.len() > CACHE_EXPIRY_LOG_MAX_BYTES {
        return Err(std::io::Error::other(format!(
            "longer than {CACHE_EXPIRY_LOG_MAX_BYTES} bytes"
        )));
    }
    let mut bytes = Vec::new();
    file.take(CACHE_EXPIRY_LOG_MAX_BYTES)
        .read_to_end(&mut bytes)?;
    let mut records = Vec::new();
    let mut rest = bytes.as_slice();
    while let Some((expires, tail)) = rest.split_first_chunk::<8>() {
        let Some((&length, tail)) = tail.split_first() else {
            break;
        };
        let Some((key, tail)) = tail.split_at_checked(usize::from(length)) else {
            break;
        };
        records.push((key.to_vec(), u64::from_le_bytes(*expires)));
        rest = tail;
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_out_once_they_expire_and_a_newer_expiry_wins() {
        let dir = tempfile::tempdir().expect("dir");
        let mut index = ExpiryIndex::open(dir.path());
        index.insert(b"a", 100);
        index.insert(b"b", 200);
        index.insert(b"a", 300);
        assert!(index.expired(99).is_empty());
        assert_eq!(index.expired(250), [b"b".to_vec()], "a was renewed");
        assert_eq!(index.expired(300), [b"a".to_vec()]);
        assert_eq!(index.len(), 0);
    }

    #[test]
    fn the_log_survives_a_restart_and_a_torn_tail() {
        let dir = tempfile::tempdir().expect("dir");
        {
            let mut index = ExpiryIndex::open(dir.path());
            index.insert(b"kept", 500);
            index.insert(b"gone", 100);
            assert_eq!(index.expired(100), [b"gone".to_vec()]);
        }
        // A crash in the middle of an append leaves part of a record.
        let path = dir.path().join("expiries.log");
        let mut log = OpenOptions::new().append(true).open(&path).expect("log");
        log.write_all(&record(b"torn", 700)[..5]).expect("torn");
        drop(log);
        let mut index = ExpiryIndex::open(dir.path());
        // "gone" was appended before it expired and comes back: removing it again is
        // harmless. The torn record is dropped.
        let mut due = index.expired(600);
        due.sort();
        assert_eq!(due, [b"gone".to_vec(), b"kept".to_vec()]);
        assert_eq!(index.len(), 0);
    }

    #[test]
    fn dead_records_are_compacted_away() {
        let dir = tempfile::tempdir().expect("dir");
        let mut index = ExpiryIndex::open(dir.path());
        for round in 0..(CACHE_EXPIRY_DEAD_RECORDS_MAX as u64 * 3) {
            index.insert(b"same", round);
        }
        let size = std::fs::metadata(dir.path().join("expiries.log"))
            .expect("log")
            .len();
        assert!(
            size < (CACHE_EXPIRY_DEAD_RECORDS_MAX as u64 + 2) * 13,
            "the log holds at most the dead-record bound: {size} bytes"
        );
        assert_eq!(ExpiryIndex::open(dir.path()).len(), 1);
    }

    #[test]
    fn an_oversized_or_garbage_log_starts_afresh() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("expiries.log");
        std::fs::write(&path, [0xff_u8; 3]).expect("garbage");
        assert_eq!(ExpiryIndex::open(dir.path()).len(), 0);
        let file = File::create(&path).expect("log");
        file.set_len(CACHE_EXPIRY_LOG_MAX_BYTES + 1)
            .expect("sparse");
        assert_eq!(ExpiryIndex::open(dir.path()).len(), 0);
        assert!(std::fs::metadata(&path).expect("log").len() < CACHE_EXPIRY_LOG_MAX_BYTES);
    }
}
