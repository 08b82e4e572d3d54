//! The Kafka transport (rdkafka, bundled librdkafka), used when `cdc.kafka_brokers` is
//! set.
//!
//! **Publisher**: produces this node's change stream, in order, with an idempotent
//! producer (`acks=all`): one topic per source region and table
//! (`domicile.cdc.<region>.<table>`, created with one partition so a table's changes
//! stay in commit order), key = the JSON primary key, value = the Debezium-style
//! envelope, headers `domicile.event_id` and `domicile.redactor`. The position
//! (`cdc/kafka/published`) is stored only after the broker acknowledged every message
//! up to it: after a crash publishing resumes there, and a message may be produced
//! twice (at-least-once; the event id and source sequence let consumers deduplicate).
//!
//! **Consumer**: one per node, group `domicile-replica-<region>`, subscribed to every
//! `domicile.cdc.*` topic; it applies other regions' messages to the replica tables
//! (idempotent by source sequence) and commits offsets only after the apply is durable.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use prost::Message as _;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::watch;

use super::envelope::{self, Change, HEADER_REDACTOR};
use super::quarantine::{self, QuarantineRecord, Refusal};
use super::replica;
use super::status::CdcStatus;
use crate::limits::KAFKA_FETCH_BYTES_MAX;
use crate::limits::{CDC_MESSAGE_BYTES_MAX, STREAM_BATCH_MESSAGES_MAX};
use crate::peers::proto::ChangeMessage;
use crate::storage::{StorageError, Store};

/// node-state key: the newest change-stream sequence number the broker acknowledged.
pub const PUBLISHED_KEY: &str = "cdc/kafka/published";
/// Topics the consumer follows (librdkafka treats a leading `^` as a regex).
const TOPIC_PATTERN: &str = "^domicile[.]cdc[.].*";
const RETRY: Duration = Duration::from_secs(1);
/// How long one message may wait in the producer for the broker.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

fn client_config(brokers: &str, region: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("client.id", format!("domicile-{region}"));
    config
}

fn read_u64_state(store: &Store, key: &str) -> Result<u64, StorageError> {
    Ok(store
        .state_with_prefix(key)?
        .into_iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.try_into().ok().map(u64::from_be_bytes))
        .unwrap_or(0))
}

pub struct KafkaPublisher {
    store: Store,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    status: Arc<CdcStatus>,
    created: HashSet<String>,
}

impl KafkaPublisher {
    pub fn new(
        store: Store,
        brokers: &str,
        region: &str,
        status: Arc<CdcStatus>,
    ) -> Result<Self, KafkaError> {
        let producer: FutureProducer = client_config(brokers, region)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            .set(
                "message.timeout.ms",
                DELIVERY_TIMEOUT.as_millis().to_string(),
            )
            .create()?;
        let admin = client_config(brokers, region).create()?;
        Ok(Self {
            store,
            producer,
            admin,
            status,
            created: HashSet::new(),
        })
    }

