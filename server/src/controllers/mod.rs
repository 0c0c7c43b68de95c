//! Controllers: level-triggered loops that move the cluster toward its desired state.
//!
//! Each is a pure `plan` function (unit-tested) and a thin executor that applies the plan
//! to the store idempotently, run by the one [`runner`] (work queue of keys fed by the
//! informer's cache, periodic resync, per-key back-off, drain on shutdown).
//!
//! - [`runner`]: the loop and the [`runner::Controller`] trait a controller implements;
//! - [`queue`]: the runner's deduplicating work queue;
//! - [`node_lifecycle`]: marks nodes `Ready=Unknown` and tainted (and their pods not
//!   ready) when their agent stops heartbeating, and `Ready=True` again when it resumes;
//! - [`leases`]: which agent session is current, and the nodes' `Lease` objects;
//! - [`ipam`]: gives each node its pod range (`spec.podCIDR`) and each pod on it its IP
//!   (`status.podIP`);
//! - [`endpoints`]: keeps each Service's EndpointSlices and Endpoints (its pods with an IP,
//!   and whether they are ready);
//! - [`service_lb`]: LoadBalancer Services' `status.loadBalancer.ingress` (the addresses of
//!   the nodes that serve them, k3s ServiceLB's role); [`ingress_status`]: the same
//!   addresses on the Ingresses the agents serve; [`gateway_status`]: the Gateway API
//!   objects' conditions, addresses and attached routes;
//! - the workload controllers: [`replicasets`] (keeps a ReplicaSet's pods running),
//!   [`deployments`] (rolls a template out through ReplicaSets), [`jobs`] (runs a Job's
//!   pods to completion), [`cronjobs`] (Jobs on a schedule), [`daemonsets`] (one pod per
//!   matching node), [`disruption`] (PodDisruptionBudget status), [`taint_eviction`]
//!   (evicts pods from `NoExecute`-tainted nodes) and [`garbage`] (deletes
//!   what deleted owners left behind), [`namespaces`] (empties a namespace being
//!   deleted) and [`serviceaccounts`] (a `default` ServiceAccount in every namespace);
//!   [`start_workloads`] starts them, and [`writes`]
//!   holds the store writes their executors share.

pub mod cronjobs;
pub mod daemonsets;
pub mod deployments;
pub mod disruption;
pub mod endpoints;
pub mod garbage;
pub mod gateway_status;
pub mod ingress_status;
pub mod ipam;
pub mod jobs;
pub mod leases;
pub mod namespaces;
pub mod node_lifecycle;
pub mod queue;
pub mod replicasets;
pub mod runner;
pub mod service_lb;
pub mod serviceaccounts;
pub mod taint_eviction;
pub mod writes;

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::informer::Cache;
use crate::store::Store;
use runner::RunnerConfig;

use crate::network::ipam::NodeRanges;

/// Starts the workload controllers (ReplicaSets, Deployments, Jobs, CronJobs, DaemonSets,
/// disruption budgets, taint eviction, the garbage collector, namespaces; `namespaced` are
/// the namespaced resources a deleted namespace is emptied of), each on its own runner, tracked by `tracker` and stopped by `shutdown`.
pub fn start_workloads(
    store: &Store,
    cache: &Cache,
    ranges: NodeRanges,
    namespaced: Vec<&'static str>,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) {
    let start = Starter {
        store,
        cache,
        shutdown,
        tracker,
    };
    start.spawn(ipam::Ipam::new(ranges));
    start.spawn(replicasets::ReplicaSets);
    start.spawn(deployments::Deployments);
    start.spawn(jobs::Jobs);
    start.spawn_with(cronjobs::CronJobs, CRON_RESYNC);
    start.spawn(daemonsets::DaemonSets::new(cache.clone()));
    start.spawn(disruption::Disruption::new(cache.clone()));
    start.spawn(endpoints::Endpoints::new(cache.clone()));
    start.spawn(service_lb::ServiceLb::new(cache.clone()));
    start.spawn(ingress_status::IngressStatus::new(cache.clone()));
    start.spawn(gateway_status::GatewayStatus::new(cache.clone()));
    start.spawn_with(taint_eviction::TaintEviction, TAINT_RESYNC);
    start.spawn(garbage::Garbage::new(cache.clone()));
    start.spawn(namespaces::Namespaces::new(namespaced));
    start.spawn(serviceaccounts::ServiceAccounts);
}

/// What every runner is started with.
struct Starter<'a> {
    store: &'a Store,
    cache: &'a Cache,
    shutdown: &'a CancellationToken,
    tracker: &'a TaskTracker,
}

impl Starter<'_> {
    fn spawn<C: runner::Controller>(&self, controller: C) {
        self.spawn_with(controller, RunnerConfig::default().resync);
    }

    fn spawn_with<C: runner::Controller>(&self, controller: C, resync: Duration) {
        let config = RunnerConfig {
            resync,
            ..RunnerConfig::default()
        };
        self.tracker.spawn(runner::run(
            controller,
            self.store.clone(),
            self.cache.clone(),
            config,
            self.shutdown.clone(),
        ));
    }
}

/// How often nodes are looked at for taint eviction: a toleration runs out within this.
const TAINT_RESYNC: Duration = Duration::from_secs(2);

/// How often CronJobs are looked at: a run starts within this of its time.
const CRON_RESYNC: Duration = Duration::from_secs(2);
