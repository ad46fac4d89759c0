//! The command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, LogConfig, LogFormat, Overrides, PolicyConfig};
use crate::policy::Policy;

mod admin_api;
mod audit;
mod explain_at;
mod log;
mod pulls;
mod reconcile;
mod retention;
mod retire;
mod rewind;

#[derive(Parser)]
#[command(
    name = "tagwarden",
    version,
    about = "Immutable release tags and a tag ledger for any OCI registry"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy in front of the upstream registry.
    Serve {
        #[command(flatten)]
        service: ServiceArgs,
        /// Address for registry clients, e.g. 0.0.0.0:5000.
        #[arg(long, env = "TAGWARDEN_LISTEN")]
        listen: Option<SocketAddr>,
        /// Address for /healthz, /readyz and /metrics.
        #[arg(long, env = "TAGWARDEN_ADMIN_LISTEN")]
        admin_listen: Option<SocketAddr>,
        #[arg(long, value_enum)]
        log_format: Option<LogFormatArg>,
    },
    /// Record every tag already in the registry (walks _catalog and tags/list), so tags
    /// pushed before tagwarden are protected too. Uses upstream.username/password.
    Import {
        #[command(flatten)]
        service: ServiceArgs,
    },
    /// Compare the registry with the ledger (walks _catalog and tags/list with
    /// upstream.username/password) and record each new finding as a `drift` event: the
    /// manual form of the background pass. Exits non-zero if anything drifted.
    Reconcile {
        #[command(flatten)]
        service: ServiceArgs,
        /// Only print the findings of a fresh pass; record nothing.
        #[arg(long, conflicts_with = "repair")]
        report: bool,
        /// Put immutable tags back on their bound digest (as reconcile.repair = true).
        #[arg(long)]
        repair: bool,
        /// The whole report as one JSON object.
        #[arg(long)]
        json: bool,
        /// Start after this repository: where a pass that reached its time budget
        /// stopped (it prints the flag to continue with).
        #[arg(long, value_name = "REPOSITORY")]
        after: Option<String>,
    },
    /// Recompute the ledger's hash chains and report the first broken or missing link.
    /// Exits 1 if any chain is broken.
    VerifyLedger {
        /// The ledger database, postgres://...
        #[arg(long, env = "TAGWARDEN_DATABASE_URL", hide_env_values = true)]
        database_url: String,
        /// One JSON object per repository instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Validate a configuration file and explain any error.
    CheckConfig { file: PathBuf },
    /// Show which rule decides a tag and what it allows, without touching anything.
    Explain {
        /// REPOSITORY:TAG, e.g. driftwood/web:1.4.0
        reference: String,
        #[arg(long, env = "TAGWARDEN_CONFIG")]
        config: Option<PathBuf>,
        /// With the ledger, also show what an advancing tag names now and may name next,
        /// and whether what a gated tag's sources name now would pass its gates.
        #[arg(long, env = "TAGWARDEN_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
        /// Explain with the policy that was in force at this instant (RFC 3339, e.g.
        /// 2026-03-01T12:00:00Z), from the ledger's policy history; needs --database-url.
        #[arg(
            long,
            value_name = "TIME",
            requires = "database_url",
            conflicts_with = "config"
        )]
        at: Option<String>,
    },
    /// The audit questions: history, resolve, events and digest.
    #[command(flatten)]
    Audit(audit::AuditCommand),
    /// Move a moving tag back to an earlier release, deliberately (admin token). The
    /// move is made by the running tagwarden and recorded with the reason.
    Rewind(rewind::RewindArgs),
    /// Retire an immutable release (admin token): the running tagwarden deletes it from
    /// the registry, and its name stays reserved for its digest.
    Retire(retire::RetireArgs),
    /// What the [[retention.rules]] of the running tagwarden select and why the rest
    /// stays (--dry-run), or retire it (admin token).
    Retention(retention::RetentionArgs),
    /// Who pulled a tag or digest, when, and which digest they got (the pull log):
    /// e.g. `tagwarden pulls driftwood/web:1.4 --since 2h`.
    Pulls(pulls::PullsArgs),
    /// The signed transparency log: keygen, checkpoint, prove, verify, verify-proof.
    Log(log::LogArgs),
}

