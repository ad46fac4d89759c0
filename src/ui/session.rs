//! Browser sessions for the audit pages.
//!
//! Browsers do not send bearer tokens by themselves, so an auditor signs in once with
//! their token and gets a cookie. The cookie never holds the token: it holds a random
//! session id, an expiry and `HMAC-SHA256(key, id, expiry, SHA-256(token))`, with a key
//! drawn at random when tagwarden starts. Checking a cookie recomputes the MAC for
//! every configured token and compares each in constant time, as the API does with
//! tokens. A session ends when it expires, when its token is removed from the
//! configuration, when tagwarden restarts (new key), or when it signs out: signing out
//! records its id as revoked until its expiry, so a copy of the cookie stops working
//! too. The revoked ids are bounded: expired ones are pruned, and if
//! [`MAX_REVOKED`] sessions are signed out within one lifetime, the key is drawn anew,
//! which ends every session (everyone signs in again) and empties the list.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use http::{header, HeaderMap};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

use crate::api::auth::{self, Caller, Tokens};

/// The cookie's name.
pub const COOKIE: &str = "tagwarden_session";
/// The cookie is sent for the pages only, never for the API or metrics.
pub const COOKIE_PATH: &str = "/ui";
/// How long a session lasts after signing in.
pub const LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// Signed-out sessions remembered until they expire; one more rotates the key.
pub const MAX_REVOKED: usize = 10_000;

const VERSION: &str = "v2";
/// Separates what the MAC covers from anything else keyed with the same secret.
const CONTEXT: &[u8] = b"tagwarden audit page session v2\0";
/// Bytes of a session id: random, so that one session can be ended on its own.
const ID_LEN: usize = 16;

type SessionId = [u8; ID_LEN];

/// Issues and checks session cookies for the configured tokens.
pub struct Sessions {
    tokens: Arc<Tokens>,
    state: Mutex<State>,
    max_revoked: usize,
}

/// What signing out changes: the revoked ids (with their expiry), and the key.
struct State {
    key: [u8; 32],
    revoked: HashMap<SessionId, i64>,
}

/// A cookie value taken apart; nothing in it is trusted before the MAC is checked.
struct Parsed {
    id: SessionId,
    expires: i64,
    mac: Vec<u8>,
}

impl Sessions {
    /// Sessions with a fresh random key: none issued before survives.
    pub fn new(tokens: Arc<Tokens>) -> Self {
        Sessions::with_key(random(), tokens)
    }

    pub fn with_key(key: [u8; 32], tokens: Arc<Tokens>) -> Self {
        Sessions {
            tokens,
            state: Mutex::new(State {
                key,
                revoked: HashMap::new(),
            }),
            max_revoked: MAX_REVOKED,
        }
    }

    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// The caller a token belongs to and a session value for it, if the token is
    /// configured.
    pub fn sign_in(&self, token: &str, now: DateTime<Utc>) -> Option<(Caller, String)> {
        let caller = self.tokens.authenticate(token)?.clone();
        let id: SessionId = random();
        let expires = now.timestamp().saturating_add(LIFETIME.as_secs() as i64);
        let mac = mac(&self.state().key, &id, expires, &auth::hash(token));
        let value = format!(
            "{VERSION}.{}.{expires}.{}",
            URL_SAFE_NO_PAD.encode(id),
            URL_SAFE_NO_PAD.encode(mac)
        );
        Some((caller, value))
    }

    /// The caller of a session value, if it is one this process issued with its
    /// current key, it has not expired or been signed out, and its token is still
    /// configured.
    pub fn check(&self, value: &str, now: DateTime<Utc>) -> Option<&Caller> {
        self.verify(value, now).map(|(caller, _)| caller)
    }

    /// End the session of `value` for every copy of the cookie. Returns who it was,
    /// if it was a live session.
    pub fn sign_out(&self, value: &str, now: DateTime<Utc>) -> Option<&Caller> {
        let (caller, parsed) = self.verify(value, now)?;
        let mut state = self.state();
        let now = now.timestamp();
        state.revoked.retain(|_, expires| *expires > now);
        if state.revoked.len() >= self.max_revoked {
            tracing::warn!(
                max = self.max_revoked,
                "audit page: too many signed-out sessions to remember; new session key, every session ended"
            );
            state.key = random();
            state.revoked.clear();
        } else {
            state.revoked.insert(parsed.id, parsed.expires);
        }
        Some(caller)
    }

