//! The admin listener: liveness, readiness and Prometheus metrics, open to whoever
//! reaches it; the audit API under `/api/v1/`, behind bearer tokens; and the audit
//! pages under `/ui/`, behind the same tokens or a session signed in with one. It
//! should not be reachable from the public network.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::api::{self, ApiState};
use crate::ledger::LedgerReader;
use crate::policy::live::LivePolicy;
use crate::proxy::body::Activity;
use crate::proxy::Upstream;
use crate::telemetry::Metrics;
use crate::ui::{self, UiState};

#[derive(Clone)]
pub struct AdminState {
    /// For the readiness check: the write pool's connections, read through.
    pub ledger: LedgerReader,
    pub upstream: Upstream,
    pub metrics: Metrics,
    pub policy: LivePolicy,
}

pub fn router(state: AdminState, api: ApiState, pages: UiState, log: Option<LogRoutes>) -> Router {
    let tokens = api.tokens.clone();
    let mut app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Arc::new(state))
        .merge(api::router(api))
        .merge(ui::router(pages));
    if let Some(log) = log {
        app = app.merge(api::log::router(log.state, tokens, log.public));
    }
    app
}

/// The transparency log's routes, when the log is on.
pub struct LogRoutes {
    pub state: api::log::LogState,
    /// Served without a token (`tlog.public`).
    pub public: bool,
}

/// Ready when both the upstream answers `/v2/` (any HTTP answer, 401 included) and
/// the ledger answers a query. Also names the policy in force, by hash.
async fn readyz(State(s): State<Arc<AdminState>>) -> impl IntoResponse {
    const CHECK_TIMEOUT: Duration = Duration::from_secs(3);
    let upstream = async {
        let req = http::Request::get(
            s.upstream
                .uri(&http::uri::PathAndQuery::from_static("/v2/")),
        )
        .body(axum::body::Body::empty())
        .expect("static request");
        match tokio::time::timeout(CHECK_TIMEOUT, s.upstream.send(req, &Activity::new())).await {
            Ok(Ok(resp)) => Ok(resp.status().as_u16()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".to_owned()),
        }
    };
    let ledger = async {
        match tokio::time::timeout(CHECK_TIMEOUT, s.ledger.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".to_owned()),
        }
    };
    let (up, db) = tokio::join!(upstream, ledger);
    let ready = up.is_ok() && db.is_ok();
    let body = json!({
        "ready": ready,
        "upstream": match &up { Ok(status) => json!({"ok": true, "status": status}), Err(e) => json!({"ok": false, "error": e}) },
        "ledger": match &db { Ok(()) => json!({"ok": true}), Err(e) => json!({"ok": false, "error": e}) },
        "policy": {"hash": s.policy.current().hash()},
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

async fn metrics(State(s): State<Arc<AdminState>>) -> impl IntoResponse {
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}
