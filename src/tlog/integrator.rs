//! The integrator: gives committed events consecutive leaf indices and signs
//! checkpoints. Writers never wait for it.
//!
//! One tagwarden at a time integrates: it holds a session advisory lock on a connection
//! of its own, and does all its work on that connection, so when the connection dies the
//! lock goes with it and another replica takes over. A batch (leaves, stored hashes,
//! tiles) is one transaction, so a process killed mid-batch leaves no gap: the next
//! leader starts from the last stored leaf.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};
use tlog_tiles::{Hash, Tile};

use super::anchor::{self, Gate, StateFile};
use super::note::Signer;
use super::tree::{Hashes, TILE_HEIGHT};
use super::{leaf, root_at, store, with_hashes, LogError};
use crate::config::Config;
use crate::ledger::Ledger;
use crate::ledger::StatementBounds;

pub struct Integrator {
    pool: PgPool,
    signer: Arc<Signer>,
    state: StateFile,
    gate: Gate,
    interval: Duration,
    batch: i64,
    /// Where each new checkpoint goes to the witnesses, if any are configured.
    witnesses: Option<tokio::sync::watch::Sender<super::witness_client::Checkpoint>>,
}

/// How a leader's session ended.
enum End {
    /// The database failed: reconnect and try to lead again.
    Retry(LogError),
    /// The log is not anchored: stop integrating for good (writes are refused).
    Refused,
}

