//! Which releases a retention rule retires, with no I/O: a repository's live bindings
//! and the last pull of each digest in, one verdict per release out, each with its why.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use semver::Version;
use serde::{Deserialize, Serialize};

use super::RetentionRule;
use crate::ledger::LiveBinding;
use crate::policy::TagClass;

/// The decision about one release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub tag: String,
    pub digest: String,
    /// True: the rule retires it.
    pub retire: bool,
    /// Why it goes, or why it stays.
    pub why: String,
}

/// Decide every live release of one repository under `rule` at `now`. `bindings` are all
/// its live bindings (any class); `last_pulled` the last pull of each digest.
pub fn select(
    rule: &RetentionRule,
    bindings: &[LiveBinding],
    last_pulled: &HashMap<String, DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Vec<Verdict> {
    let releases: Vec<&LiveBinding> = bindings
        .iter()
        .filter(|b| b.class == TagClass::Immutable.as_str())
        .collect();
    let newest = newest_per_series(&releases, rule.keep_newest_per_minor);
    releases
        .iter()
        .map(|r| {
            let (retire, why) = decide(rule, r, bindings, &newest, last_pulled, now);
            Verdict {
                tag: r.tag.clone(),
                digest: r.digest.clone(),
                retire,
                why,
            }
        })
        .collect()
}

fn decide(
    rule: &RetentionRule,
    r: &LiveBinding,
    bindings: &[LiveBinding],
    newest: &HashMap<&str, (String, usize)>,
    last_pulled: &HashMap<String, DateTime<Utc>>,
    now: DateTime<Utc>,
) -> (bool, String) {
    let keep = |why: String| (false, why);
    let others: Vec<&LiveBinding> = bindings
        .iter()
        .filter(|b| b.digest == r.digest && b.tag != r.tag)
        .collect();
    if let Some(m) = others.iter().find(|b| b.class == TagClass::Moving.as_str()) {
        return keep(format!("moving tag {} names it", m.tag));
    }
    if let Some(o) = others.first() {
        return keep(format!(
            "its manifest is also tagged {} ({}), and the registry deletes a manifest with all its tags",
            o.tag, o.class
        ));
    }
    let age = age(now, r.first_bound_at);
    let mut gone = Vec::new();
    if let Some(young) = rule.keep_younger_than {
        if age < young {
            return keep(format!(
                "bound {} ago, younger than {}",
                days(age),
                days(young)
            ));
        }
        gone.push(format!("bound {} ago (over {})", days(age), days(young)));
    }
    if let Some(n) = rule.keep_newest_per_minor {
        match newest.get(r.tag.as_str()) {
            None => {
                return keep(
                    "not a semantic version, so keep_newest_per_minor cannot place it".into(),
                )
            }
            Some((series, rank)) if *rank < n => {
                return keep(format!(
                    "among the newest {n} of series {series} (#{})",
                    rank + 1
                ))
            }
            Some((series, rank)) => gone.push(format!(
                "#{} in series {series}, past the newest {n}",
                rank + 1
            )),
        }
    }
    if let Some(window) = rule.keep_pulled_within {
        match last_pulled.get(&r.digest) {
            Some(at) if age_of(now, *at) < window => {
                return keep(format!(
                    "pulled {} ago, within {}",
                    days(age_of(now, *at)),
                    days(window)
                ))
            }
            Some(at) => gone.push(format!("last pulled {} ago", days(age_of(now, *at)))),
            None => gone.push(format!("not pulled within {}", days(window))),
        }
    }
    (true, gone.join("; "))
}

/// For each release tag that is a version: its series (`1.4`, `v2.0`) and its rank in
/// it, newest first (0 is the newest). Empty when `n` is not set.
fn newest_per_series<'a>(
    releases: &[&'a LiveBinding],
    n: Option<usize>,
) -> HashMap<&'a str, (String, usize)> {
    let mut out = HashMap::new();
    if n.is_none() {
        return out;
    }
    let mut series: BTreeMap<String, Vec<(Version, &'a str)>> = BTreeMap::new();
    for r in releases {
        if let Some((prefix, v)) = version(&r.tag) {
            series
                .entry(format!("{prefix}{}.{}", v.major, v.minor))
                .or_default()
                .push((v, r.tag.as_str()));
        }
    }
    for (name, mut members) in series {
        members.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        for (rank, (_, tag)) in members.into_iter().enumerate() {
            out.insert(tag, (name.clone(), rank));
        }
    }
    out
}

/// A tag read as an optional `v` and a semantic version.
fn version(tag: &str) -> Option<(&str, Version)> {
    let (prefix, rest) = match tag.strip_prefix('v') {
        Some(r) => ("v", r),
        None => ("", tag),
    };
    Version::parse(rest).ok().map(|v| (prefix, v))
}

fn age(now: DateTime<Utc>, since: DateTime<Utc>) -> Duration {
    (now - since).to_std().unwrap_or_default()
}

fn age_of(now: DateTime<Utc>, at: DateTime<Utc>) -> Duration {
    age(now, at)
}

/// `180d`, `3h`: whole days when at least one, else whole hours.
fn days(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 86_400 {
        format!("{}d", secs / 86_400)
    } else {
        format!("{}h", secs / 3600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_900_000_000, 0).unwrap()
    }

    /// `(tag, digest letter, class, days since bound)`
    fn bindings(rows: &[(&str, char, &str, u64)]) -> Vec<LiveBinding> {
        rows.iter()
            .map(|(tag, d, class, days)| LiveBinding {
                tag: (*tag).into(),
                digest: format!("sha256:{}", d.to_string().repeat(64)),
                class: (*class).into(),
                first_bound_at: now() - chrono::Duration::days(*days as i64),
            })
            .collect()
    }

    fn rule(newest: Option<usize>, younger: Option<u64>, pulled: Option<u64>) -> RetentionRule {
        RetentionRule {
            name: "r".into(),
            repository: ".*".into(),
            keep_newest_per_minor: newest,
            keep_younger_than: younger.map(|d| DAY * d as u32),
            keep_pulled_within: pulled.map(|d| DAY * d as u32),
        }
    }

    fn retired(v: &[Verdict]) -> Vec<&str> {
        v.iter()
            .filter(|v| v.retire)
            .map(|v| v.tag.as_str())
            .collect()
    }

    #[test]
    fn keeps_the_newest_of_each_minor_series_and_anything_young() {
        let b = bindings(&[
            ("1.4.0", 'a', "immutable", 400),
            ("1.4.1", 'b', "immutable", 300),
            ("1.4.2", 'c', "immutable", 200),
            ("1.4.3", 'd', "immutable", 10),
            ("1.5.0", 'e', "immutable", 400),
            ("v2.0.0", 'f', "immutable", 400),
            ("v2.0.1", 'g', "immutable", 399),
            ("git-9f3c2a1", 'h', "immutable", 500),
        ]);
        let v = select(&rule(Some(2), Some(180), None), &b, &HashMap::new(), now());
        // 1.4: 1.4.3 and 1.4.2 are the newest two; 1.4.1 and 1.4.0 go. 1.5 and v2.0 have
        // at most two. git-9f3c2a1 is no version.
        assert_eq!(retired(&v), ["1.4.0", "1.4.1"]);
        let why = |tag: &str| v.iter().find(|v| v.tag == tag).unwrap().why.clone();
        assert_eq!(why("1.4.3"), "bound 10d ago, younger than 180d");
        assert_eq!(why("1.4.2"), "among the newest 2 of series 1.4 (#2)");
        assert_eq!(
            why("1.4.0"),
            "bound 400d ago (over 180d); #4 in series 1.4, past the newest 2"
        );
        assert!(why("git-9f3c2a1").contains("not a semantic version"));
        assert_eq!(v.len(), 8, "one verdict per release");
    }

    #[test]
    fn never_a_release_a_moving_tag_or_another_tag_names() {
        let b = bindings(&[
            ("1.0.0", 'a', "immutable", 400),
            ("latest", 'a', "moving", 1),
            ("1.0.1", 'b', "immutable", 400),
            ("v1.0.1", 'b', "immutable", 400),
            ("1.0.2", 'c', "immutable", 400),
            ("sha256-cccc.sig", 'd', "exempt", 400),
        ]);
        let v = select(&rule(None, Some(30), None), &b, &HashMap::new(), now());
        assert_eq!(retired(&v), ["1.0.2"]);
        assert_eq!(v[0].why, "moving tag latest names it");
        assert!(v[1].why.contains("also tagged v1.0.1"), "{}", v[1].why);
    }

    #[test]
    fn never_one_pulled_within_the_window() {
        let b = bindings(&[
            ("1.0.0", 'a', "immutable", 400),
            ("1.0.1", 'b', "immutable", 400),
            ("1.0.2", 'c', "immutable", 400),
        ]);
        let digest = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let pulls = HashMap::from([
            (digest('a'), now() - chrono::Duration::days(3)),
            (digest('b'), now() - chrono::Duration::days(90)),
        ]);
        let v = select(&rule(None, Some(180), Some(30)), &b, &pulls, now());
        assert_eq!(retired(&v), ["1.0.1", "1.0.2"]);
        assert_eq!(v[0].why, "pulled 3d ago, within 30d");
        assert!(v[1].why.ends_with("last pulled 90d ago"), "{}", v[1].why);
        assert!(v[2].why.ends_with("not pulled within 30d"), "{}", v[2].why);
    }

    #[test]
    fn prereleases_rank_below_their_release() {
        let b = bindings(&[
            ("1.4.0-rc.1", 'a', "immutable", 400),
            ("1.4.0", 'b', "immutable", 400),
            ("1.4.1-rc.1", 'c', "immutable", 400),
        ]);
        let v = select(&rule(Some(2), None, None), &b, &HashMap::new(), now());
        assert_eq!(retired(&v), ["1.4.0-rc.1"]);
    }
}
