//! What each event did to a tag's binding, and the periods during which a tag named a
//! digest, derived from the history alone (the history survives deletes; the bindings
//! table keeps only the latest state).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ledger::{Action, BindingChange, DigestBinding};

/// The `reason` enforcement records on a delete allowed by a rule in warn mode: such a
/// `warn` event removes the tag, where every other `warn` binds it.
pub const WARNED_DELETE_REASON: &str = "immutable-tag-delete";

/// What an event did to the binding of its tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect<'a> {
    /// From then on the tag names this digest.
    Bind(&'a str),
    /// From then on the tag names nothing.
    Unbind,
    /// The binding did not change (a refusal).
    Unchanged,
}

pub fn effect<'a>(action: Action, reason: Option<&str>, digest: Option<&'a str>) -> Effect<'a> {
    let bind = || digest.map_or(Effect::Unchanged, Effect::Bind);
    match action {
        Action::Create
        | Action::Move
        | Action::Repush
        | Action::Adopt
        | Action::Repair
        | Action::Restore => bind(),
        Action::Warn if reason == Some(WARNED_DELETE_REASON) => Effect::Unbind,
        Action::Warn => bind(),
        Action::Delete | Action::Retire => Effect::Unbind,
        Action::Refuse | Action::Drift => Effect::Unchanged,
    }
}

impl BindingChange {
    pub fn effect(&self) -> Effect<'_> {
        effect(self.action, self.reason.as_deref(), self.digest.as_deref())
    }
}

/// Walking a tag's history back from an event that bound it to `digest`, through
/// `older` (the effects of the events before it, newest first): the index of the oldest
/// that still belongs to the same period (identical re-pushes and adoptions continue a
/// period, refusals change nothing), and whether the period begins within `older`,
/// that is, an event before it bound the tag elsewhere or removed it.
pub fn period_start(digest: &str, older: &[Effect<'_>]) -> (Option<usize>, bool) {
    let mut start = None;
    for (i, e) in older.iter().enumerate() {
        match e {
            Effect::Bind(d) if *d == digest => start = Some(i),
            Effect::Unchanged => {}
            Effect::Bind(_) | Effect::Unbind => return (start, true),
        }
    }
    (start, false)
}

/// A span of time during which a tag named a digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Period {
    pub from: DateTime<Utc>,
    /// When the tag stopped naming the digest; `None` while it still does.
    #[schema(required = true)]
    pub until: Option<DateTime<Utc>>,
    /// The event that bound the tag: `create`, `move`, `adopt`, `warn` or `repush`.
    #[schema(value_type = crate::api::schemas::Action)]
    pub started_by: Action,
    pub start_event: i64,
    /// Who bound it, as recorded on that event.
    pub bound_by: Option<String>,
    /// The event that ended it: `move`, `delete`, `warn`, ...
    #[schema(value_type = Option<crate::api::schemas::Action>)]
    pub ended_by: Option<Action>,
    pub end_event: Option<i64>,
    /// The digest the tag named next, if it was re-pointed rather than deleted.
    pub replaced_by: Option<String>,
}

/// One tag that named a digest, with every period during which it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TagPeriods {
    pub repository: String,
    pub tag: String,
    /// The tag's class when it was last bound to the digest.
    pub class: Option<String>,
    pub periods: Vec<Period>,
}

