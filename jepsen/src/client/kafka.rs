//! The queue workload's client: librdkafka (through the rdkafka crate), an ordinary Kafka
//! client, used the way an application would: a producer sending one record at a time and a
//! consumer polling assigned partitions.
//!
//! A send's outcome follows librdkafka's own account of the message
//! (`rd_kafka_message_status`): persisted is `ok`, not persisted is `fail`, possibly persisted is
//! `info`. That is the distinction Jepsen's Kafka client draws from the Java client's errors.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::bindings::{rd_kafka_message_status, rd_kafka_msg_status_t};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

/// How a client operation ended, in Jepsen's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<T> {
    Ok(T),
    /// Certainly did not happen.
    Fail(String),
    /// May or may not have happened.
    Info(String),
}

/// Producer settings that matter to safety.
#[derive(Clone, Debug)]
pub struct ProducerSettings {
    pub bootstrap: String,
    /// `all`, `1` or `0`.
    pub acks: String,
    pub idempotence: bool,
    /// librdkafka's `message.timeout.ms`: how long a send may retry before it is given up.
    pub message_timeout: Duration,
}

struct Delivery {
    offset: i64,
    error: Option<KafkaError>,
    status: rd_kafka_msg_status_t,
}

struct DeliveryReports {
    tx: Mutex<Sender<Delivery>>,
}

impl ClientContext for DeliveryReports {}

impl ProducerContext for DeliveryReports {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let (msg, error) = match result {
            Ok(m) => (m, None),
            Err((e, m)) => (m, Some(e.clone())),
        };
        // Safety: the message pointer is valid for the duration of the callback.
        let status = unsafe { rd_kafka_message_status(msg.ptr()) };
        let _ = self.tx.lock().unwrap().send(Delivery {
            offset: msg.offset(),
            error,
            status,
        });
    }
}

/// One producer, used by one process for one send at a time.
pub struct Producer {
    inner: BaseProducer<DeliveryReports>,
    reports: Receiver<Delivery>,
    message_timeout: Duration,
}

impl Producer {
    pub fn new(s: &ProducerSettings) -> Result<Producer> {
        let (tx, rx) = channel();
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &s.bootstrap)
            .set("acks", &s.acks)
            .set("enable.idempotence", s.idempotence.to_string())
            .set(
                "message.timeout.ms",
                s.message_timeout.as_millis().to_string(),
            )
            .set("request.timeout.ms", "3000")
            .set("socket.timeout.ms", "3000")
            .set("retry.backoff.ms", "100")
            .set("linger.ms", "0")
            .set("topic.metadata.refresh.interval.ms", "2000")
            .set("log_level", "3");
        let inner = cfg.create_with_context(DeliveryReports { tx: Mutex::new(tx) })?;
        Ok(Producer {
            inner,
            reports: rx,
            message_timeout: s.message_timeout,
        })
    }

    /// Sends one value to `topic`/`partition` and waits for its delivery report.
    pub fn send(&self, topic: &str, partition: i32, value: u64) -> Outcome<i64> {
        let payload = value.to_string();
        let record: BaseRecord<'_, (), String> =
            BaseRecord::to(topic).partition(partition).payload(&payload);
        if let Err((e, _)) = self.inner.send(record) {
            // Refused before it was queued (queue full, unknown partition): never sent.
            return Outcome::Fail(e.to_string());
        }
        // The report always comes within message.timeout.ms; the margin covers callbacks.
        let deadline = Instant::now() + self.message_timeout + Duration::from_secs(10);
        loop {
            self.inner.poll(Duration::from_millis(50));
            if let Ok(d) = self.reports.try_recv() {
                return match (d.error, d.status) {
                    (None, _) => Outcome::Ok(d.offset),
                    (Some(e), rd_kafka_msg_status_t::RD_KAFKA_MSG_STATUS_NOT_PERSISTED) => {
                        Outcome::Fail(e.to_string())
                    }
                    (Some(e), _) => Outcome::Info(e.to_string()),
                };
            }
            if Instant::now() > deadline {
                return Outcome::Info("no delivery report".into());
            }
        }
    }

    /// Whether librdkafka raised a fatal error (an idempotent producer that lost its
    /// sequence): the producer must be replaced.
    pub fn is_fatal(&self) -> bool {
        self.inner.client().fatal_error().is_some()
    }
}

/// A consumer of explicitly assigned partitions (no group).
pub struct Consumer {
    inner: BaseConsumer,
    topic: String,
}

