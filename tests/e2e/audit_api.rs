//! The audit API and the audit commands end to end: real images pushed with skopeo
//! through tagwarden (re-pushes, moves, a refusal, a delete of a moving tag, a manifest
//! removed behind tagwarden's back), then every audit question asked through the API,
//! with and without a token, and through the command line, against the database and
//! against the API.

use crate::support;

use std::process::{Command, Output};

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::Value;
use support::audit::{self, push, PASSWORD, TOKEN, USER};
use support::http::{client, get, header};
use support::{skopeo, Database, Image, Registry, Tagwarden};

/// The API of one tagwarden, with a token or without.
struct Api {
    base: String,
    token: Option<String>,
}

impl Api {
    async fn get(&self, path_and_query: &str) -> reqwest::Response {
        let mut req = client().get(format!("{}{path_and_query}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("API request")
    }

    /// GET, expecting 200 and JSON.
    async fn json(&self, path_and_query: &str) -> Value {
        let resp = self.get(path_and_query).await;
        let status = resp.status();
        let body = resp.text().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{path_and_query}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path_and_query}: {e}: {body}"))
    }

    /// Every item of a listing, one page of `limit` at a time; also the number of pages.
    async fn all(&self, path_and_query: &str, limit: u32) -> (Vec<Value>, usize) {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut url = format!("{path_and_query}&limit={limit}");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let page = self.json(&url).await;
            pages += 1;
            let got = page["items"].as_array().unwrap();
            assert!(got.len() <= limit as usize, "{url}: page too long");
            items.extend(got.iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return (items, pages),
            }
        }
    }
}

fn actions(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect()
}

/// An RFC 3339 time in a JSON answer.
fn time(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .unwrap()
}

fn at(event: &Value) -> DateTime<Utc> {
    time(&event["at"])
}

fn midpoint(a: DateTime<Utc>, b: DateTime<Utc>) -> DateTime<Utc> {
    a + (b - a) / 2
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// `tagwarden <args>`, with no TAGWARDEN_* variables from the environment.
async fn tagwarden(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tagwarden"));
        c.args(&args);
        for (key, _) in std::env::vars() {
            if key.starts_with("TAGWARDEN_") {
                c.env_remove(key);
            }
        }
        c.output().expect("run tagwarden")
    })
    .await
    .unwrap()
}

