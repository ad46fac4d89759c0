//! The background pass: reconcile every `reconcile.interval`, in the running service.

use std::sync::Arc;

use tokio::task::JoinHandle;

use super::{Kind, Mode, Reconciler, Report};
use crate::telemetry::Metrics;

/// Start the loop. A pass that fails (registry or database down) is logged and counted,
/// and the next one runs an interval later; nothing here ends the process.
pub fn start(
    reconciler: Reconciler,
    interval: std::time::Duration,
    repair: bool,
    metrics: Metrics,
) -> JoinHandle<()> {
    let reconciler = Arc::new(reconciler);
    let mode = if repair { Mode::Repair } else { Mode::Record };
    tokio::spawn(async move {
        let mut resume_after: Option<String> = None;
        loop {
            tokio::time::sleep(interval).await;
            // A pass of its own task: a panic in it is contained and counted.
            let r = reconciler.clone();
            let after = resume_after.clone();
            let outcome = tokio::spawn(async move { r.pass(mode, after.as_deref()).await }).await;
            match outcome {
                Ok(Ok(report)) => {
                    publish(&metrics, &report);
                    resume_after = report.resume_after.clone();
                }
                Ok(Err(e)) => {
                    metrics.reconcile_pass("error");
                    tracing::warn!(error = %format!("{e:#}"), "reconcile: pass failed; retrying next interval");
                }
                Err(e) => {
                    metrics.reconcile_pass("error");
                    tracing::error!(error = %crate::oci::error::chain(&e), "reconcile: pass aborted");
                }
            }
        }
    })
}

/// The gauges and counters of a pass that ran.
pub fn publish(metrics: &Metrics, report: &Report) {
    for kind in Kind::ALL {
        metrics.drift_findings(
            kind.as_str(),
            report.counts.get(&kind).copied().unwrap_or(0),
        );
    }
    let outcome = if report.partial {
        "partial"
    } else if report.errors.is_empty() {
        "ok"
    } else {
        "errors"
    };
    metrics.reconcile_pass(outcome);
    for e in &report.errors {
        tracing::warn!(error = %e, "reconcile: repository not checked");
    }
    tracing::info!(
        repositories = report.repositories,
        tags = report.tags_checked,
        findings = report.counts.values().sum::<usize>(),
        new = report.new_findings(),
        partial = report.partial,
        "reconcile: pass done"
    );
}
