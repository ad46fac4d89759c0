//! Browser sessions for the audit pages.
//!
//! Browsers do not send bearer tokens by themselves, so an auditor signs in once with
//! their token and gets a cookie. The cookie never holds the token: it holds an expiry
//! and `HMAC-SHA256(key, expiry, SHA-256(token))`, with a key drawn at random when
//! tagwarden starts. Checking a cookie recomputes the MAC for every configured token
//! and compares each in constant time, as the API does with tokens. A session ends
//! when it expires, when its token is removed from the configuration, when tagwarden
//! restarts (new key), or when the browser signs out.

use std::sync::Arc;
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

const VERSION: &str = "v1";
/// Separates what the MAC covers from anything else keyed with the same secret.
const CONTEXT: &[u8] = b"tagwarden audit page session v1\0";

/// Issues and checks session cookies for the configured tokens.
pub struct Sessions {
    key: [u8; 32],
    tokens: Arc<Tokens>,
}

impl Sessions {
    /// Sessions with a fresh random key: none issued before survives.
    pub fn new(tokens: Arc<Tokens>) -> Self {
        let mut key = [0u8; 32];
        getrandom::getrandom(&mut key).expect("the operating system's random source");
        Sessions::with_key(key, tokens)
    }

    pub fn with_key(key: [u8; 32], tokens: Arc<Tokens>) -> Self {
        Sessions { key, tokens }
    }

    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// The caller a token belongs to and a session value for it, if the token is
    /// configured.
    pub fn sign_in(&self, token: &str, now: DateTime<Utc>) -> Option<(Caller, String)> {
        let caller = self.tokens.authenticate(token)?.clone();
        let expires = now.timestamp().saturating_add(LIFETIME.as_secs() as i64);
        let mac = self.mac(expires, &auth::hash(token));
        let value = format!("{VERSION}.{expires}.{}", URL_SAFE_NO_PAD.encode(mac));
        Some((caller, value))
    }

    /// The caller of a session value, if it is one this process issued, it has not
    /// expired, and its token is still configured.
    pub fn check(&self, value: &str, now: DateTime<Utc>) -> Option<&Caller> {
        let mut parts = value.split('.');
        let (Some(VERSION), Some(expires), Some(mac), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        if !expires.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let expires: i64 = expires.parse().ok()?;
        let mac = URL_SAFE_NO_PAD.decode(mac).ok()?;
        if mac.len() != 32 || expires <= now.timestamp() {
            return None;
        }
        self.tokens
            .find(|token_hash| -> Choice { self.mac(expires, token_hash)[..].ct_eq(&mac[..]) })
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

    fn mac(&self, expires: i64, token_hash: &[u8; 32]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(CONTEXT);
        mac.update(expires.to_string().as_bytes());
        mac.update(b"\0");
        mac.update(token_hash);
        mac.finalize().into_bytes().into()
    }
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
        let later = format!(
            "v1.{}.{}",
            parts[1].parse::<i64>().unwrap() + 3600,
            parts[2]
        );
        let mut flipped = parts[2].to_string().into_bytes();
        flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
        let flipped = format!("v1.{}.{}", parts[1], String::from_utf8(flipped).unwrap());
        for bad in [
            String::new(),
            ALICE.to_string(),
            later,
            flipped,
            format!("v2.{}.{}", parts[1], parts[2]),
            format!("{value}.x"),
            format!("v1.+{}.{}", parts[1], parts[2]),
            format!("v1.{}.{}", parts[1], &parts[2][..10]),
        ] {
            assert!(s.check(&bad, now()).is_none(), "{bad:?}");
        }
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
