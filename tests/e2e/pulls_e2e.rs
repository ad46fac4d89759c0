//! The pull log end to end: skopeo pulls through tagwarden from a real registry, by tag
//! and by digest, of an image and of a multi-arch index, with two users and with wrong
//! credentials; the log records the digest each answer served and who asked, and the
//! API and the command line answer who pulled a tag in a window, what an identity
//! pulled, and when a digest was last pulled. With the database stopped, pulls keep
//! working and the records are counted as dropped; old day partitions are dropped.

use crate::support;

use std::process::{Command, Output};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use reqwest::StatusCode;
use serde_json::Value;
use support::audit::{config, TOKEN};
use support::http::{client, get, get_as, get_text, header};
use support::postgres::PrivatePostgres;
use support::{skopeo, Database, Image, Index, OciLayout, Registry, Served, Tagwarden};

const ALICE: (&str, &str) = ("alice", "alice-registry-pw");
const BOB: (&str, &str) = ("bob", "bob-registry-pw");

fn creds((user, password): (&str, &str)) -> String {
    format!("{user}:{password}")
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Poll `check` every 200 ms for up to 15 s; the writer flushes at least every second.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..75 {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn api(tw: &Tagwarden, query: &str) -> Value {
    let resp = get_as(format!("{}/api/v1/pulls?{query}", tw.admin_url()), TOKEN).await;
    let status = resp.status();
    let body = resp.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "pulls?{query}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Every pull the API lists for `query`, walking the pages `limit` at a time.
async fn all_pulls(tw: &Tagwarden, query: &str, limit: u32) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = api(tw, &format!("{query}&limit={limit}{cursor}")).await;
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return items,
        }
    }
}

fn field<'a>(pulls: &'a [Value], key: &str) -> Vec<&'a str> {
    pulls
        .iter()
        .map(|p| p[key].as_str().unwrap_or("-"))
        .collect()
}

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tagwarden"))
        .args(args)
        .env_remove("TAGWARDEN_CONFIG")
        .env_remove("TAGWARDEN_DATABASE_URL")
        .env_remove("TAGWARDEN_API_TOKEN")
        .output()
        .expect("run tagwarden")
}

