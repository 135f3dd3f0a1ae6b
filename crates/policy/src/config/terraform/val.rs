//! Reading Terraform attribute values: nested blocks are lists (`template: [{...}]`) even when
//! single, empty strings and nulls both mean "not set".

use serde_json::Value;

/// The first element of a nested block list (`template[0]`), or the object itself.
pub(crate) fn block<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v.get(key)? {
        Value::Array(a) => a.first(),
        o @ Value::Object(_) => Some(o),
        _ => None,
    }
}

/// Every element of a nested block list.
pub(crate) fn blocks<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

pub(crate) fn str_<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

pub(crate) fn bool_(v: &Value, key: &str) -> Option<bool> {
    v.get(key).and_then(Value::as_bool)
}

/// A list or set of strings.
pub(crate) fn strings<'a>(v: &'a Value, key: &str) -> Vec<&'a str> {
    v.get(key).and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect()
}

/// A string map (`annotations`, `labels`).
pub(crate) fn map_str<'a>(v: Option<&'a Value>, map: &str, key: &str) -> Option<&'a str> {
    v?.get(map)?.get(key)?.as_str()
}

/// A number written as a JSON number or a string (`default_mode: 292`, `key: "3"`).
pub(crate) fn num_or_str(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}
