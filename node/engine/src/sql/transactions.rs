//! The open interactive transactions of a node: who owns each, and when it times out.
//!
//! A transaction is named by a random 16-byte id, the Flight SQL `transaction_id`
//! (BeginTransaction / EndTransaction) or, for SQL `BEGIN` ... `COMMIT`, the one its
//! client session holds. Only the user who began it may use it: to anyone else an id
//! is unknown, so ids cannot be probed. What a transaction reads and writes, and how it
//! commits serializably, is storage's (`storage::Transaction`).
//!
//! DDL in a transaction commits it first (as in MySQL and Oracle; SqlInfo says so): the
//! transaction's work is committed, the DDL runs on its own, and the next statement
//! under the same id starts a new transaction on a snapshot that sees the DDL. Tools
//! that run `CREATE TABLE` or `DROP TABLE` with autocommit off (pandas `to_sql`,
//! SQLAlchemy `create_all`) depend on it.
//!
//! Bounds: `TRANSACTIONS_OPEN_MAX` per node and `TRANSACTIONS_PER_USER_MAX` per user,
//! `TRANSACTION_STATEMENTS_MAX` statements, `TRANSACTION_IDLE_MAX` without a
//! statement and `TRANSACTION_AGE_MAX` in all; a transaction past them is rolled back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use rand::RngCore;
use thiserror::Error;

use crate::auth::Principal;
use crate::error_kind::{Classify, ErrorKind};
use crate::limits::{
    TRANSACTION_AGE_MAX, TRANSACTION_IDLE_MAX, TRANSACTION_STATEMENTS_MAX, TRANSACTIONS_OPEN_MAX,
    TRANSACTIONS_PER_USER_MAX,
};
use crate::storage::{StorageError, Store, Transaction};

/// The id of an open transaction (random, 16 bytes).
pub type TransactionId = [u8; 16];

#[derive(Debug, Error)]
pub enum TransactionError {
    /// Unknown, ended, timed out, or another user's: the same answer for each.
    #[error("no open transaction with this id (it was committed, rolled back or timed out)")]
    Unknown,
    #[error("malformed transaction id: {0} bytes, expected 16")]
    Malformed(usize),
    #[error(
        "too many open transactions (transactions_open_max = {TRANSACTIONS_OPEN_MAX}, \
         transactions_per_user_max = {TRANSACTIONS_PER_USER_MAX}); commit or roll back one"
    )]
    TooMany,
    #[error(
        "the transaction ran transaction_statements_max = {TRANSACTION_STATEMENTS_MAX} \
         statements; it was rolled back"
    )]
    TooManyStatements,
    #[error(
        "the transaction is older than transaction_age_max = {} s; it was rolled back",
        TRANSACTION_AGE_MAX.as_secs()
    )]
    TooOld,
    #[error("cannot run a write in a read-only transaction (SQLSTATE 25006)")]
    ReadOnly,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl Classify for TransactionError {
    fn kind(&self) -> ErrorKind {
        match self {
            TransactionError::Unknown => ErrorKind::NotFound,
            TransactionError::Malformed(_) => ErrorKind::Invalid,
            TransactionError::TooMany
            | TransactionError::TooManyStatements
            | TransactionError::TooOld => ErrorKind::Exhausted,
            TransactionError::ReadOnly => ErrorKind::Precondition,
            TransactionError::Storage(error) => error.kind(),
        }
    }
}

struct Open {
    owner: String,
    /// `None` after a DDL statement committed it: the next statement begins a new one.
    transaction: Option<Transaction>,
    begun: Instant,
    last_used: Instant,
    statements: usize,
    /// Begun `READ ONLY`: its statements may only read.
    read_only: bool,
    /// The client session it was begun in (an opaque tag): closing the session rolls
    /// it back.
    session: u64,
}

/// The node's open transactions.
pub struct Transactions {
    store: Store,
    open: Mutex<HashMap<TransactionId, Open>>,
    idle_max: Duration,
}

impl Transactions {
    pub fn new(store: Store) -> Arc<Self> {
        Self::with_idle_max(store, TRANSACTION_IDLE_MAX)
    }

    /// `new`, with another idle timeout (tests).
    pub fn with_idle_max(store: Store, idle_max: Duration) -> Arc<Self> {
        Arc::new(Self {
            store,
            open: Mutex::new(HashMap::new()),
            idle_max,
        })
    }

    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<TransactionId, Open>> {
        self.open.lock().expect("transaction table lock poisoned")
    }

