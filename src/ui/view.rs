//! The pages' HTML. Every value goes through maud's `(...)` splices, which escape `&`,
//! `<`, `>` and `"`; nothing from the ledger or the request is ever spliced with
//! `PreEscaped`. Links are built with [`url`], which percent-encodes each parameter.

use chrono::{DateTime, SecondsFormat, Utc};
use maud::{html, Markup, PreEscaped, DOCTYPE};

use crate::audit::{DigestUsage, Page, TagBinding};
use crate::ledger::{Action, RepositorySummary, StoredEvent};

const CSS: &str = r#"
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d232b; background: #f6f7f9; }
header.top { display: flex; align-items: center; gap: 16px; padding: 10px 24px; background: #1f2a37; color: #fff; }
header.top a { color: #fff; text-decoration: none; }
header.top .brand { font-weight: 600; font-size: 15px; }
header.top .who { margin-left: auto; color: #cbd5e1; }
header.top form { display: inline; margin: 0; }
header.top button { background: transparent; color: #fff; border: 1px solid #64748b; border-radius: 4px; padding: 2px 10px; cursor: pointer; }
main { padding: 18px 24px 32px; max-width: 1400px; }
h1 { font-size: 20px; margin: 4px 0 14px; word-break: break-all; }
h1.mono { font-size: 17px; }
h2 { font-size: 16px; margin: 22px 0 8px; }
a { color: #1d4ed8; }
code, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 12.5px; }
.muted { color: #64748b; }
.small { font-size: 12px; }
.card { background: #fff; border: 1px solid #d8dde4; border-radius: 6px; padding: 12px 16px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px; margin: 0; }
dl.facts dt { color: #64748b; }
dl.facts dd { margin: 0; word-break: break-all; }
table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid #d8dde4; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid #e5e8ec; vertical-align: top; }
th { background: #eef1f4; font-weight: 600; font-size: 12.5px; color: #334155; }
td.ua { max-width: 260px; word-break: break-all; }
tr.refused td { background: #fdecec; }
.badge { display: inline-block; padding: 0 7px; border-radius: 10px; font-size: 12px; font-weight: 600; border: 1px solid transparent; white-space: nowrap; }
.a-create { background: #dcfce7; color: #166534; }
.a-move { background: #dbeafe; color: #1e40af; }
.a-repush { background: #eef1f4; color: #334155; }
.a-delete { background: #e5e7eb; color: #111827; border-color: #9ca3af; }
.a-refuse { background: #b91c1c; color: #fff; }
.a-adopt { background: #ede9fe; color: #5b21b6; }
.a-warn { background: #ffedd5; color: #9a3412; }
.a-drift { background: #fee2e2; color: #991b1b; }
.a-repair { background: #dcfce7; color: #166534; }
.a-retire { background: #e5e7eb; color: #111827; border-color: #6b7280; }
.a-restore { background: #dcfce7; color: #166534; }
.c-immutable { background: #fef3c7; color: #92400e; }
.c-moving, .c-exempt { background: #eef1f4; color: #334155; }
.ok { color: #166534; }
.no { color: #9a3412; }
form.search { display: grid; grid-template-columns: max-content minmax(260px, 420px); gap: 8px 12px; align-items: center; }
form.search input { padding: 5px 8px; border: 1px solid #cbd5e1; border-radius: 4px; font: inherit; }
form.search button, form.login button { justify-self: start; padding: 5px 16px; border-radius: 4px; border: 1px solid #1d4ed8; background: #1d4ed8; color: #fff; font: inherit; cursor: pointer; }
form.login { display: flex; flex-direction: column; align-items: flex-start; gap: 10px; max-width: 420px; }
form.login input { align-self: stretch; }
form.login input { padding: 6px 8px; border: 1px solid #cbd5e1; border-radius: 4px; font: inherit; }
.notice { padding: 8px 12px; border-radius: 4px; background: #fdecec; color: #7f1d1d; border: 1px solid #f5c2c2; margin-bottom: 12px; }
nav.pages { margin-top: 10px; }
"#;

/// A page with the header, or without when `caller` is `None` (the sign-in page).
pub fn layout(title: &str, caller: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " · tagwarden audit" }
                style { (PreEscaped(CSS)) }
            }
            body {
                header.top {
                    a.brand href="/ui/" { "tagwarden audit" }
                    @if let Some(name) = caller {
                        a href="/ui/" { "Search" }
                        span.who { "signed in with token " b { (name) } }
                        form method="post" action="/ui/logout" {
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A path under `/ui/` with its query parameters percent-encoded.
pub fn url(path: &str, params: &[(&str, &str)]) -> String {
    if params.is_empty() {
        return path.to_owned();
    }
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        query.append_pair(k, v);
    }
    format!("{path}?{}", query.finish())
}

pub fn tag_url(repository: &str, tag: &str) -> String {
    url("/ui/tag", &[("repository", repository), ("tag", tag)])
}

pub fn digest_url(digest: &str) -> String {
    url("/ui/digest", &[("digest", digest)])
}

pub fn repository_url(repository: &str) -> String {
    url("/ui/repository", &[("repository", repository)])
}

/// `sha256:` and the first 12 hex digits, as registries' tools show digests.
pub fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((algorithm, hex)) if hex.len() > 12 => format!("{algorithm}:{}…", &hex[..12]),
        _ => digest.to_owned(),
    }
}

/// A short digest linking to its page; the full digest in the tooltip.
pub fn digest_link(digest: &str) -> Markup {
    html! {
        a.mono href=(digest_url(digest)) title=(digest) { (short_digest(digest)) }
    }
}

/// The full digest, linking to its page.
pub fn full_digest_link(digest: &str) -> Markup {
    html! { a.mono href=(digest_url(digest)) { (digest) } }
}

pub fn time(t: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(t.to_rfc3339_opts(SecondsFormat::Micros, true)) {
            (t.format("%Y-%m-%d %H:%M:%S%.3f"))
        }
    }
}

fn action_badge(action: Action) -> Markup {
    let label = match action {
        Action::Refuse => "REFUSED",
        Action::Drift => "DRIFT",
        Action::Retire => "RETIRED",
        other => other.as_str(),
    };
    html! { span class={ "badge a-" (action.as_str()) } { (label) } }
}

fn class_badge(class: &str) -> Markup {
    html! { span class={ "badge c-" (class) } { (class) } }
}

fn identity(identity: Option<&str>, verified: bool) -> Markup {
    html! {
        @match identity {
            Some(id) => {
                span.identity { (id) }
                " "
                @if verified {
                    span.small.ok title="the registry accepted these credentials" { "✓ verified" }
                } @else {
                    span.small.no title="the registry did not confirm these credentials (a refused write never reaches it)" { "unverified" }
                }
            }
            None => span.muted { "anonymous" },
        }
    }
}

/// Who bound a tag, as recorded (bindings do not record whether it was verified).
fn who(identity: Option<&str>) -> Markup {
    html! {
        @match identity {
            Some(id) => span.identity { (id) },
            None => span.muted { "anonymous" },
        }
    }
}

fn next_page(next: Option<&str>, params: &[(&str, &str)], path: &str, label: &str) -> Markup {
    let Some(cursor) = next else {
        return html! {};
    };
    let mut all = params.to_vec();
    all.push(("cursor", cursor));
    html! {
        nav.pages { a href=(url(path, &all)) { (label) " →" } }
    }
}

pub fn search_form() -> Markup {
    html! {
        form.search method="get" action="/ui/search" {
            label for="repository" { "Repository" }
            input #repository name="repository" placeholder="driftwood/web  (or driftwood/web:1.4)" autocomplete="off";
            label for="tag" { "Tag" }
            input #tag name="tag" placeholder="1.4.0  (empty: every tag of the repository)" autocomplete="off";
            label for="digest" { "or a digest" }
            input #digest name="digest" placeholder="sha256:…" autocomplete="off";
            span {}
            button type="submit" { "Show" }
        }
    }
}

pub fn index(caller: &str, repositories: &Page<RepositorySummary>, cursor: bool) -> Markup {
    let body = html! {
        h1 { "Search the tag ledger" }
        div.card { (search_form()) }
        h2 { "Repositories" }
        @if repositories.items.is_empty() && !cursor {
            p.muted { "The ledger has no repositories yet." }
        } @else {
            table {
                thead { tr { th { "repository" } th { "live tags" } th { "tags ever bound" } th { "last change" } } }
                tbody {
                    @for r in &repositories.items {
                        tr {
                            td { a href=(repository_url(&r.repository)) { (r.repository) } }
                            td { (r.live_tags) }
                            td { (r.tags) }
                            td { (time(r.last_changed_at)) }
                        }
                    }
                }
            }
            (next_page(repositories.next_cursor.as_deref(), &[], "/ui/", "More repositories"))
        }
    };
    layout("Search", Some(caller), body)
}

pub struct TagView<'a> {
    pub repository: &'a str,
    pub tag: &'a str,
    pub binding: Option<&'a TagBinding>,
    pub events: &'a Page<StoredEvent>,
    pub newest_first: bool,
    /// The last pulls of this tag; `None`: the pull log could not be read.
    pub pulls: Option<&'a [crate::pulls::Pull]>,
}

pub fn tag(caller: &str, v: &TagView<'_>) -> Markup {
    let order = if v.newest_first { "desc" } else { "asc" };
    let body = html! {
        p.small.muted {
            "repository " a href=(repository_url(v.repository)) { (v.repository) }
        }
        h1 { (v.repository) ":" (v.tag) }
        h2 { "Current binding" }
        div.card #binding {
            @match v.binding {
                None => p.muted { "The ledger has no binding for this tag." },
                Some(b) => dl.facts {
                    @if let Some(retired) = b.retired_at {
                        dt { "state" }
                        dd { span class="badge a-retire" { "retired" } " at " (time(retired))
                            " by " (who(b.retired_by.as_deref()))
                            " · removed from the registry, the name stays reserved for its digest" }
                        dt { "reason" }
                        dd { (b.retired_reason.as_deref().unwrap_or("")) }
                        dt { "last digest" }
                    } @else if let Some(deleted) = b.deleted_at {
                        dt { "state" }
                        dd { span class="badge a-delete" { "deleted" } " from the registry at " (time(deleted))
                            @if b.class == "immutable" { " · stays reserved for its digest" } }
                        dt { "last digest" }
                    } @else {
                        dt { "digest" }
                    }
                    dd { (full_digest_link(&b.digest)) }
                    dt { "class" }
                    dd { (class_badge(&b.class)) " rule " code { (b.rule) } }
                    dt { "bound since" }
                    dd { (time(b.since)) }
                    dt { "bound by" }
                    dd { (who(b.bound_by.as_deref())) }
                    dt { "last changed" }
                    dd { (time(b.last_changed_at)) }
                }
            }
        }
        h2 {
            "Timeline "
            span.small.muted {
                (if v.newest_first { "newest first" } else { "oldest first" })
                " · "
                @if v.newest_first {
                    a href=(url("/ui/tag", &[("repository", v.repository), ("tag", v.tag)])) { "show oldest first" }
                } @else {
                    a href=(url("/ui/tag", &[("repository", v.repository), ("tag", v.tag), ("order", "desc")])) { "show newest first" }
                }
            }
        }
        @if v.events.items.is_empty() {
            p.muted { "No events recorded for this tag." }
        } @else {
            table #timeline {
                thead {
                    tr {
                        th { "#" }
                        th { "time (UTC)" }
                        th { "action" }
                        th { "digest" }
                        th { "previous digest" }
                        th { "who" }
                        th { "rule / reason" }
                        th { "client" }
                    }
                }
                tbody {
                    @for e in &v.events.items {
                        (event_row(e))
                    }
                }
            }
            (next_page(v.events.next_cursor.as_deref(), &[("repository", v.repository), ("tag", v.tag), ("order", order)], "/ui/tag", "More events"))
        }
        (super::pulled::section(v.pulls))
    };
    layout(&format!("{}:{}", v.repository, v.tag), Some(caller), body)
}

fn event_row(e: &StoredEvent) -> Markup {
    let refused = e.action == Action::Refuse;
    // A drift's digest is what the registry serves, not a binding.
    let drift = e.action == Action::Drift;
    html! {
        tr.event.refused[refused] id={ "event-" (e.id) } data-action=(e.action.as_str()) {
            td.small.muted { (e.id) }
            td.small { (time(e.at)) }
            td { (action_badge(e.action)) }
            td {
                @if let Some(d) = &e.digest {
                    @if refused { span.small.muted { "attempted " } }
                    @if drift { span.small.muted { "registry serves " } }
                    (digest_link(d))
                }
            }
            td {
                @if let Some(d) = &e.previous_digest {
                    @if refused || drift { span.small.muted { "bound to " } }
                    (digest_link(d))
                }
            }
            td { (identity(e.identity.as_deref(), e.identity_verified)) }
            td.small {
                @if let Some(rule) = &e.rule { code { (rule) } }
                @if let (Some(_), Some(_)) = (&e.rule, &e.reason) { br; }
                @if let Some(reason) = &e.reason { span.muted { (reason) } }
            }
            td.small.ua {
                @if let Some(addr) = &e.remote_addr { span.mono { (addr) } br; }
                @if let Some(ua) = &e.user_agent { span.muted { (ua) } }
            }
        }
    }
}

pub struct RepositoryView<'a> {
    pub repository: &'a str,
    pub tags: &'a Page<TagBinding>,
    pub include_deleted: bool,
}

pub fn repository(caller: &str, v: &RepositoryView<'_>) -> Markup {
    let deleted = if v.include_deleted { "true" } else { "false" };
    let body = html! {
        h1 { (v.repository) }
        p.small.muted {
            @if v.include_deleted {
                "Every tag the ledger knows, deleted ones included · "
                a href=(repository_url(v.repository)) { "only tags in the registry" }
            } @else {
                "Tags in the registry now · "
                a href=(url("/ui/repository", &[("repository", v.repository), ("include_deleted", "true")])) { "include deleted tags" }
            }
        }
        @if v.tags.items.is_empty() {
            p.muted { "No tags." }
        } @else {
            table #tags {
                thead { tr { th { "tag" } th { "digest" } th { "class" } th { "rule" } th { "bound since" } th { "bound by" } th { "state" } } }
                tbody {
                    @for t in &v.tags.items {
                        tr {
                            td { a href=(tag_url(&t.repository, &t.tag)) { (t.tag) } }
                            td { (digest_link(&t.digest)) }
                            td { (class_badge(&t.class)) }
                            td.small { code { (t.rule) } }
                            td.small { (time(t.since)) }
                            td { (who(t.bound_by.as_deref())) }
                            td.small {
                                @if let Some(d) = t.retired_at { "retired " (time(d)) }
                                @else if let Some(d) = t.deleted_at { "deleted " (time(d)) }
                                @else { span.ok { "live" } }
                            }
                        }
                    }
                }
            }
            (next_page(v.tags.next_cursor.as_deref(), &[("repository", v.repository), ("include_deleted", deleted)], "/ui/repository", "More tags"))
        }
    };
    layout(v.repository, Some(caller), body)
}

pub fn digest(caller: &str, usage: &DigestUsage, pulls: Option<&[crate::pulls::Pull]>) -> Markup {
    let body = html! {
        p.small.muted { "digest" }
        h1.mono { (usage.digest) }
        @if usage.items.is_empty() {
            p.muted { "No tag ever named this digest." }
        } @else {
            p.small.muted { "Every tag that ever named this digest, with the periods during which it did." }
            table #periods {
                thead { tr { th { "repository" } th { "tag" } th { "class" } th { "from (UTC)" } th { "until (UTC)" } th { "bound by" } th { "ended by" } } }
                tbody {
                    @for t in &usage.items {
                        @for p in &t.periods {
                            tr {
                                td { a href=(repository_url(&t.repository)) { (t.repository) } }
                                td { a href=(tag_url(&t.repository, &t.tag)) { (t.tag) } }
                                td { @if let Some(c) = &t.class { (class_badge(c)) } }
                                td.small { (time(p.from)) " " (action_badge(p.started_by)) }
                                td.small {
                                    @match p.until { Some(u) => (time(u)), None => span.ok { "still bound" } }
                                }
                                td { (who(p.bound_by.as_deref())) }
                                td.small {
                                    @if let Some(a) = p.ended_by { (action_badge(a)) }
                                    @if let Some(d) = &p.replaced_by { " to " (digest_link(d)) }
                                }
                            }
                        }
                    }
                }
            }
            (next_page(usage.next_cursor.as_deref(), &[("digest", &usage.digest)], "/ui/digest", "More tags"))
        }
        (super::pulled::section(pulls))
    };
    layout(&short_digest(&usage.digest), Some(caller), body)
}

/// The sign-in page; `notice` says why it is shown, `next` is where to go after.
pub fn login(notice: Option<&str>, next: Option<&str>) -> Markup {
    let body = html! {
        h1 { "Sign in" }
        div.card {
            @if let Some(n) = notice { div.notice { (n) } }
            p { "The audit pages show the tag ledger. Sign in with an auditor token from "
                code { "[[admin.tokens]]" } "." }
            form.login method="post" action="/ui/login" {
                label for="token" { "Token" }
                input #token type="password" name="token" required autocomplete="current-password" autofocus;
                @if let Some(n) = next { input type="hidden" name="next" value=(n); }
                button type="submit" { "Sign in" }
            }
            p.small.muted { "Scripts can send " code { "Authorization: Bearer <token>" } " instead." }
        }
    };
    layout("Sign in", None, body)
}

/// An error page: the message is escaped like everything else.
pub fn error(caller: Option<&str>, title: &str, message: &str) -> Markup {
    let body = html! {
        h1 { (title) }
        div.card { p { (message) } p { a href="/ui/" { "Back to search" } } }
    };
    layout(title, caller, body)
}

#[cfg(test)]
mod tests;
