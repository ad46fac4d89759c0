//! Pagination of `_catalog` and `tags/list`: the `Link: <...>; rel="next"` header.

use http::{header, HeaderMap};

/// The path of the next page, if the registry announced one on itself. Links to other
/// hosts are ignored: tagwarden only ever asks its own upstream.
pub fn next_page(headers: &HeaderMap) -> Option<String> {
    let link = headers.get(header::LINK)?.to_str().ok()?;
    let (target, params) = link.split_once(';')?;
    if !params.contains("rel=\"next\"") && !params.contains("rel=next") {
        return None;
    }
    let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
    target.starts_with("/v2/").then(|| target.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn follows_relative_next_links_only() {
        let mut h = HeaderMap::new();
        assert_eq!(next_page(&h), None);
        h.insert(
            header::LINK,
            HeaderValue::from_static("</v2/a/tags/list?last=b&n=100>; rel=\"next\""),
        );
        assert_eq!(
            next_page(&h).as_deref(),
            Some("/v2/a/tags/list?last=b&n=100")
        );
        h.insert(
            header::LINK,
            HeaderValue::from_static("<http://evil/v2/a/tags/list>; rel=\"next\""),
        );
        assert_eq!(next_page(&h), None);
        h.insert(
            header::LINK,
            HeaderValue::from_static("</v2/a/tags/list?n=1>; rel=\"prev\""),
        );
        assert_eq!(next_page(&h), None);
    }
}
