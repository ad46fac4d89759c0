//! Moving tags that only move forward (`advance = "semver"`).
//!
//! A moving tag under such a rule may only name a digest that is bound to an immutable
//! release tag of the same repository, within the tag's series, and never an older
//! release than the one it names now:
//! - `1.4` (or `v1.4`) follows releases `1.4.x`;
//! - `1` (or `v1`) follows `1.x.y`;
//! - any other tag (`latest`, `stable`) follows every release.
//!
//! Prereleases (`1.4.0-rc.1`) only count when the rule allows them.

use semver::Version;

/// Which releases a moving tag may name, derived from its own name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Series {
    Minor { major: u64, minor: u64 },
    Major { major: u64 },
    All,
}

impl Series {
    pub fn of(tag: &str) -> Series {
        let plain = tag.strip_prefix('v').unwrap_or(tag);
        let parts: Vec<&str> = plain.split('.').collect();
        let number = |s: &str| -> Option<u64> {
            // No leading zeros, as in semver itself.
            if s.is_empty()
                || (s.len() > 1 && s.starts_with('0'))
                || !s.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            s.parse().ok()
        };
        match parts.as_slice() {
            [major] => number(major).map_or(Series::All, |major| Series::Major { major }),
            [major, minor] => match (number(major), number(minor)) {
                (Some(major), Some(minor)) => Series::Minor { major, minor },
                _ => Series::All,
            },
            _ => Series::All,
        }
    }

    pub fn contains(self, v: &Version) -> bool {
        match self {
            Series::Minor { major, minor } => v.major == major && v.minor == minor,
            Series::Major { major } => v.major == major,
            Series::All => true,
        }
    }

    pub fn describe(self) -> String {
        match self {
            Series::Minor { major, minor } => format!("releases {major}.{minor}.x"),
            Series::Major { major } => format!("releases {major}.x.y"),
            Series::All => "every release".to_owned(),
        }
    }
}

/// The semver version a release tag names (`v` prefix allowed), if it is one.
pub fn release_version(tag: &str) -> Option<Version> {
    let v = Version::parse(tag.strip_prefix('v').unwrap_or(tag)).ok()?;
    v.build.is_empty().then_some(v)
}

/// The newest release among `tags` that the series accepts.
pub fn best_release<'a>(
    tags: impl IntoIterator<Item = &'a str>,
    series: Series,
    allow_prerelease: bool,
) -> Option<(Version, &'a str)> {
    tags.into_iter()
        .filter_map(|t| release_version(t).map(|v| (v, t)))
        .filter(|(v, _)| series.contains(v) && (allow_prerelease || v.pre.is_empty()))
        .max_by(|a, b| a.0.cmp(&b.0))
}

/// Why a moving tag may not be pointed at a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The digest is bound to no release tag within the series.
    NotARelease { series: Series },
    /// The digest's release is older than the one the tag names now.
    Backwards { current: String, attempted: String },
}

/// Decide a move. `current` is the newest release the tag names now (None when it
/// names nothing, or nothing that is a release); `target` the newest release of the
/// digest it would name.
pub fn check(
    series: Series,
    current: Option<&(Version, &str)>,
    target: Option<&(Version, &str)>,
) -> Result<(), Refusal> {
    let Some((target_v, target_tag)) = target else {
        return Err(Refusal::NotARelease { series });
    };
    match current {
        Some((current_v, current_tag)) if target_v < current_v => Err(Refusal::Backwards {
            current: (*current_tag).to_owned(),
            attempted: (*target_tag).to_owned(),
        }),
        _ => Ok(()),
    }
}

/// The moving tags a new release may advance when rules `follow` it: `1.4.2` gives
/// `1.4`, `1` and `latest` (with the release's `v` prefix kept). Prereleases give
/// none: they never advance a series on their own.
pub fn followers(release_tag: &str) -> Vec<String> {
    let Some(v) = release_version(release_tag) else {
        return Vec::new();
    };
    if !v.pre.is_empty() {
        return Vec::new();
    }
    let prefix = if release_tag.starts_with('v') {
        "v"
    } else {
        ""
    };
    vec![
        format!("{prefix}{}.{}", v.major, v.minor),
        format!("{prefix}{}", v.major),
        "latest".to_owned(),
    ]
}