/// Group the binding events of `digest` (ordered by repository, tag and time, each with
/// the next event that may have changed its tag) into periods per tag.
///
/// A period starts at an event that bound the tag to the digest while it named
/// something else or nothing, continues through identical re-pushes and adoptions, and
/// ends at the next event that bound the tag elsewhere or removed it.
pub fn periods(digest: &str, rows: &[DigestBinding]) -> Vec<TagPeriods> {
    let mut out: Vec<TagPeriods> = Vec::new();
    let mut open: Option<Period> = None;
    for row in rows {
        if row.change.effect() != Effect::Bind(digest) {
            continue;
        }
        let same_tag = out
            .last()
            .is_some_and(|t| t.repository == row.repository && t.tag == row.tag);
        if !same_tag {
            flush(&mut out, open.take());
            out.push(TagPeriods {
                repository: row.repository.clone(),
                tag: row.tag.clone(),
                class: None,
                periods: Vec::new(),
            });
        }
        let entry = out.last_mut().expect("pushed above");
        if row.change.class.is_some() {
            entry.class = row.change.class.clone();
        }
        let mut period = open.take().unwrap_or_else(|| Period {
            from: row.change.at,
            until: None,
            started_by: row.change.action,
            start_event: row.change.id,
            bound_by: row.change.identity.clone(),
            ended_by: None,
            end_event: None,
            replaced_by: None,
        });
        match row.next.as_ref().map(|n| (n, n.effect())) {
            // Still bound to the digest: the next row is that event, same period.
            Some((_, Effect::Bind(d))) if d == digest => open = Some(period),
            Some((_, Effect::Unchanged)) => open = Some(period),
            Some((n, Effect::Bind(other))) => {
                period.until = Some(n.at);
                period.ended_by = Some(n.action);
                period.end_event = Some(n.id);
                period.replaced_by = Some(other.to_owned());
                entry.periods.push(period);
            }
            Some((n, Effect::Unbind)) => {
                period.until = Some(n.at);
                period.ended_by = Some(n.action);
                period.end_event = Some(n.id);
                entry.periods.push(period);
            }
            None => entry.periods.push(period),
        }
    }
    flush(&mut out, open);
    out
}

