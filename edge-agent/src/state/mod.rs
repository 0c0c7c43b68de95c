//! The agent's local database: what must survive a reboot with no server reachable.
//!
//! [`AgentState`] is the one owner of the redb file `<data-dir>/state.redb`. It keeps:
//!
//! - the session **epoch**, incremented before every connect so the will and the birth of a
//!   session carry the same, never reused, number;
//! - the last applied **desired set**, committed *before* the agent acts on it, so a
//!   rebooted agent restarts its pods without a server (offline autonomy): an index (its
//!   revision and uids) plus one row per pod, written in one transaction, so a set larger
//!   than one message is stored whole and no row is bigger than the message it came in;
//! - the last known **status of every pod**, so a pod that already finished is not run again
//!   after a restart;
//! - the last **table of Services**, so pods reach Services while no server is reachable.
//!
//! Values are stored as protocol envelopes (`wasmfleet_protocol::encode`), which gives them a
//! version byte for free, and decoded explicitly: bad bytes are a [`StateError::Corrupt`],
//! never a panic. Transactions are short and synchronous (one fsync each).

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use wasmfleet_protocol::peers::PeerTable;
use wasmfleet_protocol::pod::{
    DesiredIndex, DesiredPod, DesiredPods, IndexEntry, PodStatus, StatusReport,
};
use wasmfleet_protocol::routes::RouteTable;
use wasmfleet_protocol::service::ServiceTable;
use wasmfleet_protocol::{Message, decode, encode};

/// Counters: `epoch`.
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
/// Encoded snapshots: `desired` (the index of the desired set; older agents stored the
/// whole set there), `statuses`, `services`.
const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshots");
/// The pods of the desired set: uid → encoded [`DesiredPod`].
const DESIRED_PODS: TableDefinition<&str, &[u8]> = TableDefinition::new("desired_pods");

const EPOCH: &str = "epoch";
const DESIRED: &str = "desired";
const STATUSES: &str = "statuses";
const SERVICES: &str = "services";
const ROUTES: &str = "routes";
const PEERS: &str = "peers";

/// The redb page cache; the agent's state is a few KiB, the default (1 GiB) is for servers.
const CACHE_BYTES: usize = 4 << 20;

/// Why the local state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// redb failed (I/O, a lock held by another agent process, a corrupt file).
    #[error("local state database: {0}")]
    Db(#[from] redb::Error),
    /// The data directory could not be created.
    #[error("cannot create the state directory: {0}")]
    Io(#[from] std::io::Error),
    /// A stored value could not be decoded.
    #[error("stored {what} is unreadable: {why}")]
    Corrupt {
        /// Which value.
        what: &'static str,
        /// The decoder's complaint.
        why: String,
    },
}

fn db_err(err: impl Into<redb::Error>) -> StateError {
    StateError::Db(err.into())
}

/// A cheap, cloneable handle on the local state database.
#[derive(Clone)]
pub struct AgentState {
    db: Arc<Database>,
}

impl std::fmt::Debug for AgentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentState").finish_non_exhaustive()
    }
}

