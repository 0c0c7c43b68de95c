//! What makes a Job's pods its own: the generated selector and labels, shared by Job
//! admission and the CronJob controller that creates Jobs.

use serde_json::{Value, json};

/// The label a Job's pods carry with its name.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";

/// `batch.kubernetes.io/job-name: {name}` as the selector (unless `manualSelector`) and, with
/// `job-name`, on the template's labels, as Kubernetes generates them.
pub fn generate_selector(job: &mut Value) {
    let name = job
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if name.is_empty() || !job["spec"].is_object() {
        return;
    }
    if job["spec"]["manualSelector"] != true {
        job["spec"]["selector"] = json!({"matchLabels": {JOB_NAME_LABEL: name}});
    }
    let template = &mut job["spec"]["template"];
    if template.is_object() {
        if !template["metadata"].is_object() {
            template["metadata"] = json!({});
        }
        if !template["metadata"]["labels"].is_object() {
            template["metadata"]["labels"] = json!({});
        }
        template["metadata"]["labels"][JOB_NAME_LABEL] = name.clone().into();
        template["metadata"]["labels"]["job-name"] = name.into();
    }
}

/// Undoes [`generate_selector`] (a CronJob's job template keeps none: each Job gets its own).
pub fn remove_generated_selector(spec: &mut Value) {
    if let Some(map) = spec.as_object_mut() {
        map.remove("selector");
    }
    if let Some(labels) = spec
        .pointer_mut("/template/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(JOB_NAME_LABEL);
        labels.remove("job-name");
    }
}
