//! Server-side apply (`PATCH` with `application/apply-patch+yaml`, `kubectl apply
//! --server-side`) and the `metadata.managedFields` every write keeps. Pure functions; the
//! handler is in [`super::objects`].
//!
//! What is implemented, after Kubernetes' structured merge:
//! - the applied configuration is merged into the live object like a strategic merge patch
//!   ([`super::body::strategic_merge`]: maps field by field, the lists of
//!   [`super::body::merge_key`] item by item, other lists and scalars replaced); an apply to
//!   a missing object creates it;
//! - every manager's fields are recorded in `metadata.managedFields` (`manager`,
//!   `operation` `Apply` or `Update`, `apiVersion`, `time`, `subresource` (`scale`),
//!   `fieldsType: FieldsV1`, `fieldsV1`): an apply owns exactly the fields of its configuration (`f:` fields, `k:`
//!   items of keyed lists, each marked `.`); an update (create, PUT, PATCH, `scale`) takes the
//!   fields it set or changed from everyone else;
//! - a field the same manager applied before and now leaves out is removed, unless another
//!   manager also owns it (or something under it);
//! - applying a value to a field another manager owns, when the value differs, is a
//!   conflict: 409 naming each field and manager (kube-apiserver's message), unless
//!   `force=true`, which takes the fields over.
//!
//! Not implemented: `apiVersion`-aware conversion of the field sets (there is one version per
//! kind), sets (`v:` elements; lists that are not keyed are atomic) and lists keyed by
//! several fields; `status` and the server's metadata (`name`, `namespace`, `uid`, ...) are
//! never owned. Fields written by the server's own controllers (straight to the store) are
//! not tracked.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::body;
use super::status::{ApiError, Cause};

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    /// A field of an object (`f:name` in FieldsV1).
    Field(String),
    /// The item of a keyed list with this key, as JSON (`k:{"name":"web"}`).
    Key(String),
}

/// A path from the object's root.
pub type FieldPath = Vec<Step>;

/// The fields one manager owns.
pub type FieldSet = BTreeSet<FieldPath>;

/// One `metadata.managedFields` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `manager`.
    pub manager: String,
    /// `operation`: `Apply` or `Update`.
    pub operation: String,
    /// `apiVersion` of the request.
    pub api_version: String,
    /// `time` of the last change to the set.
    pub time: String,
    /// `subresource` written through (`scale`), empty for the object itself.
    pub subresource: String,
    /// `fieldsV1`.
    pub fields: FieldSet,
}

impl Entry {
    /// Whether this is `writer`'s entry for `operation`.
    fn is(&self, writer: &Writer, operation: &str) -> bool {
        self.manager == writer.manager
            && self.operation == operation
            && self.subresource == writer.subresource
    }
}

/// `operation` of an apply.
pub const APPLY: &str = "Apply";
/// `operation` of every other write.
pub const UPDATE: &str = "Update";

/// The longest field manager name (Kubernetes' limit).
pub const MAX_MANAGER_LEN: usize = 128;

/// Who writes and when: the request's side of a managedFields change.
#[derive(Debug, Clone)]
pub struct Writer {
    /// The field manager (`fieldManager`, or the User-Agent's product).
    pub manager: String,
    /// `apiVersion` of the kind.
    pub api_version: String,
    /// The request's time (RFC 3339).
    pub time: String,
    /// The subresource written through (`scale`), empty for the object itself.
    pub subresource: String,
}

/// The field manager of a request: `fieldManager` from the query, else (for updates) the
/// User-Agent up to its first `/` (what kube-apiserver does). An apply must name one.
pub fn manager_of(
    query: Option<&str>,
    user_agent: Option<&str>,
    apply: bool,
) -> Result<String, ApiError> {
    let given = query
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("fieldManager="));
    let manager = match (given, apply) {
        (Some(name), _) => percent_decode(name),
        (None, true) => {
            return Err(ApiError::bad_request(
                "fieldManager: Required value: is required for apply patch",
            ));
        }
        (None, false) => user_agent
            .and_then(|agent| agent.split('/').next())
            .unwrap_or("unknown")
            .chars()
            .take(MAX_MANAGER_LEN)
            .collect(),
    };
    if manager.is_empty()
        || manager.chars().count() > MAX_MANAGER_LEN
        || manager.chars().any(char::is_control)
    {
        return Err(ApiError::bad_request(format!(
            "fieldManager: Invalid value: {manager:?}: must be 1 to {MAX_MANAGER_LEN} printable characters"
        )));
    }
    Ok(manager)
}

