//! Wall-clock time as the node writes it down: audit entries, saga logs, cache expiry,
//! commit times of change events. One definition, so every record agrees on the unit
//! and on what a clock before 1970 reads as (0). And the one retry backoff.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (UTC); 0 for a clock set before it.
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Microseconds since the Unix epoch (UTC), as a TIMESTAMP value holds them; 0 for a
/// clock set before it.
pub fn now_unix_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Milliseconds from `unix_us` (microseconds since the epoch) until now; 0 for a time
/// in the future (clocks of two regions disagree).
pub fn ms_since_unix_us(unix_us: i64) -> u64 {
    u64::try_from(now_unix_us().saturating_sub(unix_us) / 1000).unwrap_or(0)
}

/// Exponential backoff with jitter, for every retry loop of the node (saga steps and
/// compensations, replica streams): the cap starts at `min` and doubles after each wait
/// up to `max`; each wait is drawn uniformly from [cap / 2, cap] ("equal jitter", from
/// "Exponential Backoff And Jitter", AWS Architecture Blog, 2015). The jitter keeps many
/// callers that failed together (a peer restarted) from retrying in lockstep; the fixed
/// half keeps a wait from being near zero.
#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    cap: Duration,
}

impl Backoff {
    /// A backoff whose first wait is at most `min` and no wait more than `max`.
    pub const fn new(min: Duration, max: Duration) -> Self {
        Self { min, max, cap: min }
    }

    /// The next wait; the one after may be up to twice as long.
    pub fn next_wait(&mut self) -> Duration {
        let cap = self.cap;
        self.cap = (self.cap * 2).min(self.max);
        let half = cap / 2;
        let spread = u64::try_from((cap - half).as_micros()).unwrap_or(u64::MAX);
        half + Duration::from_micros(rand::random_range(0..=spread))
    }

    /// After a success: the next wait is short again.
    pub fn reset(&mut self) {
        self.cap = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_units_agree_and_the_future_is_no_age() {
        let (ms, us) = (now_unix_ms(), now_unix_us());
        assert!(ms > 1_600_000_000_000, "{ms}");
        assert!((us / 1000 - i64::try_from(ms).expect("ms")).abs() < 1000);
        assert_eq!(ms_since_unix_us(us + 60_000_000), 0);
        assert!(ms_since_unix_us(us - 5_000_000) >= 5000);
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_with_jitter_and_resets() {
        let (min, max) = (Duration::from_millis(100), Duration::from_millis(800));
        let mut backoff = Backoff::new(min, max);
        for cap in [100, 200, 400, 800, 800, 800] {
            let wait = backoff.next_wait();
            let cap = Duration::from_millis(cap);
            assert!(
                wait >= cap / 2 && wait <= cap,
                "{wait:?} outside [{:?}, {cap:?}]",
                cap / 2
            );
        }
        backoff.reset();
        assert!(backoff.next_wait() <= min);
        // The jitter is real: a thousand draws at the cap are not all the same.
        let waits: std::collections::BTreeSet<Duration> =
            (0..1000).map(|_| backoff.next_wait()).collect();
        assert!(waits.len() > 100, "{} distinct waits", waits.len());
    }
}
