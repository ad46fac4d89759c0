//! The served OpenAPI document against real answers: tagwarden in front of a real
//! registry and Postgres, images pushed with skopeo, then every documented endpoint
//! called (the writes too: a rewind, a retirement, a retention dry run and run) and
//! each JSON body checked against the schema the document gives for its path, method
//! and status. Error answers are checked against their documented schemas the same way.

use crate::support;

mod check;

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::http::{client, get, get_as, header};
use support::{skopeo, Image, OciLayout, Served, Tagwarden};

const ADMIN: &str = "openapi-admin-token-0123456789ab";
const AUDITOR: &str = "openapi-auditor-token-0123456789";
const REPO: &str = "driftwood/web";

fn config() -> String {
    format!(
        "[[admin.tokens]]\nname = \"ops\"\ntoken = \"{ADMIN}\"\nrole = \"admin\"\n\n\
         [[admin.tokens]]\nname = \"siem\"\ntoken = \"{AUDITOR}\"\nrole = \"auditor\"\n\n\
         [[retention.rules]]\nname = \"web-releases\"\nrepository = \"{REPO}\"\n\
         keep_newest_per_minor = 1\nkeep_younger_than = \"180d\"\n"
    )
}

/// The served document and the answers checked against it.
struct Checker {
    base: String,
    doc: Value,
    /// `(method, path, status)` of every answer checked.
    seen: BTreeSet<(String, String, u16)>,
}