/// Decodes `%XX` escapes and `+` (a query value).
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the query says `force=true` (only an apply may).
pub fn force_of(query: Option<&str>, apply: bool) -> Result<bool, ApiError> {
    let force = query
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.strip_prefix("force="))
        .any(|value| value == "true");
    if force && !apply {
        return Err(ApiError::bad_request(
            "force: Invalid value: true: may not be specified for non-apply patch",
        ));
    }
    Ok(force)
}

/// Whether a top-level field (or one under `metadata`) is the server's: never owned.
fn ignored(path: &[Step], field: &str) -> bool {
    match path {
        [] => matches!(field, "apiVersion" | "kind" | "status"),
        [Step::Field(meta)] if meta == "metadata" => matches!(
            field,
            "name"
                | "namespace"
                | "uid"
                | "resourceVersion"
                | "generation"
                | "creationTimestamp"
                | "deletionTimestamp"
                | "deletionGracePeriodSeconds"
                | "managedFields"
                | "selfLink"
        ),
        _ => false,
    }
}

/// The merge key of the list at `path`, if it is keyed.
fn list_key(path: &[Step]) -> Option<&'static str> {
    match path.last() {
        Some(Step::Field(name)) => body::merge_key(name),
        _ => None,
    }
}

fn key_step(key: &str, item: &Value) -> Option<Step> {
    let id = item.get(key)?;
    let mut map = Map::new();
    map.insert(key.to_owned(), id.clone());
    Some(Step::Key(Value::Object(map).to_string()))
}

/// The fields an object sets: its leaves (scalars, atomic lists, empty objects) and the
/// items of its keyed lists.
pub fn fields_of(obj: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    walk(obj, &mut Vec::new(), &mut out);
    out
}

fn walk(value: &Value, path: &mut FieldPath, out: &mut FieldSet) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (field, child) in map {
                if ignored(path, field) || field.starts_with('$') {
                    continue;
                }
                path.push(Step::Field(field.clone()));
                walk(child, path, out);
                path.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let steps: Option<Vec<Step>> = list_key(path)
                .and_then(|key| items.iter().map(|item| key_step(key, item)).collect());
            let Some(steps) = steps else {
                out.insert(path.clone());
                return;
            };
            for (step, item) in steps.into_iter().zip(items) {
                path.push(step);
                out.insert(path.clone());
                walk(item, path, out);
                path.pop();
            }
        }
        _ => {
            if !path.is_empty() {
                out.insert(path.clone());
            }
        }
    }
}

/// The value at `path`, if present.
pub fn get<'a>(obj: &'a Value, path: &[Step]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |node, step| match step {
        Step::Field(name) => node.get(name),
        Step::Key(key) => {
            let (field, id) = parse_key(key)?;
            node.as_array()?
                .iter()
                .find(|item| item.get(&field) == Some(&id))
        }
    })
}

fn parse_key(key: &str) -> Option<(String, Value)> {
    let parsed: Map<String, Value> = serde_json::from_str(key).ok()?;
    parsed.into_iter().next()
}

/// Removes the field or list item at `path` (nothing when it is absent).
fn remove(obj: &mut Value, path: &[Step]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    let mut node = obj;
    for step in parent {
        let next = match step {
            Step::Field(name) => node.get_mut(name),
            Step::Key(key) => parse_key(key).and_then(|(field, id)| {
                node.as_array_mut()?
                    .iter_mut()
                    .find(|item| item.get(&field) == Some(&id))
            }),
        };
        match next {
            Some(next) => node = next,
            None => return,
        }
    }
    match last {
        Step::Field(name) => {
            if let Some(map) = node.as_object_mut() {
                map.remove(name);
            }
        }
        Step::Key(key) => {
            if let (Some((field, id)), Some(list)) = (parse_key(key), node.as_array_mut()) {
                list.retain(|item| item.get(&field) != Some(&id));
            }
        }
    }
}

