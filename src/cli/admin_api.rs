//! The options of the commands that ask a running tagwarden to act (`rewind`, `retire`,
//! `retention`): they go through its admin listener, so the change is made with
//! tagwarden's own credentials and recorded with the token's name.

use clap::Args;

use super::audit::ApiClient;

#[derive(Args)]
pub struct AdminApi {
    /// The tagwarden admin listener, e.g. http://127.0.0.1:5001
    #[arg(long, value_name = "URL")]
    api: String,
    /// An admin token ([[admin.tokens]] with role = "admin").
    #[arg(long, env = "TAGWARDEN_API_TOKEN", hide_env_values = true)]
    token: String,
}

impl AdminApi {
    pub fn client(self) -> anyhow::Result<ApiClient> {
        ApiClient::new(&self.api, self.token)
    }
}
