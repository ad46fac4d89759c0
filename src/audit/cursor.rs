//! Opaque page cursors: where the next page of a listing starts.
//!
//! A cursor is the position of the last item of a page (an event id, a name, or a
//! repository and tag), versioned and base64url-encoded so that clients treat it as a
//! token. Decoding never trusts it: anything that is not a cursor this version wrote is
//! refused.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// The position after which a page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    /// After this event id (histories and the event feed).
    Event(i64),
    /// After this name (repositories in name order, tags of a repository).
    Name(String),
    /// After this tag of this repository (the tags of a digest).
    Tag { repository: String, tag: String },
}

/// A cursor that this version of tagwarden did not write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the cursor is not valid: pass next_cursor from a previous page unchanged")]
pub struct InvalidCursor;

const VERSION: &str = "1";
const SEP: char = '\n';
/// Longer than any cursor this module writes (a 255-byte name and a 128-byte tag).
const MAX_ENCODED_LEN: usize = 1024;

impl Cursor {
    pub fn encode(&self) -> String {
        let plain = match self {
            Cursor::Event(id) => format!("{VERSION}{SEP}e{SEP}{id}"),
            Cursor::Name(name) => format!("{VERSION}{SEP}n{SEP}{name}"),
            Cursor::Tag { repository, tag } => {
                format!("{VERSION}{SEP}t{SEP}{repository}{SEP}{tag}")
            }
        };
        URL_SAFE_NO_PAD.encode(plain)
    }

    pub fn decode(s: &str) -> Result<Cursor, InvalidCursor> {
        if s.len() > MAX_ENCODED_LEN {
            return Err(InvalidCursor);
        }
        let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| InvalidCursor)?;
        let plain = String::from_utf8(bytes).map_err(|_| InvalidCursor)?;
        let mut parts = plain.split(SEP);
        if parts.next() != Some(VERSION) {
            return Err(InvalidCursor);
        }
        let kind = parts.next().ok_or(InvalidCursor)?;
        let values: Vec<&str> = parts.collect();
        let printable = |v: &str| !v.is_empty() && v.chars().all(|c| c.is_ascii_graphic());
        match (kind, values.as_slice()) {
            ("e", [id]) => id
                .parse::<i64>()
                .ok()
                .filter(|id| *id >= 0)
                .map(Cursor::Event)
                .ok_or(InvalidCursor),
            ("n", [name]) if printable(name) => Ok(Cursor::Name((*name).to_owned())),
            ("t", [repository, tag]) if printable(repository) && printable(tag) => {
                Ok(Cursor::Tag {
                    repository: (*repository).to_owned(),
                    tag: (*tag).to_owned(),
                })
            }
            _ => Err(InvalidCursor),
        }
    }

    /// The event id, if this is an event cursor.
    pub fn event(self) -> Result<i64, InvalidCursor> {
        match self {
            Cursor::Event(id) => Ok(id),
            _ => Err(InvalidCursor),
        }
    }

    /// The name, if this is a name cursor.
    pub fn name(self) -> Result<String, InvalidCursor> {
        match self {
            Cursor::Name(name) => Ok(name),
            _ => Err(InvalidCursor),
        }
    }

    /// The repository and tag, if this is a tag cursor.
    pub fn tag(self) -> Result<(String, String), InvalidCursor> {
        match self {
            Cursor::Tag { repository, tag } => Ok((repository, tag)),
            _ => Err(InvalidCursor),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips() {
        for c in [
            Cursor::Event(0),
            Cursor::Event(i64::MAX),
            Cursor::Name("driftwood/web".into()),
            Cursor::Tag {
                repository: "a/b/c".into(),
                tag: "1.4.0-rc.1".into(),
            },
        ] {
            let encoded = c.encode();
            assert!(
                encoded
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_'),
                "URL-safe without escaping: {encoded}"
            );
            assert_eq!(Cursor::decode(&encoded), Ok(c));
        }
    }

    #[test]
    fn cursors_are_opaque_tokens_not_plain_ids() {
        let encoded = Cursor::Event(42).encode();
        assert_ne!(encoded, "42");
        assert_eq!(Cursor::decode("42"), Err(InvalidCursor));
    }

    #[test]
    fn anything_else_is_refused() {
        let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s);
        for bad in [
            String::new(),
            "not base64!".into(),
            b64("2\ne\n5"),
            b64("1\ne\n-5"),
            b64("1\ne\nfive"),
            b64("1\ne\n5\n6"),
            b64("1\nx\n5"),
            b64("1\nn\n"),
            b64("1\nn\nhas space"),
            b64("1\nt\nonly-repo"),
            URL_SAFE_NO_PAD.encode([0xff, 0xfe]),
            "A".repeat(MAX_ENCODED_LEN + 1),
        ] {
            assert_eq!(Cursor::decode(&bad), Err(InvalidCursor), "{bad:?}");
        }
    }

    #[test]
    fn a_cursor_of_one_kind_is_not_accepted_as_another() {
        let c = Cursor::decode(&Cursor::Name("x".into()).encode()).unwrap();
        assert_eq!(c.clone().event(), Err(InvalidCursor));
        assert_eq!(c.clone().tag(), Err(InvalidCursor));
        assert_eq!(c.name(), Ok("x".into()));
    }
}
