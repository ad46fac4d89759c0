//! `tagwarden pulls`: who pulled what, and the digest they got, from the pull log
//! (`--database-url`) or a running tagwarden's API (`--api`). Newest first.

use std::process::ExitCode;

use anyhow::anyhow;

use super::audit::{
    collect, instant, note_more, or_dash, page_params, print_json, rfc3339, time, Source,
    SourceArgs, Table,
};
use crate::audit::{Page, PageRequest};
use crate::oci::{Digest, Name, Reference};
use crate::pulls::{query, Pull, PullFilter};

#[derive(clap::Args)]
pub struct PullsArgs {
    /// REPOSITORY, REPOSITORY:TAG or REPOSITORY@DIGEST as the client asked for it;
    /// omit it to ask about an --identity or a --digest everywhere.
    target: Option<String>,
    /// Pulls at or after: RFC 3339 or a duration ago (24h).
    #[arg(long)]
    since: Option<String>,
    /// Pulls before: RFC 3339 or a duration ago.
    #[arg(long)]
    until: Option<String>,
    /// Only pulls by this identity (Basic user or bearer token subject).
    #[arg(long)]
    identity: Option<String>,
    /// Only pulls that were served this digest (`--limit 1`: the last time it was).
    #[arg(long)]
    digest: Option<String>,
    /// Show at most this many pulls (0: all).
    #[arg(long, default_value_t = 100)]
    limit: u64,
    #[command(flatten)]
    source: SourceArgs,
    /// A JSON array instead of a table.
    #[arg(long)]
    json: bool,
}

impl PullsArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let (repository, reference) = match self.target.as_deref() {
            None => (None, None),
            Some(t) => split_target(t)?,
        };
        if let Some(d) = &self.digest {
            Digest::parse(d).map_err(|e| anyhow!("--digest: {e}"))?;
        }
        let filter = PullFilter {
            repository,
            reference,
            since: instant("--since", self.since.as_deref())?,
            until: instant("--until", self.until.as_deref())?,
            identity: self.identity,
            digest: self.digest,
        };
        let source = self.source.open()?;
        let (pulls, more) = collect(self.limit, |page| fetch(&source, &filter, page)).await?;
        if self.json {
            print_json(&pulls)?;
        } else if pulls.is_empty() {
            println!("(no pulls)");
        } else {
            print!("{}", table(&pulls));
        }
        note_more(more, "pulls");
        Ok(ExitCode::SUCCESS)
    }
}

/// `REPO`, `REPO:TAG` or `REPO@DIGEST`, checked.
fn split_target(t: &str) -> anyhow::Result<(Option<String>, Option<String>)> {
    let (repo, reference) = if let Some((repo, digest)) = t.split_once('@') {
        (repo, Some(digest))
    } else {
        match t.rsplit_once(':') {
            Some((repo, tag)) => (repo, Some(tag)),
            None => (t, None),
        }
    };
    Name::parse(repo)?;
    if let Some(r) = reference {
        Reference::parse(r)?;
    }
    Ok((Some(repo.to_owned()), reference.map(str::to_owned)))
}

async fn fetch(
    source: &Source,
    filter: &PullFilter,
    page: PageRequest,
) -> anyhow::Result<Page<Pull>> {
    match source {
        Source::Ledger(a) => Ok(query::pulls(a.ledger(), filter, &page).await?),
        Source::Api(c) => {
            let mut q = Vec::new();
            let text = [
                ("repository", &filter.repository),
                ("reference", &filter.reference),
                ("identity", &filter.identity),
                ("digest", &filter.digest),
            ];
            for (key, value) in text {
                if let Some(v) = value {
                    q.push((key, v.clone()));
                }
            }
            if let Some(t) = filter.since {
                q.push(("since", rfc3339(t)));
            }
            if let Some(t) = filter.until {
                q.push(("until", rfc3339(t)));
            }
            page_params(&mut q, &page);
            c.get("pulls", &q).await
        }
    }
}

fn table(pulls: &[Pull]) -> String {
    let mut t = Table::new(&[
        "TIME",
        "REPOSITORY",
        "REFERENCE",
        "DIGEST",
        "METHOD",
        "STATUS",
        "BY",
        "VERIFIED",
        "FROM",
    ]);
    for p in pulls {
        t.row(vec![
            time(p.at),
            p.repository.clone(),
            p.reference.clone(),
            or_dash(&p.digest),
            p.method.clone(),
            p.status.to_string(),
            or_dash(&p.identity),
            if p.verified { "yes" } else { "no" }.into(),
            or_dash(&p.remote_addr),
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_split_and_checked() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            split_target("team/app:1.0").unwrap(),
            (Some("team/app".into()), Some("1.0".into()))
        );
        assert_eq!(
            split_target(&format!("team/app@{d}")).unwrap(),
            (Some("team/app".into()), Some(d))
        );
        assert_eq!(
            split_target("team/app").unwrap(),
            (Some("team/app".into()), None)
        );
        assert!(split_target("Team/App:1").is_err());
        assert!(split_target("team/app@sha256:zz").is_err());
    }
}
