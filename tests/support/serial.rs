//! Suites that must not overlap in the one test process. The soak measures memory and
//! throughput with many clients, the fault tests stop and stall what tagwarden depends
//! on: before they shared a binary, neither ran beside the other, and they still must
//! not. Fault tests may overlap each other (as they always did); the soak runs alone.

use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static HEAVY: RwLock<()> = RwLock::const_new(());

/// Held by each fault test: others of its kind may run beside it, the soak may not.
pub async fn fault() -> RwLockReadGuard<'static, ()> {
    HEAVY.read().await
}

/// Held by the soak: no fault test runs beside it.
pub async fn soak() -> RwLockWriteGuard<'static, ()> {
    HEAVY.write().await
}
