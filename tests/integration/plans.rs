//! Reading Postgres plans (`EXPLAIN (FORMAT JSON)`) of the statements the code runs.

use serde_json::Value;

/// The statement `NAME`: `src/ledger/sql/NAME.sql`, the file the code includes, so the
/// plan checked is that of exactly what runs.
pub fn statement(name: &str) -> String {
    let path = format!("{}/src/ledger/sql/{name}.sql", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every plan node, depth first.
fn each_node<'p>(plan: &'p Value, out: &mut Vec<&'p serde_json::Map<String, Value>>) {
    match plan {
        Value::Object(map) => {
            if map.contains_key("Node Type") {
                out.push(map);
            }
            for v in map.values() {
                each_node(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| each_node(v, out)),
        _ => {}
    }
}

fn field<'p>(node: &'p serde_json::Map<String, Value>, key: &str) -> &'p str {
    node.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// Names of the plan nodes and the indexes they use, e.g. "Index Scan tag_events_by_tag".
pub fn nodes(plan: &Value) -> Vec<String> {
    let mut all = Vec::new();
    each_node(plan, &mut all);
    all.iter()
        .map(|n| {
            format!("{} {}", field(n, "Node Type"), field(n, "Index Name"))
                .trim()
                .to_string()
        })
        .collect()
}

/// How a plan reads `relation`: one `(node type, index, index condition, filter)` per
/// node that scans it.
pub fn scans_of(plan: &Value, relation: &str) -> Vec<(String, String, String, String)> {
    let mut all = Vec::new();
    each_node(plan, &mut all);
    all.iter()
        .filter(|n| field(n, "Relation Name") == relation)
        .map(|n| {
            (
                field(n, "Node Type").to_string(),
                field(n, "Index Name").to_string(),
                field(n, "Index Cond").to_string(),
                field(n, "Filter").to_string(),
            )
        })
        .collect()
}
