//! CronJobs (batch/v1): Jobs on a schedule.
//!
//! Admission checks the schedule (standard five-field cron, or `@hourly`, `@daily`, ...;
//! `TZ=` inside it is refused in favour of `timeZone`), the time zone (an IANA name), the
//! concurrency policy, and the job template as a Job would be checked (its errors name
//! `spec.jobTemplate.spec...`), then defaults what Kubernetes defaults (`Allow`, history
//! limits 3 and 1, and the job template's own defaults).

use serde_json::{Value, json};

use super::jobs;
use super::{Column, Kind, READ_WRITE, keep_status, name_of};
use crate::api::cascade;
use crate::api::status::{ApiError, Cause};
use crate::api::table::{age, text};
use crate::api::validation::{METADATA, Shape};
use crate::k8s::schedule::{self, Schedule};

/// CronJobs (namespaced).
pub const KIND: Kind = Kind {
    group: "batch",
    version: "v1",
    api_version: "batch/v1",
    plural: "cronjobs",
    singular: "cronjob",
    kind: "CronJob",
    list_kind: "CronJobList",
    short_names: &["cj"],
    categories: &["all"],
    namespaced: true,
    verbs: READ_WRITE,
    subresources: &[],
    columns: &[
        Column::new("Name"),
        Column::new("Schedule"),
        Column::new("Timezone"),
        Column::new("Suspend"),
        Column::new("Active"),
        Column::new("Last Schedule"),
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

const JOB_TEMPLATE: Shape = Shape::Object(&[
    ("metadata", METADATA),
    ("spec", Shape::Ignored), // checked as a Job's spec, below
]);

const SPEC: Shape = Shape::Object(&[
    ("schedule", Shape::Str),
    ("timeZone", Shape::Str),
    ("startingDeadlineSeconds", Shape::Int),
    ("concurrencyPolicy", Shape::Str),
    ("suspend", Shape::Bool),
    ("jobTemplate", JOB_TEMPLATE),
    ("successfulJobsHistoryLimit", Shape::Int),
    ("failedJobsHistoryLimit", Shape::Int),
]);

const CRON_JOB: Shape = Shape::Object(&[
    ("apiVersion", Shape::Str),
    ("kind", Shape::Str),
    ("metadata", METADATA),
    ("spec", SPEC),
    ("status", Shape::Ignored),
]);

fn admit(cj: &mut Value) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    crate::api::validation::check_shape(cj, &CRON_JOB, "", &mut causes);
    crate::api::validation::check_type_meta(cj, "batch/v1", "CronJob", &mut causes);
    crate::api::validation::check_metadata(cj, &mut causes);
    if causes.is_empty() {
        check_schedule(cj, &mut causes);
        check_policy(cj, &mut causes);
        check_job_template(cj, &mut causes);
    }
    if causes.is_empty() {
        apply_defaults(cj);
        Ok(())
    } else {
        Err(ApiError::invalid("CronJob", name_of(cj), &causes))
    }
}

/// A new CronJob: valid, defaulted, with an empty status.
pub fn admit_create(cj: &mut Value) -> Result<(), ApiError> {
    admit(cj)?;
    if let Some(map) = cj.as_object_mut() {
        map.insert("status".into(), json!({}));
    }
    Ok(())
}

/// A changed CronJob keeps its status.
pub fn admit_update(old: &Value, cj: &mut Value) -> Result<(), ApiError> {
    admit(cj)?;
    keep_status(old, cj);
    Ok(())
}

fn check_schedule(cj: &Value, causes: &mut Vec<Cause>) {
    let spec = &cj["spec"];
    let Some(text) = spec["schedule"].as_str() else {
        causes.push(crate::api::validation::required("spec.schedule"));
        return;
    };
    if let Err(why) = Schedule::parse(text, spec["timeZone"].as_str()) {
        let field = match why {
            schedule::Invalid::TimeZone(_) => "spec.timeZone",
            _ => "spec.schedule",
        };
        causes.push(Cause::new(
            "FieldValueInvalid",
            field,
            format!("Invalid value: {why}"),
        ));
    }
}

fn check_policy(cj: &Value, causes: &mut Vec<Cause>) {
    let spec = &cj["spec"];
    if let Some(policy) = spec["concurrencyPolicy"].as_str()
        && !matches!(policy, "Allow" | "Forbid" | "Replace")
    {
        causes.push(Cause::new(
            "FieldValueNotSupported",
            "spec.concurrencyPolicy",
            format!("Unsupported value: {policy:?}: supported values: \"Allow\", \"Forbid\", \"Replace\""),
        ));
    }
    for field in [
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
    ] {
        if spec[field].as_i64().is_some_and(|n| n < 0) {
            causes.push(Cause::new(
                "FieldValueInvalid",
                format!("spec.{field}"),
                "Invalid value: must be greater than or equal to 0",
            ));
        }
    }
}

/// The job template is checked (and defaulted) as a Job named like the CronJob would be.
fn check_job_template(cj: &mut Value, causes: &mut Vec<Cause>) {
    let mut job = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name_of(cj), "namespace": cj["metadata"]["namespace"]},
        "spec": cj["spec"]["jobTemplate"]["spec"].clone(),
    });
    crate::k8s::jobs::generate_selector(&mut job);
    let problems = jobs::check(&mut job, Vec::new());
    if problems.is_empty() {
        crate::k8s::jobs::remove_generated_selector(&mut job["spec"]);
        cj["spec"]["jobTemplate"]["spec"] = job["spec"].take();
    }
    causes.extend(problems.into_iter().map(|mut cause| {
        cause.field = format!("spec.jobTemplate.{}", cause.field);
        cause
    }));
}

