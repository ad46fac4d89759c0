//! Schemas the document needs beyond what the answers' own types derive: the error
//! body, the values of `order`, and the pages of the listings
//! (`audit::Page` is generic). The ledger's rows, enforcement's and retention's
//! results and the pull log derive theirs where they are defined. The answers-against-schemas test
//! (`tests/e2e/openapi_answers.rs`) fails if one drifts.
#![allow(dead_code)] // Read only by the derive: never built.

use utoipa::ToSchema;

/// The schemas other modules' annotations name from here; each is derived on the type
/// itself.
pub use crate::enforce::{Retired, Rewound};
pub use crate::ledger::{Action, BindingChange, StoredEvent as Event};
pub use crate::policy::TagClass;
pub use crate::retention::Planned as PlannedRelease;

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
page!(RepositoryPage, crate::ledger::RepositorySummary);
page!(TagBindingPage, crate::audit::TagBinding);
page!(EventPage, crate::ledger::StoredEvent);
page!(PullPage, crate::pulls::Pull);
