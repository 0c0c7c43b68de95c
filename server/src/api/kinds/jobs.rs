//! Jobs (batch/v1): run pods of a template to completion.
//!
//! Admission defaults what Kubernetes defaults (`parallelism` 1, `completions` 1 unless only
//! `parallelism` is given, `backoffLimit` 6, `completionMode: NonIndexed`), generates the
//! selector (`batch.kubernetes.io/job-name`, also put on the template's labels, as
//! Kubernetes does without `manualSelector`), and keeps the template, selector,
//! `completions` and `completionMode` immutable.

use serde_json::{Value, json};

use super::workload::{self, LABEL_SELECTOR};
use super::{Column, Kind, READ_WRITE, keep_status, name_of};
use crate::api::cascade;
use crate::api::status::{ApiError, Cause};
use crate::api::table::{age, text};
use crate::api::validation::{METADATA, POD_TEMPLATE, Shape};

pub use crate::k8s::jobs::JOB_NAME_LABEL;
use crate::k8s::jobs::generate_selector;

/// Jobs (namespaced).
pub const KIND: Kind = Kind {
    group: "batch",
    version: "v1",
    api_version: "batch/v1",
    plural: "jobs",
    singular: "job",
    kind: "Job",
    list_kind: "JobList",
    short_names: &[],
    categories: &["all"],
    namespaced: true,
    verbs: READ_WRITE,
    subresources: &[],
    columns: &[
        Column::new("Name"),
        Column::new("Status"),
        Column::new("Completions"),
        Column::new("Duration"),
        Column::new("Age"),
        Column::wide("Containers"),
        Column::wide("Images"),
        Column::wide("Selector"),
    ],
    cells,
    admit_create,
    admit_update,
    allocate: None,
    delete: cascade::delete,
};

const SPEC: Shape = Shape::Object(&[
    ("parallelism", Shape::Int),
    ("completions", Shape::Int),
    ("backoffLimit", Shape::Int),
    ("activeDeadlineSeconds", Shape::Int),
    ("ttlSecondsAfterFinished", Shape::Int),
    ("completionMode", Shape::Str),
    ("suspend", Shape::Bool),
    ("manualSelector", Shape::Bool),
    ("selector", LABEL_SELECTOR),
    ("template", POD_TEMPLATE),
]);

/// What a Job may hold.
pub const JOB: Shape = Shape::Object(&[
    ("apiVersion", Shape::Str),
    ("kind", Shape::Str),
    ("metadata", METADATA),
    ("spec", SPEC),
    ("status", Shape::Ignored),
]);

/// A new Job: defaulted, its selector generated, valid, with an empty status.
pub fn admit_create(job: &mut Value) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    if job.pointer("/spec/selector").is_some() && job["spec"]["manualSelector"] != true {
        causes.push(Cause::new(
            "FieldValueInvalid",
            "spec.selector",
            "Invalid value: `selector` will be auto-generated",
        ));
    }
    generate_selector(job);
    admit(job, causes)?;
    if let Some(map) = job.as_object_mut() {
        map.insert("status".into(), json!({}));
    }
    Ok(())
}

/// A changed Job: only `parallelism`, `suspend`, `activeDeadlineSeconds` and
/// `ttlSecondsAfterFinished` (and metadata) may change.
pub fn admit_update(old: &Value, job: &mut Value) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    for field in ["selector", "template", "completions", "completionMode"] {
        let (before, after) = (&old["spec"][field], &job["spec"][field]);
        if !after.is_null() && before != after {
            causes.push(Cause::new(
                "FieldValueInvalid",
                format!("spec.{field}"),
                "Invalid value: field is immutable",
            ));
        }
    }
    for field in ["selector", "template", "completions", "completionMode"] {
        if job["spec"][field].is_null() {
            job["spec"][field] = old["spec"][field].clone();
        }
    }
    admit(job, causes)?;
    keep_status(old, job);
    Ok(())
}

fn admit(job: &mut Value, causes: Vec<Cause>) -> Result<(), ApiError> {
    let causes = check(job, causes);
    match causes.is_empty() {
        true => Ok(()),
        false => Err(ApiError::invalid("Job", name_of(job), &causes)),
    }
}

/// Validates and defaults a Job with its selector generated; the problems found, with
/// `causes` first.
pub fn check(job: &mut Value, mut causes: Vec<Cause>) -> Vec<Cause> {
    causes.extend(workload::validate(
        job,
        &JOB,
        "batch/v1",
        "Job",
        &["OnFailure", "Never"],
    ));
    if causes.is_empty() {
        apply_defaults(job);
        check_counts(job, &mut causes);
    }
    causes
}

fn apply_defaults(job: &mut Value) {
    workload::apply_defaults(job, false);
    let Some(spec) = job.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if spec.get("completions").is_none_or(Value::is_null)
        && spec.get("parallelism").is_none_or(Value::is_null)
    {
        spec.insert("completions".into(), json!(1));
    }
    spec.entry("parallelism").or_insert_with(|| json!(1));
    spec.entry("backoffLimit").or_insert_with(|| json!(6));
    spec.entry("completionMode")
        .or_insert_with(|| json!("NonIndexed"));
    spec.entry("suspend").or_insert_with(|| json!(false));
}

