//! The open prepared statements of every client, bounded per node, per user and per
//! session, and closed after an idle time, so that no client can take every slot and
//! slots of clients that vanished without closing come back.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::limits::{
    BOUND_PARAMETER_BYTES_MAX, BOUND_PARAMETER_BYTES_PER_USER_MAX, PREPARED_STATEMENT_IDLE_MAX_S,
    PREPARED_STATEMENTS_MAX, PREPARED_STATEMENTS_PER_SESSION_MAX, PREPARED_STATEMENTS_PER_USER_MAX,
};

/// Identifies the session (bearer token) that opened a statement without keeping the
/// token itself. Only used for counting: access is checked by user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct SessionKey(u64);

impl SessionKey {
    /// The key of the session behind an `authorization` header value.
    pub(crate) fn of(authorization: Option<&str>) -> Self {
        let mut hasher = DefaultHasher::new();
        authorization.unwrap_or_default().hash(&mut hasher);
        Self(hasher.finish())
    }

    /// The key as an opaque tag, for the transactions begun in the session.
    pub(crate) fn tag(self) -> u64 {
        self.0
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum PreparedError {
    #[error(
        "too many open prepared statements on this node (prepared_statements_max = {PREPARED_STATEMENTS_MAX}); close some"
    )]
    NodeFull,
    #[error(
        "too many open prepared statements for this user (prepared_statements_per_user_max = {PREPARED_STATEMENTS_PER_USER_MAX}); close some"
    )]
    UserFull,
    #[error(
        "too many open prepared statements in this session (prepared_statements_per_session_max = {PREPARED_STATEMENTS_PER_SESSION_MAX}); close some"
    )]
    SessionFull,
    #[error(
        "bound parameters of this user's prepared statements would pass bound_parameter_bytes_per_user_max = {BOUND_PARAMETER_BYTES_PER_USER_MAX}; bind fewer rows or close statements"
    )]
    UserParametersFull,
    #[error(
        "bound parameters of all prepared statements would pass bound_parameter_bytes_max = {BOUND_PARAMETER_BYTES_MAX}; retry later"
    )]
    NodeParametersFull,
    #[error(
        "unknown prepared statement handle (closed, idle longer than prepared_statement_idle_max_s = {PREPARED_STATEMENT_IDLE_MAX_S}, or from another user)"
    )]
    Unknown,
}

struct Entry<T> {
    owner: String,
    session: SessionKey,
    last_used: Instant,
    /// Memory held by the parameters bound to it, in bytes.
    bound_bytes: usize,
    statement: T,
}

/// Open statements by handle. `T` is what a handle opens (the planned statement and its
/// bound parameters in the Flight SQL server).
pub(crate) struct PreparedTable<T> {
    entries: HashMap<Vec<u8>, Entry<T>>,
    idle_max: Duration,
}

impl<T> Default for PreparedTable<T> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            idle_max: Duration::from_secs(PREPARED_STATEMENT_IDLE_MAX_S),
        }
    }
}

impl<T> PreparedTable<T> {
    /// Opens `statement` under `handle` for `owner`, after closing idle statements.
    ///
    /// Errors: the first of the node, user and session bounds that is full.
    pub(crate) fn open(
        &mut self,
        handle: Vec<u8>,
        owner: &str,
        session: SessionKey,
        statement: T,
        now: Instant,
    ) -> Result<(), PreparedError> {
        let idle_max = self.idle_max;
        self.entries
            .retain(|_, entry| now.saturating_duration_since(entry.last_used) < idle_max);
        if self.entries.len() >= PREPARED_STATEMENTS_MAX {
            return Err(PreparedError::NodeFull);
        }
        let (mut of_user, mut of_session) = (0, 0);
        for entry in self.entries.values() {
            of_user += usize::from(entry.owner == owner);
            of_session += usize::from(entry.session == session);
        }
        if of_user >= PREPARED_STATEMENTS_PER_USER_MAX {
            return Err(PreparedError::UserFull);
        }
        if of_session >= PREPARED_STATEMENTS_PER_SESSION_MAX {
            return Err(PreparedError::SessionFull);
        }
        self.entries.insert(
            handle,
            Entry {
                owner: owner.to_string(),
                session,
                last_used: now,
                bound_bytes: 0,
                statement,
            },
        );
        Ok(())
    }

    /// The statement behind `handle`, for binding parameters that hold `bytes` of
    /// memory in place of those bound before.
    ///
    /// Errors: `Unknown` as `get_mut`; the per-user or node budget of bound parameter
    /// memory would be passed.
    pub(crate) fn bind(
        &mut self,
        handle: &[u8],
        user: &str,
        bytes: usize,
        now: Instant,
    ) -> Result<&mut T, PreparedError> {
        self.get_mut(handle, user, now)?;
        let (mut of_user, mut of_node) = (0usize, 0usize);
        for (key, entry) in &self.entries {
            if key.as_slice() == handle {
                continue;
            }
            of_node = of_node.saturating_add(entry.bound_bytes);
            if entry.owner == user {
                of_user = of_user.saturating_add(entry.bound_bytes);
            }
        }
        if of_user.saturating_add(bytes) > BOUND_PARAMETER_BYTES_PER_USER_MAX {
            return Err(PreparedError::UserParametersFull);
        }
        if of_node.saturating_add(bytes) > BOUND_PARAMETER_BYTES_MAX {
            return Err(PreparedError::NodeParametersFull);
        }
        let entry = self.entries.get_mut(handle).ok_or(PreparedError::Unknown)?;
        entry.bound_bytes = bytes;
        Ok(&mut entry.statement)
    }

