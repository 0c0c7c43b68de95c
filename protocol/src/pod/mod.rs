//! Desired pods going down to a node and their status coming back up.
//!
//! Desired state is level-triggered and has no size cliff: the server retains one small
//! [`DesiredIndex`] per node (the revision and, for every pod, its uid and the revision its
//! content was published at) plus one retained [`DesiredPod`] per pod on its own topic, each
//! within [`crate::MAX_MESSAGE_SIZE`]. An agent applies an index once it holds every pod it
//! lists at the listed revision, so it never runs a half-updated set. ([`DesiredPods`], the
//! whole set in one message, is what the agent applies and persists; older servers sent it
//! on the wire.) Shapes that changed since they were released stay decodable in [`v1`]
//! (the first release) and [`v2`] (the pod network's, before probes); [`probe`] holds the
//! probes a container carries and the probe events agents report.
//! Status is reported the same way: each report holds every pod the node knows, carries a
//! sequence number, and is re-sent until the server acknowledges that sequence.

use serde::{Deserialize, Serialize};

use crate::network::PodNetwork;

pub mod probe;
pub mod v1;
pub mod v2;
pub mod volumes;

pub use probe::{Probe, ProbeAction, ProbeKind, Probes};
pub use volumes::PodConfig;

/// Everything one node should be running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredPods {
    /// The store revision this snapshot was cut at; agents ignore older snapshots.
    pub revision: u64,
    /// The pods, in no particular order.
    pub pods: Vec<PodAssignment>,
}

/// At most this many pods are listed in one [`DesiredIndex`]: an entry is at most
/// 1 + [`MAX_UID_LEN`] + 10 bytes, so a full index stays under 300 KiB, well within
/// [`crate::MAX_MESSAGE_SIZE`] (a node has 110 pods by default).
pub const MAX_INDEXED_PODS: usize = 4096;

/// The longest pod uid that can name a per-pod topic (the server issues 36-character UUIDs).
pub const MAX_UID_LEN: usize = 64;

/// The retained index of a node's desired pods (`n/{node}/down/desired`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredIndex {
    /// The revision of this set; it only grows. Agents ignore an index not newer than the
    /// one they applied.
    pub revision: u64,
    /// Every pod of the set, at most [`MAX_INDEXED_PODS`], in no particular order.
    pub pods: Vec<IndexEntry>,
}

/// One pod listed in a [`DesiredIndex`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The pod's uid (names its topic, `n/{node}/down/pod/{uid}`).
    pub uid: String,
    /// The [`DesiredPod::revision`] the agent must hold for this pod.
    pub revision: u64,
}

/// One pod of a node's desired set, retained on `n/{node}/down/pod/{uid}` (an empty
/// retained payload clears it once the pod leaves the node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredPod {
    /// The index revision this content was published for. A pod not listed by an index of
    /// this revision or newer is stale.
    pub revision: u64,
    /// The pod.
    pub pod: PodAssignment,
}

/// One pod bound to the node, fully resolved (images are digests).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodAssignment {
    /// The pod's `metadata.uid`; the identity the agent keys on.
    pub uid: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// What to do when a container exits.
    pub restart_policy: RestartPolicy,
    /// The containers, in spec order.
    pub containers: Vec<ContainerSpec>,
    /// The pod's network (none from servers older than the pod network).
    pub network: Option<PodNetwork>,
    /// Its volumes and mounts. Appended after `network` ([`crate::tail`]): older servers
    /// send none, older agents ignore it. Keep it the last field.
    #[serde(default, deserialize_with = "crate::tail::or_default")]
    pub config: PodConfig,
}

/// A pod's `spec.restartPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    /// Restart on every exit.
    Always,
    /// Restart on a non-zero exit only.
    OnFailure,
    /// Never restart.
    Never,
}

/// One container of a pod, ready to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// The container name, unique in the pod.
    pub name: String,
    /// The image as the user wrote it (`hello:v1`), for status display.
    pub image: String,
    /// The module to run.
    pub module: ModuleRef,
    /// Replaces the module's argv\[0..\] entry point arguments (Kubernetes `command`).
    pub command: Vec<String>,
    /// Arguments after `command`.
    pub args: Vec<String>,
    /// Environment variables, in order.
    pub env: Vec<(String, String)>,
    /// `resources.limits.memory`, bytes.
    pub memory_limit_bytes: Option<u64>,
    /// `resources.limits.cpu`, millicores.
    pub cpu_limit_millis: Option<u64>,
    /// Its startup, liveness and readiness probes (none from servers older than probes).
    pub probes: Probes,
}

/// A module in the server's content-addressed store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleRef {
    /// sha256 of the module bytes, 64 lowercase hex characters.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
}

