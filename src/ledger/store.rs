//! Postgres storage for the ledger. Every query is parameterised.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool, Postgres, Row, Transaction};

use futures_util::TryStreamExt as _;

use super::chain::{self, HashedFields, Verifier};
use super::queries::{stored_event, StoredEvent};
use super::{Actor, Binding, NewBinding, NewEvent};

const CHAIN_END: &str = include_str!("sql/chain_end.sql");
const CHAIN_HEADS: &str = include_str!("sql/chain_heads.sql");
const VERIFY_EVENTS: &str = include_str!("sql/verify_events.sql");
const RELEASES: &str = include_str!("sql/releases.sql");
const TAG_HISTORY: &str = include_str!("sql/tag_history.sql");
const LOCK: &str = include_str!("sql/lock.sql");
const BINDING: &str = include_str!("sql/binding.sql");
const BINDINGS_FOR_DIGEST: &str = include_str!("sql/bindings_for_digest.sql");
const RELEASE_TAGS: &str = include_str!("sql/release_tags.sql");
const BIND: &str = include_str!("sql/bind.sql");
const MARK_DELETED: &str = include_str!("sql/mark_deleted.sql");
const APPEND: &str = include_str!("sql/append.sql");
const TAGS_WITH_PREFIX: &str = include_str!("sql/tags_with_prefix.sql");

/// The database could not be reached or refused an operation.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("the tag ledger (Postgres) is unavailable: {0}")]
    Unavailable(String),
    #[error("ledger query failed: {0}")]
    Query(String),
}

impl From<sqlx::Error> for LedgerError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
            if db.code().as_deref() == Some(READ_ONLY_SQL_TRANSACTION) {
                failover::read_only_seen();
            }
        }
        match e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => LedgerError::Unavailable(e.to_string()),
            sqlx::Error::Database(ref db) if db.code().is_some_and(|c| busy_or_gone(&c)) => {
                LedgerError::Unavailable(e.to_string())
            }
            other => LedgerError::Query(other.to_string()),
        }
    }
}

/// SQLSTATEs that say "not now" rather than "this statement is wrong": class 57
/// (operator intervention: shutdown, and 57014, a statement timeout), class 08
/// (connection), 55P03 (lock timeout), 40001 and 40P01 (serialisation failure,
/// deadlock) and 25006 (a read-only server, as after a failover).
fn busy_or_gone(code: &str) -> bool {
    code.starts_with("57")
        || code.starts_with("08")
        || matches!(code, "55P03" | "40001" | "40P01" | "25006")
}

/// SQLSTATE of a write on a read-only server: a standby, or a demoted old primary.
const READ_ONLY_SQL_TRANSACTION: &str = "25006";

/// Leaving a server that turned read-only (a failover) within seconds.
///
/// sqlx connects to one host and keeps its connections: after a failover, pooled ones
/// may still reach the old primary, now a read-only standby, and every write on them
/// fails with 25006. The first such failure is noted here; every connection opened
/// before it is closed when next acquired instead of being handed out, and a new
/// connection is only used if its server accepts writes. The writes in between fail
/// closed (503), as for any unavailable ledger.
mod failover {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    fn epoch() -> Instant {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        *EPOCH.get_or_init(Instant::now)
    }

    /// Nanoseconds after [`epoch`] of the last read-only failure; 0 for none.
    static SEEN: AtomicU64 = AtomicU64::new(0);

    pub(super) fn read_only_seen() {
        let now = epoch().elapsed().as_nanos().max(1) as u64;
        if SEEN.swap(now, Ordering::Relaxed) < now.saturating_sub(1_000_000_000) {
            tracing::warn!("the ledger database refused a write as read-only (a failover?); replacing the pooled connections");
        }
    }

    /// Whether a connection opened `age` ago predates the last read-only failure.
    pub(super) fn predates_read_only(age: Duration) -> bool {
        let seen = SEEN.load(Ordering::Relaxed);
        if seen == 0 {
            return false;
        }
        let since = epoch().elapsed().saturating_sub(Duration::from_nanos(seen));
        age > since
    }
}

/// Whether an error says that the connection it came from is gone (a dropped socket, or
/// the server's own notice that it is closing the session), as opposed to the database
/// being unreachable or refusing the statement.
fn connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("57P") || c.starts_with("08")),
        _ => false,
    }
}

/// How long one statement of the write pool may wait for a lock, and run.
#[derive(Debug, Clone, Copy)]
pub struct StatementBounds {
    pub lock_timeout: Duration,
    pub statement_timeout: Duration,
}

/// A pool of connections to the ledger database.
#[derive(Clone)]
pub struct Ledger {
    pool: PgPool,
}

