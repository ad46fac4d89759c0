//! Tests of the library in-process against a real Postgres, each on a fresh database:
//! the ledger, the plans of the audit queries and of the write path's reads, and the
//! whole service built with `startup::Application` on port 0 in front of a real
//! registry or a wiremock one.
//! `tests/support` is shared with the end-to-end binary, so the parts only it uses are
//! allowed to go unused here.

#[path = "../support/mod.rs"]
#[allow(dead_code, unused_imports)]
mod support;

mod audit_queries;
mod inprocess;
mod ledger;
mod pending;
mod plans;
mod write_plans;
