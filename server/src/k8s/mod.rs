//! Kubernetes object helpers shared by the API, the scheduler, the controllers and the
//! fleet: pure functions over the JSON objects the store holds, one home per rule.
//!
//! - [`conditions`]: `status.conditions[]` (read one, set one without needless writes);
//! - [`disruption`]: what a PodDisruptionBudget allows;
//! - [`pods`]: the node a pod is bound to, and pod readiness;
//! - [`references`]: the ConfigMaps, Secrets and ServiceAccount a pod refers to;
//! - [`owners`]: `metadata.ownerReferences` (the controller owner, ownership, building one,
//!   adopting and releasing);
//! - [`selectors`]: label and field selectors (query strings and `metav1.LabelSelector`);
//! - [`jobs`]: the selector and labels generated for a Job's pods;
//! - [`intstr`]: `IntOrString` counts and percentages (`maxSurge`, `maxUnavailable`);
//! - [`names`]: generated names and hashes in Kubernetes' safe alphabet;
//! - [`schedule`]: CronJob schedules and time zones;
//! - [`termination`]: graceful deletion of pods (when a pod being deleted goes away);
//! - [`time`]: RFC 3339 timestamps as Kubernetes writes them.

pub mod conditions;
pub mod disruption;
pub mod intstr;
pub mod jobs;
pub mod names;
pub mod owners;
pub mod pods;
pub mod references;
pub mod schedule;
pub mod selectors;
pub mod termination;
pub mod time;
