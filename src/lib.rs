//! tagwarden: a policy proxy in front of an OCI registry that keeps release tags
//! immutable and records every tag binding in Postgres.
//!
//! The flow of a request: [`oci::route`] parses the path strictly, [`policy`] classifies
//! the tag, [`ledger`] records and checks the binding, and [`proxy`] streams everything
//! to and from the upstream registry.

pub mod config;
pub mod oci;
pub mod policy;
