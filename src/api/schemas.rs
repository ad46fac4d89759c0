//! Schemas of the answers whose Rust types live outside the API and the audit (the
//! ledger's rows, enforcement's and retention's results, the pull log). They are
//! described here, beside the document, so those modules stay free of OpenAPI; the
//! answers-against-schemas test (`tests/openapi_answers.rs`) fails if one drifts.
#![allow(dead_code)] // Read only by the derive: never built.

use chrono::{DateTime, Utc};
use serde_json::Value;
use utoipa::ToSchema;

/// The error body of every refusal: `{"errors":[{"code","message"}]}`, as in OCI.
#[derive(ToSchema)]
pub struct Errors {
    pub errors: Vec<ErrorItem>,
}

#[derive(ToSchema)]
pub struct ErrorItem {
    pub code: super::error::ApiCode,
    pub message: String,
}

/// The values of `order`, aliases included.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum OrderValue {
    Asc,
    Desc,
    Oldest,
    Newest,
}

/// A tag's class, as its rule sets it.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum TagClass {
    Immutable,
    Moving,
    Exempt,
    AppendOnly,
}

/// What happened, as recorded in the history.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum Action {
    Create,
    Move,
    Repush,
    Delete,
    Refuse,
    Adopt,
    Warn,
    Drift,
    Repair,
    Retire,
    Restore,
}

#[derive(ToSchema)]
pub struct RepositorySummary {
    pub repository: String,
    /// Tags ever bound, deleted ones included.
    pub tags: i64,
    /// Tags currently in the registry.
    pub live_tags: i64,
    pub last_changed_at: DateTime<Utc>,
}

#[derive(ToSchema)]
pub struct Event {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub action: Action,
    pub repository: String,
    pub tag: Option<String>,
    /// The digest written, or attempted for a refusal.
    pub digest: Option<String>,
    /// The digest before a move, or the bound digest of a refusal.
    pub previous_digest: Option<String>,
    pub class: Option<String>,
    pub rule: Option<String>,
    #[schema(example = "immutable-tag-rebind")]
    pub reason: Option<String>,
    pub identity: Option<String>,
    pub identity_verified: bool,
    pub remote_addr: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    /// Structured facts of a refusal.
    pub detail: Option<Value>,
    /// Hex sha256 of the effective policy rules that decided the event; null for events
    /// recorded before policy hashes were kept.
    pub policy_hash: Option<String>,
}

#[derive(ToSchema)]
pub struct BindingChange {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub action: Action,
    pub digest: Option<String>,
    pub reason: Option<String>,
    pub identity: Option<String>,
    pub class: Option<String>,
}

#[derive(ToSchema)]
pub struct Pull {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub repository: String,
    /// The tag or digest asked for.
    pub reference: String,
    /// The digest served; none when the answer carried none.
    pub digest: Option<String>,
    pub media_type: Option<String>,
    pub method: PullMethod,
    pub status: u16,
    pub identity: Option<String>,
    /// The upstream authenticates and answered 2xx to the request carrying the identity.
    pub verified: bool,
    pub remote_addr: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

#[derive(ToSchema)]
#[schema(rename_all = "UPPERCASE")]
pub enum PullMethod {
    Get,
    Head,
}

#[derive(ToSchema)]
pub struct Rewound {
    pub repository: String,
    pub tag: String,
    pub previous_digest: Option<String>,
    pub digest: String,
    pub release: String,
    /// The promotion gate bypassed (promote_from, soak, require_release), when one refused
    /// the release.
    #[schema(nullable = false)]
    pub bypassed_gate: Option<String>,
}

#[derive(ToSchema)]
pub struct Retired {
    pub repository: String,
    pub tag: String,
    pub digest: String,
    pub reason: String,
    /// False when the registry no longer held the manifest; the release is retired all
    /// the same.
    pub deleted_from_registry: bool,
}

/// One release a retention rule matches.
#[derive(ToSchema)]
pub struct PlannedRelease {
    pub repository: String,
    pub rule: String,
    pub tag: String,
    pub digest: String,
    /// Whether the rule selects it.
    pub retire: bool,
    /// Why it goes, or what keeps it.
    pub why: String,
    /// Not a dry run: "retired", or {"failed": message}.
    pub outcome: Option<Outcome>,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Outcome {
    Retired,
    Failed(String),
}

/// The pages of the listings whose items are described here.
macro_rules! page {
    ($page:ident, $item:ty) => {
        #[derive(ToSchema)]
        pub struct $page {
            pub items: Vec<$item>,
            /// Pass as `cursor` for the next page; null on the last page.
            #[schema(required = true)]
            pub next_cursor: Option<String>,
        }
    };
}
page!(RepositoryPage, RepositorySummary);
page!(TagBindingPage, crate::audit::TagBinding);
page!(EventPage, Event);
page!(PullPage, Pull);
