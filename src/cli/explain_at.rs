//! `tagwarden explain REPO:TAG --at TIME`: the rule that was in force at a past instant,
//! from the ledger's policy history.

use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{audit, block_on, fail};
use crate::config::PolicyConfig;
use crate::ledger::LedgerReader;
use crate::policy::Policy;

pub fn run(reference: &str, at: &str, database_url: &str) -> ExitCode {
    let (repo, tag) = &match audit::split_reference(reference) {
        Ok(parts) => parts,
        Err(e) => return fail(&e.to_string()),
    };
    let at: DateTime<Utc> = match DateTime::parse_from_rfc3339(at) {
        Ok(t) => t.with_timezone(&Utc),
        Err(e) => {
            return fail(&format!(
                "--at {at:?}: not an RFC 3339 time ({e}), e.g. 2026-03-01T12:00:00Z"
            ))
        }
    };
    let (repo, tag, url) = (repo.to_owned(), tag.to_owned(), database_url.to_owned());
    block_on(async move {
        let ledger = LedgerReader::connect_lazy(&url, 1, Duration::from_secs(10))?;
        let Some(stored) = ledger.policy_in_force(at).await? else {
            anyhow::bail!(
                "the ledger's policy history has no policy loaded at or before {at} (it starts when tagwarden with policy history first ran)"
            );
        };
        let policy = Policy::from_config(&PolicyConfig {
            include_defaults: false,
            rules: stored.rules.clone(),
        })
        .ok()
        .filter(|p| p.hash() == stored.hash)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the stored policy {} does not rebuild to its own hash",
                stored.hash
            )
        })?;
        println!(
            "policy in force at {}: {} (loaded {}; first loaded {}, last {})",
            at.to_rfc3339(),
            stored.hash,
            stored.loaded_at.to_rfc3339(),
            stored.first_loaded_at.to_rfc3339(),
            stored.last_loaded_at.to_rfc3339(),
        );
        if let Some(decided) = stored.decided_event_at {
            println!(
                "  (named by the event of {}, decided after the last load this ledger saw)",
                decided.to_rfc3339()
            );
        }
        print!("{}", policy.explain(&repo, &tag));
        Ok(())
    })
}
