//! `--set section.key=value`: overrides applied to the parsed document before it is typed.

use super::ConfigError;

/// Appends "did you mean `x`?" to serde's unknown-field message when one expected name is close.
pub(super) fn suggest_closest(message: &str) -> String {
    // toml's words for a non-string where a named choice (dtype, format, ...) belongs.
    let message = &message.replace(
        "wanted string or table",
        "expected a name in quotes: one of the values docs/reference.md's configuration lists for \
         this key",
    );
    let Some(rest) = message.split("unknown field `").nth(1) else {
        return message.to_string();
    };
    let Some((unknown, expected)) = rest.split_once('`') else {
        return message.to_string();
    };
    let closest = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|name| (strsim::levenshtein(unknown, name), name))
        .min();
    match closest {
        Some((distance, name)) if distance <= 3.max(unknown.len() / 3) => {
            format!("{message}\ndid you mean `{name}`?")
        }
        _ => message.to_string(),
    }
}

/// Parses `value` as a TOML value; bare words become strings.
fn parse_value(value: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()))
}

/// Applies `section.key=value` to a parsed document.
pub(super) fn apply_override(doc: &mut toml::Table, assignment: &str) -> Result<(), ConfigError> {
    let err = |message: String| ConfigError::Override {
        assignment: assignment.to_string(),
        message,
    };
    let (key, value) = assignment
        .split_once('=')
        .ok_or_else(|| err("expected section.key=value".into()))?;
    let parts: Vec<&str> = key.trim().split('.').collect();
    let [section, field] = parts.as_slice() else {
        return Err(err(
            "the key must be section.key, e.g. eval.batch_size".into()
        ));
    };
    let table = doc
        .entry(section.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let toml::Value::Table(table) = table else {
        return Err(err(format!("`{section}` is not a section")));
    };
    table.insert(field.to_string(), parse_value(value.trim()));
    Ok(())
}
