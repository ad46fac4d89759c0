//! The scheduled retention pass (`retention.interval`): off by default, because it
//! deletes from the registry.

use std::time::Duration;

use tokio::task::JoinHandle;

use super::{Outcome, Retention};

/// Who scheduled passes are recorded as.
pub const IDENTITY: &str = "tagwarden:retention";

/// Run a pass every `interval` (the first one interval after startup) until aborted.
/// A failed pass (the ledger down) is logged and tried again next interval.
pub fn spawn(retention: Retention, interval: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            match retention.apply(chrono::Utc::now(), IDENTITY).await {
                Ok(plan) => {
                    let retired = plan
                        .iter()
                        .filter(|p| matches!(p.outcome, Some(Outcome::Retired)))
                        .count();
                    let failed = plan
                        .iter()
                        .filter(|p| matches!(p.outcome, Some(Outcome::Failed(_))))
                        .count();
                    tracing::info!(
                        releases = plan.len(),
                        retired,
                        failed,
                        "retention pass done"
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %crate::oci::error::chain(&e), "retention pass failed; next one in an interval")
                }
            }
        }
    })
}
