//! Manifests: reading `-f` sources and splitting them into API objects.
//!
//! A source is a file, a directory (its `*.yaml`, `*.yml` and `*.json` files, sorted) or
//! `-` (stdin). Its text is multi-document YAML (`---` separated), a JSON document or a
//! stream of JSON documents; any document may be a `List` (`kind: List` or `*List` with
//! `items`), which is flattened. Empty documents are skipped. Each resulting object must
//! have `apiVersion`, `kind` and `metadata.name`.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::Deserialize as _;
use serde_json::Value;

/// One object read from a manifest, with where it came from for error messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// The source name (a path, or `STDIN`).
    pub source: String,
    /// The object itself.
    pub value: Value,
}

impl Object {
    /// `apiVersion` of the object (validated to be present by [`parse`]).
    pub fn api_version(&self) -> &str {
        self.value["apiVersion"].as_str().unwrap_or_default()
    }

    /// `kind` of the object (validated to be present by [`parse`]).
    pub fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or_default()
    }

    /// `metadata.name` of the object (validated to be present by [`parse`]).
    pub fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or_default()
    }

    /// `metadata.namespace`, when the manifest sets one.
    pub fn namespace(&self) -> Option<&str> {
        self.value["metadata"]["namespace"]
            .as_str()
            .filter(|ns| !ns.is_empty())
    }
}

/// Why a manifest could not be read or understood.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file, directory or stdin could not be read.
    #[error("cannot read {source_name}: {error}")]
    Read {
        /// The source name.
        source_name: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The YAML is malformed; the message carries the line and column.
    #[error("error parsing {source_name}: {message}")]
    Syntax {
        /// The source name.
        source_name: String,
        /// Parser message, e.g. `... at line 3 column 5`.
        message: String,
    },
    /// A document parsed but is not a usable API object.
    #[error("error validating {source_name}: document {document}: {problem}")]
    Invalid {
        /// The source name.
        source_name: String,
        /// 1-based index of the document in its source.
        document: usize,
        /// What is wrong with it.
        problem: String,
    },
    /// No object at all in the given sources.
    #[error("no objects passed to apply")]
    Empty,
}

/// Reads every source (`-` is stdin) and parses the objects, in order.
pub fn read_sources(sources: &[PathBuf]) -> Result<Vec<Object>, ManifestError> {
    let mut objects = Vec::new();
    for source in sources {
        for (name, text) in read_source(source)? {
            objects.extend(parse(&name, &text)?);
        }
    }
    if objects.is_empty() {
        return Err(ManifestError::Empty);
    }
    Ok(objects)
}

fn read_source(source: &Path) -> Result<Vec<(String, String)>, ManifestError> {
    let name = source.display().to_string();
    let read_err = |error| ManifestError::Read {
        source_name: name.clone(),
        error,
    };
    if source == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(read_err)?;
        return Ok(vec![("STDIN".to_owned(), text)]);
    }
    if source.is_dir() {
        return manifest_files(source)
            .map_err(read_err)?
            .into_iter()
            .map(|path| {
                let text = std::fs::read_to_string(&path).map_err(|error| ManifestError::Read {
                    source_name: path.display().to_string(),
                    error,
                })?;
                Ok((path.display().to_string(), text))
            })
            .collect();
    }
    let text = std::fs::read_to_string(source).map_err(read_err)?;
    Ok(vec![(name, text)])
}

fn manifest_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let wanted = path
            .extension()
            .and_then(|ext| ext.to_str())
            .is_some_and(|ext| matches!(ext, "yaml" | "yml" | "json"));
        if wanted && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Parses one source's text into objects (pure; `source` only names it in errors).
pub fn parse(source: &str, text: &str) -> Result<Vec<Object>, ManifestError> {
    let documents = documents(source, text)?;
    let mut objects = Vec::new();
    for (index, document) in documents.into_iter().enumerate() {
        for value in flatten(document) {
            check_object(&value).map_err(|problem| ManifestError::Invalid {
                source_name: source.to_owned(),
                document: index + 1,
                problem,
            })?;
            objects.push(Object {
                source: source.to_owned(),
                value,
            });
        }
    }
    Ok(objects)
}

/// Splits text into non-empty documents. Text that starts like JSON is first read as a JSON
/// stream (for precise JSON errors); YAML handles everything else, including `---`-separated
/// JSON documents, since JSON is YAML.
fn documents(source: &str, text: &str) -> Result<Vec<Value>, ManifestError> {
    let looks_like_json = text.trim_start().starts_with(['{', '[']);
    if looks_like_json {
        let stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
        if let Ok(values) = stream.collect::<Result<Vec<_>, _>>() {
            return Ok(values.into_iter().filter(|v| !v.is_null()).collect());
        }
    }
    let mut values = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let value = Value::deserialize(document).map_err(|err| ManifestError::Syntax {
            source_name: source.to_owned(),
            message: err.to_string(),
        })?;
        if !value.is_null() {
            values.push(value);
        }
    }
    Ok(values)
}