    /// The statement behind `handle` if `user` opened it and it has not gone idle; marks
    /// it used.
    pub(crate) fn get_mut(
        &mut self,
        handle: &[u8],
        user: &str,
        now: Instant,
    ) -> Result<&mut T, PreparedError> {
        let idle_max = self.idle_max;
        match self.entries.get_mut(handle) {
            Some(entry)
                if entry.owner == user
                    && now.saturating_duration_since(entry.last_used) < idle_max =>
            {
                entry.last_used = now;
                Ok(&mut entry.statement)
            }
            _ => Err(PreparedError::Unknown),
        }
    }

    /// Closes `handle` if `user` opened it.
    pub(crate) fn close(&mut self, handle: &[u8], user: &str) -> Result<(), PreparedError> {
        match self.entries.get(handle) {
            Some(entry) if entry.owner == user => {
                self.entries.remove(handle);
                Ok(())
            }
            _ => Err(PreparedError::Unknown),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(i: usize) -> Vec<u8> {
        i.to_be_bytes().to_vec()
    }

    #[test]
    fn one_session_cannot_take_every_slot() {
        let mut table = PreparedTable::default();
        let now = Instant::now();
        let greedy = SessionKey::of(Some("Bearer greedy"));
        for i in 0..PREPARED_STATEMENTS_PER_SESSION_MAX {
            table
                .open(handle(i), "app", greedy, (), now)
                .expect("within bound");
        }
        assert_eq!(
            table.open(handle(usize::MAX), "app", greedy, (), now),
            Err(PreparedError::SessionFull)
        );
        // Another session of the same user, and another user, still get statements.
        let polite = SessionKey::of(Some("Bearer polite"));
        table
            .open(handle(1 << 40), "app", polite, (), now)
            .expect("other session");
        let other = SessionKey::of(Some("Bearer other"));
        table
            .open(handle(1 << 41), "analyst", other, (), now)
            .expect("other user");
    }

    #[test]
    fn one_user_cannot_take_every_slot() {
        let mut table = PreparedTable::default();
        let now = Instant::now();
        for i in 0..PREPARED_STATEMENTS_PER_USER_MAX {
            let session = SessionKey::of(Some(&format!("Bearer {}", i / 100)));
            table
                .open(handle(i), "app", session, (), now)
                .expect("within bound");
        }
        let fresh = SessionKey::of(Some("Bearer fresh"));
        assert_eq!(
            table.open(handle(usize::MAX), "app", fresh, (), now),
            Err(PreparedError::UserFull)
        );
        table
            .open(handle(1 << 40), "analyst", fresh, (), now)
            .expect("other user");
    }

    #[test]
    fn idle_statements_close_and_free_their_slots() {
        let mut table = PreparedTable::default();
        let start = Instant::now();
        let session = SessionKey::of(Some("Bearer s"));
        for i in 0..PREPARED_STATEMENTS_PER_SESSION_MAX {
            table
                .open(handle(i), "app", session, i, start)
                .expect("open");
        }
        let later = start + Duration::from_secs(PREPARED_STATEMENT_IDLE_MAX_S);
        // Used just before the deadline: kept.
        let almost = later - Duration::from_secs(1);
        assert_eq!(table.get_mut(&handle(3), "app", almost).copied(), Ok(3));
        assert_eq!(
            table.get_mut(&handle(4), "app", later),
            Err(PreparedError::Unknown)
        );
        // Opening sweeps: every idle slot comes back, the one just used stays.
        table
            .open(handle(9_999), "app", session, 0, later)
            .expect("slots freed");
        assert_eq!(table.entries.len(), 2);
        assert_eq!(table.get_mut(&handle(3), "app", later).copied(), Ok(3));
    }

    #[test]
    fn bound_parameters_are_budgeted_per_user_and_replaced_not_added() {
        let mut table = PreparedTable::default();
        let now = Instant::now();
        let session = SessionKey::of(Some("Bearer s"));
        for i in 0..3 {
            table
                .open(handle(i), "app", session, (), now)
                .expect("open");
        }
        let half = BOUND_PARAMETER_BYTES_PER_USER_MAX / 2;
        table
            .bind(&handle(0), "app", half, now)
            .expect("first half");
        table
            .bind(&handle(1), "app", half, now)
            .expect("second half");
        assert_eq!(
            table.bind(&handle(2), "app", 1, now).err(),
            Some(PreparedError::UserParametersFull)
        );
        // Re-binding a statement replaces its parameters: its old size does not count.
        table.bind(&handle(1), "app", half, now).expect("rebind");
        table.close(&handle(0), "app").expect("close");
        table
            .bind(&handle(2), "app", half, now)
            .expect("closing frees the budget");
    }

    #[test]
    fn only_the_owner_uses_or_closes_a_statement() {
        let mut table = PreparedTable::default();
        let now = Instant::now();
        let session = SessionKey::of(Some("Bearer s"));
        table.open(handle(1), "app", session, 7, now).expect("open");
        assert_eq!(
            table.get_mut(&handle(1), "mallory", now),
            Err(PreparedError::Unknown)
        );
        assert_eq!(
            table.close(&handle(1), "mallory"),
            Err(PreparedError::Unknown)
        );
        assert_eq!(table.close(&handle(1), "app"), Ok(()));
        assert_eq!(
            table.get_mut(&handle(1), "app", now),
            Err(PreparedError::Unknown)
        );
    }
}
