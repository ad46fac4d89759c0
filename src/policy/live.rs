//! The policy in force, replaceable while tagwarden runs (see [`crate::reload`]).
//!
//! A request takes one [`Arc<Policy>`] snapshot when it starts and decides everything
//! with it, so a reload never splits a request between two policies; the next request
//! sees the new one. Readers hold the lock only to clone the `Arc`.

use std::sync::{Arc, RwLock};

use super::Policy;

/// A shared, swappable handle on the policy in force.
#[derive(Clone, Debug)]
pub struct LivePolicy(Arc<RwLock<Arc<Policy>>>);

impl LivePolicy {
    pub fn new(policy: Policy) -> LivePolicy {
        LivePolicy(Arc::new(RwLock::new(Arc::new(policy))))
    }

    /// The policy in force now: a snapshot that later reloads do not change.
    pub fn current(&self) -> Arc<Policy> {
        // A poisoned lock still holds a whole `Arc`: the swap is one assignment.
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Put `policy` in force for every request that starts from now on; returns the one
    /// it replaced.
    pub fn replace(&self, policy: Policy) -> Arc<Policy> {
        let mut slot = self.0.write().unwrap_or_else(|p| p.into_inner());
        std::mem::replace(&mut *slot, Arc::new(policy))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PolicyConfig;
    use crate::policy::{RuleConfig, TagClass};

    fn only(class: TagClass) -> Policy {
        Policy::from_config(&PolicyConfig {
            include_defaults: false,
            rules: vec![RuleConfig {
                name: "all".into(),
                tag: ".*".into(),
                repository: None,
                class,
                mode: Default::default(),
                advance: None,
                allow_prerelease: false,
                follow: false,
            }],
        })
        .expect("valid policy")
    }

    #[test]
    fn a_snapshot_keeps_its_policy_across_a_replace() {
        let live = LivePolicy::new(only(TagClass::Moving));
        let before = live.current();
        let old = live.replace(only(TagClass::Immutable));
        assert_eq!(before.classify("a", "t").class, TagClass::Moving);
        assert_eq!(old.classify("a", "t").class, TagClass::Moving);
        assert_eq!(live.current().classify("a", "t").class, TagClass::Immutable);
        assert_ne!(before.hash(), live.current().hash());
    }
}
