//! How people name instants and actions, shared by the API and the command line.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::ledger::Action;

/// An instant: RFC 3339 (`2026-11-01T23:00:00Z`), `now`, or a duration ago (`24h`,
/// `90m`, `7days`, `1h 30m`).
pub fn parse_instant(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let ago: Duration = humantime::parse_duration(s).map_err(|_| {
        format!("{s:?} is neither an RFC 3339 time (2026-11-01T23:00:00Z) nor a duration ago (24h, 90m, 7days)")
    })?;
    chrono::Duration::from_std(ago)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .ok_or_else(|| format!("{s:?} reaches too far back"))
}

/// A comma-separated list of actions. Besides the stored names (`create`, `move`,
/// `repush`, `delete`, `refuse`, `adopt`, `warn`), the past tenses (`refused`, `moved`,
/// ...) are accepted.
pub fn parse_actions(s: &str) -> Result<Vec<Action>, String> {
    let mut out = Vec::new();
    for word in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let action = parse_action(word).ok_or_else(|| {
            let names: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
            format!(
                "unknown action {word:?}: expected one of {} (or refused, moved, ...)",
                names.join(", ")
            )
        })?;
        if !out.contains(&action) {
            out.push(action);
        }
    }
    Ok(out)
}

fn parse_action(word: &str) -> Option<Action> {
    let word = word.to_ascii_lowercase();
    Action::parse(&word).or_else(|| {
        Action::ALL.into_iter().find(|a| {
            let name = a.as_str();
            // create -> created, refuse -> refused, move -> moved, adopt -> adopted
            let past = if name.ends_with('e') {
                format!("{name}d")
            } else {
                format!("{name}ed")
            };
            word == past || (name == "repush" && word == "re-push")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn instants_are_rfc3339_now_or_a_duration_ago() {
        let now = Utc.with_ymd_and_hms(2026, 11, 2, 12, 0, 0).unwrap();
        assert_eq!(
            parse_instant("2026-11-01T23:00:00Z", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 1, 23, 0, 0).unwrap()
        );
        assert_eq!(
            parse_instant("2026-11-02T01:00:00+02:00", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 1, 23, 0, 0).unwrap()
        );
        assert_eq!(
            parse_instant("24h", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap()
        );
        assert_eq!(
            parse_instant("1h 30m", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 2, 10, 30, 0).unwrap()
        );
        assert_eq!(parse_instant("now", now).unwrap(), now);
        for bad in ["", "yesterday", "2026-11-01", "2026-11-01 23:00", "-1h"] {
            assert!(parse_instant(bad, now).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn actions_accept_stored_names_and_past_tenses() {
        assert_eq!(parse_actions("refused").unwrap(), [Action::Refuse]);
        assert_eq!(parse_actions("refuse").unwrap(), [Action::Refuse]);
        assert_eq!(
            parse_actions("created, moved,Deleted,repushed,adopted,warned").unwrap(),
            [
                Action::Create,
                Action::Move,
                Action::Delete,
                Action::Repush,
                Action::Adopt,
                Action::Warn
            ]
        );
        assert_eq!(
            parse_actions("move,moved").unwrap(),
            [Action::Move],
            "deduplicated"
        );
        assert_eq!(parse_actions("").unwrap(), []);
        let e = parse_actions("refuse,pushed").unwrap_err();
        assert!(
            e.contains("\"pushed\"") && e.contains("create, move"),
            "{e}"
        );
    }
}