/// A period left open when its tag's rows ended: the query never cuts a tag's rows, so
/// this only keeps what is known rather than dropping it.
fn flush(out: &mut [TagPeriods], open: Option<Period>) {
    if let (Some(period), Some(entry)) = (open, out.last_mut()) {
        entry.periods.push(period);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const D: &str = "sha256:dddd";
    const E: &str = "sha256:eeee";

    fn t(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 12, minute, 0).unwrap()
    }

    fn change(id: i64, action: Action, digest: &str) -> BindingChange {
        BindingChange {
            id,
            at: t(id as u32),
            action,
            digest: Some(digest.to_owned()),
            reason: None,
            identity: Some(format!("user{id}")),
            class: Some("moving".into()),
        }
    }

    fn row(tag: &str, c: BindingChange, next: Option<BindingChange>) -> DigestBinding {
        DigestBinding {
            repository: "driftwood/web".into(),
            tag: tag.into(),
            change: c,
            next,
        }
    }

    #[test]
    fn effects_of_each_action() {
        assert_eq!(effect(Action::Create, None, Some(D)), Effect::Bind(D));
        assert_eq!(effect(Action::Move, None, Some(D)), Effect::Bind(D));
        assert_eq!(effect(Action::Repush, None, Some(D)), Effect::Bind(D));
        assert_eq!(effect(Action::Adopt, None, Some(D)), Effect::Bind(D));
        assert_eq!(
            effect(Action::Warn, Some("immutable-tag-rebind"), Some(D)),
            Effect::Bind(D)
        );
        assert_eq!(
            effect(Action::Warn, Some(WARNED_DELETE_REASON), Some(D)),
            Effect::Unbind
        );
        assert_eq!(effect(Action::Delete, None, Some(D)), Effect::Unbind);
        assert_eq!(effect(Action::Refuse, None, Some(D)), Effect::Unchanged);
    }

    #[test]
    fn a_period_starts_after_the_last_event_that_bound_the_tag_elsewhere_or_removed_it() {
        use Effect::{Bind, Unbind, Unchanged};
        // Newest first: repush, refusal, create — the create started it.
        assert_eq!(
            period_start(D, &[Bind(D), Unchanged, Bind(D)]),
            (Some(2), false)
        );
        // ... unless a move from E came before it: the move (index 1) started it.
        assert_eq!(
            period_start(D, &[Unchanged, Bind(D), Bind(E), Bind(D)]),
            (Some(1), true)
        );
        // The event walked back from started it: it follows a delete or a move.
        assert_eq!(period_start(D, &[Unbind, Bind(D)]), (None, true));
        assert_eq!(period_start(D, &[Bind(E)]), (None, true));
        // Nothing older (or only refusals): the period may begin further back.
        assert_eq!(period_start(D, &[]), (None, false));
        assert_eq!(period_start(D, &[Unchanged]), (None, false));
    }

    #[test]
    fn a_tag_still_bound_has_one_open_period() {
        let rows = [row("1.4.0", change(1, Action::Create, D), None)];
        let p = periods(D, &rows);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].tag, "1.4.0");
        assert_eq!(
            p[0].periods,
            [Period {
                from: t(1),
                until: None,
                started_by: Action::Create,
                start_event: 1,
                bound_by: Some("user1".into()),
                ended_by: None,
                end_event: None,
                replaced_by: None,
            }]
        );
    }

    #[test]
    fn re_pushes_continue_a_period_and_a_move_ends_it() {
        let rows = [
            row(
                "latest",
                change(1, Action::Create, D),
                Some(change(3, Action::Repush, D)),
            ),
            row(
                "latest",
                change(3, Action::Repush, D),
                Some(change(5, Action::Move, E)),
            ),
        ];
        let p = periods(D, &rows);
        assert_eq!(p[0].periods.len(), 1);
        let period = &p[0].periods[0];
        assert_eq!((period.from, period.until), (t(1), Some(t(5))));
        assert_eq!(period.started_by, Action::Create);
        assert_eq!(period.ended_by, Some(Action::Move));
        assert_eq!(period.end_event, Some(5));
        assert_eq!(period.replaced_by.as_deref(), Some(E));
    }

    #[test]
    fn moving_away_and_back_makes_two_periods_and_a_delete_ends_one() {
        let rows = [
            row(
                "latest",
                change(1, Action::Create, D),
                Some(change(2, Action::Move, E)),
            ),
            row(
                "latest",
                change(3, Action::Move, D),
                Some(change(4, Action::Delete, D)),
            ),
            row("stable", change(6, Action::Create, D), None),
        ];
        let p = periods(D, &rows);
        assert_eq!(p.len(), 2);
        let latest: Vec<_> = p[0]
            .periods
            .iter()
            .map(|x| (x.from, x.until, x.ended_by))
            .collect();
        assert_eq!(
            latest,
            [
                (t(1), Some(t(2)), Some(Action::Move)),
                (t(3), Some(t(4)), Some(Action::Delete)),
            ]
        );
        assert_eq!(p[0].periods[1].replaced_by, None, "deleted, not replaced");
        assert_eq!(p[1].tag, "stable");
        assert_eq!(p[1].periods[0].until, None);
    }

    #[test]
    fn a_warned_delete_ends_a_period_and_a_later_repush_starts_another() {
        let mut warned = change(2, Action::Warn, D);
        warned.reason = Some(WARNED_DELETE_REASON.into());
        let rows = [
            row("1.0.0", change(1, Action::Create, D), Some(warned.clone())),
            // The warned delete itself is a candidate row; it starts nothing.
            row("1.0.0", warned, Some(change(3, Action::Repush, D))),
            row("1.0.0", change(3, Action::Repush, D), None),
        ];
        let p = periods(D, &rows);
        let spans: Vec<_> = p[0]
            .periods
            .iter()
            .map(|x| (x.started_by, x.from, x.until))
            .collect();
        assert_eq!(
            spans,
            [
                (Action::Create, t(1), Some(t(2))),
                (Action::Repush, t(3), None),
            ]
        );
    }

    #[test]
    fn an_adopted_binding_starts_a_period_like_a_create() {
        let rows = [
            row(
                "5.0.0",
                change(1, Action::Adopt, D),
                Some(change(2, Action::Repush, D)),
            ),
            row("5.0.0", change(2, Action::Repush, D), None),
        ];
        let p = periods(D, &rows);
        assert_eq!(p[0].periods.len(), 1);
        assert_eq!(p[0].periods[0].started_by, Action::Adopt);
        assert_eq!(p[0].periods[0].until, None);
    }
}
