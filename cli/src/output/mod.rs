//! Output formats of `get`: tables (plain and wide), JSON, YAML and names.
//!
//! - [`server_table`]: the server's `Table` (columns and cells) as kubectl prints it.
//! - [`table`]: the column layout.
//! - [`age`]: kubectl's human durations (the fallback AGE column, token lifetimes).

pub mod age;
pub mod server_table;
pub mod table;

use serde_json::Value;

/// The `-o` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Full objects as pretty JSON (a list prints as the server's `*List`).
    Json,
    /// Full objects as YAML.
    Yaml,
    /// The table with extra columns.
    Wide,
    /// `kind/name` per object.
    Name,
}

/// Why an object could not be printed.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// JSON serialisation failed (not expected for values read from JSON).
    #[error("cannot print as JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// YAML serialisation failed.
    #[error("cannot print as YAML: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
}

/// Pretty JSON with a trailing newline.
pub fn to_json(value: &Value) -> Result<String, OutputError> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    Ok(text)
}

/// YAML (serde_yaml_ng ends documents with a newline).
pub fn to_yaml(value: &Value) -> Result<String, OutputError> {
    Ok(serde_yaml_ng::to_string(value)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_and_yaml_print_the_whole_object() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}});
        assert_eq!(
            to_json(&pod).expect("json"),
            "{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"Pod\",\n  \"metadata\": {\n    \"name\": \"p\"\n  }\n}\n"
        );
        assert_eq!(
            to_yaml(&pod).expect("yaml"),
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n"
        );
    }
}
