//! Following an audit's cursors, page by page, up to a limit.

use std::future::Future;

use crate::audit::{Page, PageRequest, MAX_LIMIT};

/// Fetch pages until `limit` items (0: all) or the last page. Returns the items and
/// whether more were left.
pub(in crate::cli) async fn collect<T, F, Fut>(
    limit: u64,
    fetch: F,
) -> anyhow::Result<(Vec<T>, bool)>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: Future<Output = anyhow::Result<Page<T>>>,
{
    let mut all = Vec::new();
    let more = for_each_page(limit, fetch, |items: Vec<T>| {
        all.extend(items);
        Ok(())
    })
    .await?;
    Ok((all, more))
}

pub(super) async fn for_each_page<T, F, Fut, Each>(
    limit: u64,
    mut fetch: F,
    mut each: Each,
) -> anyhow::Result<bool>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: Future<Output = anyhow::Result<Page<T>>>,
    Each: FnMut(Vec<T>) -> anyhow::Result<()>,
{
    let mut left = if limit == 0 { u64::MAX } else { limit };
    let mut cursor = None;
    loop {
        let page_size = left.min(u64::from(MAX_LIMIT)) as u32;
        let page = fetch(PageRequest {
            limit: Some(page_size),
            cursor: cursor.take(),
        })
        .await?;
        left -= page.items.len() as u64;
        each(page.items)?;
        match page.next_cursor {
            Some(next) if left > 0 => cursor = Some(next),
            Some(_) => return Ok(true),
            None => return Ok(false),
        }
    }
}
