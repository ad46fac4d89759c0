//! The command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, LogConfig, LogFormat, Overrides, PolicyConfig};
use crate::policy::Policy;

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
        /// TOML configuration file (see config/tagwarden.toml).
        #[arg(long, env = "TAGWARDEN_CONFIG")]
        config: Option<PathBuf>,
        /// Address for registry clients, e.g. 0.0.0.0:5000.
        #[arg(long, env = "TAGWARDEN_LISTEN")]
        listen: Option<SocketAddr>,
        /// The registry to protect, e.g. http://registry:5000.
        #[arg(long, env = "TAGWARDEN_UPSTREAM")]
        upstream: Option<String>,
        /// The ledger database, postgres://...
        #[arg(long, env = "TAGWARDEN_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
        /// Address for /healthz, /readyz and /metrics.
        #[arg(long, env = "TAGWARDEN_ADMIN_LISTEN")]
        admin_listen: Option<SocketAddr>,
        #[arg(long, value_enum)]
        log_format: Option<LogFormatArg>,
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
            config,
            listen,
            upstream,
            database_url,
            admin_listen,
            log_format,
        } => {
            let overrides = Overrides {
                listen,
                upstream,
                database_url,
                admin_listen,
                log_format: log_format.map(|f| match f {
                    LogFormatArg::Text => LogFormat::Text,
                    LogFormatArg::Json => LogFormat::Json,
                }),
            };
            let config = match Config::load(config.as_deref(), &overrides) {
                Ok(c) => c,
                Err(e) => return fail(&format!("configuration error: {e}")),
            };
            crate::telemetry::init_logging(&config.log);
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => return fail(&format!("cannot start the runtime: {e}")),
            };
            match runtime.block_on(crate::startup::run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "tagwarden stopped with an error");
                    fail(&format!("{e:#}"))
                }
            }
        }
        Command::CheckConfig { file } => match Config::load(Some(&file), &Overrides::default()) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(&format!("{}: {e}", file.display())),
        },
        Command::Explain { reference, config } => explain(&reference, config),
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
