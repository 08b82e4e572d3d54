//! The source side of the embedded transport: a peer's `StreamChanges` call reads this
//! node's change stream from its offset, then follows it live.

use std::time::Instant;

use prost::Message as _;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::cdc::envelope::{HEADER_RELEASED_TO, header, is_released_to};
use crate::error_kind::ErrorKind;
use crate::grpc_status::status;
use crate::limits::CHANGE_STREAM_HEARTBEAT;
use crate::limits::STREAM_BATCH_MESSAGES_MAX;
use crate::peers::proto::{ChangeBatch, ChangeMessage};
use crate::storage::{StorageError, Store};

/// node-state key: stream messages below this sequence number were removed (retention).
pub const PRUNED_BELOW_KEY: &str = "cdc/stream/pruned_below";

/// Messages after `after_seq`, then live, until the follower goes away or `shutdown`.
///
/// `follower` is the region the caller's certificate proves. A message goes to it only
/// if the relay's decision covered that region (`envelope::HEADER_RELEASED_TO`); the
/// others are skipped (the position still moves past them) and counted in the log: a
/// region that joined the mesh after a change was relayed reads the changes decided
/// for it from then on, not the history decided for the regions before it.
pub fn follow(
    store: Store,
    follower: String,
    after_seq: u64,
    mut shutdown: watch::Receiver<bool>,
) -> Result<ReceiverStream<Result<ChangeBatch, Status>>, Status> {
    let pruned_below = store
        .state_with_prefix(PRUNED_BELOW_KEY)
        .map_err(storage_status)?
        .into_iter()
        .find(|(k, _)| k == PRUNED_BELOW_KEY)
        .and_then(|(_, v)| v.try_into().ok().map(u64::from_be_bytes))
        .unwrap_or(0);
    if after_seq.saturating_add(1) < pruned_below {
        return Err(status(
            ErrorKind::Precondition,
            format!(
                "changes after {after_seq} are no longer retained (the stream starts at \
             {pruned_below}); this replica must be rebuilt"
            ),
        ));
    }
    let (sender, receiver) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut position = after_seq;
        let mut stream_head = store.watch_stream();
        let mut last_sent = Instant::now() - CHANGE_STREAM_HEARTBEAT;
        loop {
            let batch = match read_batch(&store, &follower, position).await {
                Ok(batch) => batch,
                Err(status) => {
                    let _ = sender.send(Err(status)).await;
                    return;
                }
            };
            let sent_messages = !batch.messages.is_empty();
            let moved = batch.through_seq > position;
            position = position.max(batch.through_seq);
            if moved || last_sent.elapsed() >= CHANGE_STREAM_HEARTBEAT {
                if sender.send(Ok(batch)).await.is_err() {
                    return; // the follower went away
                }
                last_sent = Instant::now();
            }
            if sent_messages {
                continue;
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = stream_head.changed() => {}
                () = tokio::time::sleep(CHANGE_STREAM_HEARTBEAT) => {}
            }
            if *shutdown.borrow() {
                return;
            }
        }
    });
    Ok(ReceiverStream::new(receiver))
}

async fn read_batch(store: &Store, follower: &str, after: u64) -> Result<ChangeBatch, Status> {
    let store = store.clone();
    let follower = follower.to_string();
    tokio::task::spawn_blocking(move || {
        // Read in this order: everything relayed by the time of the backlog read is in
        // the stream read after it.
        let head_seq = *store.watch_changes().borrow();
        let backlog = store.outbox_backlog()?;
        let relayed_through = backlog
            .oldest_seq
            .map_or(head_seq, |oldest| oldest.saturating_sub(1));
        let stored = store.stream_after(after, STREAM_BATCH_MESSAGES_MAX)?;
        let complete = stored.len() < STREAM_BATCH_MESSAGES_MAX;
        let last = stored.last().map_or(after, |(seq, _)| *seq);
        let through_seq = if complete {
            last.max(relayed_through)
        } else {
            last
        };
        let stream_head_seq = store.stream_bounds()?.map_or(0, |(_, last)| last);
        let decoded = stored
            .into_iter()
            .map(|(seq, bytes)| {
                ChangeMessage::decode(bytes.as_slice()).map_err(|e| {
                    StorageError::Transaction(format!("corrupt change stream message {seq}: {e}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let read = decoded.len();
        let messages: Vec<ChangeMessage> = decoded
            .into_iter()
            .filter(|message| is_released_to(header(message, HEADER_RELEASED_TO), &follower))
            .collect();
        if messages.len() < read {
            tracing::warn!(
                follower = %follower,
                withheld = read - messages.len(),
                after,
                "change stream messages not decided for this follower's region withheld"
            );
        }
        Ok::<_, StorageError>(ChangeBatch {
            messages,
            head_seq,
            oldest_unrelayed_us: backlog.oldest_commit_time_us.unwrap_or(0),
            stream_head_seq,
            through_seq,
        })
    })
    .await
    .map_err(|e| {
        status(
            ErrorKind::Internal,
            format!("change stream read failed: {e}"),
        )
    })?
    .map_err(storage_status)
}

fn storage_status(error: StorageError) -> Status {
    status(ErrorKind::Internal, format!("change stream: {error}"))
}
