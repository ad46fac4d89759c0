//! Opening a write transaction in one round trip: its locks and, for a manifest write,
//! the announcement of its pending writes and the reads its decision starts from.
//!
//! Everything before a manifest is forwarded waits on these, and every round trip costs
//! a push CPU on both sides (on a machine where CPU is the limit, that is the rate).
//! So they go in one simple query, which runs its statements in order and stops at the
//! first that fails:
//!
//! ```sql
//! BEGIN; SELECT * FROM pending_writes_announce('team/app', ARRAY['1.4.0']); COMMIT;
//! SELECT pg_advisory_xact_lock(…), …;
//! BEGIN;
//! SELECT * FROM binding_unseen('team/app', '1.4.0', true);
//! ```
//!
//! - The announcement commits first, on its own: it must be visible to every other
//!   write before anything reaches the registry, not before the locks are held (see
//!   `super::pending`).
//! - A server that only reads refuses it, before any lock is taken. A write that
//!   announces nothing starts with a statement refused the same way instead
//!   (`writable_check.sql`): a read-only server fails the write as an outage, holding
//!   nothing.
//! - The locks are taken in the implicit transaction that the second `BEGIN` turns into
//!   the write's own, as `begin_locked.sql` explains.
//! - Each read is a statement of its own after the locks, so its snapshot is taken once
//!   they are granted and it sees what their previous holder committed.
//! - A simple query takes no parameters: the repository and tags are written in as
//!   literals, which is safe only because they are names of the OCI grammar (checked
//!   again here, see [`literal`]). The two statements are functions (migrations 0018
//!   and 0019) so that Postgres keeps their plans instead of planning them on every
//!   write.

use futures_util::TryStreamExt;
use sqlx::postgres::PgRow;
use sqlx::{Either, Executor as _, Row};

use super::error::connection_lost;
use super::references::shared_reference_keys;
use super::tx::exclusive_keys;
use super::{Announcement, Ledger, LedgerError, LedgerTx, Unseen};

const BEGIN_LOCKED: &str = include_str!("sql/begin_locked.sql");
const WRITABLE_CHECK: &str = include_str!("sql/writable_check.sql");

/// A write transaction as [`Ledger::begin_write`] opened it.
pub struct Opened {
    pub tx: LedgerTx,
    /// Each announcement, for `Ledger::forget`.
    pub announced: Vec<Announcement>,
    /// What was read of each tag asked for, in the order asked.
    pub read: Vec<Unseen>,
}

/// A write transaction that did not open, and the announcements that may have been
/// committed before it failed: the caller withdraws them (nothing was forwarded).
pub struct Unopened {
    pub error: LedgerError,
    pub announced: Vec<Announcement>,
}

impl Ledger {
    /// Open a write transaction holding exclusive locks on `items` (tags and digests)
    /// of `repository` and shared locks on what it references (`shared`, see
    /// `LedgerTx::lock_references_shared`), having first committed an announcement of
    /// each of `announce` (see `super::pending`), and read each of `read` once the
    /// locks are held (see [`Unseen`]); one round trip.
    ///
    /// A server that only reads fails it before any lock is taken (the announcement's
    /// insert, or without one `writable_check.sql`, is refused in a read-only
    /// transaction).
    pub async fn begin_write(
        &self,
        repository: &str,
        items: &[&str],
        shared: &[&str],
        announce: &[&str],
        read: &[&str],
    ) -> Result<Opened, Unopened> {
        let asked = read.len();
        let statement =
            write_statement(repository, items, shared, announce, read).map_err(|error| {
                Unopened {
                    error,
                    announced: Vec::new(),
                }
            })?;
        let (tx, rows) = match self.open(&statement).await {
            Ok(opened) => opened,
            Err((error, rows)) => {
                return Err(Unopened {
                    error,
                    announced: announced(&rows).unwrap_or_default(),
                })
            }
        };
        let announced = announced(&rows).map_err(|e| Unopened {
            error: e.into(),
            announced: Vec::new(),
        })?;
        let read = rows
            .iter()
            .filter(|r| r.try_column("pending").is_ok())
            .map(Unseen::from_row)
            .collect::<Result<Vec<_>, _>>();
        let error = match read {
            Ok(read) if read.len() == asked => {
                return Ok(Opened {
                    tx,
                    announced,
                    read,
                })
            }
            Ok(_) => {
                LedgerError::Query("a read of the write's opening statement returned no row".into())
            }
            Err(e) => e.into(),
        };
        Err(Unopened { error, announced })
    }

    /// [`Ledger::begin_write`] with nothing to announce or read.
    pub async fn begin_locked(
        &self,
        repository: &str,
        items: &[&str],
        shared_references: &[&str],
    ) -> Result<LedgerTx, LedgerError> {
        self.begin_write(repository, items, shared_references, &[], &[])
            .await
            .map(|o| o.tx)
            .map_err(|u| u.error)
    }

