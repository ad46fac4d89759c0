//! A structural check of a JSON value against a schema of the OpenAPI 3.1 document:
//! `$ref`, `type` (one or a list), `enum`, `oneOf`/`anyOf`/`allOf`, `required`,
//! `properties`, `items`, `minimum`/`maximum`, `pattern` and the `date-time` format:
//! the subset the generated document uses. Stricter than JSON Schema in one way: an
//! object may carry only the properties its schema declares (unless the schema allows
//! more with a schema or `true`), so an answer that grew a field fails until the
//! document says so.

use serde_json::Value;

/// Every mismatch of `value` against `schema`, as `path: what`; empty when it fits.
pub fn check(doc: &Value, schema: &Value, value: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    walk(doc, schema, value, "$", &mut errors);
    errors
}

fn resolve<'a>(doc: &'a Value, mut schema: &'a Value) -> &'a Value {
    while let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let path = r
            .strip_prefix("#/")
            .unwrap_or_else(|| panic!("external $ref {r}"));
        schema = path.split('/').fold(doc, |node, key| &node[key]);
        assert!(!schema.is_null(), "dangling $ref {r}");
    }
    schema
}

fn type_fits(ty: &str, value: &Value) -> bool {
    match ty {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        other => panic!("unknown type {other}"),
    }
}

fn walk(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    let fits = |s: &Value| check(doc, s, value).is_empty();
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for s in all {
            walk(doc, s, value, at, errors);
        }
    }
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
        if !any.iter().any(fits) {
            errors.push(format!("{at}: fits no anyOf branch: {value}"));
        }
    }
    if let Some(one) = schema.get("oneOf").and_then(Value::as_array) {
        let n = one.iter().filter(|s| fits(s)).count();
        if n != 1 {
            errors.push(format!("{at}: fits {n} oneOf branches, not 1: {value}"));
        }
    }
    match schema.get("type") {
        Some(Value::String(ty)) if !type_fits(ty, value) => {
            return errors.push(format!("{at}: not {ty}: {value}"));
        }
        Some(Value::Array(tys)) if !tys.iter().any(|t| type_fits(t.as_str().unwrap(), value)) => {
            return errors.push(format!("{at}: not any of {tys:?}: {value}"));
        }
        _ => {}
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        if !values.contains(value) {
            errors.push(format!("{at}: {value} not in {values:?}"));
        }
    }
    if let Some(s) = value.as_str() {
        if schema.get("format").and_then(Value::as_str) == Some("date-time")
            && chrono::DateTime::parse_from_rfc3339(s).is_err()
        {
            errors.push(format!("{at}: not an RFC 3339 date-time: {s}"));
        }
        if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
            if !regex::Regex::new(p).unwrap().is_match(s) {
                errors.push(format!("{at}: {s} does not match {p}"));
            }
        }
    }
    if let Some(n) = value.as_f64() {
        if schema
            .get("minimum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n < m)
        {
            errors.push(format!("{at}: {n} below the minimum"));
        }
        if schema
            .get("maximum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n > m)
        {
            errors.push(format!("{at}: {n} above the maximum"));
        }
    }
    if let (Some(items), Some(values)) = (schema.get("items"), value.as_array()) {
        for (i, v) in values.iter().enumerate() {
            walk(doc, items, v, &format!("{at}[{i}]"), errors);
        }
    }
    if let Some(object) = value.as_object() {
        for name in schema["required"].as_array().into_iter().flatten() {
            let name = name.as_str().unwrap();
            if !object.contains_key(name) {
                errors.push(format!("{at}: lacks required {name}"));
            }
        }
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            let more_allowed = matches!(
                schema.get("additionalProperties"),
                Some(Value::Object(_)) | Some(Value::Bool(true))
            );
            for (name, v) in object {
                match properties.get(name) {
                    Some(s) => walk(doc, s, v, &format!("{at}.{name}"), errors),
                    None if !more_allowed => {
                        errors.push(format!("{at}: undeclared property {name}"))
                    }
                    None => {}
                }
            }
        }
    }
}
