//! The OpenAPI 3 description of the audit API, served at `/api/v1/openapi.json`
//! without a token: it describes the API and holds no ledger data.

use axum::response::IntoResponse;
use http::{header, HeaderValue};

/// The document, kept beside this file and checked against the router by the tests.
pub const DOCUMENT: &str = include_str!("openapi.json");

pub async fn document() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        DOCUMENT,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn doc() -> Value {
        serde_json::from_str(DOCUMENT).expect("openapi.json is JSON")
    }

    #[test]
    fn it_is_openapi_3_with_bearer_security() {
        let d = doc();
        assert!(d["openapi"].as_str().unwrap().starts_with("3."));
        assert_eq!(
            d["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        assert_eq!(d["security"][0]["bearer"], Value::Array(vec![]));
    }

    #[test]
    fn it_describes_exactly_the_routes_served() {
        let d = doc();
        let mut documented: Vec<String> = d["paths"].as_object().unwrap().keys().cloned().collect();
        let mut served = crate::api::paths();
        documented.sort();
        served.sort();
        assert_eq!(documented, served);
    }

    #[test]
    fn every_reference_resolves() {
        let d = doc();
        let text = DOCUMENT;
        for part in text.split("\"$ref\": \"#/").skip(1) {
            let path = &part[..part.find('"').unwrap()];
            let mut node = &d;
            for key in path.split('/') {
                node = &node[key];
            }
            assert!(!node.is_null(), "dangling $ref #/{path}");
        }
    }
}