    fn verify(&self, value: &str, now: DateTime<Utc>) -> Option<(&Caller, Parsed)> {
        let parsed = parse(value)?;
        if parsed.expires <= now.timestamp() {
            return None;
        }
        let key = {
            let state = self.state();
            if state.revoked.contains_key(&parsed.id) {
                return None;
            }
            state.key
        };
        let caller = self.tokens.find(|token_hash| -> Choice {
            mac(&key, &parsed.id, parsed.expires, token_hash)[..].ct_eq(&parsed.mac[..])
        })?;
        Some((caller, parsed))
    }

    /// The lock is held for map operations only; a panic elsewhere cannot leave the
    /// state half-changed, so a poisoned lock is still usable.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The session value of a request's cookie, if it sends exactly one.
    pub fn from_headers<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        let mut found = None;
        for value in headers.get_all(header::COOKIE) {
            let value = value.to_str().ok()?;
            for pair in value.split(';') {
                if let Some((name, v)) = pair.trim().split_once('=') {
                    if name == COOKIE {
                        if found.is_some() {
                            return None;
                        }
                        found = Some(v);
                    }
                }
            }
        }
        found
    }
}

/// `v2.<id>.<expiry>.<mac>`, strictly: base64url without padding, decimal digits.
fn parse(value: &str) -> Option<Parsed> {
    let mut parts = value.split('.');
    let (Some(VERSION), Some(id), Some(expires), Some(mac), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    if expires.is_empty() || !expires.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let id: SessionId = URL_SAFE_NO_PAD.decode(id).ok()?.try_into().ok()?;
    let expires: i64 = expires.parse().ok()?;
    let mac = URL_SAFE_NO_PAD.decode(mac).ok()?;
    (mac.len() == 32).then_some(Parsed { id, expires, mac })
}

fn mac(key: &[u8; 32], id: &SessionId, expires: i64, token_hash: &[u8; 32]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(CONTEXT);
    mac.update(id);
    mac.update(expires.to_string().as_bytes());
    mac.update(b"\0");
    mac.update(token_hash);
    mac.finalize().into_bytes().into()
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::getrandom(&mut bytes).expect("the operating system's random source");
    bytes
}

/// `Set-Cookie` for a new session.
pub fn set_cookie(value: &str) -> String {
    format!(
        "{COOKIE}={value}; Path={COOKIE_PATH}; Max-Age={}; HttpOnly; SameSite=Strict",
        LIFETIME.as_secs()
    )
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path={COOKIE_PATH}; Max-Age=0; HttpOnly; SameSite=Strict")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ApiToken, Role, Secret};
    use http::HeaderValue;

    const ALICE: &str = "alice-token-abcdefghij";
    const SIEM: &str = "s1em-token-0123456789";

    fn tokens(list: &[(&str, &str)]) -> Arc<Tokens> {
        Arc::new(Tokens::new(
            &list
                .iter()
                .map(|(name, token)| ApiToken {
                    name: (*name).into(),
                    token: Secret::new(*token),
                    role: Role::Auditor,
                })
                .collect::<Vec<_>>(),
        ))
    }

    fn sessions() -> Sessions {
        Sessions::with_key([7; 32], tokens(&[("siem", SIEM), ("alice", ALICE)]))
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    #[test]
    fn a_session_names_the_holder_of_the_token_and_does_not_contain_it() {
        let s = sessions();
        let (caller, value) = s.sign_in(ALICE, now()).unwrap();
        assert_eq!(caller.name, "alice");
        assert!(
            !value.contains(ALICE) && !value.contains("alice"),
            "{value}"
        );
        assert_eq!(s.check(&value, now()).unwrap().name, "alice");
        let (_, siem) = s.sign_in(SIEM, now()).unwrap();
        assert_eq!(s.check(&siem, now()).unwrap().name, "siem");
        assert!(s.sign_in("alice-token-abcdefghiJ", now()).is_none());
        assert!(s.sign_in("", now()).is_none());
    }

    #[test]
    fn sessions_expire() {
        let s = sessions();
        let (_, value) = s.sign_in(ALICE, now()).unwrap();
        let lifetime = chrono::Duration::from_std(LIFETIME).unwrap();
        let almost = now() + lifetime - chrono::Duration::seconds(1);
        assert!(s.check(&value, almost).is_some());
        assert!(s.check(&value, now() + lifetime).is_none());
    }

    #[test]
    fn forged_altered_and_foreign_sessions_are_refused() {
        let s = sessions();
        let (_, value) = s.sign_in(ALICE, now()).unwrap();
        let parts: Vec<&str> = value.split('.').collect();
        assert_eq!(parts.len(), 4, "{value}");
        let (id, expires, mac) = (parts[1], parts[2], parts[3]);
        let later = format!("v2.{id}.{}.{mac}", expires.parse::<i64>().unwrap() + 3600);
        let flip = |part: &str| {
            let mut b = part.to_string().into_bytes();
            b[0] = if b[0] == b'A' { b'B' } else { b'A' };
            String::from_utf8(b).unwrap()
        };
        let (other_id, other_mac) = (flip(id), flip(mac));
        for bad in [
            String::new(),
            ALICE.to_string(),
            later,
            format!("v2.{id}.{expires}.{other_mac}"),
            format!("v2.{other_id}.{expires}.{mac}"),
            format!("v1.{id}.{expires}.{mac}"),
            format!("v1.{expires}.{mac}"),
            format!("{value}.x"),
            format!("v2.{id}.+{expires}.{mac}"),
            format!("v2.{id}..{mac}"),
            format!("v2.{}.{expires}.{mac}", &id[..10]),
            format!("v2.{id}.{expires}.{}", &mac[..10]),
        ] {
            assert!(s.check(&bad, now()).is_none(), "{bad:?}");
            assert!(s.sign_out(&bad, now()).is_none(), "{bad:?}");
        }
        assert!(s.check(&value, now()).is_some(), "still valid");
        // Another process (another key) did not issue it.
        let other = Sessions::with_key([8; 32], tokens(&[("alice", ALICE)]));
        assert!(other.check(&value, now()).is_none());
        // The token was removed from the configuration.
        let removed = Sessions::with_key([7; 32], tokens(&[("siem", SIEM)]));
        assert!(removed.check(&value, now()).is_none());
        // No tokens at all.
        let none = Sessions::with_key([7; 32], tokens(&[]));
        assert!(none.check(&value, now()).is_none());
        assert!(none.sign_in(ALICE, now()).is_none());
    }

    #[test]
    fn signing_out_ends_that_session_and_every_copy_of_it_only() {
        let s = sessions();
        let (_, first) = s.sign_in(ALICE, now()).unwrap();
        let (_, second) = s.sign_in(ALICE, now()).unwrap();
        assert_ne!(first, second, "each sign-in is its own session");
        let copy = first.clone();
        assert_eq!(s.sign_out(&first, now()).unwrap().name, "alice");
        assert!(
            s.check(&copy, now()).is_none(),
            "a copied cookie is refused"
        );
        assert!(s.sign_out(&copy, now()).is_none(), "already ended");
        assert!(s.check(&second, now()).is_some(), "other sessions go on");
    }

    #[test]
    fn revoked_sessions_are_forgotten_once_expired_and_bounded() {
        let s = Sessions {
            max_revoked: 2,
            ..sessions()
        };
        let lifetime = chrono::Duration::from_std(LIFETIME).unwrap();
        let (_, old) = s.sign_in(ALICE, now()).unwrap();
        s.sign_out(&old, now()).unwrap();
        // One lifetime later the old id has expired: pruned, not counted.
        let later = now() + lifetime;
        let (_, a) = s.sign_in(ALICE, later).unwrap();
        let (_, b) = s.sign_in(ALICE, later).unwrap();
        let (_, kept) = s.sign_in(SIEM, later).unwrap();
        s.sign_out(&a, later).unwrap();
        assert_eq!(s.state().revoked.len(), 1, "the expired id was pruned");
        s.sign_out(&b, later).unwrap();
        assert_eq!(s.state().revoked.len(), 2);
        assert!(s.check(&kept, later).is_some());
        // The list is full: the next sign-out draws a new key, ending every session.
        let (_, c) = s.sign_in(ALICE, later).unwrap();
        s.sign_out(&c, later).unwrap();
        assert!(s.state().revoked.is_empty());
        for ended in [&a, &b, &c, &kept] {
            assert!(s.check(ended, later).is_none(), "{ended}");
        }
        let (_, fresh) = s.sign_in(ALICE, later).unwrap();
        assert!(s.check(&fresh, later).is_some(), "signing in again works");
    }

    #[test]
    fn the_cookie_is_read_from_any_cookie_header_but_only_once() {
        let s = sessions();
        let mut h = HeaderMap::new();
        assert_eq!(s.from_headers(&h), None);
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=b; tagwarden_session=v1.5.x; c=d"),
        );
        assert_eq!(s.from_headers(&h), Some("v1.5.x"));
        h.append(
            header::COOKIE,
            HeaderValue::from_static("tagwarden_session=v1.6.y"),
        );
        assert_eq!(
            s.from_headers(&h),
            None,
            "two session cookies: none is used"
        );
    }

    #[test]
    fn cookies_are_http_only_and_same_site_strict() {
        let set = set_cookie("v1.1.abc");
        assert!(set.starts_with("tagwarden_session=v1.1.abc;"));
        for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=28800"] {
            assert!(set.contains(attr), "{set}");
        }
        let clear = clear_cookie();
        assert!(clear.contains("Max-Age=0") && clear.starts_with("tagwarden_session=;"));
    }
}
