//! The signed transparency log, end to end: receipts and offline proofs for real
//! pushes, `log verify` against a database superuser's tampering, the anchor that
//! refuses writes over a shorter or forked history, and one gap-free log from several
//! tagwarden processes, one of them killed mid-batch.

use crate::support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sqlx::{Connection, Executor, PgConnection};
use support::http::{get, get_as};
use support::{api, wait, Database, Image, Registry, Tagwarden};
use tagwarden::ledger::{Action, Actor, Ledger, NewBinding, NewEvent};
use tagwarden::policy::TagClass;
use tagwarden::tlog::{leaf, store, tree::Tree};
use tempfile::TempDir;

/// Nothing listens here: tests that write events through the library need no registry.
const NO_UPSTREAM: &str = "http://127.0.0.1:9";

/// A signing key, a state file and the verifier key, in a directory of their own.
struct Keys {
    dir: TempDir,
    key: PathBuf,
    state: PathBuf,
    verifier: String,
}

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

fn keygen() -> Keys {
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
    let verifier = out.trim().to_owned();
    assert!(verifier.starts_with("registry.test/log+"), "{verifier}");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the key file is the owner's only");
    let state = dir.path().join("log.state");
    Keys {
        dir,
        key,
        state,
        verifier,
    }
}

impl Keys {
    fn config(&self, extra: &str) -> String {
        format!(
            "[tlog]\nsigning_key_file = {:?}\nstate_file = {:?}\ncheckpoint_interval = \"200ms\"\n{extra}",
            self.key, self.state
        )
    }

    fn save(&self, name: &str, note: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, note).unwrap();
        p
    }
}

async fn serve(upstream: &str, db: &Database, config: &str) -> Tagwarden {
    Tagwarden::builder(upstream, db.url())
        .config(config)
        .start()
        .await
}

fn ledger(db: &Database) -> Ledger {
    Ledger::connect_lazy(db.url(), 8, Duration::from_secs(10)).unwrap()
}

