//! The consumer side of the embedded transport: one follower per peer region streams
//! that region's redacted changes over the mesh and applies them to the replica tables,
//! resuming from the offset it stored with the last batch it applied.

use std::sync::Arc;
use std::time::Instant;

use crate::clock::Backoff;
use thiserror::Error;
use tokio::sync::watch;

use super::envelope::{self, HEADER_REDACTOR};
use super::quarantine::{self, QuarantineRecord, Refusal};
use super::replica::{self, ReplicaError};
use super::status::CdcStatus;
use crate::limits::{
    CHANGE_STREAM_SILENCE_MAX, REPLICA_RETRY_BACKOFF_MAX, REPLICA_RETRY_BACKOFF_MIN,
};
use crate::peers::proto::ChangeBatch;
use crate::peers::{ForwardError, PeerRouter};
use crate::storage::{StorageError, Store};

#[derive(Debug, Error)]
enum FollowError {
    #[error(transparent)]
    Connect(#[from] ForwardError),
    #[error("stream from {region} failed: {message}")]
    Stream { region: String, message: String },
    #[error("stream from {0} went silent")]
    Silent(String),
    #[error("stream from {0} ended")]
    Ended(String),
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

pub struct Follower {
    pub store: Store,
    pub router: Arc<PeerRouter>,
    pub source: String,
    pub status: Arc<CdcStatus>,
}

impl Follower {
    /// Follows until `shutdown` turns true, reconnecting with backoff.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Backoff::new(REPLICA_RETRY_BACKOFF_MIN, REPLICA_RETRY_BACKOFF_MAX);
        let mut last_error: Option<String> = None;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let outcome = self.follow(&mut shutdown, &mut backoff).await;
            self.status
                .update_replica(&self.source, |s| s.connected = false);
            let Err(error) = outcome else { return };
            let message = error.to_string();
            if last_error.as_deref() != Some(message.as_str()) {
                tracing::warn!(source = %self.source, error = %message, "replica stream interrupted");
            }
            self.status
                .update_replica(&self.source, |s| s.last_error = Some(message.clone()));
            last_error = Some(message);
            tokio::select! {
                _ = shutdown.changed() => {}
                () = tokio::time::sleep(backoff.next_wait()) => {}
            }
        }
    }

    async fn follow(
        &self,
        shutdown: &mut watch::Receiver<bool>,
        backoff: &mut Backoff,
    ) -> Result<(), FollowError> {
        let store = self.store.clone();
        let source = self.source.clone();
        let after = tokio::task::spawn_blocking(move || replica::stream_offset(&store, &source))
            .await
            .map_err(|e| StorageError::Transaction(e.to_string()))??;
        let mut stream = self.router.stream_changes(&self.source, after).await?;
        self.status
            .update_replica(&self.source, |s| s.connected = true);
        loop {
            let next = tokio::select! {
                _ = shutdown.changed() => return Ok(()),
                next = tokio::time::timeout(CHANGE_STREAM_SILENCE_MAX, stream.message()) => next,
            };
            let batch = match next {
                Err(_) => return Err(FollowError::Silent(self.source.clone())),
                Ok(Err(status)) => {
                    return Err(FollowError::Stream {
                        region: self.source.clone(),
                        message: status.message().to_string(),
                    });
                }
                Ok(Ok(None)) => return Err(FollowError::Ended(self.source.clone())),
                Ok(Ok(Some(batch))) => batch,
            };
            self.apply(batch).await?;
            backoff.reset();
        }
    }

    async fn apply(&self, batch: ChangeBatch) -> Result<(), FollowError> {
        // An unreadable message is quarantined, not a reason to stop following: the
        // stream would resend it for ever.
        let position = format!("peer:{}", self.source);
        let mut changes = Vec::with_capacity(batch.messages.len());
        let mut unreadable = Vec::new();
        for message in &batch.messages {
            let redactor = envelope::header(message, HEADER_REDACTOR).unwrap_or("unknown");
            match envelope::parse(&message.key, &message.value, redactor) {
                Ok(change) => changes.push(change),
                Err(error) => unreadable.push(QuarantineRecord {
                    at_us: crate::clock::now_unix_us(),
                    source: self.source.clone(),
                    table: None,
                    seq: Some(message.seq),
                    position: position.clone(),
                    reason: Refusal::Unreadable(error.to_string()).to_string(),
                }),
            }
        }
        let source = self.source.clone();
        let through = batch.through_seq;
        let known = self
            .status
            .replica(&self.source)
            .map_or(0, |s| s.applied_seq);
        // A heartbeat that moves nothing needs no commit.
        let traced = crate::trace_context::apply_spans(
            &self.source,
            batch
                .messages
                .iter()
                .filter_map(|m| envelope::header(m, crate::trace_context::TRACEPARENT)),
        );
        let applied = if changes.is_empty() && unreadable.is_empty() && through <= known {
            replica::Applied::default()
        } else {
            self.store
                .write(move |ctx| {
                    for record in &unreadable {
                        quarantine::record(ctx, record)?;
                    }
                    replica::apply(ctx, &source, &changes, through, &position)
                })
                .await?
        };
        drop(traced);
        let now = Instant::now();
        let latency_ms = applied
            .newest_commit_time_us
            .map(crate::clock::ms_since_unix_us);
        self.status.update_replica(&self.source, |s| {
            s.applied_seq = s.applied_seq.max(through);
            s.source_head_seq = batch.head_seq;
            s.source_oldest_unrelayed_us = batch.oldest_unrelayed_us;
            s.heard_at = Some(now);
            s.last_error = None;
            if s.applied_seq >= batch.head_seq && batch.oldest_unrelayed_us == 0 {
                s.current_at = Some(now);
            }
            s.applied_events += applied.applied;
            if let Some(latency) = latency_ms {
                s.last_apply_latency_ms = latency;
            }
        });
        if applied.applied > 0 {
            tracing::debug!(
                source = %self.source,
                applied = applied.applied,
                skipped = applied.skipped,
                through,
                "replica changes applied"
            );
        }
        Ok(())
    }
}
