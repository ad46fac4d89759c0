//! The hash chain that makes the history tamper-evident.
//!
//! Each event's hash is `sha256(prev_hash || canonical(event))`, where `prev_hash` is
//! the hash of the previous event of the same repository (empty for the first) and
//! `canonical` is a length-prefixed encoding of every recorded field. Editing an event
//! changes its hash; deleting or inserting one breaks the next event's `prev_hash`.
//! Chains are per repository so that writes to different repositories never wait on
//! each other.

use chrono::{DateTime, Utc};
use sha2::{Digest as _, Sha256};

/// Bumped if the encoding ever changes, so old and new chains cannot be confused.
const DOMAIN: &[u8] = b"tagwarden-event-v1\n";

/// The fields of an event that the hash covers, as stored.
#[derive(Debug, Clone, Default)]
pub struct HashedFields<'a> {
    pub at: DateTime<Utc>,
    pub action: &'a str,
    pub repository: &'a str,
    pub tag: Option<&'a str>,
    pub digest: Option<&'a str>,
    pub previous_digest: Option<&'a str>,
    pub class: Option<&'a str>,
    pub rule: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub identity: Option<&'a str>,
    pub identity_verified: bool,
    pub remote_addr: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub detail: Option<&'a serde_json::Value>,
}

/// Postgres keeps timestamps to the microsecond; hash exactly what it stores.
pub fn truncate_to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// One field of a canonical encoding: `len:value` and a newline, or `-` for none. The
/// log's leaves (`tlog::leaf`) encode their fields the same way.
pub fn field(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(v) => {
            out.extend_from_slice(v.len().to_string().as_bytes());
            out.push(b':');
            out.extend_from_slice(v.as_bytes());
        }
        None => out.push(b'-'),
    }
    out.push(b'\n');
}

/// The canonical encoding of an event.
pub fn canonical(e: &HashedFields<'_>) -> Vec<u8> {
    let mut out = DOMAIN.to_vec();
    let micros = e.at.timestamp_micros().to_string();
    // `detail` is JSON: serde_json's default map is ordered by key, so the encoding is
    // the same before storing and after reading it back from jsonb.
    let detail = e.detail.map(|d| d.to_string());
    for value in [
        Some(micros.as_str()),
        Some(e.action),
        Some(e.repository),
        e.tag,
        e.digest,
        e.previous_digest,
        e.class,
        e.rule,
        e.reason,
        e.identity,
        Some(if e.identity_verified { "true" } else { "false" }),
        e.remote_addr,
        e.user_agent,
        e.request_id,
        detail.as_deref(),
    ] {
        field(&mut out, value);
    }
    out
}

/// The hash of an event chained to `prev_hash` (empty for a chain's first event).
pub fn hash(prev_hash: &[u8], e: &HashedFields<'_>) -> Vec<u8> {
    Sha256::new()
        .chain_update(prev_hash)
        .chain_update(canonical(e))
        .finalize()
        .to_vec()
}

/// What is wrong at one link of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Break {
    /// The event's content no longer matches its hash: it was edited.
    Edited { id: i64 },
    /// The event does not follow the one before it: events were deleted, inserted or
    /// reordered before it.
    Unlinked { id: i64 },
    /// A hashed chain continues with an event that has no hash.
    Unhashed { id: i64 },
    /// The chain ends before its recorded head: events at the end were deleted.
    TailMissing { last_id: Option<i64>, head_id: i64 },
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Break::Edited { id } => write!(f, "event {id} was modified: its content does not match its hash"),
            Break::Unlinked { id } => write!(f, "event {id} does not follow the previous event: events before it were deleted, inserted or reordered"),
            Break::Unhashed { id } => write!(f, "event {id} has no hash although earlier events of its repository do"),
            Break::TailMissing { last_id, head_id } => match last_id {
                Some(last) => write!(f, "the chain ends at event {last} but its head records event {head_id}: later events were deleted"),
                None => write!(f, "the chain is empty but its head records event {head_id}: its events were deleted"),
            },
        }
    }
}

/// Walks one repository's events in id order and finds the first broken link.
#[derive(Debug, Default)]
pub struct Verifier {
    prev: Option<Vec<u8>>,
    last_id: Option<i64>,
    /// Events before the chain began (written before hashing existed).
    pub unhashed_prefix: u64,
    pub checked: u64,
    /// Events after the chains ended, left to the transparency log.
    pub logged: u64,
    pub broken: Option<Break>,
}

