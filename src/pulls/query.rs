//! The pull log's questions: who pulled a tag in a window and which digests they got,
//! what an identity pulled, when a digest was last pulled. Newest first, paged with an
//! opaque cursor holding the last row's time and id.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::audit::{AuditError, Page, PageRequest, DEFAULT_LIMIT, MAX_LIMIT};
use crate::ledger::{LedgerError, LedgerReader};
use crate::oci::{Digest, Name, Reference};

const PULLS: &str = include_str!("sql/pulls.sql");

/// Which pulls; `None` does not filter.
#[derive(Debug, Clone, Default)]
pub struct PullFilter {
    pub repository: Option<String>,
    /// A tag or a digest, as the client asked for it (needs `repository`).
    pub reference: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub identity: Option<String>,
    /// The digest served.
    pub digest: Option<String>,
}

/// One recorded manifest read: a row of `pull_log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Pull {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub repository: String,
    /// The tag or digest asked for.
    pub reference: String,
    /// The digest served; none when the answer carried none.
    pub digest: Option<String>,
    pub media_type: Option<String>,
    #[schema(value_type = PullMethod)]
    pub method: String,
    // Written from a `u16`, so never negative.
    #[sqlx(try_from = "i16")]
    pub status: u16,
    pub identity: Option<String>,
    /// The upstream authenticates and answered 2xx to the request carrying the identity.
    pub verified: bool,
    pub remote_addr: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

// The methods a pull is recorded for, as `Pull::method` spells them (the column checks
// the same): only the document reads this.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "UPPERCASE")]
#[allow(dead_code)]
pub enum PullMethod {
    Get,
    Head,
}

impl PullFilter {
    /// Check every value against the grammar before it reaches a query.
    fn check(&self) -> Result<(), AuditError> {
        let invalid = |e: crate::oci::reference::ReferenceError| AuditError::Invalid(e.to_string());
        if let Some(r) = &self.repository {
            Name::parse(r).map_err(invalid)?;
        }
        if let Some(r) = &self.reference {
            if self.repository.is_none() {
                return Err(AuditError::Invalid(
                    "reference needs repository: a tag means nothing without its repository".into(),
                ));
            }
            Reference::parse(r).map_err(invalid)?;
        }
        if let Some(d) = &self.digest {
            Digest::parse(d).map_err(invalid)?;
        }
        if let Some(i) = &self.identity {
            if i.is_empty() || i.chars().count() > 256 {
                return Err(AuditError::Invalid(
                    "identity must be 1 to 256 characters".into(),
                ));
            }
        }
        if let (Some(s), Some(u)) = (self.since, self.until) {
            if s >= u {
                return Err(AuditError::Invalid("since must be before until".into()));
            }
        }
        Ok(())
    }
}

/// One page of pulls, newest first.
pub async fn pulls(
    ledger: &LedgerReader,
    filter: &PullFilter,
    page: &PageRequest,
) -> Result<Page<Pull>, AuditError> {
    filter.check()?;
    let limit = match page.limit {
        None => DEFAULT_LIMIT,
        Some(n) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(n) => {
            return Err(AuditError::Invalid(format!(
                "limit {n} is out of range: 1 to {MAX_LIMIT}"
            )))
        }
    };
    let after = match page.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(decode_cursor(c)?),
    };
    let mut items: Vec<Pull> = sqlx::query_as(PULLS)
        .bind(filter.repository.as_deref())
        .bind(filter.reference.as_deref())
        .bind(filter.since)
        .bind(filter.until)
        .bind(filter.identity.as_deref())
        .bind(filter.digest.as_deref())
        .bind(after.map(|(at, _)| at))
        .bind(after.map(|(_, id)| id))
        .bind(i64::from(limit) + 1)
        .fetch_all(ledger.pool())
        .await
        .map_err(LedgerError::from)?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_cursor = more
        .then(|| items.last().map(|p| encode_cursor(p.at, p.id)))
        .flatten();
    Ok(Page { items, next_cursor })
}

const CURSOR_VERSION: &str = "p1";

fn encode_cursor(at: DateTime<Utc>, id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_VERSION}\n{}\n{id}", at.timestamp_micros()))
}

fn decode_cursor(s: &str) -> Result<(DateTime<Utc>, i64), AuditError> {
    let invalid = || AuditError::Invalid(crate::audit::InvalidCursor.to_string());
    if s.len() > 128 {
        return Err(invalid());
    }
    let plain = URL_SAFE_NO_PAD
        .decode(s)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(invalid)?;
    match plain.split('\n').collect::<Vec<_>>().as_slice() {
        [CURSOR_VERSION, micros, id] => {
            let at = micros
                .parse::<i64>()
                .ok()
                .and_then(DateTime::from_timestamp_micros)
                .ok_or_else(invalid)?;
            let id = id
                .parse::<i64>()
                .ok()
                .filter(|i| *i >= 0)
                .ok_or_else(invalid)?;
            Ok((at, id))
        }
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let at = DateTime::from_timestamp_micros(1_780_000_000_123_456).unwrap();
        let c = encode_cursor(at, 42);
        assert_eq!(decode_cursor(&c).unwrap(), (at, 42));
        for bad in [
            "",
            "!!",
            &URL_SAFE_NO_PAD.encode("p1\nx\n1"),
            &URL_SAFE_NO_PAD.encode("1\ne\n5"),
        ] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_are_checked() {
        let f = |repository: Option<&str>, reference: Option<&str>| PullFilter {
            repository: repository.map(str::to_owned),
            reference: reference.map(str::to_owned),
            ..PullFilter::default()
        };
        assert!(f(Some("team/app"), Some("1.0")).check().is_ok());
        assert!(f(None, Some("1.0")).check().is_err());
        assert!(f(Some("Team/App"), None).check().is_err());
        assert!(f(Some("team/app"), Some("sha256:nothex")).check().is_err());
    }
}
