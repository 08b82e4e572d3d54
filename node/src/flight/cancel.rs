//! The queries running in DoGet, so that Flight's `CancelFlightInfo` (and Flight SQL's
//! older `CancelQuery`) can stop one.
//!
//! A query is named by the ticket of the FlightInfo that announced it: a statement's
//! ticket carries a random query id (so two runs of the same SQL are two queries), a
//! prepared statement's its handle (every running execution of it is cancelled). Only
//! the user who runs a query may cancel it: to anyone else it is unknown.
//!
//! Each execution runs in its own task (the *producer*) that drives the plan and hands
//! encoded messages to the DoGet response over a one-message channel. Cancelling ends
//! the response at once with CANCELLED and aborts the producer, which drops the plan
//! (its storage scan and the tasks DataFusion spawned) at its next yield. The plan
//! yields at every batch a join hands on (`sql::cooperative_joins`) and every batch
//! read from storage; one step of an operator that loops inside a single poll (a
//! nested-loop join probing one batch against its whole build side) runs to its end.
//! So the answer follows Flight's `CancelStatus`: CANCELLED once the producer has
//! stopped, CANCELLING while it is still finishing such a step (the client may ask
//! again). A client that goes away aborts the producer the same way.
//!
//! A statement is known from the moment it is announced (GetFlightInfo), so one
//! cancelled before its DoGet began is refused when it begins (`CANCELLABLE_TICKETS_MAX`
//! announced and as many cancelled tickets are remembered, each for `CANCELLABLE_TICKET_AGE_MAX`).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_flight::FlightData;
use futures::stream::{AbortHandle, Abortable};
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::error_kind::ErrorKind;
use crate::grpc_status::status;
use crate::limits::{CANCELLABLE_TICKET_AGE_MAX, CANCELLABLE_TICKETS_MAX};
use crate::sql::WorkWatch;

/// How long a cancellation waits for the producers it aborted to stop before it
/// answers CANCELLING rather than CANCELLED.
const STOP_WAIT: Duration = Duration::from_millis(500);

type FlightStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send>>;

/// What cancelling a query found (Flight's `CancelStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cancelled {
    /// Every execution of it has stopped, or a statement's will be refused when it
    /// begins.
    Done,
    /// Its responses ended with CANCELLED, but a producer is still finishing a step
    /// that does not yield; asking again answers `Done` once it has stopped.
    Stopping,
    /// Nothing of it is running and nothing will be (a prepared statement idle, or a
    /// write, which ran when it was announced).
    NotRunning,
}

type Key = (String, Vec<u8>);

/// One DoGet of a query.
struct Execution {
    id: u64,
    /// Ends the response stream.
    response: AbortHandle,
    /// Stops the task that drives the plan; `None` until it is spawned.
    producer: Option<tokio::task::AbortHandle>,
    /// Whether the producer has stopped ...
    producer_stopped: bool,
    /// ... and every part of the plan (`None`: the producer is all there is).
    work: Option<WorkWatch>,
    cancelled: bool,
}

impl Execution {
    /// Nothing of it runs any more.
    fn stopped(&self) -> bool {
        self.producer_stopped && self.work.as_ref().is_none_or(WorkWatch::stopped)
    }

    fn cancel(&mut self) {
        self.cancelled = true;
        self.response.abort();
        if let Some(producer) = &self.producer {
            producer.abort();
        }
    }
}

#[derive(Default)]
struct State {
    /// Executions whose producer has not stopped yet.
    running: HashMap<Key, Vec<Execution>>,
    /// Statements announced to their user and not yet begun.
    announced: HashMap<Key, Instant>,
    /// Statements cancelled before they began.
    cancelled: HashMap<Key, Instant>,
    /// Queries whose executions were cancelled and have stopped, so that asking again
    /// (as Flight's CANCELLING invites) answers CANCELLED; forgotten when the query
    /// runs again.
    stopped: HashMap<Key, Instant>,
    next: u64,
}

/// Inserts `key` into `map`, first dropping entries older than `CANCELLABLE_TICKET_AGE_MAX` and, if
/// the map is still full, its oldest entry.
fn remember(map: &mut HashMap<Key, Instant>, key: Key, now: Instant) {
    if map.len() >= CANCELLABLE_TICKETS_MAX {
        map.retain(|_, at| now.duration_since(*at) < CANCELLABLE_TICKET_AGE_MAX);
    }
    if map.len() >= CANCELLABLE_TICKETS_MAX
        && let Some(oldest) = map
            .iter()
            .min_by_key(|(_, at)| **at)
            .map(|(key, _)| key.clone())
    {
        map.remove(&oldest);
    }
    map.insert(key, now);
}

