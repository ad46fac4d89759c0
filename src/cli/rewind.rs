//! `tagwarden rewind REPO:TAG --to RELEASE --reason TEXT`: the deliberate way back for an
//! incident. It asks a running tagwarden (admin token) to move the tag, so the move goes
//! through tagwarden, with its credentials, and lands in the history.

use clap::Args;

use super::admin_api::AdminApi;
use super::audit::split_reference;
use crate::enforce::Rewound;

#[derive(Args)]
pub struct RewindArgs {
    /// The moving tag, REPOSITORY:TAG, e.g. driftwood/web:latest
    reference: String,
    /// The release to move it to, e.g. 1.4.0
    #[arg(long)]
    to: String,
    /// Why: recorded in the tag's history.
    #[arg(long)]
    reason: String,
    /// Move the tag even if one of its promotion gates refuses the release (the bypass
    /// is recorded with the reason).
    #[arg(long)]
    bypass_gates: bool,
    #[command(flatten)]
    admin: AdminApi,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

impl RewindArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let (repository, tag) = split_reference(&self.reference)?;
        let client = self.admin.client()?;
        let body = serde_json::json!({
            "repository": repository,
            "tag": tag,
            "to": self.to,
            "reason": self.reason,
            "bypass_gates": self.bypass_gates,
        });
        let done: Rewound = client.post("rewind", &body).await?;
        if self.json {
            println!("{}", serde_json::to_string(&done)?);
        } else {
            println!(
                "{}:{} now names release {} ({}), was {}{}",
                done.repository,
                done.tag,
                done.release,
                done.digest,
                done.previous_digest.as_deref().unwrap_or("nothing"),
                done.bypassed_gate
                    .as_deref()
                    .map(|g| format!(" (gate {g} bypassed)"))
                    .unwrap_or_default()
            );
        }
        Ok(())
    }
}
