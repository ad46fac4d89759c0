//! Reconciliation: find what was written to the registry around tagwarden (anyone
//! holding the registry's own credentials can), record it as `drift` in the ledger and,
//! if asked, put immutable tags back on their bound digest (`repair`).
//!
//! A pass walks `_catalog` and each repository's `tags/list` with tagwarden's own
//! credentials (through [`crate::registry`]), compares what each tag names
//! with `tag_bindings`, and re-checks every finding under the tag's lock before it is
//! recorded, so that a push through tagwarden racing the pass is never reported.

pub mod background;
pub mod pace;
mod repair;
mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::Config;
use crate::enforce::Guard;
use crate::ledger::{Action, Actor, Ledger, NewEvent};
use crate::oci::{Digest, Name, Tag};
use crate::policy::live::LivePolicy;
use crate::policy::{Policy, TagClass};
use crate::registry::RegistryClient;

/// The most findings a report lists (all are counted and recorded).
const MAX_LISTED: usize = 10_000;

/// What kind of drift a finding is; its `reason` in the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// An immutable tag names another digest in the registry than its binding.
    RegistryDigestDiffers,
    /// A tag the ledger has no live binding for.
    UnrecordedTag,
    /// A live binding whose tag the registry no longer serves.
    RegistryLostTag,
    /// A moving (or exempt) tag re-pointed directly on the registry.
    MovedOutside,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::RegistryDigestDiffers,
        Kind::UnrecordedTag,
        Kind::RegistryLostTag,
        Kind::MovedOutside,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::RegistryDigestDiffers => "registry-digest-differs",
            Kind::UnrecordedTag => "unrecorded-tag",
            Kind::RegistryLostTag => "registry-lost-tag",
            Kind::MovedOutside => "moved-outside",
        }
    }
}

/// One tag on which the registry and the ledger disagree.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub repository: String,
    pub tag: String,
    pub kind: Kind,
    pub class: TagClass,
    /// What the registry serves (`None`: nothing).
    pub registry_digest: Option<String>,
    /// What the ledger binds (`None`: no live binding).
    pub ledger_digest: Option<String>,
    /// Recorded by this pass (false: already recorded, or a report-only pass).
    pub recorded: bool,
    pub repaired: bool,
}

/// What one pass found.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    pub repositories: usize,
    pub tags_checked: usize,
    /// Findings per kind, including those not listed.
    pub counts: BTreeMap<Kind, usize>,
    pub findings: Vec<Finding>,
    /// `repository: error` for repositories that could not be read.
    pub errors: Vec<String>,
    /// The time budget ran out; repositories after `resume_after` were not checked.
    pub partial: bool,
    pub resume_after: Option<String>,
}

impl Report {
    fn push(&mut self, f: Finding) {
        if self.findings.len() < MAX_LISTED {
            self.findings.push(f);
        }
    }

    pub fn new_findings(&self) -> usize {
        self.findings.iter().filter(|f| f.recorded).count()
    }
}

/// What a pass does with its findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only report.
    Report,
    /// Record new findings as `drift` events.
    Record,
    /// Record, and put immutable tags back on their bound digest.
    Repair,
}

pub struct Reconciler {
    registry: RegistryClient,
    ledger: Ledger,
    /// The policy in force, shared with the guard: a reload applies to the next check.
    policy: LivePolicy,
    /// Writes with tagwarden's own credentials, for repairs.
    guard: Guard,
    page_size: u32,
    time_budget: Duration,
    actor: Actor,
}

impl Reconciler {
    pub fn new(config: &Config, ledger: Ledger, guard: Guard) -> anyhow::Result<Reconciler> {
        let r = &config.reconcile;
        Ok(Reconciler {
            registry: RegistryClient::from_config(config)?
                .paced(pace::Pacer::new(r.max_requests_per_second)),
            ledger,
            policy: guard.live_policy().clone(),
            guard,
            page_size: r.page_size,
            time_budget: r.time_budget,
            actor: Actor {
                identity: Some(match &config.upstream.username {
                    Some(u) => format!("reconcile:{u}"),
                    None => "reconcile".into(),
                }),
                verified: true,
                ..Actor::default()
            },
        })
    }