/// A node's report of every pod it knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The agent's session epoch.
    pub epoch: u64,
    /// Increases with every new report in an epoch; the server acks it.
    pub seq: u64,
    /// The revision of the last desired snapshot the agent applied.
    pub observed_revision: u64,
    /// One entry per pod the agent runs or has finished.
    pub pods: Vec<PodStatus>,
    /// The running containers whose startup probe has not succeeded yet (Kubernetes'
    /// `started: false`); every other running container has started. Empty from agents
    /// older than this field (a tail: see [`crate::tail`]).
    #[serde(default, deserialize_with = "crate::tail::or_default")]
    pub starting: Vec<ContainerRef>,
    /// What the containers of the reported pods run, so that status names the running
    /// image until a container has restarted on a new one. Appended after `starting` ([`crate::tail`]): older agents send none (the server then names
    /// the spec's images), older servers ignore it. Keep it the last field.
    #[serde(default, deserialize_with = "crate::tail::or_default")]
    pub images: Vec<PodImages>,
    /// Why a reported pod ended when its containers do not say it (Kubernetes'
    /// `status.reason`/`message`: `Evicted`). Appended after `images` ([`crate::tail`]):
    /// older agents send none, older servers ignore it. Keep it the last field.
    #[serde(default, deserialize_with = "crate::tail::or_default")]
    pub reasons: Vec<PodReason>,
}

/// Why one pod ended (its `status.reason` and `status.message`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodReason {
    /// The pod's uid.
    pub uid: String,
    /// A CamelCase reason (`Evicted`).
    pub reason: String,
    /// A human explanation.
    pub message: String,
}

/// One container of a pod on the reporting node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRef {
    /// The pod's uid.
    pub uid: String,
    /// The container's name.
    pub container: String,
}

/// The images one pod's containers run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodImages {
    /// The pod's uid.
    pub uid: String,
    /// One entry per container, in spec order.
    pub containers: Vec<RunningImage>,
}

/// The image one container runs (or is starting).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningImage {
    /// The container's name.
    pub name: String,
    /// The image as the user wrote it.
    pub image: String,
    /// The module's sha256, 64 lowercase hex characters.
    pub digest: String,
}

/// The server's receipt for a persisted [`StatusReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusAck {
    /// The epoch of the report.
    pub epoch: u64,
    /// The sequence number of the report.
    pub seq: u64,
}

/// A pod's phase, as Kubernetes names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodPhase {
    /// Accepted, not all containers started yet (fetching modules, backing off).
    Pending,
    /// At least one container is running or restarting.
    Running,
    /// Every container exited 0 and will not restart.
    Succeeded,
    /// Every container exited and at least one failed, with no restart coming.
    Failed,
}

/// The status of one pod on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodStatus {
    /// The pod's uid.
    pub uid: String,
    /// Its phase.
    pub phase: PodPhase,
    /// When the agent started the pod, in milliseconds since the Unix epoch.
    pub start_unix_ms: Option<u64>,
    /// One entry per container, in spec order.
    pub containers: Vec<ContainerStatus>,
}

/// The status of one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    /// The container's name.
    pub name: String,
    /// How many times it was restarted.
    pub restart_count: u32,
    /// Its current state.
    pub state: ContainerState,
    /// The state of its previous run, if it was restarted.
    pub last_state: Option<ContainerState>,
    /// Whether the container is running and, if it has a readiness probe, passing it.
    pub ready: bool,
}

