//! What keeps password checks from being an amplifier: argon2 costs ~19 MiB and tens of
//! milliseconds per attempt, and an unauthenticated client chooses how often to ask.
//!
//! - At most [`ARGON2_CONCURRENT_MAX`] checks run at once; a check waits at most
//!   [`LOGIN_WAIT_MAX_MS`] for its turn, then is refused as busy.
//! - After [`LOGIN_FAILURES_FREE`] failures in a row, a user name and a client address are
//!   each blocked for a time that doubles with every further failure, up to
//!   [`LOGIN_BACKOFF_MAX_S`] (OWASP Authentication Cheat Sheet, "Login Throttling"). A
//!   blocked attempt is refused before argon2 runs, so it costs nothing. A success clears
//!   both. Blocking by user name lets an attacker slow that user's logins, never more
//!   than the cap; blocking by address alone would let one attacker with many addresses
//!   guess freely.
//! - The table of failures holds at most [`LOGIN_FAILURE_KEYS_MAX`] keys.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::limits::{
    ARGON2_CONCURRENT_MAX, LOGIN_BACKOFF_MAX_S, LOGIN_FAILURE_KEYS_MAX, LOGIN_FAILURES_FREE,
    LOGIN_WAIT_MAX_MS,
};

/// Who a failure counts against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum FailureKey {
    User(String),
    Address(IpAddr),
}

impl FailureKey {
    /// The key of a client address (`client_address::client_key`): an IPv6 client
    /// counts by its /64, an IPv4 client as itself even when seen as IPv4-mapped IPv6.
    pub(crate) fn address(address: IpAddr) -> Self {
        Self::Address(crate::client_address::client_key(address))
    }
}

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    blocked_until: Instant,
    last: Instant,
}

/// Why an attempt was refused before its password was checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Too many recent failures; retry after this long.
    Blocked(Duration),
    /// Every argon2 slot stayed busy for `LOGIN_WAIT_MAX_MS`.
    Busy,
}

/// Refusal counts since start, for `/metrics`.
#[derive(Debug, Default)]
pub struct LoginRefusals {
    pub blocked: AtomicU64,
    pub busy: AtomicU64,
    pub failed: AtomicU64,
}

pub(crate) struct LoginThrottle {
    argon2: std::sync::Arc<Semaphore>,
    failures: Mutex<HashMap<FailureKey, Failures>>,
    pub(crate) refusals: LoginRefusals,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self {
            argon2: std::sync::Arc::new(Semaphore::new(ARGON2_CONCURRENT_MAX)),
            failures: Mutex::new(HashMap::new()),
            refusals: LoginRefusals::default(),
        }
    }
}

/// How long a key with `count` failures in a row is blocked: nothing for the first
/// `LOGIN_FAILURES_FREE`, then 1 s, 2 s, 4 s, ... up to `LOGIN_BACKOFF_MAX_S`.
pub(crate) fn backoff(count: u32) -> Duration {
    let Some(over) = count.checked_sub(LOGIN_FAILURES_FREE) else {
        return Duration::ZERO;
    };
    let seconds = 1u64
        .checked_shl(over.min(63))
        .unwrap_or(u64::MAX)
        .min(LOGIN_BACKOFF_MAX_S);
    Duration::from_secs(seconds)
}

impl LoginThrottle {
    /// Refuses at once if any of `keys` is blocked at `now`.
    pub(crate) fn check(&self, keys: &[FailureKey], now: Instant) -> Result<(), Refusal> {
        let failures = self.failures.lock().expect("login failure lock poisoned");
        let wait = keys
            .iter()
            .filter_map(|key| failures.get(key))
            .map(|f| f.blocked_until.saturating_duration_since(now))
            .max()
            .unwrap_or_default();
        if wait.is_zero() {
            Ok(())
        } else {
            self.refusals.blocked.fetch_add(1, Ordering::Relaxed);
            Err(Refusal::Blocked(wait))
        }
    }

    /// A slot to run argon2 in, waiting at most `LOGIN_WAIT_MAX_MS`. Owned, so the
    /// check that holds it keeps it until argon2 ends even if the login that asked is
    /// cancelled (a client that resets its stream cannot free slots early).
    pub(crate) async fn slot(&self) -> Result<OwnedSemaphorePermit, Refusal> {
        let wait = Duration::from_millis(LOGIN_WAIT_MAX_MS);
        let semaphore = std::sync::Arc::clone(&self.argon2);
        match tokio::time::timeout(wait, semaphore.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => {
                self.refusals.busy.fetch_add(1, Ordering::Relaxed);
                Err(Refusal::Busy)
            }
        }
    }

