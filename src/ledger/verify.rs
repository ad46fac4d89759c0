//! Checking the hash chains of the history, which end at migration 0011.

use futures_util::TryStreamExt as _;

use super::chain::{HashedFields, Verifier};
use super::queries::StoredEvent;
use super::{LedgerError, LedgerReader};

const CHAIN_END: &str = include_str!("sql/chain_end.sql");
const CHAIN_HEADS: &str = include_str!("sql/chain_heads.sql");
const VERIFY_EVENTS: &str = include_str!("sql/verify_events.sql");

/// An event with the chain hashes stored beside it (none after the chain's end).
#[derive(sqlx::FromRow)]
struct ChainedEvent {
    #[sqlx(flatten)]
    event: StoredEvent,
    prev_hash: Option<Vec<u8>>,
    hash: Option<Vec<u8>>,
}

impl LedgerReader {
    /// Recompute every repository's hash chain, streaming the history in id order.
    /// Chains end at migration 0011 (`chain_end`): later events carry no chain hash and
    /// are counted as `logged`, for `tagwarden log verify` to check.
    pub async fn verify_chains(&self) -> Result<Vec<ChainReport>, LedgerError> {
        let chain_end: i64 = sqlx::query_scalar(CHAIN_END).fetch_one(self.pool()).await?;
        let heads: Vec<(String, i64, Vec<u8>)> =
            sqlx::query_as(CHAIN_HEADS).fetch_all(self.pool()).await?;
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
        let mut rows = sqlx::query_as::<_, ChainedEvent>(VERIFY_EVENTS).fetch(self.pool());
        while let Some(ChainedEvent {
            event,
            prev_hash,
            hash,
        }) = rows.try_next().await?
        {
            let repository = &event.repository;
            if current.as_ref().is_none_or(|(repo, _)| repo != repository) {
                if let Some((repo, v)) = current.take() {
                    reports.push(finish(repo, v, &mut heads));
                }
                current = Some((repository.clone(), Verifier::default()));
            }
            let (_, v) = current.as_mut().expect("set above");
            if v.broken.is_some() {
                continue;
            }
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