/// Where the configuration, the registry and the ledger are.
#[derive(clap::Args)]
struct ServiceArgs {
    /// TOML configuration file (see config/tagwarden.toml).
    #[arg(long, env = "TAGWARDEN_CONFIG")]
    config: Option<PathBuf>,
    /// The registry to protect, e.g. http://registry:5000.
    #[arg(long, env = "TAGWARDEN_UPSTREAM")]
    upstream: Option<String>,
    /// The ledger database, postgres://...
    #[arg(long, env = "TAGWARDEN_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

impl ServiceArgs {
    /// Where the service reads its configuration, now and on every reload.
    fn source(self, overrides: Overrides) -> crate::reload::ConfigSource {
        crate::reload::ConfigSource {
            file: self.config,
            overrides: Overrides {
                upstream: self.upstream,
                database_url: self.database_url,
                ..overrides
            },
        }
    }

    fn load(self, overrides: Overrides) -> Result<Config, String> {
        let overrides = Overrides {
            upstream: self.upstream,
            database_url: self.database_url,
            ..overrides
        };
        Config::load(self.config.as_deref(), &overrides)
            .map_err(|e| format!("configuration error: {e}"))
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

/// An audit question on a small runtime, with only warnings logged.
fn run_audit(question: impl std::future::Future<Output = anyhow::Result<ExitCode>>) -> ExitCode {
    crate::telemetry::init_logging(&LogConfig {
        level: "warn".into(),
        ..LogConfig::default()
    });
    on_runtime(tokio::runtime::Builder::new_current_thread(), question)
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            service,
            listen,
            admin_listen,
            log_format,
        } => {
            let overrides = Overrides {
                listen,
                admin_listen,
                log_format: log_format.map(|f| match f {
                    LogFormatArg::Text => LogFormat::Text,
                    LogFormatArg::Json => LogFormat::Json,
                }),
                ..Overrides::default()
            };
            let source = service.source(overrides);
            let config = match source.load() {
                Ok(c) => c,
                Err(e) => return fail(&format!("configuration error: {e}")),
            };
            crate::telemetry::init_logging(&config.log);
            block_on(crate::startup::run(config, source))
        }
        Command::Import { service } => {
            let config = match service.load(Overrides::default()) {
                Ok(c) => c,
                Err(e) => return fail(&e),
            };
            crate::telemetry::init_logging(&config.log);
            block_on(import(config))
        }
        Command::Reconcile {
            service,
            report,
            repair,
            json,
            after,
        } => {
            let config = match service.load(Overrides::default()) {
                Ok(c) => c,
                Err(e) => return fail(&e),
            };
            crate::telemetry::init_logging(&LogConfig {
                level: "warn".into(),
                ..config.log.clone()
            });
            let mode = if report {
                crate::reconcile::Mode::Report
            } else if repair || config.reconcile.repair {
                crate::reconcile::Mode::Repair
            } else {
                crate::reconcile::Mode::Record
            };
            block_on(reconcile::run(config, mode, json, after))
        }
        Command::VerifyLedger { database_url, json } => block_on(verify_ledger(database_url, json)),
        Command::CheckConfig { file } => match Config::load(Some(&file), &Overrides::default()) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(&format!("{}: {e}", file.display())),
        },
        Command::Explain {
            reference,
            config,
            database_url,
            at,
        } => match (at, database_url) {
            (Some(at), Some(url)) => explain_at::run(&reference, &at, &url),
            (_, database_url) => explain(&reference, config, database_url),
        },
        Command::Rewind(args) => block_on(args.run()),
        Command::Retire(args) => block_on(args.run()),
        Command::Retention(args) => run_audit(args.run()),
        Command::Audit(command) => run_audit(command.run()),
        Command::Pulls(args) => run_audit(args.run()),
        Command::Log(args) => run_audit(args.run()),
    }
}

fn block_on(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    on_runtime(tokio::runtime::Builder::new_multi_thread(), async {
        fut.await.map(|()| ExitCode::SUCCESS)
    })
}

/// Run `fut` to completion on a runtime from `builder`; an error is printed and exits 1.
fn on_runtime(
    mut builder: tokio::runtime::Builder,
    fut: impl std::future::Future<Output = anyhow::Result<ExitCode>>,
) -> ExitCode {
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(fut) {
        Ok(code) => code,
        Err(e) => fail(&format!("{e:#}")),
    }
}

