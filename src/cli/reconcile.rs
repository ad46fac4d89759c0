//! `tagwarden reconcile`: one pass, printed.

use crate::config::Config;
use crate::reconcile::{Mode, Reconciler, Report};

pub async fn run(
    config: Config,
    mode: Mode,
    json: bool,
    after: Option<String>,
) -> anyhow::Result<()> {
    let ledger = crate::startup::open_ledger(&config).await?;
    let guard = crate::reconcile::own_writer(&config, &ledger)?;
    let report = Reconciler::new(&config, ledger, guard)?
        .pass(mode, after.as_deref())
        .await?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", table(&report, mode));
    }
    let found: usize = report.counts.values().sum();
    if found > 0 || !report.errors.is_empty() {
        anyhow::bail!(
            "{found} finding(s), {} repositories not checked{}",
            report.errors.len(),
            if report.partial {
                ", pass stopped at its time budget"
            } else {
                ""
            }
        )
    }
    Ok(())
}

fn table(r: &Report, mode: Mode) -> String {
    let mut out = String::new();
    for f in &r.findings {
        let state = match (f.repaired, f.recorded, mode) {
            (true, _, _) => "repaired",
            (_, true, _) => "recorded",
            (_, _, Mode::Report) => "found",
            _ => "known",
        };
        out += &format!(
            "{:<24} {}:{} ({}) registry {} ledger {} [{state}]\n",
            f.kind.as_str(),
            f.repository,
            f.tag,
            f.class.as_str(),
            f.registry_digest.as_deref().unwrap_or("none"),
            f.ledger_digest.as_deref().unwrap_or("none"),
        );
    }
    for e in &r.errors {
        out += &format!("error: {e}\n");
    }
    out += &format!(
        "checked {} tag(s) in {} repositories: {} finding(s), {} new{}\n",
        r.tags_checked,
        r.repositories,
        r.counts.values().sum::<usize>(),
        r.new_findings(),
        if r.partial {
            " (partial: time budget reached)"
        } else {
            ""
        }
    );
    out
}
