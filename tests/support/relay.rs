//! A TCP relay that can be cut, restored, or made to hold back the server's answers, to
//! put network failures between tagwarden and Postgres or the registry at exact moments.
//!
//! While cut, every relayed connection is dropped and new ones are closed at once,
//! which is what a client sees when its server goes down. While holding, HTTP requests
//! still reach the server, but the answer to a `PUT` waits in the relay: the moment
//! after the registry stored a manifest and before tagwarden heard about it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Pass,
    Hold,
    Cut,
}

pub struct Relay {
    port: u16,
    mode: Arc<watch::Sender<Mode>>,
    target: Arc<std::sync::Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Relay 127.0.0.1:<new port> to `target` ("host:port").
    pub async fn start(target: &str) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let port = listener.local_addr().expect("relay addr").port();
        let mode = Arc::new(watch::channel(Mode::Pass).0);
        let current = Arc::new(std::sync::Mutex::new(target.to_string()));
        let task = tokio::spawn({
            let mode = mode.clone();
            let current = current.clone();
            async move {
                loop {
                    let Ok((inbound, _)) = listener.accept().await else {
                        continue;
                    };
                    if *mode.borrow() == Mode::Cut {
                        drop(inbound);
                        continue;
                    }
                    let target = current.lock().unwrap().clone();
                    let mode = mode.clone();
                    tokio::spawn(async move {
                        let Ok(outbound) = TcpStream::connect(&target).await else {
                            return;
                        };
                        let (in_r, in_w) = inbound.into_split();
                        let (out_r, out_w) = outbound.into_split();
                        let mut cut = mode.subscribe();
                        let put_seen = Arc::new(AtomicBool::new(false));
                        tokio::select! {
                            _ = pump(in_r, out_w, mode.subscribe(), put_seen.clone(), false) => {}
                            _ = pump(out_r, in_w, mode.subscribe(), put_seen, true) => {}
                            _ = cut.wait_for(|m| *m == Mode::Cut) => {}
                        }
                    });
                }
            }
        });
        Relay {
            port,
            mode,
            target: current,
            task,
        }
    }

    /// Send new connections to `target` from now on; relayed ones stay where they are,
    /// as after a DNS or virtual-IP switch.
    pub fn retarget(&self, target: &str) {
        *self.target.lock().unwrap() = target.to_string();
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Drop every relayed connection (and any answer held on one) and refuse new ones
    /// until [`Relay::restore`].
    pub fn cut(&self) {
        self.mode.send_replace(Mode::Cut);
    }

    /// Keep relaying requests, but hold the server's answer to each `PUT` until
    /// [`Relay::restore`].
    pub fn hold_responses(&self) {
        self.mode.send_replace(Mode::Hold);
    }

    pub fn restore(&self) {
        self.mode.send_replace(Mode::Pass);
    }
}

/// Copy one direction. Answers (`is_response`) that follow a `PUT` on the connection
/// wait while the relay holds.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
    put_seen: Arc<AtomicBool>,
    is_response: bool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if !is_response && buf[..n].starts_with(b"PUT ") {
            put_seen.store(true, Ordering::SeqCst);
        }
        if is_response && put_seen.load(Ordering::SeqCst) {
            // A held answer is dropped, not delivered, when the relay is cut.
            match mode.wait_for(|m| *m != Mode::Hold).await {
                Ok(m) if *m == Mode::Pass => {}
                _ => return,
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
