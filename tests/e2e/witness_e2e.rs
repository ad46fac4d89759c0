//! Witnesses of the transparency log, end to end: a witness in the test (C2SP
//! tlog-witness, checking the log's signature and the consistency proof, cosigning
//! with its own Ed25519 key) cosigns each checkpoint; `/log/checkpoint` carries its
//! cosignature; `log verify` and `log verify-proof` require it with `--witness-key`;
//! and a witness that hangs or is down costs pushes nothing.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::StatusCode;
use support::http::{get_as, get_text};
use support::{api, wait, Database, Image, Registry, Tagwarden};
use tagwarden::tlog::cosignature::WitnessSigner;
use tagwarden::tlog::note;
use tempfile::TempDir;

const AUDITOR: &str = "auditor-token-0123456789";

fn cli(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tagwarden"))
        .args(args)
        .output()
        .expect("run tagwarden");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The log's key files and verifier key.
struct Log {
    dir: TempDir,
    verifier: String,
}

impl Log {
    fn new() -> Log {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("log.key");
        let (ok, out) = cli(&[
            "log",
            "keygen",
            "--out",
            key.to_str().unwrap(),
            "--name",
            "registry.test/log",
        ]);
        assert!(ok, "{out}");
        Log {
            dir,
            verifier: out.trim().to_owned(),
        }
    }

    fn config(&self, witnesses: &str) -> String {
        format!(
            "[[admin.tokens]]\nname = \"auditor\"\ntoken = \"{AUDITOR}\"\nrole = \"auditor\"\n\
             [tlog]\nsigning_key_file = {:?}\nstate_file = {:?}\ncheckpoint_interval = \"200ms\"\n{witnesses}",
            self.dir.path().join("log.key"),
            self.dir.path().join("log.state"),
        )
    }
}

/// What the test witness saw: each request's `old` size and the size it cosigned.
#[derive(Default)]
struct Seen {
    requests: Vec<(u64, u64)>,
    latest: u64,
    root: Option<tlog_tiles::Hash>,
}

/// A tlog-witness for one log, listening on loopback; `hang` makes it never answer.
struct Witness {
    url: String,
    vkey: String,
    seen: Arc<Mutex<Seen>>,
}

async fn witness(log_vkey: &str, hang: bool) -> Witness {
    let (signer, vkey) = WitnessSigner::generate("witness.test/w1").unwrap();
    let signer = Arc::new(signer);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (log_vkey, s) = (log_vkey.to_owned(), seen.clone());
    let handler = move |body: String| {
        let (signer, seen, log_vkey) = (signer.clone(), s.clone(), log_vkey.clone());
        async move {
            if hang {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            add_checkpoint(&body, &log_vkey, &signer, &seen)
        }
    };
    let app = axum::Router::new().route("/add-checkpoint", axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/add-checkpoint", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Witness { url, vkey, seen }
}

/// The witness's side of add-checkpoint: the log's signature, the old size it knows,
/// the consistency proof from it; then a cosignature line.
fn add_checkpoint(
    body: &str,
    log_vkey: &str,
    signer: &WitnessSigner,
    seen: &Mutex<Seen>,
) -> (StatusCode, String) {
    let (head, checkpoint) = body.split_once("\n\n").expect("a blank line");
    let mut lines = head.lines();
    let old: u64 = lines
        .next()
        .and_then(|l| l.strip_prefix("old "))
        .and_then(|n| n.parse().ok())
        .expect("an old line");
    let proof: Vec<tlog_tiles::Hash> = lines
        .map(|l| {
            let b = base64::engine::general_purpose::STANDARD.decode(l).unwrap();
            tlog_tiles::Hash(b.try_into().unwrap())
        })
        .collect();
    let Ok(c) = note::verify(checkpoint, log_vkey) else {
        return (StatusCode::FORBIDDEN, String::new());
    };
    let mut seen = seen.lock().unwrap();
    if old != seen.latest {
        return (StatusCode::CONFLICT, format!("{}\n", seen.latest));
    }
    if let Some(root) = seen.root {
        let consistent = old == 0
            || old == c.size && proof.is_empty() && root == c.root
            || tlog_tiles::check_tree(&proof, c.size, c.root, old, root).is_ok();
        if !consistent {
            return (StatusCode::UNPROCESSABLE_ENTITY, String::new());
        }
    }
    seen.requests.push((old, c.size));
    seen.latest = c.size;
    seen.root = Some(c.root);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    (StatusCode::OK, signer.cosign(checkpoint, now).unwrap())
}

fn witness_config(url: &str, vkey: &str, timeout: &str) -> String {
    format!("[[tlog.witnesses.witness]]\nurl = {url:?}\nkey = {vkey:?}\ntimeout = {timeout:?}\n")
}

async fn push(tw: &Tagwarden, tag: &str) -> (i64, Duration) {
    let image = Image::random(&[64]);
    for blob in image.blobs() {
        api::upload_blob(&tw.url(), "team/app", blob).await;
    }
    let start = Instant::now();
    let resp = api::put_manifest(&tw.url(), "team/app", tag, &image.manifest).await;
    let took = start.elapsed();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let id = support::http::header(&resp, "tagwarden-event")
        .expect("a receipt header")
        .parse()
        .unwrap();
    (id, took)
}

async fn served_checkpoint(tw: &Tagwarden) -> String {
    let resp = get_as(format!("{}/log/checkpoint", tw.admin_url()), AUDITOR).await;
    if resp.status() != StatusCode::OK {
        return String::new();
    }
    resp.text().await.unwrap()
}

/// Wait until `/log/checkpoint` is of `size` leaves and satisfies `done`.
async fn checkpoint_where(tw: &Tagwarden, size: u64, done: impl Fn(&str) -> bool) -> String {
    wait::until(
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            let note = served_checkpoint(tw).await;
            if note.starts_with(&format!("registry.test/log\n{size}\n")) && done(&note) {
                Ok(note)
            } else {
                Err(format!("no such checkpoint: {note:?}"))
            }
        },
    )
    .await
}

fn verify(db: &Database, log: &Log, witness_args: &[&str]) -> (bool, String) {
    let mut args = vec![
        "log",
        "verify",
        "--database-url",
        db.url(),
        "--verifier-key",
        &log.verifier,
    ];
    args.extend_from_slice(witness_args);
    cli(&args)
}

#[tokio::test]
async fn a_witness_cosigns_each_checkpoint_and_auditors_can_require_it() {
    let log = Log::new();
    let w = witness(&log.verifier, false).await;
    let registry = Registry::start().await;
    let db = Database::fresh();
    let config = log.config(&format!(
        "[tlog.witnesses]\nquorum = 1\n{}",
        witness_config(&w.url, &w.vkey, "5s")
    ));
    let tw = Tagwarden::builder(&registry.url(), db.url())
        .config(&config)
        .start()
        .await;

    let (first, _) = push(&tw, "1.0.0").await;
    let note = checkpoint_where(&tw, 1, |n| n.contains("\n— witness.test/w1 ")).await;
    // One note: the log's signature, then the witness's.
    assert_eq!(note.matches("\n— ").count(), 2, "{note}");
    assert!(note.contains("\n\n— registry.test/log "), "{note}");

    // The next checkpoint goes with a consistency proof from the one it cosigned.
    let (second, _) = push(&tw, "1.0.1").await;
    let note = checkpoint_where(&tw, 2, |n| n.contains("\n— witness.test/w1 ")).await;
    let requests: Vec<(u64, u64)> = (w.seen.lock().unwrap().requests.iter())
        .filter(|(_, size)| *size > 0)
        .copied()
        .collect();
    assert_eq!(requests, vec![(0, 1), (1, 2)]);
    let (ok, out) = cli(&["log", "checkpoint", "--database-url", db.url()]);
    assert!(ok && out == note, "{out}");

    let (ok, out) = verify(
        &db,
        &log,
        &["--witness-key", &w.vkey, "--witness-quorum", "1"],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("the database's newest checkpoint is cosigned by witness witness.test/w1"),
        "{out}"
    );
    // Another key for the same witness name: its cosignature does not verify.
    let (_, impostor) = WitnessSigner::generate("witness.test/w1").unwrap();
    let (ok, out) = verify(&db, &log, &["--witness-key", &impostor]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("BROKEN  the database's newest checkpoint is cosigned by 0 of the 1 given witnesses, 1 required"),
        "{out}"
    );
    // A witness that never saw the log, required among two with quorum 1 and 2.
    let (_, other) = WitnessSigner::generate("witness.test/w2").unwrap();
    let both = ["--witness-key", &w.vkey, "--witness-key", &other];
    let (ok, out) = verify(&db, &log, &[&both[..], &["--witness-quorum", "1"]].concat());
    assert!(ok, "{out}");
    let (ok, out) = verify(&db, &log, &both);
    assert!(!ok, "{out}");
    assert!(out.contains("witness.test/w2: no cosignature"), "{out}");

    // A receipt carries the cosigned checkpoint and checks offline.
    for id in [first, second] {
        let (ok, proof) = cli(&[
            "log",
            "prove",
            "--event",
            &id.to_string(),
            "--database-url",
            db.url(),
        ]);
        assert!(ok, "{proof}");
        let file = log.dir.path().join(format!("{id}.proof.json"));
        std::fs::write(&file, &proof).unwrap();
        let base = [
            "log",
            "verify-proof",
            "--proof",
            file.to_str().unwrap(),
            "--verifier-key",
            &log.verifier,
        ];
        let (ok, out) = cli(&[&base[..], &["--witness-key", &w.vkey]].concat());
        assert!(ok, "{out}");
        assert!(
            out.contains("the proof's checkpoint is cosigned by witness witness.test/w1"),
            "{out}"
        );
        let (ok, out) = cli(&[&base[..], &["--witness-key", &impostor]].concat());
        assert!(!ok, "{out}");
    }
}

#[tokio::test]
async fn a_hanging_or_down_witness_does_not_hold_up_pushes() {
    let log = Log::new();
    let hung = witness(&log.verifier, true).await;
    let (_, down_key) = WitnessSigner::generate("witness.test/down").unwrap();
    let registry = Registry::start().await;
    let db = Database::fresh();
    let config = log.config(&format!(
        "[tlog.witnesses]\nquorum = 1\n{}{}",
        witness_config(&hung.url, &hung.vkey, "5s"),
        witness_config("http://127.0.0.1:9/add-checkpoint", &down_key, "5s"),
    ));
    let tw = Tagwarden::builder(&registry.url(), db.url())
        .config(&config)
        .start()
        .await;

    let mut slowest = Duration::ZERO;
    for i in 0..5 {
        let (_, took) = push(&tw, &format!("2.0.{i}")).await;
        slowest = slowest.max(took);
    }
    assert!(slowest < Duration::from_secs(1), "a push took {slowest:?}");
    // Checkpoints are signed on time (well within a witness's timeout), without
    // cosignatures.
    let pushed = Instant::now();
    let note = checkpoint_where(&tw, 5, |_| true).await;
    assert!(
        pushed.elapsed() < Duration::from_secs(3),
        "signing waited for the witnesses: {:?}",
        pushed.elapsed()
    );
    assert_eq!(note.matches("\n— ").count(), 1, "{note}");

    let (ok, out) = verify(&db, &log, &[]);
    assert!(ok, "{out}");
    for key in [&hung.vkey, &down_key] {
        let (ok, out) = verify(&db, &log, &["--witness-key", key, "--witness-quorum", "1"]);
        assert!(!ok, "{out}");
        assert!(
            out.contains("is cosigned by 0 of the 1 given witnesses"),
            "{out}"
        );
    }

    // The failures are counted per witness, and logged once each, without the URL.
    wait::until(
        Duration::from_secs(40),
        Duration::from_millis(200),
        || async {
            let metrics = get_text(format!("{}/metrics", tw.admin_url())).await;
            let failed = |w: &str| {
                metrics
                    .lines()
                    .filter(|l| {
                        l.starts_with("tagwarden_tlog_witness_failures_total")
                            && l.contains(&format!("witness=\"{w}\""))
                    })
                    .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
                    .sum::<f64>()
            };
            // Twice each: the second failure is counted, not logged.
            if failed("witness.test/w1") >= 2.0 && failed("witness.test/down") >= 2.0 {
                Ok(())
            } else {
                Err(format!("no failures counted: {metrics}"))
            }
        },
    )
    .await;
    let logs = tw.logs();
    let warned = |w: &str| {
        logs.lines()
            .filter(|l| l.contains("the witness did not cosign") && l.contains(w))
            .count()
    };
    assert_eq!(warned("witness.test/w1"), 1, "{logs}");
    assert_eq!(warned("witness.test/down"), 1, "{logs}");
    assert!(!logs.contains("/add-checkpoint"), "{logs}");
}