impl Ledger {
    /// A pool that connects lazily, so tagwarden starts (and serves pulls) while the
    /// database is down; writes fail closed until it returns.
    pub fn connect_lazy(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Result<Self, LedgerError> {
        Self::connect_lazy_bounded(url, max_connections, acquire_timeout, None)
    }

    /// [`Ledger::connect_lazy`], with Postgres `lock_timeout` and `statement_timeout`
    /// on every connection when `bounds` is given: the service's write pool, where a
    /// request waiting on another's tag lock, or a stuck statement, must give its
    /// connection back in seconds. Migrations need a pool without them.
    pub fn connect_lazy_bounded(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
        bounds: Option<StatementBounds>,
    ) -> Result<Self, LedgerError> {
        let mut settings = vec![("idle_in_transaction_session_timeout", "60000".to_owned())];
        if let Some(b) = bounds {
            settings.push(("lock_timeout", b.lock_timeout.as_millis().to_string()));
            settings.push((
                "statement_timeout",
                b.statement_timeout.as_millis().to_string(),
            ));
        }
        let options: PgConnectOptions = url
            .parse::<PgConnectOptions>()
            .map_err(|e| LedgerError::Query(format!("database.url: {e}")))?
            // Statement logging would put binding values in the logs at info level.
            .disable_statement_logging()
            // A transaction left open by a stuck request must not hold tag locks forever.
            .options(settings);
        let writes = bounds.is_some();
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            .idle_timeout(Some(Duration::from_secs(300)))
            // No ping before every write: sqlx already pings a connection when it goes
            // back to the pool, and `begin` replaces one that died while idle.
            .test_before_acquire(false)
            // After a read-only failure (a failover), connections older than it are
            // closed instead of reused, and a new one must reach a writable server.
            // Only for the pools that write: an auditor may verify or explain from a
            // standby.
            .before_acquire(move |_conn, meta| {
                Box::pin(async move { Ok(!(writes && failover::predates_read_only(meta.age))) })
            })
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if !writes {
                        return Ok(());
                    }
                    let read_only: String = sqlx::query_scalar("SHOW transaction_read_only")
                        .fetch_one(&mut *conn)
                        .await?;
                    if read_only == "on" {
                        return Err(sqlx::Error::Protocol(
                            "the ledger database server is read-only (a standby, or an old primary after a failover)".into(),
                        ));
                    }
                    Ok(())
                })
            })
            .connect_lazy_with(options);
        Ok(Ledger { pool })
    }

    pub fn from_pool(pool: PgPool) -> Self {
        Ledger { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Apply pending migrations. Concurrent callers are serialised by sqlx's lock.
    pub async fn migrate(&self) -> Result<(), LedgerError> {
        sqlx::migrate!("./migrations")
            .run(&self.pool)
            .await
            .map_err(|e| match e {
                sqlx::migrate::MigrateError::Execute(inner) => LedgerError::from(inner),
                other => LedgerError::Query(other.to_string()),
            })
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), LedgerError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Open a write transaction. A pooled connection the database closed while it sat
    /// idle (a restart, a failover) fails on `BEGIN`, before anything was done: that
    /// connection is discarded and another one tried, up to once per pooled connection.
    pub async fn begin(&self) -> Result<LedgerTx, LedgerError> {
        let attempts = self.pool.options().get_max_connections() + 1;
        let mut attempt = 1;
        loop {
            match self.pool.begin().await {
                Ok(tx) => return Ok(LedgerTx { tx }),
                Err(e) if attempt < attempts && connection_lost(&e) => {
                    tracing::debug!(error = %e, attempt, "a pooled ledger connection was closed; trying another");
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The current binding of a tag, outside any transaction (for reads and tests).
    pub async fn binding(
        &self,
        repository: &str,
        tag: &str,
    ) -> Result<Option<Binding>, LedgerError> {
        let mut tx = self.begin().await?;
        let b = tx.binding(repository, tag).await?;
        tx.rollback().await?;
        Ok(b)
    }

    /// Recompute every repository's hash chain, streaming the history in id order.
    /// Chains end at migration 0011 (`chain_end`): later events carry no chain hash and
    /// are counted as `logged`, for `tagwarden log verify` to check.
    pub async fn verify_chains(&self) -> Result<Vec<ChainReport>, LedgerError> {
        let chain_end: i64 = sqlx::query_scalar(CHAIN_END).fetch_one(&self.pool).await?;
        let heads: Vec<(String, i64, Vec<u8>)> =
            sqlx::query_as(CHAIN_HEADS).fetch_all(&self.pool).await?;
        let mut heads: std::collections::BTreeMap<String, (i64, Vec<u8>)> =
            heads.into_iter().map(|(r, id, h)| (r, (id, h))).collect();
        let mut reports = Vec::new();
        let mut current: Option<(String, Verifier)> = None;
        let finish =
            |repository: String,
             mut v: Verifier,
             heads: &mut std::collections::BTreeMap<String, (i64, Vec<u8>)>| {
                let head = heads.remove(&repository).filter(|(id, _)| *id != 0);
                v.finish(head.as_ref().map(|(id, h)| (*id, h.as_slice())));
                ChainReport::from_verifier(repository, v)
            };
        let mut rows = sqlx::query(VERIFY_EVENTS).fetch(&self.pool);
        while let Some(r) = rows.try_next().await? {
            let repository: String = r.get("repository");
            if current.as_ref().is_none_or(|(repo, _)| *repo != repository) {
                if let Some((repo, v)) = current.take() {
                    reports.push(finish(repo, v, &mut heads));
                }
                current = Some((repository.clone(), Verifier::default()));
            }
            let (_, v) = current.as_mut().expect("set above");
            if v.broken.is_some() {
                continue;
            }
            let event = stored_event(&r)?;
            let prev_hash: Option<Vec<u8>> = r.get("prev_hash");
            let hash: Option<Vec<u8>> = r.get("hash");
            if hash.is_none() && event.id > chain_end {
                v.logged += 1;
                continue;
            }
            v.next(
                event.id,
                &hashed_fields(&event),
                prev_hash.as_deref(),
                hash.as_deref(),
            );
        }
        if let Some((repo, v)) = current.take() {
            reports.push(finish(repo, v, &mut heads));
        }
        // Heads whose events are all gone.
        for (repository, head) in std::mem::take(&mut heads) {
            if head.0 != 0 {
                let mut v = Verifier::default();
                v.finish(Some((head.0, &head.1)));
                reports.push(ChainReport::from_verifier(repository, v));
            }
        }
        Ok(reports)
    }

    /// A repository's live immutable bindings as `(tag, digest)`: its releases.
    pub async fn releases(&self, repository: &str) -> Result<Vec<(String, String)>, LedgerError> {
        Ok(sqlx::query_as(RELEASES)
            .bind(repository)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Every history event of a tag, oldest first.
    pub async fn tag_history(
        &self,
        repository: &str,
        tag: &str,
    ) -> Result<Vec<StoredEvent>, LedgerError> {
        let rows = sqlx::query(TAG_HISTORY)
            .bind(repository)
            .bind(tag)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(stored_event).collect()
    }
}

/// The result of checking one repository's chain.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChainReport {
    pub repository: String,
    pub checked: u64,
    /// Events written before the chain began (no hash).
    pub unhashed: u64,
    /// Events after the chains ended (migration 0011), covered by the transparency log.
    pub logged: u64,
    /// Hex of the last verified hash: record it elsewhere to anchor the chain.
    pub head: Option<String>,
    pub broken: Option<String>,
}

impl ChainReport {
    fn from_verifier(repository: String, v: Verifier) -> Self {
        ChainReport {
            repository,
            checked: v.checked,
            unhashed: v.unhashed_prefix,
            logged: v.logged,
            head: v.head_hash().map(hex::encode),
            broken: v.broken.as_ref().map(ToString::to_string),
        }
    }
}

/// The fields of a stored event that its hash covers.
fn hashed_fields(e: &StoredEvent) -> HashedFields<'_> {
    HashedFields {
        at: e.at,
        action: e.action.as_str(),
        repository: &e.repository,
        tag: e.tag.as_deref(),
        digest: e.digest.as_deref(),
        previous_digest: e.previous_digest.as_deref(),
        class: e.class.map(crate::policy::TagClass::as_str),
        rule: e.rule.as_deref(),
        reason: e.reason.as_deref(),
        identity: e.identity.as_deref(),
        identity_verified: e.identity_verified,
        remote_addr: e.remote_addr.as_deref(),
        user_agent: e.user_agent.as_deref(),
        request_id: e.request_id.as_deref(),
        detail: e.detail.as_ref(),
    }
}

/// A ledger transaction. Locks taken with [`LedgerTx::lock`] last until commit or
/// rollback, and are released by the database if tagwarden dies, so a crash can never
/// leave a tag blocked.
pub struct LedgerTx {
    pub(super) tx: Transaction<'static, Postgres>,
}

/// The advisory-lock key of a `(repository, tag-or-digest)` pair.
pub(super) fn lock_key(repository: &str, item: &str) -> i64 {
    use sha2::{Digest as _, Sha256};
    let h = Sha256::new()
        .chain_update(repository.as_bytes())
        .chain_update([0u8])
        .chain_update(item.as_bytes())
        .finalize();
    i64::from_be_bytes(h[..8].try_into().expect("8 bytes"))
}

impl LedgerTx {
    /// Take exclusive transaction-scoped locks on the given tags and digests of a
    /// repository, in a fixed order so that concurrent requests cannot deadlock.
    pub async fn lock(&mut self, repository: &str, items: &[&str]) -> Result<(), LedgerError> {
        let mut keys: Vec<i64> = items.iter().map(|i| lock_key(repository, i)).collect();
        keys.sort_unstable();
        keys.dedup();
        // One round trip; the locks are taken one after the other in the array's order.
        // It also asks whether this transaction may write: every write path locks
        // before it forwards anything, so a server that turned read-only (a failover)
        // is found before the registry stores what the ledger could not record.
        let read_only: Vec<String> = sqlx::query_scalar(LOCK)
            .bind(&keys)
            .fetch_all(&mut *self.tx)
            .await?;
        if read_only.iter().any(|r| r == "on") {
            failover::read_only_seen();
            return Err(LedgerError::Unavailable(
                "the ledger database server is read-only (a standby, or an old primary after a failover)".into(),
            ));
        }
        Ok(())
    }

    pub async fn binding(
        &mut self,
        repository: &str,
        tag: &str,
    ) -> Result<Option<Binding>, LedgerError> {
        Ok(sqlx::query_as::<_, Binding>(BINDING)
            .bind(repository)
            .bind(tag)
            .fetch_optional(&mut *self.tx)
            .await?)
    }

    /// Live (not deleted) bindings of a repository that name `digest`.
    pub async fn bindings_for_digest(
        &mut self,
        repository: &str,
        digest: &str,
    ) -> Result<Vec<Binding>, LedgerError> {
        Ok(sqlx::query_as::<_, Binding>(BINDINGS_FOR_DIGEST)
            .bind(repository)
            .bind(digest)
            .fetch_all(&mut *self.tx)
            .await?)
    }

    /// Live immutable tags of a repository bound to `digest`: the releases it is.
    pub async fn release_tags(
        &mut self,
        repository: &str,
        digest: &str,
    ) -> Result<Vec<String>, LedgerError> {
        Ok(sqlx::query_scalar(RELEASE_TAGS)
            .bind(repository)
            .bind(digest)
            .fetch_all(&mut *self.tx)
            .await?)
    }

    /// Insert or replace a tag's binding. `first_bound_at` and `bound_by` are kept when
    /// the digest does not change (an identical re-push or a re-created tag).
    pub async fn bind(&mut self, b: &NewBinding<'_>) -> Result<(), LedgerError> {
        sqlx::query(BIND)
            .bind(b.repository)
            .bind(b.tag)
            .bind(b.digest)
            .bind(b.class.as_str())
            .bind(b.rule)
            .bind(b.bound_by)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Mark a tag as removed from the registry; its row stays for history and, for an
    /// immutable tag, as the reservation of its digest.
    pub async fn mark_deleted(&mut self, repository: &str, tag: &str) -> Result<(), LedgerError> {
        sqlx::query(MARK_DELETED)
            .bind(repository)
            .bind(tag)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Append an event to the history; its id, for the client's receipt. Only an
    /// insert: no row is locked, so writes to one repository do not wait on each other.
    /// The transparency log's integrator gives the event its place in the log once the
    /// transaction has committed (see `crate::tlog`).
    pub async fn append(&mut self, e: &NewEvent<'_>, actor: &Actor) -> Result<i64, LedgerError> {
        Ok(sqlx::query_scalar(APPEND)
            .bind(chain::truncate_to_micros(chrono::Utc::now()))
            .bind(e.action.as_str())
            .bind(e.repository)
            .bind(e.tag)
            .bind(e.digest)
            .bind(e.previous_digest)
            .bind(e.class.map(|c| c.as_str()))
            .bind(e.rule)
            .bind(e.reason)
            .bind(actor.identity.as_deref())
            .bind(actor.verified)
            .bind(actor.remote_addr.as_deref())
            .bind(actor.user_agent.as_deref())
            .bind(actor.request_id.as_deref())
            .bind(e.detail.as_ref())
            .bind(e.policy_hash)
            .fetch_one(&mut *self.tx)
            .await?)
    }

    pub async fn commit(self) -> Result<(), LedgerError> {
        self.tx.commit().await?;
        Ok(())
    }

    pub async fn rollback(self) -> Result<(), LedgerError> {
        self.tx.rollback().await?;
        Ok(())
    }

    /// Up to `limit` tag names of a repository that start with `prefix`, live or
    /// deleted, of any class: names a refusal must not suggest as free.
    pub async fn tags_with_prefix(
        &mut self,
        repository: &str,
        prefix: &str,
        limit: i64,
    ) -> Result<Vec<String>, LedgerError> {
        Ok(sqlx::query_scalar(TAGS_WITH_PREFIX)
            .bind(repository)
            .bind(prefix)
            .bind(limit)
            .fetch_all(&mut *self.tx)
            .await?)
    }
}