    /// Publishes until `shutdown` turns true.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut stream_head = self.store.watch_stream();
        let mut last_error: Option<String> = None;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let wait = match self.publish_batch().await {
                Ok(0) => {
                    last_error = None;
                    None
                }
                Ok(_) => {
                    last_error = None;
                    continue;
                }
                Err(error) => {
                    let message = error.to_string();
                    if last_error.as_deref() != Some(message.as_str()) {
                        tracing::warn!(error = %message, "Kafka publishing interrupted; retrying");
                    }
                    self.status
                        .update_relay(|s| s.transport_error = Some(message.clone()));
                    last_error = Some(message);
                    Some(RETRY)
                }
            };
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = stream_head.changed(), if wait.is_none() => {}
                () = tokio::time::sleep(wait.unwrap_or(RETRY)) => {}
            }
        }
    }

    async fn publish_batch(&mut self) -> Result<usize, PublishError> {
        let store = self.store.clone();
        let stored = tokio::task::spawn_blocking(move || {
            let after = read_u64_state(&store, PUBLISHED_KEY)?;
            store.stream_after(after, STREAM_BATCH_MESSAGES_MAX)
        })
        .await
        .map_err(|e| PublishError::Storage(StorageError::Transaction(e.to_string())))??;
        let Some(&(last, _)) = stored.last() else {
            return Ok(0);
        };
        let messages = stored
            .iter()
            .map(|(_, bytes)| ChangeMessage::decode(bytes.as_slice()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PublishError::Corrupt(e.to_string()))?;
        self.ensure_topics(&messages).await?;
        let deliveries: Vec<_> = messages
            .iter()
            .map(|message| {
                let mut headers = OwnedHeaders::new_with_capacity(message.headers.len());
                for header in &message.headers {
                    headers = headers.insert(Header {
                        key: &header.name,
                        value: Some(&header.value),
                    });
                }
                let record = FutureRecord::to(&message.topic)
                    .key(&message.key)
                    .payload(&message.value)
                    .headers(headers);
                self.producer.send(record, DELIVERY_TIMEOUT)
            })
            .collect();
        for delivery in futures::future::join_all(deliveries).await {
            delivery.map_err(|(error, _)| PublishError::Kafka(error))?;
        }
        self.store
            .write(move |ctx| {
                ctx.put_state(PUBLISHED_KEY.into(), last.to_be_bytes().to_vec());
                Ok::<_, StorageError>(())
            })
            .await?;
        let count = messages.len();
        self.status.update_relay(|s| {
            s.published += count as u64;
            s.transport_error = None;
        });
        Ok(count)
    }

    async fn ensure_topics(&mut self, messages: &[ChangeMessage]) -> Result<(), PublishError> {
        let missing: Vec<String> = messages
            .iter()
            .map(|m| m.topic.clone())
            .filter(|t| !self.created.contains(t))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let topics: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|name| NewTopic::new(name, 1, TopicReplication::Fixed(1)))
            .collect();
        let results = self
            .admin
            .create_topics(&topics, &AdminOptions::new())
            .await?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(PublishError::Topic {
                        topic,
                        detail: code.to_string(),
                    });
                }
            }
        }
        self.created.extend(missing);
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
enum PublishError {
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("cannot create topic {topic}: {detail}")]
    Topic { topic: String, detail: String },
    #[error("corrupt change stream message: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

pub struct KafkaFollower {
    store: Store,
    consumer: StreamConsumer,
    region: String,
    /// The other regions of the mesh: the only sources whose topics are applied.
    sources: BTreeSet<String>,
    status: Arc<CdcStatus>,
}

/// One received message, owned (the consumer's borrow ends before the apply).
struct Received {
    topic: String,
    partition: i32,
    offset: i64,
    key: Vec<u8>,
    value: Vec<u8>,
    redactor: String,
    /// `envelope::HEADER_RELEASED_TO`, if the message has it.
    released_to: Option<String>,
    /// The committing statement's W3C `traceparent`, if it was traced.
    trace_parent: Option<String>,
}

impl KafkaFollower {
    pub fn new(
        store: Store,
        brokers: &str,
        group: &str,
        region: &str,
        sources: impl IntoIterator<Item = String>,
        status: Arc<CdcStatus>,
    ) -> Result<Self, KafkaError> {
        let consumer: StreamConsumer = client_config(brokers, region)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("topic.metadata.refresh.interval.ms", "1000")
            // A fetch returns as soon as there is anything: replication lag, not
            // throughput, is what a directory reader notices.
            .set("fetch.wait.max.ms", "20")
            // Bounds what one fetch may bring into memory, before any message is read.
            .set(
                "receive.message.max.bytes",
                KAFKA_FETCH_BYTES_MAX.to_string(),
            )
            .set("fetch.max.bytes", (KAFKA_FETCH_BYTES_MAX / 2).to_string())
            .create()?;
        consumer.subscribe(&[TOPIC_PATTERN])?;
        let sources: BTreeSet<String> = sources.into_iter().filter(|s| s != region).collect();
        if sources.is_empty() {
            tracing::warn!(
                "no [[peers]] configured: the Kafka replica consumer applies changes of any \
                 region whose topic and envelope agree; list the mesh's regions as peers \
                 to accept only those"
            );
        }
        Ok(Self {
            store,
            consumer,
            region: region.to_string(),
            sources,
            status,
        })
    }

