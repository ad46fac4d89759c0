//! Tests of the library in-process against a real Postgres: the ledger and the audit
//! queries, each on a fresh database. Nothing else runs; `tests/support` provides only
//! the database here, so its other parts are allowed to go unused in this binary.

#[path = "../support/mod.rs"]
#[allow(dead_code, unused_imports)]
mod support;

mod audit_queries;
mod ledger;