async fn import(config: Config) -> anyhow::Result<()> {
    let ledger = crate::startup::open_ledger(&config).await?;
    let s = crate::import::run(&config, &ledger).await?;
    println!(
        "imported {} tag(s) from {} repositories; {} already recorded",
        s.adopted, s.repositories, s.already_recorded
    );
    for c in &s.conflicts {
        println!("conflict: {c}");
    }
    for k in &s.skipped {
        println!("skipped: {k}");
    }
    match &s.pending_writes {
        crate::import::PendingWrites::Intact => {}
        crate::import::PendingWrites::Restored => println!(
            "pending writes: lost before this import, tracked again (new release tags may skip the existence probe)"
        ),
        crate::import::PendingWrites::StillLost(why) => println!(
            "pending writes: lost, still untracked (every new release tag is probed): {why}"
        ),
    }
    if s.conflicts.is_empty() && s.skipped.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "{} conflict(s), {} tag(s) skipped",
            s.conflicts.len(),
            s.skipped.len()
        )
    }
}

async fn verify_ledger(database_url: String, json: bool) -> anyhow::Result<()> {
    let ledger = crate::ledger::LedgerReader::connect_lazy(
        &database_url,
        2,
        std::time::Duration::from_secs(10),
    )?;
    let reports = ledger.verify_chains().await?;
    let broken = reports.iter().filter(|r| r.broken.is_some()).count();
    for r in &reports {
        if json {
            println!("{}", serde_json::to_string(r)?);
            continue;
        }
        match &r.broken {
            Some(why) => println!("BROKEN  {}: {why}", r.repository),
            None => println!(
                "ok      {}: {} events verified{}{}, head {}",
                r.repository,
                r.checked,
                if r.unhashed > 0 {
                    format!(" ({} older events unhashed)", r.unhashed)
                } else {
                    String::new()
                },
                if r.logged > 0 {
                    format!(
                        ", {} later events in the transparency log (tagwarden log verify)",
                        r.logged
                    )
                } else {
                    String::new()
                },
                r.head.as_deref().unwrap_or("-")
            ),
        }
    }
    if broken > 0 {
        anyhow::bail!(
            "{broken} of {} repository chain(s) are broken",
            reports.len()
        )
    }
    if !json {
        println!("all {} repository chain(s) intact", reports.len());
    }
    Ok(())
}

fn explain(reference: &str, config: Option<PathBuf>, database_url: Option<String>) -> ExitCode {
    let (repo, tag) = &match audit::split_reference(reference) {
        Ok(parts) => parts,
        Err(e) => return fail(&e.to_string()),
    };
    let policy_config = match config {
        // Only the policy matters here; don't require upstream or database keys.
        Some(path) => match policy_only(&path) {
            Ok(p) => p,
            Err(e) => return fail(&e),
        },
        None => PolicyConfig::default(),
    };
    let policy = match Policy::from_config(&policy_config) {
        Ok(p) => p,
        Err(e) => return fail(&format!("{}: {e}", e.key())),
    };
    print!("{}", policy.explain(repo, tag));
    let decision = policy.classify(repo, tag);
    match (decision.advance, database_url) {
        (None, Some(url)) if decision.promotion.is_some() => block_on(async move {
            let ledger =
                crate::ledger::Ledger::connect_lazy(&url, 1, std::time::Duration::from_secs(10))?;
            print!(
                "{}",
                crate::enforce::promotion_outlook(&ledger, repo, tag, &decision).await?
            );
            Ok(())
        }),
        (Some(advance), Some(url)) => block_on(async move {
            let ledger =
                crate::ledger::Ledger::connect_lazy(&url, 1, std::time::Duration::from_secs(10))?;
            if decision.promotion.is_some() {
                print!(
                    "{}",
                    crate::enforce::promotion_outlook(&ledger, repo, tag, &decision).await?
                );
            }
            let current = ledger
                .binding(repo, tag)
                .await?
                .filter(|b| b.deleted_at.is_none());
            let releases = ledger.releases(repo).await?;
            let digest = current.as_ref().map(|b| b.digest.as_str());
            print!(
                "{}",
                crate::policy::advance::outlook(tag, advance.allow_prerelease, digest, &releases)
            );
            Ok(())
        }),
        _ => ExitCode::SUCCESS,
    }
}

fn policy_only(path: &std::path::Path) -> Result<PolicyConfig, String> {
    #[derive(serde::Deserialize)]
    struct Partial {
        #[serde(default)]
        policy: PolicyConfig,
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let partial: Partial = figment::Figment::from(figment::providers::Serialized::defaults(
        LogConfig::default(),
    ))
    .merge(<figment::providers::Toml as figment::providers::Format>::string(&text))
    .extract()
    .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(partial.policy)
}

fn fail(message: &str) -> ExitCode {
    eprintln!("tagwarden: {message}");
    ExitCode::from(2)
}