impl Consumer {
    pub fn new(bootstrap: &str, topic: &str) -> Result<Consumer> {
        let inner: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "gregor-jepsen-assign")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "100")
            .set("socket.timeout.ms", "3000")
            .set("topic.metadata.refresh.interval.ms", "2000")
            .set("log_level", "3")
            .create()?;
        Ok(Consumer {
            inner,
            topic: topic.to_string(),
        })
    }

    /// Assigns these partitions, each from the given offset (None: from the beginning).
    pub fn assign(&self, partitions: &[(i32, Option<i64>)]) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        for (p, from) in partitions {
            let offset = from.map(Offset::Offset).unwrap_or(Offset::Beginning);
            tpl.add_partition_offset(&self.topic, *p, offset)?;
        }
        self.inner.assign(&tpl)?;
        Ok(())
    }

    /// Polls for up to `max_wait`, returning at most `max_records` records by partition, in
    /// the order they came.
    pub fn poll(&self, max_wait: Duration, max_records: usize) -> BTreeMap<i32, Vec<(i64, u64)>> {
        let deadline = Instant::now() + max_wait;
        let mut out: BTreeMap<i32, Vec<(i64, u64)>> = BTreeMap::new();
        let mut count = 0;
        while count < max_records {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            match self.inner.poll(deadline - now) {
                Some(Ok(m)) => {
                    if let Some((partition, offset, value)) = record_of(&m) {
                        out.entry(partition).or_default().push((offset, value));
                        count += 1;
                    }
                }
                // Transient consumer errors (a broker down, a leader moving) are retried by
                // librdkafka itself; the records it did return are what counts.
                Some(Err(e)) => tracing::debug!(error = %e, "consumer error"),
                None => break,
            }
        }
        out
    }

    /// The partition's high watermark, by ListOffsets to its leader.
    pub fn high_watermark(&self, partition: i32, timeout: Duration) -> Result<i64> {
        let (_, high) = self
            .inner
            .fetch_watermarks(&self.topic, partition, timeout)?;
        Ok(high)
    }
}

/// Counts the group's rebalances, so a poll can tell which records came after one.
#[derive(Default)]
pub struct RebalanceCounter {
    count: AtomicU64,
}

impl ClientContext for RebalanceCounter {}

impl ConsumerContext for RebalanceCounter {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if !matches!(rebalance, Rebalance::Error(_)) {
            self.count.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A consumer in a consumer group (subscribe mode): the group's coordinator hands it
/// partitions, and it commits what it has consumed.
pub struct GroupConsumer {
    inner: BaseConsumer<RebalanceCounter>,
    topic: String,
    /// Rebalances already reported by `poll_one`.
    seen: AtomicU64,
}

impl GroupConsumer {
    pub fn subscribe(bootstrap: &str, topic: &str, group: &str) -> Result<GroupConsumer> {
        let inner: BaseConsumer<RebalanceCounter> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "true")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            .set("fetch.wait.max.ms", "100")
            .set("socket.timeout.ms", "3000")
            .set("topic.metadata.refresh.interval.ms", "2000")
            .set("log_level", "3")
            .create_with_context(RebalanceCounter::default())?;
        inner.subscribe(&[topic])?;
        Ok(GroupConsumer {
            inner,
            topic: topic.to_string(),
            seen: AtomicU64::new(0),
        })
    }

    /// One record (partition, offset, value), or none within `timeout`; and whether the
    /// group's assignment changed before it (rebalance callbacks run inside the poll).
    pub fn poll_one(&self, timeout: Duration) -> (Option<(i32, i64, u64)>, bool) {
        let record = match self.inner.poll(timeout) {
            Some(Ok(m)) => record_of(&m),
            Some(Err(e)) => {
                tracing::debug!(error = %e, "group consumer error");
                None
            }
            None => None,
        };
        let count = self.inner.context().count.load(Ordering::SeqCst);
        let rebalanced = self.seen.swap(count, Ordering::SeqCst) != count;
        (record, rebalanced)
    }

    /// The partitions the group currently assigns to this consumer.
    pub fn assigned_partitions(&self) -> Vec<i32> {
        let mut out: Vec<i32> = self
            .inner
            .assignment()
            .map(|tpl| {
                tpl.elements()
                    .iter()
                    .filter(|e| e.topic() == self.topic)
                    .map(|e| e.partition())
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// Commits the positions after every record returned so far.
    pub fn commit(&self) -> Result<()> {
        self.inner.commit_consumer_state(CommitMode::Sync)?;
        Ok(())
    }
}

fn record_of<M: Message>(m: &M) -> Option<(i32, i64, u64)> {
    let value = m
        .payload()
        .and_then(|p| std::str::from_utf8(p).ok())
        .and_then(|s| s.parse::<u64>().ok())?;
    Some((m.partition(), m.offset(), value))
}

/// Creates topics through the admin client (they are forwarded to the active controller).
pub fn create_topics(
    bootstrap: &str,
    topics: &[(String, i32)],
    replication: i32,
    configs: &[(String, String)],
) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "3")
        .create()?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| {
            let mut t = NewTopic::new(name, *partitions, TopicReplication::Fixed(replication));
            for (k, v) in configs {
                t = t.set(k, v);
            }
            t
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = block_on(admin.create_topics(&new, &opts))?;
    for r in results {
        if let Err((name, code)) = r {
            return Err(anyhow!("creating topic {name}: {code}"));
        }
    }
    Ok(())
}

/// Runs one admin future to completion on this thread (rdkafka's admin API is async).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(f)
}