/// A path as kube-apiserver prints it: `.spec.containers[name="web"].image`.
pub fn display(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Field(name) => {
                out.push('.');
                out.push_str(name);
            }
            Step::Key(key) => match parse_key(key) {
                Some((field, id)) => out.push_str(&format!("[{field}={id}]")),
                None => out.push_str(&format!("[{key}]")),
            },
        }
    }
    out
}

/// `fieldsV1` of a set: `f:` fields, `k:` items; `.` marks an item (or a field owned
/// itself) whose node also lists what is under it.
pub fn encode(fields: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in fields {
        let owns_itself = matches!(path.last(), Some(Step::Key(_)))
            || fields
                .iter()
                .any(|p| p.len() > path.len() && p.starts_with(path));
        insert(&mut root, path, owns_itself);
    }
    Value::Object(root)
}

fn insert(node: &mut Map<String, Value>, path: &[Step], owns_itself: bool) {
    let Some((first, rest)) = path.split_first() else {
        if owns_itself {
            node.insert(".".into(), json!({}));
        }
        return;
    };
    let name = match first {
        Step::Field(name) => format!("f:{name}"),
        Step::Key(key) => format!("k:{key}"),
    };
    if let Some(child) = node
        .entry(name)
        .or_insert_with(|| json!({}))
        .as_object_mut()
    {
        insert(child, rest, owns_itself);
    }
}

/// The set a `fieldsV1` describes (unknown element kinds are skipped).
pub fn decode(fields_v1: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    decode_into(fields_v1, &mut Vec::new(), &mut out);
    out
}

fn decode_into(node: &Value, path: &mut FieldPath, out: &mut FieldSet) {
    let Some(map) = node.as_object() else {
        return;
    };
    if map.is_empty() && !path.is_empty() {
        out.insert(path.clone());
        return;
    }
    for (name, child) in map {
        let step = match (name.strip_prefix("f:"), name.strip_prefix("k:")) {
            _ if name == "." => {
                if !path.is_empty() {
                    out.insert(path.clone());
                }
                continue;
            }
            (Some(field), _) => Step::Field(field.to_owned()),
            (_, Some(key)) => Step::Key(key.to_owned()),
            _ => continue,
        };
        path.push(step);
        decode_into(child, path, out);
        path.pop();
    }
}

/// The entries of `metadata.managedFields` (entries that do not parse are dropped).
pub fn entries_of(obj: &Value) -> Vec<Entry> {
    let text = |entry: &Value, field: &str| entry[field].as_str().unwrap_or_default().to_owned();
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|entry| entry["manager"].is_string())
        .map(|entry| Entry {
            manager: text(entry, "manager"),
            operation: text(entry, "operation"),
            api_version: text(entry, "apiVersion"),
            time: text(entry, "time"),
            subresource: text(entry, "subresource"),
            fields: decode(&entry["fieldsV1"]),
        })
        .collect()
}

/// Writes `entries` as `metadata.managedFields` (removed when there are none).
pub fn set_entries(obj: &mut Value, entries: &[Entry]) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let list: Vec<Value> = entries
        .iter()
        .filter(|entry| !entry.fields.is_empty())
        .map(|entry| {
            let mut encoded = json!({
                "manager": entry.manager,
                "operation": entry.operation,
                "apiVersion": entry.api_version,
                "time": entry.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": encode(&entry.fields),
            });
            if !entry.subresource.is_empty() {
                encoded["subresource"] = entry.subresource.clone().into();
            }
            encoded
        })
        .collect();
    match list.is_empty() {
        true => meta.remove("managedFields"),
        false => meta.insert("managedFields".into(), Value::Array(list)),
    };
}

/// The entry of `writer` for `operation`, created (empty) at the end when missing.
fn entry_mut<'a>(entries: &'a mut Vec<Entry>, writer: &Writer, operation: &str) -> &'a mut Entry {
    let position = entries.iter().position(|e| e.is(writer, operation));
    let index = position.unwrap_or_else(|| {
        entries.push(Entry {
            manager: writer.manager.clone(),
            operation: operation.to_owned(),
            api_version: writer.api_version.clone(),
            time: writer.time.clone(),
            subresource: writer.subresource.clone(),
            fields: FieldSet::new(),
        });
        entries.len() - 1
    });
    &mut entries[index]
}

