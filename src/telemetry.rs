//! Logs and metrics.
//!
//! Logs never carry header values: request spans hold the method, the path without its
//! query (upload `_state` tokens stay out), the route kind and a request id.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Duration;

use metrics::Counter;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Install the global tracing subscriber. Safe to call more than once (later calls are
/// ignored), which keeps tests simple.
pub fn init_logging(config: &LogConfig) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.level));
    // Colours only for a person at a terminal: a log file, journald or a container's
    // log driver would keep the escape codes in every line.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Metric handles for the hot path, resolved once.
#[derive(Clone)]
pub struct Metrics {
    pub bytes_up: Counter,
    pub bytes_down: Counter,
    handle: PrometheusHandle,
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

impl Metrics {
    /// Install the Prometheus recorder (once per process) and resolve the handles.
    pub fn install() -> Metrics {
        let handle = HANDLE
            .get_or_init(|| {
                let recorder = PrometheusBuilder::new()
                    .set_buckets_for_metric(
                        Matcher::Suffix("_seconds".into()),
                        &[
                            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                            2.5, 5.0, 10.0, 30.0,
                        ],
                    )
                    .expect("non-empty buckets")
                    .build_recorder();
                let handle = recorder.handle();
                // Another recorder may already be installed (tests); metrics then go there.
                let _ = metrics::set_global_recorder(recorder);
                handle
            })
            .clone();
        metrics::describe_counter!(
            "tagwarden_upstream_probes_total",
            "Existence probes of new immutable tags, by outcome (absent, present, or skipped when the ledger proved them unnecessary)."
        );
        metrics::describe_counter!(
            "tagwarden_requests_total",
            "Requests answered, by route kind, method and status."
        );
        metrics::describe_counter!(
            "tagwarden_bytes_total",
            "Body bytes streamed through the proxy, by direction."
        );
        metrics::describe_histogram!(
            "tagwarden_upstream_seconds",
            "Time until the upstream's response head, by route kind."
        );
        metrics::describe_counter!(
            "tagwarden_policy_decisions_total",
            "Manifest writes and deletes decided, by outcome."
        );
        metrics::describe_counter!(
            "tagwarden_refusals_unrecorded_total",
            "Refusals answered but not appended to the history, past the per-tag, per-client rate."
        );
        metrics::describe_counter!(
            "tagwarden_pulls_recorded_total",
            "Manifest reads written to the pull log."
        );
        metrics::describe_counter!(
            "tagwarden_pulls_dropped_total",
            "Manifest reads not written to the pull log: queue full or database unavailable."
        );
        metrics::describe_counter!(
            "tagwarden_notify_sent_total",
            "Ledger events a webhook acknowledged with a 2xx."
        );
        metrics::describe_counter!(
            "tagwarden_notify_failed_total",
            "Webhook deliveries that failed (and are retried)."
        );
        metrics::describe_gauge!(
            "tagwarden_notify_queued",
            "Selected ledger events past a webhook's cursor."
        );
        metrics::describe_gauge!(
            "tagwarden_notify_oldest_undelivered_seconds",
            "Age of the oldest selected event a webhook has not acknowledged."
        );
        metrics::describe_gauge!(
            "tagwarden_drift_findings",
            "Tags on which the registry and the ledger disagreed in the last reconcile pass, by kind."
        );
        metrics::describe_counter!(
            "tagwarden_reconcile_passes_total",
            "Reconcile passes, by outcome (ok, errors, partial, error)."
        );
        metrics::describe_gauge!(
            "tagwarden_policy_info",
            "1 for the hash of the policy in force; 0 for policies it replaced."
        );
        metrics::describe_counter!(
            "tagwarden_policy_reloads_total",
            "Configuration reloads, by outcome (applied, unchanged, rejected)."
        );
        for outcome in ["applied", "unchanged", "rejected"] {
            metrics::counter!("tagwarden_policy_reloads_total", "outcome" => outcome).increment(0);
        }
        // Registered at zero so that a scrape shows them before the first pull.
        metrics::counter!("tagwarden_pulls_recorded_total").increment(0);
        metrics::counter!("tagwarden_pulls_dropped_total").increment(0);
        Metrics {
            bytes_up: metrics::counter!("tagwarden_bytes_total", "direction" => "upload"),
            bytes_down: metrics::counter!("tagwarden_bytes_total", "direction" => "download"),
            handle,
        }
    }

