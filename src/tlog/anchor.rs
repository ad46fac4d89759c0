//! Anchoring the database's log to the last checkpoint this tagwarden signed.
//!
//! The checkpoint is kept in a state file, outside the database. On start and before
//! every signature, the database's tree must still contain it: at least as many leaves,
//! and the same root at its size. If not, history was truncated or rewritten under
//! tagwarden; it then signs nothing and refuses manifest writes (503) until an operator
//! looks, rather than extend a forked history.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use sqlx::PgConnection;

use super::{hex_hash, note, root_at, store, LogError};

/// Whether manifest writes are refused because the log is not anchored, and why.
#[derive(Debug, Clone, Default)]
pub struct Gate(Arc<RwLock<Option<String>>>);

impl Gate {
    pub fn refuse(&self, why: String) {
        tracing::error!(reason = %why, "transparency log: refusing manifest writes");
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(why);
    }

    /// The reason writes are refused, if they are.
    pub fn refusal(&self) -> Option<String> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The state file: the last checkpoint note this tagwarden signed.
#[derive(Debug, Clone)]
pub struct StateFile(PathBuf);

impl StateFile {
    pub fn new(path: &Path) -> Self {
        StateFile(path.to_owned())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The last signed checkpoint, or `None` before the first.
    pub fn read(&self) -> Result<Option<String>, String> {
        match std::fs::read_to_string(&self.0) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("tlog.state_file {}: {e}", self.0.display())),
        }
    }

    /// Replace the state atomically (write a sibling, fsync, rename).
    pub fn write(&self, note: &str) -> Result<(), String> {
        use std::io::Write as _;
        let tmp = self.0.with_extension("tmp");
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(note.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.0)
        })();
        result.map_err(|e| format!("tlog.state_file {}: {e}", self.0.display()))
    }
}

/// Check that the database's log extends the checkpoint note `anchor`. `Err(Refused)`
/// says how it does not.
pub async fn check(conn: &mut PgConnection, anchor: &str) -> Result<(), LogError> {
    let (size, root) = note::read_unverified(anchor).map_err(|e| {
        LogError::Refused(format!("the state file's checkpoint is unreadable: {e}"))
    })?;
    let db_size = store::tree_size(conn).await?;
    if db_size < size {
        return Err(LogError::Refused(format!(
            "the database's transparency log has {db_size} leaves but this tagwarden already signed a checkpoint of {size}: its history was truncated"
        )));
    }
    let db_root = match root_at(conn, size).await {
        Ok(r) => r,
        Err(LogError::Incomplete(e)) => {
            return Err(LogError::Refused(format!(
                "the database's transparency log cannot produce the root of the signed checkpoint of {size} leaves ({e}): its history was altered"
            )))
        }
        Err(e) => return Err(e),
    };
    if db_root != root {
        return Err(LogError::Refused(format!(
            "the database's transparency log at {size} leaves has root {} but this tagwarden signed {}: its history was rewritten",
            hex_hash(&db_root),
            hex_hash(&root)
        )));
    }
    Ok(())
}
