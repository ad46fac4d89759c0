//! `tagwarden history|resolve|events|digest`: the audit questions from a terminal,
//! answered from the ledger database (`--database-url`) or a running tagwarden's API
//! (`--api URL` with a token). Readable tables by default, `--json` for scripts.
//!
//! [`source`] asks the questions of either place, [`api`] is the API's client,
//! [`paging`] follows cursors and [`render`] prints the answers.

mod api;
mod paging;
mod render;
mod source;

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::anyhow;
use chrono::{DateTime, Utc};
use clap::Subcommand;

pub(in crate::cli) use self::api::ApiClient;
pub(in crate::cli) use self::paging::collect;
use self::paging::for_each_page;
use self::render::{describe_resolution, digest_table, events_table, history_table, print_events};
pub(in crate::cli) use self::render::{note_more, or_dash, print_json, time, Table};
use self::source::AuditSource as _;
pub(in crate::cli) use self::source::{page_params, rfc3339, Source};
use crate::audit::export;
use crate::audit::filter::{parse_actions, parse_instant};
use crate::ledger::{EventFilter, Order};
use crate::oci::{Name, Tag};

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Every event of one tag: creates, moves, identical re-pushes, deletes, refusals,
    /// retirements and restores.
    History {
        /// REPOSITORY:TAG, e.g. driftwood/web:1.4
        reference: String,
        #[command(flatten)]
        list: ListArgs,
        #[command(flatten)]
        source: SourceArgs,
        /// JSON (an array of events) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The digest a tag named at an instant, or that it did not exist then. Exits 1 if
    /// it did not.
    Resolve {
        /// REPOSITORY:TAG, e.g. driftwood/web:1.4
        reference: String,
        /// RFC 3339 time (2026-11-01T23:00:00Z) or a duration ago (2h); default now.
        #[arg(long)]
        at: Option<String>,
        #[command(flatten)]
        source: SourceArgs,
        #[arg(long)]
        json: bool,
    },
    /// The event feed, filtered: e.g. `tagwarden events --action refused --since 24h`.
    Events {
        /// Events at or after: RFC 3339 or a duration ago (24h).
        #[arg(long)]
        since: Option<String>,
        /// Events before: RFC 3339 or a duration ago.
        #[arg(long)]
        until: Option<String>,
        /// Only events of this repository, e.g. driftwood/web.
        #[arg(long)]
        repository: Option<String>,
        /// Only events of this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Comma-separated: create, move, repush, delete, refuse (or refused), adopt, warn,
        /// drift, repair, retire, restore.
        #[arg(long)]
        action: Option<String>,
        /// The client identity (Basic user or bearer token subject).
        #[arg(long)]
        identity: Option<String>,
        #[command(flatten)]
        list: ListArgs,
        #[command(flatten)]
        source: SourceArgs,
        /// A JSON array instead of a table.
        #[arg(long, conflicts_with_all = ["jsonl", "csv"])]
        json: bool,
        /// One JSON object per line.
        #[arg(long, conflicts_with = "csv")]
        jsonl: bool,
        /// CSV with a header line.
        #[arg(long)]
        csv: bool,
    },
    /// Every tag of every repository that ever named a digest, with the periods. Exits 1
    /// if none did.
    Digest {
        /// sha256:<64 hex> or sha512:<128 hex>
        digest: String,
        #[command(flatten)]
        source: SourceArgs,
        #[arg(long)]
        json: bool,
    },
}

/// How many events to show, in which order: `history` and `events` list alike.
#[derive(clap::Args)]
pub struct ListArgs {
    /// Newest event first.
    #[arg(long)]
    newest_first: bool,
    /// Show at most this many events (0: all).
    #[arg(long, default_value_t = 100)]
    limit: u64,
}

impl ListArgs {
    fn order(&self) -> Order {
        if self.newest_first {
            Order::Desc
        } else {
            Order::Asc
        }
    }
}

