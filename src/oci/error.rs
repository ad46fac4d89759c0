//! OCI error responses: `{"errors":[{"code","message","detail"}]}`, rendered in one place.

use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::header::HeaderName;
use http::{header, HeaderValue, StatusCode};
use serde_json::{json, Value};

pub use super::code::ErrorCode;

/// `Docker-Distribution-API-Version` value sent on responses tagwarden makes itself.
pub const API_VERSION: &str = "registry/2.0";

/// An error answered to the client in OCI format.
#[derive(Debug, Clone)]
pub struct OciError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub detail: Option<Value>,
    /// Extra response headers, such as `Retry-After` or an upstream's auth challenge.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The failure behind the answer, never shown to the client: logged with its chain
    /// once, when the answer is made.
    pub source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl OciError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        OciError {
            status,
            code,
            message: message.into(),
            detail: None,
            headers: Vec::new(),
            source: None,
        }
    }

    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    pub fn with_detail(mut self, detail: Value) -> Self {
        self.detail = Some(detail);
        self
    }

    pub fn with_retry_after(mut self, seconds: u32) -> Self {
        self.headers
            .push((header::RETRY_AFTER, HeaderValue::from(seconds)));
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn body(&self) -> Value {
        let mut e = json!({ "code": self.code.as_str(), "message": self.message });
        if let Some(d) = &self.detail {
            e["detail"] = d.clone();
        }
        json!({ "errors": [e] })
    }
}

impl IntoResponse for OciError {
    fn into_response(self) -> Response {
        if let Some(source) = &self.source {
            let (status, code, error) = (self.status.as_u16(), self.code, chain(&**source));
            if self.status == StatusCode::INTERNAL_SERVER_ERROR {
                tracing::error!(status, %code, error, "{}", self.message);
            } else {
                tracing::warn!(status, %code, error, "{}", self.message);
            }
        }
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut resp = Response::new(Body::from(body));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(
            "docker-distribution-api-version",
            HeaderValue::from_static(API_VERSION),
        );
        for (name, value) in self.headers {
            h.append(name, value);
        }
        if let Ok(phrase) =
            hyper::ext::ReasonPhrase::try_from(reason_phrase(&self.message).as_bytes())
        {
            resp.extensions_mut().insert(phrase);
        }
        resp
    }
}

/// Longest reason phrase sent, "..." included.
const MAX_REASON_PHRASE: usize = 120;

/// The message, shortened to fit an HTTP/1.1 status line.
///
/// Some clients (`ctr`, and every client on a 503) show only the status line, so the
/// reason phrase carries the start of the message. It must be visible ASCII, spaces
/// and tabs only (never CR or LF), and short; it is cut at a word boundary.
pub fn reason_phrase(message: &str) -> String {
    let clean: String = message
        .chars()
        .map(|c| match c {
            ' ' | '!'..='~' => c,
            '\t' | '\r' | '\n' => ' ',
            _ => '?',
        })
        .collect();
    let clean = clean.trim();
    if clean.len() <= MAX_REASON_PHRASE {
        return clean.to_owned();
    }
    const ELLIPSIS: &str = "...";
    let room = MAX_REASON_PHRASE - ELLIPSIS.len();
    // All ASCII now, so byte offsets are character boundaries.
    let cut = clean[..=room]
        .rfind(' ')
        .filter(|&i| i > room / 2)
        .unwrap_or(room);
    let head = clean[..cut].trim_end_matches([' ', ',', ';', ':', '.']);
    format!("{head}{ELLIPSIS}")
}

/// An error and its causes in one line, for logs and messages. A cause whose text is
/// already in the line (as a `"...: {0}"` format puts it) is not repeated.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}

impl std::error::Error for OciError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl std::fmt::Display for OciError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_message_is_the_reason_phrase() {
        assert_eq!(
            reason_phrase("tag a:1 is immutable"),
            "tag a:1 is immutable"
        );
    }

    #[test]
    fn a_long_message_is_cut_at_a_word_boundary() {
        let message = "tag team/app:1.0.0 is immutable: bound to sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef since 2024";
        let phrase = reason_phrase(message);
        assert!(phrase.len() <= MAX_REASON_PHRASE, "{phrase}");
        let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(
            phrase,
            format!("tag team/app:1.0.0 is immutable: bound to {digest}...")
        );
    }

    #[test]
    fn the_phrase_is_always_valid_for_a_status_line() {
        for message in [
            "line one\r\nSet-Cookie: x=1",
            "caf\u{e9} \u{1F600} \u{0} tab\there",
            &"x".repeat(500),
            "",
        ] {
            let phrase = reason_phrase(message);
            assert!(phrase.len() <= MAX_REASON_PHRASE, "{phrase}");
            assert!(
                phrase.bytes().all(|b| b == b' ' || b.is_ascii_graphic()),
                "{phrase:?}"
            );
            assert!(
                hyper::ext::ReasonPhrase::try_from(phrase.as_bytes()).is_ok(),
                "{phrase:?}"
            );
        }
    }

    #[test]
    fn the_body_carries_each_code_as_its_wire_string() {
        for code in ErrorCode::ALL {
            let body = OciError::new(StatusCode::BAD_REQUEST, code, "m").body();
            assert_eq!(body["errors"][0]["code"], code.as_str());
        }
    }

    #[test]
    fn the_source_is_kept_not_shown() {
        let io = std::io::Error::other("disk on fire");
        let e = OciError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Unknown, "m")
            .with_source(io);
        assert_eq!(
            std::error::Error::source(&e).map(ToString::to_string),
            Some("disk on fire".to_owned())
        );
        assert!(!e.body().to_string().contains("disk"));
    }

    #[test]
    fn a_chain_names_each_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer: {0}")]
        struct Shown(#[source] std::io::Error);
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Kept(#[source] std::io::Error);
        let io = || std::io::Error::other("inner");
        assert_eq!(chain(&Shown(io())), "outer: inner");
        assert_eq!(chain(&Kept(io())), "outer: inner");
    }

    #[test]
    fn every_error_response_carries_the_phrase_and_keeps_the_body() {
        let resp = OciError::new(
            StatusCode::CONFLICT,
            ErrorCode::Denied,
            "tag a:1 is immutable",
        )
        .into_response();
        let phrase = resp
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .expect("a reason phrase");
        assert_eq!(phrase.as_bytes(), b"tag a:1 is immutable");
        assert_eq!(resp.status(), StatusCode::CONFLICT);
    }
}
