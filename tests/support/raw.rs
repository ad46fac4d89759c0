//! A raw HTTP/1 client for requests no well-behaved client library will send: absolute-form
//! targets, lower-case methods, invalid UTF-8, NUL bytes, conflicting framing headers,
//! dot segments that a URL parser would resolve before sending.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What came back on one connection.
#[derive(Debug, Clone)]
pub struct RawAnswer {
    /// The final (non-1xx) status, or 0 if none arrived.
    pub status: u16,
    /// Everything received, lossily decoded.
    pub text: String,
    /// Whether the server closed the connection before `timeout` ran out.
    pub closed: bool,
    /// Whether the connection was reset. A server that answers before reading the whole
    /// request and then closes makes the kernel reset the connection, which can discard
    /// the answer before the client reads it.
    pub reset: bool,
}

impl RawAnswer {
    /// The body after the final response head (empty if there is none).
    pub fn body(&self) -> &str {
        let final_head = self.final_head_start();
        self.text[final_head..]
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or("")
    }

    /// The value of a header of the final response (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<String> {
        let start = self.final_head_start();
        let head = self.text[start..].split("\r\n\r\n").next().unwrap_or("");
        head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    fn final_head_start(&self) -> usize {
        let mut start = 0;
        while let Some(rest) = self.text.get(start..) {
            let code = rest.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok());
            match (code, rest.find("\r\n\r\n")) {
                (Some(c), Some(end)) if (100..200).contains(&c) => start += end + 4,
                _ => break,
            }
        }
        start
    }
}

/// Send `request` on a fresh connection to `addr` and read until the server closes it or
/// `timeout` passes. The request is written concurrently with reading, so a server that
/// answers before reading the whole body (413, 400) is still heard.
pub async fn exchange_within(addr: &str, request: Vec<u8>, timeout: Duration) -> RawAnswer {
    let conn = TcpStream::connect(addr).await.expect("connect");
    let (mut r, mut w) = conn.into_split();
    let writer = tokio::spawn(async move {
        // A server that answers early may close before everything is written.
        let _ = w.write_all(&request).await;
        let _ = w.flush().await;
        // Keep the write half open: half-closing would look like a truncated body.
        std::future::pending::<()>().await;
        drop(w);
    });
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + timeout;
    let mut reset = false;
    let closed = loop {
        match tokio::time::timeout_at(deadline, r.read(&mut chunk)).await {
            Ok(Ok(0)) => break true,
            Ok(Err(e)) => {
                reset = e.kind() == std::io::ErrorKind::ConnectionReset;
                break true;
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => break false,
        }
    };
    writer.abort();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let mut answer = RawAnswer {
        status: 0,
        text,
        closed,
        reset,
    };
    let start = answer.final_head_start();
    answer.status = answer.text[start..]
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    answer
}

/// Send raw bytes on a fresh connection and return the status code and the whole answer
/// (waiting at most 5 s).
pub async fn raw_exchange(addr: &str, request: &[u8]) -> (u16, String) {
    let a = exchange_within(addr, request.to_vec(), Duration::from_secs(5)).await;
    (a.status, a.text)
}

/// An HTTP/1.1 request with `Host: host`, the given headers, `Content-Length` when there
/// is a body (unless the headers set framing themselves) and `Connection: close`.
pub fn request(
    method: &str,
    target: &[u8],
    host: &str,
    headers: &[(&str, &[u8])],
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    let sets_framing = headers.iter().any(|(k, _)| {
        k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding")
    });
    for (k, v) in headers {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    if !sets_framing && (!body.is_empty() || method == "PUT" || method == "POST") {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(body);
    out
}
