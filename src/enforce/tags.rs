//! The tags of a manifest write: those it names (the path's and `?tag=` parameters),
//! bounded and checked before any lock is taken, and those the upstream says it applied.

use http::StatusCode;

use crate::oci::{ErrorCode, OciError, Reference, Tag};

/// The most tags one manifest write may name (the path's and `?tag=` parameters). Each
/// tag costs a lock, a ledger lookup and possibly a request to the upstream, all inside
/// one transaction, so the number a single request can ask for is bounded.
pub const MAX_TAGS_PER_WRITE: usize = 64;

/// Every tag a write names: the path's, if it is a tag, and each `?tag=` parameter.
pub(super) fn tags_of(reference: &Reference, query: Option<&str>) -> Result<Vec<Tag>, OciError> {
    let mut tags = Vec::new();
    if let Reference::Tag(t) = reference {
        tags.push(t.clone());
    }
    if let Some(q) = query {
        // Some servers split queries on ';' too; refuse rather than guess which reading
        // the upstream will use.
        if q.contains(';') {
            return Err(OciError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::Unsupported,
                "';' is not allowed in the query of a manifest write",
            ));
        }
        for (key, value) in form_urlencoded::parse(q.as_bytes()) {
            if key == "tag" {
                if tags.len() >= MAX_TAGS_PER_WRITE {
                    return Err(OciError::new(
                        StatusCode::BAD_REQUEST,
                        ErrorCode::TagInvalid,
                        format!("a manifest write may name at most {MAX_TAGS_PER_WRITE} tags (the path's and ?tag= parameters together); split it into several writes"),
                    ));
                }
                let tag = Tag::parse(&value).map_err(|e| {
                    OciError::new(
                        StatusCode::BAD_REQUEST,
                        ErrorCode::TagInvalid,
                        e.to_string(),
                    )
                })?;
                tags.push(tag);
            }
        }
    }
    tags.sort();
    tags.dedup();
    Ok(tags)
}

/// The tags the upstream applied: the path's own, plus each `OCI-Tag` it answered with.
pub(super) fn applied_tags(
    resp: &hyper::Response<hyper::body::Incoming>,
    reference: &Reference,
) -> Vec<String> {
    let mut applied: Vec<String> = resp
        .headers()
        .get_all("oci-tag")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_owned())
        .collect();
    if let Reference::Tag(t) = reference {
        applied.push(t.as_str().to_owned());
    }
    applied
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_come_from_path_and_query() {
        let r = Reference::parse("1.4.0").unwrap();
        let tags = tags_of(&r, Some("tag=latest&tag=1.4&other=x&tag=latest")).unwrap();
        let names: Vec<_> = tags.iter().map(Tag::as_str).collect();
        assert_eq!(names, ["1.4", "1.4.0", "latest"]);
    }

    #[test]
    fn encoded_tag_parameters_are_decoded_then_checked() {
        let d = Reference::parse(&format!("sha256:{}", "a".repeat(64))).unwrap();
        let tags = tags_of(&d, Some("t%61g=1%2E4%2E0")).unwrap();
        assert_eq!(tags[0].as_str(), "1.4.0");
        let many: Vec<String> = (0..MAX_TAGS_PER_WRITE)
            .map(|i| format!("tag=t{i}"))
            .collect();
        assert_eq!(
            tags_of(&d, Some(&many.join("&"))).unwrap().len(),
            MAX_TAGS_PER_WRITE
        );
        let one_more = format!("{}&tag=extra", many.join("&"));
        assert_eq!(
            tags_of(&d, Some(&one_more)).unwrap_err().code,
            ErrorCode::TagInvalid
        );
        let r = Reference::parse("latest").unwrap();
        assert!(
            tags_of(&r, Some(&many.join("&"))).is_err(),
            "the path's tag counts too"
        );
        for bad in [
            "tag=a/b",
            "tag=1.0%2Bbuild",
            "tag=",
            "tag=a+b",
            "tag=x;tag=y",
        ] {
            assert!(tags_of(&d, Some(bad)).is_err(), "{bad}");
        }
    }
}
