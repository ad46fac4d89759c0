//! Who pushed: read from the request's credentials without ever logging them.
//!
//! tagwarden does not authenticate clients itself; the upstream does. The identity is
//! the Basic user name or the bearer token's `sub` claim, and it counts as verified only
//! once the upstream accepted the request that carried it.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use http::{header, HeaderMap};

use crate::ledger::Actor;
use crate::proxy::Client;

/// The longest identity recorded; longer ones are cut.
const MAX_IDENTITY: usize = 256;

pub fn actor(headers: &HeaderMap, client: &Client) -> Actor {
    Actor {
        identity: headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(identity_from_authorization),
        verified: false,
        remote_addr: Some(client.peer.ip().to_string()),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| clip(s, 512)),
        request_id: Some(client.request_id.clone()),
    }
}

pub(crate) fn identity_from_authorization(value: &str) -> Option<String> {
    let (scheme, credentials) = value.trim().split_once(' ')?;
    let credentials = credentials.trim();
    let id = if scheme.eq_ignore_ascii_case("basic") {
        let decoded = STANDARD.decode(credentials).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        text.split_once(':').map(|(user, _)| user.to_owned())?
    } else if scheme.eq_ignore_ascii_case("bearer") {
        // A JWT's payload is its second dot-separated part. The signature is the
        // upstream's business; this is only a label.
        let payload = credentials.split('.').nth(1)?;
        let json: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?)
                .ok()?;
        json.get("sub")?.as_str()?.to_owned()
    } else {
        return None;
    };
    let id = clip(&id, MAX_IDENTITY);
    (!id.is_empty() && !id.chars().any(char::is_control)).then_some(id)
}

pub(crate) fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_user_is_the_identity() {
        let v = format!("Basic {}", STANDARD.encode("alice:s3cret"));
        assert_eq!(identity_from_authorization(&v).as_deref(), Some("alice"));
    }

    #[test]
    fn bearer_subject_is_the_identity() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"ci-bot","iss":"auth"}"#);
        let v = format!("Bearer eyJhbGciOiJub25lIn0.{payload}.sig");
        assert_eq!(identity_from_authorization(&v).as_deref(), Some("ci-bot"));
    }

    #[test]
    fn garbage_gives_no_identity() {
        for v in [
            "Basic !!!",
            "Bearer opaque-token",
            "Digest x",
            "",
            "Basic",
            &format!("Basic {}", STANDARD.encode("nocolon")),
        ] {
            assert_eq!(identity_from_authorization(v), None, "{v}");
        }
    }
}
