//! `tagwarden log ...`: keys, checkpoints, proofs and the auditor's full verification.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use sqlx::{Connection, PgConnection};

use crate::tlog::cosignature::{self, WitnessKey};
use crate::tlog::{note, proof, store, verify, LogError};

#[derive(Args)]
pub struct LogArgs {
    #[command(subcommand)]
    command: LogCommand,
}

#[derive(Subcommand)]
enum LogCommand {
    /// Write a new Ed25519 signing key (mode 0600) and print its verifier key.
    Keygen {
        /// The key file to create; it must not exist.
        #[arg(long)]
        out: PathBuf,
        /// The key's name, usually the log's origin, e.g. registry.example/tagwarden.
        #[arg(long, default_value = "tagwarden")]
        name: String,
    },
    /// Print the newest signed checkpoint.
    Checkpoint {
        #[arg(long, env = "TAGWARDEN_DATABASE_URL", hide_env_values = true)]
        database_url: String,
    },
    /// Print an inclusion proof, bundled with its checkpoint (JSON): of the event that
    /// gave REPOSITORY:TAG its binding at --at (default now), or of --event.
    Prove {
        /// REPOSITORY:TAG, e.g. driftwood/web:1.4.0
        #[arg(required_unless_present = "event", conflicts_with = "event")]
        reference: Option<String>,
        /// RFC 3339 time or a duration ago (2h).
        #[arg(long, requires = "reference")]
        at: Option<String>,
        /// An event id, as in a write's `Tagwarden-Event` header.
        #[arg(long)]
        event: Option<i64>,
        #[arg(long, env = "TAGWARDEN_DATABASE_URL", hide_env_values = true)]
        database_url: String,
    },
    /// Replay the whole log from the database and check it against the verifier key and
    /// any older checkpoints. Exits 0 only if everything holds.
    Verify {
        #[arg(long, env = "TAGWARDEN_DATABASE_URL", hide_env_values = true)]
        database_url: String,
        /// The verifier key (`<name>+<id>+<key>`), or a file holding it.
        #[arg(long)]
        verifier_key: String,
        /// An older checkpoint (a signed note file) the log must still extend.
        #[arg(long = "checkpoint", value_name = "FILE")]
        checkpoints: Vec<PathBuf>,
        /// A witness's cosignature/v1 verifier key (`<name>+<id>+<key>`), or a file
        /// holding it; repeatable. The checkpoint must carry their cosignatures.
        #[arg(long = "witness-key", value_name = "KEY")]
        witness_keys: Vec<String>,
        /// How many of the given witnesses must have cosigned (default: all).
        #[arg(long, requires = "witness_keys")]
        witness_quorum: Option<usize>,
    },
    /// Check a proof file offline, with only the verifier key.
    VerifyProof {
        #[arg(long)]
        proof: PathBuf,
        /// The verifier key (`<name>+<id>+<key>`), or a file holding it.
        #[arg(long)]
        verifier_key: String,
        /// A witness's cosignature/v1 verifier key (`<name>+<id>+<key>`), or a file
        /// holding it; repeatable. The checkpoint must carry their cosignatures.
        #[arg(long = "witness-key", value_name = "KEY")]
        witness_keys: Vec<String>,
        /// How many of the given witnesses must have cosigned (default: all).
        #[arg(long, requires = "witness_keys")]
        witness_quorum: Option<usize>,
    },
}

