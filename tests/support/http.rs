//! HTTP helpers: a client that shows responses as they are, and OCI error checks.

use std::time::{Duration, Instant};

use reqwest::{Client, IntoUrl, Response, StatusCode};
use serde_json::Value;

use super::process::LoggedChild;

/// The four manifest media types; what a registry client sends in `Accept`.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json";

/// A client that never follows redirects and ignores proxy settings in the environment,
/// so each response is exactly what the server under test sent.
pub fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("build HTTP client")
}

/// `GET url` with [`client`]; panics if no answer comes.
pub async fn get(url: impl IntoUrl) -> Response {
    client().get(url).send().await.unwrap()
}

/// `GET url` with `token` as the bearer; panics if no answer comes.
pub async fn get_as(url: impl IntoUrl, token: &str) -> Response {
    client().get(url).bearer_auth(token).send().await.unwrap()
}

/// The body of `GET url`, whatever its status.
pub async fn get_text(url: impl IntoUrl) -> String {
    get(url).await.text().await.unwrap()
}

/// The body of `GET url` with `token` as the bearer, whatever its status.
pub async fn get_text_as(url: impl IntoUrl, token: &str) -> String {
    get_as(url, token).await.text().await.unwrap()
}

/// Why a process did not come up.
#[derive(Debug)]
pub enum StartError {
    /// It exited; `port_taken` if its log says the address was already in use (another
    /// test grabbed the port first), which is worth a retry on new ports.
    Exited {
        status: String,
        port_taken: bool,
    },
    TimedOut {
        last: String,
    },
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Exited { status, .. } => write!(f, "exited ({status})"),
            StartError::TimedOut { last } => write!(f, "timed out (last answer: {last})"),
        }
    }
}

/// Polls `url` until it answers one of `accept`, while checking that `child` is alive.
pub async fn wait_until_answers(
    url: &str,
    accept: &[StatusCode],
    timeout: Duration,
    child: &mut LoggedChild,
) -> Result<(), StartError> {
    wait_until_answers_with(url, accept, None, timeout, child).await
}

/// [`wait_until_answers`], counting only answers that carry the header `marker`
/// (name, value): answers from the process started, not from another server that took
/// its port first.
pub async fn wait_until_answers_with(
    url: &str,
    accept: &[StatusCode],
    marker: Option<(&str, &str)>,
    timeout: Duration,
    child: &mut LoggedChild,
) -> Result<(), StartError> {
    let client = Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("build HTTP client");
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no attempt");
    while Instant::now() < deadline {
        if let Some(status) = child.exited() {
            let port_taken = child
                .logs()
                .to_lowercase()
                .contains("address already in use");
            return Err(StartError::Exited { status, port_taken });
        }
        match client.get(url).send().await {
            Ok(resp)
                if accept.contains(&resp.status())
                    && marker.is_none_or(|(name, value)| {
                        resp.headers().get(name).is_some_and(|v| v == value)
                    }) =>
            {
                return Ok(())
            }
            Ok(resp) if accept.contains(&resp.status()) => {
                last = format!("status {} from another server", resp.status())
            }
            Ok(resp) => last = format!("status {}", resp.status()),
            Err(e) => last = format!("error {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(StartError::TimedOut { last })
}

/// One entry of an OCI error body.
#[derive(Debug, Clone)]
pub struct OciErrorEntry {
    pub code: String,
    pub message: String,
}

/// Reads the response and asserts it has `status` and an OCI error body
/// `{"errors":[{"code":…, "message":…}]}`; returns the first error.
pub async fn expect_oci_error(resp: Response, status: StatusCode, context: &str) -> OciErrorEntry {
    let actual = resp.status();
    let body = resp.text().await.unwrap_or_default();
    assert_eq!(actual, status, "{context}: unexpected status; body: {body}");
    parse_oci_error(&body, context)
}

/// Like [`expect_oci_error`], accepting any status `is_ok_status` approves.
pub async fn expect_oci_error_where(
    resp: Response,
    is_ok_status: impl Fn(StatusCode) -> bool,
    context: &str,
) -> (StatusCode, OciErrorEntry) {
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    assert!(
        is_ok_status(status),
        "{context}: unexpected status {status}; body: {body}"
    );
    (status, parse_oci_error(&body, context))
}

pub fn parse_oci_error(body: &str, context: &str) -> OciErrorEntry {
    let json: Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{context}: body is not JSON ({e}): {body:?}"));
    let first = json
        .get("errors")
        .and_then(|e| e.as_array())
        .and_then(|a| a.first())
        .unwrap_or_else(|| panic!("{context}: no `errors` array with an entry: {body}"));
    let code = first.get("code").and_then(Value::as_str);
    let message = first.get("message").and_then(Value::as_str);
    match (code, message) {
        (Some(code), Some(message)) => OciErrorEntry {
            code: code.to_string(),
            message: message.to_string(),
        },
        _ => panic!("{context}: error entry lacks string `code` and `message`: {body}"),
    }
}

/// Value of a response header as a string, if present and visible ASCII.
pub fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}
