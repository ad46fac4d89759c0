//! Promotion gates for environment tags (`promote_from`, `promote_window`, `soak`,
//! `require_release`).
//!
//! A moving tag such as `production` may be restricted to digests that another tag
//! (`staging`) names now, or named within a window, for at least a soak time, and that
//! are bound to an immutable release. Everything here is pure: the history of the
//! source tags is read from the ledger first and handed in as [`Span`]s.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The most source tags one rule may name: each is read from the ledger per write.
pub const MAX_SOURCES: usize = 8;

/// The gates of one moving rule, as compiled from its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion {
    /// The tags (same repository) a digest must come from; empty: any digest.
    pub from: Vec<String>,
    /// How long after a source moved on its old digest may still be promoted; `None`:
    /// only what a source names now.
    pub window: Option<Duration>,
    /// How long a source must have named the digest without interruption.
    pub soak: Option<Duration>,
    /// The digest must be bound to a live immutable release tag.
    pub require_release: bool,
}

/// A gate, by its configuration key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    PromoteFrom,
    Soak,
    RequireRelease,
}

impl Gate {
    pub const ALL: [Gate; 3] = [Gate::PromoteFrom, Gate::Soak, Gate::RequireRelease];

    pub fn key(self) -> &'static str {
        match self {
            Gate::PromoteFrom => "promote_from",
            Gate::Soak => "soak",
            Gate::RequireRelease => "require_release",
        }
    }

    /// The reason recorded with a refusal.
    pub fn reason(self) -> &'static str {
        match self {
            Gate::PromoteFrom => "promotion-not-from-source",
            Gate::Soak => "promotion-not-soaked",
            Gate::RequireRelease => "promotion-not-a-release",
        }
    }
}

/// An interval during which a tag named one digest; `until` is `None` while it still
/// does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub digest: String,
    pub from: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
}

/// One binding change of a source tag, as the ledger recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub at: DateTime<Utc>,
    /// The digest the tag names from `at` on; `None`: the tag was deleted.
    pub names: Option<String>,
}

/// The spans of a tag from its binding changes, oldest first. Consecutive changes to
/// the same digest (a delete and re-create in between excepted) extend one span.
pub fn spans(changes: &[Change]) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    for c in changes {
        if let Some(open) = out.last_mut().filter(|s| s.until.is_none()) {
            if c.names.as_deref() == Some(open.digest.as_str()) {
                continue;
            }
            open.until = Some(c.at);
        }
        if let Some(d) = &c.names {
            out.push(Span {
                digest: d.clone(),
                from: c.at,
                until: None,
            });
        }
    }
    out
}

/// The history of one source tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub tag: String,
    pub spans: Vec<Span>,
}

impl Source {
    /// What the tag names now, and since when.
    pub fn now(&self) -> Option<&Span> {
        self.spans.last().filter(|s| s.until.is_none())
    }
}

/// Why a promotion was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub gate: Gate,
    /// For [`Gate::Soak`]: the longest time a source named the digest.
    pub soaked: Option<Duration>,
    /// For [`Gate::Soak`]: when the digest will have soaked, if a source still names it.
    pub ready_at: Option<DateTime<Utc>>,
}

impl Promotion {
    /// Whether any gate is set.
    pub fn is_gated(&self) -> bool {
        !self.from.is_empty() || self.require_release
    }

    /// Check a promotion of `target` at `now`, given the source tags' histories and
    /// whether `target` is a live release. The first gate that fails is reported, in
    /// the order promote_from, soak, require_release.
    pub fn check(
        &self,
        now: DateTime<Utc>,
        sources: &[Source],
        target: &str,
        target_is_release: bool,
    ) -> Result<(), Failure> {
        if !self.from.is_empty() {
            let horizon = self
                .window
                .and_then(|w| chrono::Duration::from_std(w).ok())
                .and_then(|w| now.checked_sub_signed(w));
            let eligible: Vec<&Span> = sources
                .iter()
                .flat_map(|s| &s.spans)
                .filter(|s| s.digest == target)
                .filter(|s| match (s.until, horizon) {
                    (None, _) => true,
                    (Some(until), Some(h)) => until >= h,
                    (Some(_), None) => false,
                })
                .collect();
            if eligible.is_empty() {
                return Err(Failure {
                    gate: Gate::PromoteFrom,
                    soaked: None,
                    ready_at: None,
                });
            }
            if let Some(soak) = self.soak {
                let held = |s: &Span| {
                    (s.until.unwrap_or(now) - s.from)
                        .to_std()
                        .unwrap_or(Duration::ZERO)
                };
                let longest = eligible.iter().map(|s| held(s)).max().unwrap_or_default();
                if longest < soak {
                    let ready_at = eligible
                        .iter()
                        .filter(|s| s.until.is_none())
                        .filter_map(|s| {
                            chrono::Duration::from_std(soak)
                                .ok()
                                .and_then(|d| s.from.checked_add_signed(d))
                        })
                        .min();
                    return Err(Failure {
                        gate: Gate::Soak,
                        soaked: Some(longest),
                        ready_at,
                    });
                }
            }
        }
        if self.require_release && !target_is_release {
            return Err(Failure {
                gate: Gate::RequireRelease,
                soaked: None,
                ready_at: None,
            });
        }
        Ok(())
    }

