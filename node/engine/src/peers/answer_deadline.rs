//! How long a peer's streamed answer (a routed read, a `mesh.<table>` leg) may take.
//!
//! Each message must arrive within `idle` of the previous one, which catches a peer that
//! stalls; and the whole answer within [`PEER_ANSWER_DURATION_MAX_S`], which catches a
//! peer that trickles (one small message just inside `idle`, again and again) and would
//! otherwise hold the query, its client and its buffers for as long as it likes.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::limits::PEER_ANSWER_DURATION_MAX_S;

/// Which bound an answer missed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stall {
    /// No message within `idle` of the previous one.
    Idle,
    /// The answer was still not complete after `PEER_ANSWER_DURATION_MAX_S`.
    Total,
}

impl Stall {
    /// What a caller's error says, naming the bound (no values from the answer).
    pub fn describe(self, idle: Duration) -> String {
        match self {
            Stall::Idle => format!("no answer within {} ms", idle.as_millis()),
            Stall::Total => format!(
                "answer not complete within peer_answer_duration_max_s = {PEER_ANSWER_DURATION_MAX_S}"
            ),
        }
    }
}

/// The deadlines of one answer, from its request on.
#[derive(Clone, Copy, Debug)]
pub struct AnswerDeadline {
    idle: Duration,
    end: Instant,
}

impl AnswerDeadline {
    /// Starts now: each message within `idle`, all within `PEER_ANSWER_DURATION_MAX_S`.
    pub fn start(idle: Duration) -> Self {
        Self::with_total(idle, Duration::from_secs(PEER_ANSWER_DURATION_MAX_S))
    }

    fn with_total(idle: Duration, total: Duration) -> Self {
        Self {
            idle,
            end: Instant::now() + total,
        }
    }

    pub fn idle(&self) -> Duration {
        self.idle
    }

    /// Waits for `next` (the request, or the answer's next message) for whichever of the
    /// two bounds comes first.
    pub async fn within<F: Future>(&self, next: F) -> Result<F::Output, Stall> {
        let left = self.end.saturating_duration_since(Instant::now());
        if left < self.idle {
            tokio::time::timeout(left, next)
                .await
                .map_err(|_| Stall::Total)
        } else {
            tokio::time::timeout(self.idle, next)
                .await
                .map_err(|_| Stall::Idle)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real time, short bounds: tokio's paused clock needs its test-util feature, which
    // would rebuild every crate that depends on tokio for the test profile.

    #[tokio::test]
    async fn a_stalled_answer_misses_the_idle_bound() {
        let idle = Duration::from_millis(100);
        let deadline = AnswerDeadline::with_total(idle, Duration::from_secs(60));
        let started = Instant::now();
        let missed = deadline.within(std::future::pending::<()>()).await;
        assert_eq!(missed, Err(Stall::Idle));
        assert!(started.elapsed() >= idle);
        assert_eq!(deadline.within(async { 7 }).await, Ok(7));
        assert!(Stall::Idle.describe(idle).contains("100 ms"));
    }

    #[tokio::test]
    async fn a_trickling_answer_misses_the_total_bound() {
        let total = Duration::from_millis(600);
        let deadline = AnswerDeadline::with_total(Duration::from_millis(100), total);
        let started = Instant::now();
        let mut messages = 0;
        // One message every 50 ms: each well within the idle bound, for ever.
        let stall = loop {
            match deadline
                .within(tokio::time::sleep(Duration::from_millis(50)))
                .await
            {
                Ok(()) => messages += 1,
                Err(stall) => break stall,
            }
            assert!(messages < 1_000, "never cut off");
        };
        assert_eq!(stall, Stall::Total);
        assert!(messages >= 5, "{messages} messages before the cut");
        let took = started.elapsed();
        assert!(took >= total && took < total * 3, "{took:?}");
        assert!(
            stall
                .describe(deadline.idle())
                .contains("peer_answer_duration_max_s")
        );
    }
}
