//! A bound on how fast refusals are recorded, per repository, tag and client.
//!
//! Every refusal is answered, but the history is append-only: a client looping on a
//! refused push would otherwise grow it without bound. Past the budget of a window the
//! refusal is still given, counted in a metric and logged once per window, but not
//! appended.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Refusals recorded per key and window.
pub const PER_WINDOW: u32 = 30;
/// The window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Keys remembered at once; beyond it, expired windows are dropped, then all of them.
const MAX_KEYS: usize = 10_000;

/// Repository, tag and client.
type Key = (String, String, String);

#[derive(Default)]
pub struct RefusalLimiter {
    /// Per key: when its window started, and the refusals seen in it.
    windows: Mutex<HashMap<Key, (Instant, u32)>>,
}

/// What to do with one refusal.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    Record,
    /// Not recorded; `first` is true for the first one skipped in this window.
    Skip {
        first: bool,
    },
}

impl RefusalLimiter {
    pub fn admit(&self, repository: &str, tag: &str, who: &str) -> Admit {
        self.admit_at(repository, tag, who, Instant::now())
    }

    fn admit_at(&self, repository: &str, tag: &str, who: &str, now: Instant) -> Admit {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() >= MAX_KEYS {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
            if windows.len() >= MAX_KEYS {
                windows.clear();
            }
        }
        let entry = windows
            .entry((repository.to_owned(), tag.to_owned(), who.to_owned()))
            .or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        match entry.1 {
            n if n <= PER_WINDOW => Admit::Record,
            n => Admit::Skip {
                first: n == PER_WINDOW + 1,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_a_budget_per_key_and_window() {
        let l = RefusalLimiter::default();
        let t0 = Instant::now();
        for _ in 0..PER_WINDOW {
            assert_eq!(l.admit_at("r", "1.0.0", "alice", t0), Admit::Record);
        }
        assert_eq!(
            l.admit_at("r", "1.0.0", "alice", t0),
            Admit::Skip { first: true }
        );
        assert_eq!(
            l.admit_at("r", "1.0.0", "alice", t0),
            Admit::Skip { first: false }
        );
        // Other keys have budgets of their own.
        assert_eq!(l.admit_at("r", "1.0.0", "bob", t0), Admit::Record);
        assert_eq!(l.admit_at("r", "1.0.1", "alice", t0), Admit::Record);
        // A new window starts afresh.
        assert_eq!(
            l.admit_at("r", "1.0.0", "alice", t0 + WINDOW),
            Admit::Record
        );
    }

    #[test]
    fn memory_is_bounded() {
        let l = RefusalLimiter::default();
        let t0 = Instant::now();
        for i in 0..(MAX_KEYS + 10) {
            l.admit_at("r", &i.to_string(), "x", t0);
        }
        assert!(l.windows.lock().unwrap().len() <= MAX_KEYS);
    }
}
