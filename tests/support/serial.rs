//! Suites that must not overlap in the one test process. The soak loads two tagwarden
//! processes with many clients; the fault tests and the failover stop and stall what
//! tagwarden depends on, and the failover counts pushes in a window of seconds. Before
//! they shared a binary, none ran beside the soak, and they still must not. Fault tests
//! may overlap each other (as they always did).

use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static HEAVY: RwLock<()> = RwLock::const_new(());

/// Held by each fault test and the failover: others of their kind may run beside
/// them, the soak may not.
pub async fn fault() -> RwLockReadGuard<'static, ()> {
    HEAVY.read().await
}

/// Held by the soak: no fault test nor the failover runs beside it.
pub async fn soak() -> RwLockWriteGuard<'static, ()> {
    HEAVY.write().await
}