impl AgentState {
    /// Opens (or creates) the database at `path`, creating its tables.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(db_err)?;
        Self::with_tables(db)
    }

    /// A database that lives in memory only, for the fleet simulator's hollow agents:
    /// thousands of them in one process keep their state without a file (and an fsync per
    /// commit) each. Nothing survives the process.
    pub fn in_memory() -> Result<Self, StateError> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(db_err)?;
        Self::with_tables(db)
    }

    fn with_tables(db: Database) -> Result<Self, StateError> {
        let write = db.begin_write().map_err(db_err)?;
        write.open_table(COUNTERS).map_err(db_err)?;
        write.open_table(SNAPSHOTS).map_err(db_err)?;
        write.open_table(DESIRED_PODS).map_err(db_err)?;
        write.commit().map_err(db_err)?;
        Ok(AgentState { db: Arc::new(db) })
    }

    /// The epoch of the latest session (0 before the first connect).
    pub fn epoch(&self) -> Result<u64, StateError> {
        let read = self.db.begin_read().map_err(db_err)?;
        let table = read.open_table(COUNTERS).map_err(db_err)?;
        Ok(table.get(EPOCH).map_err(db_err)?.map_or(0, |g| g.value()))
    }

    /// Increments and persists the session epoch, returning the new value.
    pub fn next_epoch(&self) -> Result<u64, StateError> {
        let write = self.db.begin_write().map_err(db_err)?;
        let epoch = {
            let mut table = write.open_table(COUNTERS).map_err(db_err)?;
            let epoch = table.get(EPOCH).map_err(db_err)?.map_or(0, |g| g.value()) + 1;
            table.insert(EPOCH, epoch).map_err(db_err)?;
            epoch
        };
        write.commit().map_err(db_err)?;
        Ok(epoch)
    }

    /// Persists the desired set the agent is about to apply, in one transaction: its index
    /// and the pods whose stored row differs (rows of pods that left are deleted).
    pub fn save_desired(&self, desired: &DesiredPods) -> Result<(), StateError> {
        let index = DesiredIndex {
            revision: desired.revision,
            pods: desired
                .pods
                .iter()
                .map(|pod| IndexEntry {
                    uid: pod.uid.clone(),
                    revision: desired.revision,
                })
                .collect(),
        };
        let write = self.db.begin_write().map_err(db_err)?;
        {
            let mut rows = write.open_table(DESIRED_PODS).map_err(db_err)?;
            let wanted: std::collections::HashSet<&str> =
                desired.pods.iter().map(|p| p.uid.as_str()).collect();
            let gone: Vec<String> = rows
                .iter()
                .map_err(db_err)?
                .filter_map(Result::ok)
                .map(|(uid, _)| uid.value().to_owned())
                .filter(|uid| !wanted.contains(uid.as_str()))
                .collect();
            for uid in gone {
                rows.remove(uid.as_str()).map_err(db_err)?;
            }
            for pod in &desired.pods {
                let bytes = encode(&Message::DesiredPodV3(DesiredPod {
                    revision: 0,
                    pod: pod.clone(),
                }));
                let same = rows
                    .get(pod.uid.as_str())
                    .map_err(db_err)?
                    .is_some_and(|row| row.value() == bytes.as_slice());
                if !same {
                    rows.insert(pod.uid.as_str(), bytes.as_slice())
                        .map_err(db_err)?;
                }
            }
            write
                .open_table(SNAPSHOTS)
                .map_err(db_err)?
                .insert(DESIRED, encode(&Message::DesiredIndex(index)).as_slice())
                .map_err(db_err)?;
        }
        write.commit().map_err(db_err)
    }

    /// The last applied desired set, if any.
    pub fn desired(&self) -> Result<Option<DesiredPods>, StateError> {
        let Some(bytes) = self.get(DESIRED)? else {
            return Ok(None);
        };
        match decode(&bytes) {
            // Written by an agent from before per-pod rows.
            Ok(Message::Desired(desired)) => Ok(Some(desired.into())),
            Ok(Message::DesiredIndex(index)) => self.desired_pods(index).map(Some),
            other => Err(corrupt("desired snapshot", other)),
        }
    }

    /// The pods `index` lists, read from their rows.
    fn desired_pods(&self, index: DesiredIndex) -> Result<DesiredPods, StateError> {
        let read = self.db.begin_read().map_err(db_err)?;
        let rows = read.open_table(DESIRED_PODS).map_err(db_err)?;
        let mut pods = Vec::with_capacity(index.pods.len());
        for entry in &index.pods {
            let row = rows.get(entry.uid.as_str()).map_err(db_err)?;
            let decoded = row.map(|row| decode(row.value()));
            match decoded {
                Some(Ok(Message::DesiredPodV3(pod))) if pod.pod.uid == entry.uid => {
                    pods.push(pod.pod)
                }
                // Written by an agent from before probes.
                Some(Ok(Message::DesiredPodV2(pod))) if pod.pod.uid == entry.uid => {
                    pods.push(pod.pod.into())
                }
                // Written by an agent from before the pod network.
                Some(Ok(Message::DesiredPod(pod))) if pod.pod.uid == entry.uid => {
                    pods.push(pod.pod.into())
                }
                Some(other) => return Err(corrupt("desired pod", other)),
                None => {
                    return Err(StateError::Corrupt {
                        what: "desired pod",
                        why: format!("pod {} of the stored set is missing", entry.uid),
                    });
                }
            }
        }
        Ok(DesiredPods {
            revision: index.revision,
            pods,
        })
    }

    /// Persists the latest status of every pod.
    pub fn save_statuses(&self, pods: &[PodStatus]) -> Result<(), StateError> {
        // The statuses travel in a `StatusReport` only to reuse its versioned envelope;
        // the report fields are meaningless here.
        let report = StatusReport {
            epoch: 0,
            seq: 0,
            observed_revision: 0,
            pods: pods.to_vec(),
            starting: Vec::new(),
            images: Vec::new(),
            reasons: Vec::new(),
        };
        self.put(STATUSES, &encode(&Message::Status(report)))
    }

    /// The last persisted status of every pod (empty when none was saved).
    pub fn statuses(&self) -> Result<Vec<PodStatus>, StateError> {
        match self.get(STATUSES)? {
            None => Ok(Vec::new()),
            Some(bytes) => match decode(&bytes) {
                Ok(Message::Status(report)) => Ok(report.pods),
                other => Err(corrupt("pod statuses", other)),
            },
        }
    }

    /// Persists the table of HTTP routes.
    pub fn save_routes(&self, table: &RouteTable) -> Result<(), StateError> {
        self.put(ROUTES, &encode(&Message::Routes(table.clone())))
    }

    /// The last persisted table of HTTP routes, if any.
    pub fn routes(&self) -> Result<Option<RouteTable>, StateError> {
        match self.get(ROUTES)? {
            None => Ok(None),
            Some(bytes) => match decode(&bytes) {
                Ok(Message::Routes(table)) => Ok(Some(table)),
                other => Err(corrupt("table of HTTP routes", other)),
            },
        }
    }

    /// Persists the table of peers.
    pub fn save_peers(&self, table: &PeerTable) -> Result<(), StateError> {
        self.put(PEERS, &encode(&Message::Peers(table.clone())))
    }

    /// The last persisted table of peers, if any.
    pub fn peers(&self) -> Result<Option<PeerTable>, StateError> {
        match self.get(PEERS)? {
            None => Ok(None),
            Some(bytes) => match decode(&bytes) {
                Ok(Message::Peers(table)) => Ok(Some(table)),
                other => Err(corrupt("table of peers", other)),
            },
        }
    }

    /// Persists the table of Services.
    pub fn save_services(&self, table: &ServiceTable) -> Result<(), StateError> {
        self.put(SERVICES, &encode(&Message::Services(table.clone())))
    }

    /// The last persisted table of Services, if any.
    pub fn services(&self) -> Result<Option<ServiceTable>, StateError> {
        match self.get(SERVICES)? {
            None => Ok(None),
            Some(bytes) => match decode(&bytes) {
                Ok(Message::Services(table)) => Ok(Some(table)),
                other => Err(corrupt("table of Services", other)),
            },
        }
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StateError> {
        let write = self.db.begin_write().map_err(db_err)?;
        write
            .open_table(SNAPSHOTS)
            .map_err(db_err)?
            .insert(key, bytes)
            .map_err(db_err)?;
        write.commit().map_err(db_err)
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let read = self.db.begin_read().map_err(db_err)?;
        let table = read.open_table(SNAPSHOTS).map_err(db_err)?;
        Ok(table.get(key).map_err(db_err)?.map(|g| g.value().to_vec()))
    }
}