/// Expands `List`-shaped documents (`kind: List`, `PodList`, ...) into their items.
fn flatten(document: Value) -> Vec<Value> {
    let is_list = document["kind"]
        .as_str()
        .is_some_and(|kind| kind.ends_with("List"))
        && document["items"].is_array();
    match document {
        Value::Object(mut map) if is_list => match map.remove("items") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        },
        Value::Array(items) => items,
        other => vec![other],
    }
}

fn check_object(value: &Value) -> Result<(), String> {
    if !value.is_object() {
        return Err(format!("expected an object, found {}", type_name(value)));
    }
    for (field, present) in [
        ("apiVersion", value["apiVersion"].is_string()),
        ("kind", value["kind"].is_string()),
        ("metadata.name", value["metadata"]["name"].is_string()),
    ] {
        if !present {
            return Err(format!("{field} is not set"));
        }
    }
    Ok(())
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(objects: &[Object]) -> Vec<String> {
        objects
            .iter()
            .map(|o| format!("{}/{}", o.kind(), o.name()))
            .collect()
    }

    #[test]
    fn splits_multi_document_yaml_and_skips_empty_documents() {
        let text = "---\n# only a comment\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: edge\n---\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: hello\n  namespace: edge\n...\n";
        let objects = parse("f.yaml", text).expect("parses");
        assert_eq!(names(&objects), ["Namespace/edge", "Pod/hello"]);
        assert_eq!(objects[1].namespace(), Some("edge"));
        assert_eq!(objects[0].namespace(), None);
    }

    #[test]
    fn reads_a_json_document_and_a_json_stream() {
        let one = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"}}"#;
        assert_eq!(names(&parse("a.json", one).expect("one")), ["Pod/a"]);
        let stream = format!("{one}\n{}", one.replace("\"a\"", "\"b\""));
        assert_eq!(
            names(&parse("s.json", &stream).expect("stream")),
            ["Pod/a", "Pod/b"]
        );
    }

    #[test]
    fn reads_dash_separated_json_documents() {
        let text = "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"a\"}}\n---\n{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"b\"}}\n";
        assert_eq!(
            names(&parse("d.json", text).expect("parses")),
            ["Pod/a", "Pod/b"]
        );
    }

    #[test]
    fn flattens_a_json_list() {
        let text = r#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"v1","kind":"Namespace","metadata":{"name":"edge"}},
            {"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"edge"}}]}"#;
        assert_eq!(
            names(&parse("l.json", text).expect("parses")),
            ["Namespace/edge", "Pod/p"]
        );
    }

    #[test]
    fn flattens_a_typed_yaml_list() {
        let text = "apiVersion: v1\nkind: PodList\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: x}\n";
        assert_eq!(names(&parse("l.yaml", text).expect("parses")), ["Pod/x"]);
    }

    #[test]
    fn invalid_yaml_reports_the_line() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: [unclosed\n";
        let err = parse("bad.yaml", text).expect_err("invalid");
        let message = err.to_string();
        assert!(message.starts_with("error parsing bad.yaml:"), "{message}");
        assert!(
            message.contains("line 5") || message.contains("line 4"),
            "{message}"
        );
    }

    #[test]
    fn invalid_json_reports_the_line() {
        let text = "{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"Pod\"\n  \"metadata\": {}\n}\n";
        let message = parse("bad.json", text).expect_err("invalid").to_string();
        assert!(message.contains("line 4"), "{message}");
    }

    #[test]
    fn an_object_without_a_name_is_rejected_with_its_document_number() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: ok}\n---\napiVersion: v1\nkind: Pod\nmetadata: {}\n";
        let message = parse("f.yaml", text).expect_err("invalid").to_string();
        assert_eq!(
            message,
            "error validating f.yaml: document 2: metadata.name is not set"
        );
    }

    #[test]
    fn a_scalar_document_is_rejected() {
        let message = parse("f.yaml", "just text\n")
            .expect_err("invalid")
            .to_string();
        assert!(
            message.contains("expected an object, found a string"),
            "{message}"
        );
    }

    #[test]
    fn an_empty_file_has_no_objects() {
        assert_eq!(
            parse("e.yaml", "\n# nothing\n").expect("parses"),
            Vec::new()
        );
    }

    #[test]
    fn read_sources_rejects_sources_without_objects() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("empty.yaml");
        std::fs::write(&path, "---\n").expect("write");
        assert!(matches!(read_sources(&[path]), Err(ManifestError::Empty)));
    }

    #[test]
    fn a_directory_source_reads_its_manifests_in_name_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pod = |name: &str| format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\n");
        std::fs::write(dir.path().join("b.yaml"), pod("b")).expect("write");
        std::fs::write(dir.path().join("a.yml"), pod("a")).expect("write");
        std::fs::write(dir.path().join("notes.txt"), "ignored").expect("write");
        let objects = read_sources(&[dir.path().to_path_buf()]).expect("reads");
        assert_eq!(names(&objects), ["Pod/a", "Pod/b"]);
    }

    #[test]
    fn the_example_workload_manifests_are_valid_pods() {
        let workloads = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workloads");
        let sources = [workloads.join("hello"), workloads.join("exerciser")];
        let objects = read_sources(&sources).expect("workload manifests parse");
        assert!(objects.len() >= 5, "{:?}", names(&objects));
        for object in &objects {
            assert_eq!((object.api_version(), object.kind()), ("v1", "Pod"));
        }
    }
}