fn check_counts(job: &Value, causes: &mut Vec<Cause>) {
    let spec = &job["spec"];
    for field in [
        "parallelism",
        "completions",
        "backoffLimit",
        "activeDeadlineSeconds",
        "ttlSecondsAfterFinished",
    ] {
        let minimum = i64::from(field == "activeDeadlineSeconds");
        if spec[field].as_i64().is_some_and(|n| n < minimum) {
            causes.push(Cause::new(
                "FieldValueInvalid",
                format!("spec.{field}"),
                format!("Invalid value: must be greater than or equal to {minimum}"),
            ));
        }
    }
    match spec["completionMode"].as_str() {
        Some("NonIndexed") => {}
        Some("Indexed") if spec["completions"].is_i64() => {}
        Some("Indexed") => causes.push(Cause::new(
            "FieldValueRequired",
            "spec.completions",
            "Required value: when completion mode is Indexed",
        )),
        other => causes.push(Cause::new(
            "FieldValueNotSupported",
            "spec.completionMode",
            format!("Unsupported value: {other:?}: supported values: \"NonIndexed\", \"Indexed\""),
        )),
    }
}

/// kubectl's STATUS: `Complete`, `Failed`, `Suspended` or `Running`.
fn status(job: &Value) -> &'static str {
    let condition =
        |kind: &str| crate::k8s::conditions::condition_status(job, kind) == Some("True");
    if condition("Complete") {
        "Complete"
    } else if condition("Failed") {
        "Failed"
    } else if job["spec"]["suspend"] == true {
        "Suspended"
    } else {
        "Running"
    }
}

/// How long it ran: from `startTime` to `completionTime` (or now).
fn duration(job: &Value, now: jiff::Timestamp) -> Value {
    let at = |field: &str| {
        job["status"][field]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
    };
    match at("startTime") {
        Some(start) => {
            let end = at("completionTime").unwrap_or(now);
            crate::api::table::human_duration(end.as_second() - start.as_second()).into()
        }
        None => "".into(),
    }
}

fn cells(job: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let completions = match job["spec"]["completions"].as_i64() {
        Some(n) => format!("{}/{n}", job["status"]["succeeded"].as_i64().unwrap_or(0)),
        None => format!(
            "{}/1 of {}",
            job["status"]["succeeded"].as_i64().unwrap_or(0),
            job["spec"]["parallelism"]
        ),
    };
    let mut cells = vec![
        text(job, "/metadata/name"),
        status(job).into(),
        completions.into(),
        duration(job, now),
        age(job, now),
    ];
    cells.extend(workload::wide_cells(job));
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Value {
        json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "pi", "namespace": "default"},
            "spec": {"template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "pi", "image": "app:v1"}],
            }}},
        })
    }

    fn fields(result: Result<(), ApiError>) -> Vec<String> {
        result.err().map_or_else(Vec::new, |e| e.cause_fields())
    }

    #[test]
    fn a_job_gets_its_selector_and_the_kubernetes_defaults() {
        let mut j = job();
        assert!(fields(admit_create(&mut j)).is_empty());
        assert_eq!(
            j["spec"]["selector"],
            json!({"matchLabels": {JOB_NAME_LABEL: "pi"}})
        );
        assert_eq!(
            j["spec"]["template"]["metadata"]["labels"]["job-name"],
            "pi"
        );
        assert_eq!(
            (
                j["spec"]["completions"].clone(),
                j["spec"]["parallelism"].clone()
            ),
            (json!(1), json!(1))
        );
        assert_eq!(j["spec"]["backoffLimit"], 6);
        assert!(j["spec"].get("replicas").is_none());
    }

    #[test]
    fn bad_jobs_name_their_fields() {
        let mut always = job();
        always["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
        assert_eq!(
            fields(admit_create(&mut always)),
            ["spec.template.spec.restartPolicy"]
        );
        let mut chosen = job();
        chosen["spec"]["selector"] = json!({"matchLabels": {"a": "b"}});
        assert!(fields(admit_create(&mut chosen)).contains(&"spec.selector".to_owned()));
        let mut negative = job();
        negative["spec"]["backoffLimit"] = json!(-1);
        assert_eq!(fields(admit_create(&mut negative)), ["spec.backoffLimit"]);
        let mut indexed = job();
        indexed["spec"]["completionMode"] = json!("Indexed");
        indexed["spec"]["parallelism"] = json!(2);
        assert_eq!(fields(admit_create(&mut indexed)), ["spec.completions"]);
    }

    #[test]
    fn the_template_is_immutable_but_parallelism_is_not() {
        let mut old = job();
        admit_create(&mut old).ok();
        let mut wider = old.clone();
        wider["spec"]["parallelism"] = json!(3);
        assert!(admit_update(&old, &mut wider).is_ok());
        let mut changed = old.clone();
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("app:v2");
        assert_eq!(fields(admit_update(&old, &mut changed)), ["spec.template"]);
    }
}