/// Bind `repo:tag` to a digest and record its creation, as an accepted push does.
async fn write_event(ledger: &Ledger, repo: &str, tag: &str) -> i64 {
    let digest = support::oci::sha256_digest(tag.as_bytes());
    let mut tx = ledger.begin().await.unwrap();
    tx.lock(repo, &[tag]).await.unwrap();
    tx.bind(&NewBinding {
        repository: repo,
        tag,
        digest: &digest,
        class: TagClass::Immutable,
        rule: "test",
        bound_by: None,
    })
    .await
    .unwrap();
    let id = tx
        .append(
            &NewEvent {
                tag: Some(tag),
                digest: Some(&digest),
                class: Some(TagClass::Immutable),
                rule: Some("test"),
                ..NewEvent::new(Action::Create, repo)
            },
            &Actor::default(),
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    id
}

async fn write_events(ledger: &Ledger, repo: &str, from: usize, to: usize) {
    for i in from..to {
        write_event(ledger, repo, &format!("1.0.{i}")).await;
    }
}

/// Wait until a checkpoint of at least `size` leaves is signed; its note.
async fn checkpoint_of(db: &Database, size: i64) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut conn = PgConnection::connect(db.url()).await.unwrap();
    loop {
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT size, note FROM log_checkpoints ORDER BY size DESC LIMIT 1")
                .fetch_optional(&mut conn)
                .await
                .unwrap();
        if let Some((s, note)) = &row {
            if *s >= size {
                return note.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint of {size} leaves within 30s (newest: {row:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn verify(db: &Database, keys: &Keys, checkpoints: &[&Path]) -> (bool, String) {
    let mut args = vec![
        "log",
        "verify",
        "--database-url",
        db.url(),
        "--verifier-key",
        &keys.verifier,
    ];
    for c in checkpoints {
        args.push("--checkpoint");
        args.push(c.to_str().unwrap());
    }
    cli(&args)
}

/// Statements as a superuser would run them: the append-only triggers off around them.
async fn as_superuser(conn: &mut PgConnection, statements: &[String]) {
    conn.execute("ALTER TABLE tag_events DISABLE TRIGGER ALL")
        .await
        .unwrap();
    for sql in statements {
        conn.execute(sql.as_str())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    for trigger in [
        "tag_events_no_update_or_delete",
        "tag_events_no_truncate",
        "tag_events_notify_outbox",
    ] {
        let sql = format!("ALTER TABLE tag_events ENABLE ALWAYS TRIGGER {trigger}");
        conn.execute(sql.as_str()).await.unwrap();
    }
}

/// What a superuser who knows the encoding does after changing events: recompute every
/// leaf, stored hash and tile from the events left, in leaf order, and drop every
/// checkpoint larger than `keep` (the key is not theirs, so they cannot sign new ones).
async fn recompute_log(conn: &mut PgConnection, keep: i64) {
    let leaves = store::all_leaves(conn).await.unwrap();
    let mut tree = Tree::default();
    let mut rows = Vec::new();
    for (stored, event) in leaves {
        let Some(e) = event else { continue };
        let h = tlog_tiles::record_hash(&leaf::encode(&e.event));
        tree.push(h);
        rows.push((stored.event_id, e.txid, h));
    }
    for t in ["log_leaves", "log_hashes", "log_tiles"] {
        conn.execute(format!("DELETE FROM {t}").as_str())
            .await
            .unwrap();
    }
    let hashes: Vec<_> = tree
        .stored()
        .iter()
        .enumerate()
        .map(|(i, h)| (i as u64, *h))
        .collect();
    let tiles = tree.tiles(tree.size()).unwrap();
    store::append(conn, 0, &rows, &hashes, &tiles)
        .await
        .unwrap();
    sqlx::query("DELETE FROM log_checkpoints WHERE size > $1")
        .bind(keep)
        .execute(&mut *conn)
        .await
        .unwrap();
}

/// A database with a signed log of ten events and a checkpoint of three, stopped; the
/// auditor's copy of the checkpoint of ten.
async fn signed_history(keys: &Keys) -> (Database, PathBuf) {
    let db = Database::fresh();
    let mut tw = serve(NO_UPSTREAM, &db, &keys.config("")).await;
    let l = ledger(&db);
    write_events(&l, "team/app", 0, 3).await;
    checkpoint_of(&db, 3).await;
    write_events(&l, "team/app", 3, 10).await;
    let ten = checkpoint_of(&db, 10).await;
    l.pool().close().await;
    tw.terminate(Duration::from_secs(5));
    let file = keys.save(&format!("ten-{}.checkpoint", db.name()), &ten);
    let (ok, text) = verify(&db, keys, &[&file]);
    assert!(ok, "the untouched log verifies: {text}");
    assert!(text.contains("checkpoint"), "{text}");
    assert!(
        text.contains("10 bindings are what the 10 events give"),
        "{text}"
    );
    (db, file)
}

async fn event_at_leaf(conn: &mut PgConnection, index: i64) -> i64 {
    sqlx::query_scalar("SELECT event_id FROM log_leaves WHERE leaf_index = $1")
        .bind(index)
        .fetch_one(conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn log_verify_catches_every_superuser_rewrite_given_an_earlier_checkpoint() {
    let keys = keygen();
    let (db, ten) = signed_history(&keys).await;

    // An edit of one event: its leaf no longer matches.
    {
        let copy = db.copy();
        let mut conn = PgConnection::connect(copy.url()).await.unwrap();
        let id = event_at_leaf(&mut conn, 4).await;
        as_superuser(
            &mut conn,
            &[format!(
                "UPDATE tag_events SET digest = 'sha256:{}' WHERE id = {id}",
                "0".repeat(64)
            )],
        )
        .await;
        let (ok, text) = verify(&copy, &keys, &[&ten]);
        assert!(!ok, "{text}");
        assert!(
            text.contains(&format!(
                "BROKEN  leaf 4 (event {id}) does not match its stored hash"
            )),
            "{text}"
        );
    }

    // Reordering two leaves (with their hashes): the tree they make is another.
    {
        let copy = db.copy();
        let mut conn = PgConnection::connect(copy.url()).await.unwrap();
        as_superuser(
            &mut conn,
            &[
                "UPDATE log_leaves SET leaf_index = 1000000 WHERE leaf_index = 2".into(),
                "UPDATE log_leaves SET leaf_index = 2 WHERE leaf_index = 6".into(),
                "UPDATE log_leaves SET leaf_index = 6 WHERE leaf_index = 1000000".into(),
            ],
        )
        .await;
        let (ok, text) = verify(&copy, &keys, &[&ten]);
        assert!(!ok, "{text}");
        assert!(
            text.contains("BROKEN  stored hash")
                && text.contains("(level 0, node 2) differs from the tree its leaves make"),
            "{text}"
        );
    }

    // Truncation: the last three events gone, and everything recomputed around the gap.
    {
        let copy = db.copy();
        let mut conn = PgConnection::connect(copy.url()).await.unwrap();
        as_superuser(
            &mut conn,
            &[
                "DELETE FROM tag_events WHERE id IN (SELECT event_id FROM log_leaves WHERE leaf_index >= 7)".into(),
                "DELETE FROM tag_bindings WHERE tag IN ('1.0.7', '1.0.8', '1.0.9')".into(),
            ],
        )
        .await;
        recompute_log(&mut conn, 3).await;
        let (ok, text) = verify(&copy, &keys, &[]);
        assert!(
            ok,
            "without an earlier checkpoint the truncation is invisible: {text}"
        );
        let (ok, text) = verify(&copy, &keys, &[&ten]);
        assert!(!ok, "{text}");
        assert!(
            text.contains("has 10 leaves but the database's log only 7: its history was truncated"),
            "{text}"
        );
    }

    // Insertion: a made-up event placed at leaf 5, with every hash recomputed.
    {
        let copy = db.copy();
        let mut conn = PgConnection::connect(copy.url()).await.unwrap();
        let forged = write_event(&ledger(&copy), "team/app", "0.9.0").await;
        as_superuser(
            &mut conn,
            &[
                "UPDATE log_leaves SET leaf_index = leaf_index + 1000000 WHERE leaf_index >= 5".into(),
                "UPDATE log_leaves SET leaf_index = leaf_index - 999999 WHERE leaf_index >= 1000000".into(),
                format!(
                    "INSERT INTO log_leaves (leaf_index, event_id, txid, hash) VALUES (5, {forged}, '1', '\\x{}')",
                    "00".repeat(32)
                ),
            ],
        )
        .await;
        recompute_log(&mut conn, 3).await;
        let (ok, text) = verify(&copy, &keys, &[&ten]);
        assert!(!ok, "{text}");
        assert!(
            text.contains("at 10 leaves but the database's leaves give")
                && text.contains("history before leaf 10 was rewritten"),
            "{text}"
        );
    }

    // A full, consistent rewrite: an event edited, bindings to match, every leaf, hash
    // and tile recomputed, the checkpoints that would show it dropped.
    {
        let copy = db.copy();
        let mut conn = PgConnection::connect(copy.url()).await.unwrap();
        let id = event_at_leaf(&mut conn, 8).await;
        let other = format!("sha256:{}", "e".repeat(64));
        as_superuser(
            &mut conn,
            &[
                format!("UPDATE tag_events SET digest = '{other}' WHERE id = {id}"),
                format!("UPDATE tag_bindings SET digest = '{other}' WHERE tag = '1.0.8'"),
            ],
        )
        .await;
        recompute_log(&mut conn, 3).await;
        let (ok, text) = verify(&copy, &keys, &[]);
        assert!(ok, "the database alone is consistent: {text}");
        let (ok, text) = verify(&copy, &keys, &[&ten]);
        assert!(!ok, "{text}");
        assert!(
            text.contains("history before leaf 10 was rewritten"),
            "{text}"
        );

        // A binding that no event explains is named too.
        as_superuser(
            &mut conn,
            &[format!(
                "UPDATE tag_bindings SET digest = 'sha256:{}' WHERE tag = '1.0.1'",
                "f".repeat(64)
            )],
        )
        .await;
        let (ok, text) = verify(&copy, &keys, &[]);
        assert!(!ok, "{text}");
        assert!(
            text.contains("BROKEN  binding team/app:1.0.1 is sha256:ffff"),
            "{text}"
        );
    }

    // A checkpoint signed by another key proves nothing.
    let stranger = keygen();
    let (ok, text) = verify(&db, &stranger, &[]);
    assert!(!ok, "{text}");
    assert!(text.contains("signature"), "{text}");
}

#[tokio::test]
async fn startup_refuses_writes_over_a_shorter_or_forked_history() {
    let keys = keygen();
    let (db, _) = signed_history(&keys).await;
    let anchored = std::fs::read_to_string(&keys.state).unwrap();
    assert!(
        anchored.contains("\n10\n"),
        "the state file holds the last checkpoint: {anchored}"
    );

    let truncated = db.copy();
    {
        let mut conn = PgConnection::connect(truncated.url()).await.unwrap();
        as_superuser(
            &mut conn,
            &["DELETE FROM tag_events WHERE id IN (SELECT event_id FROM log_leaves WHERE leaf_index >= 8)".into()],
        )
        .await;
        recompute_log(&mut conn, 3).await;
    }
    let forked = db.copy();
    {
        let mut conn = PgConnection::connect(forked.url()).await.unwrap();
        let id = event_at_leaf(&mut conn, 1).await;
        as_superuser(
            &mut conn,
            &[format!(
                "UPDATE tag_events SET reason = 'forked' WHERE id = {id}"
            )],
        )
        .await;
        recompute_log(&mut conn, 0).await;
    }

    for (copy, why) in [
        (&truncated, "has 8 leaves but this tagwarden already signed a checkpoint of 10: its history was truncated"),
        (&forked, "its history was rewritten"),
    ] {
        let tw = serve(NO_UPSTREAM, copy, &keys.config("")).await;
        let resp = api::put_manifest(&tw.url(), "team/app", "2.0.0", &Image::random(&[8]).manifest).await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = resp.text().await.unwrap();
        let e = support::http::parse_oci_error(&body, "refused write");
        assert_eq!(e.code, "UNAVAILABLE", "{body}");
        assert!(e.message.contains(why), "{body}");
        let del = support::http::client()
            .delete(format!("{}/v2/team/app/manifests/1.0.1", tw.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(del.status(), StatusCode::SERVICE_UNAVAILABLE, "deletes too");
        tokio::time::sleep(Duration::from_millis(600)).await;
        // Nothing new was signed over the forked history.
        let newest = copy.query_column("SELECT coalesce(max(size), 0)::text FROM log_checkpoints");
        assert!(
            newest[0].as_deref().unwrap().parse::<i64>().unwrap() <= 3,
            "{newest:?}"
        );
        assert!(tw.logs().contains("refusing manifest writes"), "{}", tw.logs());
    }
    assert_eq!(std::fs::read_to_string(&keys.state).unwrap(), anchored);
}

/// Leaf indices and event ids of the whole log, in leaf order.
async fn leaves(db: &Database) -> Vec<(i64, i64)> {
    let mut conn = PgConnection::connect(db.url()).await.unwrap();
    sqlx::query_as("SELECT leaf_index, event_id FROM log_leaves ORDER BY leaf_index")
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

async fn wait_for_leaves(db: &Database, n: usize) -> Vec<(i64, i64)> {
    wait::until(
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            let l = leaves(db).await;
            if l.len() >= n {
                Ok(l)
            } else {
                Err(format!("{} of {n} events integrated", l.len()))
            }
        },
    )
    .await
}

#[tokio::test]
async fn two_processes_make_one_gap_free_log_and_a_killed_integrator_resumes() {
    let keys = keygen();
    let db = Database::fresh();
    // Small batches, so a kill lands between (or inside) many of them.
    let config = keys.config("batch = 7\n");
    let mut procs = [
        serve(NO_UPSTREAM, &db, &config).await,
        serve(NO_UPSTREAM, &db, &config).await,
    ];
    let l = ledger(&db);
    // Eight writers on one repository. Each writes half its events, then waits
    // until the leader is dead: the second half can only be integrated by the
    // other process, however fast the leader was with the first.
    let (killed_tx, killed_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for w in 0..8 {
        let l = l.clone();
        let mut killed = killed_rx.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..40 {
                if i == 20 {
                    killed.wait_for(|k| *k).await.unwrap();
                }
                ids.push(write_event(&l, "team/app", &format!("{w}.0.{i}")).await);
            }
            ids
        }));
    }
    // Kill as soon as the leader has integrated something, while the first
    // halves are still being written and integrated.
    let deadline = Instant::now() + Duration::from_secs(30);
    let leader = loop {
        let leader = procs
            .iter()
            .position(|p| p.logs().contains("this process integrates"));
        if let Some(leader) = leader {
            if !leaves(&db).await.is_empty() {
                break leader;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no process integrated within 30s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // SIGKILL: no chance to finish the batch in flight.
    procs[leader].kill();
    killed_tx.send(true).unwrap();
    let mut ids: Vec<i64> = Vec::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    let all = wait_for_leaves(&db, ids.len()).await;
    let other = &procs[1 - leader];
    assert!(
        other.logs().contains("this process integrates"),
        "the other process took over: {}",
        other.logs()
    );
    assert_eq!(all.len(), ids.len(), "no event twice");
    for (i, (index, _)) in all.iter().enumerate() {
        assert_eq!(*index, i as i64, "no gap");
    }
    let mut logged: Vec<i64> = all.iter().map(|l| l.1).collect();
    logged.sort_unstable();
    ids.sort_unstable();
    assert_eq!(logged, ids, "every event exactly once");
    checkpoint_of(&db, ids.len() as i64).await;
    let (ok, text) = verify(&db, &keys, &[]);
    assert!(ok, "{text}");
}

#[tokio::test]
async fn a_push_gets_a_receipt_that_proves_offline() {
    let keys = keygen();
    let registry = Registry::start().await;
    let db = Database::fresh();
    let tokens = "[[admin.tokens]]\nname = \"siem\"\ntoken = \"auditor-token-0123456789\"\nrole = \"auditor\"\n";
    let tw = serve(
        &registry.url(),
        &db,
        &format!("{tokens}\n{}", keys.config("")),
    )
    .await;
    let image = Image::random(&[64]);
    for blob in image.blobs() {
        api::upload_blob(&tw.url(), "team/app", blob).await;
    }
    let resp = api::put_manifest(&tw.url(), "team/app", "1.0.0", &image.manifest).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let id: i64 = support::http::header(&resp, "tagwarden-event")
        .expect("a receipt header")
        .parse()
        .unwrap();

    // The proof, once the event is in a signed checkpoint.
    let id = id.to_string();
    let proof = wait::until(
        Duration::from_secs(20),
        Duration::from_millis(200),
        || async {
            let args = ["log", "prove", "--event", &id, "--database-url", db.url()];
            match cli(&args) {
                (true, out) => Ok(out),
                (false, out) => Err(format!("no proof: {out}")),
            }
        },
    )
    .await;
    let file = keys.save("receipt.json", &proof);
    let (ok, out) = cli(&[
        "log",
        "verify-proof",
        "--proof",
        file.to_str().unwrap(),
        "--verifier-key",
        &keys.verifier,
    ]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("event {id} is leaf 0")), "{out}");
    assert!(
        out.contains(image.digest()),
        "the proof shows what it proves: {out}"
    );

    // The same proof by tag; a forged leaf or another key does not verify.
    let (ok, by_tag) = cli(&["log", "prove", "team/app:1.0.0", "--database-url", db.url()]);
    assert!(ok, "{by_tag}");
    assert!(by_tag.contains(&format!("\"event_id\": {id}")), "{by_tag}");
    let forged = keys.save(
        "forged.json",
        &proof.replace(image.digest(), &format!("sha256:{}", "0".repeat(64))),
    );
    let (ok, out) = cli(&[
        "log",
        "verify-proof",
        "--proof",
        forged.to_str().unwrap(),
        "--verifier-key",
        &keys.verifier,
    ]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("BROKEN  the proof does not show leaf 0"),
        "{out}"
    );
    let (ok, out) = cli(&[
        "log",
        "verify-proof",
        "--proof",
        file.to_str().unwrap(),
        "--verifier-key",
        &keygen().verifier,
    ]);
    assert!(!ok, "{out}");

    // The admin listener serves the checkpoint and tiles to auditors only.
    let anon = get(format!("{}/log/checkpoint", tw.admin_url())).await;
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);
    let cp = get_as(
        format!("{}/log/checkpoint", tw.admin_url()),
        "auditor-token-0123456789",
    )
    .await;
    assert_eq!(cp.status(), StatusCode::OK);
    let note = cp.text().await.unwrap();
    assert!(note.starts_with("registry.test/log\n1\n"), "{note}");
    let tile = get_as(
        format!("{}/log/tile/0/000.p/1", tw.admin_url()),
        "auditor-token-0123456789",
    )
    .await;
    assert_eq!(tile.status(), StatusCode::OK);
    let leaf_text: serde_json::Value = serde_json::from_str(&proof).unwrap();
    let leaf = leaf_text["leaf"].as_str().unwrap();
    assert_eq!(
        tile.bytes().await.unwrap().to_vec(),
        tlog_tiles::record_hash(leaf.as_bytes()).0.to_vec()
    );
    let (ok, out) = cli(&["log", "checkpoint", "--database-url", db.url()]);
    assert!(ok && out == note, "{out}");
    let (ok, text) = verify(&db, &keys, &[&keys.save("now.checkpoint", &note)]);
    assert!(ok, "{text}");
}
