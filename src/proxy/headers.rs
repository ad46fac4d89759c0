//! Header rules at the proxy boundary: hop-by-hop headers, forwarding headers, and
//! `Location` rewriting.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::Authority;

/// RFC 9110 §7.6.1 connection-specific headers, plus the legacy ones proxies drop.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

/// Headers a client could use to steer the URLs the registry builds.
const FORWARDING: [HeaderName; 5] = [
    header::FORWARDED,
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-forwarded-prefix"),
];

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Remove hop-by-hop headers, including any named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Read the value as bytes: one non-ASCII byte elsewhere in it must not make every
    // name it lists survive.
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .filter_map(|name| HeaderName::from_bytes(name.trim_ascii()).ok())
        .collect();
    for name in listed.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// What tagwarden's own listener saw, to tell the registry where clients really are.
pub struct ForwardedFor<'a> {
    pub peer: IpAddr,
    /// The Host (or `:authority`) the client addressed; already validated.
    pub host: Option<&'a str>,
    pub proto: &'static str,
    /// Whether the peer is a trusted proxy whose own forwarding headers are kept.
    pub trusted_peer: bool,
}

/// Replace forwarding headers with tagwarden's own, so that the registry's `Location`s
/// point back at tagwarden and nobody else can steer them.
pub fn set_forwarding(headers: &mut HeaderMap, f: &ForwardedFor<'_>) {
    if f.trusted_peer {
        // Keep what the trusted proxy said, but append ourselves to the chain.
        append_forwarded_for(headers, f.peer);
        return;
    }
    for name in &FORWARDING {
        headers.remove(name);
    }
    headers.remove(&X_FORWARDED_FOR);
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static(f.proto),
    );
    if let Some(host) = f.host.and_then(|h| HeaderValue::from_str(h).ok()) {
        headers.insert(HeaderName::from_static("x-forwarded-host"), host);
    }
    append_forwarded_for(headers, f.peer);
}

fn append_forwarded_for(headers: &mut HeaderMap, peer: IpAddr) {
    let value = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(existing) if !existing.is_empty() => format!("{existing}, {peer}"),
        _ => peer.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(X_FORWARDED_FOR, v);
    }
}

/// Whether a Host value is a plain `host[:port]` (no userinfo, path or odd bytes), so it
/// is safe to pass on in `X-Forwarded-Host`.
pub fn is_plain_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
        && host.parse::<Authority>().is_ok()
}

/// If `location` is an absolute URL naming the upstream itself, make it relative so the
/// client comes back through tagwarden. Other absolute URLs (a storage backend's
/// presigned redirect) and relative ones are left alone.
pub fn rewrite_location(location: &HeaderValue, upstream: &Authority) -> Option<HeaderValue> {
    let s = location.to_str().ok()?;
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if !authority.eq_ignore_ascii_case(upstream.as_str()) {
        return None;
    }
    HeaderValue::from_str(path).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_listed_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.append(
            header::CONNECTION,
            HeaderValue::from_bytes(b"x-other, caf\xc3\xa9").unwrap(),
        );
        h.insert("x-other", HeaderValue::from_static("1"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::CONTENT_LENGTH));
    }

    #[test]
    fn client_forwarding_headers_are_replaced() {
        let mut h = HeaderMap::new();
        h.insert(
            header::FORWARDED,
            HeaderValue::from_static("host=evil.example"),
        );
        h.insert("x-forwarded-host", HeaderValue::from_static("evil.example"));
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        let f = ForwardedFor {
            peer: "127.0.0.1".parse().unwrap(),
            host: Some("tw.example:5000"),
            proto: "https",
            trusted_peer: false,
        };
        set_forwarding(&mut h, &f);
        assert!(!h.contains_key(header::FORWARDED));
        assert_eq!(h["x-forwarded-host"], "tw.example:5000");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    }

    #[test]
    fn trusted_proxies_keep_their_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-host",
            HeaderValue::from_static("public.example"),
        );
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        let f = ForwardedFor {
            peer: "10.0.0.2".parse().unwrap(),
            host: Some("internal:5000"),
            proto: "http",
            trusted_peer: true,
        };
        set_forwarding(&mut h, &f);
        assert_eq!(h["x-forwarded-host"], "public.example");
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 10.0.0.2");
    }

    #[test]
    fn locations_naming_the_upstream_become_relative() {
        let up: Authority = "registry:5000".parse().unwrap();
        let loc =
            HeaderValue::from_static("http://registry:5000/v2/a/blobs/uploads/x?_state=a%2Bb");
        assert_eq!(
            rewrite_location(&loc, &up).unwrap(),
            "/v2/a/blobs/uploads/x?_state=a%2Bb"
        );
        let s3 = HeaderValue::from_static("https://bucket.s3.example/x?sig=1");
        assert!(rewrite_location(&s3, &up).is_none());
        let rel = HeaderValue::from_static("/v2/a/blobs/uploads/x");
        assert!(rewrite_location(&rel, &up).is_none());
    }

    #[test]
    fn hosts_are_plain() {
        assert!(is_plain_host("tw.example:5000"));
        assert!(is_plain_host("[::1]:5000"));
        assert!(!is_plain_host("user@host"));
        assert!(!is_plain_host("host/path"));
        assert!(!is_plain_host(""));
    }
}
