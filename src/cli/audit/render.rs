//! The audit answers as a person reads them: aligned tables with control characters
//! defused, or pretty JSON.

use std::io::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::audit::{Resolution, TagPeriods};
use crate::ledger::{Action, BindingChange, StoredEvent};

pub(in crate::cli) fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Events as JSON, or as `table` renders them: `history` and `events` print alike.
pub(super) fn print_events(
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

pub(in crate::cli) fn note_more(more: bool, what: &str) {
    if more {
        eprintln!("(more {what}: raise --limit, or --limit 0 for all)");
    }
}

pub(in crate::cli) fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub(in crate::cli) fn or_dash(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}

pub(super) fn history_table(events: &[StoredEvent]) -> String {
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

pub(super) fn events_table(events: &[StoredEvent]) -> String {
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

pub(super) fn describe_resolution(r: &Resolution) -> String {
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

pub(super) fn digest_table(tags: &[TagPeriods]) -> String {
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
pub(in crate::cli) struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(in crate::cli) fn new(headers: &[&str]) -> Self {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Cells come from clients (identities, user agents): control characters are
    /// escaped so that nothing can drive the terminal.
    pub(in crate::cli) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.iter().map(|c| clean(c)).collect());
    }

    pub(in crate::cli) fn render(&self) -> String {
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
}
