//! Tests that start the `tagwarden` binary against real processes: the registry
//! (`docker-registry`, zuul-registry), Postgres, skopeo, oras and the container engines.
//! One binary, so the harness in `tests/support` compiles once; each module is one
//! former suite. Tests run in parallel threads of this one process: nothing here may
//! set the environment, and suites that must not overlap take a lock from
//! `support::serial`.

#[path = "../support/mod.rs"]
mod support;

mod access_e2e;
mod advance_e2e;
mod audit_api;
mod audit_page;
mod cli;
mod clients_e2e;
mod conformance;
mod enforcement_e2e;
mod failover_e2e;
mod faults;
mod gates_e2e;
mod hostile_input;
mod ledger_tamper;
mod notify_e2e;
mod openapi_answers;
mod oras_e2e;
mod proxy_e2e;
mod proxy_edges;
mod pulls_e2e;
mod reconcile_e2e;
mod refusal_hint;
mod reload_e2e;
mod retire_e2e;
mod second_registry_e2e;
mod service_e2e;
mod soak;
mod tlog_e2e;
mod witness_e2e;
mod writepath_e2e;
