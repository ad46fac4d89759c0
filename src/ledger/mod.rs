//! The ledger: what each tag is bound to now, and every decision ever made about it.
//!
//! All of its SQL is in `sql/`, one statement a file (a `.part.sql` is a piece that
//! `concat!` joins to another file at compile time). A [`Ledger`] (the writer) opens
//! [`LedgerTx`] write transactions that hold advisory locks on the tags involved, so
//! that every tagwarden process sharing the database serialises on the same tag. A
//! [`LedgerReader`] can only read: the audits are given one. The rest of tagwarden sees
//! only these types.
//!
//! - `pool`: how the pools are built; `failover`: leaving a server turned read-only;
//!   `error`: [`LedgerError`].
//! - `writer`, `tx`: the writer and its transactions (bindings and events), with
//!   `changes`, `references`, `repush` and `retire` adding statements to the transaction.
//! - `reader`, `queries`: the reader and the audit reads; `verify`: the hash chains;
//!   `policies`: the policies loaded over time; `outbox`: events in commit order, which
//!   the transparency log and the webhooks follow.

mod accept;
pub mod chain;
mod changes;
mod error;
mod failover;
mod open;
pub mod outbox;
mod pending;
pub mod policies;
mod pool;
pub mod queries;
mod reader;
pub mod references;
mod repush;
pub mod retire;
mod tx;
mod verify;
mod writer;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::policy::TagClass;

pub use error::LedgerError;
pub use open::{Opened, Unopened};
pub use pending::{Announcement, Unseen, PENDING_WRITES_LOST};
pub use pool::StatementBounds;
pub use queries::{
    BindingChange, DigestBinding, EventFilter, Order, RepositorySummary, StoredEvent,
};
pub use reader::LedgerReader;
pub use references::{ManifestRef, Reach, RefKind};
pub use retire::LiveBinding;
pub use tx::LedgerTx;
pub use verify::ChainReport;
pub use writer::Ledger;

/// A tag's current binding, as a row of `tag_bindings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Binding {
    pub repository: String,
    pub tag: String,
    pub digest: String,
    pub class: TagClass,
    pub rule: String,
    pub bound_by: Option<String>,
    pub first_bound_at: DateTime<Utc>,
    pub last_changed_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    /// Set when an operator or a retention rule retired the release: it is also
    /// deleted, and its name stays reserved for its digest.
    #[serde(default)]
    pub retired_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub retired_reason: Option<String>,
    #[serde(default)]
    pub retired_by: Option<String>,
}

impl Binding {
    /// When, why and by whom the release was retired, if it was.
    pub fn retirement(&self) -> Option<Retirement> {
        self.retired_at.map(|at| Retirement {
            at,
            reason: self.retired_reason.clone().unwrap_or_default(),
            by: self.retired_by.clone(),
        })
    }
}

/// When, why and by whom a release was retired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retirement {
    pub at: DateTime<Utc>,
    pub reason: String,
    pub by: Option<String>,
}

/// What happened, as recorded in the history.
// Stored as text: `tag_events.action`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Action {
    /// A tag bound for the first time.
    Create,
    /// A moving tag re-pointed.
    Move,
    /// The same digest pushed again under a tag already bound to it.
    Repush,
    /// A tag removed from the registry.
    Delete,
    /// A write or delete refused by policy.
    Refuse,
    /// A binding found in the registry that tagwarden had not recorded.
    Adopt,
    /// A violation allowed because its rule is in warn mode.
    Warn,
    /// The registry serves something the ledger did not bind: a write or delete made
    /// around tagwarden, found by reconciliation. The binding is unchanged.
    Drift,
    /// An immutable tag put back on its bound digest by reconciliation.
    Repair,
    /// A release removed from the registry by an operator or a retention rule; its name
    /// stays reserved for its digest.
    Retire,
    /// A retired release whose own bytes were pushed again: live once more.
    Restore,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Move => "move",
            Action::Repush => "repush",
            Action::Delete => "delete",
            Action::Refuse => "refuse",
            Action::Adopt => "adopt",
            Action::Warn => "warn",
            Action::Drift => "drift",
            Action::Repair => "repair",
            Action::Retire => "retire",
            Action::Restore => "restore",
        }
    }

    /// Every action, in the order the README lists them.
    pub const ALL: [Action; 11] = [
        Action::Create,
        Action::Move,
        Action::Repush,
        Action::Delete,
        Action::Refuse,
        Action::Adopt,
        Action::Warn,
        Action::Drift,
        Action::Repair,
        Action::Retire,
        Action::Restore,
    ];

    /// The action stored as `s`, if any.
    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who asked, as far as tagwarden can tell.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub identity: Option<String>,
    /// True once the upstream accepted the credentials the identity came from.
    pub verified: bool,
    pub remote_addr: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

/// One history entry to append.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub action: Action,
    pub repository: &'a str,
    pub tag: Option<&'a str>,
    pub digest: Option<&'a str>,
    pub previous_digest: Option<&'a str>,
    pub class: Option<TagClass>,
    pub rule: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub detail: Option<serde_json::Value>,
    /// [`crate::policy::Policy::hash`] of the policy that decided the event.
    pub policy_hash: Option<&'a str>,
}

impl<'a> NewEvent<'a> {
    pub fn new(action: Action, repository: &'a str) -> Self {
        NewEvent {
            action,
            repository,
            tag: None,
            digest: None,
            previous_digest: None,
            class: None,
            rule: None,
            reason: None,
            detail: None,
            policy_hash: None,
        }
    }
}

/// A binding to write (insert or replace) for a tag.
#[derive(Debug, Clone)]
pub struct NewBinding<'a> {
    pub repository: &'a str,
    pub tag: &'a str,
    pub digest: &'a str,
    pub class: TagClass,
    pub rule: &'a str,
    pub bound_by: Option<&'a str>,
}
