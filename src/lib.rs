//! tagwarden: a policy proxy in front of an OCI registry that keeps release tags
//! immutable and records every tag binding in Postgres.
//!
//! The flow of a request: [`gateway`] checks it and [`oci::route`] parses its path
//! strictly; manifest writes and deletes go to [`enforce`], where [`policy`] classifies
//! each tag and [`ledger`] records and checks its binding; everything else, and every
//! accepted write, is streamed to and from the upstream by [`proxy`]. Audits read the
//! ledger through [`audit`], served as JSON by [`api`] and as HTML pages by [`ui`] on the
//! admin listener.

pub mod admin;
pub mod api;
pub mod audit;
pub mod cli;
pub mod config;
pub mod enforce;
pub mod gateway;
pub mod import;
pub mod ledger;
pub mod notify;
pub mod oci;
pub mod policy;
pub mod proxy;
pub mod pulls;
pub mod reconcile;
pub mod registry;
pub mod reload;
pub mod retention;
pub mod server;
pub mod startup;
pub mod telemetry;
pub mod tlog;
pub mod ui;