    /// One pass over every repository after `resume_after` (all, if `None`). Fails only
    /// if the catalog or the ledger cannot be read; a repository that cannot be read
    /// is listed in `errors` and the pass goes on.
    pub async fn pass(&self, mode: Mode, resume_after: Option<&str>) -> anyhow::Result<Report> {
        let started = Instant::now();
        let mut repos: BTreeSet<String> = self
            .registry
            .catalog(Some(self.page_size))
            .all()
            .await?
            .into_iter()
            .collect();
        repos.extend(store::repositories(self.ledger.pool()).await?);
        let mut report = Report::default();
        for repo in repos
            .into_iter()
            .filter(|r| resume_after.is_none_or(|after| r.as_str() > after))
        {
            // At least one repository per pass, so that a slow catalog cannot keep
            // every pass from making progress.
            if report.repositories > 0 && started.elapsed() >= self.time_budget {
                report.partial = true;
                break;
            }
            let Ok(name) = Name::parse(&repo) else {
                report
                    .errors
                    .push(format!("{repo}: not a valid repository name"));
                continue;
            };
            if let Err(e) = self.repository(&name, mode, &mut report).await {
                if e.downcast_ref::<crate::ledger::LedgerError>().is_some() {
                    return Err(e);
                }
                report.errors.push(format!("{name}: {e:#}"));
            }
            report.repositories += 1;
            report.resume_after = Some(repo);
        }
        if !report.partial {
            report.resume_after = None;
        }
        Ok(report)
    }

    async fn repository(&self, name: &Name, mode: Mode, report: &mut Report) -> anyhow::Result<()> {
        let listed = self.registry.tags(name, Some(self.page_size)).all().await?;
        let bindings: BTreeMap<String, (String, String, bool)> =
            store::bindings(self.ledger.pool(), name.as_str())
                .await?
                .into_iter()
                .map(|(t, d, c, live)| (t, (d, c, live)))
                .collect();
        let mut seen = BTreeSet::new();
        for t in &listed {
            let Ok(tag) = Tag::parse(t) else { continue };
            seen.insert(t.clone());
            report.tags_checked += 1;
            let served = self.registry.resolve(name, tag.as_str()).await?;
            let live = bindings
                .get(t)
                .filter(|(_, _, live)| *live)
                .map(|(d, _, _)| d.as_str());
            if served.as_ref().map(Digest::as_str) != live {
                self.check(name, &tag, mode, report).await?;
            }
        }
        for (t, _) in bindings
            .iter()
            .filter(|(t, (_, _, live))| *live && !seen.contains(*t))
        {
            let Ok(tag) = Tag::parse(t) else { continue };
            report.tags_checked += 1;
            self.check(name, &tag, mode, report).await?;
        }
        Ok(())
    }