fn cli_json(args: &[&str]) -> Vec<Value> {
    let out = cli(args);
    assert!(
        out.status.success(),
        "tagwarden {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "tagwarden {args:?}: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

async fn counter(tw: &Tagwarden, name: &str) -> u64 {
    let text = get_text(format!("{}/metrics", tw.admin_url())).await;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}")) as u64
}

/// skopeo copy from `source` into a fresh OCI layout, as `who`.
async fn pull(source: &str, who: (&str, &str), all: bool) {
    let dir = tempfile::tempdir().unwrap();
    let dest = format!("oci:{}:pulled", dir.path().display());
    let mut copy = skopeo::copy(source, &dest).src_creds(&creds(who));
    if all {
        copy = copy.all().preserve_digests();
    }
    copy.run().await.assert_success();
}

#[tokio::test(flavor = "multi_thread")]
async fn pulls_are_logged_with_the_digest_served_and_answer_who_pulled_what() {
    let registry = Registry::start_with_htpasswd_users(&[ALICE, BOB]).await;
    let db = Database::fresh();
    let tw = Tagwarden::builder(&registry.url(), db.url())
        .config(&config())
        .start()
        .await;

    let image = Image::random(&[256]);
    skopeo::copy(
        &OciLayout::with_image(&image).reference(),
        &tw.docker_ref("team/app:1.0.0"),
    )
    .preserve_digests()
    .dest_creds(&creds(ALICE))
    .run()
    .await
    .assert_success();
    let index = Index::random_multi_arch(&[128]);
    skopeo::copy(
        &OciLayout::with_index(&index).reference(),
        &tw.docker_ref("team/multi:2.0"),
    )
    .all()
    .preserve_digests()
    .dest_creds(&creds(ALICE))
    .run()
    .await
    .assert_success();

    let t0 = Utc::now();
    // Alice pulls the release by tag; Bob pulls the index by tag (skopeo then fetches
    // each child by digest) and the release by digest.
    pull(&tw.docker_ref("team/app:1.0.0"), ALICE, false).await;
    pull(&tw.docker_ref("team/multi:2.0"), BOB, true).await;
    pull(
        &tw.docker_ref(&format!("team/app@{}", image.digest())),
        BOB,
        false,
    )
    .await;
    // Alice's name with a wrong password: the registry says 401, so it is not verified.
    let refused = client()
        .get(format!("{}/v2/team/app/manifests/1.0.0", tw.url()))
        .basic_auth(ALICE.0, Some("wrong"))
        .header("user-agent", "pulls-e2e-probe")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let refused_id = header(&refused, "x-request-id").expect("a request id");
    let t1 = Utc::now();

    // Everything is written within a second or so.
    let window = format!("since={}&until={}", rfc3339(t0), rfc3339(t1));
    let everything = eventually("the probe's record", || async {
        let all = all_pulls(&tw, &window, 1000).await;
        all.iter()
            .any(|p| p["request_id"] == refused_id.as_str())
            .then_some(all)
    })
    .await;

    // Who pulled team/app:1.0.0 in the window, and what they got.
    let by_tag = api(
        &tw,
        &format!("repository=team/app&reference=1.0.0&{window}"),
    )
    .await;
    let by_tag = by_tag["items"].as_array().unwrap().clone();
    let served: Vec<&Value> = by_tag.iter().filter(|p| p["status"] == 200).collect();
    assert!(!served.is_empty(), "{by_tag:#?}");
    for p in &served {
        assert_eq!(p["identity"], "alice", "{p}");
        assert_eq!(p["verified"], true, "{p}");
        assert_eq!(p["digest"], image.digest(), "{p}");
        assert_eq!(
            p["media_type"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(p["remote_addr"], "127.0.0.1");
        assert!(p["user_agent"].as_str().is_some(), "{p}");
    }
    let probe = by_tag
        .iter()
        .find(|p| p["request_id"] == refused_id.as_str())
        .expect("the refused read is logged too");
    assert_eq!(probe["status"], 401);
    assert_eq!(probe["identity"], "alice");
    assert_eq!(probe["verified"], false);
    assert_eq!(probe["digest"], Value::Null);
    assert_eq!(probe["user_agent"], "pulls-e2e-probe");
    assert_eq!(probe["method"], "GET");

    // What Bob pulled: the index by tag, both children and the release by digest.
    let bobs = all_pulls(&tw, &format!("identity=bob&{window}"), 2).await;
    let bob_served: Vec<&Value> = bobs.iter().filter(|p| p["status"] == 200).collect();
    let digests: std::collections::BTreeSet<&str> = bob_served
        .iter()
        .map(|p| p["digest"].as_str().unwrap())
        .collect();
    let mut expected: std::collections::BTreeSet<&str> =
        index.images.iter().map(|i| i.digest()).collect();
    expected.insert(index.digest());
    expected.insert(image.digest());
    assert_eq!(digests, expected, "{bobs:#?}");
    for p in &bob_served {
        assert_eq!(p["verified"], true, "{p}");
        // A child or the release pulled by digest is logged under that digest.
        if p["reference"] != "2.0" {
            assert_eq!(p["reference"], p["digest"], "{p}");
        } else {
            assert_eq!(p["digest"], index.digest(), "{p}");
            assert_eq!(p["repository"], "team/multi");
        }
    }
    // Newest first, and the pages add up to the same list.
    let times: Vec<DateTime<Utc>> = bobs
        .iter()
        .map(|p| p["at"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    let bobs_at_once = all_pulls(&tw, &format!("identity=bob&{window}"), 1000).await;
    assert_eq!(bobs, bobs_at_once);
    assert!(everything.len() >= bobs.len() + by_tag.len());

    // The last time the release's digest was pulled: Bob's pull by digest.
    let last = api(&tw, &format!("digest={}&limit=1", image.digest())).await;
    let last = &last["items"][0];
    assert_eq!(last["identity"], "bob", "{last}");
    assert_eq!(last["reference"], image.digest());
    assert!(
        last["at"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap()
            >= t0
    );

    // Bad questions get the API's error format.
    for bad in [
        "reference=1.0.0",
        "repository=Team/App",
        "digest=sha256:nothex",
        "since=yesterday-ish",
        "cursor=garbage",
        "limit=0",
        "colour=blue",
    ] {
        let resp = get_as(format!("{}/api/v1/pulls?{bad}", tw.admin_url()), TOKEN).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
        let body: Value = resp.json().await.unwrap();
        assert!(
            body["errors"][0]["message"].as_str().is_some(),
            "{bad}: {body}"
        );
    }
    let anonymous = get(format!("{}/api/v1/pulls", tw.admin_url())).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    // The same three questions from the command line, against the database and the API.
    let (since, until) = (rfc3339(t0), rfc3339(t1));
    let from_db = cli_json(&[
        "pulls",
        "team/app:1.0.0",
        "--since",
        &since,
        "--until",
        &until,
        "--database-url",
        db.url(),
        "--json",
    ]);
    assert_eq!(from_db, by_tag);
    let admin = tw.admin_url();
    let from_api = cli_json(&[
        "pulls",
        "--identity",
        "bob",
        "--since",
        &since,
        "--until",
        &until,
        "--api",
        &admin,
        "--token",
        TOKEN,
        "--json",
    ]);
    assert_eq!(from_api, bobs);
    let last_cli = cli_json(&[
        "pulls",
        "--digest",
        image.digest(),
        "--limit",
        "1",
        "--database-url",
        db.url(),
        "--json",
    ]);
    assert_eq!(last_cli.len(), 1);
    assert_eq!(&last_cli[0], last);
    // The table names who pulled and the digest they got.
    let table = cli(&[
        "pulls",
        "team/app:1.0.0",
        "--since",
        &since,
        "--database-url",
        db.url(),
    ]);
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(
        table.contains("alice") && table.contains(image.digest()),
        "{table}"
    );
    assert!(!cli(&["pulls", "Team/App:1", "--database-url", db.url()])
        .status
        .success());

    assert_eq!(
        field(&everything, "method")
            .iter()
            .filter(|m| !matches!(**m, "GET" | "HEAD"))
            .count(),
        0
    );
    assert!(counter(&tw, "tagwarden_pulls_recorded_total").await >= everything.len() as u64);
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_pulls_from_an_open_registry_are_logged_unverified() {
    let Served {
        registry: _registry,
        db: _db,
        tw,
    } = Served::with_config(&config()).await;
    let image = Image::random(&[64]);
    skopeo::copy(
        &OciLayout::with_image(&image).reference(),
        &tw.docker_ref("open/app:1.0.0"),
    )
    .preserve_digests()
    .run()
    .await
    .assert_success();
    let raw = skopeo::inspect_raw(&tw.docker_ref("open/app:1.0.0"))
        .await
        .assert_success();
    assert_eq!(support::oci::sha256_digest(&raw.stdout), image.digest());
    // A claimed name on an open registry is only a claim.
    let head = client()
        .head(format!("{}/v2/open/app/manifests/1.0.0", tw.url()))
        .basic_auth("mallory", Some("anything"))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);

    let pulls = eventually("the HEAD's record", || async {
        let items = all_pulls(&tw, "repository=open/app&reference=1.0.0", 100).await;
        items
            .iter()
            .any(|p| p["identity"] == "mallory")
            .then_some(items)
    })
    .await;
    let head = pulls
        .iter()
        .find(|p| p["method"] == "HEAD")
        .expect("the HEAD");
    assert_eq!(head["identity"], "mallory");
    assert_eq!(head["verified"], false);
    assert_eq!(head["digest"], image.digest());
    let get = pulls
        .iter()
        .find(|p| p["method"] == "GET" && p["status"] == 200)
        .expect("skopeo's GET");
    assert_eq!(get["identity"], Value::Null);
    assert_eq!(get["verified"], false);
    assert_eq!(get["digest"], image.digest());

    // The tag's and the digest's audit pages show who pulled it.
    let login = client()
        .post(format!("{}/ui/login", tw.admin_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={TOKEN}&next=%2Fui%2F"))
        .send()
        .await
        .unwrap();
    let cookie = header(&login, "set-cookie").expect("a session cookie");
    let cookie = cookie.split(';').next().unwrap().to_string();
    for path in [
        "/ui/tag?repository=open/app&tag=1.0.0".to_string(),
        format!("/ui/digest?digest={}", image.digest()),
    ] {
        let resp = client()
            .get(format!("{}{path}", tw.admin_url()))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let page = resp.text().await.unwrap();
        let pulled = &page[page.find(r#"id="pulled""#).expect("a Pulled section")..];
        assert!(
            pulled.contains("mallory") && pulled.contains("anonymous"),
            "{path}: {pulled}"
        );
        assert!(pulled.contains("unverified"), "{path}: {pulled}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_database_down_pulls_work_and_records_are_counted_as_dropped() {
    let pg = PrivatePostgres::start();
    let registry = Registry::start().await;
    let tw = Tagwarden::builder(&registry.url(), &pg.url())
        .env("TAGWARDEN_DATABASE__ACQUIRE_TIMEOUT", "1s")
        .config("[pulls]\nqueue = 4\n")
        .start()
        .await;
    let image = Image::random(&[64]);
    skopeo::copy(
        &OciLayout::with_image(&image).reference(),
        &tw.docker_ref("down/app:1.0.0"),
    )
    .preserve_digests()
    .run()
    .await
    .assert_success();
    skopeo::inspect_raw(&tw.docker_ref("down/app:1.0.0"))
        .await
        .assert_success();
    eventually("a recorded pull", || async {
        (counter(&tw, "tagwarden_pulls_recorded_total").await >= 1).then_some(())
    })
    .await;
    let dropped_before = counter(&tw, "tagwarden_pulls_dropped_total").await;
    assert_eq!(dropped_before, 0);

    pg.stop();
    let started = std::time::Instant::now();
    for _ in 0..20 {
        let resp = client()
            .get(format!("{}/v2/down/app/manifests/1.0.0", tw.url()))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            header(&resp, "docker-content-digest").as_deref(),
            Some(image.digest())
        );
    }
    skopeo::inspect_raw(&tw.docker_ref("down/app:1.0.0"))
        .await
        .assert_success();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "pulls slowed down: {:?}",
        started.elapsed()
    );
    // A queue of four and a database that does not answer: most are dropped, all counted.
    let dropped = eventually("dropped records", || async {
        let d = counter(&tw, "tagwarden_pulls_dropped_total").await;
        (d >= 21).then_some(d)
    })
    .await;
    assert!(dropped <= 25, "{dropped}");
    assert!(tw.logs().contains("pull log"), "{}", tw.logs());

    // Back up: records are written again.
    pg.start_again();
    let recorded = counter(&tw, "tagwarden_pulls_recorded_total").await;
    eventually("recording resumed", || async {
        skopeo::inspect_raw(&tw.docker_ref("down/app:1.0.0"))
            .await
            .assert_success();
        (counter(&tw, "tagwarden_pulls_recorded_total").await > recorded).then_some(())
    })
    .await;
}

async fn partitions(pool: &sqlx::PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'pull_log'::regclass ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

fn partition_of(day: NaiveDate) -> String {
    format!("pull_log_{}", day.format("%Y%m%d"))
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_drops_day_partitions_older_than_kept() {
    let db = Database::fresh();
    let ledger =
        tagwarden::ledger::Ledger::connect_lazy(db.url(), 2, Duration::from_secs(5)).unwrap();
    ledger.migrate().await.unwrap();
    let pool = ledger.pool().clone();
    let today = Utc::now().date_naive();
    let old = today - chrono::Days::new(40);
    let recent = today - chrono::Days::new(10);
    for day in [old, recent] {
        sqlx::query("SELECT pull_log_ensure_partition($1)")
            .bind(day)
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO pull_log (at, repository, reference, method, status, verified)
             VALUES ($1, 'team/app', '1.0.0', 'GET', 200, false)",
        )
        .bind(day.and_hms_opt(12, 0, 0).unwrap().and_utc())
        .execute(&pool)
        .await
        .unwrap();
    }
    assert!(partitions(&pool).await.contains(&partition_of(old)));

    // tagwarden's writer runs the retention step when it starts.
    let registry = Registry::start().await;
    let tw = Tagwarden::builder(&registry.url(), db.url())
        .config("[pulls]\nretention = \"30d\"\n")
        .start()
        .await;
    let names = eventually("the old partition dropped", || async {
        let names = partitions(&pool).await;
        (!names.contains(&partition_of(old))).then_some(names)
    })
    .await;
    let tomorrow = today.succ_opt().unwrap();
    for kept in [recent, today, tomorrow] {
        assert!(names.contains(&partition_of(kept)), "{names:?}");
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM pull_log")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 1, "only the recent day's row is left");
    // The line is written only after the DROP commits, so it may trail the partition.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !tw.logs().contains("dropped days past retention") {
        assert!(std::time::Instant::now() < deadline, "{}", tw.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The step on its own: nothing more to drop, and a shorter retention drops more.
    let now = Utc::now();
    let again = tagwarden::pulls::store::maintain(&pool, now, Duration::from_secs(30 * 86_400))
        .await
        .unwrap();
    assert_eq!(again, 0);
    let week = tagwarden::pulls::store::maintain(&pool, now, Duration::from_secs(7 * 86_400))
        .await
        .unwrap();
    assert_eq!(week, 1);
    assert!(!partitions(&pool).await.contains(&partition_of(recent)));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_pull_log_records_nothing() {
    let Served {
        registry: _registry,
        db,
        tw,
    } = Served::with_config("[pulls]\nenabled = false\n").await;
    let image = Image::random(&[64]);
    skopeo::copy(
        &OciLayout::with_image(&image).reference(),
        &tw.docker_ref("off/app:1.0.0"),
    )
    .preserve_digests()
    .run()
    .await
    .assert_success();
    skopeo::inspect_raw(&tw.docker_ref("off/app:1.0.0"))
        .await
        .assert_success();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        db.query_column("SELECT count(*)::text FROM pull_log"),
        vec![Some("0".to_string())]
    );
    assert_eq!(counter(&tw, "tagwarden_pulls_recorded_total").await, 0);
}
