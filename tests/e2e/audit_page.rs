//! The audit pages end to end: real images pushed with skopeo through tagwarden (a
//! release, a refused re-push of other bytes, a moving tag moved twice, a delete), then
//! the pages fetched as a browser would: nothing but the sign-in page without a token,
//! the timeline in order with digests and identities once signed in, links between
//! tags and digests that resolve, signing out that ends the session for every copy of
//! its cookie, and hostile identities shown escaped.

use crate::support;

use std::collections::BTreeSet;

use base64::Engine as _;
use reqwest::{Response, StatusCode};
use support::api::{put_manifest, upload_blob};
use support::audit::{self, config, push, TOKEN};
use support::http::{client, get_as, header};
use support::{Image, Served};

/// The pages of one tagwarden, as a browser with or without a session cookie sees them.
struct Browser {
    base: String,
    cookie: Option<String>,
}

impl Browser {
    async fn get(&self, path: &str) -> Response {
        let mut req = client().get(format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        req.send().await.expect("page request")
    }

    /// GET, expecting 200 and HTML.
    async fn page(&self, path: &str) -> String {
        let resp = self.get(path).await;
        let status = resp.status();
        assert_security_headers(&resp, path);
        let body = resp.text().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        body
    }
}

fn assert_security_headers(resp: &Response, path: &str) {
    let csp = header(resp, "content-security-policy").unwrap_or_default();
    assert!(
        csp.starts_with("default-src 'none'; style-src 'unsafe-inline'"),
        "{path}: CSP {csp:?}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
    assert_eq!(
        header(resp, "x-content-type-options").as_deref(),
        Some("nosniff"),
        "{path}"
    );
    assert_eq!(header(resp, "cache-control").as_deref(), Some("no-store"));
    let ct = header(resp, "content-type").unwrap_or_default();
    assert!(ct.starts_with("text/html; charset=utf-8"), "{path}: {ct}");
}

/// The `data-action` of each timeline row, in page order.
fn timeline(page: &str) -> Vec<&str> {
    page.split("data-action=\"")
        .skip(1)
        .map(|rest| &rest[..rest.find('"').unwrap()])
        .collect()
}

/// The page's links under `/ui/`, unescaped.
fn links(page: &str) -> BTreeSet<String> {
    page.split("href=\"")
        .skip(1)
        .map(|rest| rest[..rest.find('"').unwrap()].replace("&amp;", "&"))
        .filter(|l| l.starts_with("/ui/"))
        .collect()
}

fn digest_href(digest: &str) -> String {
    format!("/ui/digest?digest={}", digest.replace(':', "%3A"))
}

fn short(digest: &str) -> String {
    format!("{}…", &digest[..19])
}

/// The `name=value` of a `Set-Cookie` header.
fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().trim().to_string()
}

async fn sign_in(base: &str, token: &str, next: &str, extra: Option<(&str, &str)>) -> Response {
    let mut req = client()
        .post(format!("{base}/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            form_urlencoded::Serializer::new(String::new())
                .append_pair("token", token)
                .append_pair("next", next)
                .finish(),
        );
    if let Some((k, v)) = extra {
        req = req.header(k, v);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn the_audit_pages_show_the_timeline_only_to_auditors_and_link_tags_and_digests() {
    let stack = audit::Stack::start().await;
    let tw = &stack.tw;
    let (a, b, c) = (
        Image::random(&[1024]),
        Image::random(&[1024]),
        Image::random(&[1024]),
    );
    let web = |tag: &str| tw.docker_ref(&format!("driftwood/web:{tag}"));

    push(&a, &web("1.0.0")).await.assert_success(); // a release
    let refused = push(&b, &web("1.0.0")).await.assert_failure(); // other bytes: refused
    assert!(refused.contains("immutable"), "{refused}");
    push(&a, &web("latest")).await.assert_success(); // a moving tag ...
    push(&b, &web("latest")).await.assert_success(); // ... moved once
    push(&c, &web("latest")).await.assert_success(); // ... and twice
    audit::delete(&web("latest")).await.assert_success(); // c by digest: only latest names it

    let base = tw.admin_url();
    let latest = "/ui/tag?repository=driftwood%2Fweb&tag=latest";
    let release = "/ui/tag?repository=driftwood%2Fweb&tag=1.0.0";
    let pages = [
        "/ui/".to_string(),
        latest.to_string(),
        release.to_string(),
        "/ui/repository?repository=driftwood%2Fweb".to_string(),
        digest_href(a.digest()),
        "/ui/no-such-page".to_string(),
    ];

    // ---- without a token: the sign-in page, never data ----
    let forged = format!("tagwarden_session=v1.9999999999.{}", "A".repeat(43));
    let forged_v2 = format!(
        "tagwarden_session=v2.{}.9999999999.{}",
        "A".repeat(22),
        "A".repeat(43)
    );
    for cookie in [
        None,
        Some(forged.as_str()),
        Some(forged_v2.as_str()),
        Some("tagwarden_session="),
    ] {
        let anonymous = Browser {
            base: base.clone(),
            cookie: cookie.map(str::to_string),
        };
        for path in &pages {
            let resp = anonymous.get(path).await;
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path} {cookie:?}");
            assert_security_headers(&resp, path);
            if cookie.is_some() {
                let clear = header(&resp, "set-cookie").unwrap_or_default();
                assert!(
                    clear.contains("Max-Age=0"),
                    "ended session cleared: {clear}"
                );
            }
            let body = resp.text().await.unwrap();
            assert!(body.contains("action=\"/ui/login\""), "{path}: {body}");
            assert_no_ledger_data(&body, &[&a, &b, &c], path);
        }
    }
    for authorization in [
        format!("Bearer {TOKEN}x"),
        format!("Basic {TOKEN}"),
        TOKEN.to_string(),
    ] {
        let resp = client()
            .get(format!("{base}{latest}"))
            .header("authorization", &authorization)
            .send()
            .await
            .unwrap();
        assert!(
            matches!(
                resp.status(),
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
            ),
            "{authorization}: {}",
            resp.status()
        );
        let body = resp.text().await.unwrap();
        assert_no_ledger_data(&body, &[&a, &b, &c], &authorization);
    }
    let login = Browser {
        base: base.clone(),
        cookie: None,
    }
    .page("/ui/login")
    .await;
    assert!(
        login.contains("type=\"password\" name=\"token\""),
        "{login}"
    );

    // Wrong tokens and forms from other sites get no session.
    for (token, extra) in [
        ("not-the-token-0123456789", None),
        ("", None),
        (TOKEN, Some(("sec-fetch-site", "cross-site"))),
    ] {
        let resp = sign_in(&base, token, latest, extra).await;
        assert!(
            resp.status().is_client_error(),
            "{token} {extra:?}: {}",
            resp.status()
        );
        assert_eq!(header(&resp, "set-cookie"), None);
        let body = resp.text().await.unwrap();
        assert_no_ledger_data(&body, &[&a, &b, &c], token);
    }

    // ---- signing in: a session cookie, then back to the page asked for ----
    let resp = sign_in(&base, TOKEN, latest, None).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(header(&resp, "location").as_deref(), Some(latest));
    let set = header(&resp, "set-cookie").expect("a session cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(!set.contains(TOKEN), "the cookie is not the token: {set}");
    let browser = Browser {
        base: base.clone(),
        cookie: Some(cookie_pair(&set)),
    };
    // Only pages under /ui/ are places to go after signing in.
    let resp = sign_in(&base, TOKEN, "https://evil.example/", None).await;
    assert_eq!(header(&resp, "location").as_deref(), Some("/ui/"));

    // ---- the moving tag: created, moved twice, deleted ----
    let page = browser.page(latest).await;
    assert_eq!(timeline(&page), ["create", "move", "move", "delete"]);
    let rows: Vec<&str> = page.split("data-action=").skip(1).collect();
    assert!(rows[0].contains(&digest_href(a.digest())), "{}", rows[0]);
    assert!(rows[1].contains(&digest_href(b.digest())) && rows[1].contains(&short(b.digest())));
    assert!(
        rows[1].find(&digest_href(b.digest())) < rows[1].find(&digest_href(a.digest())),
        "digest, then previous digest: {}",
        rows[1]
    );
    assert!(rows[2].contains(&digest_href(c.digest())));
    for row in &rows {
        assert!(
            row.contains("<span class=\"identity\">alice</span>") && row.contains("✓ verified"),
            "{row}"
        );
    }
    assert!(page.contains("deleted"), "the binding shows the delete");
    assert!(page.contains(c.digest()), "the last digest in full: {page}");
    let newest = browser.page(&format!("{latest}&order=desc")).await;
    assert_eq!(timeline(&newest), ["delete", "move", "move", "create"]);

    // ---- the release: created, then a refused re-push, marked as such ----
    let page = browser.page(release).await;
    assert_eq!(timeline(&page), ["create", "refuse"]);
    assert!(page.contains("class=\"event refused\""), "{page}");
    assert!(page.contains("REFUSED"));
    let refusal = page.split("data-action=\"refuse\"").nth(1).unwrap();
    assert!(
        refusal.contains("attempted") && refusal.contains(&digest_href(b.digest())),
        "the refused row names the attempted digest: {refusal}"
    );
    assert!(
        refusal.contains(&digest_href(a.digest())),
        "and the bound one"
    );
    assert!(
        refusal.contains("semver-releases"),
        "and the rule: {refusal}"
    );
    let binding = page.split("id=\"binding\"").nth(1).unwrap();
    assert!(binding.contains(a.digest()) && binding.contains("immutable"));

    // ---- links resolve: tag pages -> digest pages -> tag pages ----
    let mut visited = BTreeSet::new();
    for link in links(&browser.page(latest).await)
        .into_iter()
        .chain(links(&page))
    {
        if visited.insert(link.clone()) {
            let target = browser.page(&link).await;
            assert!(target.contains("</html>"), "{link}");
        }
    }
    for d in [a.digest(), b.digest(), c.digest()] {
        assert!(visited.contains(&digest_href(d)), "a link to {d}");
    }
    let of_a = browser.page(&digest_href(a.digest())).await;
    assert!(of_a.contains(a.digest()));
    let tag_links = links(&of_a);
    assert!(tag_links.contains(latest), "{tag_links:?}");
    assert!(tag_links.contains(release), "{tag_links:?}");
    let of_c = browser.page(&digest_href(c.digest())).await;
    assert!(
        of_c.contains("a-delete"),
        "the period of c ended with the delete"
    );
    let repo = browser
        .page("/ui/repository?repository=driftwood%2Fweb")
        .await;
    assert!(
        links(&repo).contains(release),
        "live tags link to their pages"
    );
    assert!(
        !links(&repo).contains(latest),
        "deleted: not among live tags"
    );
    let all = browser
        .page("/ui/repository?repository=driftwood%2Fweb&include_deleted=true")
        .await;
    assert!(links(&all).contains(latest));
    let index = browser.page("/ui/").await;
    assert!(links(&index).contains("/ui/repository?repository=driftwood%2Fweb"));

    // The search form leads to the pages.
    let bare_hex = format!("digest={}", a.digest().trim_start_matches("sha256:"));
    for (query, to) in [
        ("repository=driftwood%2Fweb&tag=latest", latest.to_string()),
        ("repository=driftwood%2Fweb%3A1.0.0", release.to_string()),
        (bare_hex.as_str(), digest_href(a.digest())),
    ] {
        let resp = browser.get(&format!("/ui/search?{query}")).await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{query}");
        assert_eq!(header(&resp, "location"), Some(to), "{query}");
    }
    // A bad question is a page that says so.
    let resp = browser.get("/ui/tag?repository=Driftwood&tag=latest").await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    // ---- scripts send the token as a bearer header ----
    let resp = get_as(format!("{base}{latest}"), TOKEN).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        timeline(&resp.text().await.unwrap()),
        ["create", "move", "move", "delete"]
    );

    // ---- signing out clears the cookie and ends the session on the server ----
    let other_session = Browser {
        base: base.clone(),
        cookie: Some(cookie_pair(
            &header(&sign_in(&base, TOKEN, "/ui/", None).await, "set-cookie").unwrap(),
        )),
    };
    let copied = Browser {
        base: base.clone(),
        cookie: browser.cookie.clone(),
    };
    let resp = client()
        .post(format!("{base}/ui/logout"))
        .header("cookie", browser.cookie.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(header(&resp, "location").as_deref(), Some("/ui/login"));
    let clear = header(&resp, "set-cookie").unwrap();
    assert!(clear.starts_with("tagwarden_session=;") && clear.contains("Max-Age=0"));
    // A copy of the cookie, kept by whoever copied it, no longer opens any page.
    for path in &pages {
        let resp = copied.get(path).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path}");
        let body = resp.text().await.unwrap();
        assert!(body.contains("Your session has ended"), "{path}: {body}");
        assert_no_ledger_data(&body, &[&a, &b, &c], path);
    }
    // Another session of the same token goes on.
    let page = other_session.page(latest).await;
    assert_eq!(timeline(&page), ["create", "move", "move", "delete"]);
    let logs = tw.logs();
    assert!(!logs.contains(TOKEN), "the token is never logged");
}

/// A page shown without a valid token holds nothing from the ledger.
fn assert_no_ledger_data(body: &str, images: &[&Image], context: &str) {
    // The page to return to after signing in is the request's own URL, not ledger data.
    let marker = "name=\"next\" value=\"";
    let body = &match body.find(marker) {
        Some(i) => {
            let rest = &body[i + marker.len()..];
            format!("{}{}", &body[..i], &rest[rest.find('"').unwrap()..])
        }
        None => body.to_string(),
    };
    assert!(!body.contains("sha256:"), "{context}: {body}");
    for image in images {
        let hex = image.digest().trim_start_matches("sha256:");
        assert!(!body.contains(&hex[..12]), "{context}: {body}");
    }
    assert!(!body.contains("alice"), "{context}: {body}");
    assert!(!body.contains("data-action"), "{context}: {body}");
    assert!(!body.contains("<table"), "{context}: {body}");
}

#[tokio::test]
async fn hostile_identities_and_user_agents_are_shown_escaped() {
    let Served {
        registry: _registry,
        db: _db,
        tw,
    } = Served::with_config(&config()).await;
    let hostile = "<script>alert(1)</script>";
    let agent = "\"><img src=x onerror=alert(2)>";
    let image = Image::random(&[256]);
    for blob in image.blobs() {
        upload_blob(&tw.url(), "hostile/app", blob).await;
    }
    let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{hostile}:pw"));
    let resp = client()
        .put(format!("{}/v2/hostile/app/manifests/1.0.0", tw.url()))
        .header("content-type", &image.manifest.media_type)
        .header("authorization", format!("Basic {credentials}"))
        .header("user-agent", agent)
        .body(image.manifest.bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    // Other bytes to the release, refused, also by the hostile identity.
    let other = Image::random(&[256]);
    for blob in other.blobs() {
        upload_blob(&tw.url(), "hostile/app", blob).await;
    }
    let resp = put_manifest(&tw.url(), "hostile/app", "1.0.0", &other.manifest).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);

    let browser = Browser {
        base: tw.admin_url(),
        cookie: None,
    };
    let resp = sign_in(&browser.base, TOKEN, "/ui/", None).await;
    let browser = Browser {
        cookie: Some(cookie_pair(&header(&resp, "set-cookie").unwrap())),
        ..browser
    };
    let escaped = "&lt;script&gt;alert(1)&lt;/script&gt;";
    for path in [
        "/ui/tag?repository=hostile%2Fapp&tag=1.0.0".to_string(),
        "/ui/repository?repository=hostile%2Fapp".to_string(),
        digest_href(image.digest()),
    ] {
        let page = browser.page(&path).await;
        assert!(page.contains(escaped), "{path}: {page}");
        assert!(!page.contains(hostile), "{path}: {page}");
        assert!(!page.contains("<img"), "{path}: {page}");
    }
    let page = browser
        .page("/ui/tag?repository=hostile%2Fapp&tag=1.0.0")
        .await;
    assert_eq!(timeline(&page), ["create", "refuse"]);
    assert!(
        page.contains("&quot;&gt;&lt;img src=x onerror=alert(2)&gt;"),
        "the user agent, escaped: {page}"
    );

    // Hostile query parameters come back escaped in the error page.
    let resp = browser
        .get("/ui/tag?repository=%3Cscript%3Ealert(3)%3C%2Fscript%3E&tag=x")
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body = resp.text().await.unwrap();
    assert!(!body.contains("<script>alert(3)"), "{body}");
}