/// What an advancing tag names now and may name next, given the repository's releases
/// as `(tag, digest)` pairs: for `tagwarden explain`.
pub fn outlook(
    tag: &str,
    allow_prerelease: bool,
    current_digest: Option<&str>,
    releases: &[(String, String)],
) -> String {
    let series = Series::of(tag);
    let current = current_digest.and_then(|d| {
        best_release(
            releases
                .iter()
                .filter(|(_, rd)| rd == d)
                .map(|(t, _)| t.as_str()),
            series,
            allow_prerelease,
        )
    });
    let mut next: Vec<(Version, &str)> = releases
        .iter()
        .filter_map(|(t, _)| release_version(t).map(|v| (v, t.as_str())))
        .filter(|(v, _)| series.contains(v) && (allow_prerelease || v.pre.is_empty()))
        .filter(|(v, _)| current.as_ref().is_none_or(|(cur, _)| v > cur))
        .collect();
    next.sort();
    let now = match (current_digest, &current) {
        (None, _) => "nothing yet".to_owned(),
        (Some(d), Some((_, t))) => format!("release {t} ({d})"),
        (Some(d), None) => format!("{d}, which is not a release of its series"),
    };
    let later = if next.is_empty() {
        "no newer release yet".to_owned()
    } else {
        next.iter().map(|(_, t)| *t).collect::<Vec<_>>().join(", ")
    };
    format!("  now:     {now}\n  next:    {later}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_come_from_the_tag_name() {
        assert_eq!(Series::of("1.4"), Series::Minor { major: 1, minor: 4 });
        assert_eq!(Series::of("v2.0"), Series::Minor { major: 2, minor: 0 });
        assert_eq!(Series::of("1"), Series::Major { major: 1 });
        assert_eq!(Series::of("v10"), Series::Major { major: 10 });
        for all in ["latest", "stable", "01.4", "1.4.0", "1.x", ""] {
            assert_eq!(Series::of(all), Series::All, "{all}");
        }
    }

    #[test]
    fn the_newest_release_in_the_series_is_chosen() {
        let tags = [
            "1.4.2",
            "1.4.10",
            "1.5.0",
            "1.4.11-rc.1",
            "latest",
            "v1.4.3",
        ];
        let minor = Series::of("1.4");
        assert_eq!(best_release(tags, minor, false).unwrap().1, "1.4.10");
        assert_eq!(best_release(tags, minor, true).unwrap().1, "1.4.11-rc.1");
        assert_eq!(
            best_release(tags, Series::of("1"), false).unwrap().1,
            "1.5.0"
        );
        assert_eq!(best_release(["2.0.0"], minor, false), None);
        assert_eq!(
            best_release(["1.4.0-rc.1"], minor, false),
            None,
            "prereleases do not advance a stable series"
        );
    }

    #[test]
    fn moves_only_go_forward() {
        let v = |t: &'static str| (release_version(t).unwrap(), t);
        let s = Series::of("1.4");
        assert_eq!(check(s, Some(&v("1.4.1")), Some(&v("1.4.2"))), Ok(()));
        assert_eq!(
            check(s, Some(&v("1.4.2")), Some(&v("1.4.2"))),
            Ok(()),
            "same release again"
        );
        assert_eq!(check(s, None, Some(&v("1.4.0"))), Ok(()));
        assert_eq!(
            check(s, Some(&v("1.4.2")), Some(&v("1.4.1"))),
            Err(Refusal::Backwards {
                current: "1.4.2".into(),
                attempted: "1.4.1".into()
            })
        );
        assert_eq!(
            check(s, Some(&v("1.4.2")), None),
            Err(Refusal::NotARelease { series: s })
        );
        // Semver precedence, not string order; a release outranks its prereleases.
        assert!(release_version("1.4.10").unwrap() > release_version("1.4.9").unwrap());
        assert!(release_version("1.4.0").unwrap() > release_version("1.4.0-rc.2").unwrap());
    }

    #[test]
    fn outlook_lists_newer_releases_of_the_series() {
        let r = |t: &str, d: &str| (t.to_owned(), d.to_owned());
        let releases = [
            r("1.4.1", "d1"),
            r("1.4.2", "d2"),
            r("1.4.3", "d3"),
            r("1.5.0", "d5"),
            r("1.4.4-rc.1", "d4"),
        ];
        let text = outlook("1.4", false, Some("d2"), &releases);
        assert!(
            text.contains("now:     release 1.4.2 (d2)") && text.contains("next:    1.4.3\n"),
            "{text}"
        );
        let text = outlook("latest", true, None, &releases);
        assert!(
            text.contains("nothing yet") && text.contains("1.4.1, 1.4.2, 1.4.3, 1.4.4-rc.1, 1.5.0"),
            "{text}"
        );
        assert!(outlook("1", false, Some("zz"), &releases).contains("zz, which is not a release"));
    }

    #[test]
    fn a_release_names_its_followers() {
        assert_eq!(followers("1.4.2"), ["1.4", "1", "latest"]);
        assert_eq!(followers("v2.0.1"), ["v2.0", "v2", "latest"]);
        assert!(followers("1.4.2-rc.1").is_empty());
        assert!(followers("git-9f3c2a1").is_empty());
    }
}
