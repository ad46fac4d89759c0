//! Webhook notifications end to end: skopeo pushes, a refused push, a move and a delete
//! through tagwarden in front of a real registry and Postgres; a receiver in the test
//! checks each selected event arrives once, in order, signed, with the refusal's detail;
//! a receiver answering 503 for a while, and a tagwarden restart, lose and repeat nothing.

use crate::support;

use support::skopeo::push;

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use support::http::get_text;
use support::{skopeo, Database, Image, Registry, Tagwarden};
use tagwarden::notify::sign;

const SECRET: &str = "receiver-shared-secret";

/// One request the receiver got, and the status it answered.
#[derive(Clone)]
struct Delivery {
    status: u16,
    event: Value,
    signed: bool,
    content_type: String,
}

#[derive(Clone)]
struct Receiver {
    answer: Arc<AtomicU16>,
    got: Arc<Mutex<Vec<Delivery>>>,
    url: String,
}

impl Receiver {
    async fn start() -> Receiver {
        Receiver::start_on(0).await
    }

    async fn start_on(port: u16) -> Receiver {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let receiver = Receiver {
            answer: Arc::new(AtomicU16::new(200)),
            got: Arc::default(),
            url,
        };
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(record))
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        receiver
    }

    fn answer(&self, status: u16) {
        self.answer.store(status, Ordering::SeqCst);
    }

    fn all(&self) -> Vec<Delivery> {
        self.got.lock().unwrap().clone()
    }

    /// Events answered with 2xx, in arrival order.
    fn accepted(&self) -> Vec<Value> {
        self.all()
            .into_iter()
            .filter(|d| d.status == 200)
            .map(|d| d.event)
            .collect()
    }

    /// Up to a minute: a receiver that was down is tried again only when the sender's
    /// backoff (up to 32 s by then) ends.
    async fn wait_accepted(&self, n: usize) -> Vec<Value> {
        for _ in 0..300 {
            if self.accepted().len() >= n {
                // Long enough for a duplicate to show up, if one were coming.
                tokio::time::sleep(Duration::from_secs(2)).await;
                return self.accepted();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("receiver got {} of {n} events", self.accepted().len());
    }

    async fn wait_refused(&self, n: usize) {
        for _ in 0..150 {
            if self.all().iter().filter(|d| d.status != 200).count() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("the receiver was not retried {n} times");
    }
}

async fn record(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let status = r.answer.load(Ordering::SeqCst);
    let signed = headers
        .get(sign::HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| sign::verify(SECRET.as_bytes(), v, &body));
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    r.got.lock().unwrap().push(Delivery {
        status,
        event: serde_json::from_slice(&body).expect("a JSON body"),
        signed,
        content_type,
    });
    StatusCode::from_u16(status).unwrap()
}

fn config(receiver: &Receiver, events: &str) -> String {
    format!(
        "[notify]\nsource = \"/tagwarden/test\"\n\n[[notify.webhooks]]\nname = \"test\"\nurl = \"{}\"\nsecret = \"{SECRET}\"\n{events}",
        receiver.url
    )
}

/// The ids of the ledger's events with one of `actions`, oldest first.
fn ledger_ids(db: &Database, actions: &str) -> Vec<String> {
    db.query_column(&format!(
        "SELECT 'tagwarden-event-' || id FROM tag_events WHERE action IN ({actions}) ORDER BY id"
    ))
    .into_iter()
    .flatten()
    .collect()
}

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn metric(tw: &Tagwarden, line_prefix: &str) -> Option<f64> {
    let text = get_text(format!("{}/metrics", tw.admin_url())).await;
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn selected_events_arrive_once_in_order_signed_and_a_refusal_carries_its_detail() {
    let registry = Registry::start().await;
    let db = Database::fresh();
    let receiver = Receiver::start().await;
    let tw = Tagwarden::builder(&registry.url(), db.url())
        .config(&config(&receiver, ""))
        .start()
        .await;
    let (a, b) = (Image::random(&[512]), Image::random(&[512]));

    push(&a, &tw.docker_ref("team/app:1.0.0"))
        .await
        .assert_success();
    push(&b, &tw.docker_ref("team/app:1.0.0"))
        .await
        .assert_failure();
    push(&a, &tw.docker_ref("team/app:latest"))
        .await
        .assert_success();
    push(&b, &tw.docker_ref("team/app:latest"))
        .await
        .assert_success();
    skopeo::delete(&tw.docker_ref("team/app:latest"))
        .await
        .assert_success();

    let got = receiver.wait_accepted(3).await;
    let types: Vec<&str> = got.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "dev.tagwarden.refuse",
            "dev.tagwarden.move",
            "dev.tagwarden.delete"
        ],
        "creates are not selected by default"
    );
    assert_eq!(ids(&got), ledger_ids(&db, "'refuse','move','delete'"));
    for d in receiver.all() {
        assert!(d.signed, "bad signature on {}", d.event["id"]);
        assert_eq!(d.content_type, "application/cloudevents+json");
    }

    let refusal = &got[0];
    assert_eq!(refusal["specversion"], "1.0");
    assert_eq!(refusal["source"], "/tagwarden/test");
    assert_eq!(refusal["subject"], "team/app:1.0.0");
    assert_eq!(refusal["data"]["digest"], b.digest());
    assert_eq!(refusal["data"]["previous_digest"], a.digest());
    assert_eq!(refusal["data"]["rule"], "semver-releases");
    assert_eq!(refusal["data"]["detail"]["bound_digest"], a.digest());
    assert_eq!(refusal["data"]["detail"]["attempted_digest"], b.digest());
    assert_eq!(got[1]["data"]["previous_digest"], a.digest());
    assert_eq!(got[1]["data"]["digest"], b.digest());
    assert_eq!(got[2]["subject"], "team/app:latest");

    assert_eq!(
        metric(&tw, "tagwarden_notify_sent_total{webhook=\"test\"} ").await,
        Some(3.0)
    );
}

#[tokio::test]
async fn a_receiver_down_for_a_while_gets_every_event_afterwards_in_order_once() {
    let registry = Registry::start().await;
    let db = Database::fresh();
    let receiver = Receiver::start().await;
    receiver.answer(503);
    let tw = Tagwarden::builder(&registry.url(), db.url())
        .config(&config(&receiver, "events = [\"create\", \"move\"]\n"))
        .start()
        .await;
    for (i, tag) in ["1.0.0", "1.0.1", "edge", "edge"].iter().enumerate() {
        let image = Image::random(&[256 + i]);
        push(&image, &tw.docker_ref(&format!("team/svc:{tag}")))
            .await
            .assert_success();
    }
    receiver.wait_refused(2).await;
    // The gauge is refreshed only when a delivery fails, and the retries back off (1 s,
    // 2 s, 4 s, 8 s, 16 s apart): after slow pushes the next refresh may be 16 s away.
    let mut queued = None;
    for _ in 0..200 {
        queued = metric(&tw, "tagwarden_notify_queued{webhook=\"test\"} ").await;
        if queued == Some(4.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(queued, Some(4.0), "all four events wait");
    assert!(metric(
        &tw,
        "tagwarden_notify_oldest_undelivered_seconds{webhook=\"test\"} "
    )
    .await
    .is_some_and(|s| s > 0.0));
    assert!(
        metric(&tw, "tagwarden_notify_failed_total{webhook=\"test\"} ")
            .await
            .is_some_and(|n| n >= 2.0)
    );
    // Only the first event was tried while the receiver was down.
    let tried: Vec<String> = receiver
        .all()
        .iter()
        .map(|d| d.event["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(tried.iter().all(|id| *id == tried[0]), "{tried:?}");

    receiver.answer(200);
    let got = receiver.wait_accepted(4).await;
    let expected = ledger_ids(&db, "'create','move'");
    assert_eq!(expected.len(), 4);
    assert_eq!(ids(&got), expected, "every event once, in order");
    let types: Vec<&str> = got.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "dev.tagwarden.create",
            "dev.tagwarden.create",
            "dev.tagwarden.create",
            "dev.tagwarden.move"
        ]
    );
    assert_eq!(
        metric(&tw, "tagwarden_notify_queued{webhook=\"test\"} ").await,
        Some(0.0)
    );
}

#[tokio::test]
async fn a_restart_resends_what_was_not_acknowledged_and_nothing_that_was() {
    let registry = Registry::start().await;
    let db = Database::fresh();
    let receiver = Receiver::start().await;
    let toml = config(&receiver, "events = [\"create\"]\n");
    let mut first = Tagwarden::builder(&registry.url(), db.url())
        .config(&toml)
        .start()
        .await;
    push(&Image::random(&[300]), &first.docker_ref("team/job:1.0.0"))
        .await
        .assert_success();
    receiver.wait_accepted(1).await;

    receiver.answer(503);
    push(&Image::random(&[301]), &first.docker_ref("team/job:1.0.1"))
        .await
        .assert_success();
    receiver.wait_refused(1).await;
    first.terminate(Duration::from_secs(5));
    receiver.answer(200);

    let second = Tagwarden::builder(&registry.url(), db.url())
        .config(&toml)
        .start()
        .await;
    push(&Image::random(&[302]), &second.docker_ref("team/job:1.0.2"))
        .await
        .assert_success();
    let got = receiver.wait_accepted(3).await;
    assert_eq!(
        ids(&got),
        ledger_ids(&db, "'create'"),
        "once each, in order"
    );
    for d in receiver.all() {
        assert!(d.signed);
    }
}

#[tokio::test]
async fn a_new_webhook_starts_at_the_end_of_the_log_unless_told_to_replay_it() {
    let registry = Registry::start().await;
    let db = Database::fresh();
    let (late, replay) = (Receiver::start().await, Receiver::start().await);
    let before = Tagwarden::start(&registry.url(), db.url()).await;
    push(&Image::random(&[310]), &before.docker_ref("team/old:1.0.0"))
        .await
        .assert_success();
    drop(before);

    let hook = |name: &str, r: &Receiver, from: &str| {
        format!(
            "[[notify.webhooks]]\nname = \"{name}\"\nurl = \"{}\"\nsecret = \"{SECRET}\"\nevents = [\"create\"]\nfrom = \"{from}\"\n",
            r.url
        )
    };
    let tw = Tagwarden::builder(&registry.url(), db.url())
        .config(&format!(
            "{}{}",
            hook("late", &late, "end"),
            hook("replay", &replay, "start")
        ))
        .start()
        .await;
    push(&Image::random(&[311]), &tw.docker_ref("team/old:1.0.1"))
        .await
        .assert_success();

    let all = ledger_ids(&db, "'create'");
    assert_eq!(all.len(), 2);
    assert_eq!(ids(&replay.wait_accepted(2).await), all);
    assert_eq!(ids(&late.wait_accepted(1).await), all[1..]);
}

/// Ids commit out of order: id 2 is visible while id 1's transaction still runs. The
/// sender must not pass id 2 (and so skip id 1 for ever); once id 1 commits, both come,
/// in the order their transactions started writing.
#[tokio::test]
async fn an_event_committed_before_an_older_one_waits_for_it() {
    use tagwarden::notify::store::{self, Position};
    let db = Database::fresh();
    let ledger =
        tagwarden::ledger::Ledger::connect_lazy(db.url(), 4, Duration::from_secs(5)).unwrap();
    ledger.migrate().await.unwrap();
    let insert =
        "INSERT INTO tag_events (action, repository, tag) VALUES ('create', 'r', $1) RETURNING id";

    let mut older = ledger.pool().begin().await.unwrap();
    let first: i64 = sqlx::query_scalar(insert)
        .bind("a")
        .fetch_one(&mut *older)
        .await
        .unwrap();
    let mut newer = ledger.pool().begin().await.unwrap();
    let second: i64 = sqlx::query_scalar(insert)
        .bind("b")
        .fetch_one(&mut *newer)
        .await
        .unwrap();
    newer.commit().await.unwrap();

    let mut reader = ledger.pool().acquire().await.unwrap();
    let start = Position {
        txid: 0,
        event_id: 0,
    };
    let seen = store::batch(&mut reader, start, 10).await.unwrap();
    assert!(
        seen.is_empty(),
        "id {second} was offered before id {first} committed"
    );

    older.commit().await.unwrap();
    // The horizon is the cluster's oldest running transaction: another test's, in its
    // own database, may hold both ids back for a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let seen = loop {
        let seen: Vec<i64> = store::batch(&mut reader, start, 10)
            .await
            .unwrap()
            .iter()
            .map(|q| q.event.id)
            .collect();
        if seen.len() >= 2 || std::time::Instant::now() > deadline {
            break seen;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(seen, [first, second]);
}

#[tokio::test]
async fn a_receiver_not_listening_yet_gets_the_events_once_it_is() {
    let registry = Registry::start().await;
    let db = Database::fresh();
    let port = support::free_port();
    let toml = format!(
        "[[notify.webhooks]]\nname = \"test\"\nurl = \"http://127.0.0.1:{port}/hook\"\nsecret = \"{SECRET}\"\nevents = [\"create\"]\n"
    );
    let tw = Tagwarden::builder(&registry.url(), db.url())
        .config(&toml)
        .start()
        .await;
    for tag in ["1.0.0", "1.0.1"] {
        push(
            &Image::random(&[320]),
            &tw.docker_ref(&format!("team/late:{tag}")),
        )
        .await
        .assert_success();
    }
    let mut failed = None;
    for _ in 0..50 {
        failed = metric(&tw, "tagwarden_notify_failed_total{webhook=\"test\"} ").await;
        if failed.is_some_and(|n| n >= 1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        failed.is_some_and(|n| n >= 1.0),
        "refused connections count: {failed:?}"
    );

    let receiver = Receiver::start_on(port).await;
    let got = receiver.wait_accepted(2).await;
    assert_eq!(ids(&got), ledger_ids(&db, "'create'"));
}
