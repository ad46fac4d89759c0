//! The transparency log on the admin listener, in the C2SP tlog-tiles layout:
//! `/log/checkpoint` (the newest signed note) and `/log/tile/<L>/<N>[.p/<W>]` (hash
//! tiles). Behind a reader token, unless `tlog.public` is set. A database that cannot
//! be reached answers 503; a statement that fails is a fault, 500, logged with its cause.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{middleware, Router};
use http::header;
use sqlx::PgPool;

use super::{auth, ApiError, Tokens};
use crate::ledger::LedgerError;
use crate::tlog::{store, tree};

#[derive(Clone)]
pub struct LogState {
    pub pool: PgPool,
}

pub fn router(state: LogState, tokens: Arc<Tokens>, public: bool) -> Router {
    let routes = Router::new()
        .route("/log/checkpoint", get(checkpoint))
        .route("/log/tile/{*path}", get(tile))
        .with_state(state);
    if public {
        routes
    } else {
        routes.layer(middleware::from_fn_with_state(tokens, auth::require_reader))
    }
}

async fn checkpoint(State(s): State<LogState>) -> Result<Response, ApiError> {
    let mut conn = s.pool.acquire().await.map_err(LedgerError::from)?;
    let Some((_, note)) = store::latest_checkpoint(&mut conn)
        .await
        .map_err(LedgerError::from)?
    else {
        return Err(ApiError::NotFound);
    };
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        note,
    )
        .into_response())
}

async fn tile(State(s): State<LogState>, Path(path): Path<String>) -> Result<Response, ApiError> {
    let Some(t) = tree::parse_c2sp_path(&format!("tile/{path}")) else {
        return Err(ApiError::Invalid(format!(
            "{path:?} is not a hash tile path (<L>/<N>[.p/<W>])"
        )));
    };
    let mut conn = s.pool.acquire().await.map_err(LedgerError::from)?;
    let stored = store::tile(&mut conn, t.level(), t.level_index())
        .await
        .map_err(LedgerError::from)?;
    let want = t.width() as usize * tlog_tiles::HASH_SIZE;
    match stored {
        Some((width, data)) if width >= t.width() && data.len() >= want => Ok((
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                // A full tile never changes; a partial one is a prefix of what follows.
                (header::CACHE_CONTROL, "max-age=31536000, immutable"),
            ],
            data[..want].to_vec(),
        )
            .into_response()),
        _ => Err(ApiError::NotFound),
    }
}
