//! `tagwarden retire REPO:TAG --reason TEXT`: remove a release from the registry while
//! its name stays reserved for its digest. It asks a running tagwarden (admin token), so
//! the delete is made with tagwarden's credentials and lands in the history.

use clap::Args;

use super::admin_api::AdminApi;
use super::audit::split_reference;
use crate::enforce::Retired;

#[derive(Args)]
pub struct RetireArgs {
    /// The release, REPOSITORY:TAG, e.g. driftwood/web:1.2.0
    reference: String,
    /// Why: recorded in the tag's history and shown to anyone who pushes to the name.
    #[arg(long)]
    reason: String,
    #[command(flatten)]
    admin: AdminApi,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

impl RetireArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let (repository, tag) = split_reference(&self.reference)?;
        let client = self.admin.client()?;
        let body = serde_json::json!({
            "repository": repository,
            "tag": tag,
            "reason": self.reason,
        });
        let done: Retired = client.post("retire", &body).await?;
        if self.json {
            println!("{}", serde_json::to_string(&done)?);
        } else {
            println!(
                "{}:{} retired ({}){}; the name stays reserved for that digest",
                done.repository,
                done.tag,
                done.digest,
                if done.deleted_from_registry {
                    ", deleted from the registry"
                } else {
                    ", which the registry no longer held"
                }
            );
        }
        Ok(())
    }
}