/// A container's state, as Kubernetes' `ContainerState`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    /// Not running: fetching its module, or backing off before a restart.
    Waiting {
        /// A CamelCase reason (`ContainerCreating`, `CrashLoopBackOff`, `ErrModulePull`,
        /// `CreateContainerError`).
        reason: String,
        /// A human explanation.
        message: String,
    },
    /// Running since the given time.
    Running {
        /// Start time, milliseconds since the Unix epoch.
        started_unix_ms: u64,
    },
    /// Exited.
    Terminated {
        /// The exit code (137 for a kill, as on Linux).
        exit_code: i32,
        /// `Completed`, `Error` (a non-zero exit or a trap), `OOMKilled`, or `Unknown` (the
        /// agent restarted while it ran).
        reason: String,
        /// A human explanation (the trap message).
        message: String,
        /// Start time, milliseconds since the Unix epoch.
        started_unix_ms: u64,
        /// Exit time, milliseconds since the Unix epoch.
        finished_unix_ms: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Message, decode, encode};

    fn assignment() -> PodAssignment {
        PodAssignment {
            uid: "6b1c".into(),
            namespace: "default".into(),
            name: "hello".into(),
            restart_policy: RestartPolicy::OnFailure,
            containers: vec![ContainerSpec {
                name: "main".into(),
                image: "hello:v1".into(),
                module: ModuleRef {
                    digest: "ab".repeat(32),
                    size: 1234,
                },
                command: vec![],
                args: vec!["a".into(), "b".into()],
                env: vec![("GREETING".into(), "hi".into())],
                memory_limit_bytes: Some(64 << 20),
                cpu_limit_millis: Some(500),
                probes: Probes {
                    startup: None,
                    liveness: Some(Probe {
                        action: ProbeAction::HttpGet {
                            port: 8080,
                            path: "/healthz".into(),
                            headers: vec![("X-Probe".into(), "1".into())],
                        },
                        initial_delay_seconds: 2,
                        period_seconds: 1,
                        timeout_seconds: 1,
                        success_threshold: 1,
                        failure_threshold: 2,
                    }),
                    readiness: Some(Probe {
                        action: ProbeAction::TcpSocket { port: 7 },
                        initial_delay_seconds: 0,
                        period_seconds: 10,
                        timeout_seconds: 1,
                        success_threshold: 3,
                        failure_threshold: 3,
                    }),
                },
            }],
            network: None,
            config: PodConfig::default(),
        }
    }

    fn without_probes(mut pod: PodAssignment) -> PodAssignment {
        for container in &mut pod.containers {
            container.probes = Probes::default();
        }
        pod
    }

    #[test]
    fn a_desired_snapshot_survives_a_round_trip() {
        let message = Message::Desired(v1::DesiredPods {
            revision: 42,
            pods: vec![v1::PodAssignment {
                uid: "6b1c".into(),
                namespace: "default".into(),
                name: "hello".into(),
                restart_policy: RestartPolicy::Never,
                containers: assignment()
                    .containers
                    .into_iter()
                    .map(Into::into)
                    .collect(),
            }],
        });
        assert_eq!(decode(&encode(&message)), Ok(message.clone()));
        let Message::Desired(old) = message else {
            unreachable!()
        };
        let current = DesiredPods::from(old);
        assert_eq!(current.pods[0].network, None);
        assert_eq!(
            current.pods[0].containers,
            without_probes(assignment()).containers
        );
    }

    #[test]
    fn a_pod_with_volumes_round_trips_and_one_from_an_older_server_has_none() {
        let mut pod = assignment();
        pod.config = PodConfig {
            volumes: vec![volumes::Volume {
                name: "conf".into(),
                source: volumes::VolumeSource::Files(vec![volumes::VolumeFile {
                    path: "app.conf".into(),
                    mode: 0o644,
                    data: b"level=debug".to_vec(),
                }]),
            }],
            mounts: vec![volumes::Mount {
                container: "main".into(),
                volume: "conf".into(),
                mount_path: "/etc/app".into(),
                sub_path: String::new(),
                read_only: true,
            }],
            size_limits: Vec::new(),
            memory_volumes: Vec::new(),
        };
        let message = Message::DesiredPodV3(DesiredPod {
            revision: 7,
            pod: pod.clone(),
        });
        // A server from before `sizeLimit`s ends the payload before that (empty) tail and
        // the memory volumes'; one from before memory volumes before theirs.
        let bytes = encode(&message);
        assert_eq!(decode(&bytes[..bytes.len() - 2]).unwrap(), message);
        assert_eq!(decode(&bytes[..bytes.len() - 1]).unwrap(), message);
        pod.config.size_limits.push(volumes::SizeLimit {
            volume: "scratch".into(),
            bytes: 1 << 20,
            quantity: "1Mi".into(),
        });
        pod.config.memory_volumes.push("scratch".into());
        let message = Message::DesiredPodV3(DesiredPod { revision: 7, pod });
        let bytes = encode(&message);
        assert_eq!(decode(&bytes).unwrap(), message);
        // An agent from before memory volumes reads the rest and stops before them.
        let Ok(Message::DesiredPodV3(older)) = decode(&bytes[..bytes.len() - 9]) else {
            panic!("a pod without its memory volumes does not decode");
        };
        assert!(older.pod.config.memory_volumes.is_empty());
        assert_eq!(older.pod.config.size_limits.len(), 1);
        // An older server's payload ends where `config` would start.
        let plain = Message::DesiredPodV3(DesiredPod {
            revision: 7,
            pod: assignment(),
        });
        let bytes = encode(&plain);
        let older = &bytes[..bytes.len() - 4];
        assert_eq!(decode(older).unwrap(), plain);
    }

    #[test]
    fn a_pod_from_a_server_before_probes_decodes_with_no_probes() {
        let old = Message::DesiredPodV2(v2::DesiredPod {
            revision: 8,
            pod: assignment().into(),
        });
        let Ok(Message::DesiredPodV2(decoded)) = decode(&encode(&old)) else {
            panic!("a V2 pod does not decode");
        };
        let current = DesiredPod::from(decoded);
        assert_eq!(current.pod, without_probes(assignment()));
        assert!(current.pod.containers[0].probes.is_empty());
    }

    #[test]
    fn an_index_and_a_pod_survive_a_round_trip() {
        let index = Message::DesiredIndex(DesiredIndex {
            revision: 9,
            pods: vec![IndexEntry {
                uid: "6b1c".into(),
                revision: 8,
            }],
        });
        assert_eq!(decode(&encode(&index)), Ok(index));
        let pod = Message::DesiredPodV3(DesiredPod {
            revision: 8,
            pod: assignment(),
        });
        assert_eq!(decode(&encode(&pod)), Ok(pod));
    }

    #[test]
    fn a_full_index_of_the_longest_uids_fits_one_message() {
        let index = Message::DesiredIndex(DesiredIndex {
            revision: u64::MAX,
            pods: (0..MAX_INDEXED_PODS)
                .map(|_| IndexEntry {
                    uid: "u".repeat(MAX_UID_LEN),
                    revision: u64::MAX,
                })
                .collect(),
        });
        assert!(encode(&index).len() <= crate::MAX_MESSAGE_SIZE);
    }

    #[test]
    fn reports_from_before_images_still_decode() {
        let report = StatusReport {
            epoch: 1,
            seq: 2,
            observed_revision: 3,
            pods: vec![],
            starting: vec![],
            images: vec![],
            reasons: vec![],
        };
        let mut bytes = encode(&Message::Status(report.clone()));
        // An agent from before `reasons` ends its report before that (empty) tail.
        assert_eq!(bytes.pop(), Some(0));
        assert_eq!(decode(&bytes), Ok(Message::Status(report.clone())));
        // An agent from before `images` ends its report before that (empty) tail.
        assert_eq!(bytes.pop(), Some(0));
        assert_eq!(decode(&bytes), Ok(Message::Status(report)));
    }

    #[test]
    fn a_status_report_with_every_container_state_survives_a_round_trip() {
        let message = Message::Status(StatusReport {
            epoch: 2,
            seq: 17,
            observed_revision: 42,
            pods: vec![PodStatus {
                uid: "6b1c".into(),
                phase: PodPhase::Running,
                start_unix_ms: Some(1),
                containers: vec![
                    ContainerStatus {
                        name: "a".into(),
                        restart_count: 3,
                        state: ContainerState::Waiting {
                            reason: "CrashLoopBackOff".into(),
                            message: "back-off 40s".into(),
                        },
                        last_state: Some(ContainerState::Terminated {
                            exit_code: 137,
                            reason: "OOMKilled".into(),
                            message: String::new(),
                            started_unix_ms: 1,
                            finished_unix_ms: 2,
                        }),
                        ready: false,
                    },
                    ContainerStatus {
                        name: "b".into(),
                        restart_count: 0,
                        state: ContainerState::Running { started_unix_ms: 5 },
                        last_state: None,
                        ready: true,
                    },
                ],
            }],
            starting: vec![ContainerRef {
                uid: "6b1c".into(),
                container: "b".into(),
            }],
            images: vec![PodImages {
                uid: "6b1c".into(),
                containers: vec![RunningImage {
                    name: "a".into(),
                    image: "hello:v1".into(),
                    digest: "ab".repeat(32),
                }],
            }],
            reasons: vec![PodReason {
                uid: "6b1c".into(),
                reason: "Evicted".into(),
                message: "Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\".".into(),
            }],
        });
        assert_eq!(decode(&encode(&message)), Ok(message));
    }

    /// The report as agents from before `starting` send it.
    #[derive(Serialize)]
    enum OldEnvelope {
        V1(OldMessage),
    }

    #[derive(Serialize)]
    #[allow(dead_code)] // only the variant index and `Status`'s shape matter
    enum OldMessage {
        ServerState(()),
        NodeState(()),
        Heartbeat(()),
        Desired(()),
        Status(OldReport),
    }

    #[derive(Serialize)]
    struct OldReport {
        epoch: u64,
        seq: u64,
        observed_revision: u64,
        pods: Vec<PodStatus>,
    }

    #[test]
    fn a_report_from_an_agent_before_starting_decodes_with_nothing_starting() {
        let old = OldEnvelope::V1(OldMessage::Status(OldReport {
            epoch: 1,
            seq: 2,
            observed_revision: 3,
            pods: Vec::new(),
        }));
        let bytes = postcard::to_stdvec(&old).expect("encode");
        let expected = Message::Status(StatusReport {
            epoch: 1,
            seq: 2,
            observed_revision: 3,
            pods: Vec::new(),
            starting: Vec::new(),
            images: Vec::new(),
            reasons: Vec::new(),
        });
        assert_eq!(decode(&bytes), Ok(expected));
    }
}