/// Records an update (create, PUT, PATCH, `scale`) of `old` (`None`: a create) into `new`:
/// the writer's `Update` entry gains the fields it set or changed, which every other entry
/// loses; fields it removed leave every entry. The entries are `old`'s, unless an update
/// sets `managedFields` itself (what `kubectl apply --server-side` does to take over from a
/// client-side apply): then the request's are the starting point.
pub fn record_update(old: Option<&Value>, new: &mut Value, writer: &Writer) {
    let stored = old.and_then(|old| old.pointer("/metadata/managedFields"));
    let requested = new.pointer("/metadata/managedFields");
    let mut entries = match (old, requested) {
        (Some(_), Some(Value::Array(_))) if requested != stored => entries_of(new),
        (Some(old), _) => entries_of(old),
        (None, _) => Vec::new(),
    };
    let before = old.map(fields_of).unwrap_or_default();
    let after = fields_of(new);
    let changed: FieldSet = after
        .iter()
        .filter(|path| {
            let was = old.and_then(|old| get(old, path));
            match path.last() {
                Some(Step::Key(_)) => was.is_none(),
                _ => was != get(new, path),
            }
        })
        .cloned()
        .collect();
    let gone: FieldSet = before.difference(&after).cloned().collect();
    for entry in &mut entries {
        entry
            .fields
            .retain(|p| !changed.contains(p) && !gone.contains(p));
    }
    if !changed.is_empty() {
        let entry = entry_mut(&mut entries, writer, UPDATE);
        entry.fields.extend(changed);
        entry.time = writer.time.clone();
        entry.api_version = writer.api_version.clone();
    }
    set_entries(new, &entries);
}

/// One field another manager owns with a different value than the apply sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The index of the other manager's entry.
    pub entry: usize,
    /// How kube-apiserver names it: `"kubectl-scale" using apps/v1`, `"kubectl" with
    /// subresource "scale" using apps/v1`.
    pub owner: String,
    /// The field.
    pub path: FieldPath,
}

/// The conflicts of applying `fields` (of `applied`) over `live` as `writer`.
fn conflicts(
    live: &Value,
    applied: &Value,
    fields: &FieldSet,
    entries: &[Entry],
    writer: &Writer,
) -> Vec<Conflict> {
    let mut found = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        if entry.is(writer, APPLY) {
            continue;
        }
        let owner = match entry.subresource.as_str() {
            "" => format!("{:?} using {}", entry.manager, entry.api_version),
            sub => format!(
                "{:?} with subresource {sub:?} using {}",
                entry.manager, entry.api_version
            ),
        };
        for path in entry.fields.intersection(fields) {
            if matches!(path.last(), Some(Step::Key(_))) || get(live, path) == get(applied, path) {
                continue;
            }
            found.push(Conflict {
                entry: index,
                owner: owner.clone(),
                path: path.clone(),
            });
        }
    }
    found
}

/// The 409 kube-apiserver answers (kubectl prints its message and adds how to resolve it).
pub fn conflict_error(resource: &str, name: &str, conflicts: &[Conflict]) -> ApiError {
    let mut groups: Vec<(&str, Vec<String>)> = Vec::new();
    for conflict in conflicts {
        let field = display(&conflict.path);
        match groups
            .iter_mut()
            .find(|(owner, _)| *owner == conflict.owner)
        {
            Some((_, fields)) => fields.push(field),
            None => groups.push((&conflict.owner, vec![field])),
        }
    }
    let described: Vec<String> = groups
        .iter()
        .map(|(owner, fields)| match fields.as_slice() {
            [one] => format!("conflict with {owner}: {one}"),
            many => format!("conflicts with {owner}:\n- {}", many.join("\n- ")),
        })
        .collect();
    let count = conflicts.len();
    let plural = if count == 1 { "" } else { "s" };
    let message = format!(
        "Apply failed with {count} conflict{plural}: {}",
        described.join("\n")
    );
    let causes: Vec<Cause> = conflicts
        .iter()
        .map(|c| {
            let message = format!("conflict with {}", c.owner);
            Cause::new("FieldManagerConflict", display(&c.path), message)
        })
        .collect();
    let mut err = ApiError::conflict(resource, name, message);
    if let Some(details) = err.details.as_mut() {
        details["causes"] = causes
            .iter()
            .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
            .collect();
    }
    err
}