    pub fn request(&self, route: &'static str, method: &http::Method, status: http::StatusCode) {
        let method = match *method {
            http::Method::GET => "GET",
            http::Method::HEAD => "HEAD",
            http::Method::PUT => "PUT",
            http::Method::POST => "POST",
            http::Method::PATCH => "PATCH",
            http::Method::DELETE => "DELETE",
            _ => "other",
        };
        metrics::counter!(
            "tagwarden_requests_total",
            "route" => route,
            "method" => method,
            "status" => status.as_u16().to_string()
        )
        .increment(1);
    }

    pub fn upstream_latency(&self, route: &'static str, elapsed: Duration) {
        metrics::histogram!("tagwarden_upstream_seconds", "route" => route)
            .record(elapsed.as_secs_f64());
    }

    pub fn decision(&self, outcome: &'static str) {
        metrics::counter!("tagwarden_policy_decisions_total", "outcome" => outcome).increment(1);
    }

    /// An existence probe of a new immutable tag: `absent`, `present`, or `skipped`
    /// because the ledger proved it unnecessary.
    pub fn upstream_probe(&self, outcome: &'static str) {
        metrics::counter!("tagwarden_upstream_probes_total", "outcome" => outcome).increment(1);
    }

    pub fn refusal_unrecorded(&self) {
        metrics::counter!("tagwarden_refusals_unrecorded_total").increment(1);
    }

    /// A refusal of the same push in another manifest format (see `enforce::retries`).
    pub fn refusal_coalesced(&self) {
        metrics::counter!("tagwarden_refusals_coalesced_total").increment(1);
    }

    pub fn pulls_recorded(&self, n: u64) {
        metrics::counter!("tagwarden_pulls_recorded_total").increment(n);
    }

    /// A webhook's counters at zero, so that a scrape shows them before any delivery.
    pub fn notify_register(&self, webhook: &str) {
        metrics::counter!("tagwarden_notify_sent_total", "webhook" => webhook.to_owned())
            .increment(0);
        metrics::counter!("tagwarden_notify_failed_total", "webhook" => webhook.to_owned())
            .increment(0);
    }

    pub fn notify_sent(&self, webhook: &str) {
        metrics::counter!("tagwarden_notify_sent_total", "webhook" => webhook.to_owned())
            .increment(1);
    }

    pub fn notify_failed(&self, webhook: &str) {
        metrics::counter!("tagwarden_notify_failed_total", "webhook" => webhook.to_owned())
            .increment(1);
    }

    pub fn notify_backlog(&self, webhook: &str, queued: f64, oldest_seconds: f64) {
        metrics::gauge!("tagwarden_notify_queued", "webhook" => webhook.to_owned()).set(queued);
        metrics::gauge!(
            "tagwarden_notify_oldest_undelivered_seconds",
            "webhook" => webhook.to_owned()
        )
        .set(oldest_seconds);
    }

    pub fn pulls_dropped(&self, n: u64) {
        metrics::counter!("tagwarden_pulls_dropped_total").increment(n);
    }

    pub fn drift_findings(&self, kind: &'static str, n: usize) {
        metrics::gauge!("tagwarden_drift_findings", "kind" => kind).set(n as f64);
    }

    pub fn reconcile_pass(&self, outcome: &'static str) {
        metrics::counter!("tagwarden_reconcile_passes_total", "outcome" => outcome).increment(1);
    }

    /// `hash` is in force now; `previous`, if any, no longer is.
    pub fn policy_loaded(&self, previous: Option<&str>, hash: &str) {
        if let Some(old) = previous {
            metrics::gauge!("tagwarden_policy_info", "hash" => old.to_owned()).set(0.0);
        }
        metrics::gauge!("tagwarden_policy_info", "hash" => hash.to_owned()).set(1.0);
    }

    pub fn policy_reload(&self, outcome: &'static str) {
        metrics::counter!("tagwarden_policy_reloads_total", "outcome" => outcome).increment(1);
    }

    pub fn render(&self) -> String {
        self.handle.render()
    }
}
