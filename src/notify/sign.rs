//! `Tagwarden-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
//!
//! The timestamp is signed with the body so a receiver can reject replays of old
//! requests; `v1` names the scheme so another can be added beside it.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const HEADER: &str = "tagwarden-signature";

/// The header value for `body` sent at `unix` seconds.
pub fn signature(secret: &[u8], unix: i64, body: &[u8]) -> String {
    format!("t={unix},v1={}", hex::encode(mac(secret, unix, body)))
}

/// What a receiver does: recompute and compare in constant time.
pub fn verify(secret: &[u8], header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(format!("{t}.").as_bytes());
    m.update(body);
    m.verify_slice(&v1).is_ok()
}

fn mac(secret: &[u8], unix: i64, body: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(format!("{unix}.").as_bytes());
    m.update(body);
    m.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_an_independent_hmac_and_verifies() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let sig = signature(b"Jefe", 0, b"what do ya want for nothing?");
        let mut m = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        m.update(b"0.what do ya want for nothing?");
        let expected = hex::encode(m.finalize().into_bytes());
        assert_eq!(sig, format!("t=0,v1={expected}"));
        // The raw RFC vector, to pin the primitive itself.
        let mut raw = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        raw.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(raw.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(verify(b"Jefe", &sig, b"what do ya want for nothing?"));
    }

    #[test]
    fn rejects_another_body_time_or_secret() {
        let sig = signature(b"secret-secret-16", 1700000000, b"{\"a\":1}");
        assert!(verify(b"secret-secret-16", &sig, b"{\"a\":1}"));
        assert!(!verify(b"secret-secret-16", &sig, b"{\"a\":2}"));
        assert!(!verify(b"another-secret-1", &sig, b"{\"a\":1}"));
        let shifted = sig.replace("t=1700000000", "t=1700000001");
        assert!(!verify(b"secret-secret-16", &shifted, b"{\"a\":1}"));
        assert!(!verify(b"secret-secret-16", "garbage", b"{\"a\":1}"));
    }
}
