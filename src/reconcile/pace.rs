//! An even pace for registry requests, so that a pass over a large registry never
//! competes with the clients it protects.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// At most `per_second` requests a second, spaced evenly.
pub struct Pacer {
    gap: Duration,
    next: Mutex<Instant>,
}

impl Pacer {
    pub fn new(per_second: u32) -> Pacer {
        Pacer {
            gap: Duration::from_secs(1) / per_second.max(1),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Wait for the next slot.
    pub async fn wait(&self) {
        let mut next = self.next.lock().await;
        let now = Instant::now();
        if *next > now {
            tokio::time::sleep_until(*next).await;
        }
        *next = (*next).max(now) + self.gap;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn spaces_requests_evenly() {
        let p = Pacer::new(10);
        let start = Instant::now();
        for _ in 0..11 {
            p.wait().await;
        }
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }
}