impl LogArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            LogCommand::Keygen { out, name } => keygen(&out, &name),
            LogCommand::Checkpoint { database_url } => {
                let mut conn = connect(&database_url).await?;
                match store::latest_checkpoint(&mut conn).await? {
                    Some((_, note)) => {
                        print!("{note}");
                        Ok(ExitCode::SUCCESS)
                    }
                    None => anyhow::bail!("the log has no signed checkpoint yet"),
                }
            }
            LogCommand::Prove {
                reference,
                at,
                event,
                database_url,
            } => {
                let mut conn = connect(&database_url).await?;
                let id = match (event, reference) {
                    (Some(id), _) => id,
                    (None, Some(reference)) => {
                        let (repo, tag) = reference.rsplit_once(':').ok_or_else(|| {
                            anyhow::anyhow!("expected REPOSITORY:TAG, e.g. driftwood/web:1.4.0")
                        })?;
                        let at = super::audit::instant("--at", at.as_deref())?
                            .unwrap_or_else(chrono::Utc::now);
                        store::binding_event_at(&mut conn, repo, tag, at)
                            .await?
                            .ok_or_else(|| anyhow::anyhow!("{reference} had no binding then"))?
                    }
                    (None, None) => anyhow::bail!("give REPOSITORY:TAG or --event"),
                };
                let bundle = proof::prove(&mut conn, id).await.map_err(refused)?;
                println!("{}", serde_json::to_string_pretty(&bundle)?);
                Ok(ExitCode::SUCCESS)
            }
            LogCommand::Verify {
                database_url,
                verifier_key,
                checkpoints,
                witness_keys,
                witness_quorum,
            } => {
                let key = verifier(&verifier_key)?;
                let witnesses = Witnesses::parse(&witness_keys, witness_quorum)?;
                let mut given = Vec::new();
                for f in &checkpoints {
                    given.push(verify::Given {
                        name: f.display().to_string(),
                        note: std::fs::read_to_string(f)
                            .with_context(|| format!("--checkpoint {}", f.display()))?,
                    });
                }
                let mut conn = connect(&database_url).await?;
                // One snapshot for the whole replay.
                let mut tx = conn.begin().await?;
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .execute(&mut *tx)
                    .await?;
                let mut report = verify::run(&mut tx, &key, &given).await.map_err(refused)?;
                if report.failure.is_none() && !witnesses.keys.is_empty() {
                    if let Some((_, note)) = store::latest_checkpoint(&mut tx).await? {
                        witnesses.check(&note, "the database's newest checkpoint", &mut report);
                    }
                }
                tx.rollback().await?;
                Ok(print_report(report, Some("the log verifies")))
            }
            LogCommand::VerifyProof {
                proof: file,
                verifier_key,
                witness_keys,
                witness_quorum,
            } => {
                let key = verifier(&verifier_key)?;
                let witnesses = Witnesses::parse(&witness_keys, witness_quorum)?;
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("--proof {}", file.display()))?;
                let bundle: proof::Bundle = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a proof file", file.display()))?;
                match proof::check(&bundle, &key) {
                    Ok(p) => {
                        println!(
                            "ok      event {} is leaf {} of the checkpoint of {} leaves signed by {}",
                            bundle.event_id, bundle.leaf_index, p.checkpoint.size, p.checkpoint.origin
                        );
                        for (name, value) in p.fields {
                            println!("  {name:<18} {}", value.as_deref().unwrap_or("-"));
                        }
                        if witnesses.keys.is_empty() {
                            return Ok(ExitCode::SUCCESS);
                        }
                        let mut report = verify::Report::default();
                        witnesses.check(&bundle.checkpoint, "the proof's checkpoint", &mut report);
                        Ok(print_report(report, None))
                    }
                    Err(why) => {
                        println!("BROKEN  {why}");
                        Ok(ExitCode::from(1))
                    }
                }
            }
        }
    }
}

/// The witnesses an auditor requires, and how many of them.
struct Witnesses {
    keys: Vec<WitnessKey>,
    quorum: usize,
}

impl Witnesses {
    fn parse(args: &[String], quorum: Option<usize>) -> anyhow::Result<Self> {
        let mut keys = Vec::new();
        for a in args {
            let text = verifier(a).with_context(|| format!("--witness-key {a}"))?;
            keys.push(
                WitnessKey::parse(&text).map_err(|e| anyhow::anyhow!("--witness-key {a}: {e}"))?,
            );
        }
        let quorum = quorum.unwrap_or(keys.len());
        if !keys.is_empty() && (quorum == 0 || quorum > keys.len()) {
            anyhow::bail!(
                "--witness-quorum must be between 1 and the number of --witness-key ({})",
                keys.len()
            );
        }
        Ok(Witnesses { keys, quorum })
    }

    /// Report each witness's cosignature of `note`, and fail below the quorum.
    fn check(&self, note: &str, what: &str, report: &mut verify::Report) {
        let q = cosignature::check(note, &self.keys);
        for (name, time) in &q.cosigned {
            let at = chrono::DateTime::from_timestamp(i64::try_from(*time).unwrap_or(i64::MAX), 0)
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| time.to_string());
            report
                .checked
                .push(format!("{what} is cosigned by witness {name} (at {at})"));
        }
        if q.cosigned.len() < self.quorum {
            let missing: Vec<String> = q
                .missing
                .iter()
                .map(|(name, why)| format!("{name}: {why}"))
                .collect();
            report.failure = Some(format!(
                "{what} is cosigned by {} of the {} given witnesses, {} required ({})",
                q.cosigned.len(),
                self.keys.len(),
                self.quorum,
                missing.join("; ")
            ));
        }
    }
}

fn refused(e: LogError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

async fn connect(url: &str) -> anyhow::Result<PgConnection> {
    PgConnection::connect(url)
        .await
        .context("cannot connect to the database")
}

/// A verifier key given inline, or the path of a file holding one.
fn verifier(arg: &str) -> anyhow::Result<String> {
    if arg.contains('+') {
        return Ok(arg.trim().to_owned());
    }
    Ok(std::fs::read_to_string(arg)
        .with_context(|| format!("--verifier-key {arg}"))?
        .trim()
        .to_owned())
}

fn keygen(out: &std::path::Path, name: &str) -> anyhow::Result<ExitCode> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let (skey, vkey) = note::generate(name).map_err(anyhow::Error::msg)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("--out {}", out.display()))?;
    f.write_all(format!("{skey}\n").as_bytes())?;
    f.sync_all()?;
    println!("{vkey}");
    Ok(ExitCode::SUCCESS)
}

/// Print what was checked, then the first failure; exit 1 on a failure, else print
/// `verified` (if any) and exit 0.
fn print_report(report: verify::Report, verified: Option<&str>) -> ExitCode {
    for line in &report.checked {
        println!("ok      {line}");
    }
    match report.failure {
        Some(why) => {
            println!("BROKEN  {why}");
            ExitCode::from(1)
        }
        None => {
            if let Some(line) = verified {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
    }
}
