//! The OpenAPI 3.1 description of the audit API, served at `/api/v1/openapi.json`
//! without a token: it describes the API and holds no ledger data. Built from the
//! handlers' `#[utoipa::path]` attributes and the answers' types, so it cannot fall
//! behind them unnoticed; `tests/e2e/openapi_answers.rs` checks real answers against it.

use std::sync::LazyLock;

use axum::response::IntoResponse;
use http::{header, HeaderValue};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{self, Ref, RefOr, ResponseBuilder, Schema};
use utoipa::{Modify, OpenApi};

use super::{handlers, pulls, retention, retire, rewind, schemas};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tagwarden audit API",
        version = "1",
        description = "Read-only access to the tag ledger: repositories, current bindings, the history of a tag, what a tag named at an instant, every tag that ever named a digest, and the event feed with JSON-lines and CSV export. Served on the admin listener. Every endpoint except this document needs `Authorization: Bearer <token>` with a token from `[[admin.tokens]]`. Listings are paginated: `limit` (default 100, at most 1000) and the opaque `next_cursor` of the previous page passed as `cursor`. Times are RFC 3339; `since`, `until` and `at` also accept a duration ago such as `24h`. Errors are `{\"errors\":[{\"code\",\"message\"}]}`.",
        license(name = "", identifier = ""),
    ),
    paths(
        handlers::repositories,
        handlers::tags,
        handlers::history,
        handlers::resolve,
        handlers::digest,
        handlers::events,
        handlers::export,
        document,
        rewind::rewind,
        retire::retire,
        retention::retention,
        pulls::pulls,
    ),
    components(schemas(schemas::Errors, schemas::Action)),
    security(("bearer" = [])),
    modifiers(&Common),
)]
struct ApiDoc;

/// What every endpoint shares: the bearer scheme, and the error answers of every
/// authenticated one.
struct Common;

/// `(status, name, description)` of the errors every authenticated endpoint can answer.
const COMMON_ERRORS: [(&str, &str, &str); 4] = [
    (
        "400",
        "BadRequest",
        "A parameter, limit or cursor is not valid.",
    ),
    (
        "401",
        "Unauthorized",
        "No token, or an Authorization header that is not `Bearer <token>`.",
    ),
    (
        "403",
        "Forbidden",
        "The token is not configured, or its role may not read.",
    ),
    (
        "503",
        "Unavailable",
        "The ledger cannot be reached, or the query ran longer than `admin.query_timeout`.",
    ),
];

/// `(schema, property, description)` of the optional properties that refer to another
/// schema: utoipa drops their doc comments.
const REF_DESCRIPTIONS: [(&str, &str, &str); 2] = [
    ("Resolution", "event", "The event that decided: the binding in force at `at`, or the delete. Null if the tag had never been bound by then."),
    ("PlannedRelease", "outcome", "Not a dry run: \"retired\", or {\"failed\": message}."),
];

impl Modify for Common {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        for (schema, property, description) in REF_DESCRIPTIONS {
            let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(schema) else {
                panic!("no object schema {schema}");
            };
            let Some(RefOr::T(Schema::OneOf(one_of))) = object.properties.get_mut(property) else {
                panic!("{schema}.{property} is not an optional reference");
            };
            one_of.description = Some(description.to_owned());
        }
        let mut bearer = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build();
        bearer.description = Some("A token from `[[admin.tokens]]` with role `auditor`.".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
        for (status, name, description) in COMMON_ERRORS {
            let mut response = ResponseBuilder::new().description(description).content(
                "application/json",
                openapi::ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Errors")))
                    .build(),
            );
            if status == "401" {
                response = response.header(
                    "WWW-Authenticate",
                    openapi::HeaderBuilder::new()
                        .schema(openapi::ObjectBuilder::new().schema_type(openapi::Type::String))
                        .description(Some("`Bearer realm=\"tagwarden\"`"))
                        .build(),
                );
            }
            components
                .responses
                .insert(name.to_owned(), RefOr::T(response.build()));
        }
        doc.info.license = None;
        for item in doc.paths.paths.values_mut() {
            for op in [&mut item.get, &mut item.post].into_iter().flatten() {
                // Tags would only name the Rust modules.
                op.tags = None;
                if op.operation_id.as_deref() == Some("openapi") {
                    // No token needed: an empty requirement list overrides the default.
                    op.security = Some(Vec::new());
                    continue;
                }
                for (status, name, _) in COMMON_ERRORS {
                    op.responses.responses.insert(
                        status.to_owned(),
                        RefOr::Ref(Ref::new(format!("#/components/responses/{name}"))),
                    );
                }
            }
        }
    }
}

/// The document as served, built once.
pub static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the document serialises")
});

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", operation_id = "openapi",
    summary = "This document",
    responses((status = 200, description = "The OpenAPI document.", body = Object)))]
pub async fn document() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        DOCUMENT.as_str(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn doc() -> Value {
        serde_json::from_str(&DOCUMENT).expect("the document is JSON")
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
        let open = &d["paths"]["/api/v1/openapi.json"]["get"];
        assert_eq!(open["security"], Value::Array(vec![]));
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
    fn every_authenticated_endpoint_documents_the_oci_errors() {
        let d = doc();
        for (path, item) in d["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if path.ends_with("/openapi.json") {
                    continue;
                }
                for status in ["400", "401", "403", "503"] {
                    assert!(
                        op["responses"][status]["$ref"].is_string(),
                        "{method} {path} lacks {status}"
                    );
                }
            }
        }
        let event = &d["components"]["schemas"]["Resolution"]["properties"]["event"];
        assert!(event["description"].is_string(), "{event}");
        let codes = &d["components"]["schemas"]["ErrorCode"]["enum"];
        assert!(codes.to_string().contains("INVALID_PARAMETER"), "{codes}");
    }

    #[test]
    fn every_reference_resolves() {
        let d = doc();
        let text = DOCUMENT.replace("\": \"", "\":\"");
        for part in text.split("\"$ref\":\"#/").skip(1) {
            let path = &part[..part.find('"').unwrap()];
            let mut node = &d;
            for key in path.split('/') {
                node = &node[key];
            }
            assert!(!node.is_null(), "dangling $ref #/{path}");
        }
    }
}
