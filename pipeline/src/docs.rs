//! `applearner stages`: the user documentation of each stage kind, rendered from its
//! parameter struct's JSON schema (whose descriptions are the struct's doc comments).

use crate::stage::StageKind;

/// The user documentation of a stage kind, from its parameter struct's JSON schema (whose
/// descriptions are the doc comments of the struct and its fields).
pub fn describe_kind(kind: &StageKind) -> String {
    let mut out = format!("{} ({})\n", kind.name, kind.source);
    for line in kind.description().lines() {
        out.push_str(&format!("    {line}\n"));
    }
    out.push_str("  parameters:\n");
    let schema = kind.schema();
    let schema = schema.as_value();
    describe_properties(schema, schema.get("$defs"), "    ", &mut out);
    out.push('\n');
    out
}

fn describe_properties(schema: &serde_json::Value, defs: Option<&serde_json::Value>, indent: &str, out: &mut String) {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(|r| r.as_array())
        .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let Some(props) = schema.get("properties").and_then(|p| p.as_object()) else { return };
    for (name, prop) in props {
        let target = resolve(prop, defs);
        let default = match prop.get("default") {
            Some(serde_json::Value::Null) => String::new(),
            Some(d) => format!(" = {d}"),
            None if required.contains(&name.as_str()) => " (required)".to_string(),
            None => String::new(),
        };
        out.push_str(&format!("{indent}{name}: {}{default}\n", type_name(target, defs)));
        let description = prop.get("description").or_else(|| target.get("description")).and_then(|d| d.as_str());
        for line in description.unwrap_or_default().lines() {
            out.push_str(&format!("{indent}    {line}\n"));
        }
        describe_properties(target, defs, &format!("{indent}    "), out);
        describe_variants(target, defs, &format!("{indent}    "), out);
    }
}

/// The choices of a tagged enum (`{kind: lstm, …}`): each kind, what it is, its fields.
fn describe_variants(schema: &serde_json::Value, defs: Option<&serde_json::Value>, indent: &str, out: &mut String) {
    let Some(variants) = schema.get("oneOf").and_then(|v| v.as_array()) else { return };
    for variant in variants {
        let Some(kind) = variant.pointer("/properties/kind/const").and_then(|k| k.as_str()) else { continue };
        out.push_str(&format!("{indent}kind: {kind}\n"));
        for line in variant.get("description").and_then(|d| d.as_str()).unwrap_or_default().lines() {
            out.push_str(&format!("{indent}    {line}\n"));
        }
        let mut fields = variant.clone();
        if let Some(props) = fields.get_mut("properties").and_then(|p| p.as_object_mut()) {
            props.remove("kind");
        }
        describe_properties(&fields, defs, &format!("{indent}    "), out);
    }
}

/// Follows `$ref` and unwraps `Option` (`anyOf: [T, null]`) to the schema that says what a
/// value is.
fn resolve<'a>(prop: &'a serde_json::Value, defs: Option<&'a serde_json::Value>) -> &'a serde_json::Value {
    if let Some(r) = prop.get("$ref").and_then(|r| r.as_str()) {
        let name = r.rsplit('/').next().unwrap_or(r);
        if let Some(def) = defs.and_then(|d| d.get(name)) {
            return resolve(def, defs);
        }
    }
    if let Some(any) = prop.get("anyOf").and_then(|a| a.as_array()) {
        let non_null: Vec<&serde_json::Value> =
            any.iter().filter(|v| v.get("type").is_none_or(|t| t != "null")).collect();
        if let [one] = non_null[..] {
            return resolve(one, defs);
        }
    }
    prop
}

fn type_name(prop: &serde_json::Value, defs: Option<&serde_json::Value>) -> String {
    let prop = resolve(prop, defs);
    if let Some(values) = prop.get("enum").and_then(|e| e.as_array()) {
        return values.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(" | ");
    }
    if let Some(variants) = prop.get("oneOf").and_then(|e| e.as_array()) {
        let names: Vec<String> = variants
            .iter()
            .filter_map(|v| {
                v.get("const")
                    .or_else(|| v.get("enum").and_then(|e| e.get(0)))
                    .or_else(|| v.pointer("/properties/kind/const"))
            })
            .map(|v| v.to_string())
            .collect();
        if !names.is_empty() {
            return names.join(" | ");
        }
    }
    match prop.get("type") {
        Some(serde_json::Value::String(t)) if t == "array" => {
            format!("list of {}", prop.get("items").map(|i| type_name(i, defs)).unwrap_or_else(|| "values".into()))
        }
        Some(serde_json::Value::String(t)) if t == "object" && prop.get("properties").is_some() => "mapping".into(),
        Some(serde_json::Value::String(t)) if t == "object" => match prop.get("additionalProperties") {
            Some(values) if values.is_object() => format!("map of {}", type_name(values, defs)),
            _ => "mapping".into(),
        },
        Some(serde_json::Value::String(t)) => t.clone(),
        Some(serde_json::Value::Array(ts)) => {
            ts.iter().filter_map(|t| t.as_str()).filter(|t| *t != "null").collect::<Vec<_>>().join(" | ")
        }
        _ => "value".to_string(),
    }
}