    /// The gates in words, for `tagwarden explain`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.from.is_empty() {
            let from = self.from.join(" or ");
            parts.push(match self.window {
                Some(w) => format!(
                    "promote_from: only a digest {from} names now or named within the last {}",
                    humantime::format_duration(w)
                ),
                None => format!("promote_from: only a digest {from} names now"),
            });
            if let Some(s) = self.soak {
                parts.push(format!(
                    "soak: that {from} named for at least {} without interruption",
                    humantime::format_duration(s)
                ));
            }
        }
        if self.require_release {
            parts.push("require_release: bound to a live immutable release tag".into());
        }
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:aaaa";
    const B: &str = "sha256:bbbb";

    fn at(minutes_ago: i64) -> DateTime<Utc> {
        now() - chrono::Duration::minutes(minutes_ago)
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn change(minutes_ago: i64, names: Option<&str>) -> Change {
        Change {
            at: at(minutes_ago),
            names: names.map(str::to_owned),
        }
    }

    fn staging(changes: &[Change]) -> Vec<Source> {
        vec![Source {
            tag: "staging".into(),
            spans: spans(changes),
        }]
    }

    fn gates(window: Option<u64>, soak: Option<u64>, require_release: bool) -> Promotion {
        Promotion {
            from: vec!["staging".into()],
            window: window.map(|m| Duration::from_secs(m * 60)),
            soak: soak.map(|m| Duration::from_secs(m * 60)),
            require_release,
        }
    }

    #[test]
    fn spans_follow_moves_deletes_and_repeated_writes() {
        let s = spans(&[
            change(100, Some(A)),
            change(90, Some(A)),
            change(80, Some(B)),
            change(70, None),
            change(60, Some(A)),
        ]);
        assert_eq!(
            s,
            vec![
                Span {
                    digest: A.into(),
                    from: at(100),
                    until: Some(at(80))
                },
                Span {
                    digest: B.into(),
                    from: at(80),
                    until: Some(at(70))
                },
                Span {
                    digest: A.into(),
                    from: at(60),
                    until: None
                },
            ]
        );
        assert_eq!(spans(&[change(5, None)]), vec![]);
    }

    /// (what, staging's changes, gates, target, target is a release, failing gate)
    type Row<'a> = (
        &'a str,
        &'a [Change],
        Promotion,
        &'a str,
        bool,
        Option<Gate>,
    );

    #[test]
    fn the_gates_row_by_row() {
        use Gate::*;
        let named_a_now = vec![change(120, Some(A))];
        let named_a_briefly = vec![change(10, Some(A))];
        let moved_on_20m_ago = vec![change(120, Some(A)), change(20, Some(B))];
        let a_soaked_then_left = vec![change(300, Some(A)), change(200, Some(B))];
        let a_brief_then_left = vec![change(30, Some(A)), change(25, Some(B))];
        let deleted = vec![change(120, Some(A)), change(5, None)];
        #[rustfmt::skip]
        let rows: Vec<Row> = vec![
            ("names it now",                  &named_a_now,       gates(None, None, false),      A, false, None),
            ("never named it",                &named_a_now,       gates(None, None, false),      B, false, Some(PromoteFrom)),
            ("named it, no window",           &moved_on_20m_ago,  gates(None, None, false),      A, false, Some(PromoteFrom)),
            ("named it within the window",    &moved_on_20m_ago,  gates(Some(60), None, false),  A, false, None),
            ("named it before the window",    &moved_on_20m_ago,  gates(Some(10), None, false),  A, false, Some(PromoteFrom)),
            ("deleted since",                 &deleted,           gates(None, None, false),      A, false, Some(PromoteFrom)),
            ("soaked",                        &named_a_now,       gates(None, Some(60), false),  A, false, None),
            ("not soaked yet",                &named_a_briefly,   gates(None, Some(60), false),  A, false, Some(Soak)),
            ("soaked, left, inside window",   &a_soaked_then_left, gates(Some(240), Some(60), false), A, false, None),
            ("brief, left, inside window",    &a_brief_then_left, gates(Some(60), Some(60), false), A, false, Some(Soak)),
            ("release required and bound",    &named_a_now,       gates(None, None, true),       A, true,  None),
            ("release required, none",        &named_a_now,       gates(None, None, true),       A, false, Some(RequireRelease)),
            ("source checked before release", &named_a_now,       gates(None, None, true),       B, false, Some(PromoteFrom)),
        ];
        for (what, changes, gates, target, release, expect) in rows {
            let got = gates
                .check(now(), &staging(changes), target, release)
                .err()
                .map(|f| f.gate);
            assert_eq!(got, expect, "{what}");
        }
    }

    #[test]
    fn any_source_may_supply_the_digest() {
        let g = Promotion {
            from: vec!["staging".into(), "qa".into()],
            ..gates(None, Some(30), false)
        };
        let sources = vec![
            Source {
                tag: "staging".into(),
                spans: spans(&[change(5, Some(A))]),
            },
            Source {
                tag: "qa".into(),
                spans: spans(&[change(60, Some(A))]),
            },
        ];
        assert_eq!(g.check(now(), &sources, A, false), Ok(()));
    }

    #[test]
    fn an_unsoaked_digest_says_when_it_will_be_ready() {
        let f = gates(None, Some(60), false)
            .check(now(), &staging(&[change(10, Some(A))]), A, false)
            .unwrap_err();
        assert_eq!(f.soaked, Some(Duration::from_secs(600)));
        assert_eq!(f.ready_at, Some(at(-50)));
    }

    #[test]
    fn release_only_gates_need_no_source() {
        let g = Promotion {
            from: vec![],
            window: None,
            soak: None,
            require_release: true,
        };
        assert_eq!(g.check(now(), &[], A, true), Ok(()));
        assert_eq!(
            g.check(now(), &[], A, false).unwrap_err().gate,
            Gate::RequireRelease
        );
    }
}