    /// Re-check one tag under its lock and record what is still a finding.
    async fn check(
        &self,
        name: &Name,
        tag: &Tag,
        mode: Mode,
        report: &mut Report,
    ) -> anyhow::Result<()> {
        // One policy decides the whole check, whatever reloads happen meanwhile.
        let policy = self.policy.current();
        let mut tx = self
            .ledger
            .begin_locked(name.as_str(), &[tag.as_str()], &[])
            .await?;
        let binding = tx
            .binding(name.as_str(), tag.as_str())
            .await?
            .filter(|b| b.deleted_at.is_none());
        let served = self.registry.resolve(name, tag.as_str()).await?;
        let registry_digest = served.as_ref().map(|d| d.as_str().to_owned());
        let (kind, class) = match (&binding, &registry_digest) {
            (Some(b), Some(d)) if b.digest == *d => return Ok(tx.rollback().await?),
            (Some(b), Some(_)) if b.class == TagClass::Immutable => {
                (Kind::RegistryDigestDiffers, TagClass::Immutable)
            }
            (Some(b), Some(_)) => (Kind::MovedOutside, b.class),
            (Some(b), None) => (Kind::RegistryLostTag, b.class),
            (None, Some(_)) => (
                Kind::UnrecordedTag,
                policy.classify(name.as_str(), tag.as_str()).class,
            ),
            (None, None) => return Ok(tx.rollback().await?),
        };
        let ledger_digest = binding.as_ref().map(|b| b.digest.clone());
        let mut finding = Finding {
            repository: name.to_string(),
            tag: tag.to_string(),
            kind,
            class,
            registry_digest,
            ledger_digest,
            recorded: false,
            repaired: false,
        };
        *report.counts.entry(kind).or_default() += 1;
        if mode == Mode::Report {
            tx.rollback().await?;
            report.push(finding);
            return Ok(());
        }
        let new = !store::already_recorded(
            self.ledger.pool(),
            name.as_str(),
            tag.as_str(),
            kind.as_str(),
            finding.registry_digest.as_deref(),
        )
        .await?;
        // The registry writes come before the appends: an append holds the
        // repository's chain head until the commit.
        if mode == Mode::Repair
            && matches!(kind, Kind::RegistryDigestDiffers | Kind::RegistryLostTag)
        {
            finding.repaired = repair::restore(&self.guard, name, tag, &finding).await?;
        }
        if new {
            tracing::error!(
                repository = %name,
                tag = %tag,
                kind = kind.as_str(),
                registry_digest = finding.registry_digest.as_deref().unwrap_or("-"),
                ledger_digest = finding.ledger_digest.as_deref().unwrap_or("-"),
                "drift: the registry was changed around tagwarden"
            );
            tx.append(
                &finding_event(&finding, Action::Drift, policy.hash()),
                &self.actor,
            )
            .await?;
            finding.recorded = true;
        }
        if finding.repaired {
            tx.append(
                &finding_event(&finding, Action::Repair, policy.hash()),
                &self.actor,
            )
            .await?;
        }
        tx.commit().await?;
        report.push(finding);
        Ok(())
    }
}

/// The `drift` or `repair` event of a finding. A drift records the registry's digest
/// over the ledger's; a repair makes the tag name its bound digest again.
fn finding_event<'a>(f: &'a Finding, action: Action, policy_hash: &'a str) -> NewEvent<'a> {
    let (registry, ledger) = (f.registry_digest.as_deref(), f.ledger_digest.as_deref());
    let (digest, previous_digest) = match action {
        Action::Repair => (ledger, registry),
        _ => (registry, ledger),
    };
    NewEvent {
        tag: Some(&f.tag),
        digest,
        previous_digest,
        class: Some(f.class),
        reason: Some(f.kind.as_str()),
        detail: Some(serde_json::json!({
            "registry_digest": f.registry_digest,
            "ledger_digest": f.ledger_digest,
        })),
        policy_hash: Some(policy_hash),
        ..NewEvent::new(action, &f.repository)
    }
}

/// The writer repairs go through: a [`Guard`] over tagwarden's own credentials, for the
/// command line (the service passes its own).
pub fn own_writer(config: &Config, ledger: &Ledger) -> anyhow::Result<Guard> {
    let metrics = crate::telemetry::Metrics::install();
    let forwarder = crate::proxy::Forwarder::new(
        crate::proxy::Upstream::new(&config.upstream)?,
        metrics.clone(),
    );
    Ok(Guard::new(
        LivePolicy::new(Policy::from_config(&config.policy)?),
        ledger.clone(),
        forwarder,
        metrics,
        config.limits.max_manifest_bytes,
        crate::enforce::ReadBounds::new(
            config.limits.manifest_read_timeout,
            config.limits.manifest_buffer_budget,
        ),
        config.upstream.authorization(),
    ))
}
