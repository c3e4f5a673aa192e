//! Codec parameters: a JSON object parsed into a serde struct whose `Default` gives defaults.

use serde::{de::DeserializeOwned, Serialize};

use crate::CodecError;

/// Field names and default values of `P`, in declaration order (serde_json keeps it with `preserve_order`).
pub fn defaults_of<P: Serialize + Default>() -> Vec<(String, serde_json::Value)> {
    match serde_json::to_value(P::default()) {
        Ok(serde_json::Value::Object(map)) => map.into_iter().collect(),
        _ => Vec::new(),
    }
}

/// Parses `json` (an object, or empty for all defaults) into `P`, filling missing fields from
/// `P::default()` and refusing unknown ones with a message that names the field.
pub fn parse<P: Serialize + DeserializeOwned + Default>(
    codec: &str,
    json: &str,
) -> Result<P, CodecError> {
    let given: serde_json::Value = if json.trim().is_empty() {
        serde_json::Value::Object(Default::default())
    } else {
        serde_json::from_str(json)
            .map_err(|e| CodecError::new(format!("params for `{codec}` are not valid JSON: {e}")))?
    };
    let serde_json::Value::Object(given) = given else {
        return Err(CodecError::new(format!(
            "params for `{codec}` must be a table/object, got {given}"
        )));
    };
    let defaults = defaults_of::<P>();
    let mut merged: serde_json::Map<String, serde_json::Value> = defaults.iter().cloned().collect();
    for (key, value) in given {
        if !merged.contains_key(&key) {
            let known: Vec<&str> = defaults.iter().map(|(k, _)| k.as_str()).collect();
            return Err(CodecError::new(format!(
                "unknown parameter `{key}` for codec `{codec}`; it takes: {}",
                if known.is_empty() {
                    "no parameters".to_string()
                } else {
                    known.join(", ")
                }
            )));
        }
        merged.insert(key, value);
    }
    serde_json::from_value(serde_json::Value::Object(merged))
        .map_err(|e| CodecError::new(format!("bad params for codec `{codec}`: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Block {
        bits: u32,
        block: usize,
    }
    impl Default for Block {
        fn default() -> Self {
            Block { bits: 4, block: 64 }
        }
    }

    #[test]
    fn empty_gives_defaults() {
        assert_eq!(parse::<Block>("c", "").unwrap(), Block::default());
        assert_eq!(parse::<Block>("c", "{}").unwrap(), Block::default());
    }

    #[test]
    fn given_fields_override() {
        assert_eq!(
            parse::<Block>("c", r#"{"bits": 3}"#).unwrap(),
            Block { bits: 3, block: 64 }
        );
    }

    #[test]
    fn unknown_field_is_named() {
        let err = parse::<Block>("int", r#"{"bitz": 3}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`bitz`") && err.contains("bits, block"),
            "{err}"
        );
    }

    #[test]
    fn wrong_type_is_named() {
        let err = parse::<Block>("int", r#"{"bits": "four"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad params for codec `int`"), "{err}");
    }
}