    /// Counts a failed password check against each of `keys`.
    pub(crate) fn failed(&self, keys: &[FailureKey], now: Instant) {
        self.refusals.failed.fetch_add(1, Ordering::Relaxed);
        let mut failures = self.failures.lock().expect("login failure lock poisoned");
        if failures.len() + keys.len() > LOGIN_FAILURE_KEYS_MAX {
            // Forget keys that are no longer blocked and have not failed for the longest
            // backoff; if that is not enough, the oldest failures.
            let forget_after = Duration::from_secs(LOGIN_BACKOFF_MAX_S);
            failures.retain(|_, f| {
                f.blocked_until > now || now.saturating_duration_since(f.last) < forget_after
            });
            while failures.len() + keys.len() > LOGIN_FAILURE_KEYS_MAX {
                let Some(oldest) = failures
                    .iter()
                    .min_by_key(|(_, f)| f.last)
                    .map(|(key, _)| key.clone())
                else {
                    break;
                };
                failures.remove(&oldest);
            }
        }
        for key in keys {
            let entry = failures.entry(key.clone()).or_insert(Failures {
                count: 0,
                blocked_until: now,
                last: now,
            });
            entry.count = entry.count.saturating_add(1);
            entry.last = now;
            entry.blocked_until = now + backoff(entry.count);
        }
    }

    /// Clears the failures of each of `keys` after a successful check.
    pub(crate) fn succeeded(&self, keys: &[FailureKey]) {
        let mut failures = self.failures.lock().expect("login failure lock poisoned");
        for key in keys {
            failures.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(user: &str, address: [u8; 4]) -> Vec<FailureKey> {
        vec![
            FailureKey::User(user.to_string()),
            FailureKey::Address(IpAddr::from(address)),
        ]
    }

    #[test]
    fn backoff_starts_after_the_free_failures_doubles_and_is_capped() {
        assert_eq!(backoff(0), Duration::ZERO);
        assert_eq!(backoff(LOGIN_FAILURES_FREE - 1), Duration::ZERO);
        assert_eq!(backoff(LOGIN_FAILURES_FREE), Duration::from_secs(1));
        assert_eq!(backoff(LOGIN_FAILURES_FREE + 1), Duration::from_secs(2));
        assert_eq!(backoff(LOGIN_FAILURES_FREE + 3), Duration::from_secs(8));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(LOGIN_BACKOFF_MAX_S));
    }

    #[test]
    fn a_guessing_client_is_blocked_by_name_and_by_address_and_success_clears() {
        let throttle = LoginThrottle::default();
        let start = Instant::now();
        let attacker = keys("admin", [203, 0, 113, 9]);
        for _ in 0..LOGIN_FAILURES_FREE {
            throttle.check(&attacker, start).expect("free failures");
            throttle.failed(&attacker, start);
        }
        assert_eq!(
            throttle.check(&attacker, start),
            Err(Refusal::Blocked(Duration::from_secs(1)))
        );
        // The same address guessing another name is blocked too, and so is the name
        // from another address (until the backoff ends).
        assert!(
            throttle
                .check(&keys("ops", [203, 0, 113, 9]), start)
                .is_err()
        );
        assert!(
            throttle
                .check(&keys("admin", [198, 51, 100, 1]), start)
                .is_err()
        );
        // Unrelated users and addresses are not.
        throttle
            .check(&keys("ops", [198, 51, 100, 1]), start)
            .expect("others unaffected");
        let later = start + Duration::from_secs(1);
        throttle.check(&attacker, later).expect("backoff over");
        throttle.succeeded(&attacker);
        throttle.failed(&attacker, later);
        throttle
            .check(&attacker, later)
            .expect("counting starts again after success");
        assert_eq!(throttle.refusals.blocked.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn an_ipv6_client_counts_by_its_slash_64() {
        let one: IpAddr = "2001:db8:1:2::1".parse().expect("v6");
        let other: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("v6");
        let elsewhere: IpAddr = "2001:db8:1:3::1".parse().expect("v6");
        assert_eq!(FailureKey::address(one), FailureKey::address(other));
        assert_ne!(FailureKey::address(one), FailureKey::address(elsewhere));
        let v4: IpAddr = "203.0.113.9".parse().expect("v4");
        assert_eq!(FailureKey::address(v4), FailureKey::Address(v4));
    }

    #[test]
    fn the_failure_table_is_bounded() {
        let throttle = LoginThrottle::default();
        let now = Instant::now();
        for i in 0..(LOGIN_FAILURE_KEYS_MAX as u32 + 100) {
            throttle.failed(&[FailureKey::Address(IpAddr::from(i.to_be_bytes()))], now);
        }
        let held = throttle.failures.lock().expect("lock").len();
        assert!(held <= LOGIN_FAILURE_KEYS_MAX, "{held}");
    }

    #[tokio::test]
    async fn checks_beyond_the_concurrency_bound_wait_then_are_refused_as_busy() {
        let throttle = LoginThrottle::default();
        let mut held = Vec::new();
        for _ in 0..ARGON2_CONCURRENT_MAX {
            held.push(throttle.slot().await.expect("free slot"));
        }
        assert_eq!(throttle.slot().await.err(), Some(Refusal::Busy));
        held.pop();
        let _slot = throttle.slot().await.expect("a released slot is taken");
    }
}
