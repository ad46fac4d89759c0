//! One webhook's delivery loop: read past the cursor, post in order, advance on 2xx.

use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};

use super::event::{self, CloudEvent as _};
use super::sign;
use super::store::{self, Position};
use crate::config::{Config, StartFrom, WebhookConfig};
use crate::ledger::Ledger;
use crate::ledger::StatementBounds;
use crate::ledger::StoredEvent;
use crate::telemetry::Metrics;

/// How often an idle sender looks for new events.
const POLL: Duration = Duration::from_secs(1);
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(300);
/// The queued gauge counts up to this many events.
const BACKLOG_CAP: i64 = 100_000;

pub struct Sender {
    name: String,
    url: reqwest::Url,
    secret: crate::config::Secret,
    actions: Vec<String>,
    from: StartFrom,
    source: String,
    batch: u32,
    max_body: usize,
    pool: PgPool,
    http: reqwest::Client,
    metrics: Metrics,
}

/// Why a session ended: the database failed; reconnect and resume from the cursor.
struct Stop(sqlx::Error);

impl Sender {
    pub fn new(config: &Config, webhook: &WebhookConfig, metrics: Metrics) -> anyhow::Result<Self> {
        let pool = Ledger::connect_lazy_bounded(
            config.database.url.expose(),
            2,
            config.database.acquire_timeout,
            Some(StatementBounds {
                lock_timeout: Duration::from_secs(5),
                statement_timeout: Duration::from_secs(10),
            }),
        )?
        .pool()
        .clone();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            // A redirect would send the signed body somewhere not configured.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tagwarden/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Sender {
            name: {
                let name = webhook.name();
                metrics.notify_register(&name);
                name
            },
            url: reqwest::Url::parse(&webhook.url)?,
            secret: webhook.secret.clone(),
            actions: webhook.events.clone(),
            from: webhook.from,
            source: config.notify.source.clone(),
            batch: config.notify.batch,
            max_body: config.notify.max_body_bytes,
            pool,
            http,
            metrics,
        })
    }

    /// Run until the process ends. Never returns an error: database and receiver
    /// failures are retried with backoff.
    pub async fn run(self) {
        loop {
            let Stop(e) = self.session().await;
            tracing::warn!(webhook = %self.name, error = %crate::oci::error::chain(&e), "notify: database unavailable; retrying");
            tokio::time::sleep(jitter(Duration::from_secs(2))).await;
        }
    }

    /// One connection's life: take the webhook's lock, then deliver until something fails.
    async fn session(&self) -> Stop {
        let mut conn = match self.pool.acquire().await {
            Ok(c) => c,
            Err(e) => return Stop(e),
        };
        let stop = self.deliver(&mut conn).await;
        // The session lock goes with the connection: never hand it back to the pool.
        drop(conn.detach());
        stop
    }

    async fn deliver(&self, conn: &mut PoolConnection<Postgres>) -> Stop {
        loop {
            match store::try_lock(conn, &self.name).await {
                Ok(true) => break,
                Ok(false) => tokio::time::sleep(POLL * 5).await,
                Err(e) => return Stop(e),
            }
        }
        let mut cursor = match store::cursor(conn, &self.name, self.from).await {
            Ok(c) => c,
            Err(e) => return Stop(e),
        };
        loop {
            if let Err(e) = self.report_backlog(conn, cursor).await {
                return Stop(e);
            }
            let rows = match store::batch(conn, cursor, self.batch).await {
                Ok(rows) => rows,
                Err(e) => return Stop(e),
            };
            let full = rows.len() == self.batch as usize;
            let mut skipped = None;
            for row in rows {
                if !self.actions.iter().any(|a| a == row.event.action.as_str()) {
                    skipped = Some(row.position);
                    continue;
                }
                // A failing event holds back the later ones: in order, or not at all.
                let mut delay = FIRST_RETRY;
                while let Err(e) = self.post(&row.event).await {
                    self.metrics.notify_failed(&self.name);
                    tracing::warn!(webhook = %self.name, error = %e, retry_in = ?delay, "notify: delivery failed");
                    if let Some(p) = skipped.take() {
                        if let Err(e) = store::advance(conn, &self.name, p).await {
                            return Stop(e);
                        }
                    }
                    // The backlog keeps growing while the receiver is down: show it.
                    if let Err(e) = self.report_backlog(conn, cursor).await {
                        return Stop(e);
                    }
                    tokio::time::sleep(jitter(delay)).await;
                    delay = (delay * 2).min(MAX_RETRY);
                }
                self.metrics.notify_sent(&self.name);
                skipped = None;
                cursor = row.position;
                if let Err(e) = store::advance(conn, &self.name, cursor).await {
                    return Stop(e);
                }
            }
            if let Some(p) = skipped {
                cursor = p;
                if let Err(e) = store::advance(conn, &self.name, cursor).await {
                    return Stop(e);
                }
            }
            if !full {
                tokio::time::sleep(POLL).await;
            }
        }
    }

    async fn report_backlog(
        &self,
        conn: &mut PoolConnection<Postgres>,
        cursor: Position,
    ) -> sqlx::Result<()> {
        let (queued, oldest) = store::backlog(conn, cursor, &self.actions, BACKLOG_CAP).await?;
        let age = oldest
            .map(|t| (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
            .unwrap_or(0.0);
        self.metrics.notify_backlog(&self.name, queued as f64, age);
        Ok(())
    }

    /// POST one event; `Err` unless the receiver answered 2xx.
    async fn post(&self, event: &StoredEvent) -> Result<(), String> {
        let body = event.encode(&self.source, self.max_body);
        let now = chrono::Utc::now().timestamp();
        let signature = sign::signature(self.secret.expose().as_bytes(), now, &body);
        let resp = self
            .http
            .post(self.url.clone())
            .header(http::header::CONTENT_TYPE, event::CONTENT_TYPE)
            .header(sign::HEADER, signature)
            .body(body)
            .send()
            .await
            // Without the URL: its query may carry a token.
            .map_err(|e| format!("{} {}", event.cloud_id(), e.without_url()))?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("{} answered {status}", event.cloud_id()))
        }
    }
}

/// Between half and all of `d`, so that senders failing together do not retry together.
fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 2];
    let r = getrandom::getrandom(&mut b)
        .map(|_| u16::from_le_bytes(b))
        .unwrap_or(u16::MAX);
    d.mul_f64(0.5 + 0.5 * f64::from(r) / f64::from(u16::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_to_whole() {
        for _ in 0..100 {
            let j = jitter(Duration::from_secs(4));
            assert!(
                j >= Duration::from_secs(2) && j <= Duration::from_secs(4),
                "{j:?}"
            );
        }
    }
}
