//! Paging of every listing: the page asked for (a bounded limit and an opaque cursor)
//! and the page answered, whose `next_cursor` exists only when more rows do.

use serde::{Deserialize, Serialize};

use super::{AuditError, Cursor};

/// Page size when none is asked for.
pub const DEFAULT_LIMIT: u32 = 100;
/// The largest page.
pub const MAX_LIMIT: u32 = 1000;
/// Which page of a listing.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageRequest {
    pub fn first(limit: u32) -> Self {
        PageRequest {
            limit: Some(limit),
            cursor: None,
        }
    }

    pub(super) fn limit(&self) -> Result<u32, AuditError> {
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            Some(n) => Err(AuditError::Invalid(format!(
                "limit {n} is out of range: 1 to {MAX_LIMIT}"
            ))),
        }
    }

    pub(super) fn cursor(&self) -> Result<Option<Cursor>, AuditError> {
        match self.cursor.as_deref() {
            None | Some("") => Ok(None),
            Some(s) => Ok(Some(Cursor::decode(s)?)),
        }
    }
}

/// One page of a listing; pass `next_cursor` back for the next one. No `next_cursor`:
/// this was the last page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// `rows` fetched with one more than `limit`: the extra row only says there is more.
    pub(super) fn from_rows(
        mut rows: Vec<T>,
        limit: u32,
        cursor_of: impl Fn(&T) -> Cursor,
    ) -> Self {
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = if more {
            rows.last().map(|last| cursor_of(last).encode())
        } else {
            None
        };
        Page {
            items: rows,
            next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_has_a_cursor_only_when_more_rows_exist() {
        let full = Page::from_rows(vec![1_i64, 2, 3], 2, |n| Cursor::Event(*n));
        assert_eq!(full.items, [1, 2]);
        assert_eq!(
            Cursor::decode(full.next_cursor.as_deref().unwrap()),
            Ok(Cursor::Event(2))
        );
        let last = Page::from_rows(vec![1_i64, 2], 2, |n| Cursor::Event(*n));
        assert_eq!(last.next_cursor, None);
        let empty = Page::from_rows(Vec::<i64>::new(), 2, |n| Cursor::Event(*n));
        assert_eq!((empty.items.len(), empty.next_cursor), (0, None));
    }

    #[test]
    fn limits_default_and_stay_in_range() {
        assert_eq!(PageRequest::default().limit().unwrap(), DEFAULT_LIMIT);
        assert_eq!(PageRequest::first(MAX_LIMIT).limit().unwrap(), MAX_LIMIT);
        assert!(PageRequest::first(0).limit().is_err());
        assert!(PageRequest::first(MAX_LIMIT + 1).limit().is_err());
    }
}
