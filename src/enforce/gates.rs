//! Reading what the promotion gates of a tag are checked against (the rules are in
//! [`crate::policy::promote`], the decision in [`super::plan::gates`]), for a write, a
//! rewind and `tagwarden explain`.

use chrono::Utc;

use super::plan::{self, PromotionFacts, Verdict};
use crate::ledger::{Ledger, LedgerError, LedgerTx};
use crate::policy::promote::{self, Promotion, Source};
use crate::policy::Decision;

/// The histories of `promotion`'s source tags over its window (or what they name now),
/// and whether `target` is a live release of `repo`.
pub(super) async fn read(
    tx: &mut LedgerTx,
    repo: &str,
    promotion: &Promotion,
    target: &str,
) -> Result<PromotionFacts, LedgerError> {
    let now = Utc::now();
    let since = promotion
        .window
        .and_then(|w| chrono::Duration::from_std(w).ok())
        .and_then(|w| now.checked_sub_signed(w))
        .unwrap_or(now);
    let mut sources = Vec::with_capacity(promotion.from.len());
    for tag in &promotion.from {
        let changes = tx.tag_changes(repo, tag, since).await?;
        sources.push(Source {
            tag: tag.clone(),
            spans: promote::spans(&changes),
        });
    }
    let target_is_release = if promotion.require_release {
        !tx.release_tags(repo, target).await?.is_empty()
    } else {
        false
    };
    Ok(PromotionFacts {
        now,
        sources,
        target_is_release,
    })
}

/// For `tagwarden explain`: the gates of a tag, and whether what each source names now
/// would pass them now.
pub async fn outlook(
    ledger: &Ledger,
    repo: &str,
    tag: &str,
    decision: &Decision,
) -> Result<String, LedgerError> {
    let Some(promotion) = &decision.promotion else {
        return Ok(String::new());
    };
    let mut tx = ledger.begin().await?;
    let mut out = String::new();
    let mut seen = Vec::new();
    let probe = read(&mut tx, repo, promotion, "").await?;
    for source in &probe.sources {
        let Some(now) = source.now() else {
            out += &format!("  {}: names nothing now\n", source.tag);
            continue;
        };
        if seen.contains(&now.digest) {
            continue;
        }
        seen.push(now.digest.clone());
        let facts = read(&mut tx, repo, promotion, &now.digest).await?;
        let current = tx
            .binding(repo, tag)
            .await?
            .filter(|b| b.deleted_at.is_none())
            .map(|b| b.digest);
        let verdict = plan::gates(
            repo,
            tag,
            decision,
            current.as_deref(),
            &now.digest,
            Some(&facts),
            false,
        );
        out += &format!(
            "  {}: names {} since {}\n",
            source.tag,
            now.digest,
            now.from.format("%Y-%m-%dT%H:%M:%SZ")
        );
        out += &match verdict {
            None => format!("  now:     {tag} may be promoted to it\n"),
            Some(Verdict::Violation { error, .. }) => {
                format!("  now:     refused: {}\n", error.message)
            }
            Some(_) => String::new(),
        };
    }
    let _ = tx.rollback().await;
    Ok(out)
}