/// The node's running queries, by user and ticket.
#[derive(Default)]
pub(crate) struct RunningQueries {
    state: Mutex<State>,
}

/// A registered execution. Dropped when its producer stops (the plan ran out, failed,
/// was cancelled, or the client went away), or before it begins if preparing the plan
/// failed; either way the execution leaves the registry.
pub(crate) struct Running {
    registered: Registered,
    response: futures::stream::AbortRegistration,
}

/// Removes an execution from the registry when dropped.
struct Registered {
    queries: Arc<RunningQueries>,
    key: Key,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut state = self.queries.state();
        if let Some(execution) = state
            .running
            .get_mut(&self.key)
            .and_then(|list| list.iter_mut().find(|e| e.id == self.id))
        {
            execution.producer_stopped = true;
            // An execution that was not cancelled ended (or lost its client): its
            // plan is dropped with the producer.
            if !execution.cancelled {
                execution.work = None;
            }
        }
        state.prune(&self.key);
    }
}

impl State {
    /// Forgets `key`'s executions that have stopped; once none is left of a cancelled
    /// query, remembers that it stopped.
    fn prune(&mut self, key: &Key) {
        let Some(list) = self.running.get_mut(key) else {
            return;
        };
        let cancelled = list.iter().any(|e| e.cancelled);
        list.retain(|execution| !execution.stopped());
        if list.is_empty() {
            self.running.remove(key);
            if cancelled {
                remember(&mut self.stopped, key.clone(), Instant::now());
            }
        }
    }

    /// Forgets every execution that has stopped (cancelled queries whose plan
    /// outlived its producer), so the table holds only work in progress.
    fn prune_all(&mut self) {
        let keys: Vec<Key> = self
            .running
            .iter()
            .filter(|(_, list)| list.iter().any(Execution::stopped))
            .map(|(key, _)| key.clone())
            .collect();
        for key in keys {
            self.prune(&key);
        }
    }
}

