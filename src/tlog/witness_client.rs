//! Posting signed checkpoints to witnesses (C2SP tlog-witness `add-checkpoint`) and
//! keeping the cosignatures they answer with.
//!
//! The integrator hands each new checkpoint over a watch channel and goes on: a slow
//! or dead witness never delays integration or writes. Only the newest checkpoint is
//! kept, so a witness that falls behind skips to it instead of queueing. Each witness
//! gets one request per checkpoint (a second only when it answers 409 with the size it
//! knows), bounded by its timeout and an answer size limit, and its answer counts only
//! if it verifies with the witness's configured key.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use sqlx::PgPool;
use tokio::sync::watch;

use super::cosignature::{self, WitnessKey};
use super::tree::Hashes;
use super::witness::{WitnessConfig, WitnessesConfig};
use super::{store, with_hashes};

/// The largest answer read from a witness.
const MAX_ANSWER: usize = 64 * 1024;

/// A signed checkpoint: `(size, note)`.
pub type Checkpoint = Option<(u64, String)>;

struct Witness {
    key: WitnessKey,
    url: reqwest::Url,
    timeout: Duration,
    /// Failing since the last success: only the first failure of a run is logged.
    failing: AtomicBool,
}

/// Start posting to the configured witnesses; the sender takes each new checkpoint.
/// `None` when there are none.
pub fn spawn(
    config: &WitnessesConfig,
    pool: PgPool,
) -> anyhow::Result<Option<watch::Sender<Checkpoint>>> {
    if config.witness.is_empty() {
        return Ok(None);
    }
    let witnesses = config
        .witness
        .iter()
        .map(Witness::new)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    for w in &witnesses {
        metrics::counter!("tagwarden_tlog_witness_failures_total", "witness" => w.key.name().to_owned())
            .increment(0);
    }
    let (tx, rx) = watch::channel(None);
    let quorum = config.quorum();
    tokio::spawn(run(Arc::new(witnesses), quorum, pool, http, rx));
    Ok(Some(tx))
}

async fn run(
    witnesses: Arc<Vec<Witness>>,
    quorum: usize,
    pool: PgPool,
    http: reqwest::Client,
    mut rx: watch::Receiver<Checkpoint>,
) {
    let mut short = false;
    while rx.changed().await.is_ok() {
        let Some((size, note)) = rx.borrow_and_update().clone() else {
            continue;
        };
        let rounds = witnesses
            .iter()
            .map(|w| w.submit(&pool, &http, size, &note));
        let cosigned = futures_util::future::join_all(rounds)
            .await
            .into_iter()
            .filter(|ok| *ok)
            .count();
        metrics::gauge!("tagwarden_tlog_checkpoint_cosignatures").set(cosigned as f64);
        if cosigned < quorum {
            if !std::mem::replace(&mut short, true) {
                tracing::warn!(
                    size,
                    cosigned,
                    quorum,
                    "transparency log: a checkpoint has fewer witness cosignatures than the quorum"
                );
            }
        } else if std::mem::replace(&mut short, false) {
            tracing::info!(
                size,
                cosigned,
                quorum,
                "transparency log: checkpoints reach the witness quorum again"
            );
        }
    }
}

impl Witness {
    fn new(c: &WitnessConfig) -> anyhow::Result<Self> {
        Ok(Witness {
            key: WitnessKey::parse(&c.key).map_err(anyhow::Error::msg)?,
            url: reqwest::Url::parse(&c.url)?,
            timeout: c.timeout,
            failing: AtomicBool::new(false),
        })
    }

