//! The "Pulled" section of a tag's and a digest's page: the last pulls the pull log
//! holds, newest first, with the digest each one was served.

use maud::{html, Markup};

use super::view::{digest_link, time};
use crate::pulls::Pull;

/// How many pulls a page shows.
pub const SHOWN: u32 = 20;

/// `pulls`: `None` when the pull log could not be read (the page still renders).
pub fn section(pulls: Option<&[Pull]>) -> Markup {
    html! {
        h2 { "Pulled " span.small.muted { "last " (SHOWN) ", newest first" } }
        @match pulls {
            None => p.muted { "The pull log is unavailable right now." },
            Some([]) => p.muted { "No pulls recorded (the pull log keeps a limited number of days)." },
            Some(pulls) => table #pulled {
                thead { tr { th { "time (UTC)" } th { "reference" } th { "digest served" } th { "status" } th { "who" } th { "client" } } }
                tbody {
                    @for p in pulls {
                        tr {
                            td.small { (time(p.at)) }
                            td.mono.small { (p.repository) " " (p.reference) }
                            td { @match &p.digest { Some(d) => (digest_link(d)), None => span.muted { "-" } } }
                            td.small { (p.method) " " (p.status) }
                            td {
                                @match &p.identity {
                                    Some(id) => {
                                        span.identity { (id) }
                                        @if p.verified { " " span.small.ok { "✓ verified" } } @else { " " span.small.no { "unverified" } }
                                    }
                                    None => span.muted { "anonymous" },
                                }
                            }
                            td.small.muted { (p.remote_addr.as_deref().unwrap_or("-")) " " (p.user_agent.as_deref().unwrap_or("")) }
                        }
                    }
                }
            },
        }
    }
}