    /// Consumes until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut last_error: Option<String> = None;
        loop {
            let first = tokio::select! {
                _ = shutdown.changed() => return,
                next = tokio::time::timeout(RETRY, self.consumer.recv()) => next,
            };
            let outcome = match first {
                Err(_) => {
                    self.idle();
                    continue;
                }
                Ok(Err(error)) => Err(ConsumeError::Kafka(error)),
                Ok(Ok(message)) => {
                    let mut batch = vec![received(&message)];
                    drop(message);
                    while batch.len() < STREAM_BATCH_MESSAGES_MAX {
                        match self.consumer.recv().now_or_never() {
                            Some(Ok(message)) => batch.push(received(&message)),
                            _ => break,
                        }
                    }
                    self.apply(batch).await
                }
            };
            if let Err(error) = outcome {
                let message = error.to_string();
                if last_error.as_deref() != Some(message.as_str()) {
                    tracing::warn!(error = %message, "Kafka replica consumer interrupted");
                }
                last_error = Some(message);
                tokio::select! {
                    _ = shutdown.changed() => return,
                    () = tokio::time::sleep(RETRY) => {}
                }
            } else {
                last_error = None;
            }
        }
    }

    /// Nothing waiting: every source seen so far is current as far as the topics go.
    fn idle(&self) {
        let now = Instant::now();
        for source in self.status.replicas().into_keys() {
            self.status.update_replica(&source, |s| {
                s.heard_at = Some(now);
                s.current_at = Some(now);
                s.source_head_seq = s.applied_seq;
                s.connected = true;
            });
        }
    }

    async fn apply(&self, batch: Vec<Received>) -> Result<(), ConsumeError> {
        let mut by_source: BTreeMap<String, Vec<Change>> = BTreeMap::new();
        let mut refused = Vec::new();
        for message in &batch {
            // Decided at the source for other regions only (e.g. before this one joined
            // the mesh): not this node's to apply. The broker holds it; this node does
            // not store it.
            if !envelope::is_released_to(message.released_to.as_deref(), &self.region) {
                tracing::warn!(
                    topic = %message.topic,
                    partition = message.partition,
                    offset = message.offset,
                    "CDC message not released to this region skipped"
                );
                continue;
            }
            match self.check(message) {
                Ok(Some(change)) => by_source
                    .entry(change.region.clone())
                    .or_default()
                    .push(change),
                Ok(None) => {}
                Err((source, refusal)) => refused.push(QuarantineRecord {
                    at_us: crate::clock::now_unix_us(),
                    source,
                    table: topic_stream(&message.topic).map(|(_, table)| table.to_string()),
                    seq: None,
                    position: message.position(),
                    reason: refusal.to_string(),
                }),
            }
        }
        if !refused.is_empty() {
            self.store
                .write(move |ctx| {
                    for record in &refused {
                        quarantine::record(ctx, record)?;
                    }
                    Ok::<_, StorageError>(())
                })
                .await
                .map_err(replica::ReplicaError::from)?;
        }
        let traced = crate::trace_context::apply_spans(
            "kafka",
            batch.iter().filter_map(|m| m.trace_parent.as_deref()),
        );
        for (source, changes) in by_source {
            let newest_seq = changes.iter().map(|c| c.seq).max().unwrap_or(0);
            let newest_commit = changes.iter().map(|c| c.commit_time_us).max();
            let applied = {
                let source = source.clone();
                self.store
                    .write(move |ctx| replica::apply(ctx, &source, &changes, 0, "kafka"))
                    .await?
            };
            let now = Instant::now();
            self.status.update_replica(&source, |s| {
                s.applied_seq = s.applied_seq.max(newest_seq);
                s.source_head_seq = s.source_head_seq.max(newest_seq);
                s.heard_at = Some(now);
                s.connected = true;
                s.last_error = None;
                s.applied_events += applied.applied;
                if let Some(commit) = newest_commit {
                    s.last_apply_latency_ms = crate::clock::ms_since_unix_us(commit);
                }
            });
        }
        drop(traced);
        // Everything received is applied durably: now the group may move on.
        self.consumer.commit_consumer_state(CommitMode::Async)?;
        Ok(())
    }
}