impl Integrator {
    pub fn new(config: &Config, signer: Arc<Signer>, gate: Gate) -> anyhow::Result<Self> {
        let state = config
            .tlog
            .state_file
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("tlog.state_file is required with a signing key"))?;
        // The integrator's own connection and the witnesses' pool, with the same bounds.
        let bounded = |max_connections| {
            Ledger::connect_lazy_bounded(
                config.database.url.expose(),
                max_connections,
                config.database.acquire_timeout,
                Some(StatementBounds {
                    lock_timeout: Duration::from_secs(5),
                    statement_timeout: Duration::from_secs(30),
                }),
            )
            .map(|ledger| ledger.pool().clone())
        };
        let pool = bounded(1)?;
        let witness_pool = bounded(2)?;
        Ok(Integrator {
            witnesses: super::witness_client::spawn(&config.tlog.witnesses, witness_pool)?,
            pool,
            signer,
            state: StateFile::new(state),
            gate,
            interval: config.tlog.checkpoint_interval,
            batch: i64::from(config.tlog.batch),
        })
    }

    /// Run until the process ends, or until the log is found not anchored.
    pub async fn run(self) {
        loop {
            match self.session().await {
                End::Refused => return,
                End::Retry(e) => {
                    tracing::warn!(error = %crate::oci::error::chain(&e), "transparency log: integrator session ended; retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    }

    async fn session(&self) -> End {
        let mut conn = match self.pool.acquire().await {
            Ok(c) => c,
            Err(e) => return End::Retry(e.into()),
        };
        let end = self.lead(&mut conn).await;
        // The election lock goes with the connection: never hand it back to the pool.
        drop(conn.detach());
        end
    }

    async fn lead(&self, conn: &mut PoolConnection<Postgres>) -> End {
        loop {
            match store::try_lead(conn).await {
                Ok(true) => break,
                Ok(false) => {
                    tokio::time::sleep(self.interval.max(Duration::from_millis(500))).await
                }
                Err(e) => return End::Retry(e.into()),
            }
        }
        tracing::info!("transparency log: this process integrates");
        if let Err(end) = self.anchored(conn).await {
            return end;
        }
        let tick = (self.interval / 4).clamp(Duration::from_millis(20), Duration::from_millis(250));
        let mut last_signed: Option<Instant> = None;
        loop {
            loop {
                match self.integrate(conn).await {
                    Ok(n) if n < self.batch as usize => break,
                    Ok(_) => continue,
                    Err(e) => return End::Retry(e),
                }
            }
            if last_signed.is_none_or(|t| t.elapsed() >= self.interval) {
                if let Err(end) = self.sign(conn).await {
                    return end;
                }
                last_signed = Some(Instant::now());
            }
            tokio::time::sleep(tick).await;
        }
    }

    /// Refuse (and stop) unless the database's log extends the state file's checkpoint.
    async fn anchored(&self, conn: &mut PoolConnection<Postgres>) -> Result<(), End> {
        let anchor = match self.state.read() {
            Ok(Some(a)) => a,
            Ok(None) => return Ok(()),
            Err(e) => {
                self.gate.refuse(e);
                return Err(End::Refused);
            }
        };
        match anchor::check(conn, &anchor).await {
            Ok(()) => Ok(()),
            Err(LogError::Refused(why)) => {
                self.gate.refuse(why);
                Err(End::Refused)
            }
            Err(e) => Err(End::Retry(e)),
        }
    }

    /// Integrate one batch; the number of events it took.
    async fn integrate(&self, conn: &mut PoolConnection<Postgres>) -> Result<usize, LogError> {
        let size = store::tree_size(conn).await?;
        let after = store::last_position(conn).await?.unwrap_or((0, 0));
        let rows = store::pending(conn, after, self.batch).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut cache = Hashes::default();
        let mut leaves = Vec::with_capacity(rows.len());
        let mut hashes: Vec<(u64, Hash)> = Vec::with_capacity(rows.len() * 2);
        for (i, row) in rows.iter().enumerate() {
            let n = size + i as u64;
            let record = tlog_tiles::record_hash(&leaf::encode(&row.event));
            let new = with_hashes(conn, &mut cache, |c| {
                tlog_tiles::stored_hashes_for_record_hash(n, record, c)
            })
            .await?;
            let first = tlog_tiles::stored_hash_index(0, n);
            for (k, h) in new.into_iter().enumerate() {
                cache.insert(first + k as u64, h);
                hashes.push((first + k as u64, h));
            }
            leaves.push((row.event.id, row.txid, record));
        }
        let new_size = size + rows.len() as u64;
        let mut tiles = Vec::new();
        for t in Tile::new_tiles(TILE_HEIGHT, size, new_size) {
            let data = with_hashes(conn, &mut cache, |c| t.read_data(c)).await?;
            tiles.push((t, data));
        }
        store::append(conn, size, &leaves, &hashes, &tiles).await?;
        Ok(rows.len())
    }

    /// Sign a checkpoint of the current tree, unless the newest one already covers it.
    async fn sign(&self, conn: &mut PoolConnection<Postgres>) -> Result<(), End> {
        let size = store::tree_size(conn)
            .await
            .map_err(|e| End::Retry(e.into()))?;
        let latest = store::latest_checkpoint(conn)
            .await
            .map_err(|e| End::Retry(e.into()))?;
        if latest.as_ref().is_some_and(|(s, _)| *s >= size) {
            return Ok(());
        }
        self.anchored(conn).await?;
        let root = root_at(conn, size).await.map_err(End::Retry)?;
        let note = match self.signer.sign(size, root) {
            Ok(n) => n,
            Err(e) => {
                self.gate
                    .refuse(format!("the transparency log cannot sign: {e}"));
                return Err(End::Refused);
            }
        };
        // The state file first: a checkpoint that exists anywhere is anchored.
        if let Err(e) = self.state.write(&note) {
            self.gate.refuse(e);
            return Err(End::Refused);
        }
        store::store_checkpoint(conn, size, root, &note)
            .await
            .map_err(|e| End::Retry(e.into()))?;
        tracing::debug!(size, "transparency log: signed a checkpoint");
        if let Some(w) = &self.witnesses {
            w.send_replace(Some((size, note.clone())));
        }
        Ok(())
    }
}

/// Start the log for `serve`: load the key, check the anchor once, and run the
/// integrator in the background. False (with a warning) when no key is configured:
/// events are then recorded as always but not sequenced or signed.
pub async fn start(config: &Config, ledger: &Ledger, gate: &Gate) -> anyhow::Result<bool> {
    let Some(key_file) = &config.tlog.signing_key_file else {
        tracing::warn!("no tlog.signing_key_file: the transparency log is off; events are recorded but not sequenced or signed");
        return Ok(false);
    };
    warn_if_readable(key_file);
    let signer = Arc::new(
        Signer::from_file(key_file, config.tlog.origin.as_deref()).map_err(anyhow::Error::msg)?,
    );
    let integrator = Integrator::new(config, signer, gate.clone())?;
    // Before serving: a database whose log no longer extends the last checkpoint this
    // tagwarden signed gets no writes. If the database is down, writes fail anyway and
    // the integrator checks again before it integrates or signs anything.
    match integrator.state.read() {
        Err(e) => gate.refuse(e),
        Ok(None) => {}
        Ok(Some(anchor)) => match ledger.pool().acquire().await {
            Ok(mut conn) => match anchor::check(&mut conn, &anchor).await {
                Ok(()) => {}
                Err(LogError::Refused(why)) => gate.refuse(why),
                Err(e) => {
                    tracing::warn!(error = %crate::oci::error::chain(&e), "transparency log: anchor not checked at startup")
                }
            },
            Err(e) => {
                tracing::warn!(error = %crate::oci::error::chain(&e), "transparency log: anchor not checked at startup")
            }
        },
    }
    tracing::info!(origin = integrator.signer.origin(), "transparency log on");
    tokio::spawn(integrator.run());
    Ok(true)
}

/// The key file should be readable by its owner only.
fn warn_if_readable(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(m) = std::fs::metadata(path) {
        if m.permissions().mode() & 0o077 != 0 {
            tracing::warn!(file = %path.display(), "tlog.signing_key_file is readable by others than its owner; chmod 600 it");
        }
    }
}
