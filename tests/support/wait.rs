//! Waiting for what the system under test does in the background (a held request
//! reaching the registry, a checkpoint being signed, a metric counting): poll until it
//! holds, and fail with the last state seen, never after a fixed sleep.

use std::future::Future;
use std::time::{Duration, Instant};

/// Call `attempt` every `every` until it returns `Ok`, and return that value. Each
/// `Err` says what was seen instead; the last one is the panic message once `within`
/// has passed.
pub async fn until<T, F, Fut>(within: Duration, every: Duration, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(seen) if Instant::now() >= deadline => {
                panic!("not within {within:?}: {seen}")
            }
            Err(_) => tokio::time::sleep(every).await,
        }
    }
}