impl KafkaFollower {
    /// What a message from a topic is: another mesh region's change to apply
    /// (`Some`), this region's own (`None`), or refused, with the source to file it
    /// under. The topic decides the source: anyone who may write to a topic can write
    /// any envelope, so the envelope must agree with the topic, whose write access the
    /// broker controls per region.
    fn check(&self, message: &Received) -> Result<Option<Change>, (String, Refusal)> {
        let known = |region: &str| {
            region == self.region || self.sources.is_empty() || self.sources.contains(region)
        };
        let Some((region, table)) =
            topic_stream(&message.topic).filter(|(region, _)| known(region))
        else {
            return Err((
                "unknown".into(),
                Refusal::UnknownTopic {
                    topic: message.topic.clone(),
                },
            ));
        };
        if region == self.region {
            return Ok(None);
        }
        let refuse = |refusal| (region.to_string(), refusal);
        let bytes = message.key.len() + message.value.len();
        if bytes > CDC_MESSAGE_BYTES_MAX {
            return Err(refuse(Refusal::TooLarge { bytes }));
        }
        let change = envelope::parse(&message.key, &message.value, &message.redactor)
            .map_err(|error| refuse(Refusal::Unreadable(error.to_string())))?;
        // The publisher names topics with `envelope::topic`, which replaces characters
        // Kafka does not allow: compare through it, so a quoted table name still binds.
        if change.region != region
            || envelope::topic(&change.region, &change.table) != message.topic
        {
            return Err(refuse(Refusal::WrongStream {
                region: change.region,
                table: change.table,
                stream_region: region.to_string(),
                stream_table: table.to_string(),
            }));
        }
        Ok(Some(change))
    }
}

/// (region, table) of a `domicile.cdc.<region>.<table>` topic (the table as the topic
/// spells it, see `envelope::topic`). Region names hold no dot; table names may.
fn topic_stream(topic: &str) -> Option<(&str, &str)> {
    let rest = topic.strip_prefix("domicile.cdc.")?;
    let (region, table) = rest.split_once('.')?;
    (!region.is_empty() && !table.is_empty()).then_some((region, table))
}

impl Received {
    fn position(&self) -> String {
        format!("kafka:{}/{}@{}", self.topic, self.partition, self.offset)
    }
}

fn received(message: &rdkafka::message::BorrowedMessage<'_>) -> Received {
    let header = |name: &str| {
        message.headers().and_then(|headers| {
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        })
    };
    let redactor = header(HEADER_REDACTOR).unwrap_or_else(|| "unknown".into());
    let released_to = header(envelope::HEADER_RELEASED_TO);
    let trace_parent = header(crate::trace_context::TRACEPARENT);
    Received {
        topic: message.topic().to_string(),
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().unwrap_or_default().to_vec(),
        value: message.payload().unwrap_or_default().to_vec(),
        redactor,
        released_to,
        trace_parent,
    }
}

/// One message as a reader of the topics sees it.
#[derive(Clone, Debug)]
pub struct TopicRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Every message of every `domicile.cdc.*` topic, from the beginning, read by a
/// throwaway consumer group: until `first_wait` passes without any message, then until
/// `idle` passes without a new one. For leak scans and tests.
pub async fn read_all_topics(
    brokers: &str,
    first_wait: Duration,
    idle: Duration,
) -> Result<Vec<TopicRecord>, KafkaError> {
    let group = format!("domicile-scan-{}", uuid::Uuid::new_v4());
    let consumer: StreamConsumer = client_config(brokers, "scan")
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("topic.metadata.refresh.interval.ms", "500")
        .create()?;
    consumer.subscribe(&[TOPIC_PATTERN])?;
    let mut records = Vec::new();
    loop {
        let wait = if records.is_empty() { first_wait } else { idle };
        let message = match tokio::time::timeout(wait, consumer.recv()).await {
            Err(_) => break,
            Ok(message) => message?,
        };
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        records.push(TopicRecord {
            topic: message.topic().to_string(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().unwrap_or_default().to_vec(),
            value: message.payload().unwrap_or_default().to_vec(),
            headers,
        });
    }
    Ok(records)
}

#[derive(Debug, thiserror::Error)]
enum ConsumeError {
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Replica(#[from] replica::ReplicaError),
}