impl RunningQueries {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("running query table poisoned")
    }

    /// Notes that statement `ticket` was announced to `user` (GetFlightInfo): from now
    /// on they can cancel it, before or while it runs.
    pub(crate) fn announce(&self, user: &str, ticket: &[u8], now: Instant) {
        remember(
            &mut self.state().announced,
            (user.to_string(), ticket.to_vec()),
            now,
        );
    }

    /// Registers a DoGet of `ticket` by `user`; `run` then starts it. Errors with
    /// CANCELLED if the query was cancelled before it began.
    pub(crate) fn start(self: &Arc<Self>, user: &str, ticket: &[u8]) -> Result<Running, Status> {
        let key = (user.to_string(), ticket.to_vec());
        let mut state = self.state();
        state.prune_all();
        state.announced.remove(&key);
        state.stopped.remove(&key);
        if state.cancelled.remove(&key).is_some() {
            return Err(status(
                ErrorKind::Cancelled,
                "the query was cancelled (CancelFlightInfo)",
            ));
        }
        let (handle, registration) = AbortHandle::new_pair();
        state.next += 1;
        let id = state.next;
        state
            .running
            .entry(key.clone())
            .or_default()
            .push(Execution {
                id,
                response: handle,
                producer: None,
                producer_stopped: false,
                work: None,
                cancelled: false,
            });
        drop(state);
        Ok(Running {
            registered: Registered {
                queries: Arc::clone(self),
                key,
                id,
            },
            response: registration,
        })
    }

    /// Aborts every execution of `user`'s query named by `ticket`; a statement
    /// (`one_shot`) announced to `user` and not yet begun is refused when it begins.
    /// Then waits up to `STOP_WAIT` for the aborted producers to stop. Asked again
    /// after they stopped, answers `Done`. Another user's query is `NotRunning` to them.
    pub(crate) async fn cancel(&self, user: &str, ticket: &[u8], one_shot: bool) -> Cancelled {
        let key = (user.to_string(), ticket.to_vec());
        {
            let mut state = self.state();
            if let Some(executions) = state.running.get_mut(&key) {
                executions.iter_mut().for_each(Execution::cancel);
            } else if state.stopped.contains_key(&key) {
                return Cancelled::Done;
            } else if !one_shot || state.announced.remove(&key).is_none() {
                return Cancelled::NotRunning;
            } else {
                remember(&mut state.cancelled, key, Instant::now());
                return Cancelled::Done;
            }
        }
        let deadline = Instant::now() + STOP_WAIT;
        loop {
            let gone = {
                let mut state = self.state();
                state.prune(&key);
                !state.running.contains_key(&key)
            };
            if gone {
                return Cancelled::Done;
            }
            if Instant::now() >= deadline {
                return Cancelled::Stopping;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Queries whose producer has not stopped.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.state().running.values().map(Vec::len).sum()
    }

    /// Starts `running`'s producer on `messages` and returns the DoGet response: the
    /// messages, or CANCELLED once the query is cancelled. Dropping the response (the
    /// client went away) aborts the producer.
    pub(crate) fn run(
        self: &Arc<Self>,
        running: Running,
        messages: FlightStream,
        work: Option<WorkWatch>,
    ) -> FlightStream {
        let Running {
            registered,
            response,
        } = running;
        let key = registered.key.clone();
        let id = registered.id;
        // One message in flight: the producer runs only as fast as the client reads.
        let (sender, receiver) = tokio::sync::mpsc::channel(1);
        // Set once the plan ran out: a producer that stopped otherwise (a panic) must
        // not look like a complete answer.
        let completed = Arc::new(AtomicBool::new(false));
        let done = Arc::clone(&completed);
        // In the DoGet's span: the plan's work (and the peer calls it makes) belongs to
        // the client's trace.
        let producer = tokio::spawn(tracing::Instrument::in_current_span(async move {
            let _registered = registered;
            let mut messages = messages;
            while let Some(message) = messages.next().await {
                if sender.send(message).await.is_err() {
                    return;
                }
            }
            done.store(true, Ordering::Release);
        }))
        .abort_handle();
        {
            let mut state = self.state();
            if let Some(execution) = state
                .running
                .get_mut(&key)
                .and_then(|list| list.iter_mut().find(|e| e.id == id))
            {
                execution.producer = Some(producer.clone());
                execution.work = work;
                // Cancelled between `start` and now.
                if execution.cancelled {
                    execution.cancel();
                }
            }
        }
        let stop_on_drop = StopOnDrop(producer);
        let responses = Abortable::new(ReceiverStream::new(receiver), response);
        Box::pin(futures::stream::unfold(
            Some((responses, stop_on_drop)),
            move |state| {
                let completed = Arc::clone(&completed);
                async move {
                    let (mut responses, stop_on_drop) = state?;
                    match responses.next().await {
                        Some(message) => Some((message, Some((responses, stop_on_drop)))),
                        None if responses.is_aborted() => Some((
                            Err(status(
                                ErrorKind::Cancelled,
                                "the query was cancelled (CancelFlightInfo)",
                            )),
                            None,
                        )),
                        None if completed.load(Ordering::Acquire) => None,
                        None => Some((
                            Err(status(
                                ErrorKind::Internal,
                                "the query stopped before its end",
                            )),
                            None,
                        )),
                    }
                }
            },
        ))
    }
}

/// Aborts a producer when the response it feeds is dropped.
struct StopOnDrop(tokio::task::AbortHandle);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kind a status says it is.
    trait Kind {
        fn kind(&self) -> ErrorKind;
    }

    impl Kind for Status {
        fn kind(&self) -> ErrorKind {
            crate::grpc_status::kind_of(self)
        }
    }

    fn endless() -> FlightStream {
        Box::pin(futures::stream::repeat_with(|| Ok(FlightData::default())))
    }

    #[tokio::test]
    async fn a_running_query_ends_with_cancelled_and_leaves_the_registry() {
        let queries = Arc::new(RunningQueries::default());
        let running = queries.start("ana", b"t1").expect("start");
        let mut stream = queries.run(running, endless(), None);
        assert!(stream.next().await.expect("a message").is_ok());
        // Another user does not reach it.
        assert_eq!(
            queries.cancel("mallory", b"t1", false).await,
            Cancelled::NotRunning
        );
        assert!(stream.next().await.expect("still running").is_ok());
        assert_eq!(queries.cancel("ana", b"t1", true).await, Cancelled::Done);
        assert_eq!(queries.len(), 0, "the producer stopped");
        // At most the message already handed over, then CANCELLED.
        let mut ended = stream.next().await.expect("the cancellation");
        if ended.is_ok() {
            ended = stream.next().await.expect("the cancellation");
        }
        assert_eq!(ended.expect_err("cancelled").kind(), ErrorKind::Cancelled);
        assert!(stream.next().await.is_none());
        // Asking again answers the same.
        assert_eq!(queries.cancel("ana", b"t1", true).await, Cancelled::Done);
    }

    /// A step that does not yield (a blocking poll) cannot be interrupted: the client's
    /// response ends at once, and the cancellation answers CANCELLING until the step is
    /// over, then CANCELLED.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_step_that_does_not_yield_is_cancelling_until_it_ends() {
        let queries = Arc::new(RunningQueries::default());
        let running = queries.start("ana", b"t").expect("start");
        let mut first = true;
        let stubborn: FlightStream = Box::pin(futures::stream::poll_fn(move |_| {
            if !first {
                std::thread::sleep(Duration::from_millis(1500));
            }
            first = false;
            std::task::Poll::Ready(Some(Ok(FlightData::default())))
        }));
        let mut stream = queries.run(running, stubborn, None);
        assert!(stream.next().await.expect("a message").is_ok());
        let asked = Instant::now();
        assert_eq!(queries.cancel("ana", b"t", true).await, Cancelled::Stopping);
        assert!(asked.elapsed() < Duration::from_secs(1));
        let mut ended = stream.next().await.expect("the cancellation");
        if ended.is_ok() {
            ended = stream.next().await.expect("the cancellation");
        }
        assert_eq!(ended.expect_err("cancelled").kind(), ErrorKind::Cancelled);
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "the client hears at once"
        );
        tokio::time::sleep(Duration::from_millis(3500)).await;
        assert_eq!(queries.len(), 0, "stopped after its step");
        assert_eq!(queries.cancel("ana", b"t", true).await, Cancelled::Done);
    }

    #[tokio::test]
    async fn a_client_that_goes_away_stops_the_producer() {
        let queries = Arc::new(RunningQueries::default());
        let running = queries.start("ana", b"t").expect("start");
        let mut stream = queries.run(running, endless(), None);
        assert!(stream.next().await.expect("a message").is_ok());
        drop(stream);
        for _ in 0..100 {
            if queries.len() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(queries.len(), 0);
        // Not cancelled: nothing to report as cancelled.
        assert_eq!(
            queries.cancel("ana", b"t", false).await,
            Cancelled::NotRunning
        );
    }

    #[tokio::test]
    async fn a_producer_that_dies_is_not_a_complete_answer() {
        let queries = Arc::new(RunningQueries::default());
        let running = queries.start("ana", b"t").expect("start");
        let dies: FlightStream = Box::pin(futures::stream::poll_fn(
            |_| -> std::task::Poll<Option<Result<FlightData, Status>>> {
                panic!("a bug in an operator")
            },
        ));
        let mut stream = queries.run(running, dies, None);
        let ended = stream.next().await.expect("an error, not the end");
        assert_eq!(ended.expect_err("failed").kind(), ErrorKind::Internal);
    }

    #[tokio::test]
    async fn a_statement_cancelled_before_it_begins_is_refused_once() {
        let queries = Arc::new(RunningQueries::default());
        queries.announce("ana", b"q", Instant::now());
        // Only the user it was announced to knows it.
        assert_eq!(
            queries.cancel("mallory", b"q", true).await,
            Cancelled::NotRunning
        );
        assert_eq!(queries.cancel("ana", b"q", true).await, Cancelled::Done);
        let refused = queries.start("ana", b"q").err().expect("refused");
        assert_eq!(refused.kind(), ErrorKind::Cancelled);
        assert!(queries.start("ana", b"q").is_ok(), "remembered once");
        // A prepared statement's handle is not remembered: its next run is a new one.
        assert_eq!(
            queries.cancel("ana", b"prepared", false).await,
            Cancelled::NotRunning
        );
        assert!(queries.start("ana", b"prepared").is_ok());
    }

    #[test]
    fn remembered_tickets_are_bounded() {
        let queries = RunningQueries::default();
        let now = Instant::now();
        for i in 0..CANCELLABLE_TICKETS_MAX + 10 {
            queries.announce("u", &i.to_le_bytes(), now);
        }
        assert_eq!(queries.state().announced.len(), CANCELLABLE_TICKETS_MAX);
        queries.announce(
            "u",
            b"late",
            now + CANCELLABLE_TICKET_AGE_MAX + Duration::from_secs(1),
        );
        assert_eq!(queries.state().announced.len(), 1);
    }
}