impl Verifier {
    /// Check the next event. Returns false once the chain is broken.
    pub fn next(
        &mut self,
        id: i64,
        fields: &HashedFields<'_>,
        prev_hash: Option<&[u8]>,
        stored: Option<&[u8]>,
    ) -> bool {
        if self.broken.is_some() {
            return false;
        }
        let Some(stored) = stored else {
            if self.prev.is_some() {
                self.broken = Some(Break::Unhashed { id });
                return false;
            }
            self.unhashed_prefix += 1;
            self.last_id = Some(id);
            return true;
        };
        let expected_prev: &[u8] = self.prev.as_deref().unwrap_or(&[]);
        if prev_hash.unwrap_or(&[]) != expected_prev {
            self.broken = Some(Break::Unlinked { id });
            return false;
        }
        if hash(expected_prev, fields) != stored {
            self.broken = Some(Break::Edited { id });
            return false;
        }
        self.prev = Some(stored.to_vec());
        self.last_id = Some(id);
        self.checked += 1;
        true
    }

    /// Compare the end of the chain with its recorded head.
    pub fn finish(&mut self, head: Option<(i64, &[u8])>) {
        if self.broken.is_some() {
            return;
        }
        if let Some((head_id, head_hash)) = head {
            if self.last_id != Some(head_id) || self.prev.as_deref() != Some(head_hash) {
                self.broken = Some(Break::TailMissing {
                    last_id: self.last_id,
                    head_id,
                });
            }
        }
    }

    /// The hash at the end of the chain, for anchoring elsewhere.
    pub fn head_hash(&self) -> Option<&[u8]> {
        self.prev.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(action: &str, tag: &str) -> HashedFields<'static> {
        HashedFields {
            at: DateTime::from_timestamp_micros(1_790_000_000_123_456).unwrap(),
            action: Box::leak(action.to_owned().into_boxed_str()),
            repository: "team/app",
            tag: Some(Box::leak(tag.to_owned().into_boxed_str())),
            digest: Some("sha256:aa"),
            ..HashedFields::default()
        }
    }

    fn chain(events: &[HashedFields<'_>]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut prev = Vec::new();
        events
            .iter()
            .map(|e| {
                let h = hash(&prev, e);
                let link = (prev.clone(), h.clone());
                prev = h;
                link
            })
            .collect()
    }

    #[test]
    fn the_encoding_is_unambiguous() {
        let a = HashedFields {
            tag: Some("a"),
            digest: Some("bc"),
            ..event("create", "x")
        };
        let b = HashedFields {
            tag: Some("ab"),
            digest: Some("c"),
            ..event("create", "x")
        };
        let c = HashedFields {
            tag: None,
            ..event("create", "x")
        };
        let d = HashedFields {
            tag: Some(""),
            ..event("create", "x")
        };
        assert_ne!(canonical(&a), canonical(&b));
        assert_ne!(canonical(&c), canonical(&d));
    }

    #[test]
    fn an_intact_chain_verifies_and_each_kind_of_tampering_is_found() {
        let events = [
            event("create", "1.0.0"),
            event("refuse", "1.0.0"),
            event("repush", "1.0.0"),
        ];
        let links = chain(&events);
        let verify = |events: &[HashedFields<'_>],
                      links: &[(Vec<u8>, Vec<u8>)],
                      ids: &[i64],
                      head: Option<(i64, &[u8])>| {
            let mut v = Verifier::default();
            for ((e, (p, h)), id) in events.iter().zip(links).zip(ids) {
                v.next(*id, e, Some(p), Some(h));
            }
            v.finish(head);
            v.broken
        };
        let head = (3, links[2].1.as_slice());
        assert_eq!(verify(&events, &links, &[1, 2, 3], Some(head)), None);

        let mut edited = events.clone();
        edited[1].digest = Some("sha256:bb");
        assert_eq!(
            verify(&edited, &links, &[1, 2, 3], Some(head)),
            Some(Break::Edited { id: 2 })
        );

        let (e, l) = (
            [events[0].clone(), events[2].clone()],
            [links[0].clone(), links[2].clone()],
        );
        assert_eq!(
            verify(&e, &l, &[1, 3], Some(head)),
            Some(Break::Unlinked { id: 3 })
        );

        assert_eq!(
            verify(&events[..2], &links[..2], &[1, 2], Some(head)),
            Some(Break::TailMissing {
                last_id: Some(2),
                head_id: 3
            })
        );
    }

    #[test]
    fn events_before_the_chain_began_are_counted_not_failed() {
        let mut v = Verifier::default();
        let e = event("create", "old");
        assert!(v.next(1, &e, None, None));
        let h = hash(&[], &e);
        assert!(v.next(2, &e, Some(&[]), Some(&h)));
        assert!(
            !v.next(3, &e, None, None),
            "a gap in hashing after the chain began"
        );
        assert_eq!((v.unhashed_prefix, v.checked), (1, 1));
        assert_eq!(v.broken, Some(Break::Unhashed { id: 3 }));
    }

    #[test]
    fn timestamps_are_hashed_as_postgres_stores_them() {
        let t = DateTime::from_timestamp_nanos(1_790_000_000_123_456_789);
        assert_eq!(truncate_to_micros(t).timestamp_subsec_nanos(), 123_456_000);
    }
}