fn apply_defaults(cj: &mut Value) {
    let Some(spec) = cj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    spec.entry("concurrencyPolicy")
        .or_insert_with(|| json!("Allow"));
    spec.entry("suspend").or_insert_with(|| json!(false));
    spec.entry("successfulJobsHistoryLimit")
        .or_insert_with(|| json!(3));
    spec.entry("failedJobsHistoryLimit")
        .or_insert_with(|| json!(1));
}

fn cells(cj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let last = json!({"metadata": {"creationTimestamp": cj["status"]["lastScheduleTime"]}});
    let last = if cj["status"]["lastScheduleTime"].is_null() {
        "<none>".into()
    } else {
        age(&last, now)
    };
    let active = cj["status"]["active"].as_array().map_or(0, Vec::len);
    let template = json!({"spec": {"template": cj["spec"]["jobTemplate"]["spec"]["template"],
                                   "selector": cj["spec"]["jobTemplate"]["spec"]["selector"]}});
    let mut cells = vec![
        text(cj, "/metadata/name"),
        text(cj, "/spec/schedule"),
        text(cj, "/spec/timeZone"),
        cj["spec"]["suspend"]
            .as_bool()
            .unwrap_or(false)
            .to_string()
            .into(),
        active.to_string().into(),
        last,
        age(cj, now),
    ];
    cells.extend(super::workload::wide_cells(&template));
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cron_job(schedule: &str) -> Value {
        json!({
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "backup", "namespace": "default"},
            "spec": {
                "schedule": schedule,
                "jobTemplate": {"spec": {"template": {"spec": {
                    "restartPolicy": "OnFailure",
                    "containers": [{"name": "b", "image": "app:v1"}],
                }}}},
            },
        })
    }

    fn fields(mut cj: Value) -> Vec<String> {
        admit_create(&mut cj)
            .err()
            .map_or_else(Vec::new, |e| e.cause_fields())
    }

    #[test]
    fn a_cron_job_is_defaulted_like_kubernetes_and_its_template_like_a_job() {
        let mut cj = cron_job("*/5 * * * *");
        assert!(admit_create(&mut cj).is_ok());
        assert_eq!(cj["spec"]["concurrencyPolicy"], "Allow");
        assert_eq!(cj["spec"]["successfulJobsHistoryLimit"], 3);
        let job_spec = &cj["spec"]["jobTemplate"]["spec"];
        assert_eq!(job_spec["backoffLimit"], 6);
        assert!(
            job_spec.get("selector").is_none(),
            "each Job gets its own selector"
        );
    }

    #[test]
    fn bad_schedules_zones_policies_and_templates_name_their_fields() {
        assert_eq!(fields(cron_job("every minute")), ["spec.schedule"]);
        assert_eq!(fields(cron_job("61 * * * *")), ["spec.schedule"]);
        assert_eq!(fields(cron_job("TZ=UTC 0 * * * *")), ["spec.schedule"]);
        let mut zone = cron_job("@daily");
        zone["spec"]["timeZone"] = json!("Mars/Olympus");
        assert_eq!(fields(zone), ["spec.timeZone"]);
        let mut policy = cron_job("@hourly");
        policy["spec"]["concurrencyPolicy"] = json!("Sometimes");
        assert_eq!(fields(policy), ["spec.concurrencyPolicy"]);
        let mut always = cron_job("@hourly");
        always["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] =
            json!("Always");
        assert_eq!(
            fields(always),
            ["spec.jobTemplate.spec.template.spec.restartPolicy"]
        );
    }
}
