//! Kubernetes object rules that the API, the scheduler, the fleet and the controllers share,
//! one home each.
//!
//! - [`intstr`]: `IntOrString` counts and percentages (`maxSurge`, `maxUnavailable`).
//! - [`selectors`]: label and field selectors (query strings and `metav1.LabelSelector`).

pub mod intstr;
pub mod selectors;