    /// Open a transaction with `statement` (`BEGIN`, or more that leaves one open), and
    /// the rows its statements returned; on failure, the rows returned before it. A
    /// pooled connection the database closed while it sat idle (a restart, a failover)
    /// fails on the first statement, before anything was done: that connection is
    /// discarded and another one tried, up to once per pooled connection.
    pub(super) async fn open(
        &self,
        statement: &str,
    ) -> Result<(LedgerTx, Vec<PgRow>), (LedgerError, Vec<PgRow>)> {
        let attempts = self.pool().options().get_max_connections() + 1;
        let mut attempt = 1;
        loop {
            let conn = self
                .pool()
                .acquire()
                .await
                .map_err(|e| (LedgerError::from(e), Vec::new()))?;
            let mut tx = LedgerTx::opening(conn);
            let mut rows = Vec::new();
            let sent = {
                // The executor's own (boxed) stream: `RawSql`'s methods are generic
                // `async fn`s whose futures the compiler cannot prove `Send` here.
                let mut results = (&mut *tx.tx).fetch_many(sqlx::raw_sql(statement));
                loop {
                    match results.try_next().await {
                        Ok(Some(Either::Right(row))) => rows.push(row),
                        Ok(Some(Either::Left(_))) => {}
                        Ok(None) => break Ok(()),
                        Err(e) => break Err(e),
                    }
                }
            };
            match sent {
                Ok(()) => return Ok((tx, rows)),
                Err(e) if rows.is_empty() && attempt < attempts && connection_lost(&e) => {
                    tracing::debug!(error = %e, attempt, "a pooled ledger connection was closed; trying another");
                    attempt += 1;
                }
                Err(e) => return Err((e.into(), rows)),
            }
        }
    }
}

/// The announcements among `rows`.
fn announced(rows: &[PgRow]) -> Result<Vec<Announcement>, sqlx::Error> {
    rows.iter()
        .filter(|r| r.try_column("announced_id").is_ok())
        .map(|r| {
            Ok(Announcement {
                id: r.try_get("announced_id")?,
                tag: r.try_get("announced_tag")?,
                at: r.try_get("announced_at")?,
            })
        })
        .collect()
}

/// The simple query of [`Ledger::begin_write`].
fn write_statement(
    repository: &str,
    items: &[&str],
    shared: &[&str],
    announce: &[&str],
    read: &[&str],
) -> Result<String, LedgerError> {
    let exclusive = exclusive_keys(repository, items)
        .into_iter()
        .map(|k| format!("pg_advisory_xact_lock({k})"));
    let shared = shared_reference_keys(repository, shared)
        .into_iter()
        .map(|k| format!("pg_advisory_xact_lock_shared({k})"));
    let locks: Vec<String> = exclusive.chain(shared).collect();
    let repo = literal(repository)?;
    let mut statement = String::new();
    if !announce.is_empty() {
        let tags = announce
            .iter()
            .map(|t| literal(t))
            .collect::<Result<Vec<_>, _>>()?;
        statement.push_str(&format!(
            "BEGIN;\nSELECT * FROM pending_writes_announce({repo}, ARRAY[{}]::text[]);\nCOMMIT;\n",
            tags.join(", ")
        ));
    } else {
        statement.push_str(WRITABLE_CHECK);
    }
    statement.push_str(&BEGIN_LOCKED.replace("LOCK_CALLS", &locks.join(", ")));
    for tag in read {
        statement.push_str(&format!(
            ";\nSELECT * FROM binding_unseen({repo}, {}, {})",
            literal(tag)?,
            announce.contains(tag)
        ));
    }
    Ok(statement)
}

/// `s` as a SQL string literal, for a repository name or tag only: characters of the
/// OCI name and tag grammars (`[A-Za-z0-9._/-]`), which need no escaping under any
/// server setting. Anything else is refused, never quoted: the parsers let nothing
/// else through, so reaching this would be a bug, and the write fails closed.
fn literal(s: &str) -> Result<String, LedgerError> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-');
    if s.is_empty() || !s.chars().all(plain) {
        return Err(LedgerError::Query(format!(
            "{s:?} is not a repository name or tag and cannot be written into a statement"
        )));
    }
    Ok(format!("'{s}'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_of_the_oci_grammar_are_written_in_as_literals() {
        assert_eq!(literal("team/app").unwrap(), "'team/app'");
        assert_eq!(literal("v1.4.0-rc_1").unwrap(), "'v1.4.0-rc_1'");
        for hostile in [
            "",
            "a'b",
            "a\\b",
            "a b",
            "a;b",
            "a\0b",
            "é",
            "$$",
            "a'); DROP",
        ] {
            assert!(literal(hostile).is_err(), "{hostile:?}");
        }
    }

    #[test]
    fn the_announcement_commits_before_the_locks_and_each_read_follows_them() {
        let s = write_statement(
            "team/app",
            &["1.4.0", "sha256:ab"],
            &[],
            &["1.4.0"],
            &["1.4.0"],
        )
        .unwrap();
        let announce = s
            .find("pending_writes_announce('team/app', ARRAY['1.4.0']")
            .unwrap();
        let commit = s.find("COMMIT;").unwrap();
        let locks = s.find("pg_advisory_xact_lock(").unwrap();
        let begin = s.rfind("BEGIN").unwrap();
        let read = s.find("binding_unseen('team/app', '1.4.0', true)").unwrap();
        assert!(
            announce < commit && commit < locks && locks < begin && begin < read,
            "{s}"
        );
        // The announcement's insert is the read-only server's refusal; without one, the
        // check comes first.
        assert!(!s.contains("FOR UPDATE"), "{s}");
        let unannounced = write_statement("team/app", &["1"], &[], &[], &["1"]).unwrap();
        assert!(!unannounced.contains("announce"), "{unannounced}");
        let check = unannounced.find("FOR UPDATE").unwrap();
        assert!(
            check < unannounced.find("pg_advisory_xact_lock(").unwrap(),
            "{unannounced}"
        );
        assert!(
            unannounced.contains("binding_unseen('team/app', '1', false)"),
            "{unannounced}"
        );
        assert!(write_statement("team/app", &["1"], &[], &["x'"], &[]).is_err());
    }
}