impl Checker {
    /// Call `method path?query` with `token` and `body`, check the answer against the
    /// document, and return its status and JSON body.
    async fn call(
        &mut self,
        method: Method,
        path_and_query: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = client().request(method.clone(), format!("{}{path_and_query}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("API request");
        let status = resp.status();
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = resp.text().await.unwrap();
        let path = path_and_query.split('?').next().unwrap();
        let m = method.as_str().to_lowercase();
        let op = &self.doc["paths"][path][&m];
        assert!(op.is_object(), "{m} {path} is not documented");
        let mut answer = &op["responses"][status.as_str()];
        while let Some(r) = answer.get("$ref").and_then(Value::as_str) {
            answer = r[2..].split('/').fold(&self.doc, |n, k| &n[k]);
        }
        assert!(
            answer.is_object(),
            "{m} {path}: status {status} is not documented: {text}"
        );
        let media = content_type.split(';').next().unwrap().trim();
        let schema = &answer["content"][media]["schema"];
        assert!(
            schema.is_object(),
            "{m} {path} {status}: no schema for {media}: {text}"
        );
        let values: Vec<Value> = match media {
            "application/json" => vec![serde_json::from_str(&text).unwrap()],
            "application/x-ndjson" => text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
            _ => vec![Value::String(text.clone())],
        };
        for v in &values {
            let errors = check::check(&self.doc, schema, v);
            assert!(
                errors.is_empty(),
                "{m} {path} {status}: the answer does not fit the document:\n{}\n{v:#}",
                errors.join("\n")
            );
        }
        self.seen.insert((m, path.to_owned(), status.as_u16()));
        (status, values.into_iter().next().unwrap_or(Value::Null))
    }

    async fn get(&mut self, path_and_query: &str) -> Value {
        let (status, body) = self
            .call(Method::GET, path_and_query, Some(AUDITOR), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{path_and_query}: {body}");
        body
    }

    async fn post(&mut self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(ADMIN), Some(body)).await
    }
}

async fn push(tw: &Tagwarden, image: &Image, tag: &str) {
    skopeo::copy(
        &OciLayout::with_image(image).reference(),
        &tw.docker_ref(&format!("{REPO}:{tag}")),
    )
    .preserve_digests()
    .run()
    .await
    .assert_success();
}

#[tokio::test]
async fn every_documented_answer_fits_the_document() {
    let Served {
        registry: _registry,
        db: _db,
        tw,
    } = Served::with_config(&config()).await;
    let [v120, v140, v141] = [0; 3].map(|_| Image::random(&[256]));
    push(&tw, &v120, "1.2.0").await;
    push(&tw, &v140, "1.4.0").await;
    push(&tw, &v141, "1.4.1").await;
    push(&tw, &v140, "latest").await;
    push(&tw, &v141, "latest").await;
    // A refusal, so the feed holds a `refuse` event with its detail.
    let refused = skopeo::copy(
        &OciLayout::with_image(&v141).reference(),
        &tw.docker_ref(&format!("{REPO}:1.4.0")),
    )
    .preserve_digests()
    .run()
    .await;
    assert!(!refused.success(), "a release cannot move");
    // A pull, for the pull log.
    let pulled = client()
        .get(format!("{}/v2/{REPO}/manifests/1.4.0", tw.url()))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(pulled.status(), StatusCode::OK);
    let pulled_id = header(&pulled, "x-request-id").expect("a request id");

    let base = tw.admin_url();
    let doc: Value = get(format!("{base}/api/v1/openapi.json"))
        .await
        .json()
        .await
        .unwrap();
    let mut c = Checker {
        base,
        doc,
        seen: BTreeSet::new(),
    };
    let d140 = v140.digest().to_owned();

    // ---- the reads ----
    let repos = c.get("/api/v1/repositories").await;
    assert_eq!(repos["items"][0]["repository"], REPO);
    let first = c.get("/api/v1/repositories?limit=1").await;
    assert_eq!(first["items"].as_array().unwrap().len(), 1);
    let tags = c
        .get(&format!("/api/v1/tags?repository={REPO}&limit=2"))
        .await;
    let cursor = tags["next_cursor"]
        .as_str()
        .expect("more tags than one page");
    c.get(&format!(
        "/api/v1/tags?repository={REPO}&limit=2&cursor={cursor}"
    ))
    .await;
    c.get(&format!(
        "/api/v1/tags?repository={REPO}&include_deleted=true"
    ))
    .await;
    let history = c
        .get(&format!(
            "/api/v1/history?repository={REPO}&tag=latest&order=newest"
        ))
        .await;
    assert_eq!(history["items"][0]["action"], "move");
    for tag in ["latest", "nope"] {
        c.get(&format!("/api/v1/resolve?repository={REPO}&tag={tag}"))
            .await;
    }
    let past = c
        .get(&format!(
            "/api/v1/resolve?repository={REPO}&tag=latest&at=1h"
        ))
        .await;
    assert_eq!(past["exists"], false);
    let usage = c.get(&format!("/api/v1/digest?digest={d140}")).await;
    assert!(usage["items"].as_array().unwrap().len() >= 2, "{usage}");
    let events = c.get("/api/v1/events?action=refused").await;
    assert!(events["items"][0]["detail"].is_object(), "{events}");
    c.get(&format!(
        "/api/v1/events?repository={REPO}&since=1h&order=desc&limit=3"
    ))
    .await;
    c.get("/api/v1/events/export").await;
    c.get("/api/v1/events/export?format=csv&after_id=1&limit=2")
        .await;
    // The log is flushed about every second, and the pushes' manifest reads may be
    // written before the GET: wait for the GET's own record.
    let mut pulls = Value::Null;
    let mut pull = None;
    for _ in 0..150 {
        pulls = c.get("/api/v1/pulls").await;
        pull = pulls["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["request_id"] == pulled_id.as_str())
            .cloned();
        if pull.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pull = pull.unwrap_or_else(|| panic!("the GET of 1.4.0 is not in the pull log: {pulls}"));
    assert_eq!(pull["reference"], "1.4.0", "{pull}");
    c.get(&format!(
        "/api/v1/pulls?repository={REPO}&reference=1.4.0&digest={d140}"
    ))
    .await;
    let this = c
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(this.0, StatusCode::OK);

    // ---- the writes ----
    let (status, rewound) = c
        .post(
            "/api/v1/rewind",
            json!({"repository": REPO, "tag": "latest", "to": "1.4.0", "reason": "INC-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rewound}");
    let (status, _) = c
        .post(
            "/api/v1/rewind",
            json!({"repository": REPO, "tag": "latest", "to": "9.9.9", "reason": "INC-2"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = c
        .post(
            "/api/v1/rewind",
            json!({"repository": REPO, "tag": "1.4.1", "to": "1.4.0", "reason": "INC-3"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, plan) = c.post("/api/v1/retention", json!({"dry_run": true})).await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    assert!(!plan["releases"].as_array().unwrap().is_empty(), "{plan}");
    let (status, retired) = c
        .post(
            "/api/v1/retire",
            json!({"repository": REPO, "tag": "1.2.0", "reason": "end of support"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{retired}");
    let (status, _) = c
        .post(
            "/api/v1/retire",
            json!({"repository": REPO, "tag": "1.2.0", "reason": "again"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = c
        .post(
            "/api/v1/retire",
            json!({"repository": REPO, "tag": "9.9.9", "reason": "none"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, plan) = c.post("/api/v1/retention", json!({"dry_run": false})).await;
    assert_eq!(status, StatusCode::OK, "{plan}");

    // ---- the errors, in the OCI format ----
    let (status, _) = c.call(Method::GET, "/api/v1/events", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = c
        .call(
            Method::GET,
            "/api/v1/events",
            Some("someone-elses-token-1234"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = c
        .call(Method::GET, "/api/v1/events?limit=0", Some(AUDITOR), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = c
        .call(
            Method::POST,
            "/api/v1/retire",
            Some(AUDITOR),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = c.post("/api/v1/rewind", json!({"tag": "x"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Every documented operation was called and its answer checked.
    let documented: BTreeSet<(String, String)> = c.doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.clone(), p.clone()))
        })
        .collect();
    let called: BTreeSet<(String, String)> = c
        .seen
        .iter()
        .map(|(m, p, _)| (m.clone(), p.clone()))
        .collect();
    assert_eq!(documented, called);

    // The router serves what the document describes, and nothing else under /api:
    // another method on a documented path is 405, a path it does not list is 404.
    for (method, path) in &documented {
        let other = if method == "get" {
            Method::POST
        } else {
            Method::GET
        };
        let resp = client()
            .request(other.clone(), format!("{}{path}", c.base))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{other} {path}"
        );
    }
    for path in [
        "/api/v1/tag",
        "/api/v1/events/import",
        "/api/v1/openapi.yaml",
        "/api/v2/events",
    ] {
        let resp = get_as(format!("{}{path}", c.base), ADMIN).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
    }
    drop(tw);
}
