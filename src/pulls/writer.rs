//! The background task that empties the pull log's queue into Postgres: a batch when
//! it is full or at least every second, the day partitions kept ahead, old ones
//! dropped. Nothing here is ever awaited by a request.

use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{store, PullLog, PullRecord, WarnEvery};
use crate::config::{Config, PullsConfig};
use crate::enforce::UpstreamAuth;
use crate::proxy::Forwarder;
use crate::telemetry::Metrics;

/// How often a non-empty queue is written even if the batch is not full.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How often partitions are created ahead and old ones dropped.
const MAINTAIN_EVERY: Duration = Duration::from_secs(3600);
/// How long a shutdown waits for the last records.
const DRAIN_FOR: Duration = Duration::from_secs(3);
/// How long a write waits for one of the writer's connections.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// What a record needs to tell whether its identity counts as verified.
pub struct Verifier {
    pub auth: UpstreamAuth,
    pub forwarder: Forwarder,
}

/// The pull log as configured: a running writer and its queue, or, with
/// `[pulls] enabled = false`, a log that records nothing.
pub fn start(
    config: &Config,
    forwarder: &Forwarder,
    metrics: &Metrics,
) -> anyhow::Result<(PullLog, Option<JoinHandle<()>>)> {
    if !config.pulls.enabled {
        return Ok((PullLog::disabled(metrics.clone()), None));
    }
    let verifier = Verifier {
        auth: UpstreamAuth::new(config.upstream.authenticates),
        forwarder: forwarder.clone(),
    };
    let (log, task) = spawn(
        &config.pulls,
        config.database.url.expose(),
        verifier,
        metrics.clone(),
    )?;
    Ok((log, Some(task)))
}

/// After the listeners closed (the queue's senders are gone): wait briefly for the
/// writer to write what is left, never long enough to hold up a shutdown.
pub async fn drain(task: Option<JoinHandle<()>>) {
    if let Some(task) = task {
        let _ = tokio::time::timeout(DRAIN_FOR, task).await;
    }
}

/// Start the writer; the returned [`PullLog`] is the request path's end of the queue.
/// The task ends once every `PullLog` is dropped and the queue is written.
pub fn spawn(
    config: &PullsConfig,
    database_url: &str,
    verifier: Verifier,
    metrics: Metrics,
) -> anyhow::Result<(PullLog, JoinHandle<()>)> {
    let pool = store::writer_pool(database_url, config.max_connections, ACQUIRE_TIMEOUT)?;
    let (tx, rx) = mpsc::channel(config.queue);
    let warned = Arc::new(WarnEvery::minute());
    let writer = Writer {
        pool,
        verifier,
        metrics: metrics.clone(),
        warned: warned.clone(),
        batch: config.batch,
        retention: config.retention,
        ready_through: None,
    };
    Ok((
        PullLog::new(tx, metrics, warned),
        tokio::spawn(writer.run(rx)),
    ))
}

struct Writer {
    pool: PgPool,
    verifier: Verifier,
    metrics: Metrics,
    warned: Arc<WarnEvery>,
    batch: usize,
    retention: Duration,
    /// The last day whose partition is known to exist.
    ready_through: Option<NaiveDate>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<PullRecord>) {
        enum Wake {
            Received(usize),
            Flush,
            Maintain,
        }
        let mut buf = Vec::with_capacity(self.batch);
        let mut flush = tokio::time::interval(FLUSH_EVERY);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut maintain = tokio::time::interval(MAINTAIN_EVERY);
        maintain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let room = self.batch - buf.len();
            let wake = tokio::select! {
                n = rx.recv_many(&mut buf, room) => Wake::Received(n),
                _ = flush.tick() => Wake::Flush,
                _ = maintain.tick() => Wake::Maintain,
            };
            match wake {
                Wake::Received(0) => {
                    self.write(&mut buf).await;
                    return;
                }
                Wake::Received(_) if buf.len() < self.batch => {}
                Wake::Received(_) | Wake::Flush => self.write(&mut buf).await,
                Wake::Maintain => self.maintain().await,
            }
        }
    }

    async fn maintain(&mut self) {
        let now = Utc::now();
        match store::maintain(&self.pool, now, self.retention).await {
            Ok(dropped) => {
                self.ready_through = now.date_naive().succ_opt();
                if dropped > 0 {
                    tracing::info!(
                        partitions = dropped,
                        "pull log: dropped days past retention"
                    );
                }
            }
            Err(e) => {
                self.ready_through = None;
                self.warned
                    .warn(&format!("pull log: cannot prepare partitions: {e}"));
            }
        }
    }

    async fn write(&mut self, buf: &mut Vec<PullRecord>) {
        if buf.is_empty() {
            return;
        }
        let today = Utc::now().date_naive();
        if self.ready_through.is_none_or(|d| d <= today) {
            self.maintain().await;
        }
        let authenticates = self
            .verifier
            .auth
            .authenticates(&self.verifier.forwarder)
            .await
            == Some(true);
        let verified: Vec<bool> = buf
            .iter()
            .map(|r| authenticates && r.identity.is_some() && (200..300).contains(&r.status))
            .collect();
        let n = buf.len() as u64;
        match store::insert(&self.pool, buf, &verified).await {
            Ok(()) => self.metrics.pulls_recorded(n),
            Err(e) => {
                self.metrics.pulls_dropped(n);
                self.warned.warn(&format!(
                    "pull log: records dropped, the database did not take them: {e}"
                ));
            }
        }
        buf.clear();
    }
}