    /// Rolls back idle transactions every second until the registry is dropped.
    pub fn start_reaper(self: &Arc<Self>) {
        let registry: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(registry) = registry.upgrade() else {
                    return;
                };
                registry.expire(Instant::now());
            }
        });
    }

    /// Begins a transaction for `principal`, in the client session tagged `session`, on
    /// a snapshot of what is committed now; `read_only` refuses its writes.
    pub fn begin(
        &self,
        principal: &Principal,
        session: u64,
        read_only: bool,
        now: Instant,
    ) -> Result<TransactionId, TransactionError> {
        self.expire(now);
        let mut open = self.open();
        let of_user = open.values().filter(|o| o.owner == principal.user).count();
        if open.len() >= TRANSACTIONS_OPEN_MAX || of_user >= TRANSACTIONS_PER_USER_MAX {
            return Err(TransactionError::TooMany);
        }
        let transaction = self.store.begin()?;
        let mut id = [0u8; 16];
        rand::rng().fill_bytes(&mut id);
        open.insert(
            id,
            Open {
                owner: principal.user.clone(),
                transaction: Some(transaction),
                begun: now,
                last_used: now,
                statements: 0,
                read_only,
                session,
            },
        );
        Ok(id)
    }

    /// The transaction `id` for one more statement of `principal`'s; `writes` says
    /// whether the statement may write.
    pub fn statement(
        &self,
        id: &[u8],
        principal: &Principal,
        writes: bool,
        now: Instant,
    ) -> Result<Transaction, TransactionError> {
        let id = parse_id(id)?;
        let mut open = self.open();
        let entry = match open.get_mut(&id) {
            Some(entry) if entry.owner == principal.user => entry,
            _ => return Err(TransactionError::Unknown),
        };
        let refused = if now.duration_since(entry.begun) > TRANSACTION_AGE_MAX {
            Some(TransactionError::TooOld)
        } else if entry.statements >= TRANSACTION_STATEMENTS_MAX {
            Some(TransactionError::TooManyStatements)
        } else {
            None
        };
        if let Some(refused) = refused {
            let ended = open.remove(&id);
            drop(open);
            if let Some(transaction) = ended.and_then(|ended| ended.transaction) {
                transaction.rollback();
            }
            return Err(refused);
        }
        if writes && entry.read_only {
            return Err(TransactionError::ReadOnly);
        }
        let transaction = match &entry.transaction {
            Some(transaction) => transaction.clone(),
            None => {
                let renewed = self.store.begin()?;
                entry.transaction = Some(renewed.clone());
                entry.begun = now;
                renewed
            }
        };
        entry.statements += 1;
        entry.last_used = now;
        Ok(transaction)
    }

    /// Commits transaction `id` because a DDL statement is about to run in it; the id
    /// stays open and its next statement begins a new transaction (see the module
    /// docs). A serialization failure ends the transaction, nothing of it applied, and
    /// the DDL must not run.
    pub async fn commit_before_ddl(
        &self,
        id: &[u8],
        principal: &Principal,
        now: Instant,
    ) -> Result<(), TransactionError> {
        let id = parse_id(id)?;
        let committing = {
            let mut open = self.open();
            let entry = match open.get_mut(&id) {
                Some(entry) if entry.owner == principal.user => entry,
                _ => return Err(TransactionError::Unknown),
            };
            if entry.read_only {
                return Err(TransactionError::ReadOnly);
            }
            entry.last_used = now;
            entry.transaction.take()
        };
        let Some(transaction) = committing else {
            return Ok(());
        };
        if let Err(error) = self.store.commit(&transaction).await {
            self.open().remove(&id);
            return Err(error.into());
        }
        Ok(())
    }

    /// Commits transaction `id` (see `Store::commit`); it has ended afterwards, whatever
    /// the outcome. A serialization failure means nothing of it was applied.
    pub async fn commit(&self, id: &[u8], principal: &Principal) -> Result<(), TransactionError> {
        if let Some(transaction) = self.take(id, principal)? {
            self.store.commit(&transaction).await?;
        }
        Ok(())
    }

    /// Rolls back transaction `id`: nothing of it is applied.
    pub fn rollback(&self, id: &[u8], principal: &Principal) -> Result<(), TransactionError> {
        if let Some(transaction) = self.take(id, principal)? {
            transaction.rollback();
        }
        Ok(())
    }

    /// Rolls back every transaction `principal` began in the client session tagged
    /// `session` (the session was closed); returns how many.
    pub fn end_session(&self, session: u64, principal: &Principal) -> usize {
        let ended: Vec<Open> = {
            let mut open = self.open();
            let ids: Vec<TransactionId> = open
                .iter()
                .filter(|(_, entry)| entry.session == session && entry.owner == principal.user)
                .map(|(id, _)| *id)
                .collect();
            ids.iter().filter_map(|id| open.remove(id)).collect()
        };
        for transaction in ended.iter().filter_map(|entry| entry.transaction.as_ref()) {
            transaction.rollback();
        }
        ended.len()
    }

    /// `id` as a transaction id, if it names an open transaction of `principal`'s.
    pub fn owned(
        &self,
        id: &[u8],
        principal: &Principal,
    ) -> Result<TransactionId, TransactionError> {
        let id = parse_id(id)?;
        match self.open().get(&id) {
            Some(entry) if entry.owner == principal.user => Ok(id),
            _ => Err(TransactionError::Unknown),
        }
    }

    fn take(
        &self,
        id: &[u8],
        principal: &Principal,
    ) -> Result<Option<Transaction>, TransactionError> {
        let id = parse_id(id)?;
        let mut open = self.open();
        match open.get(&id) {
            Some(entry) if entry.owner == principal.user => {}
            _ => return Err(TransactionError::Unknown),
        }
        open.remove(&id)
            .map(|entry| entry.transaction)
            .ok_or(TransactionError::Unknown)
    }

    /// Rolls back every transaction idle longer than the idle bound or older than the
    /// age bound; returns how many.
    pub fn expire(&self, now: Instant) -> usize {
        let expired: Vec<Open> = {
            let mut open = self.open();
            let ids: Vec<TransactionId> = open
                .iter()
                .filter(|(_, entry)| {
                    now.duration_since(entry.last_used) > self.idle_max
                        || now.duration_since(entry.begun) > TRANSACTION_AGE_MAX
                })
                .map(|(id, _)| *id)
                .collect();
            ids.iter().filter_map(|id| open.remove(id)).collect()
        };
        // Rolled back outside the table's lock: a statement still running in one of
        // them holds its state until it ends, and must not hold up every other client.
        for entry in &expired {
            if let Some(transaction) = &entry.transaction {
                transaction.rollback();
            }
            tracing::info!(
                user = %entry.owner,
                statements = entry.statements,
                "an idle or too old transaction was rolled back"
            );
        }
        expired.len()
    }

    /// Open transactions now.
    pub fn len(&self) -> usize {
        self.open().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `id` as a transaction id: 16 bytes.
pub fn parse_id(id: &[u8]) -> Result<TransactionId, TransactionError> {
    <TransactionId>::try_from(id).map_err(|_| TransactionError::Malformed(id.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn user(name: &str) -> Principal {
        Principal {
            user: name.into(),
            role: Role::Writer,
            home_region: "eu-central".into(),
            compliance: Vec::new(),
        }
    }

    fn registry(idle: Duration) -> (tempfile::TempDir, Arc<Transactions>) {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(&dir.path().join("node.redb")).expect("store");
        (dir, Transactions::with_idle_max(store, idle))
    }

    #[tokio::test]
    async fn only_its_owner_may_use_a_transaction() {
        let (_dir, transactions) = registry(Duration::from_secs(60));
        let now = Instant::now();
        let id = transactions
            .begin(&user("alice"), 0, false, now)
            .expect("begin");
        assert!(matches!(
            transactions.statement(&id, &user("mallory"), true, now),
            Err(TransactionError::Unknown)
        ));
        assert!(matches!(
            transactions.rollback(&id, &user("mallory")),
            Err(TransactionError::Unknown)
        ));
        assert!(matches!(
            transactions.commit(&id, &user("mallory")).await,
            Err(TransactionError::Unknown)
        ));
        assert!(matches!(
            transactions.statement(&id[..8], &user("alice"), true, now),
            Err(TransactionError::Malformed(8))
        ));
        transactions
            .statement(&id, &user("alice"), true, now)
            .expect("owner");
        transactions
            .commit(&id, &user("alice"))
            .await
            .expect("commit");
        assert!(matches!(
            transactions.statement(&id, &user("alice"), true, now),
            Err(TransactionError::Unknown)
        ));
    }

    #[tokio::test]
    async fn an_idle_transaction_is_rolled_back_and_its_handle_refused() {
        let (_dir, transactions) = registry(Duration::from_secs(5));
        let start = Instant::now();
        let busy = transactions
            .begin(&user("a"), 0, false, start)
            .expect("begin");
        let idle = transactions
            .begin(&user("a"), 0, false, start)
            .expect("begin");
        let handle = transactions
            .statement(&idle, &user("a"), true, start)
            .expect("statement");
        transactions
            .statement(&busy, &user("a"), true, start + Duration::from_secs(4))
            .expect("statement");
        assert_eq!(transactions.expire(start + Duration::from_secs(6)), 1);
        assert!(matches!(
            transactions.statement(&idle, &user("a"), true, start + Duration::from_secs(6)),
            Err(TransactionError::Unknown)
        ));
        // A statement still holding the transaction cannot write into it any more.
        assert!(matches!(
            handle.write(|_| Ok::<_, StorageError>(())).await,
            Err(StorageError::TransactionEnded)
        ));
        transactions
            .statement(&busy, &user("a"), true, start + Duration::from_secs(6))
            .expect("still open");
    }

    #[tokio::test]
    async fn ddl_commits_the_transaction_and_the_id_goes_on_in_a_new_one() {
        let (_dir, transactions) = registry(Duration::from_secs(60));
        let now = Instant::now();
        let id = transactions
            .begin(&user("d"), 0, false, now)
            .expect("begin");
        let before = transactions
            .statement(&id, &user("d"), true, now)
            .expect("statement");
        assert!(matches!(
            transactions
                .commit_before_ddl(&id, &user("mallory"), now)
                .await,
            Err(TransactionError::Unknown)
        ));
        transactions
            .commit_before_ddl(&id, &user("d"), now)
            .await
            .expect("implicit commit");
        // The committed transaction takes no more writes; the id names a new one.
        assert!(matches!(
            before.write(|_| Ok::<_, StorageError>(())).await,
            Err(StorageError::TransactionEnded)
        ));
        let after = transactions
            .statement(&id, &user("d"), true, now)
            .expect("a new transaction under the same id");
        after
            .write(|_| Ok::<_, StorageError>(()))
            .await
            .expect("the new transaction is open");
        // Two DDL statements in a row: the second has nothing left to commit.
        transactions
            .commit_before_ddl(&id, &user("d"), now)
            .await
            .expect("again");
        transactions
            .commit_before_ddl(&id, &user("d"), now)
            .await
            .expect("nothing to commit");
        transactions.commit(&id, &user("d")).await.expect("commit");
        let read_only = transactions.begin(&user("d"), 0, true, now).expect("begin");
        assert!(matches!(
            transactions
                .commit_before_ddl(&read_only, &user("d"), now)
                .await,
            Err(TransactionError::ReadOnly)
        ));
    }

    #[tokio::test]
    async fn a_read_only_transaction_refuses_writes_not_reads() {
        let (_dir, transactions) = registry(Duration::from_secs(60));
        let now = Instant::now();
        let id = transactions.begin(&user("r"), 0, true, now).expect("begin");
        transactions
            .statement(&id, &user("r"), false, now)
            .expect("a read");
        assert!(matches!(
            transactions.statement(&id, &user("r"), true, now),
            Err(TransactionError::ReadOnly)
        ));
        transactions.commit(&id, &user("r")).await.expect("commit");
    }

    #[tokio::test]
    async fn closing_a_session_rolls_back_its_transactions_only() {
        let (_dir, transactions) = registry(Duration::from_secs(60));
        let now = Instant::now();
        let closed = transactions
            .begin(&user("s"), 1, false, now)
            .expect("begin");
        let other = transactions
            .begin(&user("s"), 2, false, now)
            .expect("begin");
        assert_eq!(transactions.end_session(1, &user("mallory")), 0);
        assert_eq!(transactions.end_session(1, &user("s")), 1);
        assert!(matches!(
            transactions.statement(&closed, &user("s"), true, now),
            Err(TransactionError::Unknown)
        ));
        transactions
            .statement(&other, &user("s"), true, now)
            .expect("another session's transaction stays");
    }

    #[tokio::test]
    async fn a_user_holds_at_most_its_share_of_transactions() {
        let (_dir, transactions) = registry(Duration::from_secs(60));
        let now = Instant::now();
        for _ in 0..TRANSACTIONS_PER_USER_MAX {
            transactions
                .begin(&user("greedy"), 0, false, now)
                .expect("begin");
        }
        assert!(matches!(
            transactions.begin(&user("greedy"), 0, false, now),
            Err(TransactionError::TooMany)
        ));
        transactions
            .begin(&user("other"), 0, false, now)
            .expect("another user");
    }
}