/// What an apply by `writer` of `applied` makes of `live` (`None`: the object is created):
/// merged, with the writer's fields recorded and the ones it no longer applies removed.
/// Conflicts are a 409 unless `force`, which takes the fields from their other managers.
/// Admission runs afterwards, on the result.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    writer: &Writer,
    force: bool,
    resource: &str,
) -> Result<Value, ApiError> {
    let mut applied = applied.clone();
    if let Some(meta) = applied.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    let fields = fields_of(&applied);
    let Some(live) = live else {
        let mut created = applied;
        let mut entries = Vec::new();
        entry_mut(&mut entries, writer, APPLY).fields = fields;
        set_entries(&mut created, &entries);
        return Ok(created);
    };
    let mut entries = entries_of(live);
    let found = conflicts(live, &applied, &fields, &entries, writer);
    if !found.is_empty() && !force {
        let name = super::kinds::name_of(live);
        return Err(conflict_error(resource, name, &found));
    }
    for conflict in &found {
        if let Some(entry) = entries.get_mut(conflict.entry) {
            entry.fields.remove(&conflict.path);
        }
    }
    let mut merged = live.clone();
    body::strategic_merge(&mut merged, &applied);
    let mine = entry_mut(&mut entries, writer, APPLY);
    let dropped: Vec<FieldPath> = mine.fields.difference(&fields).cloned().collect();
    let same_fields = mine.fields == fields && mine.api_version == writer.api_version;
    mine.fields = fields;
    mine.api_version = writer.api_version.clone();
    for path in dropped {
        let shared = entries.iter().any(|entry| {
            !entry.is(writer, APPLY) && entry.fields.iter().any(|p| p.starts_with(&path))
        });
        if !shared {
            remove(&mut merged, &path);
        }
    }
    // An apply that changes nothing keeps its entry's time, so nothing is written (like
    // kube-apiserver, which ignores changes of managedFields timestamps alone). `merged`
    // still carries the live managedFields here.
    if !same_fields || merged != *live {
        entry_mut(&mut entries, writer, APPLY).time = writer.time.clone();
    }
    set_entries(&mut merged, &entries);
    Ok(merged)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn writer(manager: &str) -> Writer {
        Writer {
            manager: manager.into(),
            api_version: "apps/v1".into(),
            time: "2026-12-07T00:00:00Z".into(),
            subresource: String::new(),
        }
    }

    fn deployment(replicas: i64, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": image}]},
                },
            },
        })
    }

    fn managers(obj: &Value) -> Vec<(String, String)> {
        entries_of(obj)
            .into_iter()
            .map(|e| (e.manager, e.operation))
            .collect()
    }

    fn path(fields: &[&str]) -> FieldPath {
        fields.iter().map(|f| Step::Field((*f).into())).collect()
    }

    #[test]
    fn a_repeated_apply_changes_nothing_not_even_the_time() {
        let first = apply(
            None,
            &deployment(2, "hello:v1"),
            &writer("mqtt"),
            false,
            "deployments",
        )
        .unwrap();
        let mut later = writer("mqtt");
        later.time = "2026-12-07T01:00:00Z".into();
        let again = apply(
            Some(&first),
            &deployment(2, "hello:v1"),
            &later,
            false,
            "deployments",
        )
        .unwrap();
        assert_eq!(again, first);
        let changed = apply(
            Some(&first),
            &deployment(3, "hello:v1"),
            &later,
            false,
            "deployments",
        )
        .unwrap();
        assert_eq!(entries_of(&changed)[0].time, "2026-12-07T01:00:00Z");
    }

    #[test]
    fn fields_v1_is_what_kube_apiserver_writes_and_reads_back() {
        let fields = fields_of(&deployment(2, "hello:v1"));
        let encoded = encode(&fields);
        assert_eq!(
            encoded,
            json!({
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {"f:matchLabels": {"f:app": {}}},
                    "f:template": {
                        "f:metadata": {"f:labels": {"f:app": {}}},
                        "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                            ".": {}, "f:image": {}, "f:name": {},
                        }}},
                    },
                },
            })
        );
        assert_eq!(decode(&encoded), fields);
    }

    #[test]
    fn an_apply_to_nothing_creates_the_object_owned_by_its_manager() {
        let created = apply(
            None,
            &deployment(2, "a:1"),
            &writer("kubectl"),
            false,
            "deployments",
        )
        .unwrap();
        assert_eq!(created["spec"]["replicas"], 2);
        let entries = entries_of(&created);
        assert_eq!(entries.len(), 1);
        assert_eq!(
            (entries[0].manager.as_str(), entries[0].operation.as_str()),
            ("kubectl", APPLY)
        );
        assert!(entries[0].fields.contains(&path(&["spec", "replicas"])));
        assert_eq!(
            created["metadata"]["managedFields"][0]["fieldsType"],
            "FieldsV1"
        );
    }

    #[test]
    fn a_reapply_changes_what_it_sets_and_removes_what_it_no_longer_sets() {
        let mut first = deployment(2, "a:1");
        first["metadata"]["labels"]["tier"] = json!("edge");
        let live = apply(None, &first, &writer("kubectl"), false, "deployments").unwrap();
        let mut live = live;
        live["status"] = json!({"replicas": 2});
        let next = deployment(3, "a:2");
        let after = apply(Some(&live), &next, &writer("kubectl"), false, "deployments").unwrap();
        assert_eq!(after["spec"]["replicas"], 3);
        assert_eq!(
            after["spec"]["template"]["spec"]["containers"][0]["image"],
            "a:2"
        );
        assert_eq!(
            after["metadata"]["labels"],
            json!({"app": "web"}),
            "tier was dropped"
        );
        assert_eq!(
            after["status"],
            json!({"replicas": 2}),
            "status is not the applier's"
        );
        assert_eq!(managers(&after), [("kubectl".into(), APPLY.into())]);
    }

    #[test]
    fn a_field_another_manager_set_is_a_conflict_unless_forced() {
        let live = apply(
            None,
            &deployment(2, "a:1"),
            &writer("kubectl"),
            false,
            "deployments",
        )
        .unwrap();
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(5);
        record_update(Some(&live), &mut scaled, &writer("kubectl-scale"));
        assert_eq!(
            managers(&scaled),
            [
                ("kubectl".into(), APPLY.into()),
                ("kubectl-scale".into(), UPDATE.into())
            ]
        );

        let err = apply(
            Some(&scaled),
            &deployment(3, "a:1"),
            &writer("kubectl"),
            false,
            "deployments",
        )
        .unwrap_err();
        assert_eq!(err.code.as_u16(), 409);
        assert_eq!(
            err.message,
            "Apply failed with 1 conflict: conflict with \"kubectl-scale\" using apps/v1: .spec.replicas"
        );
        assert_eq!(err.cause_fields(), [".spec.replicas"]);

        // The same value is shared ownership, not a conflict.
        let same = apply(
            Some(&scaled),
            &deployment(5, "a:2"),
            &writer("kubectl"),
            false,
            "deployments",
        );
        assert!(same.is_ok());

        let forced = apply(
            Some(&scaled),
            &deployment(3, "a:1"),
            &writer("kubectl"),
            true,
            "deployments",
        )
        .unwrap();
        assert_eq!(forced["spec"]["replicas"], 3);
        assert_eq!(
            managers(&forced),
            [("kubectl".into(), APPLY.into())],
            "scale's only field was taken"
        );
    }

    #[test]
    fn a_conflict_with_a_subresource_write_names_the_subresource() {
        let live = apply(
            None,
            &deployment(2, "a:1"),
            &writer("kubectl"),
            false,
            "deployments",
        )
        .unwrap();
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(5);
        let scale = Writer {
            subresource: "scale".into(),
            ..writer("kubectl")
        };
        record_update(Some(&live), &mut scaled, &scale);
        assert_eq!(
            scaled["metadata"]["managedFields"][1]["subresource"],
            "scale"
        );
        let err = apply(
            Some(&scaled),
            &deployment(3, "a:1"),
            &writer("kubectl"),
            false,
            "deployments",
        )
        .unwrap_err();
        assert_eq!(
            err.message,
            "Apply failed with 1 conflict: conflict with \"kubectl\" with subresource \"scale\" using apps/v1: .spec.replicas"
        );
        let forced = apply(
            Some(&scaled),
            &deployment(3, "a:1"),
            &writer("kubectl"),
            true,
            "deployments",
        )
        .unwrap();
        assert_eq!(managers(&forced), [("kubectl".into(), APPLY.into())]);
    }

    #[test]
    fn a_dropped_field_another_manager_also_owns_stays() {
        let live = apply(
            None,
            &deployment(2, "a:1"),
            &writer("a"),
            false,
            "deployments",
        )
        .unwrap();
        let shared = apply(
            Some(&live),
            &deployment(2, "a:1"),
            &writer("b"),
            false,
            "deployments",
        )
        .unwrap();
        let mut less = deployment(2, "a:1");
        less["spec"].as_object_mut().unwrap().remove("replicas");
        let after = apply(Some(&shared), &less, &writer("a"), false, "deployments").unwrap();
        assert_eq!(after["spec"]["replicas"], 2, "b still applies it");
    }

    #[test]
    fn containers_are_merged_by_name_and_a_dropped_one_is_removed() {
        let mut two = deployment(1, "a:1");
        two["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "side", "image": "s:1"}));
        let live = apply(None, &two, &writer("kubectl"), false, "deployments").unwrap();
        let after = apply(
            Some(&live),
            &deployment(1, "a:1"),
            &writer("kubectl"),
            false,
            "deployments",
        )
        .unwrap();
        let names: Vec<&str> = after["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(names, ["web"]);
    }

    #[test]
    fn updates_take_the_fields_they_change_from_other_managers() {
        let live = apply(
            None,
            &deployment(2, "a:1"),
            &writer("kubectl"),
            false,
            "deployments",
        )
        .unwrap();
        let mut edited = live.clone();
        edited["spec"]["template"]["spec"]["containers"][0]["image"] = json!("a:2");
        record_update(Some(&live), &mut edited, &writer("kubectl-edit"));
        let entries = entries_of(&edited);
        let image = vec![
            Step::Field("spec".into()),
            Step::Field("template".into()),
            Step::Field("spec".into()),
            Step::Field("containers".into()),
            Step::Key("{\"name\":\"web\"}".into()),
            Step::Field("image".into()),
        ];
        assert!(!entries[0].fields.contains(&image));
        assert_eq!(entries[1].fields, FieldSet::from([image]));
        // A write that changes nothing records nothing new.
        let mut same = edited.clone();
        record_update(Some(&edited), &mut same, &writer("other"));
        assert_eq!(managers(&same).len(), 2);
    }

    #[test]
    fn managers_come_from_the_query_or_the_user_agent() {
        assert_eq!(
            manager_of(Some("fieldManager=kubectl&force=true"), None, true).unwrap(),
            "kubectl"
        );
        assert_eq!(
            manager_of(Some("fieldManager=my%20tool"), None, true).unwrap(),
            "my tool"
        );
        assert_eq!(
            manager_of(None, Some("kubectl/v1.32.0 (linux/amd64)"), false).unwrap(),
            "kubectl"
        );
        assert_eq!(manager_of(None, None, true).unwrap_err().code.as_u16(), 400);
        let long = format!("fieldManager={}", "m".repeat(129));
        assert_eq!(
            manager_of(Some(&long), None, true)
                .unwrap_err()
                .code
                .as_u16(),
            400
        );
        assert!(force_of(Some("force=true"), true).unwrap());
        assert!(!force_of(Some("force=false"), true).unwrap());
        assert_eq!(
            force_of(Some("force=true"), false)
                .unwrap_err()
                .code
                .as_u16(),
            400
        );
    }

    #[test]
    fn paths_print_like_kube_apiserver() {
        let item = vec![
            Step::Field("spec".into()),
            Step::Field("containers".into()),
            Step::Key("{\"name\":\"web\"}".into()),
            Step::Field("image".into()),
        ];
        assert_eq!(display(&item), ".spec.containers[name=\"web\"].image");
    }
}