    /// Post the checkpoint and keep the cosignature; whether it cosigned.
    async fn submit(&self, pool: &PgPool, http: &reqwest::Client, size: u64, note: &str) -> bool {
        let outcome = tokio::time::timeout(self.timeout, self.exchange(pool, http, size, note))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {:?}", self.timeout)));
        let name = self.key.name();
        match outcome {
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(
                        witness = name,
                        size,
                        "transparency log: the witness cosigns again"
                    );
                }
                true
            }
            Err(why) => {
                metrics::counter!("tagwarden_tlog_witness_failures_total", "witness" => name.to_owned())
                    .increment(1);
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(witness = name, size, error = %why, "transparency log: the witness did not cosign; later failures are only counted (tagwarden_tlog_witness_failures_total) until it cosigns again");
                } else {
                    tracing::debug!(witness = name, size, error = %why, "transparency log: the witness did not cosign");
                }
                false
            }
        }
    }

    async fn exchange(
        &self,
        pool: &PgPool,
        http: &reqwest::Client,
        size: u64,
        note: &str,
    ) -> Result<(), String> {
        let name = self.key.name();
        let mut conn = pool.acquire().await.map_err(|e| format!("database: {e}"))?;
        let known = store::last_cosigned(&mut conn, name)
            .await
            .map_err(|e| format!("database: {e}"))?
            .filter(|k| *k <= size)
            .unwrap_or(0);
        drop(conn);
        let mut old = known;
        // One retry, when the witness knows another size than this database recorded.
        for attempt in 0..2 {
            let body = self.request(pool, old, size, note).await?;
            let answer = http
                .post(self.url.clone())
                .header("content-type", "text/plain; charset=utf-8")
                .body(body)
                .send()
                .await
                .map_err(|e| e.without_url().to_string())?;
            let status = answer.status();
            let text = read_capped(answer).await?;
            if status == reqwest::StatusCode::CONFLICT && attempt == 0 {
                match text.trim().parse::<u64>() {
                    Ok(theirs) if theirs <= size && theirs != old => {
                        old = theirs;
                        continue;
                    }
                    _ => {
                        return Err(format!(
                            "answered 409: it knows a tree this log cannot extend ({:?})",
                            text.trim().chars().take(40).collect::<String>()
                        ))
                    }
                }
            }
            if !status.is_success() {
                return Err(format!("answered {status}"));
            }
            let c = cosignature::from_answer(note, &text, &self.key)?;
            let mut conn = pool.acquire().await.map_err(|e| format!("database: {e}"))?;
            store::store_cosignature(&mut conn, size, name, c.time, &c.line)
                .await
                .map_err(|e| format!("database: {e}"))?;
            return Ok(());
        }
        Err("answered 409 twice".into())
    }

    /// The `add-checkpoint` body: `old <size>`, the consistency proof from it (one
    /// base64 hash a line), a blank line, the checkpoint note.
    async fn request(
        &self,
        pool: &PgPool,
        old: u64,
        size: u64,
        note: &str,
    ) -> Result<String, String> {
        let proof = if old == 0 || old >= size {
            Vec::new()
        } else {
            let mut conn = pool.acquire().await.map_err(|e| format!("database: {e}"))?;
            let mut cache = Hashes::default();
            with_hashes(&mut conn, &mut cache, |c| {
                tlog_tiles::prove_tree(size, old, c)
            })
            .await
            .map_err(|e| format!("consistency proof from {old}: {e}"))?
        };
        let mut body = format!("old {old}\n");
        for h in proof {
            body.push_str(&base64::engine::general_purpose::STANDARD.encode(h.0));
            body.push('\n');
        }
        body.push('\n');
        body.push_str(note);
        Ok(body)
    }
}

/// A witness's answer as text, at most [`MAX_ANSWER`] bytes.
async fn read_capped(mut answer: reqwest::Response) -> Result<String, String> {
    let mut buf = Vec::new();
    while let Some(chunk) = answer
        .chunk()
        .await
        .map_err(|e| e.without_url().to_string())?
    {
        if buf.len() + chunk.len() > MAX_ANSWER {
            return Err(format!("answered more than {MAX_ANSWER} bytes"));
        }
        buf.extend_from_slice(&chunk);
    }
    String::from_utf8(buf).map_err(|_| "answered with non-UTF-8 text".into())
}
