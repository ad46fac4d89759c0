//! `tagwarden history|resolve|events|digest`: the audit questions from a terminal,
//! answered from the ledger database (`--database-url`) or a running tagwarden's API
//! (`--api URL` with a token). Readable tables by default, `--json` for scripts.

use std::future::Future;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use chrono::{DateTime, SecondsFormat, Utc};
use clap::Subcommand;
use serde::de::DeserializeOwned;

use crate::audit::filter::{parse_actions, parse_instant};
use crate::audit::{
    export, Audit, DigestUsage, Page, PageRequest, Resolution, TagPeriods, MAX_LIMIT,
};
use crate::ledger::{Action, BindingChange, EventFilter, Ledger, Order, StoredEvent};
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
pub(super) fn split_reference(reference: &str) -> anyhow::Result<(String, String)> {
    let (repo, tag) = reference
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("expected REPOSITORY:TAG, e.g. driftwood/web:1.4"))?;
    Name::parse(repo)?;
    Tag::parse(tag)?;
    Ok((repo.to_owned(), tag.to_owned()))
}

pub(super) fn instant(flag: &str, value: Option<&str>) -> anyhow::Result<Option<DateTime<Utc>>> {
    value
        .map(|v| parse_instant(v, Utc::now()).map_err(|e| anyhow!("{flag}: {e}")))
        .transpose()
}

impl SourceArgs {
    pub(super) fn open(self) -> anyhow::Result<Source> {
        if let Some(url) = self.api {
            let token = self
                .token
                .ok_or_else(|| anyhow!("--api needs a token: --token or TAGWARDEN_API_TOKEN"))?;
            return Ok(Source::Api(ApiClient::new(&url, token)?));
        }
        let url = self.database_url.ok_or_else(|| {
            anyhow!("say where the ledger is: --database-url (or TAGWARDEN_DATABASE_URL), or --api URL with a token")
        })?;
        let ledger =
            Ledger::connect_reader(&url, 2, Duration::from_secs(10), Duration::from_secs(120))?;
        Ok(Source::Ledger(Audit::new(ledger)))
    }
}

/// The ledger itself, or a tagwarden's audit API.
pub(super) enum Source {
    Ledger(Audit),
    Api(ApiClient),
}

impl Source {
    async fn history(
        &self,
        repo: &str,
        tag: &str,
        order: Order,
        page: PageRequest,
    ) -> anyhow::Result<Page<StoredEvent>> {
        match self {
            Source::Ledger(a) => Ok(a.history(repo, tag, order, &page).await?),
            Source::Api(c) => {
                let mut q = vec![
                    ("repository", repo.to_owned()),
                    ("tag", tag.to_owned()),
                    ("order", order_param(order)),
                ];
                page_params(&mut q, &page);
                c.get("history", &q).await
            }
        }
    }

    async fn resolve(
        &self,
        repo: &str,
        tag: &str,
        at: DateTime<Utc>,
    ) -> anyhow::Result<Resolution> {
        match self {
            Source::Ledger(a) => Ok(a.resolve(repo, tag, at).await?),
            Source::Api(c) => {
                let q = [
                    ("repository", repo.to_owned()),
                    ("tag", tag.to_owned()),
                    ("at", rfc3339(at)),
                ];
                c.get("resolve", &q).await
            }
        }
    }

    async fn events(
        &self,
        filter: &EventFilter,
        order: Order,
        page: PageRequest,
    ) -> anyhow::Result<Page<StoredEvent>> {
        match self {
            Source::Ledger(a) => Ok(a.events(filter, order, &page).await?),
            Source::Api(c) => {
                let mut q = vec![("order", order_param(order))];
                if let Some(t) = filter.since {
                    q.push(("since", rfc3339(t)));
                }
                if let Some(t) = filter.until {
                    q.push(("until", rfc3339(t)));
                }
                if let Some(r) = &filter.repository {
                    q.push(("repository", r.clone()));
                }
                if let Some(t) = &filter.tag {
                    q.push(("tag", t.clone()));
                }
                if !filter.actions.is_empty() {
                    let names: Vec<&str> = filter.actions.iter().map(|a| a.as_str()).collect();
                    q.push(("action", names.join(",")));
                }
                if let Some(i) = &filter.identity {
                    q.push(("identity", i.clone()));
                }
                page_params(&mut q, &page);
                c.get("events", &q).await
            }
        }
    }

