//! What the CDC relay and the replica consumers are doing, for `system.regions`,
//! `system.cdc` and metrics.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a consumer may go without hearing from its source before its lag counts
/// from the last moment it knew it was current.
const SILENCE_TOLERATED: Duration = Duration::from_secs(3);

#[derive(Clone, Debug, Default)]
pub struct RelayState {
    /// Why events are held (no redactor, redactor failed, policy failed), if they are.
    pub held: Option<String>,
    /// Events published to the change stream since start.
    pub relayed: u64,
    /// Events the residency policy withheld (audited) since start.
    pub withheld: u64,
    /// Events waiting in the outbox at the last look.
    pub backlog: u64,
    /// Messages a broker acknowledged since start (Kafka transport only).
    pub published: u64,
    /// Why the transport is not delivering, if it is not (Kafka transport only).
    pub transport_error: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct ReplicaState {
    /// Newest source sequence number applied here.
    pub applied_seq: u64,
    /// Newest change the source said it had committed.
    pub source_head_seq: u64,
    /// Commit time of the oldest change the source had not relayed (µs), 0 if none.
    pub source_oldest_unrelayed_us: i64,
    pub connected: bool,
    pub last_error: Option<String>,
    /// When this replica last knew it held everything its source had committed.
    pub current_at: Option<Instant>,
    /// When the source was last heard from.
    pub heard_at: Option<Instant>,
    pub applied_events: u64,
    /// Commit-to-apply time of the newest applied event, milliseconds.
    pub last_apply_latency_ms: u64,
}

impl ReplicaState {
    /// How far behind its source this replica may be, in milliseconds: 0 when the source
    /// was heard recently and everything it had committed is applied; otherwise the age
    /// of the oldest change known to be missing, or, when the source is silent, the time
    /// since this replica was last known to be current.
    pub fn lag_ms(&self, now: Instant) -> u64 {
        let heard_recently = self
            .heard_at
            .is_some_and(|at| now.duration_since(at) < SILENCE_TOLERATED);
        if heard_recently {
            if self.applied_seq >= self.source_head_seq {
                return 0;
            }
            if self.source_oldest_unrelayed_us > 0 {
                return crate::clock::ms_since_unix_us(self.source_oldest_unrelayed_us);
            }
        }
        self.current_at
            .map_or(u64::MAX, |at| now.duration_since(at).as_millis() as u64)
    }
}

#[derive(Debug, Default)]
pub struct CdcStatus {
    relay: Mutex<RelayState>,
    replicas: Mutex<BTreeMap<String, ReplicaState>>,
}

impl CdcStatus {
    pub fn relay(&self) -> RelayState {
        self.relay.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn update_relay(&self, change: impl FnOnce(&mut RelayState)) {
        if let Ok(mut state) = self.relay.lock() {
            change(&mut state);
        }
    }

    pub fn replica(&self, source: &str) -> Option<ReplicaState> {
        self.replicas.lock().ok()?.get(source).cloned()
    }

    pub fn replicas(&self) -> BTreeMap<String, ReplicaState> {
        self.replicas.lock().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn update_replica(&self, source: &str, change: impl FnOnce(&mut ReplicaState)) {
        if let Ok(mut replicas) = self.replicas.lock() {
            change(replicas.entry(source.to_string()).or_default());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_zero_only_when_current_and_heard_from() {
        let now = Instant::now();
        let mut state = ReplicaState {
            applied_seq: 10,
            source_head_seq: 10,
            heard_at: Some(now),
            current_at: Some(now),
            ..Default::default()
        };
        assert_eq!(state.lag_ms(now), 0);
        // Silent source: lag grows from the last moment the replica was current.
        state.heard_at = Some(now - Duration::from_secs(10));
        state.current_at = Some(now - Duration::from_secs(10));
        assert!(state.lag_ms(now) >= 10_000);
        // Never current: unknown, reported as the largest lag.
        assert_eq!(ReplicaState::default().lag_ms(now), u64::MAX);
    }
}