/// Where the answers come from: the database, or a tagwarden's audit API.
#[derive(clap::Args)]
pub struct SourceArgs {
    /// The ledger database, postgres://... (read only).
    #[arg(long, env = "TAGWARDEN_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Ask a tagwarden admin listener instead, e.g. http://127.0.0.1:5001. Wins over
    /// --database-url.
    #[arg(long, value_name = "URL")]
    api: Option<String>,
    /// Bearer token for --api (an [[admin.tokens]] entry).
    #[arg(long, env = "TAGWARDEN_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl AuditCommand {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            AuditCommand::History {
                reference,
                list,
                source,
                json,
            } => {
                let (repo, tag) = split_reference(&reference)?;
                let source = source.open()?;
                let order = list.order();
                let (events, more) =
                    collect(list.limit, |page| source.history(&repo, &tag, order, page)).await?;
                if !json {
                    println!("{repo}:{tag}");
                }
                print_events(&events, json, history_table)?;
                note_more(more, "events");
                Ok(ExitCode::SUCCESS)
            }
            AuditCommand::Resolve {
                reference,
                at,
                source,
                json,
            } => {
                let (repo, tag) = split_reference(&reference)?;
                let at = instant("--at", at.as_deref())?.unwrap_or_else(Utc::now);
                let r = source.open()?.resolve(&repo, &tag, at).await?;
                if json {
                    print_json(&r)?;
                } else {
                    print!("{}", describe_resolution(&r));
                }
                Ok(if r.exists {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                })
            }
            AuditCommand::Events {
                since,
                until,
                repository,
                tag,
                action,
                identity,
                list,
                source,
                json,
                jsonl,
                csv,
            } => {
                let filter = EventFilter {
                    since: instant("--since", since.as_deref())?,
                    until: instant("--until", until.as_deref())?,
                    repository,
                    tag,
                    actions: match action {
                        Some(a) => parse_actions(&a).map_err(|e| anyhow!("--action: {e}"))?,
                        None => Vec::new(),
                    },
                    identity,
                };
                let order = list.order();
                let source = source.open()?;
                let fetch = |page| source.events(&filter, order, page);
                if jsonl || csv {
                    // Streamed page by page: an export may be long.
                    let mut out = std::io::stdout().lock();
                    if csv {
                        out.write_all(export::csv_header().as_bytes())?;
                    }
                    let more = for_each_page(list.limit, fetch, |events| {
                        for e in &events {
                            let line = if csv {
                                export::csv_record(e)
                            } else {
                                export::json_line(e)
                            };
                            out.write_all(line.as_bytes())?;
                        }
                        Ok(())
                    })
                    .await?;
                    out.flush()?;
                    note_more(more, "events");
                } else {
                    let (events, more) = collect(list.limit, fetch).await?;
                    print_events(&events, json, events_table)?;
                    note_more(more, "events");
                }
                Ok(ExitCode::SUCCESS)
            }
            AuditCommand::Digest {
                digest,
                source,
                json,
            } => {
                let source = source.open()?;
                let (tags, _) = collect(0, |page| source.digest(&digest, page)).await?;
                if json {
                    print_json(&serde_json::json!({ "digest": digest, "tags": tags }))?;
                } else if tags.is_empty() {
                    println!("no tag in the ledger ever named {digest}");
                } else {
                    println!("{digest}");
                    print!("{}", digest_table(&tags));
                }
                Ok(if tags.is_empty() {
                    ExitCode::from(1)
                } else {
                    ExitCode::SUCCESS
                })
            }
        }
    }
}

/// `REPOSITORY:TAG`, both checked.
pub(in crate::cli) fn split_reference(reference: &str) -> anyhow::Result<(String, String)> {
    let (repo, tag) = reference
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("expected REPOSITORY:TAG, e.g. driftwood/web:1.4.0"))?;
    Name::parse(repo)?;
    Tag::parse(tag)?;
    Ok((repo.to_owned(), tag.to_owned()))
}

pub(in crate::cli) fn instant(
    flag: &str,
    value: Option<&str>,
) -> anyhow::Result<Option<DateTime<Utc>>> {
    value
        .map(|v| parse_instant(v, Utc::now()).map_err(|e| anyhow!("{flag}: {e}")))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_checked() {
        assert_eq!(
            split_reference("driftwood/web:1.4").unwrap(),
            ("driftwood/web".to_string(), "1.4".to_string())
        );
        for bad in ["driftwood/web", "Driftwood/web:1.4", "a:b/c", "a:"] {
            assert!(split_reference(bad).is_err(), "{bad}");
        }
    }
}
