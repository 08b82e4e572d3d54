//! Callers waiting for sagas to settle (a start or `saga show` with a wait). Each
//! waits for its own saga: the write that settles a saga hands its record to that
//! saga's waiters and wakes no one else. (A broadcast of every state change woke every
//! waiter at every change of any saga: with 32 callers waiting, about a hundred
//! wake-ups per transfer.)

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use super::record::SagaRecord;

#[derive(Default)]
pub(super) struct SettledWaiters {
    waiting: Mutex<HashMap<String, Vec<oneshot::Sender<SagaRecord>>>>,
}

impl SettledWaiters {
    /// Registers a waiter for the end of saga `id`. Registered before the caller reads
    /// the log (or before the saga exists), an end in between is not missed.
    pub(super) fn watch(&self, id: &str) -> Waiter<'_> {
        let (sender, receiver) = oneshot::channel();
        if let Ok(mut waiting) = self.waiting.lock() {
            waiting.entry(id.to_string()).or_default().push(sender);
        }
        Waiter {
            waiters: self,
            id: id.to_string(),
            receiver: Some(receiver),
        }
    }

    /// Hands `saga`, as just written in a settled state, to its waiters.
    pub(super) fn settled(&self, saga: &SagaRecord) {
        let waiters = match self.waiting.lock() {
            Ok(mut waiting) => waiting.remove(&saga.id),
            Err(_) => None,
        };
        for waiter in waiters.into_iter().flatten() {
            // A waiter that gave up meanwhile is not an error.
            let _ = waiter.send(saga.clone());
        }
    }

    /// Drops the registrations of saga `id`'s waiters that gave up.
    fn forget_gone(&self, id: &str) {
        if let Ok(mut waiting) = self.waiting.lock()
            && let Some(list) = waiting.get_mut(id)
        {
            list.retain(|waiter| !waiter.is_closed());
            if list.is_empty() {
                waiting.remove(id);
            }
        }
    }

    #[cfg(test)]
    fn registered(&self) -> usize {
        self.waiting
            .lock()
            .map_or(0, |w| w.values().map(Vec::len).sum())
    }
}

/// One caller waiting for one saga. Dropped (answered, timed out, or its request
/// gone), it takes its registration with it.
pub(super) struct Waiter<'a> {
    waiters: &'a SettledWaiters,
    id: String,
    receiver: Option<oneshot::Receiver<SagaRecord>>,
}

impl Waiter<'_> {
    pub(super) fn id(&self) -> &str {
        &self.id
    }

    /// The saga as written when it settled; `None` if `wait` ran out or the node
    /// began to stop first (the caller reads the log then).
    pub(super) async fn settled(
        mut self,
        wait: Duration,
        mut stopping: watch::Receiver<bool>,
    ) -> Option<SagaRecord> {
        let receiver = self.receiver.take()?;
        tokio::select! {
            settled = receiver => settled.ok(),
            () = tokio::time::sleep(wait) => None,
            _ = stopping.wait_for(|stopping| *stopping) => None,
        }
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        drop(self.receiver.take());
        self.waiters.forget_gone(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::saga::record::SagaState;

    fn saga(id: &str) -> SagaRecord {
        SagaRecord::sample(id, SagaState::Committed)
    }

    #[tokio::test]
    async fn an_end_wakes_only_its_sagas_waiters_and_no_registration_outlives_its_wait() {
        let waiters = SettledWaiters::default();
        let (_stop, stopping) = watch::channel(false);
        let first = waiters.watch("a");
        let second = waiters.watch("a");
        let other = waiters.watch("b");
        assert_eq!(waiters.registered(), 3);

        waiters.settled(&saga("a"));
        let long = Duration::from_secs(30);
        let got = first.settled(long, stopping.clone()).await;
        assert_eq!(got.map(|s| s.id), Some("a".to_string()));
        let got = second.settled(long, stopping.clone()).await;
        assert_eq!(got.map(|s| s.id), Some("a".to_string()));

        let started = std::time::Instant::now();
        let got = other
            .settled(Duration::from_millis(50), stopping.clone())
            .await;
        assert!(got.is_none(), "saga b never settled");
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(waiters.registered(), 0, "a timed-out waiter is forgotten");

        // A waiter whose request went away (dropped unanswered) is forgotten too, and
        // a later end of its saga finds no one to tell.
        drop(waiters.watch("c"));
        assert_eq!(waiters.registered(), 0);
        waiters.settled(&saga("c"));
    }

    #[tokio::test]
    async fn a_stopping_node_releases_its_waiters() {
        let waiters = SettledWaiters::default();
        let (stop, stopping) = watch::channel(false);
        let started = std::time::Instant::now();
        let stopper = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            stop.send_replace(true);
        };
        let (got, ()) = tokio::join!(
            waiters
                .watch("a")
                .settled(Duration::from_secs(60), stopping),
            stopper
        );
        assert!(got.is_none());
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(10),
            "released at the stop: {took:?}"
        );
        assert_eq!(waiters.registered(), 0);
    }
}