fn corrupt(
    what: &'static str,
    decoded: Result<Message, wasmfleet_protocol::DecodeError>,
) -> StateError {
    let why = match decoded {
        Ok(other) => format!("holds an unexpected message {other:?}"),
        Err(err) => err.to_string(),
    };
    StateError::Corrupt { what, why }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmfleet_protocol::pod::{PodAssignment, PodPhase, RestartPolicy};

    fn desired(revision: u64) -> DesiredPods {
        DesiredPods {
            revision,
            pods: vec![PodAssignment {
                config: Default::default(),
                network: Some(wasmfleet_protocol::network::PodNetwork {
                    ip: std::net::Ipv4Addr::new(10, 42, 0, 7),
                    cluster_cidr: wasmfleet_protocol::network::ClusterCidr::default().net(),
                    ports: vec![],
                    egress: vec![],
                }),
                uid: "u1".into(),
                namespace: "default".into(),
                name: "hello".into(),
                restart_policy: RestartPolicy::Never,
                containers: vec![],
            }],
        }
    }

    fn succeeded(uid: &str) -> PodStatus {
        PodStatus {
            uid: uid.into(),
            phase: PodPhase::Succeeded,
            start_unix_ms: Some(5),
            containers: vec![],
        }
    }

    #[test]
    fn a_fresh_database_is_empty() -> Result<(), StateError> {
        let dir = tempfile::tempdir()?;
        let state = AgentState::open(&dir.path().join("state.redb"))?;
        assert_eq!(state.epoch()?, 0);
        assert_eq!(state.desired()?, None);
        assert!(state.statuses()?.is_empty());
        assert_eq!(state.services()?, None);
        Ok(())
    }

    #[test]
    fn reopening_keeps_epoch_desired_snapshot_and_statuses() -> Result<(), StateError> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("nested/state.redb");
        {
            let state = AgentState::open(&path)?;
            assert_eq!(state.next_epoch()?, 1);
            assert_eq!(state.next_epoch()?, 2);
            state.save_desired(&desired(7))?;
            state.save_statuses(&[succeeded("u1")])?;
            state.save_services(&ServiceTable {
                revision: 9,
                ..ServiceTable::default()
            })?;
        }
        let state = AgentState::open(&path)?;
        assert_eq!(state.epoch()?, 2);
        assert_eq!(state.next_epoch()?, 3);
        assert_eq!(state.desired()?, Some(desired(7)));
        assert_eq!(state.statuses()?, vec![succeeded("u1")]);
        assert_eq!(state.services()?.map(|t| t.revision), Some(9));
        Ok(())
    }

    #[test]
    fn a_newer_snapshot_replaces_the_older_one() -> Result<(), StateError> {
        let dir = tempfile::tempdir()?;
        let state = AgentState::open(&dir.path().join("state.redb"))?;
        state.save_desired(&desired(1))?;
        state.save_desired(&desired(2))?;
        assert_eq!(state.desired()?.map(|d| d.revision), Some(2));
        Ok(())
    }

    #[test]
    fn a_set_larger_than_one_message_is_stored_and_read_back_whole() -> Result<(), StateError> {
        use wasmfleet_protocol::pod::{ContainerSpec, ModuleRef};
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("state.redb");
        let big = |uid: &str| PodAssignment {
            config: Default::default(),
            network: None,
            uid: uid.into(),
            namespace: "default".into(),
            name: uid.into(),
            restart_policy: RestartPolicy::Always,
            containers: vec![ContainerSpec {
                name: "main".into(),
                image: "hello:v1".into(),
                module: ModuleRef {
                    digest: "ab".repeat(32),
                    size: 1,
                },
                command: vec![],
                args: vec![],
                env: vec![("BIG".into(), "x".repeat(400_000))],
                memory_limit_bytes: None,
                cpu_limit_millis: None,
                probes: Default::default(),
            }],
        };
        let set = DesiredPods {
            revision: 9,
            pods: vec![big("u1"), big("u2"), big("u3")],
        };
        assert!(
            encode(&Message::Desired(set.clone().into())).len()
                > wasmfleet_protocol::MAX_MESSAGE_SIZE
        );
        {
            let state = AgentState::open(&path)?;
            state.save_desired(&set)?;
            let smaller = DesiredPods {
                revision: 10,
                pods: vec![big("u3"), big("u1")],
            };
            state.save_desired(&smaller)?;
        }
        let state = AgentState::open(&path)?;
        let read = state.desired()?.map(|d| {
            let uids: Vec<String> = d.pods.iter().map(|p| p.uid.clone()).collect();
            (d.revision, uids)
        });
        assert_eq!(read, Some((10, vec!["u3".to_owned(), "u1".to_owned()])));
        assert_eq!(state.desired()?.map(|d| d.pods[0].clone()), Some(big("u3")));
        Ok(())
    }

    #[test]
    fn a_snapshot_stored_by_an_older_agent_is_still_read() -> Result<(), StateError> {
        let dir = tempfile::tempdir()?;
        let state = AgentState::open(&dir.path().join("state.redb"))?;
        state.put(DESIRED, &encode(&Message::Desired(desired(4).into())))?;
        let mut without_network = desired(4);
        without_network.pods[0].network = None;
        assert_eq!(state.desired()?, Some(without_network));
        Ok(())
    }

    #[test]
    fn a_pod_row_stored_by_an_agent_before_probes_is_still_read() -> Result<(), StateError> {
        let dir = tempfile::tempdir()?;
        let state = AgentState::open(&dir.path().join("state.redb"))?;
        let set = desired(4);
        state.save_desired(&set)?;
        let old_row = encode(&Message::DesiredPodV2(
            wasmfleet_protocol::pod::v2::DesiredPod {
                revision: 0,
                pod: set.pods[0].clone().into(),
            },
        ));
        let write = state.db.begin_write().map_err(db_err)?;
        write
            .open_table(DESIRED_PODS)
            .map_err(db_err)?
            .insert("u1", old_row.as_slice())
            .map_err(db_err)?;
        write.commit().map_err(db_err)?;
        assert_eq!(state.desired()?, Some(set));
        Ok(())
    }

    #[test]
    fn garbage_in_the_database_is_an_error_not_a_panic() -> Result<(), StateError> {
        let dir = tempfile::tempdir()?;
        let state = AgentState::open(&dir.path().join("state.redb"))?;
        state.put(DESIRED, &[0, 250, 250])?;
        state.put(STATUSES, &encode(&Message::Desired(desired(1).into())))?;
        assert!(matches!(state.desired(), Err(StateError::Corrupt { .. })));
        assert!(matches!(state.statuses(), Err(StateError::Corrupt { .. })));
        Ok(())
    }

    #[test]
    fn a_second_opener_of_the_same_file_gets_an_error() -> Result<(), StateError> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("state.redb");
        let _first = AgentState::open(&path)?;
        assert!(AgentState::open(&path).is_err());
        Ok(())
    }
}
