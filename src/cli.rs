//! The command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, LogConfig, LogFormat, Overrides, PolicyConfig};
use crate::policy::Policy;

mod audit;

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
    /// Validate a configuration file and explain any error.
    CheckConfig { file: PathBuf },
    /// Show which rule decides a tag and what it allows, without touching anything.
    Explain {
        /// REPOSITORY:TAG, e.g. driftwood/web:1.4.0
        reference: String,
        #[arg(long, env = "TAGWARDEN_CONFIG")]
        config: Option<PathBuf>,
    },
    /// The audit questions: history, resolve, events and digest.
    #[command(flatten)]
    Audit(audit::AuditCommand),
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
            let config = match service.load(overrides) {
                Ok(c) => c,
                Err(e) => return fail(&e),
            };
            crate::telemetry::init_logging(&config.log);
            block_on(crate::startup::run(config))
        }
        Command::Import { service } => {
            let config = match service.load(Overrides::default()) {
                Ok(c) => c,
                Err(e) => return fail(&e),
            };
            crate::telemetry::init_logging(&config.log);
            block_on(import(config))
        }
        Command::CheckConfig { file } => match Config::load(Some(&file), &Overrides::default()) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(&format!("{}: {e}", file.display())),
        },
        Command::Explain { reference, config } => explain(&reference, config),
        Command::Audit(command) => {
            crate::telemetry::init_logging(&LogConfig {
                level: "warn".into(),
                ..LogConfig::default()
            });
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => return fail(&format!("cannot start the runtime: {e}")),
            };
            match runtime.block_on(command.run()) {
                Ok(code) => code,
                Err(e) => fail(&format!("{e:#}")),
            }
        }
    }
}

fn block_on(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
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

fn explain(reference: &str, config: Option<PathBuf>) -> ExitCode {
    let Some((repo, tag)) = reference.rsplit_once(':') else {
        return fail("expected REPOSITORY:TAG, e.g. driftwood/web:1.4.0");
    };
    if let Err(e) = crate::oci::Name::parse(repo) {
        return fail(&e.to_string());
    }
    if let Err(e) = crate::oci::Tag::parse(tag) {
        return fail(&e.to_string());
    }
    let policy_config = match config {
        // Only the policy matters here; don't require upstream or database keys.
        Some(path) => match policy_only(&path) {
            Ok(p) => p,
            Err(e) => return fail(&e),
        },
        None => PolicyConfig::default(),
    };
    match Policy::from_config(&policy_config) {
        Ok(p) => {
            print!("{}", p.explain(repo, tag));
            ExitCode::SUCCESS
        }
        Err(e) => fail(&format!("{}: {e}", e.key())),
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
