//! How long a saga step's transient failures are retried: until the step timeout
//! (`saga.step_timeout_ms`) has passed since its first attempt, waiting a backoff between
//! attempts. The time is a parameter, so the schedule is tested without sleeping.

use std::time::{Duration, Instant};

use crate::clock::Backoff;

/// The moment a step stops being retried.
#[derive(Clone, Copy, Debug)]
pub(super) struct StepDeadline {
    ends: Instant,
}

/// A step timeout past this is read as this (a year): `Instant` arithmetic must not
/// overflow on a configured `u64::MAX`.
const TIMEOUT_CEILING: Duration = Duration::from_secs(365 * 24 * 3600);

impl StepDeadline {
    /// The deadline of a step first tried at `now` with `timeout`.
    pub(super) fn new(now: Instant, timeout: Duration) -> Self {
        Self {
            ends: now + timeout.min(TIMEOUT_CEILING),
        }
    }

    /// At `now`, the wait before the next attempt: `backoff`'s next, cut short so the
    /// last wait ends at the deadline rather than after it; `None` once the deadline
    /// has passed (the step is given up).
    pub(super) fn next_wait(&self, now: Instant, backoff: &mut Backoff) -> Option<Duration> {
        let left = self.ends.saturating_duration_since(now);
        (!left.is_zero()).then(|| backoff.next_wait().min(left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the retry schedule of a step that always fails transiently, on a clock that
    /// moves only by the waits (attempts take no time). Returns the waits.
    fn schedule(timeout: Duration, min: Duration, max: Duration) -> Vec<Duration> {
        let start = Instant::now();
        let deadline = StepDeadline::new(start, timeout);
        let mut backoff = Backoff::new(min, max);
        let mut now = start;
        let mut waits = Vec::new();
        while let Some(wait) = deadline.next_wait(now, &mut backoff) {
            waits.push(wait);
            now += wait;
            assert!(waits.len() < 100_000, "the schedule ends");
        }
        waits
    }

    #[test]
    fn a_failing_step_is_retried_until_exactly_its_timeout() {
        let timeout = Duration::from_secs(60);
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(5));
        let waits = schedule(timeout, min, max);
        assert_eq!(waits.iter().sum::<Duration>(), timeout, "{waits:?}");
        // Backoff, not a busy loop or one long sleep: waits grow from about `min` and
        // never exceed `max`.
        assert!(waits[0] <= min && waits[0] >= min / 2, "{waits:?}");
        assert!(waits.iter().all(|wait| *wait <= max), "{waits:?}");
        assert!(waits.len() >= 12, "{} attempts", waits.len() + 1);
        let late = &waits[8..waits.len() - 1];
        assert!(late.iter().all(|wait| *wait >= max / 2), "{waits:?}");
    }

    #[test]
    fn a_zero_timeout_gives_one_attempt_and_a_huge_one_does_not_overflow() {
        assert!(
            schedule(
                Duration::ZERO,
                Duration::from_millis(1),
                Duration::from_millis(2)
            )
            .is_empty()
        );
        let deadline = StepDeadline::new(Instant::now(), Duration::MAX);
        let mut backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(2));
        let later = Instant::now() + Duration::from_secs(30 * 24 * 3600);
        assert!(deadline.next_wait(later, &mut backoff).is_some());
    }
}