/// GET on the admin listener with this `Authorization` header, if any.
async fn raw_get(tw: &Tagwarden, path: &str, authorization: Option<&str>) -> reqwest::Response {
    let mut req = client().get(format!("{}{path}", tw.admin_url()));
    if let Some(v) = authorization {
        req = req.header("authorization", v);
    }
    req.send().await.unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn shown(out: &Output) -> String {
    format!("{}{}", stdout(out), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test]
async fn the_audit_api_and_commands_answer_every_question_and_only_with_a_token() {
    let audit::Stack { registry, db, tw } = audit::Stack::start().await;
    let (a, b, c) = (
        Image::random(&[1024]),
        Image::random(&[1024]),
        Image::random(&[1024]),
    );
    let web = |tag: &str| tw.docker_ref(&format!("driftwood/web:{tag}"));

    // 1.4 moves; 1.4.0 is a release; both start on a.
    push(&a, &web("1.4")).await.assert_success();
    push(&a, &web("1.4.0")).await.assert_success();
    push(&a, &web("1.4")).await.assert_success(); // identical re-push
    push(&b, &web("1.4")).await.assert_success(); // move a -> b
    push(&b, &web("1.4.0")).await.assert_failure(); // refused
    push(&c, &web("1.4")).await.assert_success(); // move b -> c
    push(&a, &tw.docker_ref("driftwood/api:2.0.0"))
        .await
        .assert_success();
    // More tags than one page holds.
    for tag in ["t1", "t2", "t3", "t4", "t5"] {
        push(&a, &web(tag)).await.assert_success();
    }
    // Delete the moving tag (skopeo deletes c by digest; only 1.4 names it).
    audit::delete(&web("1.4")).await.assert_success();

    let api = Api {
        base: tw.admin_url(),
        token: Some(TOKEN.to_string()),
    };

    // ---- without a valid token: refused, no data ----
    let endpoints = [
        "/api/v1/repositories".to_string(),
        "/api/v1/tags?repository=driftwood/web".into(),
        "/api/v1/history?repository=driftwood/web&tag=1.4".into(),
        "/api/v1/resolve?repository=driftwood/web&tag=1.4".into(),
        format!("/api/v1/digest?digest={}", a.digest()),
        "/api/v1/events".into(),
        "/api/v1/events/export?format=csv".into(),
        "/api/v1/no-such-endpoint".into(),
    ];
    for path in &endpoints {
        for (auth, status, challenge) in [
            (None, StatusCode::UNAUTHORIZED, true),
            (Some("Basic YWxpY2U6cHc="), StatusCode::UNAUTHORIZED, true),
            (Some("Bearer"), StatusCode::UNAUTHORIZED, true),
            (Some(TOKEN), StatusCode::UNAUTHORIZED, true),
            (
                Some("Bearer auditor-token-0123456789abcdeF"),
                StatusCode::FORBIDDEN,
                false,
            ),
            (
                Some("Bearer someone-elses-token-123456"),
                StatusCode::FORBIDDEN,
                false,
            ),
        ] {
            let resp = raw_get(&tw, path, auth).await;
            assert_eq!(resp.status(), status, "{path} with {auth:?}");
            let www = header(&resp, "www-authenticate");
            assert_eq!(
                www.as_deref().is_some_and(|w| w.starts_with("Bearer")),
                challenge,
                "{path} with {auth:?}: WWW-Authenticate {www:?}"
            );
            let body = resp.text().await.unwrap();
            let json: Value = serde_json::from_str(&body).unwrap();
            assert!(json["errors"][0]["code"].is_string(), "{body}");
            assert!(
                !body.contains("sha256:") && !body.contains("driftwood"),
                "no ledger data without a valid token: {body}"
            );
        }
    }
    // Health, readiness, metrics and the API description stay open.
    for open in ["/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"] {
        let resp = raw_get(&tw, open, None).await;
        assert_eq!(resp.status(), StatusCode::OK, "{open}");
    }
    let doc = raw_get(&tw, "/api/v1/openapi.json", None).await;
    let doc: Value = doc.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["paths"]["/api/v1/resolve"]["get"].is_object());

    // ---- repositories and current bindings ----
    let repos = api.json("/api/v1/repositories").await;
    let names: Vec<&str> = repos["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["repository"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["driftwood/api", "driftwood/web"]);
    let (live, pages) = api.all("/api/v1/tags?repository=driftwood/web", 2).await;
    assert_eq!(pages, 3, "six live tags, two per page");
    let live_tags: Vec<&str> = live.iter().map(|t| t["tag"].as_str().unwrap()).collect();
    assert_eq!(live_tags, ["1.4.0", "t1", "t2", "t3", "t4", "t5"]);
    assert_eq!(live[0]["digest"], a.digest());
    assert_eq!(live[0]["class"], "immutable");
    assert!(live[0]["since"].is_string());
    let (all_tags, _) = api
        .all(
            "/api/v1/tags?repository=driftwood/web&include_deleted=true",
            100,
        )
        .await;
    let deleted = all_tags.iter().find(|t| t["tag"] == "1.4").unwrap();
    assert_eq!(deleted["digest"], c.digest());
    assert!(deleted["deleted_at"].is_string(), "{deleted}");

    // ---- history of one tag, both orders, paged ----
    let (history, pages) = api
        .all("/api/v1/history?repository=driftwood/web&tag=1.4", 2)
        .await;
    assert_eq!(
        actions(&history),
        ["create", "repush", "move", "move", "delete"]
    );
    assert_eq!(pages, 3);
    assert_eq!(history[2]["previous_digest"], a.digest());
    assert_eq!(history[2]["digest"], b.digest());
    assert_eq!(history[0]["identity"], USER);
    assert_eq!(history[0]["identity_verified"], true);
    let newest = api
        .json("/api/v1/history?repository=driftwood/web&tag=1.4&order=desc")
        .await;
    let mut reversed = actions(newest["items"].as_array().unwrap());
    reversed.reverse();
    assert_eq!(reversed, actions(&history));
    let release = api
        .json("/api/v1/history?repository=driftwood/web&tag=1.4.0")
        .await;
    assert_eq!(
        actions(release["items"].as_array().unwrap()),
        ["create", "refuse"]
    );
    let (created, moved_to_b, moved_to_c, deleted_at) = (
        at(&history[0]),
        at(&history[2]),
        at(&history[3]),
        at(&history[4]),
    );

    // ---- resolve ----
    let resolve = |t: DateTime<Utc>| {
        let url = format!(
            "/api/v1/resolve?repository=driftwood/web&tag=1.4&at={}",
            rfc3339(t)
        );
        let api = &api;
        async move { api.json(&url).await }
    };
    let r = resolve(midpoint(moved_to_b, moved_to_c)).await;
    assert_eq!(r["exists"], true);
    assert_eq!(r["digest"], b.digest(), "between the two moves");
    assert_eq!(r["event"]["action"], "move");
    assert_eq!(
        resolve(midpoint(created, moved_to_b)).await["digest"],
        a.digest()
    );
    // After the identical re-push, the binding in force is still the one the create
    // started: the re-push did not begin a new period.
    let repushed = at(&history[1]);
    let r = resolve(midpoint(repushed, moved_to_b)).await;
    assert_eq!(r["digest"], a.digest());
    assert_eq!(r["event"]["action"], "create", "{r}");
    assert_eq!(r["event"]["id"], history[0]["id"], "{r}");
    assert_eq!(time(&r["event"]["at"]), created);
    assert_eq!(
        resolve(midpoint(moved_to_c, deleted_at)).await["digest"],
        c.digest()
    );
    let after = resolve(deleted_at + chrono::Duration::milliseconds(1)).await;
    assert_eq!(after["exists"], false, "after the delete: {after}");
    assert_eq!(after["digest"], Value::Null);
    assert_eq!(after["event"]["action"], "delete");
    let before = resolve(created - chrono::Duration::seconds(1)).await;
    assert_eq!(before["exists"], false);
    assert_eq!(before["event"], Value::Null);
    let now = api
        .json("/api/v1/resolve?repository=driftwood/web&tag=1.4.0")
        .await;
    assert_eq!(now["digest"], a.digest(), "`at` defaults to now");

    // ---- reverse lookup of a digest ----
    let (tags_of_a, pages) = api
        .all(&format!("/api/v1/digest?digest={}", a.digest()), 3)
        .await;
    assert_eq!(pages, 3, "eight tags, three per page");
    let named: Vec<String> = tags_of_a
        .iter()
        .map(|t| {
            format!(
                "{}:{}",
                t["repository"].as_str().unwrap(),
                t["tag"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        named,
        [
            "driftwood/api:2.0.0",
            "driftwood/web:1.4",
            "driftwood/web:1.4.0",
            "driftwood/web:t1",
            "driftwood/web:t2",
            "driftwood/web:t3",
            "driftwood/web:t4",
            "driftwood/web:t5",
        ]
    );
    let moving = &tags_of_a[1]["periods"];
    assert_eq!(moving.as_array().unwrap().len(), 1, "{moving}");
    assert_eq!(time(&moving[0]["from"]), created);
    assert_eq!(time(&moving[0]["until"]), moved_to_b);
    assert_eq!(moving[0]["ended_by"], "move");
    assert_eq!(moving[0]["replaced_by"], b.digest());
    assert_eq!(tags_of_a[2]["periods"][0]["until"], Value::Null);
    let of_c = api
        .json(&format!("/api/v1/digest?digest={}", c.digest()))
        .await;
    let period = &of_c["items"][0]["periods"][0];
    assert_eq!(of_c["items"][0]["tag"], "1.4");
    assert_eq!(period["ended_by"], "delete", "{of_c}");
    assert_eq!(time(&period["until"]), deleted_at);

    // ---- history survives the manifest's deletion from the registry ----
    let resp = client()
        .delete(format!(
            "{}/v2/driftwood/web/manifests/{}",
            registry.url(),
            a.digest()
        ))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::ACCEPTED,
        "deleted behind tagwarden's back"
    );
    let after_removal = api
        .json(&format!("/api/v1/digest?digest={}", a.digest()))
        .await;
    assert_eq!(after_removal["items"].as_array().unwrap(), &tags_of_a);
    let still = api
        .json("/api/v1/resolve?repository=driftwood/web&tag=1.4.0")
        .await;
    assert_eq!(still["digest"], a.digest());
    // ... and the release tag stays reserved for its digest.
    let stderr = push(&b, &web("1.4.0")).await.assert_failure();
    assert!(stderr.contains(a.digest()), "{stderr}");

    // ---- the event feed ----
    let (refusals, _) = api.all("/api/v1/events?action=refused", 100).await;
    assert_eq!(refusals.len(), 2);
    assert!(refusals
        .iter()
        .all(|e| e["action"] == "refuse" && e["tag"] == "1.4.0"));
    let (everything, pages) = api.all("/api/v1/events?order=asc", 4).await;
    let total = everything.len();
    // 1.4: create, repush, move, move, delete; 1.4.0: create, refuse, refuse;
    // driftwood/api:2.0.0 and t1..t5: create.
    assert_eq!(total, 14);
    assert_eq!(pages, total.div_ceil(4));
    // Every event names the policy that decided it: here the built-in rules, the same
    // policy `tagwarden explain` reports without a configuration file.
    let explained = stdout(&tagwarden(vec!["explain".into(), "driftwood/web:1.4.0".into()]).await);
    let policy = explained
        .lines()
        .find_map(|l| l.trim().strip_prefix("policy:"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("explain names no policy: {explained}"));
    assert_eq!(policy.len(), 64, "{explained}");
    assert!(
        everything.iter().all(|e| e["policy_hash"] == policy),
        "{everything:#?}"
    );
    let ids: Vec<i64> = everything
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "oldest first, no repeats"
    );
    let (mine, _) = api
        .all(
            &format!("/api/v1/events?identity={USER}&repository=driftwood/api"),
            100,
        )
        .await;
    assert_eq!(actions(&mine), ["create"]);
    let (nobody, _) = api.all("/api/v1/events?identity=bob", 100).await;
    assert!(nobody.is_empty());
    let window = format!(
        "/api/v1/events?since={}&until={}",
        rfc3339(moved_to_b),
        rfc3339(deleted_at)
    );
    let (in_window, _) = api.all(&window, 100).await;
    assert!(in_window
        .iter()
        .all(|e| at(e) >= moved_to_b && at(e) < deleted_at));
    assert!(in_window.iter().any(|e| e["action"] == "refuse"));

    // Exports for a SIEM.
    let resp = api.get("/api/v1/events/export?format=csv").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(header(&resp, "content-type")
        .unwrap()
        .starts_with("text/csv"));
    let csv = resp.text().await.unwrap();
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert!(
        lines[0].starts_with("id,at,action,repository,tag,digest"),
        "{csv}"
    );
    assert_eq!(lines.len(), total + 1);
    assert!(lines
        .iter()
        .any(|l| l.contains(",refuse,driftwood/web,1.4.0,")));
    let resp = api
        .get("/api/v1/events/export?format=jsonl&action=refused")
        .await;
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some("application/x-ndjson")
    );
    let jsonl = resp.text().await.unwrap();
    let exported: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(exported, refusals);
    let resumed = api
        .get(&format!(
            "/api/v1/events/export?after_id={}&limit=3",
            ids[total - 5]
        ))
        .await
        .text()
        .await
        .unwrap();
    let resumed_ids: Vec<i64> = resumed
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(resumed_ids, ids[total - 4..total - 1]);

    // ---- bad questions get 400s in the same format ----
    for bad in [
        "/api/v1/events?limit=0",
        "/api/v1/events?limit=1001",
        "/api/v1/events?cursor=not-a-cursor",
        "/api/v1/events?action=pushed",
        "/api/v1/events?since=yesterday",
        "/api/v1/events?colour=red",
        "/api/v1/history?repository=driftwood/web",
        "/api/v1/history?repository=Driftwood/web&tag=1.4",
        "/api/v1/resolve?repository=driftwood/web&tag=1.4&at=soon",
        "/api/v1/digest?digest=sha256:abc",
        "/api/v1/events/export?format=xml",
    ] {
        let resp = api.get(bad).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["errors"][0]["code"], "INVALID_PARAMETER", "{bad}");
    }
    let resp = api.get("/api/v1/no-such-endpoint").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    // ---- the same questions from the command line, via the database and the API ----
    let via_db = vec!["--database-url".to_string(), db.url().to_string()];
    let via_api = vec![
        "--api".to_string(),
        tw.admin_url(),
        "--token".into(),
        TOKEN.into(),
    ];
    for source in [&via_db, &via_api] {
        let run = |args: &[&str]| {
            let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            all.extend(source.iter().cloned());
            tagwarden(all)
        };

        let out = run(&["history", "driftwood/web:1.4"]).await;
        let text = stdout(&out);
        assert!(out.status.success(), "{}", shown(&out));
        assert!(text.starts_with("driftwood/web:1.4\nTIME"), "{text}");
        for word in ["create", "repush", "move", "delete", b.digest(), USER] {
            assert!(text.contains(word), "history table lacks {word}:\n{text}");
        }
        let out = run(&["history", "driftwood/web:1.4", "--json", "--newest-first"]).await;
        let json: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            actions(&json),
            ["delete", "move", "move", "repush", "create"]
        );

        let between = rfc3339(midpoint(moved_to_b, moved_to_c));
        let out = run(&["resolve", "driftwood/web:1.4", "--at", &between]).await;
        assert!(out.status.success(), "{}", shown(&out));
        assert!(stdout(&out).contains(b.digest()), "{}", shown(&out));
        let after_repush = rfc3339(midpoint(repushed, moved_to_b));
        let out = run(&["resolve", "driftwood/web:1.4", "--at", &after_repush]).await;
        let set_by = format!("set by create (event {})", history[0]["id"]);
        assert!(stdout(&out).contains(&set_by), "{set_by}: {}", shown(&out));
        let out = run(&["resolve", "driftwood/web:1.4", "--json"]).await;
        assert_eq!(out.status.code(), Some(1), "gone now: {}", shown(&out));
        let json: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["exists"], false);
        assert_eq!(json["event"]["action"], "delete");
        let out = run(&["resolve", "driftwood/web:1.4"]).await;
        assert!(
            stdout(&out).contains("did not exist then"),
            "{}",
            shown(&out)
        );

        let out = run(&["events", "--action", "refused", "--since", "24h"]).await;
        assert!(out.status.success(), "{}", shown(&out));
        let text = stdout(&out);
        let rows: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(rows.len(), 2, "{}", shown(&out));
        assert!(rows
            .iter()
            .all(|r| r.contains("refuse") && r.contains("driftwood/web:1.4.0")));
        let out = run(&["events", "--limit", "3", "--json"]).await;
        let json: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json, everything[..3]);
        assert!(String::from_utf8_lossy(&out.stderr).contains("more events"));
        let out = run(&["events", "--limit", "0", "--csv"]).await;
        assert_eq!(
            stdout(&out).replace("\r\n", "\n"),
            csv.replace("\r\n", "\n")
        );
        let out = run(&["events", "--action", "refuse", "--jsonl"]).await;
        assert_eq!(stdout(&out), jsonl);

        let out = run(&["digest", a.digest()]).await;
        let text = stdout(&out);
        assert!(out.status.success(), "{}", shown(&out));
        for tag in [
            "driftwood/api:2.0.0",
            "driftwood/web:1.4 ",
            "driftwood/web:t5",
        ] {
            assert!(text.contains(tag), "{tag}:\n{text}");
        }
        assert!(text.contains(&format!("move to {}", b.digest())), "{text}");
        assert!(text.contains("(still bound)"), "{text}");
        let out = run(&["digest", a.digest(), "--json"]).await;
        let json: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["tags"].as_array().unwrap(), &tags_of_a);
        let unknown = format!("sha256:{}", "0".repeat(64));
        let out = run(&["digest", &unknown]).await;
        assert_eq!(out.status.code(), Some(1), "{}", shown(&out));
    }

    // The command line through the API needs a valid token too.
    let out = tagwarden(
        [
            "events",
            "--api",
            &tw.admin_url(),
            "--token",
            "wrong-token-0123456789",
        ]
        .map(String::from)
        .to_vec(),
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(shown(&out).contains("403"), "{}", shown(&out));
    let out = tagwarden(
        ["events", "--api", &tw.admin_url()]
            .map(String::from)
            .to_vec(),
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(shown(&out).contains("token"), "{}", shown(&out));
    let out = tagwarden(["events"].map(String::from).to_vec()).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(shown(&out).contains("--database-url"), "{}", shown(&out));

    // Tokens never reach the log; the holder's name does.
    let logs = tw.logs();
    assert!(!logs.contains(TOKEN), "the token was logged");
    assert!(
        logs.contains("auditors"),
        "requests are logged with the token's name"
    );
}

#[tokio::test]
async fn with_no_token_configured_the_api_refuses_everything() {
    let registry = Registry::start().await;
    let db = Database::fresh();
    let tw = Tagwarden::start(&registry.url(), db.url()).await;
    let image = Image::random(&[256]);
    skopeo::push(&image, &tw.docker_ref("team/app:1.0.0"))
        .await
        .assert_success();
    for auth in [None, Some("Bearer auditor-token-0123456789abcdef")] {
        for path in [
            "/api/v1/repositories",
            "/api/v1/history?repository=team/app&tag=1.0.0",
            "/api/v1/events/export",
        ] {
            let resp = raw_get(&tw, path, auth).await;
            let expected = if auth.is_some() {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::UNAUTHORIZED
            };
            assert_eq!(resp.status(), expected, "{path} {auth:?}");
            let body = resp.text().await.unwrap();
            assert!(
                !body.contains("team/app") && !body.contains("sha256"),
                "{body}"
            );
        }
    }
    let health = get(format!("{}/healthz", tw.admin_url())).await;
    assert_eq!(health.status(), StatusCode::OK);
    assert!(
        tw.logs().contains("no [[admin.tokens]] configured"),
        "the operator is told: {}",
        tw.logs()
    );
}