    async fn digest(&self, digest: &str, page: PageRequest) -> anyhow::Result<Page<TagPeriods>> {
        let usage: DigestUsage = match self {
            Source::Ledger(a) => a.digest(digest, &page).await?,
            Source::Api(c) => {
                let mut q = vec![("digest", digest.to_owned())];
                page_params(&mut q, &page);
                c.get("digest", &q).await?
            }
        };
        Ok(Page {
            items: usage.items,
            next_cursor: usage.next_cursor,
        })
    }
}

fn order_param(order: Order) -> String {
    match order {
        Order::Asc => "asc".into(),
        Order::Desc => "desc".into(),
    }
}

pub(super) fn page_params(q: &mut Vec<(&'static str, String)>, page: &PageRequest) {
    if let Some(limit) = page.limit {
        q.push(("limit", limit.to_string()));
    }
    if let Some(cursor) = &page.cursor {
        q.push(("cursor", cursor.clone()));
    }
}

pub(super) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A client of a tagwarden's audit API.
pub(super) struct ApiClient {
    http: reqwest::Client,
    base: reqwest::Url,
    token: String,
}

impl ApiClient {
    pub(super) fn new(url: &str, token: String) -> anyhow::Result<Self> {
        let base: reqwest::Url = url.parse().with_context(|| format!("--api {url}"))?;
        if !matches!(base.scheme(), "http" | "https") {
            bail!("--api {url}: expected an http:// or https:// URL");
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .context("HTTP client")?;
        Ok(ApiClient { http, base, token })
    }

    pub(super) async fn get<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        query: &[(&str, String)],
    ) -> anyhow::Result<T> {
        let request = self.http.get(self.url(endpoint)?).query(query);
        self.send(request).await
    }

    /// POST a JSON body to an endpoint (the admin operations).
    pub(super) async fn post<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<T> {
        let request = self.http.post(self.url(endpoint)?).json(body);
        self.send(request).await
    }

    fn url(&self, endpoint: &str) -> anyhow::Result<reqwest::Url> {
        self.base
            .join(&format!("{}/{endpoint}", crate::api::PREFIX))
            .context("API URL")
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        let resp = request
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach the API at {}", self.base))?;
        let status = resp.status();
        let body = resp.bytes().await.context("reading the API's answer")?;
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["errors"][0]["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
            bail!("the API answered {status}: {message}");
        }
        serde_json::from_slice(&body).context("the API's answer is not what was expected")
    }
}

/// Fetch pages until `limit` items (0: all) or the last page. Returns the items and
/// whether more were left.
pub(super) async fn collect<T, F, Fut>(limit: u64, fetch: F) -> anyhow::Result<(Vec<T>, bool)>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: Future<Output = anyhow::Result<Page<T>>>,
{
    let mut all = Vec::new();
    let more = for_each_page(limit, fetch, |items: Vec<T>| {
        all.extend(items);
        Ok(())
    })
    .await?;
    Ok((all, more))
}

async fn for_each_page<T, F, Fut, Each>(
    limit: u64,
    mut fetch: F,
    mut each: Each,
) -> anyhow::Result<bool>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: Future<Output = anyhow::Result<Page<T>>>,
    Each: FnMut(Vec<T>) -> anyhow::Result<()>,
{
    let mut left = if limit == 0 { u64::MAX } else { limit };
    let mut cursor = None;
    loop {
        let page_size = left.min(u64::from(MAX_LIMIT)) as u32;
        let page = fetch(PageRequest {
            limit: Some(page_size),
            cursor: cursor.take(),
        })
        .await?;
        left -= page.items.len() as u64;
        each(page.items)?;
        match page.next_cursor {
            Some(next) if left > 0 => cursor = Some(next),
            Some(_) => return Ok(true),
            None => return Ok(false),
        }
    }
}

pub(super) fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Events as JSON, or as `table` renders them: `history` and `events` print alike.
fn print_events(
    events: &[StoredEvent],
    json: bool,
    table: fn(&[StoredEvent]) -> String,
) -> anyhow::Result<()> {
    if json {
        print_json(&events)?;
    } else if events.is_empty() {
        println!("(no events)");
    } else {
        print!("{}", table(events));
    }
    Ok(())
}

pub(super) fn note_more(more: bool, what: &str) {
    if more {
        eprintln!("(more {what}: raise --limit, or --limit 0 for all)");
    }
}

// ---- readable output ----

pub(super) fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub(super) fn or_dash(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}

fn history_table(events: &[StoredEvent]) -> String {
    let mut t = Table::new(&["TIME", "ACTION", "DIGEST", "PREVIOUS", "BY", "REASON"]);
    for e in events {
        t.row(vec![
            time(e.at),
            e.action.to_string(),
            or_dash(&e.digest),
            or_dash(&e.previous_digest),
            or_dash(&e.identity),
            or_dash(&e.reason),
        ]);
    }
    t.render()
}

fn events_table(events: &[StoredEvent]) -> String {
    let mut t = Table::new(&["ID", "TIME", "ACTION", "TAG", "DIGEST", "BY", "REASON"]);
    for e in events {
        let tag = match &e.tag {
            Some(tag) => format!("{}:{tag}", e.repository),
            None => e.repository.clone(),
        };
        t.row(vec![
            e.id.to_string(),
            time(e.at),
            e.action.to_string(),
            tag,
            or_dash(&e.digest),
            or_dash(&e.identity),
            or_dash(&e.reason),
        ]);
    }
    t.render()
}

fn describe_resolution(r: &Resolution) -> String {
    // The instant asked about, to the microsecond it was given with.
    let subject = format!(
        "{}:{} at {}",
        r.repository,
        r.tag,
        r.at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    );
    match (&r.digest, &r.event) {
        (Some(digest), Some(e)) => format!("{subject}: {digest}\n  set by {}\n", event_line(e)),
        (None, Some(e)) => format!(
            "{subject}: did not exist then\n  removed by {}\n",
            event_line(e)
        ),
        _ => format!("{subject}: did not exist then (not yet bound)\n"),
    }
}

/// `<action> (event <id>) at <time>[ by <identity>]`: how a resolution names the event
/// that decided it, whether it set the tag or removed it.
fn event_line(e: &BindingChange) -> String {
    format!(
        "{} (event {}) at {}{}",
        e.action,
        e.id,
        time(e.at),
        e.identity
            .as_deref()
            .map(|i| format!(" by {}", clean(i)))
            .unwrap_or_default(),
    )
}

fn digest_table(tags: &[TagPeriods]) -> String {
    let mut t = Table::new(&["TAG", "CLASS", "FROM", "UNTIL", "ENDED BY"]);
    for tp in tags {
        for p in &tp.periods {
            let ended = match (p.ended_by, &p.replaced_by) {
                (Some(Action::Move), Some(next)) => format!("move to {next}"),
                (Some(a), Some(next)) => format!("{a} to {next}"),
                (Some(a), None) => a.to_string(),
                (None, _) => "-".into(),
            };
            t.row(vec![
                format!("{}:{}", tp.repository, tp.tag),
                or_dash(&tp.class),
                time(p.from),
                p.until.map(time).unwrap_or_else(|| "(still bound)".into()),
                ended,
            ]);
        }
    }
    t.render()
}

/// Plain aligned columns.
pub(super) struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(super) fn new(headers: &[&str]) -> Self {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Cells come from clients (identities, user agents): control characters are
    /// escaped so that nothing can drive the terminal.
    pub(super) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.iter().map(|c| clean(c)).collect());
    }

    pub(super) fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let last = row.len().saturating_sub(1);
            for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
                if i == last {
                    out.push_str(cell);
                } else {
                    out.push_str(&format!("{cell:<w$}  "));
                }
            }
            out.push('\n');
        }
        out
    }
}

fn clean(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_defuse_control_characters() {
        let mut t = Table::new(&["A", "LONGER"]);
        t.row(vec!["wide cell".into(), "x".into()]);
        t.row(vec!["\u{1b}[31mred".into(), "y\n".into()]);
        assert_eq!(
            t.render(),
            "A              LONGER\nwide cell      x\n\\u{1b}[31mred  y\\n\n"
        );
    }

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
